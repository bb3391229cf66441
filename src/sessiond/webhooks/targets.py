"""Which URLs a webhook may be sent to (docs/design/webhooks.md, decision 7).

``http``/``https`` with a host; every address the host resolves to must be allowed:
never link-local (169.254.0.0/16, fe80::/10 — where cloud metadata services answer), nor
unspecified or multicast; with ``allow_private=False`` not loopback, private, shared or
unique-local either. The check runs at registration and again before every attempt
(a name may resolve elsewhere later).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

URL_CHARS = 2000


class TargetRefused(ValueError):
    """The URL may not be a webhook target; the message says why."""


def check_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a well-formed ``http(s)`` URL; ``TargetRefused`` otherwise."""
    if len(url) > URL_CHARS:
        raise TargetRefused(f"at most {URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetRefused(f"not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise TargetRefused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("must not carry credentials (sign with the secret instead)")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local:
        return "is link-local (cloud metadata lives there)"
    if address.is_unspecified or address.is_multicast:
        return "is not a unicast address"
    if not private and (address.is_loopback or address.is_private or not address.is_global):
        return "is private or loopback (SESSIOND_WEBHOOK_ALLOW_PRIVATE=false)"
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (``TargetRefused`` when it does not)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise TargetRefused(f"host {host!r} does not resolve: {e}") from None
    return sorted({str(info[4][0]) for info in infos})


def needs_lookup(url: str) -> bool:
    """Whether checking ``url`` asks DNS (its host is a name, not an address literal)."""
    try:
        host = urlsplit(url).hostname or ""
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse ``url`` unless it is well formed and every address of its host is allowed."""
    host, port = check_url(url)
    for text in resolve(host, port):
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = _refusal(address, allow_private)
        if reason is not None:
            raise TargetRefused(f"{host} resolves to {address}, which {reason}")
