"""One NATS connection with JetStream, called from Safar's threads.

The connection reconnects forever (a NATS restart is survived without reopening anything); while
it is down, every request fails after ``timeout_s`` with a retryable
:class:`~safar.errors.StoreError` instead of hanging, and the caller's retry loop does the rest.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, JetStreamManager

from safar.errors import StoreError
from safar.stores.nats.loop import LoopThread

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Between two reconnection attempts: short, so a restarted server is found again quickly.
RECONNECT_WAIT_S = 0.5


class NatsConnection:
    """A connected NATS client on a private loop (:class:`~safar.stores.nats.loop.LoopThread`).

    :meth:`call` runs a coroutine using :attr:`js` / :attr:`jsm` and translates the driver's
    failures into :class:`~safar.errors.StoreError`.
    """

    def __init__(self, url: str, *, timeout_s: float, name: str) -> None:
        self.url = url
        self.timeout_s = timeout_s
        # One call may make several requests, each bounded by timeout_s; this bound only
        # catches a loop that stopped answering.
        self._call_bound_s = 60.0 + 10 * timeout_s
        self._runner = LoopThread(f"safar-nats-{name}")
        self._closing = False
        self.client = Client()
        try:
            self.call(self._connect(name), "connect")
        except BaseException:
            self._runner.stop()
            raise
        self.js: JetStreamContext = self.client.jetstream(timeout=timeout_s)
        self.jsm: JetStreamManager = self.client.jsm(timeout=timeout_s)

    def call(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` on the connection's loop; driver errors become
        :class:`~safar.errors.StoreError` naming ``what`` was being done. While the client
        is reconnecting it fails at once: waiting ``timeout_s`` for an answer that cannot come
        would only hold the caller up (the stepper, say, which has other work)."""
        if self.client.is_reconnecting:
            coro.close()
            raise StoreError(
                f"NATS {what} failed at {redact(self.url)}: not connected (reconnecting)"
            )
        try:
            return self._runner.call(coro, self._call_bound_s)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise StoreError(f"NATS {what} failed at {redact(self.url)}: {describe(exc)}") from exc

    def close(self) -> None:
        """Flush and close the connection, then stop the loop. Idempotent."""
        try:
            self._runner.call(self._close(), self._call_bound_s)
        except Exception as exc:  # closing is best effort: the process may be going down
            log.debug("closing the NATS connection to %s: %s", redact(self.url), exc)
        finally:
            self._runner.stop()

    async def _connect(self, name: str) -> None:
        options: dict[str, Any] = {
            "servers": [server.strip() for server in self.url.split(",")],
            "name": f"safar-{name}",
            "connect_timeout": max(1, math.ceil(self.timeout_s)),
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        try:
            # With reconnection forever, connect() itself retries forever when nothing answers.
            await asyncio.wait_for(self.client.connect(**options), self.timeout_s)
        except BaseException:
            self._closing = True
            await self.client.close()
            raise

    async def _close(self) -> None:
        self._closing = True
        if self.client.is_closed:
            return
        try:
            await asyncio.wait_for(self.client.drain(), self.timeout_s)
        except (nats.errors.Error, TimeoutError):
            await self.client.close()

    async def _on_error(self, exc: Exception) -> None:
        # Called for every failed reconnection attempt too: quiet, the callers see StoreErrors.
        log.debug("NATS at %s: %s", redact(self.url), describe(exc))

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS connection to %s lost; reconnecting", redact(self.url))

    async def _on_reconnected(self) -> None:
        log.info("NATS connection to %s restored", redact(self.url))


def describe(exc: BaseException) -> str:
    """A one-line description of a driver error (some have an empty ``str``)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def redact(url: str) -> str:
    """``url`` (or a comma-separated list of them) without passwords or tokens, for messages."""
    return ",".join(_redact_one(part.strip()) for part in url.split(","))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}:{parts.port}" if parts.port else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
