"""The EventLog contract (safar.ports.EventLog), run against every adapter."""

from __future__ import annotations

import threading

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.errors import StoreError
from safar.model.events import AppendResult, Event
from safar.ports import EventLog
from safar.testing import FakeClock

from .conftest import Backend, BackendFactory

WINDOW_MS = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def event(message_id: str, *, source_id: str = "src_web", body: bytes | None = None) -> Event:
    if body is None:
        body = b'{"event":"Order Completed","mid":"%s"}' % message_id.encode()
    return Event(
        source_id=source_id,
        message_id=message_id,
        type="track",
        name="Order Completed",
        user_id="u1",
        anonymous_id=None,
        timestamp=T0,
        received_at=T0 + 5,
        body=body,
    )


def message_ids(events: list[Event]) -> list[str]:
    return [e.message_id for e in events]


def read_all(log: EventLog) -> list[Event]:
    return log.read(0, 1_000_000)


# -- append, seq, reads ----------------------------------------------------------------------


def test_empty_log(event_log: EventLog) -> None:
    assert event_log.last_seq() == 0
    assert event_log.count() == 0
    assert event_log.read(0, 10) == []
    assert event_log.get([1, 2]) == []
    assert event_log.append([]) == AppendResult(0, 0, 0)


def test_append_assigns_gap_free_increasing_seqs(event_log: EventLog) -> None:
    assert event_log.append([event("a"), event("b"), event("c")]) == AppendResult(3, 0, 3)
    assert event_log.append([event("d"), event("e")]) == AppendResult(2, 0, 5)
    stored = read_all(event_log)
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert message_ids(stored) == ["a", "b", "c", "d", "e"]
    assert event_log.last_seq() == 5
    assert event_log.count() == 5
    assert event_log.append([]) == AppendResult(0, 0, 5)


def test_events_round_trip_exactly(event_log: EventLog) -> None:
    sent = [
        Event(
            source_id="src_app",
            message_id="msg-سفر-旅程",
            type="identify",
            name=None,
            user_id="کاربر-۴۲",
            anonymous_id="anon-1",
            timestamp=T0 - 1,
            received_at=T0 + 2**40,
            body=b'{"traits":{"name":"\xd8\xb3\xd8\xa7\xd8\xb1\xd8\xa7"}}\x00\xff',
            seq=999,  # ignored: the log assigns seqs
        ),
        Event(
            source_id="src_app",
            message_id="m2",
            type="page",
            name="Home",
            user_id=None,
            anonymous_id=None,
            timestamp=0,
            received_at=1,
            body=b"",
        ),
    ]
    event_log.append(sent)
    expected = [msgspec.structs.replace(e, seq=i) for i, e in enumerate(sent, 1)]
    assert read_all(event_log) == expected
    assert event_log.get([2, 1]) == expected


def test_read_pages_after_seq(event_log: EventLog) -> None:
    event_log.append([event(f"m{i}") for i in range(1, 8)])
    assert [e.seq for e in event_log.read(2, 3)] == [3, 4, 5]
    assert [e.seq for e in event_log.read(5, 100)] == [6, 7]
    assert event_log.read(7, 10) == []
    assert event_log.read(0, 0) == []


def test_get_returns_known_seqs_ascending(event_log: EventLog) -> None:
    event_log.append([event(f"m{i}") for i in range(1, 6)])
    assert [e.seq for e in event_log.get([4, 1, 99, 4, 0])] == [1, 4]
    assert event_log.get([]) == []


def test_large_batches(event_log: EventLog) -> None:
    batch = [event(f"m{i % 4000}") for i in range(5000)]
    assert event_log.append(batch) == AppendResult(4000, 1000, 4000)
    assert event_log.append([event(f"m{i}") for i in range(3500, 4500)]) == AppendResult(
        500, 500, 4500
    )
    assert event_log.count() == 4500
    got = event_log.get(range(1, 4501, 2))
    assert [e.seq for e in got] == list(range(1, 4501, 2))
    assert message_ids(read_all(event_log)) == [f"m{i}" for i in range(4500)]


