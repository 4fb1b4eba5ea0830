"""Reading the work feed's batches again from a later position (``model/work.past``): what a
partition owner's journeys take from the batches its audiences read in the same round."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from safar.model.work import WorkBatch, WorkItem, past
from safar.stores.memory.work import MemoryWorkFeed

EVERYTHING = 1_000_000


@st.composite
def published(draw: st.DrawFn) -> tuple[MemoryWorkFeed, int]:
    """A one-partition feed holding random batches (some with no items), and its last seq."""
    feed = MemoryWorkFeed(1)
    seq = 0
    for _ in range(draw(st.integers(0, 8))):
        items = []
        for _ in range(draw(st.integers(0, 5))):
            seq += draw(st.integers(1, 3))
            items.append(WorkItem(seq=seq, profile_id=f"p{seq}"))
        seq += draw(st.integers(0, 2))
        feed.publish(seq + 1, {0: items} if items else {})
        seq += 1
    return feed, seq


@given(published(), st.data())
def test_batches_read_earlier_give_what_a_read_from_a_later_position_gives(
    drawn: tuple[MemoryWorkFeed, int], data: st.DataObject
) -> None:
    feed, last = drawn
    earlier = data.draw(st.integers(0, last + 1))
    later = data.draw(st.integers(earlier, last + 2))
    read = feed.read(0, earlier, EVERYTHING)
    assert past(read, later) == feed.read(0, later, EVERYTHING)


def test_items_at_or_before_the_position_are_left_out() -> None:
    batch = WorkBatch(upto=10, items=(WorkItem(3, "a"), WorkItem(7, "b")), since=2)
    assert past([batch], 2) == [batch]
    assert past([batch], 3) == [WorkBatch(upto=10, items=(WorkItem(7, "b"),), since=2)]
    assert past([batch], 9) == [WorkBatch(upto=10, items=(), since=2)]
    assert past([batch], 10) == []
