"""``safar bench cel``: journey conditions in Safar's CEL and in two peers, in the same run.

For five representative conditions it measures compile time and evaluations per second over a
rotating set of realistic activations (a Segment-shaped track event, a profile with traits, the
journey, ``now``), for:

- Safar's own CEL (:mod:`safar.cel`), the baseline;
- cel-python (``import celpy``), a pure-Python interpreter; its activations are converted with
  ``celpy.json_to_cel`` inside the timed loop, as a caller would have to;
- common-expression-language (``import cel``), a Rust extension; it converts the Python
  activation itself on every call.

The peers are optional imports (the ``bench`` extra); a missing one gets a "not installed" row.
Each engine's results are checked against Safar's on every activation (``agrees``). Numbers are
reported, never asserted.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from safar.cel import compile_expression

CONDITIONS: Final = (
    ("price", "event.properties.price >= 10"),
    ("vip", "profile.traits.vip == true"),
    (
        "tenure",
        "has(profile.traits.timezone)"
        ' && now - timestamp(profile.traits.signed_up_at) > duration("720h")',
    ),
    ("tag", "'gold' in profile.traits.tags"),
    ("items", 'event.properties.items.exists(i, i.sku.startsWith("A"))'),
)
NAMES: Final = frozenset({"event", "profile", "journey", "now"})
NOW: Final = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

Evaluate = Callable[[dict[str, Any]], Any]


class Engine(NamedTuple):
    """A CEL implementation under test: how to compile a condition into an evaluator."""

    name: str
    version: str
    compile: Callable[[str], Evaluate] | None
    """None when the engine is not installed."""


def activations(count: int = 16, seed: int = 1) -> list[dict[str, Any]]:
    """Activations shaped like Safar's: varied so every condition is sometimes true, sometimes
    false, and sometimes reads a missing key."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(count):
        items: list[dict[str, Any]] = [
            {
                "sku": rng.choice("ABCD") + f"-{rng.randrange(1000)}",
                "name": f"Product {rng.randrange(500)}",
                "price": round(rng.uniform(2, 40), 2),
                "quantity": rng.randrange(1, 4),
            }
            for _ in range(rng.randrange(1, 6))
        ]
        traits: dict[str, Any] = {
            "email": f"user{n}@example.com",
            "name": rng.choice(["Sara", "Reza", "Mina", "Ali"]),
            "plan": rng.choice(["free", "pro", "team"]),
            "vip": rng.random() < 0.3,
            "signed_up_at": (NOW - timedelta(days=rng.randrange(1, 400))).isoformat(),
            "tags": rng.sample(["gold", "newsletter", "beta", "churn-risk", "mobile"], 2),
            "logins": rng.randrange(200),
            "city": rng.choice(["Tehran", "Berlin", "Lagos", "Lima"]),
        }
        if rng.random() < 0.7:
            traits["timezone"] = rng.choice(["Asia/Tehran", "Europe/Berlin", "UTC"])
        event = {
            "type": "track",
            "event": "Order Completed",
            "messageId": f"m-{n}",
            "userId": f"user-{n}",
            "timestamp": (NOW - timedelta(minutes=n)).isoformat(),
            "properties": {
                "order_id": f"o-{n}",
                "price": round(sum(i["price"] * i["quantity"] for i in items), 2),
                "currency": "USD",
                "coupon": None,
                "items": items,
            },
            "context": {
                "library": {"name": "analytics-python", "version": "2.3.3"},
                "ip": f"10.0.0.{n % 250}",
                "locale": "en-US",
                "userAgent": "Mozilla/5.0",
            },
        }
        profile = {"id": f"p-{n}", "traits": traits, "identifiers": {"user_id": [f"user-{n}"]}}
        journey = {"id": "winback", "version": 3, "step": "wait-for-order"}
        out.append({"event": event, "profile": profile, "journey": journey, "now": NOW})
    return out


def _safar() -> Engine:
    def compile_safar(source: str) -> Evaluate:
        return compile_expression(source, NAMES).evaluate

    return Engine("safar", "", compile_safar)


