"""Traits: last write wins by the event's time, whatever the arrival order."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from safar.core.traits import combine, replay, values, wins, write
from safar.model.profiles import StampedValue, TraitWrite


def test_a_later_timestamp_wins_whatever_arrives_first() -> None:
    traits: dict[str, StampedValue] = {}
    assert write(traits, "plan", StampedValue("pro", 20, "m1"))
    assert not write(traits, "plan", StampedValue("free", 10, "m2"))  # older, arrived later
    assert values(traits) == {"plan": "pro"}


def test_message_id_then_value_break_ties() -> None:
    assert wins(StampedValue("a", 5, "m2"), StampedValue("b", 5, "m1"))
    assert not wins(StampedValue("b", 5, "m1"), StampedValue("a", 5, "m2"))
    # Same stamp (the same message id from two sources): the canonical JSON decides.
    assert wins(StampedValue("b", 5, "m1"), StampedValue("a", 5, "m1"))
    assert not wins(StampedValue("a", 5, "m1"), StampedValue("b", 5, "m1"))
    assert not wins(StampedValue("a", 5, "m1"), StampedValue("a", 5, "m1"))


def test_values_are_plain_and_sorted_by_key() -> None:
    traits = {"b": StampedValue(2, 1, "m"), "a": StampedValue({"city": "Tehran"}, 1, "m")}
    assert list(values(traits).items()) == [("a", {"city": "Tehran"}), ("b", 2)]


json_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "y"]))
writes = st.lists(
    st.builds(
        lambda key, value, ts, mid: TraitWrite(
            identifier=("user_id", "u"), key=key, value=value, timestamp=ts, message_id=mid, seq=0
        ),
        st.sampled_from(["plan", "name", "city"]),
        json_values,
        st.integers(0, 4),
        st.sampled_from(["m1", "m2", "m3"]),
    ),
    max_size=15,
)


@given(writes, st.randoms(use_true_random=False))
def test_replay_is_order_independent(found: list[TraitWrite], rnd: Any) -> None:
    shuffled = list(found)
    rnd.shuffle(shuffled)
    assert replay(shuffled) == replay(found)


@given(writes, st.integers(0, 15))
def test_combining_parts_equals_replaying_the_whole(found: list[TraitWrite], cut: int) -> None:
    left, right = replay(found[:cut]), replay(found[cut:])
    assert combine([left, right]) == replay(found)
    assert combine([right, left]) == replay(found)
