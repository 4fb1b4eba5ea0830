"""Channels that deliver nowhere: :class:`ConsoleChannel` prints (the demo, development) and
:class:`NullChannel` drops (benchmarks)."""

from __future__ import annotations

import sys
import threading
import weakref
from pathlib import Path
from typing import TextIO

import msgspec

from safar.model.messages import Receipt, RenderedMessage

_TEXT_LIMIT = 160


class ConsoleChannel:
    """Writes one readable line per message to ``stream`` (stdout by default) or appends it to
    the file ``path``: channel, recipient, locale, subject and the start of the text.

    ``name`` is the channel it stands in for, e.g. ``email`` in the demo.
    """

    def __init__(
        self, stream: TextIO | None = None, *, path: str | Path | None = None, name: str = "console"
    ) -> None:
        if stream is not None and path is not None:
            raise ValueError("give a stream or a path, not both")
        self.name = name
        self._stream = stream
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()

    def send(self, message: RenderedMessage) -> Receipt:
        line = format_line(message) + "\n"
        with self._lock:
            if self._stream is None and self._path is not None:
                # Opened once, on the first message (opening per message was a fifth of the
                # dispatcher's time); each line is flushed as it is written, so a reader
                # tailing the file sees a message the moment it is handed over.
                self._stream = file = self._path.open("a", encoding="utf-8")
                weakref.finalize(self, file.close)
            stream = self._stream or sys.stdout
            stream.write(line)
            stream.flush()
        return Receipt(provider_id=message.key)


def format_line(message: RenderedMessage) -> str:
    """``[email] to=… locale=fa subject="…" text="…"`` on one line."""
    parts = [f"[{message.channel}]", f"to={message.to}", f"locale={message.locale}"]
    if message.subject:
        parts.append(f'subject="{_one_line(message.subject)}"')
    if message.text:
        text = _one_line(message.text)
        if len(text) > _TEXT_LIMIT:
            text = text[: _TEXT_LIMIT - 1] + "…"
        parts.append(f'text="{text}"')
    elif message.data:
        parts.append(f"data={msgspec.json.encode(message.data).decode()}")
    parts.append(f"key={message.key}")
    return " ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class NullChannel:
    """Accepts every message and drops it; ``sent`` counts them."""

    def __init__(self, *, name: str = "null") -> None:
        self.name = name
        self.sent = 0
        self._lock = threading.Lock()

    def send(self, message: RenderedMessage) -> Receipt:
        with self._lock:
            self.sent += 1
        return Receipt(provider_id=message.key)
