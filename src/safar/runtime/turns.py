"""One turn of a processing loop, kept going through failures."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from safar.errors import SafarError
from safar.runtime.dispatch import ERROR_WAIT

log = logging.getLogger(__name__)


def attempt(turn: Callable[[], int], stop: threading.Event, what: str) -> int:
    """``turn()``: how much it did, or 0 when it failed in a way worth retrying.

    A retryable :class:`~safar.errors.SafarError` (a store or feed out of reach) is logged;
    any other exception is a bug met by one batch: logged in full, then a pause of
    :data:`~safar.runtime.dispatch.ERROR_WAIT` rather than a stop of processing for everyone
    (the batch is redone from the store, so nothing is lost). Other SafarErrors propagate.
    """
    try:
        return turn()
    except SafarError as exc:
        if not exc.retryable:
            raise
        log.warning("%s failed, will retry: %s", what, exc)
        return 0
    except Exception:
        log.exception("%s failed unexpectedly, will retry", what)
        stop.wait(ERROR_WAIT)
        return 0


def run_turns(
    turn: Callable[[], int],
    stop: threading.Event,
    what: str,
    idle_wait: float,
    *,
    finally_: Callable[[], None],
) -> None:
    """:func:`attempt` ``turn`` until ``stop`` is set, waiting ``idle_wait`` after a turn that
    did nothing; then ``finally_`` (giving leases up, say), its store errors ignored: the
    process is stopping and the leases lapse anyway."""
    try:
        while not stop.is_set():
            if attempt(turn, stop, what) == 0:
                stop.wait(idle_wait)
    finally:
        with contextlib.suppress(SafarError):
            finally_()
