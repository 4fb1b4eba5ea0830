"""Group commit: one writer thread, submissions coalesced, errors shared, nothing left behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from safar.errors import StoreError
from safar.ingest.writer import IngestWriter
from safar.model.events import AppendResult, Event
from safar.stores.memory.events import MemoryEventLog
from safar.testing import FakeClock

WAIT = 10  # seconds; a bound on waiting for the writer thread, never a sleep


def event(message_id: str) -> Event:
    return Event(
        source_id="src_1",
        message_id=message_id,
        type="track",
        name="e",
        user_id="u1",
        timestamp=1,
        received_at=1,
        body=b"{}",
    )


def events(prefix: str, count: int) -> list[Event]:
    return [event(f"{prefix}{index}") for index in range(count)]


class GatedLog:
    """An event log whose appends wait for ``gate``, recording what each call received."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryEventLog(clock)
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail_with: BaseException | None = None

    def append(self, batch: Sequence[Event]) -> AppendResult:
        self.calls.append([e.message_id for e in batch])
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(WAIT)
        if self.fail_with is not None:
            raise self.fail_with
        return self.inner.append(batch)


@pytest.fixture
def log(clock: FakeClock) -> GatedLog:
    return GatedLog(clock)


async def wait_for(flag: threading.Event) -> None:
    assert await asyncio.to_thread(flag.wait, WAIT)


def test_append_returns_once_the_events_are_in_the_log(clock: FakeClock) -> None:
    log = MemoryEventLog(clock)

    async def main(writer: IngestWriter) -> AppendResult:
        return await writer.append(events("a", 3))

    with IngestWriter(log) as writer:
        result = asyncio.run(main(writer))
    assert result == AppendResult(appended=3, duplicates=0, last_seq=3)
    assert [e.message_id for e in log.read(0, 10)] == ["a0", "a1", "a2"]


def test_waiting_submissions_are_coalesced_into_one_append(log: GatedLog) -> None:
    async def main(writer: IngestWriter) -> list[AppendResult]:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)  # the writer is now busy with "a"
        later = [asyncio.create_task(writer.append(events(p, 2))) for p in "bcd"]
        await asyncio.sleep(0)  # a yield, not a wait: lets the three tasks submit
        log.gate.set()
        return await asyncio.gather(first, *later)

    with IngestWriter(log) as writer:
        results = asyncio.run(main(writer))
    assert log.calls == [["a0"], ["b0", "b1", "c0", "c1", "d0", "d1"]]
    assert log.threads == {"safar-ingest-writer"}
    assert results[0] == AppendResult(1, 0, 1)
    assert results[1:] == [AppendResult(6, 0, 7)] * 3
    assert log.inner.count() == 7


def test_a_group_is_capped_at_max_group_events(log: GatedLog) -> None:
    async def main(writer: IngestWriter) -> None:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)
        later = [asyncio.create_task(writer.append(events(p, 2))) for p in "bcd"]
        await asyncio.sleep(0)
        log.gate.set()
        await asyncio.gather(first, *later)

    with IngestWriter(log, max_group_events=4) as writer:
        asyncio.run(main(writer))
    assert log.calls == [["a0"], ["b0", "b1", "c0", "c1"], ["d0", "d1"]]


def test_a_failed_append_fails_every_caller_in_the_group_and_the_writer_lives_on(
    log: GatedLog,
) -> None:
    async def main(writer: IngestWriter) -> list[BaseException | AppendResult]:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)
        later = [asyncio.create_task(writer.append(events(p, 1))) for p in "bc"]
        await asyncio.sleep(0)
        log.fail_with = StoreError("disk full")
        log.gate.set()
        return await asyncio.gather(first, *later, return_exceptions=True)

    with IngestWriter(log) as writer:
        outcomes = asyncio.run(main(writer))
        assert isinstance(outcomes[0], StoreError)
        assert all(outcome is outcomes[0] for outcome in outcomes)
        assert log.inner.count() == 0
        log.fail_with = None
        assert asyncio.run(writer.append(events("z", 1))).appended == 1


def test_a_cancelled_caller_does_not_disturb_the_others(log: GatedLog) -> None:
    async def main(writer: IngestWriter) -> AppendResult:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)
        gone = asyncio.create_task(writer.append(events("b", 1)))
        kept = asyncio.create_task(writer.append(events("c", 1)))
        await asyncio.sleep(0)
        gone.cancel()
        log.gate.set()
        await first
        return await kept

    with IngestWriter(log) as writer:
        assert asyncio.run(main(writer)).appended == 2
    # The cancelled caller's events were already submitted; they are written (and deduped on
    # retry), which is why a caller must not be told they were lost.
    assert log.calls[1] == ["b0", "c0"]


def test_close_writes_what_was_submitted_and_stops_the_thread(log: GatedLog) -> None:
    writer = IngestWriter(log)
    writer.start()

    async def main() -> AppendResult:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)
        pending = asyncio.create_task(writer.append(events("b", 1)))
        await asyncio.sleep(0)
        closing = asyncio.create_task(asyncio.to_thread(writer.close))
        log.gate.set()
        await closing
        await first
        return await pending

    assert asyncio.run(main()).appended == 1
    assert log.inner.count() == 2
    assert not any(t.name == "safar-ingest-writer" for t in threading.enumerate())


def test_append_needs_a_running_writer(clock: FakeClock) -> None:
    writer = IngestWriter(MemoryEventLog(clock))
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(writer.append(events("a", 1)))
    writer.start()
    with pytest.raises(RuntimeError, match="already started"):
        writer.start()
    writer.close()
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(writer.append(events("a", 1)))


def test_close_without_start_is_harmless(clock: FakeClock) -> None:
    IngestWriter(MemoryEventLog(clock)).close()


def test_callers_on_several_event_loops(clock: FakeClock) -> None:
    log = MemoryEventLog(clock)
    results: list[AppendResult] = []

    def run(prefix: str) -> None:
        results.append(asyncio.run(writer.append(events(prefix, 5))))

    with IngestWriter(log) as writer:
        threads = [threading.Thread(target=run, args=(p,)) for p in "abcd"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert len(results) == 4
    assert log.count() == 20


# The thread is meant to die here; pytest reports any exception ending a thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dying_writer_thread_fails_its_callers_and_refuses_new_work(log: GatedLog) -> None:
    async def main(writer: IngestWriter) -> list[BaseException | AppendResult]:
        first = asyncio.create_task(writer.append(events("a", 1)))
        await wait_for(log.entered)
        later = asyncio.create_task(writer.append(events("b", 1)))
        await asyncio.sleep(0)
        log.fail_with = SystemExit(3)
        log.gate.set()
        return await asyncio.gather(first, later, return_exceptions=True)

    with IngestWriter(log) as writer:
        outcomes = asyncio.run(main(writer))
        assert [type(outcome) for outcome in outcomes] == [RuntimeError, RuntimeError]
        assert "the ingest writer stopped" in str(outcomes[0])
        with pytest.raises(RuntimeError, match="not running"):
            asyncio.run(writer.append(events("c", 1)))
    assert log.inner.count() == 0
