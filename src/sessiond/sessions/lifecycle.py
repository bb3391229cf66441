"""The session status machine (API.md, Sessions) and read-time expiry.

| from               | to                    | how                               |
|--------------------|-----------------------|-----------------------------------|
| active             | completed, failed     | PATCH status                      |
| active             | closed                | POST .../close                    |
| active             | expired               | the server, when expiresAt passes |
| any but archived   | archived              | PATCH status "archived"           |
| archived           | active                | PATCH status "active" (unarchive) |

A PATCH to the current status is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiond.errors import InvalidTransition

STATUSES = ("active", "completed", "failed", "closed", "expired", "archived")

# Transitions a client may ask for with PATCH {"status": ...}.
PATCH_TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"completed", "failed", "archived"}),
    "completed": frozenset({"archived"}),
    "failed": frozenset({"archived"}),
    "closed": frozenset({"archived"}),
    "expired": frozenset({"archived"}),
    "archived": frozenset({"active"}),
}

_HINTS = {
    "closed": "use POST /v1/sessions/{id}/close to close a session",
    "expired": "sessions expire by themselves when expiresAt passes",
}


def check_patch_transition(current: str, target: str) -> bool:
    """True when the status changes, False for a no-op; raises ``InvalidTransition``."""
    if target == current:
        return False
    if target in PATCH_TRANSITIONS.get(current, frozenset()):
        return True
    hint = _HINTS.get(target)
    if hint is None:
        allowed = sorted(PATCH_TRANSITIONS.get(current, frozenset()))
        hint = f"from {current} a PATCH may set: {', '.join(allowed) or 'nothing'}"
    raise InvalidTransition(
        f"cannot change status from {current} to {target}; {hint}",
        details={"from": current, "to": target},
    )


def check_close(current: str) -> None:
    if current != "active":
        raise InvalidTransition(
            f"cannot close a session that is {current}; only active sessions can be closed",
            details={"from": current, "to": "closed"},
        )


def is_expired(row: Any, now: int) -> bool:
    """An active session whose ``expiresAt`` has passed reads as expired, sweep or not."""
    expires_at = row["expires_at"]
    return row["status"] == "active" and expires_at is not None and expires_at <= now


def effective_status(row: Mapping[str, Any], now: int) -> tuple[str, int]:
    """``(status, lifecycleVersion)`` as a reader sees them at ``now``.

    A session that expired but has not been swept yet reads with the version the sweep
    will give it (+1), so ETags do not change when the row catches up.
    """
    if is_expired(row, now):
        return "expired", row["lifecycle_version"] + 1
    return row["status"], row["lifecycle_version"]
