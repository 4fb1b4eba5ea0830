"""Every error Safar raises on purpose derives from :class:`SafarError`.

The tree::

    SafarError                 root; ``retryable`` says whether trying again may succeed
    ├── ConfigError            bad safar.toml / environment / command-line value
    ├── ValidationError        input that breaks a rule; ``location`` says where (field, index)
    │   └── PayloadTooLarge    an event, batch or body over its size limit
    ├── AuthError              missing or unknown write key / API key (HTTP 401)
    │   └── ForbiddenError     a known key without the scope the call needs (HTTP 403)
    ├── RateLimited            too many events for one write key (HTTP 429); ``retry_after`` seconds
    ├── NotFound               a profile, source or resource that does not exist (HTTP 404)
    ├── Conflict               a state change that is not allowed now, e.g. publishing a stopped
    │                          journey (HTTP 409)
    ├── StoreError             a storage backend failed; adapters raise it ``from`` the driver error
    └── DeliveryError          a channel or webhook target refused or failed; ``retryable`` per case

Adapters translate driver exceptions at their boundary (``raise StoreError(...) from exc``) so
nothing above ``stores/`` needs to know which backend is in use.
"""

from __future__ import annotations


class SafarError(Exception):
    """Root of Safar's errors."""

    retryable: bool = False
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SafarError):
    """A configuration value is missing or invalid."""

    status = 500


class ValidationError(SafarError):
    """Input breaks a rule. ``location`` names where, e.g. ``batch[3].userId`` or ``line 12``."""

    status = 400

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.reason = message
        self.location = location


class PayloadTooLarge(ValidationError):
    """An event, a batch or a request body is over its size limit."""


class AuthError(SafarError):
    """No credentials, or credentials Safar does not know."""

    status = 401


class ForbiddenError(AuthError):
    """Known credentials without the scope the call needs."""

    status = 403


class RateLimited(SafarError):
    """Too many events for one write key; try again after ``retry_after`` seconds."""

    status = 429
    retryable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(SafarError):
    """The thing asked for does not exist."""

    status = 404


class StoreError(SafarError):
    """A storage backend failed. Raised ``from`` the driver's own exception."""

    retryable = True


class StaleBatch(StoreError):
    """A batch computed from state another process has changed since (a job it read): refused
    whole, and computed again from the new state. Processes racing meet it; it is no failure."""


def cursor_moved(
    processor: str, after_seq: int | None, current: int, partition: int | None
) -> StoreError:
    """What a store raises when a batch computed after ``after_seq`` finds its cursor (of
    ``partition``, None: the one without) at ``current``: another ``processor`` ("audience
    processor", "journey runtime") has committed meanwhile."""
    where = "" if partition is None else f" in partition {partition}"
    return StoreError(
        f"{processor.split()[0]} batch read events after seq {after_seq}{where}, but the store"
        f" is at {current}: another {processor} is running"
    )


def job_moved(name: str, expected: str | None, stored: str | None) -> StaleBatch:
    """What an audience store raises when a batch expected job ``name`` at ``expected``."""
    return StaleBatch(
        f"audience batch expected job {name!r} at {expected!r}, but the store has {stored!r}:"
        " another audience processor changed it"
    )


class FeedGap(StoreError):
    """A work-feed partition's items after ``after_seq`` are gone: its oldest batch left
    starts after ``since`` (ADR 12: expired or removed before the partition's owner read them).
    Reading again cannot help; see ``bus.skip_lost``."""

    retryable = False

    def __init__(self, message: str, *, partition: int, after_seq: int, since: int) -> None:
        super().__init__(message)
        self.partition = partition
        self.after_seq = after_seq
        self.since = since


class Conflict(SafarError):
    """The change asked for is not allowed in the current state."""

    status = 409


class DeliveryError(SafarError):
    """A channel provider or webhook target refused a message or could not be reached.

    ``retryable`` is set per error: a timeout or a 5xx may succeed later, a 4xx will not.
    """

    status = 502

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
