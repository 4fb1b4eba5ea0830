"""Helpers for definition tests: the example journey and comparing journeys without lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from safar.model.journeys import Journey

EXAMPLE = Path(__file__).parents[2] / "examples" / "journeys" / "abandoned_cart.yaml"


def without_lines(journey: Journey) -> Any:
    """``journey`` as plain data without ``line`` and ``origin``, which say where it came from,
    not what it is."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("line", "origin")}
        if isinstance(value, list | tuple):
            return [strip(item) for item in value]
        return value

    return strip(msgspec.to_builtins(journey))


@pytest.fixture
def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")
