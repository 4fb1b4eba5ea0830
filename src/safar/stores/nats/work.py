"""The work feed (:class:`safar.ports.WorkFeed`) on a NATS JetStream stream.

Layout, in one stream (``SAFAR_WORK`` by default, subjects ``<subject>.>``):

- ``<subject>.<n>``: partition ``n``'s batches, one message each, the msgpack of a
  :class:`~safar.model.work.WorkBatch`. Stream sequences give their order.
- ``<subject>.state``: the feed's record, JSON ``{"partitions": P, "published_seq": S}``, rolled
  up so only its last message is kept. One record rather than two so that it is rewritten by
  every publish: it cannot expire (``max_age``) while work is published, and a reopened feed with
  another partition count is refused with :class:`~safar.errors.ConfigError`.

Publishing appends with ``Nats-Expected-Last-Subject-Sequence``: the server stores a batch only
if the partition's last message is still the one the publisher saw. A publisher that loses the
race, or does not know whether its last publish landed (a timeout, a crash), reads the
partition's last message again and appends only the items above its ``upto``; so two publishers
and retries never duplicate, drop or reorder items. Partitions are appended concurrently; the
record is written last, when every partition holds the range. A batch too big for one message
(the server's ``max_payload``, or the stream's ``max_msg_size``) is appended as several, each but
the last ending at its last item: readers see more, smaller batches.

Reading finds the first message of the partition with ``upto`` above ``after_seq`` by a binary
search over stream sequences, each probe a "first message on the subject at or after sequence x"
get (``next_by_subj``); then follows message by message. The position reached is kept, so a
worker reading on from where it stopped makes one request per message (and one when there is
nothing new). Gets are direct gets when the stream allows them (no JSON API round trip).

Server features relied on (all in 2.9; checked on 2.9.10 and 2.15.1): file streams with limits
retention and ``max_age``, ``Nats-Expected-Last-Subject-Sequence`` (``0`` for an empty subject),
``Nats-Rollup: sub``, stream message get and direct get by ``last_by_subj`` and
``seq`` + ``next_by_subj``.

Retention: a partition's owner trims what it has committed (:meth:`JetStreamWorkFeed.trim`
purges the subject's messages before the first one ending above its cursor, keeping the last), so
the stream holds what is still to be read. With ``max_age_s`` above 0 messages also go after that
age, read or not; each batch names where the one before it ended (``since``), so a reader whose
next batch is gone finds the gap and raises instead of skipping it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from safar.errors import ConfigError, StoreError
from safar.model.work import WorkBatch, WorkItem, lost
from safar.stores.nats.connection import NatsConnection
from safar.stores.nats.stream import ensure_stream

T = TypeVar("T")

_WRONG_LAST_SEQUENCE = 10071
_NO_MESSAGE = 10037
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
#: Room left in a message for its headers and the protocol line.
_PAYLOAD_MARGIN = 4096


class _FeedState(msgspec.Struct, frozen=True):
    partitions: int
    published_seq: int


class _Upto(msgspec.Struct, frozen=True, array_like=True):
    """A :class:`WorkBatch` read for its ``upto`` only (the items are skipped)."""

    upto: int


@dataclass(frozen=True)
class _Mark:
    """A message on a subject: its stream sequence, and the ``upto`` it carries. Sequence 0
    stands for "no message yet" (as in ``Nats-Expected-Last-Subject-Sequence``)."""

    seq: int
    upto: int


_NOTHING = _Mark(seq=0, upto=0)
_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(WorkBatch).decode
_decode_upto = msgspec.msgpack.Decoder(_Upto).decode
_encode_state = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(_FeedState).decode


class JetStreamWorkFeed:
    """:class:`safar.ports.WorkFeed` on stream ``stream`` of the NATS server(s) at ``url``.

    Blocking calls, safe from several threads; a call that cannot reach the server raises a
    retryable :class:`~safar.errors.StoreError` after about ``timeout_s``.
    """

    def __init__(
        self,
        url: str,
        *,
        partitions: int,
        stream: str = "SAFAR_WORK",
        subject: str = "safar.work",
        max_age_s: float = 0,
        timeout_s: float = 5.0,
    ) -> None:
        if partitions < 1:
            raise ConfigError(f"a work feed needs at least one partition, not {partitions}")
        self.partitions = partitions
        self._stream = stream
        self._subject = subject
        self._direct = False
        self._rollup = False
        self._max_bytes = 0
        self._state = _NOTHING  # the record as last seen: its seq, upto = published_seq
        self._tails: dict[int, _Mark] = {}  # each partition's last message, as last seen
        self._positions: dict[int, _Mark] = {}  # the message each partition's reads got to
        self._publishing = asyncio.Lock()
        self._conn = NatsConnection(url, timeout_s=timeout_s, name="work-feed")
        try:
            self._conn.call(self._open(max_age_s), f"opening the work feed stream {stream}")
        except BaseException:
            self._conn.close()
            raise

    # -- the port ---------------------------------------------------------------------------

    def published_seq(self) -> int:
        return self._conn.call(self._read_state(), "reading the work feed's state").upto

    def publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        for partition in items:
            self._check(partition)
        self._conn.call(self._publish(upto, items), f"publishing work up to {upto}")

    def read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        self._check(partition)
        return self._conn.call(
            self._read(partition, after_seq, limit), f"reading work of partition {partition}"
        )

    def read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        for partition in after:
            self._check(partition)
        return self._conn.call(self._read_many(after, limit), "reading work")

    def trim(self, partition: int, upto: int) -> None:
        self._check(partition)
        self._conn.call(self._trim(partition, upto), f"trimming work of partition {partition}")

    def close(self) -> None:
        self._conn.close()

    # -- opening ----------------------------------------------------------------------------

    async def _open(self, max_age_s: float) -> None:
        info = await ensure_stream(self._conn.js, self._stream, self._subject, max_age_s=max_age_s)
        self._direct = bool(info.config.allow_direct)
        self._rollup = bool(info.config.allow_rollup_hdrs)
        largest = self._conn.client.max_payload
        if info.config.max_msg_size and info.config.max_msg_size > 0:
            largest = min(largest, info.config.max_msg_size)
        self._max_bytes = largest - min(_PAYLOAD_MARGIN, largest // 4)
        while True:
            await self._read_state()
            if self._state.seq or await self._write_state(0):
                return

    # -- publishing -------------------------------------------------------------------------

    async def _publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        async with self._publishing:
            if upto <= self._state.upto:
                return
            given = [(n, seqs) for n, seqs in sorted(items.items()) if seqs]
            outcomes = await asyncio.gather(
                *(self._append(n, upto, seqs) for n, seqs in given), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            while not await self._write_state(upto):
                await self._read_state()
                if self._state.upto >= upto:
                    return

    async def _append(self, partition: int, upto: int, given: Sequence[WorkItem]) -> None:
        """Append ``given``'s items above the partition's last ``upto`` (see the module)."""
        subject = f"{self._subject}.{partition}"
        tail = self._tails.pop(partition, None) or await self._last_mark(subject, direct=False)
        while True:
            fresh = sorted((i for i in given if i.seq > tail.upto), key=lambda i: i.seq)
            if not fresh or upto <= tail.upto:
                self._tails[partition] = tail
                return
            batch, payload = _leading_batch(upto, fresh, self._max_bytes, tail.upto)
            try:
                ack = await self._conn.js.publish(
                    subject, payload, headers={_EXPECTED_LAST: str(tail.seq)}
                )
            except APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                tail = await self._last_mark(subject, direct=False)
                continue
            tail = _Mark(seq=ack.seq, upto=batch.upto)

    async def _read_state(self) -> _Mark:
        """The record from the server (and checked), or :data:`_NOTHING` when there is none."""
        message = await self._last(f"{self._subject}.state", direct=False)
        if message is None:
            self._state = _NOTHING
            return self._state
        state = _decoded(_decode_state, message)
        if state.partitions != self.partitions:
            raise ConfigError(
                f"the work feed on NATS stream {self._stream} has {state.partitions} partitions,"
                f" not {self.partitions}: the partition count is fixed per installation"
            )
        self._state = _Mark(seq=_seq(message), upto=state.published_seq)
        return self._state

    async def _write_state(self, published_seq: int) -> bool:
        """Replace the record, if it is still the one last seen; False if it was not."""
        payload = _encode_state(_FeedState(self.partitions, published_seq))
        headers = {_EXPECTED_LAST: str(self._state.seq)}
        if self._rollup:  # keep only the last record (a stream made by hand may not allow it)
            headers["Nats-Rollup"] = "sub"
        try:
            ack = await self._conn.js.publish(f"{self._subject}.state", payload, headers=headers)
        except APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return False
            raise
        self._state = _Mark(seq=ack.seq, upto=published_seq)
        return True

    # -- reading ----------------------------------------------------------------------------

    async def _read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        # Partitions in parallel: one round trip's wait for all of them, not one each.
        order = sorted(after)
        found = await asyncio.gather(*(self._read(n, after[n], limit) for n in order))
        return dict(zip(order, found, strict=True))

    async def _read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        subject = f"{self._subject}.{partition}"
        message = await self._first_after(partition, subject, after_seq)
        found: list[WorkBatch] = []
        count = 0
        while message is not None:
            batch = _decoded(_decode_batch, message)
            if not found and batch.since > after_seq:
                raise lost(partition, after_seq, batch.since)
            self._positions[partition] = _Mark(seq=_seq(message), upto=batch.upto)
            if batch.items and batch.items[0].seq <= after_seq:
                kept = tuple(i for i in batch.items if i.seq > after_seq)
                batch = WorkBatch(batch.upto, kept, batch.since)
            found.append(batch)
            count += len(batch.items)
            if count >= limit:
                break
            message = await self._next(subject, _seq(message) + 1)
        return found

    async def _first_after(
        self, partition: int, subject: str, after_seq: int
    ) -> RawStreamMsg | None:
        """The partition's first message with ``upto > after_seq``.

        With ``next(x)`` the subject's first message at or after stream sequence ``x``, the
        ``upto`` of ``next(x)`` grows with ``x``: this finds the least ``x`` in ``[low, high]``
        whose ``next(x)`` qualifies, ``next(high)`` being known to."""
        low, high, at_high = 1, 0, None
        known = self._positions.get(partition)
        if known is not None:
            if after_seq == known.upto:  # reading on from where the last read stopped
                return await self._next(subject, known.seq + 1)
            if after_seq > known.upto:
                low = known.seq + 1
            else:
                high = known.seq
        if not high:
            at_high = await self._last(subject, direct=self._direct)
            if at_high is None:
                return None
            upto = _decoded(_decode_upto, at_high).upto
            if upto <= after_seq:
                self._positions[partition] = _Mark(seq=_seq(at_high), upto=upto)
                return None
            high = _seq(at_high)
        while low < high:
            middle = (low + high) // 2
            probe = await self._next(subject, middle)
            if probe is None:  # everything from there on expired meanwhile
                return None
            if _decoded(_decode_upto, probe).upto > after_seq:
                high, at_high = middle, probe
            else:
                low = _seq(probe) + 1
        return at_high if at_high is not None else await self._next(subject, high)

    async def _trim(self, partition: int, upto: int) -> None:
        """Purge the partition's messages before the first one ending above ``upto``; the last
        message always stays (publishing checks against it)."""
        subject = f"{self._subject}.{partition}"
        last = await self._last(subject, direct=self._direct)
        if last is None:
            return
        keep_from = _seq(last)
        first = await self._first_after(partition, subject, upto)
        if first is not None:
            keep_from = min(keep_from, _seq(first))
        await self._conn.js.purge_stream(self._stream, subject=subject, seq=keep_from)

    # -- gets -------------------------------------------------------------------------------

    async def _next(self, subject: str, seq: int) -> RawStreamMsg | None:
        """The first message on ``subject`` at or after stream sequence ``seq``, if any."""
        try:
            return await self._conn.js.get_msg(
                self._stream, seq=seq, subject=subject, next=True, direct=self._direct
            )
        except NotFoundError as exc:
            if not _is_no_message(exc):
                raise
            return None

    async def _last(self, subject: str, *, direct: bool) -> RawStreamMsg | None:
        try:
            return await self._conn.js.get_last_msg(self._stream, subject, direct=direct)
        except NotFoundError as exc:
            if not _is_no_message(exc):
                raise
            return None

    async def _last_mark(self, subject: str, *, direct: bool) -> _Mark:
        message = await self._last(subject, direct=direct)
        if message is None:
            return _NOTHING
        return _Mark(seq=_seq(message), upto=_decoded(_decode_upto, message).upto)

    def _check(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")


def _leading_batch(
    upto: int, items: list[WorkItem], max_bytes: int, since: int
) -> tuple[WorkBatch, bytes]:
    """The batch of ``items`` from ``since`` to ``upto`` and its encoding, or, when that is over
    ``max_bytes``, the longest leading part that fits, ending at its last item."""
    count = len(items)
    while True:
        end = upto if count == len(items) else items[count - 1].seq
        batch = WorkBatch(upto=end, items=tuple(items[:count]), since=since)
        payload = _encode(batch)
        if len(payload) <= max_bytes or count == 1:
            return batch, payload
        count = max(1, min(count - 1, int(count * max_bytes / len(payload) * 0.95)))


def _decoded(decode: Callable[[bytes], T], message: RawStreamMsg) -> T:
    try:
        return decode(message.data or b"")
    except msgspec.DecodeError as exc:
        raise StoreError(
            f"message {message.seq} on {message.subject} is not a work feed message: {exc}"
        ) from exc


def _seq(message: RawStreamMsg) -> int:
    if message.seq is None:  # every stored message has one
        raise StoreError("NATS answered with a stream message without a sequence")
    return message.seq


def _is_no_message(exc: NotFoundError) -> bool:
    """Whether a 404 says "no such message" (a direct get's has no error code, a JSON API one
    says 10037) rather than, say, "no such stream"."""
    return exc.err_code in (None, _NO_MESSAGE)
