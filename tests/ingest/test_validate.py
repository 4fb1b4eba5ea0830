"""The validation rules, straight on the pure functions (no HTTP)."""

from __future__ import annotations

import contextlib
import gzip
import tracemalloc
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.config import IngestSettings
from safar.errors import PayloadTooLarge, ValidationError
from safar.ingest.validate import decode_body, event_from_json, split_request
from safar.model.events import Event

NOW = int(datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
LIMITS = IngestSettings()


def validate(raw: bytes | dict[str, Any], **overrides: Any) -> Event:
    arguments: dict[str, Any] = {
        "source_id": "src_1",
        "received_at": NOW,
        "sent_at": None,
        "default_type": None,
        "location": "batch[3]",
        "limits": LIMITS,
    }
    arguments.update(overrides)
    return event_from_json(raw, **arguments)


def rejected(raw: bytes | dict[str, Any], **overrides: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        validate(raw, **overrides)
    return str(caught.value)


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "u1", **fields}


def test_a_track_event_keeps_its_raw_body_and_normalized_fields() -> None:
    raw = (
        b'{"type":"track","event":"Signed Up","userId":"u1","messageId":"m-1",'
        b'"properties":{"plan":"pro"}}'
    )
    event = validate(raw)
    assert event == Event(
        source_id="src_1",
        message_id="m-1",
        type="track",
        name="Signed Up",
        user_id="u1",
        anonymous_id=None,
        timestamp=NOW,
        received_at=NOW,
        body=raw,
    )


def test_a_decoded_object_is_accepted_and_stored_as_json() -> None:
    event = validate(track(properties={"plan": "pro"}))
    assert msgspec.json.decode(event.body) == track(properties={"plan": "pro"})


@pytest.mark.parametrize(
    ("kind", "extra", "name"),
    [
        ("identify", {"traits": {"email": "a@example.com"}}, None),
        ("page", {"name": "Pricing"}, "Pricing"),
        ("page", {}, None),
        ("screen", {"name": "Home"}, "Home"),
        ("group", {"groupId": "g1"}, None),
        ("alias", {"previousId": "anon-1"}, None),
        ("track", {"event": "Clicked", "name": "ignored"}, "Clicked"),
        ("identify", {"event": "ignored", "name": "ignored"}, None),
    ],
)
def test_each_type_and_its_name(kind: str, extra: dict[str, Any], name: str | None) -> None:
    event = validate({"type": kind, "anonymousId": "a1", **extra})
    assert (event.type, event.name, event.anonymous_id, event.user_id) == (kind, name, "a1", None)


def test_the_default_type_applies_only_when_the_event_has_none() -> None:
    assert validate({"userId": "u1"}, default_type="identify").type == "identify"
    assert validate(track(), default_type="identify").type == "track"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, "42"), (42.0, "42"), (4.5, "4.5"), (-7, "-7"), ("  u1 ", "  u1 ")],
)
def test_numbers_as_ids_become_strings(value: Any, expected: str) -> None:
    event = validate(track(userId=value, anonymousId=value))
    assert (event.user_id, event.anonymous_id) == (expected, expected)


