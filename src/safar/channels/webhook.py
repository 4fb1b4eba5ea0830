"""Signed webhooks: :class:`WebhookClient` makes the HTTP calls (for the webhook channel and for
journey webhook steps), :class:`WebhookChannel` delivers rendered messages with it.

Every request carries ``X-Safar-Timestamp``, ``X-Safar-Signature`` (see
:mod:`safar.channels.signing`) and ``Idempotency-Key`` (the message or step key, the same on
every retry). Targets on private networks are refused before connecting (see
:mod:`safar.channels.addresses`) and redirects are not followed. Nothing is retried here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx
import msgspec

from safar.channels.addresses import Resolver, check_target, system_resolver
from safar.channels.retry import MAX_ATTEMPTS, backoff_ms, retryable_status
from safar.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from safar.clock import SystemClock
from safar.errors import DeliveryError, ValidationError
from safar.model.messages import Receipt, RenderedMessage
from safar.model.nesting import check_nesting
from safar.ports import Clock

__all__ = [
    "MAX_ATTEMPTS",
    "WebhookChannel",
    "WebhookClient",
    "backoff_ms",
    "call",
    "retryable_status",
]

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
USER_AGENT: Final = "Safar-Webhook/1"


class WebhookClient:
    """Makes signed HTTP calls; raises :class:`DeliveryError` when a call cannot be made.

    ``secret`` signs every request and must not be empty. ``client`` may be given (tests pass
    one with an ``httpx.MockTransport``); one is created otherwise, ignoring proxy settings
    from the environment, since a proxy would make the address checks meaningless.
    """

    def __init__(
        self,
        secret: str,
        *,
        allow_private: bool = False,
        timeout_ms: int = 10_000,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
        resolve: Resolver = system_resolver,
        max_response_bytes: int = 1_000_000,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: requests are always signed")
        self._secret = secret
        self.allow_private = allow_private
        self.timeout_ms = timeout_ms
        self._clock = clock or SystemClock()
        self._own_client = client is None
        self._client = client or httpx.Client(trust_env=False, follow_redirects=False)
        self._resolve = resolve
        self._max_response_bytes = max_response_bytes

    def request(
        self,
        url: str,
        *,
        key: str,
        method: str = "POST",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> tuple[int, Any]:
        """Call ``url``; returns the response status and its body (parsed JSON, else text).

        Any status is returned; :func:`safar.channels.retry.retryable_status` says which may
        succeed later. Raises :class:`DeliveryError`: not retryable for a refused or malformed
        target, method or header; retryable for timeouts and connection failures.
        """
        verb = method.upper()
        if verb not in METHODS:
            raise DeliveryError(f"unsupported HTTP method {method!r}", retryable=False)
        check_target(url, allow_private=self.allow_private, resolve=self._resolve)
        content, content_type = _encode(body)
        timestamp = self._clock.now_ms() // 1000
        for name, value in (headers or {}).items():
            if any(char in f"{name}{value}" for char in "\r\n\0"):
                raise DeliveryError(f"header {name!r} contains a line break", retryable=False)
        sent = httpx.Headers(headers)
        if content and "content-type" not in sent:
            sent["Content-Type"] = content_type
        # Set last: a template's headers cannot replace the signature or the key.
        sent.update(
            {
                "User-Agent": USER_AGENT,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(self._secret, timestamp, content),
                "Idempotency-Key": key,
            }
        )
        timeout = (timeout_ms if timeout_ms is not None else self.timeout_ms) / 1000
        try:
            with self._client.stream(
                verb, url, content=content, headers=sent, timeout=timeout
            ) as response:
                raw = self._read(response, url)
                return response.status_code, _decode(raw, response.headers.get("content-type"))
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"{url}: timed out after {timeout:g} s", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{url}: {type(exc).__name__}: {exc}", retryable=True) from exc

    def __call__(
        self,
        url: str,
        method: str,
        body: Any,
        headers: Mapping[str, str] | None,
        timeout_ms: int,
        key: str,
    ) -> tuple[int, Any]:
        """:meth:`request` with :func:`call`'s positional signature, for journey webhook steps."""
        return self.request(
            url, key=key, method=method, body=body, headers=headers, timeout_ms=timeout_ms
        )

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_client:
            self._client.close()

    def _read(self, response: httpx.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise DeliveryError(
                    f"{url}: response larger than {self._max_response_bytes} bytes",
                    retryable=False,
                )
            chunks.append(chunk)
        return b"".join(chunks)


class WebhookChannel:
    """The ``webhook`` channel: POSTs ``message.data`` as JSON.

    The target is ``message.to`` when it is an http(s) URL, else ``url``. A 2xx answer is a
    receipt (its JSON ``id``, if any, is the provider id); 408, 425, 429 and 5xx are retryable
    errors; other answers, redirects included, are not.
    """

    def __init__(self, client: WebhookClient, *, url: str | None = None, name: str = "webhook"):
        self.name = name
        self._client = client
        self._url = url

    def send(self, message: RenderedMessage) -> Receipt:
        target = message.to if message.to.startswith(("http://", "https://")) else self._url
        if not target:
            raise DeliveryError(
                "no webhook URL: the message is not addressed to a URL and no default URL is set",
                retryable=False,
            )
        status, payload = self._client.request(
            target, key=message.key, body=message.data, headers=message.headers
        )
        if 200 <= status < 300:
            provider_id = payload.get("id") if isinstance(payload, dict) else None
            return Receipt(
                status="delivered",
                provider_id=str(provider_id) if provider_id is not None else None,
            )
        detail = payload if isinstance(payload, str) else msgspec.json.encode(payload).decode()
        reason = "redirects are not followed" if 300 <= status < 400 else detail[:300]
        raise DeliveryError(
            f"{target} answered {status}: {reason}", retryable=retryable_status(status)
        )


def call(
    url: str,
    method: str,
    body: Any,
    headers: Mapping[str, str] | None,
    timeout_ms: int,
    key: str,
    *,
    secret: str,
    allow_private: bool = False,
    client: httpx.Client | None = None,
    clock: Clock | None = None,
    resolve: Resolver = system_resolver,
) -> tuple[int, Any]:
    """One signed call for a journey webhook step: ``(status, parsed JSON or text)``.

    The same signing and address rules as the webhook channel. A long-running process should
    keep one :class:`WebhookClient` and use :meth:`WebhookClient.request` to reuse connections.
    """
    webhook = WebhookClient(
        secret, allow_private=allow_private, client=client, clock=clock, resolve=resolve
    )
    try:
        return webhook.request(
            url, key=key, method=method, body=body, headers=headers, timeout_ms=timeout_ms
        )
    finally:
        webhook.close()


def _encode(body: Any) -> tuple[bytes, str]:
    if body is None:
        return b"", ""
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    try:
        return msgspec.json.encode(body), "application/json"
    except (TypeError, msgspec.EncodeError) as exc:
        raise DeliveryError(f"the body cannot be sent as JSON: {exc}", retryable=False) from exc


def _decode(raw: bytes, content_type: str | None) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if content_type and "json" in content_type.lower() and raw.strip():
        try:
            # An answer nested past the limit is kept as text, as if it were not JSON: a journey
            # saves from it and the log keeps it, where decoding it again could fail.
            check_nesting(raw, "response")
            return msgspec.json.decode(raw)
        except (msgspec.DecodeError, ValidationError):
            return text
    return text
