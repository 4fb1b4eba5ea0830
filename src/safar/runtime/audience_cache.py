"""What the audience processor read and committed, kept in memory so that a customer seen
again soon costs no read and no decoding.

- :class:`AudienceCache`: folds and memberships. Only the processor writes them (one processor
  per store), so what it committed is what the store holds. A failed batch may leave
  half-changed objects here: :meth:`AudienceCache.forget` drops everything then.
- :class:`ProfileCache`: profiles, which the profile processor changes. A profile changes
  only by an event the audience processor also reads (an identify call's traits, an event
  linking identifiers) or by a merge or move it learns of from
  :meth:`~safar.ports.ProfileReader.reshaped`; the processor drops a profile on either before
  looking it up, so a cached profile is never older than the events handled so far.

Least recently used entries go first when a cache is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import Final

from safar.model.audiences import Fold, Membership
from safar.model.profiles import Identifier, Profile
from safar.ports import AudienceStore, ProfileReader

#: Identifiers (and as many memberships) kept: a few KB each.
DEFAULT_LIMIT: Final = 100_000


class AudienceCache:
    def __init__(self, store: AudienceStore, limit: int = DEFAULT_LIMIT) -> None:
        self._store = store
        self._limit = limit
        #: Identifier -> its folds; an empty mapping for one known to have none.
        self._folds: OrderedDict[Identifier, dict[str, Fold]] = OrderedDict()
        #: Profile id -> its membership, or None for one known to have none.
        self._members: OrderedDict[str, Membership | None] = OrderedDict()

    def folds(self, identifiers: Collection[Identifier]) -> dict[Identifier, dict[str, Fold]]:
        """The folds of these identifiers (those without any are left out)."""
        found: dict[Identifier, dict[str, Fold]] = {}
        missing = []
        for identifier in identifiers:
            held = self._folds.get(identifier)
            if held is None:
                missing.append(identifier)
            else:
                self._folds.move_to_end(identifier)
                if held:
                    found[identifier] = held
        if missing:
            loaded = self._store.folds(missing)
            for identifier in missing:
                folds = loaded.get(identifier, {})
                self._remember_folds(identifier, folds)
                if folds:
                    found[identifier] = folds
        return found

    def memberships(self, profile_ids: Collection[str]) -> dict[str, Membership]:
        found: dict[str, Membership] = {}
        missing = []
        for pid in profile_ids:
            if pid in self._members:
                self._members.move_to_end(pid)
                held = self._members[pid]
                if held is not None:
                    found[pid] = held
            else:
                missing.append(pid)
        if missing:
            loaded = self._store.memberships(missing)
            for pid in missing:
                self._remember_member(pid, loaded.get(pid))
                if pid in loaded:
                    found[pid] = loaded[pid]
        return found

    def committed(
        self,
        folds: dict[Identifier, dict[str, Fold]],
        memberships: Iterable[Membership],
        deleted: Iterable[str],
    ) -> None:
        """Record what a successful commit stored."""
        for identifier, held in folds.items():
            self._remember_folds(identifier, held)
        for membership in memberships:
            self._remember_member(membership.profile_id, membership)
        for pid in deleted:
            self._remember_member(pid, None)

    def forget(self) -> None:
        self._folds.clear()
        self._members.clear()

    def _remember_folds(self, identifier: Identifier, folds: dict[str, Fold]) -> None:
        self._folds[identifier] = folds
        self._folds.move_to_end(identifier)
        while len(self._folds) > self._limit:
            self._folds.popitem(last=False)

    def _remember_member(self, pid: str, membership: Membership | None) -> None:
        self._members[pid] = membership
        self._members.move_to_end(pid)
        while len(self._members) > self._limit:
            self._members.popitem(last=False)


class ProfileCache:
    """Profiles by identifier, for the identifiers events were attributed to."""

    def __init__(self, profiles: ProfileReader, limit: int = DEFAULT_LIMIT) -> None:
        self._profiles = profiles
        self._limit = limit
        self._by_identifier: OrderedDict[Identifier, Profile] = OrderedDict()

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        found: dict[Identifier, Profile] = {}
        missing = []
        for identifier in identifiers:
            held = self._by_identifier.get(identifier)
            if held is None:
                missing.append(identifier)
            else:
                self._by_identifier.move_to_end(identifier)
                found[identifier] = held
        if missing:
            for identifier, profile in self._profiles.find_many(missing).items():
                found[identifier] = profile
                self._by_identifier[identifier] = profile
            while len(self._by_identifier) > self._limit:
                self._by_identifier.popitem(last=False)
        return found

    def drop(self, identifiers: Iterable[Identifier], profile_ids: Collection[str]) -> None:
        """Forget the profiles holding these identifiers, and these profiles."""
        gone = set(profile_ids)
        for identifier in identifiers:
            held = self._by_identifier.get(identifier)
            if held is not None:
                gone.add(held.id)
        if gone:
            stale = [i for i, p in self._by_identifier.items() if p.id in gone]
            for identifier in stale:
                del self._by_identifier[identifier]

    def forget(self) -> None:
        self._by_identifier.clear()
