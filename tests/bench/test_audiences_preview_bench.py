"""`safar bench audiences --only preview` at a small size: every SQL preview answers as the
direct one does, over data where the draft segment has members and merges happen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safar.bench.audiences import NOW, run_preview, shop_events
from safar.cli import main


def test_every_sql_preview_answers_as_the_direct_one() -> None:
    result = run_preview(profiles=400, events=6000, new_events=300)
    assert result.segment_size > 0
    names = [t.name for t in result.timings]
    assert names[:2] == ["segment, direct (baseline)", "trait, direct (baseline)"]
    assert len(names) == 7
    assert all(t.same for t in result.timings), [t.name for t in result.timings if not t.same]
    assert result.warehouse_mb > 0


def test_the_shop_links_anonymous_visitors_to_customers() -> None:
    events = shop_events(100, 5000, NOW)
    assert [e.type for e in events[:100]] == ["identify"] * 100
    anonymous = {e.anonymous_id for e in events if e.user_id is None}
    linked = {e.anonymous_id for e in events if e.user_id and e.anonymous_id}
    assert anonymous and anonymous & linked
    assert all(e.timestamp <= NOW for e in events)


def test_the_command_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "audiences",
            "--data-dir",
            str(tmp_path),
            "--preview-profiles",
            "100",
            "--preview-events",
            "1000",
            "--only",
            "preview",
            "--json",
        ]
    )
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert [t["same"] for t in found["preview"]["timings"]] == [True] * 7
