"""The ``in_app`` channel: messages land in the customer's inbox in the delivery store, where
apps read them through the API."""

from __future__ import annotations

from safar.model.messages import InboxItem, Receipt, RenderedMessage
from safar.ports import Clock, DeliveryStore


class InAppChannel:
    """Adds an :class:`InboxItem` with id ``message.key``, so a resend adds nothing."""

    def __init__(self, delivery: DeliveryStore, clock: Clock, *, name: str = "in_app") -> None:
        self.name = name
        self._delivery = delivery
        self._clock = clock

    def send(self, message: RenderedMessage) -> Receipt:
        self._delivery.add_inbox(
            InboxItem(
                id=message.key,
                profile_id=message.profile_id,
                created_at=self._clock.now_ms(),
                subject=message.subject,
                text=message.text,
                data=dict(message.data),
            )
        )
        return Receipt(status="delivered", provider_id=message.key)
