"""The ``safar validate`` and ``safar journeys …`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from safar.clock import SystemClock
from safar.config import Settings
from safar.errors import ValidationError


def add_journey_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    validate = sub.add_parser(
        "validate", parents=[common], help="check journey, policy and template files"
    )
    validate.add_argument("paths", nargs="+", type=Path, help="files or directories")
    validate.add_argument("--templates", type=Path, help="templates directory to check against")
    validate.set_defaults(run=_validate)

    journeys = sub.add_parser("journeys", help="publish, list, pause, stop and simulate journeys")
    jsub = journeys.add_subparsers(dest="action", required=True)
    publish = jsub.add_parser("publish", parents=[common], help="publish a journey file")
    publish.add_argument("file", type=Path)
    publish.add_argument(
        "--move",
        action="store_true",
        help="move customers inside older versions onto this one (default: they stay)",
    )
    publish.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="with --move: the step customers at OLD continue at (repeatable)",
    )
    publish.set_defaults(run=_publish)
    listing = jsub.add_parser("list", parents=[common], help="list journeys and their status")
    listing.set_defaults(run=_list)
    for action in ("pause", "resume", "stop"):
        cmd = jsub.add_parser(action, parents=[common], help=f"{action} a journey")
        cmd.add_argument("journey_id")
        cmd.set_defaults(run=_status, status_action=action)
    sim = jsub.add_parser(
        "simulate", parents=[common], help="run a journey over historic events, simulated"
    )
    sim.add_argument("file", type=Path, help="the journey file")
    sim.add_argument("--events", type=Path, required=True, help="JSONL of Segment-shaped events")
    sim.add_argument("--until", default="0s", help="time to let pass after the last event")
    sim.add_argument("--policy", type=Path, help="policy file (default: none)")
    sim.add_argument("--templates", type=Path, help="render with these templates")
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.set_defaults(run=_simulate)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    from safar.definitions import validate_paths

    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        print(f"{path}: does not exist", file=sys.stderr)
    problems = validate_paths([p for p in args.paths if p.exists()], args.templates)
    for problem in problems:
        print(str(problem), file=sys.stderr)
    if problems or missing:
        print(f"{len(problems) + len(missing)} problem(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


def _read_journey(path: Path, settings: Settings) -> Any:
    from safar.definitions import DefinitionError, parse_journey, validate_paths

    problems = validate_paths([path], Path(settings.journeys.templates_dir))
    if problems:
        raise ValidationError("\n".join(str(p) for p in problems))
    try:
        return parse_journey(path.read_text(encoding="utf-8"), str(path))
    except DefinitionError as exc:
        raise ValidationError(exc.message) from exc


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from safar.model.journeys import Migration
    from safar.runtime.catalog import publish
    from safar.stores.bundle import open_stores

    journey = _read_journey(args.file, settings)
    mapping: dict[str, str] = {}
    for item in args.map:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ValidationError(f"--map takes OLD=NEW, got {item!r}")
        mapping[old] = new
    migration = Migration(mode="move", steps=mapping) if args.move else None
    clock = SystemClock()
    with open_stores(settings, clock) as stores:
        version, changed = publish(stores.journeys, journey, clock.now_ms(), migration)
    if changed:
        print(f"published {version.journey_id} version {version.version}")
    else:
        print(f"{version.journey_id} version {version.version} is already published unchanged")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        newest: dict[str, Any] = {}
        for version in stores.journeys.all():
            newest[version.journey_id] = version
    for version in newest.values():
        print(
            f"{version.journey_id}\tv{version.version}\t{version.status}\t{version.definition.name}"
        )
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from safar.runtime.catalog import set_status
    from safar.stores.bundle import open_stores

    clock = SystemClock()
    with open_stores(settings, clock) as stores:
        version = set_status(stores.journeys, args.journey_id, args.status_action, clock.now_ms())
    print(f"{version.journey_id} version {version.version} is {version.status}")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from safar.definitions import DefinitionError, parse_duration, parse_journey, parse_policy
    from safar.runtime.render import TemplateRenderer
    from safar.runtime.simulate import format_report, read_history, simulate
    from safar.templates import TemplateCatalog

    try:
        journey = parse_journey(args.file.read_text(encoding="utf-8"), str(args.file))
        policy = (
            parse_policy(args.policy.read_text(encoding="utf-8"), str(args.policy))
            if args.policy
            else None
        )
    except DefinitionError as exc:
        raise ValidationError(exc.message) from exc
    try:
        until = parse_duration(args.until)
    except ValueError as exc:
        raise ValidationError(str(exc), "--until") from exc
    render = TemplateRenderer(TemplateCatalog.load(args.templates)) if args.templates else None
    report = simulate(
        journey,
        read_history(args.events),
        origin=args.events,
        until_ms=until,
        policy=policy,
        render=render,
    )
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    else:
        print(format_report(report))
    return 0
