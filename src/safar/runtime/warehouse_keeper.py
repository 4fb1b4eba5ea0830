"""A :class:`~safar.runtime.warehouse.Warehouse` kept in step with the stores, for previews.

Building a warehouse copies every event and profile (seconds per hundred thousand events), so
it is kept between uses (ADR 13): in a DuckDB file under the data directory, or in memory when
no path is given (tests, in-memory stores). Each use first brings it up to the profile
processor's position:

- events up to the processor's ``processed_seq`` are copied, never further: the profiles (and
  the direct recompute, which reads timelines) know nothing of the later ones;
- the profiles those events or the merges in between touched are loaded again
  (:meth:`~safar.runtime.warehouse.Warehouse.update_profiles`), or all of them when that is
  most of them;
- it is rebuilt from nothing when it cannot be trusted: the identity settings that attribute
  events changed, the stores are behind it or hold another event at its last seq (a restored
  backup, another installation), or a catch-up was cut off half-way.

DuckDB lets one process at a time open a file for writing, and ``safar audiences preview`` may
run beside ``safar serve``: the file is opened only for the length of one use, under an
exclusive lock on ``<file>.lock`` that another process waits for.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

import duckdb
import msgspec

from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.errors import StoreError
from safar.model.profiles import Identifier
from safar.ports import DeliveryStore, EventLog, ProfileReader
from safar.runtime.warehouse import Warehouse

log = logging.getLogger(__name__)

#: The warehouse's file name under the data directory.
WAREHOUSE_FILE: Final = "warehouse.duckdb"
#: Bumped when what a kept warehouse holds changes shape: older files are rebuilt.
LAYOUT: Final = "1"
#: ``meta`` keys: what the warehouse was built for, the processed seq its profiles are at, and
#: the messageId of the last event copied (the log it was copied from).
_STAMP: Final = "stamp"
_PROFILES_SEQ: Final = "profiles_seq"
_LAST_MESSAGE: Final = "last_message_id"


class KeptWarehouse:
    """A warehouse over these stores, brought up to date by :meth:`current`; thread-safe."""

    def __init__(
        self,
        events: EventLog,
        profiles: ProfileReader,
        delivery: DeliveryStore | None,
        identity: IdentitySettings,
        path: Path | None = None,
    ) -> None:
        self._events = events
        self._profiles = profiles
        self._delivery = delivery
        self._rules = IdentityRules(identity)
        self._stamp = f"{LAYOUT}:{_fingerprint(identity)}"
        self.path = path
        self._lock = threading.Lock()
        self._memory: Warehouse | None = None

    @contextmanager
    def current(self) -> Iterator[Warehouse]:
        """The warehouse, caught up with the stores, for this block's use alone. StoreError
        when its file cannot be locked, opened or written."""
        with self._lock, self._exclusive():
            warehouse = self._open()
            try:
                try:
                    self._catch_up(warehouse)
                except (duckdb.Error, OSError) as exc:
                    raise StoreError(f"cannot update the warehouse {self._where}: {exc}") from exc
                yield warehouse
            finally:
                if self.path is not None:
                    warehouse.close()

    def close(self) -> None:
        """Release the in-memory warehouse (a file is closed after each use anyway)."""
        with self._lock:
            if self._memory is not None:
                self._memory.close()
                self._memory = None

    # -- catching up --------------------------------------------------------------------------

    def _catch_up(self, warehouse: Warehouse) -> None:
        upto = self._profiles.processed_seq()
        loaded = int(warehouse.meta(_PROFILES_SEQ) or 0)
        copied = warehouse.last_seq()
        # A catch-up cut off after copying events leaves the profiles (and the last messageId)
        # behind them: which customers those events touched is not known any more.
        if (
            warehouse.meta(_STAMP) != self._stamp
            or upto < copied
            or loaded != copied
            or warehouse.meta(_LAST_MESSAGE) != self._message_id(copied)
        ):
            warehouse.reset()
            warehouse.set_meta(_STAMP, self._stamp)
            warehouse.set_meta(_LAST_MESSAGE, "")
            loaded = copied = 0
        if loaded == copied == upto:
            return
        seen: set[Identifier] = set()
        warehouse.sync_events(self._events, self._rules, upto=upto, seen=seen)
        copied = warehouse.last_seq()
        # A profile read again by its identifiers costs about what one read by a scan does:
        # past half of them, reading them all is no dearer.
        if loaded == 0 or len(seen) > warehouse.profile_count() // 2:
            warehouse.load_profiles(self._profiles, self._delivery)
        else:
            reshaped = self._profiles.reshaped(loaded, copied)
            warehouse.update_profiles(self._profiles, self._delivery, seen, reshaped)
        warehouse.set_meta(_PROFILES_SEQ, str(copied))
        warehouse.set_meta(_LAST_MESSAGE, self._message_id(copied))

    def _message_id(self, seq: int) -> str:
        """The messageId of the event at ``seq`` in the log ("" for none): the same seq with
        another event means another log (a restored backup, another installation)."""
        found = self._events.get([seq]) if seq else []
        return found[0].message_id if found else ""

    # -- where it lives -----------------------------------------------------------------------

    def _open(self) -> Warehouse:
        if self.path is None:
            if self._memory is None:
                self._memory = Warehouse()
            return self._memory
        try:
            return Warehouse(str(self.path))
        except duckdb.Error as exc:
            # Only a copy of the stores: a file DuckDB cannot read (damaged, or written by an
            # incompatible version) is rebuilt rather than failing every preview.
            log.warning("rebuilding the warehouse %s: %s", self.path, exc)
        try:
            for stale in (self.path, self.path.with_name(self.path.name + ".wal")):
                stale.unlink(missing_ok=True)
            return Warehouse(str(self.path))
        except (duckdb.Error, OSError) as exc:
            raise StoreError(f"cannot create the warehouse {self.path}: {exc}") from exc

    @property
    def _where(self) -> str:
        return "in memory" if self.path is None else str(self.path)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        with _lock_file(self.path) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def keep_warm(kept: KeptWarehouse, stop: threading.Event, every_s: float) -> None:
    """Catch ``kept`` up now and every ``every_s`` until ``stop`` is set, so that previews find
    little to copy. Failures are logged and tried again next time."""
    while not stop.is_set():
        try:
            with kept.current():
                pass
        except StoreError as exc:
            log.warning("could not catch the warehouse up, will retry: %s", exc)
        stop.wait(every_s)


def _fingerprint(identity: IdentitySettings) -> str:
    return hashlib.sha256(msgspec.json.encode(identity)).hexdigest()[:16]


def _lock_file(path: Path) -> IO[str]:
    """``<path>.lock``, open (created with its directory if need be)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(path.name + ".lock").open("a")
    except OSError as exc:
        raise StoreError(f"cannot lock the warehouse {path}: {exc}") from exc
