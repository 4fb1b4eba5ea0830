"""``safar audiences preview`` over a SQLite data directory: the warehouse it keeps there is
caught up with what the worker processed since, merges included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from safar.cli import main
from safar.clock import SystemClock
from safar.config import load_settings
from safar.ingest.validate import event_from_json
from safar.runtime.warehouse_keeper import WAREHOUSE_FILE
from safar.runtime.worker import Worker
from safar.stores.bundle import open_stores

BIG_SPENDERS = """\
id: big-spenders
name: Two large orders in 30 days
where:
  performed: Order Completed
  where: event.properties.revenue > 100
  at_least: 2
  within: 30d
"""


def append_and_work(directory: Path, bodies: list[dict[str, Any]], first: int) -> None:
    """Append these events (messageIds from ``m<first>``), then run the worker until idle."""
    settings = load_settings(data_dir=directory, environ={})
    now = datetime.now(tz=UTC).isoformat()
    clock = SystemClock()
    with open_stores(settings, clock) as stores:
        events = [
            event_from_json(
                {**body, "messageId": f"m{first + n}", "timestamp": now},
                source_id="test",
                received_at=clock.now_ms(),
                sent_at=None,
                default_type="track",
                location=f"event {n}",
                limits=settings.ingest,
            )
            for n, body in enumerate(bodies)
        ]
        stores.events.append(events)
        worker = Worker(stores, settings, clock)
        while worker.step_once():
            pass


def big_order(who: dict[str, str], revenue: int = 150) -> dict[str, Any]:
    return {**who, "event": "Order Completed", "properties": {"revenue": revenue}}


def preview(
    capsys: pytest.CaptureFixture[str], directory: Path, file: Path, *more: str
) -> dict[str, Any]:
    code = main(["audiences", "preview", str(file), "--json", "--data-dir", str(directory), *more])
    out, err = capsys.readouterr()
    assert code == 0, err
    found: dict[str, Any] = msgspec.json.decode(out)
    found.pop("took_ms")
    return found


def test_a_preview_sees_what_was_processed_since_the_last_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    draft = tmp_path / "big.yaml"
    draft.write_text(BIG_SPENDERS, encoding="utf-8")
    append_and_work(
        directory,
        [
            {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
            big_order({"userId": "u1"}),
            big_order({"userId": "u1"}),
            big_order({"anonymousId": "a1"}),
            big_order({"anonymousId": "a1"}),
            {"type": "identify", "userId": "u2", "traits": {}},
        ],
        first=0,
    )
    found = preview(capsys, directory, draft)
    assert (found["size"], found["evaluated"]) == (2, 3)
    assert (directory / WAREHOUSE_FILE).is_file()

    append_and_work(
        directory,
        [
            {"type": "identify", "userId": "u2", "anonymousId": "a1", "traits": {}},
            big_order({"userId": "u3"}, 500),
            big_order({"userId": "u3"}, 600),
        ],
        first=100,
    )
    found = preview(capsys, directory, draft)
    assert (found["size"], found["evaluated"]) == (3, 3)
    users = sorted(p["identifiers"]["user_id"][0] for p in found["sample"])
    assert users == ["u1", "u2", "u3"]
    merged = next(p for p in found["sample"] if p["identifiers"]["user_id"] == ["u2"])
    assert merged["identifiers"]["anonymous_id"] == ["a1"]
    assert preview(capsys, directory, draft, "--limit", "1000") == found
