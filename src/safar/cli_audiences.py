"""The ``safar audiences …`` commands: publish segment and computed-trait files, list, archive
and repair them, export a segment's members, preview a draft. They work on the stores directly,
as the API does (:mod:`safar.api.audiences`), and the running worker picks changes up within
seconds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from safar.clock import SystemClock
from safar.config import Settings
from safar.errors import ValidationError

_NOT_AN_AUDIENCE: Final = "neither a segment (no 'where') nor a computed trait (no 'compute')"


def add_audience_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    audiences = sub.add_parser(
        "audiences",
        help="publish, list, archive, repair, export and preview segments and computed traits",
    )
    asub = audiences.add_subparsers(dest="action", required=True)
    publish = asub.add_parser(
        "publish", parents=[common], help="publish segment and computed trait files"
    )
    publish.add_argument("paths", nargs="+", type=Path, help="files or directories")
    publish.set_defaults(run=_publish)
    listing = asub.add_parser(
        "list", parents=[common], help="list segments and computed traits and their state"
    )
    listing.set_defaults(run=_list)
    archive = asub.add_parser(
        "archive", parents=[common], help="archive a segment or computed trait"
    )
    archive.add_argument("audience_id")
    archive.set_defaults(run=_archive)
    repair = asub.add_parser(
        "repair",
        parents=[common],
        help="rebuild segments and computed traits from the stored events",
        description="Ask the worker's audience processor to rebuild these segments and computed"
        " traits from the stored events; it does so in the background, and `list` shows them"
        " computing, then ready.",
    )
    repair.add_argument("audience_ids", nargs="*", metavar="ID", help="what to repair")
    repair.add_argument(
        "--all", action="store_true", help="every published segment and computed trait"
    )
    repair.set_defaults(run=_repair)
    export = asub.add_parser("export", parents=[common], help="write a segment's members")
    export.add_argument("segment_id")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.set_defaults(run=_export)
    preview = asub.add_parser(
        "preview", parents=[common], help="evaluate a draft over every customer's history"
    )
    preview.add_argument("file", type=Path, help="a segment or computed trait file")
    preview.add_argument("--sample", type=int, default=10, help="customers to show")
    preview.add_argument("--limit", type=int, help="evaluate only the first N customers")
    preview.add_argument("--json", action="store_true", help="print the preview as JSON")
    preview.set_defaults(run=_preview)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.audiences import save_checked
    from safar.stores.bundle import open_stores

    definitions, lines, problems = _read_files(args.paths)
    if not problems and not definitions:
        print("no segment or computed trait files found", file=sys.stderr)
        return 1
    if not problems:
        clock = SystemClock()
        with open_stores(settings, clock) as stores:
            problems, saved = save_checked(
                stores.audience_catalog, definitions, lines, clock.now_ms()
            )
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        print(f"{len(problems)} problem(s); nothing published", file=sys.stderr)
        return 1
    for version, changed in saved:
        noun = version.kind.replace("_", " ")
        if changed:
            print(f"published {noun} {version.id} version {version.version}")
        else:
            print(f"{noun} {version.id} version {version.version} is already published unchanged")
    return 0


def _read_files(paths: Sequence[Path]) -> tuple[list[Any], dict[str, dict[str, int]], list[Any]]:
    """The segments and computed traits in ``paths`` (directories are walked for YAML files;
    other definitions met there, such as journeys, are left alone), each file's field lines, and
    the problems of files that could not be read."""
    from safar.definitions import DefinitionError, Problem, audience_kind
    from safar.definitions.audiences import audience_from_node
    from safar.definitions.yamlsource import line_map, load

    definitions: list[Any] = []
    lines: dict[str, dict[str, int]] = {}
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            files = [(file, False) for file in _yaml_files(path)]
        elif path.is_file():
            files = [(path, True)]
        else:
            problems.append(Problem(str(path), 0, "", "no such file or directory"))
            continue
        for file, named in files:
            name = str(file)
            try:
                root = load(file.read_text(encoding="utf-8"), name)
                if audience_kind(root) is None:
                    if named:
                        problems.append(Problem(name, 1, "", _NOT_AN_AUDIENCE))
                    continue
                definitions.append(audience_from_node(root, name))
                lines[name] = line_map(root)
            except DefinitionError as exc:
                problems += exc.problems
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(name, 0, "", f"cannot read the file: {exc}"))
    return definitions, lines, problems


def _yaml_files(directory: Path) -> list[Path]:
    """YAML files under ``directory``, not in hidden or ``templates`` directories."""
    found = []
    for file in sorted(directory.rglob("*")):
        inside = file.relative_to(directory).parts[:-1]
        if any(part.startswith(".") or part == "templates" for part in inside):
            continue
        if file.suffix in (".yaml", ".yml") and file.is_file():
            found.append(file)
    return found


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.audiences import Live, summary_document
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        versions = stores.audience_catalog.all()
        live = Live.read(versions, stores.audiences)
        by_id: dict[str, list[Any]] = {}
        for version in versions:
            by_id.setdefault(version.id, []).append(version)
        rows = [summary_document(v, live, stores.audiences) for _, v in sorted(by_id.items())]
    for row in rows:
        size = row.get("size")
        print(
            "\t".join(
                [
                    row["id"],
                    row["kind"],
                    f"v{row['version']}",
                    row["status"],
                    "-" if size is None else str(size),
                    row["state"] or "-",
                    row["name"] or "",
                ]
            )
        )
    return 0


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.audiences import archive_checked
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        version = archive_checked(stores.audience_catalog, args.audience_id)
    print(f"archived {version.kind.replace('_', ' ')} {version.id} version {version.version}")
    return 0


def _repair(args: argparse.Namespace, settings: Settings) -> int:
    from safar.runtime.audience_catalog import published_ids, repair
    from safar.stores.bundle import open_stores

    if args.all == bool(args.audience_ids):
        raise ValidationError("name the segments and computed traits to repair, or pass --all")
    with open_stores(settings, SystemClock()) as stores:
        catalog = stores.audience_catalog
        wanted = published_ids(catalog) if args.all else args.audience_ids
        requested = repair(catalog, wanted)
    if not requested:
        print("no published segment or computed trait to repair", file=sys.stderr)
    for version, _ in requested:
        noun = version.kind.replace("_", " ")
        print(f"repair requested for {noun} {version.id} version {version.version}")
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.audiences import export_chunks, export_format, require_live_segment
    from safar.stores.bundle import open_stores

    format = export_format(args.format)
    with open_stores(settings, SystemClock()) as stores:
        require_live_segment(stores.audience_catalog, args.segment_id)
        chunks = export_chunks(stores.audiences, stores.profiles, args.segment_id, format)
        if args.output is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return 0
        # newline="": the CSV writer already ends rows with \r\n, as RFC 4180 says.
        with args.output.open("w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
    return 0


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.audiences import MAX_SAMPLE, preview, problems_with_live
    from safar.definitions import DefinitionError, load_audience
    from safar.runtime.warehouse_keeper import WAREHOUSE_FILE, KeptWarehouse
    from safar.stores.bundle import open_stores

    if not 0 <= args.sample <= MAX_SAMPLE:
        raise ValidationError(f"must be 0 to {MAX_SAMPLE}", "--sample")
    if args.limit is not None and args.limit < 1:
        raise ValidationError("must be 1 or more", "--limit")
    name = str(args.file)
    try:
        definition, lines = load_audience(args.file.read_text(encoding="utf-8"), name)
    except DefinitionError as exc:
        raise ValidationError(exc.message) from exc
    except OSError as exc:
        raise ValidationError(f"cannot read {name}: {exc}") from exc
    clock = SystemClock()
    with open_stores(settings, clock) as stores:
        versions = stores.audience_catalog.all()
        problems = problems_with_live([definition], {name: lines}, versions)
        if problems:
            raise ValidationError("\n".join(str(p) for p in problems))
        # The file `safar serve` keeps too: each waits for the other's preview to finish.
        warehouse = KeptWarehouse(
            stores.events,
            stores.profiles,
            stores.delivery,
            settings.identity,
            Path(settings.data_dir) / WAREHOUSE_FILE,
        )
        found = preview(
            definition,
            versions,
            stores.profiles,
            stores.events,
            stores.delivery,
            clock.now_ms(),
            limit=args.limit,
            sample=args.sample,
            warehouse=warehouse,
        )
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(found), indent=2).decode())
    else:
        print(_describe(definition.id, found))
    return 0


def _describe(audience_id: str, found: dict[str, Any]) -> str:
    """A preview for people: the numbers, then the sample a line each."""
    took = f"{found['evaluated']:,} customers evaluated in {found['took_ms']:,} ms"
    if "size" in found:
        lines = [f"{audience_id}: {found['size']:,} members ({took})"]
        lines += [f"  {p['id']}  {_refs(p['identifiers'])}" for p in found["sample"]]
        return "\n".join(lines)
    summary = found["summary"]
    lines = [f"{audience_id}: {summary['count']:,} customers with a value ({took})"]
    if summary["min"] is not None:
        lines.append(f"  min {summary['min']}, max {summary['max']}")
    lines += [f"  {top['count']:>8,}  {top['value']}" for top in summary["top"]]
    lines += [
        f"  {s['profile_id']}  {_refs(s['identifiers'])}  = {s['value']!r}" for s in found["sample"]
    ]
    return "\n".join(lines)


def _refs(identifiers: dict[str, list[str]]) -> str:
    return " ".join(f"{kind}:{values[0]}" for kind, values in sorted(identifiers.items()) if values)
