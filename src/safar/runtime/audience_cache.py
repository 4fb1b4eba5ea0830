"""What the audience processor last committed, kept in memory so that a customer seen again
soon costs no read and no decoding.

Only the processor writes folds and memberships (one processor per store), so what it
committed is what the store holds. A failed commit may leave half-changed objects here:
:meth:`AudienceCache.forget` drops everything then. Least recently used entries go first when
the cache is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import Final

from safar.model.audiences import Fold, Membership
from safar.model.profiles import Identifier
from safar.ports import AudienceStore

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
