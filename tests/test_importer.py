"""`safar import`: JSONL and CSV files, and JSONL trait records (``--traits``), with bad lines
reported and good lines stored."""

from __future__ import annotations

from pathlib import Path

import msgspec

from safar.config import IdentitySettings, IngestSettings
from safar.ingest.importer import ImportReport, import_file
from safar.ports import EventLog
from safar.runtime.profiler import ProfileProcessor
from safar.stores.bundle import memory_stores
from safar.stores.memory.events import MemoryEventLog
from safar.testing import FakeClock


def _import(path: Path, log: EventLog, clock: FakeClock, *, traits: bool = False) -> ImportReport:
    return import_file(
        path,
        events=log,
        source_id="src_import",
        clock=clock,
        limits=IngestSettings(max_event_bytes=2048),
        identity=IdentitySettings(),
        traits=traits,
    )


def _all(log: MemoryEventLog) -> list[dict[str, object]]:
    return [e.payload() for e in log.read(0, 1000)]


def test_jsonl_stores_valid_lines_and_reports_bad_ones(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "events.jsonl"
    good = {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-1"}
    path.write_text(
        "\n".join(
            [
                msgspec.json.encode(good).decode(),
                "{not json",
                '{"type": "track", "event": "No Person"}',
                "",
                '{"type": "identify", "anonymousId": "a1", "traits": {"name": "王芳"}}',
                "[1, 2]",
                '{"type": "track", "userId": "u1", "event": "Deep", "properties": {"x": '
                + "[" * 5_000
                + "]" * 5_000
                + "}}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    log = MemoryEventLog(clock)
    report = _import(path, log, clock)

    assert report.accepted == 2
    assert [line for line, _ in report.rejected] == [2, 3, 6, 7]
    reasons = dict(report.rejected)
    assert reasons[7] == "line 7: nests objects and arrays more than 64 levels deep"
    assert "JSON" in reasons[2]
    assert "userId" in reasons[3] or "anonymousId" in reasons[3]
    assert "object" in reasons[6]
    stored = _all(log)
    assert [e["type"] for e in stored] == ["track", "identify"]
    assert stored[1]["traits"] == {"name": "王芳"}


def test_reimporting_the_same_file_stores_nothing_twice(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"type": "track", "userId": "u1", "event": "A"}\n'
        '{"type": "track", "userId": "u1", "event": "B", "messageId": "fixed"}\n',
        encoding="utf-8",
    )
    log = MemoryEventLog(clock)
    first = _import(path, log, clock)
    second = _import(path, log, clock)
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (second.accepted, second.duplicates) == (0, 2)
    assert log.count() == 2


def test_csv_rows_become_identify_calls(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(
        "user_id,email,crm_id,name,plan\n"
        "42,Sara@Example.com,C-1,سارا احمدی,gold\n"
        ",li@example.org,C-2,李娜,\n"
        "7,bad@example.com\n",
        encoding="utf-8",
    )
    log = MemoryEventLog(clock)
    report = _import(path, log, clock)

    assert report.accepted == 2
    assert report.rejected == [(4, "line 4: has 2 columns, the header has 5")]
    first, second = _all(log)
    assert first["type"] == "identify"
    assert first["userId"] == "42"
    assert first["traits"] == {"email": "Sara@Example.com", "name": "سارا احمدی", "plan": "gold"}
    assert first["context"] == {
        "externalIds": [{"id": "C-1", "type": "crm_id", "collection": "users", "encoding": "none"}]
    }
    # No user id: an anonymous id derived from the email keeps the row a profile of its own.
    assert "userId" not in second
    assert str(second["anonymousId"]).startswith("import-")
    assert second["traits"] == {"email": "li@example.org", "name": "李娜"}


def test_progress_reaches_the_total(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(f'{{"type":"track","userId":"u{i}","event":"E"}}\n' for i in range(2500)),
        encoding="utf-8",
    )
    calls: list[tuple[int, int]] = []
    import_file(
        path,
        events=MemoryEventLog(clock),
        source_id="s",
        clock=clock,
        limits=IngestSettings(),
        identity=IdentitySettings(),
        progress=lambda done, total, _report: calls.append((done, total)),
    )
    assert calls[-1] == (2500, 2500)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def _records(path: Path, *lines: object) -> Path:
    path.write_text(
        "".join(
            (line if isinstance(line, str) else msgspec.json.encode(line).decode()) + "\n"
            for line in lines
        ),
        encoding="utf-8",
    )
    return path


def test_trait_records_become_identify_calls(tmp_path: Path, clock: FakeClock) -> None:
    path = _records(
        tmp_path / "crm.jsonl",
        {
            "userId": 42,
            "Email": "Sara@Example.com",
            "crm_id": "C-1",
            "name": "سارا احمدی",
            "address": {"city": "Shiraz", "zip": "71"},
            "tags": ["vip"],
            "fax": None,
            "updated_at": "2026-01-02T03:04:05Z",
        },
        {"phone": "+98 912 000 1234", "plan": "gold"},
        {"crm_id": 17, "score": 0.5},
    )
    log = MemoryEventLog(clock)
    report = _import(path, log, clock, traits=True)

    assert (report.lines, report.accepted, report.rejected) == (3, 3, [])
    first, second, third = _all(log)
    assert first["type"] == "identify"
    assert first["userId"] == "42"
    assert first["timestamp"] == "2026-01-02T03:04:05.000Z"
    # Identifier columns are matched whatever their case; email stays a trait, where identity
    # resolution reads (and normalizes) it.
    assert first["traits"] == {
        "email": "Sara@Example.com",
        "name": "سارا احمدی",
        "address": {"city": "Shiraz", "zip": "71"},
        "tags": ["vip"],
    }
    assert first["context"] == {
        "externalIds": [{"id": "C-1", "type": "crm_id", "collection": "users", "encoding": "none"}]
    }
    assert str(second["anonymousId"]).startswith("import-")
    assert second["traits"] == {"phone": "+98 912 000 1234", "plan": "gold"}
    assert third["context"] == {
        "externalIds": [{"id": "17", "type": "crm_id", "collection": "users", "encoding": "none"}]
    }


def test_bad_trait_records_are_reported_with_line_and_reason(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = _records(
        tmp_path / "crm.json",
        {"user_id": "u1", "plan": "gold"},
        "[1, 2]",
        {"plan": "silver", "email": "not an email"},
        {"user_id": "u2", "timestamp": "yesterday"},
        "{oops",
        {"user_id": "u3", "notes": "x" * 3000},
        {"user_id": {"id": 4}},
        "",
        {"user_id": "unknown", "plan": "placeholder ids identify nobody"},
        {"email": "li@example.org", "updated_at": 1767225600},
        {"anonymous_id": "a1", "plan": "free"},
        {"user_id": "u\x005", "email": "u5@example.org"},
        {"user_id": "u" * 513},
    )
    log = MemoryEventLog(clock)
    report = _import(path, log, clock, traits=True)

    assert report.accepted == 2
    reasons = dict(report.rejected)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9, 10, 12, 13]
    assert reasons[13] == "line 13.user_id: is 513 characters, over the limit of 512"
    assert reasons[12] == "line 12.user_id: must not contain the NUL character (\\u0000)"
    assert reasons[2] == "line 2: must be a JSON object"
    assert reasons[3].startswith("line 3: no identifier")
    assert reasons[4] == "line 4.timestamp: 'yesterday' is not an ISO 8601 date-time"
    assert "JSON" in reasons[5]
    assert "over the 2048-byte limit" in reasons[6]
    assert reasons[7] == "line 7.user_id: must be a string or a whole number"
    assert reasons[9].startswith("line 9: no identifier")
    assert "ISO 8601" in reasons[10]
    assert [e.get("userId") or e.get("anonymousId") for e in _all(log)] == ["u1", "a1"]


def test_reimporting_trait_records_stores_nothing_twice(tmp_path: Path, clock: FakeClock) -> None:
    path = _records(tmp_path / "crm.jsonl", {"user_id": "u1", "plan": "gold"}, {"email": "a@b.co"})
    log = MemoryEventLog(clock)
    first = _import(path, log, clock, traits=True)
    clock.advance(hours=1)
    second = _import(path, log, clock, traits=True)
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (second.accepted, second.duplicates) == (0, 2)
    assert log.count() == 2


def test_without_traits_a_jsonl_file_is_read_as_segment_events(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = _records(tmp_path / "crm.jsonl", {"user_id": "u1", "plan": "gold"})
    report = _import(path, MemoryEventLog(clock), clock)
    assert report.accepted == 0
    assert "type" in report.rejected[0][1]


def test_imported_traits_reach_profiles_with_normalized_identifiers(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = _records(
        tmp_path / "crm.jsonl",
        {"email": "  Sara@Example.COM ", "plan": "gold", "address": {"city": "Shiraz"}},
        {"crm_id": "C-9", "EMAIL": "sara@example.com", "score": 7},
        {"user_id": "u7", "phone": "0912 000 1234", "plan": "silver"},
    )
    stores = memory_stores(clock)
    report = _import(path, stores.events, clock, traits=True)
    assert report.accepted == 3
    profiler = ProfileProcessor(stores.events, stores.profiles, IdentitySettings(), clock)
    while profiler.run_once():
        pass

    sara = stores.profiles.find(("email", "sara@example.com"))
    assert sara is not None
    # Both records name the same (normalized) email, so they are one person.
    assert sara.identifiers["email"] == ["sara@example.com"]
    assert sara.identifiers["crm_id"] == ["C-9"]
    assert sara.traits["plan"] == "gold"
    assert sara.traits["score"] == 7
    assert sara.traits["address"] == {"city": "Shiraz"}
    other = stores.profiles.find(("user_id", "u7"))
    assert other is not None
    assert other.identifiers["phone"] == ["+19120001234"]
    assert other.traits["plan"] == "silver"
