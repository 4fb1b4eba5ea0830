"""How deeply incoming JSON may nest (``safar.model.nesting``)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safar.errors import ValidationError
from safar.model.nesting import MAX_NESTING, check_nesting, nesting

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=40,
)


def levels(value: Any) -> int:
    """The reference: the same count, recursively."""
    if isinstance(value, dict):
        return 1 + max((levels(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((levels(v) for v in value), default=0)
    return 0


def wrapped(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"k": [value]} if depth % 2 else [value]
    return value


@given(JSON)
def test_nesting_counts_levels_of_objects_and_arrays(value: Any) -> None:
    assert nesting(value) == levels(value)


@given(JSON, st.integers(min_value=0, max_value=80))
def test_a_document_is_refused_exactly_when_it_nests_too_deep(value: Any, depth: int) -> None:
    document = wrapped(value, depth)
    raw = msgspec.json.encode(document)
    if levels(document) > MAX_NESTING:
        with pytest.raises(ValidationError, match="more than 64 levels deep") as refused:
            check_nesting(raw, "batch[2]")
        assert refused.value.location == "batch[2]"
    else:
        check_nesting(raw, "batch[2]")


def test_the_limit_itself_is_accepted() -> None:
    check_nesting(b"[" * MAX_NESTING + b"]" * MAX_NESTING, "body")
    with pytest.raises(ValidationError):
        check_nesting(b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), "body")


def test_brackets_inside_strings_do_not_count() -> None:
    check_nesting(msgspec.json.encode({"note": "[{" * 500}), "body")


def test_too_deep_to_decode_at_all_is_refused_not_raised() -> None:
    with pytest.raises(ValidationError, match="levels deep"):
        check_nesting(b"[" * 100_000 + b"]" * 100_000, "body")


def test_text_that_is_not_json_is_left_to_its_decoder() -> None:
    check_nesting(b"[" * 100 + b"oops", "body")


def test_an_event_too_deep_to_read_reads_as_its_normalized_fields() -> None:
    # Taken before ingestion limited nesting: its readers (audiences, journeys) go on.
    from safar.model.events import Event

    event = Event(
        source_id="s",
        message_id="m1",
        type="track",
        name="Deep",
        user_id="u1",
        anonymous_id=None,
        timestamp=0,
        received_at=0,
        body=b'{"properties": {"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}",
    )
    payload = event.payload(times=False)
    assert payload["userId"] == "u1" and payload["event"] == "Deep"
    assert "properties" not in payload