def _celpy() -> Engine:
    try:
        import celpy
        from celpy import celtypes
        from celpy.adapter import json_to_cel
    except ImportError:
        return Engine("cel-python", "", None)

    def convert(activation: dict[str, Any]) -> dict[str, Any]:
        return {
            key: celtypes.TimestampType(value)
            if isinstance(value, datetime)
            else json_to_cel(value)
            for key, value in activation.items()
        }

    def compile_celpy(source: str) -> Evaluate:
        env = celpy.Environment()
        program = env.program(env.compile(source))
        return lambda activation: program.evaluate(convert(activation))

    return Engine("cel-python", importlib.metadata.version("cel-python"), compile_celpy)


def _rust() -> Engine:
    try:
        import cel
    except ImportError:
        return Engine("common-expression-language", "", None)

    def compile_rust(source: str) -> Evaluate:
        execute: Evaluate = cel.compile(source).execute
        return execute

    version = importlib.metadata.version("common-expression-language")
    return Engine("common-expression-language", version, compile_rust)


def engines() -> list[Engine]:
    """Safar first (the baseline), then the peers."""
    return [_safar(), _celpy(), _rust()]


def _outcome(evaluate: Evaluate, activation: dict[str, Any]) -> object:
    try:
        return bool(evaluate(activation))
    except Exception:  # each engine has its own error types; only "it failed" matters here
        return "error"


def _compile_us(compile_fn: Callable[[str], Evaluate], source: str, max_seconds: float) -> float:
    count = 0
    started = time.perf_counter()
    while count < 1000:
        compile_fn(source)
        count += 1
        if time.perf_counter() - started > max_seconds:
            break
    return (time.perf_counter() - started) / count * 1e6


def _rate(
    evaluate: Evaluate, inputs: Sequence[dict[str, Any]], iterations: int, max_seconds: float
) -> float:
    """Evaluations per second over ``inputs`` in turn, up to ``iterations`` or the time limit.

    The activations are chosen so that no condition fails on them (see ``activations``).
    """
    done = 0
    started = time.perf_counter()
    while done < iterations:
        for activation in inputs:
            evaluate(activation)
        done += len(inputs)
        if time.perf_counter() - started > max_seconds:
            break
    return done / (time.perf_counter() - started)


def run_benchmark(iterations: int = 200_000, max_seconds: float = 3.0) -> list[dict[str, object]]:
    """One row per (condition, engine); each engine runs at most ``max_seconds`` per condition."""
    inputs = activations()
    rows: list[dict[str, object]] = []
    for name, source in CONDITIONS:
        baseline: float | None = None
        expected: list[object] = []
        for engine in engines():
            row: dict[str, object] = {"condition": name, "engine": engine.name}
            rows.append(row)
            if engine.compile is None:
                row["status"] = "not installed"
                continue
            try:
                evaluate = engine.compile(source)
            except Exception as exc:  # a peer that cannot compile a condition is a result
                row["status"] = f"compile failed: {exc}"
                continue
            outcomes = [_outcome(evaluate, activation) for activation in inputs]
            if not expected:
                expected = outcomes
            rate = _rate(evaluate, inputs, iterations, max_seconds)
            baseline = baseline or rate
            row.update(
                status="ok",
                version=engine.version,
                compile_us=round(_compile_us(engine.compile, source, max_seconds / 3), 1),
                evals_per_s=round(rate),
                vs_safar=round(rate / baseline, 4),
                agrees=outcomes == expected,
            )
    return rows


def run(iterations: int) -> dict[str, object]:
    """The benchmark with a description of where it ran."""
    return {
        "iterations": iterations,
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()}-core {platform.machine()}",
        "conditions": dict(CONDITIONS),
        "rows": run_benchmark(iterations),
    }


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| condition | engine | compile (µs) | evaluations/s | vs Safar | agrees |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {row['condition']} | {row['engine']} | | {row['status']} | | |")
            continue
        version = f" {row['version']}" if row.get("version") else ""
        lines.append(
            f"| {row['condition']} | {row['engine']}{version} | {row['compile_us']:,}"
            f" | {row['evals_per_s']:,} | {row['vs_safar']:.3g}× | {row['agrees']} |"
        )
    return "\n".join(lines)