# -- deduplication ---------------------------------------------------------------------------


def test_duplicate_in_same_call_keeps_first(event_log: EventLog) -> None:
    first_a = event("a", body=b'{"n":1}')
    result = event_log.append([first_a, event("b"), event("a", body=b'{"n":2}'), event("b")])
    assert result == AppendResult(2, 2, 2)
    stored = read_all(event_log)
    assert message_ids(stored) == ["a", "b"]
    assert stored[0].body == first_a.body


def test_duplicate_across_calls(event_log: EventLog) -> None:
    event_log.append([event("a"), event("b")])
    assert event_log.append([event("b"), event("c"), event("a")]) == AppendResult(1, 2, 3)
    assert message_ids(read_all(event_log)) == ["a", "b", "c"]


def test_all_duplicates_report_last_seq(event_log: EventLog) -> None:
    event_log.append([event("a"), event("b")])
    assert event_log.append([event("a"), event("b")]) == AppendResult(0, 2, 2)
    assert event_log.count() == 2


def test_same_message_id_from_another_source_is_not_a_duplicate(event_log: EventLog) -> None:
    result = event_log.append([event("a", source_id="src_web"), event("a", source_id="src_ios")])
    assert result == AppendResult(2, 0, 2)


def test_duplicate_across_clean_restart(event_backend: Backend) -> None:
    event_backend.event_log().append([event("a"), event("b")])
    event_backend.shutdown()
    reopened = event_backend.event_log()
    assert reopened.append([event("a"), event("c"), event("b")]) == AppendResult(1, 2, 3)
    assert message_ids(read_all(reopened)) == ["a", "b", "c"]


def test_duplicate_across_crash(event_backend: Backend) -> None:
    """A restart without a clean shutdown (the first adapter is simply abandoned)."""
    event_backend.event_log().append([event("a"), event("b")])
    reopened = event_backend.event_log()
    assert reopened.append([event("b"), event("a")]) == AppendResult(0, 2, 2)


def test_duplicate_from_another_writer(event_backend: Backend) -> None:
    """Two adapters on the same storage at once, e.g. ``safar import`` beside ``safar serve``."""
    first = event_backend.event_log()
    second = event_backend.event_log()
    first.append([event("a")])
    assert second.append([event("a"), event("b")]) == AppendResult(1, 1, 2)
    assert first.append([event("b"), event("c")]) == AppendResult(1, 1, 3)
    for _ in range(3):  # enough appends for adapters that flush often to do so in between
        first.append([event("d"), event("e")])
        second.append([event("e"), event("f")])
    assert message_ids(read_all(first)) == ["a", "b", "c", "d", "e", "f"]
    assert [e.seq for e in read_all(second)] == [1, 2, 3, 4, 5, 6]


def test_seen_names_keys_appended_within_the_window(
    event_backend: Backend, clock: FakeClock
) -> None:
    first = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    assert first.seen([]) == set()
    first.append([event("a"), event("b", source_id="src_ios")])
    asked = [("src_web", "a"), ("src_web", "b"), ("src_ios", "b"), ("src_web", "c")]
    assert first.seen(asked) == {("src_web", "a"), ("src_ios", "b")}
    # What another writer appended counts too (a dispatcher asks about receipts another wrote).
    second = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    second.append([event("c")])
    assert first.seen(asked) == {("src_web", "a"), ("src_ios", "b"), ("src_web", "c")}
    assert first.append([event("c")]).duplicates == 1