def test_empty_ids_count_as_absent() -> None:
    event = validate(track(userId="", anonymousId="a1"))
    assert (event.user_id, event.anonymous_id) == (None, "a1")
    assert validate(track(userId=None, anonymousId="a1")).user_id is None


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"[1, 2]", "batch[3]: must be a JSON object, not an array"),
        (b'"track"', "batch[3]: must be a JSON object, not a string"),
        (b'{"userId": 1e999}', "batch[3].userId: number out of range"),
        (b'{"userId": 1' + b"0" * 5000 + b"}", "batch[3].userId: integer value out of range"),
        (b'{"type": "track",', "batch[3]: malformed JSON"),
        (b"", "batch[3]: malformed JSON"),
        ({"userId": "u1"}, "batch[3].type: missing; expected one of alias, group, identify"),
        (track(type="purchase"), "batch[3].type: 'purchase' is not an event type"),
        (track(type=["track"]), "batch[3].type: an array is not an event type"),
        ({"type": "track", "event": "x"}, "batch[3].userId: missing; every event needs a userId"),
        (track(userId="", anonymousId=" "), "batch[3].userId: missing"),
        (track(userId=True), "batch[3].userId: must be a string or a number, not true"),
        (track(userId={"id": 1}), "batch[3].userId: must be a string or a number, not an object"),
        (track(anonymousId=[1]), "batch[3].anonymousId: must be a string or a number"),
        (track(event=None), "batch[3].event: missing; track events need an event name"),
        (track(event=""), "batch[3].event: must be a non-empty string, not ''"),
        (track(event=12), "batch[3].event: must be a non-empty string, not 12"),
        ({"type": "alias", "userId": "u1"}, "batch[3].previousId: missing"),
        ({"type": "alias", "userId": "u1", "previousId": False}, "batch[3].previousId: must be"),
        ({"type": "group", "userId": "u1"}, "batch[3].groupId: missing"),
        ({"type": "page", "userId": "u1", "name": 3}, "batch[3].name: must be a string, not 3"),
        (track(messageId="m" * 101), "batch[3].messageId: is 101 characters, over the limit"),
        (track(messageId={}), "batch[3].messageId: must be a string or a number"),
        (track(timestamp="yesterday"), "batch[3].timestamp: 'yesterday' is not an ISO 8601"),
        (track(timestamp=1700000000), "batch[3].timestamp: must be an ISO 8601 date-time string"),
        (track(originalTimestamp="2026-13-01"), "batch[3].originalTimestamp: '2026-13-01' is not"),
        (track(sentAt="soon"), "batch[3].sentAt: 'soon' is not an ISO 8601 date-time"),
    ],
)
def test_rejections_name_the_event_and_the_field(raw: bytes | dict[str, Any], error: str) -> None:
    assert rejected(raw).startswith(error)


def test_long_bad_values_are_shortened_in_messages() -> None:
    message = rejected(track(timestamp="x" * 5000))
    assert len(message) < 150


def test_an_event_over_the_size_limit_is_too_large() -> None:
    raw = msgspec.json.encode(track(properties={"blob": "x" * LIMITS.max_event_bytes}))
    with pytest.raises(PayloadTooLarge) as caught:
        validate(raw)
    assert str(caught.value) == (
        f"batch[3]: event is {len(raw)} bytes, over the {LIMITS.max_event_bytes}-byte limit"
    )


def test_a_missing_message_id_gets_a_random_uuid() -> None:
    first, second = validate(track()), validate(track())
    assert uuid.UUID(first.message_id).version == 4
    assert first.message_id != second.message_id


def test_a_numeric_message_id_becomes_a_string() -> None:
    assert validate(track(messageId=123)).message_id == "123"


@pytest.mark.parametrize("field", ["userId", "anonymousId", "messageId"])
def test_ids_holding_nul_are_refused_by_name(field: str) -> None:
    message = rejected(track(**{field: "a\u0000b"}))
    assert f"batch[3].{field}" in message and "NUL" in message


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("userId", "u" * 513, 512),
        ("anonymousId", "a" * 513, 512),
        ("userId", int("9" * 513), 512),
        ("messageId", "m" * 101, 100),
    ],
)
def test_ids_over_their_length_are_refused_by_name(field: str, value: object, limit: int) -> None:
    # PostgreSQL's unique indexes take entries of at most 2,704 bytes: a longer id would
    # fail every commit of its batch.
    message = rejected(track(**{field: value}))
    assert message == f"batch[3].{field}: is {limit + 1} characters, over the limit of {limit}"


def test_ids_at_their_length_are_taken() -> None:
    event = validate(track(userId="u" * 512, anonymousId="a" * 512, messageId="m" * 100))
    assert (len(event.user_id or ""), len(event.anonymous_id or "")) == (512, 512)


