"""The ``sms`` channel over a Twilio-compatible HTTP API (Twilio, and providers and test doubles
that speak its Messages endpoint)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from safar.channels.retry import retryable_status
from safar.errors import DeliveryError
from safar.model.messages import Receipt, RenderedMessage

#: Twilio's header for idempotent requests: a repeated token returns the first response.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


class HttpSmsChannel:
    """Sends ``message.text`` to the phone number ``message.to``.

    POSTs ``To``, ``From`` (or ``MessagingServiceSid`` when ``sender`` is a messaging service,
    ``MG…``) and ``Body`` form-encoded to ``{base_url}/2010-04-01/Accounts/{sid}/Messages.json``
    with HTTP Basic auth and the message key as idempotency token. 2xx gives a receipt whose
    provider id is the answer's ``sid``; 408, 425, 429, 5xx, timeouts and connection failures
    are retryable; other answers are not, and the provider's message is in the error.
    """

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        name: str = "sms",
    ) -> None:
        self.name = name
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._sender = sender
        self._timeout = timeout
        self._own_client = client is None
        self._client = client or httpx.Client(follow_redirects=False)

    def send(self, message: RenderedMessage) -> Receipt:
        if not message.to:
            raise DeliveryError("no phone number to send the SMS to", retryable=False)
        if not message.text:
            raise DeliveryError("the SMS has no text", retryable=False)
        sender_field = "MessagingServiceSid" if self._sender.startswith("MG") else "From"
        form = {"To": message.to, sender_field: self._sender, "Body": message.text}
        if message.status_url:
            # Delivery reports come back to Safar and become "Message Delivered" events.
            form["StatusCallback"] = message.status_url
        try:
            response = self._client.post(
                self._url,
                data=form,
                auth=self._auth,
                headers={IDEMPOTENCY_HEADER: message.key},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"SMS provider timed out: {exc}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"SMS provider unreachable: {exc}", retryable=True) from exc
        payload = _json(response)
        if response.is_success:
            sid = payload.get("sid")
            return Receipt(provider_id=str(sid) if sid is not None else None)
        raise DeliveryError(
            f"SMS provider answered {response.status_code}: {_reason(payload, response)}",
            retryable=retryable_status(response.status_code),
        )

    def close(self) -> None:
        """Close the HTTP client if this channel created it."""
        if self._own_client:
            self._client.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _reason(payload: dict[str, Any], response: httpx.Response) -> str:
    message = payload.get("message")
    if message is None:
        return response.text[:300] or response.reason_phrase
    code = payload.get("code")
    return f"{message} (code {code})" if code is not None else str(message)
