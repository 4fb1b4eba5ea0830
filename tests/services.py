"""Backing services for tests, skipped with a reason locally when unavailable, and a failure
under ``CI=true``: CI must run every test against the real thing."""

from __future__ import annotations

import os

import pytest

from safar.testing.nats import fresh_names, nats_url
from safar.testing.services import ServiceUnavailable, fresh_schema_url


def postgres_schema_url() -> str:
    """A PostgreSQL URL whose ``search_path`` is a new, empty schema (see
    :mod:`safar.testing.services`)."""
    try:
        return fresh_schema_url()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: skip and fail raise


def nats_stream() -> tuple[str, str, str]:
    """A NATS server URL, and a JetStream stream name and subject no other test uses (see
    :mod:`safar.testing.nats`)."""
    try:
        url = nats_url()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: skip and fail raise
    stream, subject = fresh_names()
    return url, stream, subject


def unavailable(reason: str) -> None:
    """Skip the test (fail it under ``CI=true``) because a service is missing."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true requires this test to run: {reason}")
    pytest.skip(reason)
