"""``safar serve``: the HTTP API in this process, the worker (profiles, journeys, delivery) in
child processes.

Separate processes, because one Python process runs on one core: the API (parsing, validation,
durable append), the stepper and the dispatcher each get a core of their own. Children watch
their parent and stop when it is gone, so a killed server leaves no orphan behind.

``--role`` splits these for scale-out (docs/deploy.md): ``api`` serves HTTP only, ``worker``
runs the children only, ``all`` (the default) both. Any number of each may share a PostgreSQL
installation; workers share the stepper through a lease (:mod:`safar.runtime.leases`), and with
a work feed (``bus.url``) a third child steps the journeys of the partitions the worker holds
(:mod:`safar.runtime.partitioned`). ``--role all`` also runs a low-priority child keeping the
previews' warehouse caught up (:func:`safar.runtime.warehouse_keeper.keep_warm`).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from safar.clock import SystemClock
from safar.config import Settings
from safar.errors import ConfigError
from safar.ports import Clock, WorkFeed
from safar.stores.bundle import open_feed, open_stores


def serve(
    settings: Settings,
    *,
    clock: Clock | None = None,
    announce: Callable[[str], None] | None = None,
    role: str = "all",
) -> None:
    """Serve ``role`` (see the module docstring) until interrupted. ``announce`` receives the
    base URL once the socket is bound (or, for a worker, a line saying it runs)."""
    import uvicorn

    from safar.app import create_app

    if role not in SERVE_ROLES:
        raise ConfigError(f"unknown role {role!r}: choose one of {', '.join(SERVE_ROLES)}")
    if role == "worker":
        run_workers(settings, announce=announce)
        return
    clock = clock or SystemClock()
    stores = open_stores(settings, clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.server.host, settings.server.port))
    except OSError as exc:
        sock.close()
        stores.close()
        raise ConfigError(
            f"cannot listen on {settings.server.host}:{settings.server.port} ({exc.strerror});"
            " pass --port with a free port, or --port 0 to pick one"
        ) from exc
    # Listen before announcing: connections made before uvicorn is up wait in the backlog.
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    # Links in messages point at where this server really listens (``--port 0`` included).
    settings.journeys.public_url = settings.journeys.public_url or url
    roles = child_roles(settings) if role == "all" else ()
    if role == "all" and settings.server.warehouse_refresh_seconds > 0:
        roles = (*roles, WAREHOUSE)
    children = [ChildProcess(settings, child) for child in roles]
    try:
        for child in children:
            child.start()
        app = create_app(stores=stores, settings=settings, clock=clock)
        tune_gc()
        config = uvicorn.Config(
            app,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            http="httptools",
            access_log=False,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        (announce or _print)(url)
        server.run(sockets=[sock])
    finally:
        for child in children:
            child.stop()
        stores.close()
        sock.close()


def run_workers(settings: Settings, *, announce: Callable[[str], None] | None = None) -> None:
    """``--role worker``: the stepper and the dispatcher in child processes, until this
    process is interrupted (Ctrl-C or SIGTERM)."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    roles = child_roles(settings)
    children = [ChildProcess(settings, child) for child in roles]
    try:
        for child in children:
            child.start()
        (announce or print)(f"Safar worker running ({', '.join(roles)}); Ctrl-C stops it")
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.stop()
        signal.signal(signal.SIGTERM, previous)


