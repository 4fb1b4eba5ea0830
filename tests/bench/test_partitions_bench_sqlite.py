"""``safar bench partitions`` on the embedded stores at a tiny scale (no PostgreSQL, no NATS)."""

from __future__ import annotations

import json

import pytest

from safar.cli import main

pytestmark = [pytest.mark.slow]


def test_on_sqlite_with_a_sqlite_feed_the_owners_end_with_the_stepper_s_members(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without ``--postgres``: the embedded stores, and the work feed in a SQLite file."""
    arguments = ["bench", "partitions", "--customers", "60", "--owners", "0,1,2", "--audiences"]
    assert main([*arguments, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    runs = {r["owners"]: r for r in result["runs"]}
    assert set(runs) == {0, 1, 2}
    assert {r["events"] for r in runs.values()} == {300}
    assert runs[0]["members"] == runs[1]["members"] == runs[2]["members"]
    assert runs[0]["members"]["buyers"] > 0 and runs[0]["members"]["browsers"] == 60


def test_nats_without_postgres_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "partitions", "--nats", "nats://127.0.0.1:4222"]) == 2
    assert "--nats goes with --postgres" in capsys.readouterr().err
