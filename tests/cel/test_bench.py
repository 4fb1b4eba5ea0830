"""``safar bench cel`` runs, agrees with its peers, and reports missing peers plainly."""

from __future__ import annotations

import sys

import pytest

from safar.bench import cel as bench


def test_every_installed_engine_agrees_with_safar_on_every_condition() -> None:
    rows = bench.run_benchmark(iterations=64, max_seconds=0.02)
    assert len(rows) == 3 * len(bench.CONDITIONS)
    safar_rows = [row for row in rows if row["engine"] == "safar"]
    assert all(row["status"] == "ok" and row["vs_safar"] == 1 for row in safar_rows)
    for row in rows:
        if row["status"] == "ok":
            assert row["agrees"] is True, row
            assert isinstance(row["evals_per_s"], int) and row["evals_per_s"] > 0
    table = bench.format_table(rows)
    assert table.splitlines()[0].startswith("| condition | engine | compile (µs)")
    assert len(table.splitlines()) == 2 + len(rows)


def test_activations_make_every_condition_true_and_false_and_never_fail() -> None:
    inputs = bench.activations()
    for _name, source in bench.CONDITIONS:
        evaluate = bench._safar().compile
        assert evaluate is not None
        outcomes = {bench._outcome(evaluate(source), activation) for activation in inputs}
        assert outcomes == {True, False}, source


def test_a_missing_peer_gets_a_not_installed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "celpy", None)  # makes `import celpy` fail
    monkeypatch.setitem(sys.modules, "cel", None)
    monkeypatch.setattr(bench, "CONDITIONS", bench.CONDITIONS[:1])
    rows = bench.run_benchmark(iterations=16, max_seconds=0.01)
    assert [row["status"] for row in rows] == ["ok", "not installed", "not installed"]
    assert "| price | cel-python | | not installed | | |" in bench.format_table(rows)


def test_run_reports_the_rows_with_where_they_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "run_benchmark", lambda iterations: [{"iterations": iterations}])
    report = bench.run(123)
    assert report["rows"] == [{"iterations": 123}]
    assert report["iterations"] == 123
    assert str(report["machine"]).split("-core")[0].isdigit()
    assert report["conditions"] == dict(bench.CONDITIONS)