class TestTimestamps:
    def test_without_a_timestamp_the_receive_time_is_used(self) -> None:
        assert validate(track(), sent_at=NOW - 5000).timestamp == NOW

    def test_timestamp_is_exact_to_the_millisecond(self) -> None:
        event = validate(track(timestamp="2026-02-03T04:05:06.789Z"))
        assert (
            event.timestamp
            == int(datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC).timestamp()) * 1000 + 789
        )

    def test_offsets_and_naive_times(self) -> None:
        utc = validate(track(timestamp="2026-02-03T04:05:06Z")).timestamp
        assert validate(track(timestamp="2026-02-03T07:35:06+03:30")).timestamp == utc
        assert validate(track(timestamp="2026-02-03T04:05:06")).timestamp == utc
        assert validate(track(timestamp=" 2026-02-03T04:05:06z ")).timestamp == utc

    def test_original_timestamp_when_timestamp_is_missing(self) -> None:
        event = validate(track(originalTimestamp="2026-02-03T04:05:06Z"))
        assert event.timestamp == validate(track(timestamp="2026-02-03T04:05:06Z")).timestamp
        both = validate(
            track(timestamp="2026-02-03T04:05:06Z", originalTimestamp="2020-01-01T00:00:00Z")
        )
        assert both.timestamp == event.timestamp

    def test_clock_skew_is_corrected_with_the_batch_sent_at(self) -> None:
        # The client's clock is 10 minutes behind: it stamped the event 2 s before sending it.
        client_now = NOW - 600_000
        event = validate(track(timestamp=_iso(client_now - 2000)), sent_at=client_now)
        assert event.timestamp == NOW - 2000
        assert event.received_at == NOW

    def test_the_event_sent_at_wins_over_the_batch_one(self) -> None:
        event = validate(
            track(timestamp=_iso(NOW - 10_000), sentAt=_iso(NOW - 9_000)), sent_at=NOW - 1
        )
        assert event.timestamp == NOW - 1000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


class TestSplit:
    def test_a_batch_gives_its_write_key_sent_at_and_raw_items(self) -> None:
        body = (
            b'{"writeKey":"wk_1","sentAt":"2026-03-01T12:00:00Z",'
            b'"batch":[{"type":"track","event":"a"} , {"type":"identify"}]}'
        )
        split = split_request(body, batch=True, limits=LIMITS)
        assert split.write_key == "wk_1"
        assert split.sent_at == NOW
        assert split.events == [b'{"type":"track","event":"a"}', b'{"type":"identify"}']

    def test_a_single_event_body_is_one_event(self) -> None:
        body = b'{"type":"track","writeKey":"wk_1"}'
        assert split_request(body, batch=False, limits=LIMITS) == (None, None, [body])

    def test_an_empty_write_key_counts_as_none(self) -> None:
        assert (
            split_request(b'{"batch":[],"writeKey":""}', batch=True, limits=LIMITS).write_key
            is None
        )

    def test_shared_context_and_integrations_go_under_each_events_own(self) -> None:
        body = msgspec.json.encode(
            {
                "context": {"library": {"name": "x"}, "ip": "1.1.1.1"},
                "integrations": {"All": False},
                "batch": [
                    {"type": "track", "context": {"ip": "2.2.2.2"}},
                    {"type": "track", "integrations": {"Mixpanel": True}},
                    5,
                ],
            }
        )
        events = split_request(body, batch=True, limits=LIMITS).events
        first, second = (msgspec.json.decode(raw) for raw in events[:2])
        assert first["context"] == {"library": {"name": "x"}, "ip": "2.2.2.2"}
        assert first["integrations"] == {"All": False}
        assert second["context"] == {"library": {"name": "x"}, "ip": "1.1.1.1"}
        assert second["integrations"] == {"All": False, "Mixpanel": True}
        assert events[2] == b"5"

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            (b'{"batch": [', "body: malformed JSON"),
            (b"[1]", "body: must be a JSON object, not an array"),
            (b'"batch"', "body: must be a JSON object, not a string"),
            (b'{"batch": {"type": "track"}}', "batch: must be an array of events, not an object"),
            (b'{"batch": "x"}', "batch: must be an array of events, not a string"),
            (b'{"batch": [], "sentAt": 1e999}', "sentAt: number out of range"),
            (b"{}", "batch: missing; expected an array of events"),
            (b'{"batch": [], "writeKey": 5}', "writeKey: must be a string"),
            (b'{"batch": [], "sentAt": "noon"}', "sentAt: 'noon' is not an ISO 8601 date-time"),
            (b'{"batch": [], "context": []}', "context: must be a JSON object"),
        ],
    )
    def test_bad_envelopes(self, body: bytes, error: str) -> None:
        with pytest.raises(ValidationError) as caught:
            split_request(body, batch=True, limits=LIMITS)
        assert str(caught.value).startswith(error)

    def test_too_many_events(self) -> None:
        body = msgspec.json.encode({"batch": [{}] * 2501})
        with pytest.raises(
            PayloadTooLarge, match=r"^batch: has 2501 events, over the limit of 2500"
        ):
            split_request(body, batch=True, limits=LIMITS)
        at_limit = msgspec.json.encode({"batch": [{}] * 2500})
        assert len(split_request(at_limit, batch=True, limits=LIMITS).events) == 2500

    def test_too_large_a_body(self) -> None:
        body = b" " * (LIMITS.max_batch_bytes + 1)
        with pytest.raises(PayloadTooLarge, match=r"^body: 512001 bytes, over the 512000-byte"):
            split_request(body, batch=False, limits=LIMITS)


