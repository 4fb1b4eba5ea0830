"""Test doubles shipped with Safar, so users can test their own set-ups the way we test ours."""

from safar.testing.clock import FakeClock

__all__ = ["FakeClock"]
