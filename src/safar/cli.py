"""The ``safar`` command. Every subcommand takes ``--data-dir`` and ``--config``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from safar.cli_audiences import add_audience_commands
from safar.cli_journeys import add_journey_commands
from safar.clock import SystemClock
from safar.config import Settings, load_settings
from safar.errors import ConfigError, SafarError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_file=args.config, data_dir=args.data_dir)
        code: int = args.run(args, settings)
        return code
    except SafarError as exc:
        print(f"safar: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default: $SAFAR_DATA_DIR or ./.safar)")
    common.add_argument(
        "--config", help="safar.toml to read (default: $SAFAR_CONFIG or ./safar.toml)"
    )

    parser = argparse.ArgumentParser(prog="safar", description="Customer journey orchestration.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the API and workers")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8088; 0 picks a free one)")
    serve.add_argument(
        "--role",
        choices=["all", "api", "worker"],
        default="all",
        help="all: API and workers (default); api: HTTP only; worker: processing only",
    )
    serve.add_argument("--no-profiles", action="store_true", help="the same as --role api")
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", parents=[common], help="seed a synthetic shop, then serve it")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--customers", type=int, default=10_000)
    demo.add_argument("--no-serve", action="store_true", help="seed only")
    demo.set_defaults(run=_demo)

    sources = sub.add_parser("sources", help="event sources and their write keys")
    sources_sub = sources.add_subparsers(dest="action", required=True)
    create = sources_sub.add_parser("create", parents=[common], help="create a source")
    create.add_argument("name")
    create.set_defaults(run=_sources_create)
    listing = sources_sub.add_parser("list", parents=[common], help="list sources")
    listing.set_defaults(run=_sources_list)

    keys = sub.add_parser("keys", help="management API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    key_create = keys_sub.add_parser("create", parents=[common], help="create an API key")
    key_create.add_argument("--scope", choices=["admin", "read", "write"], required=True)
    key_create.add_argument("--name", default="cli")
    key_create.set_defaults(run=_keys_create)

    imp = sub.add_parser("import", parents=[common], help="import a JSONL or CSV file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--source", default="import", help="source name (created if missing)")
    imp.add_argument(
        "--traits",
        action="store_true",
        help="read a JSONL file as trait records (identifiers and traits, one person a line,"
        " as CRMs export them) rather than Segment events; CSV files always are",
    )
    imp.set_defaults(run=_import)

    profiles = sub.add_parser("profiles", help="unified customer profiles")
    profiles_sub = profiles.add_subparsers(dest="action", required=True)
    show = profiles_sub.add_parser("show", parents=[common], help="show a profile by TYPE:VALUE")
    show.add_argument("ref", help="e.g. user_id:42 or email:sara@example.com")
    show.add_argument("--events", type=int, default=10, help="how many recent events to show")
    show.set_defaults(run=_profiles_show)

    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy this embedded installation into PostgreSQL (Safar stopped), verified",
    )
    migrate.add_argument("--to", required=True, metavar="URL", help="postgresql://… (empty)")
    migrate.set_defaults(run=_migrate)

    add_journey_commands(sub, common)
    add_audience_commands(sub, common)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="action", required=True)
    ingest = bench_sub.add_parser("ingest", parents=[common], help="HTTP ingestion benchmark")
    ingest.add_argument("--events", type=int, default=1_000_000)
    ingest.add_argument("--batch", type=int, default=100)
    ingest.add_argument("--connections", type=int, default=8)
    ingest.add_argument("--users", type=int, default=100_000)
    ingest.add_argument(
        "--no-profiles", action="store_true", help="measure ingestion alone, no profile processor"
    )
    ingest.add_argument(
        "--postgres", metavar="URL", help="run on a scratch schema of this PostgreSQL database"
    )
    ingest.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run --role api beside this many --role worker processes (default: --role all)",
    )
    ingest.add_argument(
        "--only",
        choices=["profiles"],
        help="profiles: the profile processor alone over the same events, no HTTP",
    )
    ingest.add_argument(
        "--profile-batch",
        type=int,
        default=20_000,
        help="with --only profiles: events per processor batch (the worker's cap)",
    )
    ingest.add_argument(
        "--repeat", type=int, default=1, help="with --only profiles: runs, each on a fresh store"
    )
    ingest.add_argument(
        "--pipeline",
        choices=["auto", "on", "off"],
        default="auto",
        help="with --only profiles: apply each batch on a thread of its own while the next is"
        " computed (ADR 16); auto: as a worker would on this machine",
    )
    ingest.add_argument("--json", action="store_true", help="print the result as JSON")
    ingest.set_defaults(run=_bench_ingest)
    journeys = bench_sub.add_parser("journeys", parents=[common], help="journey engine benchmarks")
    journeys.add_argument("--customers", type=int, default=100_000)
    journeys.add_argument("--latency-seconds", type=float, default=30.0)
    journeys.add_argument("--latency-rate", type=float, default=5_000.0, help="events/s")
    journeys.add_argument("--waiting", type=int, default=1_000_000)
    journeys.add_argument("--dbos-customers", type=int, default=2_000)
    journeys.add_argument(
        "--only", choices=["e2e", "latency", "waiting", "dbos"], help="run one part only"
    )
    journeys.add_argument(
        "--postgres",
        metavar="URL",
        help="run e2e and latency on scratch schemas of this PostgreSQL database, DBOS beside it",
    )
    journeys.add_argument(
        "--bus", metavar="URL", help="latency with a work feed: nats://… or sqlite: (ADR 15)"
    )
    journeys.add_argument("--json", action="store_true", help="print the result as JSON")
    journeys.set_defaults(run=_bench_journeys)
    parts = bench_sub.add_parser(
        "partitions", parents=[common], help="journeys stepped by 0, 1 and 2 partition owners"
    )
    parts.add_argument(
        "--postgres", metavar="URL", help="scratch schemas here (default: SQLite, SQLite feed)"
    )
    parts.add_argument(
        "--nats", metavar="URL", help="with --postgres: NATS JetStream (default: a private one)"
    )
    parts.add_argument("--customers", type=int, default=20_000)
    parts.add_argument(
        "--owners", default="0,1,2", help="partition owners per run, comma-separated (0: none)"
    )
    parts.add_argument("--repeat", type=int, default=1, help="turns; each reports its median")
    parts.add_argument(
        "--audiences", action="store_true", help="with segments and computed traits kept current"
    )
    parts.add_argument("--json", action="store_true", help="print the result as JSON")
    parts.set_defaults(run=_bench_partitions)
    cel = bench_sub.add_parser("cel", parents=[common], help="CEL conditions against peers")
    cel.add_argument("--iterations", type=int, default=200_000)
    cel.add_argument("--json", action="store_true", help="print the result as JSON")
    cel.set_defaults(run=_bench_cel)
    audiences = bench_sub.add_parser(
        "audiences",
        parents=[common],
        help="segment recompute, incremental audience costs and previews",
    )
    audiences.add_argument("--profiles", type=int, default=1_000_000, help="recompute profiles")
    audiences.add_argument("--events", type=int, default=10_000_000, help="recompute events")
    audiences.add_argument("--live-profiles", type=int, default=20_000)
    audiences.add_argument("--live-events", type=int, default=200_000)
    audiences.add_argument("--preview-profiles", type=int, default=50_000)
    audiences.add_argument("--preview-events", type=int, default=500_000)
    audiences.add_argument("--only", choices=["recompute", "incremental", "preview"])
    audiences.add_argument("--json", action="store_true", help="print the result as JSON")
    audiences.set_defaults(run=_bench_audiences)
    return parser


def _with_server(args: argparse.Namespace, settings: Settings) -> Settings:
    server = settings.server
    if args.host is not None:
        server.host = args.host
    if args.port is not None:
        server.port = args.port
    return settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from safar.runtime.serve import serve

    serve(_with_server(args, settings), role="api" if args.no_profiles else args.role)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from safar.demo.seed import demo_settings, seed_demo
    from safar.runtime.serve import serve

    settings = demo_settings(_with_server(args, settings))
    info = seed_demo(settings, customers=args.customers)
    if args.no_serve:
        return 0

    def announce(url: str) -> None:
        print(info.banner(url, settings.channels.console_path), flush=True)

    serve(settings, announce=announce)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from safar.stores.migrate import migrate_to_postgres
    from safar.stores.postgres.db import is_postgres_url, redact

    if not is_postgres_url(args.to):
        raise ConfigError(
            f"--to must be a postgresql:// URL naming the database to move into, not {args.to!r}"
        )
    if settings.storage.url:
        raise ConfigError(
            "migrate moves an embedded installation, but storage.url already names a database"
            f" ({redact(settings.storage.url)}): unset storage.url (and SAFAR_STORAGE_URL) to"
            f" move the installation in {settings.data_dir}"
        )
    copied = migrate_to_postgres(settings, args.to, SystemClock())
    events, tables = copied[0], copied[1:]
    # The URL is shown redacted: it may hold a password, and this output ends up in logs.
    print(
        f"Verified {events.rows} events and {len(tables)} tables"
        f" ({sum(t.rows for t in tables)} rows) in {redact(args.to)}."
    )
    print("Start Safar with storage.url set to that URL (SAFAR_STORAGE_URL).")
    if not settings.journeys.link_secret_file and settings.secret_path.exists():
        print(
            f"Copy {settings.secret_path} to where journeys.link_secret_file points, so links"
            " in messages already sent keep working."
        )
    return 0


def _sources_create(args: argparse.Namespace, settings: Settings) -> int:
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        source = stores.keys.create_source(args.name)
    print(f"Created source {source.name} ({source.id}). Its write key:")
    print(source.write_key)
    return 0


def _sources_list(args: argparse.Namespace, settings: Settings) -> int:
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        for source in stores.keys.list_sources():
            print(f"{source.id}\t{source.name}\t{source.write_key}")
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        key, secret = stores.keys.create_api_key(args.name, args.scope)
    print(f"Created API key {key.id} with scope {key.scope}. Its secret (shown once):")
    print(secret)
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from safar.ingest.importer import ImportReport, import_file
    from safar.stores.bundle import open_stores

    if not args.file.exists():
        print(f"safar: {args.file} does not exist", file=sys.stderr)
        return 2
    clock = SystemClock()

    def progress(done: int, total: int, report: ImportReport) -> None:
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        print(
            f"\r[{bar:<30}] {done:,}/{total:,} lines, {report.accepted:,} stored, "
            f"{len(report.rejected):,} rejected",
            end="",
            file=sys.stderr,
            flush=True,
        )

    with open_stores(settings, clock) as stores:
        source = next((s for s in stores.keys.list_sources() if s.name == args.source), None)
        source = source or stores.keys.create_source(args.source)
        report = import_file(
            args.file,
            events=stores.events,
            source_id=source.id,
            clock=clock,
            limits=settings.ingest,
            identity=settings.identity,
            progress=progress,
            traits=args.traits,
        )
    print(file=sys.stderr)
    for line_no, reason in report.rejected:
        # Reasons start with their location ("line 3.userId: ..."): say the line once.
        detail = reason.removeprefix(f"line {line_no}").lstrip(".: ")
        print(f"rejected line {line_no}: {detail}", file=sys.stderr)
    print(
        f"{report.accepted:,} events stored, {report.duplicates:,} duplicates skipped, "
        f"{len(report.rejected):,} lines rejected, from {report.lines:,} lines"
    )
    return 1 if report.rejected else 0


def _profiles_show(args: argparse.Namespace, settings: Settings) -> int:
    from safar.api.profiles import identifier_from_ref, profile_document
    from safar.core.identity import IdentityRules
    from safar.stores.bundle import open_stores

    with open_stores(settings, SystemClock()) as stores:
        identifier = identifier_from_ref(args.ref, IdentityRules(settings.identity))
        profile = stores.profiles.find(identifier)
        if profile is None:
            print(f"safar: no profile holds {args.ref}", file=sys.stderr)
            return 1
        document = profile_document(profile, stores.profiles.processed_seq())
        seqs = stores.profiles.timeline(profile.id, args.events)
        document["recent_events"] = [event.payload() for event in stores.events.get(seqs)][::-1]
    print(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
    return 0


def _bench_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from safar.bench.ingest import run_ingest_bench

    if args.only == "profiles":
        from safar.bench.profiles import run_profiles_bench

        return run_profiles_bench(
            settings,
            events=args.events,
            users=args.users,
            batch=args.profile_batch,
            repeat=args.repeat,
            postgres=args.postgres,
            as_json=args.json,
            pipelined={"auto": None, "on": True, "off": False}[args.pipeline],
        )
    return run_ingest_bench(
        settings,
        events=args.events,
        batch=args.batch,
        connections=args.connections,
        users=args.users,
        profiles=not args.no_profiles,
        as_json=args.json,
        postgres=args.postgres,
        workers=args.workers,
    )


def _bench_journeys(args: argparse.Namespace, settings: Settings) -> int:
    from safar.bench.journeys import PARTS, run_journeys_bench

    return run_journeys_bench(
        settings,
        customers=args.customers,
        latency_seconds=args.latency_seconds,
        latency_rate=args.latency_rate,
        waiting=args.waiting,
        dbos_customers=args.dbos_customers,
        parts=(args.only,) if args.only else PARTS,
        as_json=args.json,
        postgres=args.postgres,
        bus=args.bus,
    )


def _bench_partitions(args: argparse.Namespace, settings: Settings) -> int:
    from safar.bench.partitions import run_partitions_bench

    try:
        owners = tuple(int(n) for n in args.owners.split(","))
    except ValueError:
        raise ConfigError(f"--owners takes counts like 0,1,2, not {args.owners!r}") from None
    if args.nats and not args.postgres:
        raise ConfigError("--nats goes with --postgres (without, the feed is a SQLite file)")
    return run_partitions_bench(
        args.postgres,
        args.nats,
        customers=args.customers,
        owners=owners,
        repeat=args.repeat,
        as_json=args.json,
        audiences=args.audiences,
    )


def _bench_cel(args: argparse.Namespace, settings: Settings) -> int:
    from safar.bench.cel import format_table, run

    result = run(args.iterations)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        rows = result["rows"]
        assert isinstance(rows, list)
        print(f"{result['machine']}, Python {result['python']}")
        print(format_table(rows))
    return 0


def _bench_audiences(args: argparse.Namespace, settings: Settings) -> int:
    from safar.bench import audiences as bench

    found: dict[str, object] = {}
    if args.only in (None, "recompute"):
        recompute = bench.run_recompute(args.profiles, args.events)
        found["recompute"] = recompute
        if not args.json:
            print(bench.format_recompute(recompute), flush=True)
    if args.only in (None, "incremental"):
        incremental = bench.run_incremental(args.live_profiles, args.live_events)
        found["incremental"] = incremental
        if not args.json:
            print(bench.format_incremental(incremental), flush=True)
    if args.only in (None, "preview"):
        previews = bench.run_preview(args.preview_profiles, args.preview_events)
        found["preview"] = previews
        if not args.json:
            print(bench.format_preview(previews))
    if args.json:
        print(msgspec.json.encode(found).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
