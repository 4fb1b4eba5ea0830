"""``safar bench ingest --only profiles`` at a tiny scale: it consumes the whole log and splits
the time between new and known people where the events do."""

from __future__ import annotations

import json

import pytest

from safar.bench.profiles import last_new_person, make_events
from safar.cli import main
from safar.config import load_settings
from safar.testing.services import ServiceUnavailable, postgres_url
from tests.services import unavailable


def test_every_person_is_met_within_the_first_users_events() -> None:
    events = make_events(600, 40, load_settings(environ={}))
    assert len({e.user_id for e in events}) == 40
    assert last_new_person(events) <= 40
    assert last_new_person(events[:30]) == 30


def run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code = main(["bench", "ingest", "--only", "profiles", "--json", *args])
    assert code == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


def test_the_bench_times_known_people_apart_on_sqlite(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = run(
        capsys, "--events", "600", "--users", "40", "--profile-batch", "100", "--repeat", "2"
    )
    assert report["store"] == "sqlite"
    runs = report["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    for one in runs:
        assert one["events"] == 600
        # Batches of 100 from seq 101 on hold only people met before.
        assert one["known_events"] == 500
        assert one["store_s"]["apply"] > 0
        assert one["processor_s"] >= 0


def test_a_repeat_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ingest", "--only", "profiles", "--repeat", "0"]) == 2
    assert "--repeat must be at least 1" in capsys.readouterr().err


@pytest.mark.postgres
def test_the_bench_runs_on_a_scratch_postgres_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        url = postgres_url()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise
    report = run(
        capsys, "--events", "600", "--users", "40", "--profile-batch", "250", "--postgres", url
    )
    assert report["store"] == "postgresql"
    runs = report["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    one = runs[0]
    assert one["events"] == 600
    assert one["known_events"] == 350
