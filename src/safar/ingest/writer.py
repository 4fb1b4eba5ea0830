"""Group commit: many concurrent requests' events written in few, larger transactions.

A durable append costs about the same for 1 event as for 100 (the commit's fsync dominates), so
one dedicated thread takes every submission waiting when it gets to run and appends them in one
:meth:`~safar.ports.EventLog.append` call. Under load, submissions pile up while a commit is in
flight and the next commit takes them all; when idle, a lone request is written at once. The event
loop never blocks on storage, and the event log sees one writer thread (which suits SQLite).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from types import TracebackType
from typing import Final

from safar.model.events import AppendResult, Event
from safar.ports import EventLog

_log = logging.getLogger(__name__)

#: Most events one commit takes (several waiting submissions are joined up to this many).
DEFAULT_MAX_GROUP_EVENTS: Final = 20_000


class _Submission:
    __slots__ = ("events", "future", "loop")

    def __init__(
        self,
        events: list[Event],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[AppendResult],
    ) -> None:
        self.events = events
        self.loop = loop
        self.future = future


class IngestWriter:
    """Appends events to an :class:`~safar.ports.EventLog` from one writer thread, in groups.

    Call :meth:`start` before :meth:`append` and :meth:`close` when done (or use ``with``).
    """

    def __init__(
        self, event_log: EventLog, *, max_group_events: int = DEFAULT_MAX_GROUP_EVENTS
    ) -> None:
        self._log = event_log
        self._max_group = max_group_events
        self._pending: deque[_Submission] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread."""
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("IngestWriter already started")
            self._thread = threading.Thread(
                target=self._run, name="safar-ingest-writer", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop taking submissions, write the ones already submitted, and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def __enter__(self) -> IngestWriter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def append(self, events: list[Event]) -> AppendResult:
        """Durably append ``events``; returns once they are committed.

        The result is that of the group commit the events were part of: under concurrent load its
        counts include other callers' events, and ``last_seq`` is the group's highest ``seq``
        (every event up to it is committed). If the append fails, every caller in the group gets
        the exception, and none of the group's events was stored.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        with self._cond:
            if self._thread is None or self._closing:
                raise RuntimeError("IngestWriter is not running (start() it; not after close())")
            self._pending.append(_Submission(events, loop, future))
            self._cond.notify()
        return await future

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    group = self._take_group()
                self._commit(group)
        finally:
            # Only reached with work left if the thread is dying (e.g. SystemExit inside an
            # append): refuse new work and release everyone still waiting.
            with self._cond:
                self._closing = True
                leftover = list(self._pending)
                self._pending.clear()
            if leftover:
                _notify(leftover, None, RuntimeError("the ingest writer stopped"))

    def _take_group(self) -> list[_Submission]:
        pending = self._pending
        group = [pending.popleft()]
        size = len(group[0].events)
        while pending and size + len(pending[0].events) <= self._max_group:
            submission = pending.popleft()
            size += len(submission.events)
            group.append(submission)
        return group

    def _commit(self, group: list[_Submission]) -> None:
        if len(group) == 1:
            events = group[0].events
        else:
            events = [event for submission in group for event in submission.events]
        try:
            result = self._log.append(events)
        except Exception as exc:  # every caller in the group gets it; the thread lives on
            _notify(group, None, exc)
        except BaseException as exc:
            # SystemExit and the like end the thread; callers get an error asyncio can carry.
            _notify(group, None, RuntimeError(f"the ingest writer stopped: {exc!r}"))
            raise
        else:
            _notify(group, result, None)


def _notify(
    group: list[_Submission], result: AppendResult | None, error: BaseException | None
) -> None:
    """Resolve each submission's future on its own event loop, from the writer thread."""
    # One wake-up per event loop, not per caller: fewer cross-thread calls under load.
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[AppendResult]]] = {}
    for submission in group:
        by_loop.setdefault(submission.loop, []).append(submission.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futures, result, error)
        except RuntimeError:
            _log.warning("ingest writer: an event loop closed before its append finished")


def _settle(
    futures: list[asyncio.Future[AppendResult]],
    result: AppendResult | None,
    error: BaseException | None,
) -> None:
    for future in futures:
        if future.done():  # the caller was cancelled (e.g. the client went away)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)
