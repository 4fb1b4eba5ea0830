"""The JetStream stream a work feed lives in: created when missing, checked when present."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from safar.errors import ConfigError

_NAME_IN_USE = 10058  # "stream name already in use with a different configuration"
_SUBJECTS_OVERLAP = 10065


async def ensure_stream(
    js: JetStreamContext, name: str, subject: str, *, max_age_s: float
) -> StreamInfo:
    """Stream ``name`` holding ``<subject>.>``: file storage, limits retention, messages kept
    ``max_age_s`` (0: no age limit), direct gets and subject roll-ups allowed. An existing
    stream is used as it is (an operator may have tuned its limits) if it holds the subjects;
    otherwise :class:`~safar.errors.ConfigError`."""
    info = await _info(js, name)
    if info is None:
        info = await _create(js, name, subject, max_age_s)
    subjects = info.config.subjects or []
    if not any(covers(pattern, f"{subject}.>") for pattern in subjects):
        raise ConfigError(
            f"the NATS stream {name} exists but holds {', '.join(subjects) or 'no subjects'},"
            f" not {subject}.>; name another stream or subject for the work feed"
        )
    return info


async def _info(js: JetStreamContext, name: str) -> StreamInfo | None:
    try:
        return await js.stream_info(name)
    except NotFoundError:
        return None


async def _create(js: JetStreamContext, name: str, subject: str, max_age_s: float) -> StreamInfo:
    config = StreamConfig(
        name=name,
        description="Safar: the partitioned work feed (ADR 12); can be republished from the log",
        subjects=[f"{subject}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        allow_direct=True,  # reads by subject answered without the JSON API (2.9+)
        allow_rollup_hdrs=True,  # the state record keeps only its last message
    )
    try:
        return await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code == _SUBJECTS_OVERLAP:
            raise ConfigError(
                f"cannot create the NATS stream {name}: its subjects {subject}.> overlap another"
                " stream's; name another subject for the work feed"
            ) from exc
        if exc.err_code == _NAME_IN_USE:  # another process created it first
            info = await _info(js, name)
            if info is not None:
                return info
        raise


def covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching ``subject`` (which may end in ``>``) matches the NATS
    subject ``pattern`` (``*`` one token, ``>`` the rest)."""
    wanted = subject.split(".")
    tokens = pattern.split(".")
    for index, token in enumerate(tokens):
        if token == ">":
            return index < len(wanted)
        if index >= len(wanted):
            return False
        if token == "*":
            if wanted[index] == ">":
                return False
        elif token != wanted[index]:
            return False
    return len(tokens) == len(wanted)
