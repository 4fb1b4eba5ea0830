"""Import events from files: Segment-format JSONL, or identifiers and traits (CRM exports) as
CSV or as JSONL of plain records.

Every line is validated like an HTTP event; a bad line is reported with its number and reason while
the valid lines are stored. Lines are appended in batches through the event log, so a re-import of
the same file is deduplicated: JSONL events keep their messageId (or get one derived from the line),
CSV rows and trait records get one derived from the file name, line number and content.

A CSV row and a trait record become the same identify call (:func:`_identify_call`): identifier
columns identify the person, ``timestamp`` / ``updated_at`` date it, every other column is a trait.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from safar.config import IdentitySettings, IngestSettings
from safar.core.identity import IdentityRules, normalize_email, normalize_phone
from safar.errors import ValidationError
from safar.ingest.validate import check_id_text
from safar.model.events import Event
from safar.model.nesting import check_nesting
from safar.ports import Clock, EventLog

_BATCH = 1000

#: Column names accepted for each identifier, lower-cased.
_ID_COLUMNS = {
    "user_id": "userId",
    "userid": "userId",
    "anonymous_id": "anonymousId",
    "anonymousid": "anonymousId",
}
#: Columns dating a row, the first one present winning.
_TIME_COLUMNS = ("timestamp", "updated_at")
#: Traits identity resolution reads identifiers from; kept under these exact names.
_ID_TRAITS = ("email", "phone")


class ImportReport(msgspec.Struct, kw_only=True):
    """What an import stored, skipped as duplicate, and rejected (line number, reason)."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = msgspec.field(default_factory=list)


Progress = Callable[[int, int, ImportReport], None]


def import_file(
    path: Path,
    *,
    events: EventLog,
    source_id: str,
    clock: Clock,
    limits: IngestSettings,
    identity: IdentitySettings,
    progress: Progress | None = None,
    traits: bool = False,
) -> ImportReport:
    """Import ``path`` into ``events``: ``.csv`` as CSV of identifiers and traits, anything else
    as JSONL of Segment events, or with ``traits`` as JSONL of trait records."""
    from safar.ingest.validate import event_from_json

    report = ImportReport()
    total = _count_lines(path)
    rules = IdentityRules(identity)
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, rules)
    elif traits:
        rows = _trait_rows(path, rules)
    else:
        rows = _jsonl_rows(path)
    pending: list[Event] = []
    seen_ids: set[str] = set()

    def flush() -> None:
        result = events.append(pending)
        report.accepted += result.appended
        report.duplicates += result.duplicates
        pending.clear()
        seen_ids.clear()

    for line_no, raw in rows:
        report.lines += 1
        try:
            if isinstance(raw, ValidationError):
                raise raw
            event = event_from_json(
                raw,
                source_id=source_id,
                received_at=clock.now_ms(),
                sent_at=None,
                default_type=None,
                location=f"line {line_no}",
                limits=limits,
            )
        except ValidationError as exc:
            report.rejected.append((line_no, exc.message))
            continue
        pending.append(event)
        if len(pending) >= _BATCH:
            flush()
            if progress:
                progress(line_no, total, report)
    if pending:
        flush()
    if progress:
        progress(total, total, report)
    return report


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


Row = tuple[int, dict[str, Any] | ValidationError]


def _json_lines(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | ValidationError]]:
    """Each non-blank line: its number, its text, and the JSON object on it (or why not)."""
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                check_nesting(text, f"line {line_no}")
                obj = msgspec.json.decode(text)
            except ValidationError as exc:
                yield line_no, text, exc
                continue
            except msgspec.DecodeError as exc:
                yield line_no, text, ValidationError(f"not valid JSON ({exc})", f"line {line_no}")
                continue
            if not isinstance(obj, dict):
                yield line_no, text, ValidationError("must be a JSON object", f"line {line_no}")
                continue
            yield line_no, text, obj


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for line_no, text, obj in _json_lines(path):
        if isinstance(obj, dict) and "messageId" not in obj:
            obj["messageId"] = _derived_id(path.name, line_no, text)
        yield line_no, obj


