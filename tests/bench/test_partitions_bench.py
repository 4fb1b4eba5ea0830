"""``safar bench partitions`` at a tiny scale: every configuration runs to the end of the log."""

from __future__ import annotations

import json

import pytest

from safar.cli import main
from safar.testing.nats import nats_url
from safar.testing.services import ServiceUnavailable, postgres_url
from tests.services import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_the_partitions_bench_runs_each_configuration_to_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        pg, nats = postgres_url(), nats_url()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise
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
