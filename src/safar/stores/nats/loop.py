"""An asyncio loop in a daemon thread, so Safar's threads can call an asyncio driver (nats-py).

Safar's workers are threads with blocking calls; nats-py is asyncio. Each adapter object owns one
loop, run by one thread: a call submits a coroutine to it and waits for the result. Everything
the driver owns (connection, subscriptions, caches the coroutines keep) lives on that one thread,
so it needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long :meth:`LoopThread.stop` waits for pending tasks and the thread to finish.
_STOP_WAIT_S = 5.0


class LoopThread:
    """Runs coroutines on a private event loop in a daemon thread (a stuck driver never keeps
    the process alive at exit)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and return its result, raising what it raises; after
        ``timeout`` seconds the coroutine is cancelled and :class:`TimeoutError` raised."""
        if self._stopped:
            coro.close()
            raise RuntimeError("the adapter is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel what is still running, stop the loop and its thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self._loop).result(_STOP_WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_STOP_WAIT_S)
        if not self._thread.is_alive():
            self._loop.close()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
