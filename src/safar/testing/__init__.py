"""Test doubles shipped with Safar, so users can test their own set-ups the way we test ours."""

from safar.testing.clock import FakeClock
from safar.testing.wait import wait_until

__all__ = ["FakeClock", "wait_until"]