def tune_gc() -> None:
    """Make the cyclic garbage collector rarer in long-running server processes.

    Ingestion and profile processing allocate many short-lived containers per event; with the
    default threshold (700) the collector runs every few events and its full passes walk every
    long-lived object (caches, modules). ``freeze`` moves what start-up created out of its sight.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@contextlib.contextmanager
def server_gc() -> Iterator[None]:
    """The collector as :func:`tune_gc` sets it, for a benchmark timing a server's work in
    its own process; as it was again afterwards."""
    thresholds = gc.get_threshold()
    gc.collect()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _print(url: str) -> None:
    print(f"Safar is listening on {url}", flush=True)


#: The child processes ``safar serve`` runs beside the API: the stepper (profiles, journeys,
#: timers) and the dispatcher (policy gate, rendering, channels). Separate processes, because a
#: Python process runs on one core and both are CPU-bound under load (ADR 4).
ROLES = ("worker", "dispatcher")
#: The child stepping journeys per work-feed partition (only with ``bus.url``).
PARTITIONS = "partitions"
#: The low-priority child keeping the previews' warehouse caught up (``--role all`` only: the
#: API reads it from this machine's data directory).
WAREHOUSE = "warehouse"
#: Seconds between attempts to open the work feed.
FEED_RETRY_S = 1.0
#: What ``safar serve --role`` accepts.
SERVE_ROLES = ("all", "api", "worker")
#: How often the dispatcher process looks for due messages when idle.
DISPATCH_POLL = 0.01


class ChildProcess:
    """One role in a child process (spawned, so it shares no state with the API)."""

    def __init__(self, settings: Settings, role: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        # A pipe, not a multiprocessing.Event: it needs no semaphore, and the child also sees it
        # close when this process dies.
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=run_child,
            args=(role, msgspec.json.encode(settings), self._reader, os.getpid()),
            name=f"safar-{role}",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._writer.send_bytes(b"stop")
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
        self._writer.close()
        self._reader.close()


def run_child(role: str, encoded_settings: bytes, stop: Connection, parent_pid: int) -> None:
    """Child-process entry point: run ``role`` (see :data:`ROLES`) until told to stop."""
    from safar.runtime.leases import SEGMENT_EXPORT, held_lease, process_owner
    from safar.runtime.segment_export import build_exporter
    from safar.runtime.worker import Worker, build_dispatcher

    settings = msgspec.json.decode(encoded_settings, type=Settings)
    clock = SystemClock()
    stores = open_stores(settings, clock)
    halt = threading.Event()
    owner = process_owner(role)

    def watch() -> None:
        # Stop when asked, or when the parent died (e.g. kill -9) and we were re-parented.
        while not halt.is_set():
            try:
                asked = stop.poll(0.5)
            except (EOFError, OSError):
                asked = True
            if asked or os.getppid() != parent_pid:
                halt.set()

    watcher = threading.Thread(target=watch, name="safar-parent-watch", daemon=True)
    watcher.start()
    tune_gc()
    try:
        if role == WAREHOUSE:
            from safar.runtime.warehouse_keeper import WAREHOUSE_FILE, KeptWarehouse, keep_warm

            _lowest_priority()
            kept = KeptWarehouse(
                stores.events,
                stores.profiles,
                stores.delivery,
                settings.identity,
                Path(settings.data_dir) / WAREHOUSE_FILE,
            )
            keep_warm(kept, halt, settings.server.warehouse_refresh_seconds)
        elif role == PARTITIONS:
            from safar.runtime.partitioned import PartitionWorker

            opened = _open_feed_waiting(settings, halt)
            if opened is not None:
                try:
                    PartitionWorker(stores, settings, clock, opened, owner=owner).run(halt)
                finally:
                    opened.close()
        elif role == "worker":
            # The feed is opened by the stepper on first use, so a NATS server that is down
            # when the worker starts holds nothing else up.
            feeds: list[WorkFeed] = []

            def feed() -> WorkFeed:
                opened = open_feed(settings)
                assert opened is not None
                feeds.append(opened)
                return opened

            try:
                Worker(
                    stores, settings, clock, owner=owner, feed=feed if settings.bus.url else None
                ).run(halt, dispatch=False)
            finally:
                for opened in feeds:
                    opened.close()
        else:
            # Segment webhooks go out beside the dispatcher, in a thread of their own so a slow
            # endpoint holds up no message.
            lease = held_lease(stores.leases, SEGMENT_EXPORT, owner, clock, settings)
            exporter = build_exporter(stores, settings, clock).start(halt, lease=lease)
            try:
                dispatcher = build_dispatcher(stores, settings, clock, owner=owner)
                dispatcher.run(halt, idle_wait=DISPATCH_POLL)
            finally:
                halt.set()
                exporter.join(timeout=30)
    finally:
        halt.set()
        stores.close()


def child_roles(settings: Settings) -> tuple[str, ...]:
    """The child processes a worker runs: with a work feed, partition owners too."""
    return (*ROLES, PARTITIONS) if settings.bus.url else ROLES


def _open_feed_waiting(settings: Settings, halt: threading.Event) -> WorkFeed | None:
    """The work feed, retried until it opens (NATS may start after Safar) or ``halt``."""
    from safar.errors import StoreError

    while not halt.is_set():
        try:
            feed = open_feed(settings)
            assert feed is not None
            return feed
        except StoreError as exc:
            print(f"safar: cannot open the work feed, will retry: {exc}", file=sys.stderr)
            halt.wait(FEED_RETRY_S)
    return None


def _lowest_priority() -> None:
    """Copying to the warehouse is never more urgent than ingestion, stepping or delivery: on
    Linux the process runs only on a core nothing else wants (``SCHED_IDLE``; nice 10 still
    took a fifth of a core from them under load), elsewhere at nice 10."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(10)
