"""Journey suites run twice: journeys stepped from the event log (the embedded configuration),
and by partition owners from a work feed of three partitions (ADR 12), which must end every
journey the same way."""

from __future__ import annotations

import pytest

import safar.testing.journeys


@pytest.fixture(params=["log", "partitions"])
def journey_modes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Use with ``pytestmark = pytest.mark.usefixtures("journey_modes")``."""
    partitions = 3 if request.param == "partitions" else 0
    monkeypatch.setattr(safar.testing.journeys, "PARTITIONS", partitions)
    return str(request.param)
