"""`safar bench audiences` at a small size: it runs, its SQL recompute agrees with the
hand-written floor on every segment, and the incremental part reports its costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safar.bench.audiences import run_incremental, run_recompute
from safar.cli import main


def test_every_recompute_matches_its_floor() -> None:
    result = run_recompute(profiles=3000, events=60_000)
    assert len(result.timings) == 10
    for timing in result.timings:
        assert timing.size == timing.floor_size, timing.name
    # The generated data makes most segments non-empty (a benchmark of empty answers
    # would measure little).
    assert sum(1 for t in result.timings if t.size > 0) >= 8


def test_incremental_reports_costs_and_state() -> None:
    result = run_incremental(profiles=300, events=3000, segments=10, traits=4)
    assert result.audience_us > 0 and result.profile_us > 0
    assert result.memberships > 0 and result.fold_rows > 0
    assert result.sync_events_per_s > 0 and result.load_profiles_per_s > 0


def test_the_command_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "audiences",
            "--data-dir",
            str(tmp_path),
            "--profiles",
            "500",
            "--events",
            "5000",
            "--only",
            "recompute",
            "--json",
        ]
    )
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found["recompute"]["timings"]) == 10