def test_duplicate_within_window_is_skipped(event_backend: Backend, clock: FakeClock) -> None:
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    log.append([event("a")])
    for _ in range(4):
        clock.advance(ms=(WINDOW_MS - 1) // 4)
        log.append([event(f"filler-{clock.now_ms()}")])
    assert log.append([event("a")]).duplicates == 1


def test_message_id_may_return_after_window(event_backend: Backend, clock: FakeClock) -> None:
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    log.append([event("a"), event("b")])
    clock.advance(ms=WINDOW_MS // 2)
    log.append([event("c")])
    clock.advance(ms=WINDOW_MS + WINDOW_MS // 2)
    log.append([event("d")])
    clock.advance(ms=1)  # "a" and "b" are now two windows and 1 ms old
    assert log.append([event("a"), event("b"), event("d")]) == AppendResult(2, 1, 6)
    assert log.append([event("a")]) == AppendResult(0, 1, 6)  # stored again: remembered again


def test_everything_forgotten_after_long_idle(event_backend: Backend, clock: FakeClock) -> None:
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    log.append([event(m) for m in "abcdef"])
    clock.advance(days=30)
    assert log.append([event(m) for m in "uvwxyz"]).appended == 6
    event_backend.shutdown()
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    assert log.append([event(m) for m in "abcdef"]).appended == 6
    assert log.append([event(m) for m in "fedcba"]).duplicates == 6


def test_window_survives_restart(event_backend: Backend, clock: FakeClock) -> None:
    event_backend.event_log(dedupe_window_ms=WINDOW_MS).append([event("a")])
    event_backend.shutdown()
    clock.advance(ms=WINDOW_MS - 1)
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    assert log.append([event("a")]).duplicates == 1
    clock.advance(ms=2 * WINDOW_MS + 1)
    assert log.append([event("a")]).appended == 1


def test_window_holds_through_many_rotations(event_backend: Backend, clock: FakeClock) -> None:
    """Steady traffic over ten windows: repeats within a window are skipped, older ones stored."""
    log = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    step = WINDOW_MS // 3
    for i in range(30):
        batch = [event(f"new-{i}-{j}") for j in range(4)]
        if i >= 2:
            batch += [event(f"new-{i - 2}-0")]  # 2/3 of a window old: a duplicate
        if i >= 7:
            batch += [event(f"new-{i - 7}-1")]  # 7/3 windows old: must be stored again
        result = log.append(batch)
        assert (result.appended, result.duplicates) == (5 if i >= 7 else 4, 1 if i >= 2 else 0)
        clock.advance(ms=step)


def test_expiry_noticed_by_another_writer(event_backend: Backend, clock: FakeClock) -> None:
    first = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    second = event_backend.event_log(dedupe_window_ms=WINDOW_MS)
    first.append([event("a")])
    clock.advance(ms=2 * WINDOW_MS + WINDOW_MS // 2)
    assert second.append([event("b")]).appended == 1
    assert first.append([event("a")]).appended == 1
    assert second.append([event("a")]).duplicates == 1


# -- atomicity and concurrency -----------------------------------------------------------------


def test_failed_append_stores_nothing_and_forgets_nothing(event_backend: Backend) -> None:
    log = event_backend.event_log()
    log.append([event("a")])
    if not event_backend.fail_appends_of("boom"):
        pytest.skip("this backend cannot inject storage failures")
    with pytest.raises(StoreError):
        log.append([event("b"), event("c"), event("boom"), event("d")])
    assert log.count() == 1
    assert log.last_seq() == 1
    # The failed events were not stored, so they are not duplicates now; "a" still is.
    assert log.append([event("b"), event("c"), event("a"), event("d")]) == AppendResult(3, 1, 4)
    assert [e.seq for e in read_all(log)] == [1, 2, 3, 4]


def test_concurrent_appends_stay_whole_and_gap_free(event_log: EventLog) -> None:
    threads, batches, size = 4, 15, 40
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for b in range(batches):
                # Every batch repeats one id of the previous batch: never stored twice.
                ids = [f"t{t}-b{b}-{i}" for i in range(size)] + ([f"t{t}-b{b - 1}-0"] if b else [])
                result = event_log.append([event(m) for m in ids])
                assert (result.appended, result.duplicates) == (size, 1 if b else 0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert not worker.is_alive()
    assert errors == []
    stored = read_all(event_log)
    assert [e.seq for e in stored] == list(range(1, threads * batches * size + 1))
    # Each append's events are contiguous: the batch a message id names changes every `size`.
    batches_in_order = [m.rsplit("-", 1)[0] for m in message_ids(stored)]
    runs = [batches_in_order[i] for i in range(0, len(batches_in_order), size)]
    assert all(
        batches_in_order[i : i + size] == [runs[i // size]] * size
        for i in range(0, len(stored), size)
    )
    assert len(set(runs)) == threads * batches


# -- properties --------------------------------------------------------------------------------

_ids = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
_sources = st.sampled_from(["src_1", "src_2"])
_batch = st.lists(st.tuples(_sources, _ids), max_size=8)
_step = st.one_of(st.tuples(st.just("append"), _batch), st.tuples(st.just("restart"), st.none()))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, max_size=12))
def test_stored_events_are_first_occurrences_in_order(
    make_event_backend: BackendFactory, steps: list[tuple[str, list[tuple[str, str]] | None]]
) -> None:
    backend = make_event_backend()
    log = backend.event_log()
    sent: list[tuple[str, str]] = []
    for _kind, batch in steps:
        if batch is None:
            backend.shutdown()
            log = backend.event_log()
            continue
        before = len(set(sent))
        offset = len(sent)
        sent += batch
        # The body carries the event's position in everything sent, to tell repeats apart.
        result = log.append(
            [event(m, source_id=s, body=b"%d" % (offset + i)) for i, (s, m) in enumerate(batch, 1)]
        )
        new = len(set(sent)) - before
        assert (result.appended, result.duplicates) == (new, len(batch) - new)
    first: dict[tuple[str, str], int] = {}
    for position, key in enumerate(sent, 1):
        first.setdefault(key, position)
    expected = [(key, position) for key, position in first.items()]
    stored = read_all(log)
    got = [((e.source_id, e.message_id), int(e.body)) for e in stored]
    assert got == expected
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))


_timed_step = st.one_of(
    st.tuples(st.just("append"), st.lists(_ids, max_size=4)),
    st.tuples(st.just("advance"), st.integers(0, 3 * WINDOW_MS)),
    st.tuples(st.just("restart"), st.none()),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_timed_step, max_size=16))
def test_window_bounds(
    make_event_backend: BackendFactory,
    clock: FakeClock,
    steps: list[tuple[str, list[str] | int | None]],
) -> None:
    """A repeat within one window is always skipped; one after two windows is always stored."""
    backend = make_event_backend()
    log = backend.event_log(dedupe_window_ms=WINDOW_MS)
    stored_at: dict[str, int] = {}
    for _kind, arg in steps:
        if isinstance(arg, int):
            clock.advance(ms=arg)
        elif arg is None:
            backend.shutdown()
            log = backend.event_log(dedupe_window_ms=WINDOW_MS)
        else:
            now = clock.now_ms()
            before = log.last_seq()
            seen = log.seen([("src_web", m) for m in arg])
            log.append([event(m) for m in arg])
            stored = message_ids(log.read(before, 100))
            assert len(stored) == len(set(stored))
            # ``seen`` names exactly the keys the append then skipped.
            assert {m for _, m in seen} == set(arg) - set(stored)
            for m in dict.fromkeys(arg):
                age = now - stored_at[m] if m in stored_at else None
                if age is not None and age < WINDOW_MS:
                    assert m not in stored, f"{m} repeated {age} ms later was stored"
                if age is None or age >= 2 * WINDOW_MS:
                    assert m in stored, f"{m} first seen {age} ms ago was skipped"
                if m in stored:
                    stored_at[m] = now
