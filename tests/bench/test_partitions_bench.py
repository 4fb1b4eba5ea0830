"""``safar bench partitions`` at a tiny scale: every configuration runs to the end of the log."""

from __future__ import annotations

import json

import pytest

from safar.cli import main
from safar.testing.nats import nats_url
from safar.testing.services import ServiceUnavailable, postgres_url
from tests.services import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def services() -> tuple[str, str]:
    """PostgreSQL's and NATS's URLs."""
    try:
        return postgres_url(), nats_url()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise


def test_the_partitions_bench_runs_each_configuration_to_the_end(
    capsys: pytest.CaptureFixture[str], services: tuple[str, str]
) -> None:
    pg, nats = services
    code = main(
        [
            "bench",
            "partitions",
            "--postgres",
            pg,
            "--nats",
            nats,
            "--customers",
            "60",
            "--owners",
            "0,2",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    runs = {r["owners"]: r for r in result["runs"]}
    assert set(runs) == {0, 2}
    assert runs[0]["events"] == runs[2]["events"] == 300
    assert runs[2]["vs_one_stepper"] > 0


def test_with_audiences_every_configuration_ends_with_the_same_members(
    capsys: pytest.CaptureFixture[str], services: tuple[str, str]
) -> None:
    pg, nats = services
    arguments = ["bench", "partitions", "--postgres", pg, "--nats", nats, "--customers", "60"]
    code = main([*arguments, "--owners", "0,2", "--audiences", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["audiences"] is True
    members = [r["members"] for r in result["runs"]]
    # Kept by the stepper in one run and by two partition owners in the other: the same.
    assert members[0] == members[1]
    assert members[0]["buyers"] > 0 and members[0]["browsers"] == 60
