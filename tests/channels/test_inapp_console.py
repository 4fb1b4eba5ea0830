"""The in-app channel (into the memory delivery store), the console and the null channel."""

from __future__ import annotations

import io
from pathlib import Path

from safar.channels import ConsoleChannel, InAppChannel, NullChannel
from safar.model.messages import RenderedMessage
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.testing import FakeClock


def message(key: str = "k1", **changes: object) -> RenderedMessage:
    fields: dict[str, object] = {
        "key": key,
        "channel": "in_app",
        "to": "p1",
        "profile_id": "p1",
        "locale": "ar",
        "direction": "rtl",
        "subject": "عرض خاص لك",
        "text": "خصم 20% على طلبك القادم",
        "data": {"cta": "https://shop.example.com/ar/"},
    }
    fields.update(changes)
    return RenderedMessage(**fields)  # type: ignore[arg-type]


def test_in_app_messages_land_in_the_inbox_once(clock: FakeClock) -> None:
    store = MemoryJourneyStores()
    channel = InAppChannel(store, clock)
    receipt = channel.send(message())
    clock.advance(seconds=5)
    channel.send(message())  # a redelivery of the same key
    [item] = store.inbox("p1")
    assert (item.id, item.created_at) == ("k1", clock.now_ms() - 5000)
    assert (item.subject, item.text) == ("عرض خاص لك", "خصم 20% على طلبك القادم")
    assert item.data == {"cta": "https://shop.example.com/ar/"}
    assert receipt.status == "delivered" and receipt.provider_id == "k1"


def test_console_writes_one_line_per_message(tmp_path: Path) -> None:
    stream = io.StringIO()
    console = ConsoleChannel(stream, name="email")
    console.send(message(channel="email", to="omar@example.com", text="سطر أول\nسطر ثانٍ"))
    console.send(message(key="k2", channel="webhook", text=None, subject=None))
    first, second = stream.getvalue().splitlines()
    assert first == (
        '[email] to=omar@example.com locale=ar subject="عرض خاص لك" text="سطر أول سطر ثانٍ" key=k1'
    )
    assert second == '[webhook] to=p1 locale=ar data={"cta":"https://shop.example.com/ar/"} key=k2'

    path = tmp_path / "outbox.log"
    ConsoleChannel(path=path).send(message(text="x" * 500))
    ConsoleChannel(path=path).send(message(key="k3"))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and len(lines[0]) < 300 and "…" in lines[0]


def test_the_null_channel_counts_and_drops() -> None:
    null = NullChannel()
    for n in range(3):
        null.send(message(key=f"k{n}"))
    assert null.sent == 3 and null.name == "null"
