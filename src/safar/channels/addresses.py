"""Refuse outgoing HTTP requests to private networks, so that a webhook URL in a journey cannot
be used to reach the machine Safar runs on or its internal network (server-side request
forgery).

The host is resolved and every address it resolves to is checked before any connection is
made; an address that is not globally routable (private, loopback, link-local, shared,
reserved, unspecified) or is multicast is refused. Redirects are never followed by Safar's
HTTP callers, since a public host could otherwise redirect to a private one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from safar.errors import DeliveryError

#: host, port → addresses. Tests pass their own; the default asks the system resolver.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_target(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
    """Raise :class:`DeliveryError` (not retryable) unless ``url`` is an http(s) URL whose host
    resolves only to public addresses. With ``allow_private`` only the URL's form is checked."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"{url!r} is not an http:// or https:// URL", retryable=False)
    if allow_private:
        return
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DeliveryError(f"{url!r} has an invalid port", retryable=False) from exc
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        # A resolver failure may be temporary; the retry limit ends a name that never resolves.
        raise DeliveryError(f"cannot resolve {host!r}: {exc}", retryable=True) from exc
    if not addresses:
        raise DeliveryError(f"{host!r} resolves to no address", retryable=True)
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise DeliveryError(
                f"refusing to call {host!r}: it resolves to {address}, {reason}. Requests to "
                "private networks are refused unless the webhook setting allow_private is true "
                "(SAFAR_CHANNELS_WEBHOOK_ALLOW_PRIVATE=true)",
                retryable=False,
            )


def refusal(address: str) -> str | None:
    """Why ``address`` may not be called, or None when it is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    return next((reason for refused, reason in checks if refused), None)
