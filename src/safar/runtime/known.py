"""What the profile processor remembers of its store, so a batch loads only what it has not seen.

The processor is the store's only writer, so after each of its updates it knows exactly where
the identifiers it touched are placed, which edges are stored, and the stored state (traits) of
each profile it wrote. That stays true only while nobody else writes: the memory is tied to the
``processed_seq`` it is valid at, and dropped when the store is found elsewhere (another
processor ran) or an update fails.
"""

from __future__ import annotations

from collections.abc import Collection

from safar.core.batch import Pairs
from safar.model.profiles import (
    Identifier,
    IdentityView,
    Placement,
    ProfileState,
    ProfileUpdate,
)
from safar.ports import ProfileStore

#: Entries remembered before everything is forgotten at once: about 100 MB per million.
DEFAULT_LIMIT = 1_000_000


class KnownState:
    """Placements and edge stamps known to be in the store at :attr:`seq`."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.seq: int | None = None
        self._placements: dict[Identifier, Placement] = {}
        self._edges: dict[str, tuple[int, str]] = {}
        #: Edge keys by identifier set: never stale, kept here to share the memory limit.
        self.edge_keys: dict[tuple[Identifier, ...], str] = {}
        #: Identifiers by (user_id, anonymous_id): never stale either.
        self.pairs: Pairs = {}
        #: Profiles' stored states (traits), as this processor last wrote them.
        self._states: dict[str, ProfileState] = {}

    def load(
        self,
        store: ProfileStore,
        seq: int,
        identifiers: Collection[Identifier],
        edge_keys: Collection[str],
    ) -> tuple[IdentityView, list[Identifier]]:
        """What ``store.load`` would return at ``seq``, asking the store only for what is new,
        and which of ``identifiers`` the store has never placed.

        The view may hold more than was asked for, and is valid until :meth:`applied`.
        """
        if seq != self.seq:
            self.forget()
            self.seq = seq
        placements, edges = self._placements, self._edges
        missing = [i for i in identifiers if i not in placements]
        unknown = [k for k in edge_keys if k not in edges]
        if missing or unknown:
            loaded = store.load(missing, unknown)
            # Our own tuples as keys first (an update keeps a key's first object): the batches
            # to come look them up by these very objects, which compare at once.
            for identifier in missing:
                placement = loaded.placements.get(identifier)
                if placement is not None:
                    placements[identifier] = placement
            placements.update(loaded.placements)
            edges.update(loaded.edges)
        # Of the missing ones only: looking up every identifier again was a pass over the batch.
        unplaced = [i for i in missing if i not in placements]
        return IdentityView(placements=placements, edges=edges), unplaced

    def states(self, profile_ids: Collection[str]) -> dict[str, ProfileState] | None:
        """Copies of these profiles' stored states (an update changes its own), or None
        unless all of them are known."""
        held = self._states
        found: dict[str, ProfileState] = {}
        for pid in profile_ids:
            state = held.get(pid)
            if state is None:
                return None
            found[pid] = ProfileState(
                id=pid, traits=dict(state.traits), merged_from=list(state.merged_from)
            )
        return found

    def placement(self, identifier: Identifier) -> Placement | None:
        """Where ``identifier`` is placed, if known."""
        return self._placements.get(identifier)

    def applied(self, update: ProfileUpdate) -> None:
        """Record an update the store has committed."""
        if update.after_seq != self.seq:
            self.forget()
            return
        self._placements.update(update.placements)
        self._edges.update({e.key: (e.timestamp, e.message_id) for _, e in update.edges})
        states = self._states
        for pid in update.deleted_profiles:
            states.pop(pid, None)
        for state in update.profiles:
            states[state.id] = state
        self.seq = update.processed_seq
        held = (
            len(self._placements)
            + len(self._edges)
            + len(self.edge_keys)
            + len(self.pairs)
            + len(states)
        )
        if held > self.limit:
            self.forget()

    def forget(self) -> None:
        self.seq = None
        self._placements = {}
        self._edges = {}
        self.edge_keys = {}
        self.pairs = {}
        self._states = {}
