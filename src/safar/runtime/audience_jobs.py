"""Where the audience processor's background jobs stand, and what a repair starts.

Two kinds of job, each committed with the state it produced
(:meth:`~safar.ports.AudienceStore.progress`):

- ``fold:<aggregate key>`` = ``G:U`` (or ``G:U:R``): the aggregate's *generation* ``G`` is the
  cursor when it was published or last repaired; events after ``G`` are folded as they come,
  history up to ``G`` by a paged job that has got to ``U``. ``R`` counts the repairs that
  started a generation: the folds live under :meth:`Generation.storage`, which differs from
  every earlier generation's even when a repair starts at the same cursor as the one it
  replaces, so old folds are never mixed into new ones. The history job's folds are kept apart
  from the live ones (:meth:`Generation.history`, stored as
  :attr:`~safar.ports.AudienceUpdate.history`): with a work feed the job and the partition
  owners run in different processes, and never write the same row.
- ``scan:<segment id>`` = ``<fingerprint>:<position>``: the segment evaluated for every
  customer up to ``position`` (a profile id; ``done`` at the end). With a work feed each
  partition's owner scans the customers in it (``scan:<segment id>#<partition>``), and the
  coordinator marks ``scan:<segment id>`` done once every partition's scan is.
- ``generations``: a count the coordinator raises with every change of generations or
  definitions it commits; partition owners commit only while it is the value they read their
  jobs with (:attr:`~safar.ports.AudienceUpdate.expect`), so none commits a batch computed
  from the definitions before the change (ADR 12).

A repair (``repair:<audience id>`` = how many requests the processor has carried out, see
:meth:`~safar.ports.AudienceCatalog.request_repair`) starts both again: the aggregates read by
the repaired definitions get a new generation, and the segments that read them, the repaired
ones and every segment naming those with ``member:`` are evaluated for everyone again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from safar.core.segments import AudiencePlan

#: The position of a segment evaluated for everyone (``scan:<id>`` = ``<fingerprint>:done``).
DONE: Final = "done"
REPAIR_PREFIX: Final = "repair:"
#: ``retired:<aggregate key>`` = the ``refold`` its next generation takes, kept when it leaves
#: the catalog: published again at the same cursor, it must not find its old folds.
RETIRED_PREFIX: Final = "retired:"
GENERATIONS: Final = "generations"
#: Ends the storage keys of history folds (a live key ends with a digit).
HISTORY_SUFFIX: Final = "/h"


def is_history(storage: str) -> bool:
    """Whether folds stored under ``storage`` are a history job's."""
    return storage.endswith(HISTORY_SUFFIX)


class Generation(NamedTuple):
    """One generation of an aggregate's folds (see the module docstring)."""

    generation: int
    upto: int
    refold: int = 0

    @property
    def complete(self) -> bool:
        """Whether the history up to the generation is folded."""
        return self.upto >= self.generation

    def storage(self, key: str) -> str:
        """The key the folds of aggregate ``key`` are stored under in this generation."""
        suffix = f".{self.refold}" if self.refold else ""
        return f"{key}@{self.generation}{suffix}"

    def history(self, key: str) -> str:
        """The key the history job stores aggregate ``key``'s folds under in this generation."""
        return self.storage(key) + HISTORY_SUFFIX

    def encode(self) -> str:
        suffix = f":{self.refold}" if self.refold else ""
        return f"{self.generation}:{self.upto}{suffix}"

    @classmethod
    def decode(cls, text: str | None) -> Generation | None:
        """The generation a ``fold:`` progress holds; None when there is none."""
        if not text:
            return None
        generation, upto, *refold = text.split(":")
        return cls(int(generation), int(upto), int(refold[0]) if refold else 0)