class TestDecodeBody:
    def test_identity(self) -> None:
        assert decode_body(b"abc", None, LIMITS) == b"abc"
        assert decode_body(b"abc", "identity", LIMITS) == b"abc"

    @pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip"])
    def test_gzip(self, encoding: str) -> None:
        assert decode_body(gzip.compress(b'{"a":1}'), encoding, LIMITS) == b'{"a":1}'

    def test_concatenated_gzip_members(self) -> None:
        body = gzip.compress(b"ab") + gzip.compress(b"cd")
        assert decode_body(body, "gzip", LIMITS) == b"abcd"

    def test_deflate_with_or_without_gzip_framing(self) -> None:
        assert decode_body(zlib.compress(b"abc"), "deflate", LIMITS) == b"abc"
        assert decode_body(gzip.compress(b"abc"), "deflate", LIMITS) == b"abc"

    def test_a_body_inflating_to_exactly_the_limit_passes(self) -> None:
        data = b"x" * LIMITS.max_batch_bytes
        assert decode_body(gzip.compress(data), "gzip", LIMITS) == data

    def test_a_gzip_bomb_is_refused_without_inflating_it(self) -> None:
        bomb = gzip.compress(b"\0" * 50_000_000)
        assert len(bomb) < 100_000
        tracemalloc.start()
        try:
            with pytest.raises(PayloadTooLarge, match=r"^gzip body: inflates to over the 512000"):
                decode_body(bomb, "gzip", LIMITS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * LIMITS.max_batch_bytes

    def test_members_share_the_limit(self) -> None:
        half = gzip.compress(b"x" * (LIMITS.max_batch_bytes // 2 + 1))
        with pytest.raises(PayloadTooLarge):
            decode_body(half + half, "gzip", LIMITS)

    @pytest.mark.parametrize(
        ("body", "encoding", "error"),
        [
            (b"not gzip", "gzip", "gzip body: cannot be inflated"),
            (gzip.compress(b"abcdef" * 100)[:-12], "gzip", "gzip body: is truncated"),
            (b"abc", "br", "Content-Encoding: 'br' is not supported"),
        ],
    )
    def test_bad_bodies(self, body: bytes, encoding: str, error: str) -> None:
        with pytest.raises(ValidationError) as caught:
            decode_body(body, encoding, LIMITS)
        assert str(caught.value).startswith(error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
segment_fields = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "messageId",
        "event",
        "name",
        "previousId",
        "groupId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "writeKey",
    ]
)
segment_values = (
    json_values
    | st.sampled_from(["track", "identify", "page", "screen", "group", "alias"])
    | st.datetimes().map(lambda moment: moment.isoformat())
    | st.text(alphabet="0123456789-:TZ.+ ", max_size=32)
)
segment_like = st.dictionaries(segment_fields, segment_values, max_size=12)


@settings(max_examples=400)
@given(value=json_values | segment_like, default_type=st.none() | st.just("track"))
def test_arbitrary_json_never_raises_anything_but_validation_error(
    value: Any, default_type: str | None
) -> None:
    for raw in (msgspec.json.encode(value), value):
        if not isinstance(raw, bytes | dict):
            continue
        try:
            event = validate(raw, default_type=default_type, sent_at=NOW - 1)
        except ValidationError as exc:
            assert exc.location is not None and exc.location.startswith("batch[3]")
        else:
            assert event.user_id or event.anonymous_id
            assert 0 < len(event.message_id) <= 100


@settings(max_examples=200)
@given(value=json_values | st.fixed_dictionaries({"batch": st.lists(json_values)}))
def test_arbitrary_batch_bodies_never_raise_anything_but_validation_error(value: Any) -> None:
    with contextlib.suppress(ValidationError):
        split_request(msgspec.json.encode(value), batch=True, limits=LIMITS)


@given(body=st.binary(max_size=64), encoding=st.sampled_from(["gzip", "deflate"]))
def test_arbitrary_bytes_never_inflate_into_anything_but_validation_error(
    body: bytes, encoding: str
) -> None:
    with contextlib.suppress(ValidationError):
        decode_body(body, encoding, LIMITS)
