"""Session rows → the API's session object (camelCase, ISO times, effective status)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sessiond import jsontext
from sessiond.ids import iso
from sessiond.sessions import figures
from sessiond.sessions.lifecycle import effective_status, is_expired

EMPTY_USAGE = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "costUsd": 0.0, "turns": 0}


def render_session(row: Mapping[str, Any], now: int, *, context: bool = True) -> dict[str, Any]:
    """The session as a reader sees it at ``now`` (read-time expiry applied)."""
    out = render_stored(row, context=context)
    status, version = effective_status(row, now)
    out["status"] = status
    out["lifecycleVersion"] = version
    return out


def render_stored(row: Mapping[str, Any], *, context: bool = True) -> dict[str, Any]:
    """The session with its stored status and version (what ``doc`` holds)."""
    ws = row["workspace"]
    sandbox = row["sandbox"]
    out: dict[str, Any] = {
        "id": row["id"],
        "accountId": row["account_id"],
        "workspaceId": row["workspace_id"],
        "title": row["title"],
        "status": row["status"],
        "activity": row["activity"],
        "tags": row["tags"],
        "metadata": row["metadata"],
        "context": row["context"],
        "parentId": row["parent_id"],
        "forkedFrom": row["forked_from"],
        "agent": row["agent"],
        "model": row["model"],
        "mode": row["mode"],
        "permissions": row.get("permissions"),
        "hibernateAfterSeconds": row.get("hibernate_after_seconds"),
        "usage": row.get("usage") or dict(EMPTY_USAGE),
        "ttlSeconds": row["ttl_seconds"],
        "expiresAt": iso(row["expires_at"]),
        "ephemeral": row["ephemeral"],
        "messageCount": row["message_count"],
        "summary": row["summary"],
        "lastError": row["last_error"],
        "workspace": {"head": ws["head"], "base": ws["base"], **figures.of(ws)},
        "repo": row["repo"],
        "sandbox": {
            "state": sandbox.get("state"),
            "expiresAt": iso(row.get("sandbox_due")),
            "hibernateAfter": row.get("hibernate_after_seconds"),
            "lastUsedAt": iso(sandbox.get("lastUsedAt")),
            "snapshot": None,
        },
        "compactions": row.get("compactions") or 0,
        "importedFrom": row.get("imported_from"),
        "lifecycleVersion": row["lifecycle_version"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "lastActivityAt": iso(row["last_activity_at"]),
        "closedAt": iso(row["closed_at"]),
    }
    if not context:
        del out["context"]
    return out


def dumps(value: Any) -> str:
    return jsontext.dumps(value)


# Kept out of ``doc`` and spliced in from their columns at read time: they change with
# every message, and rewriting ``doc`` for each append would double its cost.
SPLICED = ("messageCount", "lastActivityAt")


def session_doc(row: Mapping[str, Any]) -> str:
    """The JSON text stored in ``sessions.doc``: the stored session without ``context``
    and without the activity counters (``SPLICED``)."""
    out = render_stored(row, context=False)
    for name in SPLICED:
        del out[name]
    return dumps(out)


def splice(doc: str, context_text: str, row: Any, now: int) -> str:
    """The full session object as JSON text, from ``doc``, the raw ``context`` text and
    the counter columns of ``row`` (``message_count``, ``last_activity_at``).

    Only a session whose TTL passed since it was last written needs decoding (to show
    ``expired`` and the version the sweep will give it).
    """
    if is_expired(row, now):
        obj = json.loads(doc)
        obj["status"] = "expired"
        obj["lifecycleVersion"] = row["lifecycle_version"] + 1
        doc = dumps(obj)
    counters = (
        f'"messageCount":{row["message_count"]},"lastActivityAt":"{iso(row["last_activity_at"])}"'
    )
    return f'{doc[:-1]},{counters},"context":{context_text}}}'
