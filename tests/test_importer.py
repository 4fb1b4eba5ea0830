"""`safar import`: JSONL and CSV files, with bad lines reported and good lines stored."""

from __future__ import annotations

from pathlib import Path

import msgspec

from safar.config import IdentitySettings, IngestSettings
from safar.ingest.importer import ImportReport, import_file
from safar.stores.memory.events import MemoryEventLog
from safar.testing import FakeClock


def _import(path: Path, log: MemoryEventLog, clock: FakeClock) -> ImportReport:
    return import_file(
        path,
        events=log,
        source_id="src_import",
        clock=clock,
        limits=IngestSettings(),
        identity=IdentitySettings(),
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
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    log = MemoryEventLog(clock)
    report = _import(path, log, clock)

    assert report.accepted == 2
    assert [line for line, _ in report.rejected] == [2, 3, 6]
    reasons = dict(report.rejected)
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
