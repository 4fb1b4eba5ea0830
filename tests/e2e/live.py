"""A real ``safar serve`` in a subprocess on an ephemeral loopback port, driven by the CLI."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from base64 import b64encode
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from safar.config import Settings, load_settings
from safar.testing import wait_until


def safar(
    data_dir: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``safar`` CLI against ``data_dir``, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "safar.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


class LiveServer:
    """Start with :meth:`start`, stop with :meth:`stop` or :meth:`kill` (SIGKILL, no clean-up).

    ``env`` is added to the server's and the CLI's environment (``SAFAR_STORAGE_URL`` picks
    PostgreSQL)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.write_key = last_line(self.cli("sources", "create", "test-site"))
        self.api_key = last_line(self.cli("keys", "create", "--scope", "read"))

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``safar`` CLI on this server's installation."""
        return safar(self.data_dir, *args, stdin=stdin, env=self.env)

    def settings(self) -> Settings:
        """The settings the server runs with, to open its stores in the test."""
        return load_settings(data_dir=self.data_dir, environ=self.env)
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def basic(self) -> str:
        """The ``Authorization`` header value of this server's write key."""
        return "Basic " + b64encode(f"{self.write_key}:".encode()).decode()

    def start(self, role: str = "all") -> LiveServer:
        cmd = [sys.executable, "-m", "safar.cli", "serve", "--port", "0", "--role", role]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "SAFAR_STORAGE_SYNCHRONOUS": "normal", **self.env},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"server did not start: {line!r}"
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self._close()

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, msgspec.json.decode(data) if data else None

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path, headers={"Authorization": f"Bearer {self.api_key}"})

    def wait_processed(self, timeout: float = 60) -> None:
        """Wait until the profile processor has applied every event in the log."""

        def caught_up() -> bool:
            _, health = self.request("GET", "/healthz")
            return bool(health["events"] > 0 and health["processed_seq"] >= health["events"])

        wait_until(caught_up, timeout=timeout, what="profiles reflect every event")

    def profile(self, ref: str) -> tuple[int, Any]:
        return self.get(f"/v1/profiles/{quote(ref, safe=':')}")

    def events(self, ref: str, limit: int = 100) -> list[dict[str, Any]]:
        status, body = self.get(f"/v1/profiles/{quote(ref, safe=':')}/events?limit={limit}")
        assert status == 200, body
        items: list[dict[str, Any]] = body["data"]
        return items