@dataclass
class Jobs:
    """Where background work stands, as read from the store at refresh and kept since."""

    #: Aggregate key -> its current generation.
    folds: dict[str, Generation] = field(default_factory=dict)
    #: Segment id -> (fingerprint, last profile id evaluated or ``done``).
    scans: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Progress to commit with the next update.
    dirty: dict[str, str | None] = field(default_factory=dict)
    #: Ends the names of scan jobs (``#<partition>`` for a partition owner's).
    scan_suffix: str = ""
    _complete: dict[str, str] | None = None
    _ready: set[str] | None = None
    _storage: dict[str, str] | None = None
    _generations: dict[str, int] | None = None

    def storage_key(self, key: str) -> str:
        """The key aggregate ``key``'s folds are stored under now (asked for every event fed)."""
        if self._storage is None:
            self._storage = {k: held.storage(k) for k, held in self.folds.items()}
        return self._storage[key]

    def complete(self, key: str) -> bool:
        """Whether aggregate ``key`` has a generation whose history is complete (a partition
        owner knows none before the coordinator has given it one)."""
        held = self.folds.get(key)
        return held is not None and held.complete

    def generations(self) -> dict[str, int]:
        """Aggregate key -> its generation: events after it are folded live (asked for every
        event fed)."""
        if self._generations is None:
            self._generations = {k: held.generation for k, held in self.folds.items()}
        return self._generations

    def history_key(self, key: str) -> str:
        """The key the history job stores aggregate ``key``'s folds under now."""
        return self.folds[key].history(key)

    def complete_storage(self) -> dict[str, str]:
        """Storage key -> aggregate key, live and history, for the aggregates whose history is
        complete."""
        if self._complete is None:
            self._complete = complete_storage(self.folds)
        return self._complete

    def set_fold(self, key: str, held: Generation) -> None:
        """Move aggregate ``key`` to ``held``, to be committed with the next update."""
        self.keep_fold(key, held)
        self.dirty[f"fold:{key}"] = held.encode()

    def keep_fold(self, key: str, held: Generation) -> None:
        """Note that aggregate ``key`` stands at ``held``, as the store has it."""
        self._complete = None
        self._storage = None
        self._generations = None
        self.folds[key] = held

    def ready_segments(self) -> set[str]:
        """Segments evaluated for everyone."""
        if self._ready is None:
            self._ready = {sid for sid, (_, pos) in self.scans.items() if pos == DONE}
        return self._ready

    def scan_name(self, segment_id: str) -> str:
        return f"scan:{segment_id}{self.scan_suffix}"

    def set_scan(self, segment_id: str, print_: str, position: str) -> None:
        self._ready = None
        self.scans[segment_id] = (print_, position)
        self.dirty[self.scan_name(segment_id)] = f"{print_}:{position}"

    def take(self) -> dict[str, str | None]:
        taken, self.dirty = self.dirty, {}
        return taken

    def repair(self, plan: AudiencePlan, audience_ids: Collection[str], cursor: int) -> None:
        """Start repairs of these live audiences at ``cursor`` (see the module docstring)."""
        keys, rescan = repair_scope(plan, audience_ids)
        for key in sorted(keys):
            held = self.folds[key]
            self.set_fold(key, Generation(cursor, 0, held.refold + 1))
        for segment_id in sorted(rescan):
            print_, _ = self.scans[segment_id]
            self.set_scan(segment_id, print_, "")


def complete_storage(folds: Mapping[str, Generation]) -> dict[str, str]:
    """Storage key -> aggregate key, live and history, for those of ``folds`` (aggregate key
    -> generation) whose history is complete."""
    found: dict[str, str] = {}
    for key, held in folds.items():
        if held.complete:
            found[held.storage(key)] = key
            found[held.history(key)] = key
    return found


def pending_repairs(requested: Mapping[str, int], progress: Mapping[str, str]) -> dict[str, int]:
    """Audience id -> requests counted, for the ids with requests the processor has not
    carried out (its ``repair:`` progress differs from the count)."""
    return {
        audience_id: count
        for audience_id, count in requested.items()
        if progress.get(REPAIR_PREFIX + audience_id) != str(count)
    }


def repair_scope(plan: AudiencePlan, audience_ids: Collection[str]) -> tuple[set[str], set[str]]:
    """(aggregate keys to fold again, segment ids to evaluate for everyone again) for a repair
    of ``audience_ids`` (ids not live in ``plan`` are left out).

    A repaired segment is only as right as the segments it names with ``member:``, so those
    are repaired with it. Every aggregate they and the repaired computed traits read folds its
    history again; a segment reading one of those would be evaluated over a partial history
    meanwhile, so it is evaluated again once the history is in, as are the repaired segments
    and, after them, every segment naming any of these with ``member:``.
    """
    wanted = set(audience_ids)
    repaired: set[str] = set()
    # Readers come after the segments they name (members first): walk back from them.
    for segment in reversed(plan.segments):
        if segment.id in wanted or segment.id in repaired:
            repaired.add(segment.id)
            repaired |= plan.reads[segment.id].members
    keys = {plan.traits[t].key for t in wanted if t in plan.traits}
    for segment_id in repaired & plan.ids:
        keys |= plan.reads[segment_id].keys(plan.traits)
    rescan = set(repaired & plan.ids)
    for segment in plan.segments:
        reads = plan.reads[segment.id]
        if reads.keys(plan.traits) & keys or reads.members & rescan:
            rescan.add(segment.id)
    return keys, rescan
