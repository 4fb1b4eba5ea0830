"""Import events from files: Segment-format JSONL, or CSV of identifiers and traits (CRM exports).

Every line is validated like an HTTP event; a bad line is reported with its number and reason while
the valid lines are stored. Lines are appended in batches through the event log, so a re-import of
the same file is deduplicated: JSONL lines keep their messageId (or get one derived from the line),
CSV rows get one derived from the file name, line number and content.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from safar.config import IdentitySettings, IngestSettings
from safar.errors import ValidationError
from safar.model.events import Event
from safar.ports import Clock, EventLog

_BATCH = 1000

#: Column names accepted for each identifier, lower-cased.
_ID_COLUMNS = {
    "user_id": "userId",
    "userid": "userId",
    "anonymous_id": "anonymousId",
    "anonymousid": "anonymousId",
}
_TIME_COLUMNS = ("timestamp", "updated_at")


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
) -> ImportReport:
    """Import ``path`` (``.csv`` as CSV, anything else as JSONL) into ``events``."""
    from safar.ingest.validate import event_from_json

    report = ImportReport()
    total = _count_lines(path)
    rows = (
        _csv_rows(path, identity.external_ids)
        if path.suffix.lower() == ".csv"
        else _jsonl_rows(path)
    )
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


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                obj = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                yield line_no, ValidationError(f"not valid JSON ({exc})", f"line {line_no}")
                continue
            if isinstance(obj, dict) and "messageId" not in obj:
                obj["messageId"] = _derived_id(path.name, line_no, text)
            if not isinstance(obj, dict):
                yield line_no, ValidationError("must be a JSON object", f"line {line_no}")
                continue
            yield line_no, obj


def _csv_rows(path: Path, external_ids: list[str]) -> Iterator[Row]:
    """Each CSV row becomes an identify call: identifier columns identify, the rest are traits.

    A row with an email, phone or external id but no user_id/anonymous_id gets an anonymousId
    derived from that identifier, so the row still becomes a profile and links up later.
    """
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    lowered = [name.lower() for name in header]
    externals = {name.lower() for name in external_ids}
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
        event: dict[str, Any] = {"type": "identify", "traits": {}}
        external: list[dict[str, str]] = []
        for name, key, value in zip(header, lowered, values, strict=True):
            value = value.strip()
            if not value:
                continue
            if key in _ID_COLUMNS:
                event[_ID_COLUMNS[key]] = value
            elif key in _TIME_COLUMNS:
                event["timestamp"] = value
            elif key in externals:
                external.append(
                    {"id": value, "type": key, "collection": "users", "encoding": "none"}
                )
            else:
                event["traits"][name] = value
        if external:
            event["context"] = {"externalIds": external}
        if "userId" not in event and "anonymousId" not in event:
            anchor = event["traits"].get("email") or event["traits"].get("phone")
            if anchor is None and external:
                anchor = f"{external[0]['type']}:{external[0]['id']}"
            if anchor is not None:
                event["anonymousId"] = "import-" + hashlib.sha1(anchor.encode()).hexdigest()[:20]
        event["messageId"] = _derived_id(path.name, line_no, "\x1f".join(values).encode())
        yield line_no, event


def _derived_id(file_name: str, line_no: int, content: bytes) -> str:
    digest = hashlib.sha1(file_name.encode() + b"\0" + str(line_no).encode() + b"\0" + content)
    return "import-" + digest.hexdigest()[:32]
