"""``safar bench journeys`` at a tiny scale: every part runs and measures what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safar.bench.dbos_peer import SPLIT_SEED, customer_id, is_vip, orders
from safar.bench.journeys_e2e import ORDER_SHARE, event_stream, expected_entries, run_e2e
from safar.bench.journeys_latency import run_latency
from safar.bench.journeys_waiting import run_waiting
from safar.cli import main
from safar.config import Settings, load_settings
from safar.core.journey import split_bucket
from safar.stores.bundle import open_stores
from safar.testing import FakeClock


def settings_in(directory: Path) -> Settings:
    return load_settings(data_dir=directory, environ={})


def test_the_events_are_in_time_order_five_per_customer() -> None:
    events = list(event_stream(300))
    assert len(events) == 1500
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert sum(1 for e in events if e.name == "Product Added") == 300


def expected_messages(settings: Settings, customers: int) -> int:
    """What the journey sends: one reminder unless the customer ordered or drew the control arm
    (the split hashes the profile id), and a coupon a day later for VIPs."""
    total = 0
    with open_stores(settings, FakeClock()) as stores:
        for index in range(customers):
            uid = customer_id(index)
            profile = stores.profiles.find(("user_id", uid))
            assert profile is not None
            if index % 10 == 9 or orders(uid, ORDER_SHARE):  # price under 10: no entry
                continue
            if split_bucket(SPLIT_SEED, profile.id) * 100 >= 90:  # control
                continue
            total += 2 if is_vip(uid) else 1
    return total


def test_e2e_sends_what_the_journey_implies(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "journeys")
    result = run_e2e(settings, 200, True)
    baseline = run_e2e(settings_in(tmp_path / "profiles"), 200, False)

    assert result["events"] == baseline["events"] == 1000
    assert result["entered"] == expected_entries(200) == 180
    assert result["messages"] == expected_messages(settings, 200)
    assert result["clock_jumps"] == 2  # the hour's wait, then the day's
    assert result["events_per_s"] > 0 and baseline["events_per_s"] > 0


@pytest.mark.slow
def test_latency_is_measured_for_every_event(tmp_path: Path) -> None:
    result = run_latency(settings_in(tmp_path), tmp_path, seconds=2, rate=500, warmup=0.5, drain=20)
    assert result["request_failures"] == 0
    assert result["missing"] == 0 and result["delivered"] == result["events_measured"] > 0
    assert result["p50_ms"] is not None and result["p50_ms"] <= result["p99_ms"]


@pytest.mark.slow
def test_waiting_timers_fire_after_a_restart(tmp_path: Path) -> None:
    result = run_waiting(settings_in(tmp_path / "data"), 2_000, window=20, observe=2)
    assert result["due_while_running"] > 0
    assert result["fired"] == result["due_while_running"]
    assert result["late_p50_ms"] is not None and result["late_p50_ms"] >= 0


@pytest.mark.slow
def test_the_command_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "journeys", "--only", "e2e", "--customers", "100", "--json"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["e2e"]["events"] == 500
    assert report["e2e"]["ratio_to_baseline"] > 0
    assert "e2e.events_per_s >= 50000" in report["targets"]