def _trait_rows(path: Path, rules: IdentityRules) -> Iterator[Row]:
    """Each JSON object becomes an identify call, as a CSV row does; nested values are traits
    as they are, and null values are left out (as empty CSV cells are)."""
    for line_no, text, obj in _json_lines(path):
        if isinstance(obj, ValidationError):
            yield line_no, obj
            continue
        message_id = _derived_id(path.name, line_no, text)
        yield line_no, _identify_call(obj.items(), rules, message_id, f"line {line_no}")


def _csv_rows(path: Path, rules: IdentityRules) -> Iterator[Row]:
    """Each CSV row becomes an identify call (:func:`_identify_call`); empty cells are left out."""
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    for values in reader:
        line_no = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield (
                line_no,
                ValidationError(
                    f"has {len(values)} columns, the header has {len(header)}", f"line {line_no}"
                ),
            )
            continue
        cells = ((name, value.strip()) for name, value in zip(header, values, strict=True))
        message_id = _derived_id(path.name, line_no, "\x1f".join(values).encode())
        yield line_no, _identify_call(cells, rules, message_id, f"line {line_no}")


def _identify_call(
    columns: Iterable[tuple[str, Any]], rules: IdentityRules, message_id: str, location: str
) -> dict[str, Any] | ValidationError:
    """The identify call for one record of (column, value): ``user_id`` / ``anonymous_id``
    identify, external id columns (``crm_id`` ...) go to ``context.externalIds``, ``timestamp``
    (else ``updated_at``) dates it, the rest are traits, ``email`` and ``phone`` among them.
    Column names are matched case-insensitively; empty and null values are left out.

    A record with an email, phone or external id but no user_id/anonymous_id gets an
    anonymousId derived from that identifier (normalized, so ``Sara@Example.com`` and
    ``sara@example.com`` are one person), so it still becomes a profile and links up later.
    """
    event: dict[str, Any] = {"type": "identify", "traits": {}, "messageId": message_id}
    traits: dict[str, Any] = event["traits"]
    external: list[dict[str, str]] = []
    times: dict[str, Any] = {}
    try:
        for name, value in columns:
            if value is None or value == "":
                continue
            key = name.lower()
            if key in _ID_COLUMNS:
                found = _id_value(value, rules, f"{location}.{name}")
                if found is not None:
                    event[_ID_COLUMNS[key]] = found
            elif key in _TIME_COLUMNS:
                times[key] = value
            elif key in rules.external_ids:
                found = _id_value(value, rules, f"{location}.{name}")
                if found is not None:
                    external.append(
                        {"id": found, "type": key, "collection": "users", "encoding": "none"}
                    )
            else:
                traits[key if key in _ID_TRAITS else name] = value
    except ValidationError as exc:
        return exc
    stamp = next((times[k] for k in _TIME_COLUMNS if k in times), None)
    if stamp is not None:
        event["timestamp"] = stamp
    if external:
        event["context"] = {"externalIds": external}
    if "userId" not in event and "anonymousId" not in event:
        anchor = _anchor(traits, external, rules)
        if anchor is None:
            return ValidationError(
                "no identifier: give user_id, anonymous_id, a valid email or phone, or "
                + (", ".join(rules.external_ids) or "an external id"),
                location,
            )
        event["anonymousId"] = "import-" + hashlib.sha1(anchor.encode()).hexdigest()[:20]
    return event


def _id_value(value: Any, rules: IdentityRules, location: str) -> str | None:
    """An identifier column's value as text; None when blank or a placeholder such as "null"."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError("must be a string or a whole number", location)
    text = str(value).strip()
    check_id_text(text, location)  # as the tracking API does
    return None if not text or rules.is_blocked(text) else text


def _anchor(
    traits: dict[str, Any], external: list[dict[str, str]], rules: IdentityRules
) -> str | None:
    """What an anonymous id is derived from: the normalized email, else phone, else the first
    external id."""
    email = traits.get("email")
    if isinstance(email, str) and (normalized := normalize_email(email)):
        return normalized
    phone = traits.get("phone")
    if isinstance(phone, str | int) and not isinstance(phone, bool):
        normalized = normalize_phone(str(phone), rules.default_country_code)
        if normalized:
            return normalized
    if external:
        return f"{external[0]['type']}:{external[0]['id']}"
    return None


def _derived_id(file_name: str, line_no: int, content: bytes) -> str:
    digest = hashlib.sha1(file_name.encode() + b"\0" + str(line_no).encode() + b"\0" + content)
    return "import-" + digest.hexdigest()[:32]
