"""Profiles as everyone outside the processors sees them: with computed traits among their
traits and their segments listed.

:class:`AudienceReader` wraps a :class:`~safar.ports.ProfileReader`, so the management API,
journeys (conditions, templates) and the policy gate (suppression by segment) read audiences
without knowing where they are kept. Computed values are read at the caller's *now* from the
stored folds, so a windowed count is right between evaluations too. A computed trait wins over
a trait of the same name set by identify calls.

Its ``processed_seq`` is the lower of the profile and audience processors' cursors, so a
journey runtime reading through it handles an event only once both have: its conditions see
the customer's segments as of that event.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import msgspec

from safar.core.segments import CustomerTraits
from safar.model.audiences import Aggregate, Fold
from safar.model.profiles import Identifier, MergeRecord, Profile, TraitChange
from safar.ports import AudienceCatalog, AudienceStore, Clock, ProfileReader
from safar.runtime.audiences import complete_folds, customer_folds, live_definitions

#: How long the reader trusts what it read of the catalog.
CATALOG_TTL_MS = 1000


class AudienceReader:
    """A :class:`~safar.ports.ProfileReader` adding computed traits and segments."""

    def __init__(
        self,
        profiles: ProfileReader,
        store: AudienceStore,
        catalog: AudienceCatalog,
        clock: Clock,
        *,
        partitions: int = 0,
    ) -> None:
        """``partitions``: the work feed's, when audiences are kept by partition (ADR 12), so
        :meth:`processed_seq` is the least of their cursors; 0 without a feed."""
        self._profiles = profiles
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._partitions = partitions
        self._read_at: int | None = None
        #: Computed traits whose history is complete: name -> aggregate; the keys their folds
        #: are stored under -> aggregate key; aggregate key -> aggregate.
        self._traits: dict[str, Aggregate] = {}
        self._storage: dict[str, str] = {}
        self._aggregates: dict[str, Aggregate] = {}
        self._segments: set[str] = set()

    def invalidate(self) -> None:
        """Read the catalog again at the next use (after a publish)."""
        self._read_at = None

    def _refresh(self, now: int) -> None:
        if self._read_at is not None and now - self._read_at < CATALOG_TTL_MS:
            return
        segments, traits = live_definitions(self._catalog.all())
        self._storage = complete_folds(self._store.progress(), (t.aggregate.key for t in traits))
        complete = set(self._storage.values())
        ready = [t for t in traits if t.aggregate.key in complete]
        self._traits = {t.id: t.aggregate for t in ready}
        self._aggregates = {t.aggregate.key: t.aggregate for t in ready}
        self._segments = {s.id for s in segments}
        self._read_at = now

    def with_audiences(self, profiles: Iterable[Profile]) -> list[Profile]:
        """These profiles with their computed traits and segments (copies)."""
        found = list(profiles)
        if not found:
            return found
        now = self._clock.now_ms()
        self._refresh(now)
        folds: dict[Identifier, dict[str, Fold]] = {}
        if self._traits:
            identifiers = {
                (kind, value)
                for profile in found
                for kind, values in profile.identifiers.items()
                for value in values
            }
            folds = self._store.folds(identifiers)
        memberships = self._store.memberships({p.id for p in found}) if self._segments else {}
        result = []
        for profile in found:
            traits = dict(profile.traits)
            traits.update(self._computed(profile, folds, now))
            held = memberships.get(profile.id)
            segments = sorted(s for s in held.segments if s in self._segments) if held else []
            result.append(msgspec.structs.replace(profile, traits=traits, segments=segments))
        return result

    def _computed(
        self, profile: Profile, folds: dict[Identifier, dict[str, Fold]], now: int
    ) -> dict[str, Any]:
        found = customer_folds(profile, folds, self._storage, self._aggregates)
        traits = CustomerTraits(profile.traits, self._traits, found, now)
        return {name: traits[name] for name in self._traits}

    # -- ProfileReader ------------------------------------------------------------------------

    def processed_seq(self) -> int:
        store = self._store
        if self._partitions:
            audiences = min(store.processed_seq(n) for n in range(self._partitions))
        else:
            audiences = store.processed_seq()
        return min(self._profiles.processed_seq(), audiences)

    def find(self, identifier: Identifier) -> Profile | None:
        profile = self._profiles.find(identifier)
        return None if profile is None else self.with_audiences([profile])[0]

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        return self.with_audiences(self._profiles.scan(after_id, limit, partition))

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        found = self._profiles.find_many(identifiers)
        unique = {p.id: p for p in found.values()}
        decorated = {p.id: p for p in self.with_audiences(unique.values())}
        return {identifier: decorated[p.id] for identifier, p in found.items()}

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        return self._profiles.timeline(profile_id, limit, before_seq)

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        return self._profiles.trait_history(profile_id, limit)

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        return self._profiles.reshaped(after_seq, upto_seq)

    def merges(self, profile_id: str) -> list[MergeRecord]:
        return self._profiles.merges(profile_id)
