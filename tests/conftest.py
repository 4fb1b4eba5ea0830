"""Shared fixtures and test settings."""

from __future__ import annotations

import pytest
from hypothesis import settings

from safar.testing import FakeClock
from safar.testing.services import drop_schemas

# No per-example deadline: on a loaded 2-core CI machine a slow example is not a failure, and the
# properties, not the timings, are what these tests check. Speed lives in `safar bench`.
settings.register_profile("safar", deadline=None)
settings.load_profile("safar")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Schemas made on a shared server (SAFAR_TEST_PG_URL) go; an embedded one is deleted whole.
    drop_schemas()
