"""The ``Sessiond-Signature`` header: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``.

``timestamp`` is the ``Sessiond-Timestamp`` header (Unix seconds, as sent); a receiver
recomputes the HMAC over exactly the bytes it received and compares in constant time
(``verify``), and should refuse a timestamp far from its own clock (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "v1"


def new_secret() -> str:
    """A secret for a webhook that was created without one (``whsec_`` + 32 random bytes)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """Whether ``header`` (``v1=…``; several comma-separated values allowed) signs ``body``."""
    expected = sign(secret, timestamp, body)
    return any(
        hmac.compare_digest(expected.encode(), part.strip().encode()) for part in header.split(",")
    )
