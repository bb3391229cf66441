"""Session rows → the API's session object (camelCase, ISO times, effective status)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiond.ids import iso
from sessiond.sessions.lifecycle import effective_status


def render_session(row: Mapping[str, Any], now: int, *, context: bool = True) -> dict[str, Any]:
    status, version = effective_status(row, now)
    ws = row["workspace"]
    sandbox = row["sandbox"]
    out: dict[str, Any] = {
        "id": row["id"],
        "accountId": row["account_id"],
        "workspaceId": row["workspace_id"],
        "title": row["title"],
        "status": status,
        "activity": row["activity"],
        "tags": row["tags"],
        "metadata": row["metadata"],
        "context": row["context"],
        "parentId": row["parent_id"],
        "forkedFrom": row["forked_from"],
        "agent": row["agent"],
        "model": row["model"],
        "mode": row["mode"],
        "ttlSeconds": row["ttl_seconds"],
        "expiresAt": iso(row["expires_at"]),
        "ephemeral": row["ephemeral"],
        "messageCount": row["message_count"],
        "summary": row["summary"],
        "lastError": row["last_error"],
        "workspace": {
            "head": ws["head"],
            "base": ws["base"],
            "filesChanged": ws["filesChanged"],
            "linesAdded": ws["linesAdded"],
            "linesRemoved": ws["linesRemoved"],
        },
        "repo": row["repo"],
        "sandbox": {
            "state": sandbox.get("state"),
            "expiresAt": sandbox.get("expiresAt"),
            "hibernateAfter": sandbox.get("hibernateAfter"),
            "snapshot": sandbox.get("snapshot"),
        },
        "lifecycleVersion": version,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "lastActivityAt": iso(row["last_activity_at"]),
        "closedAt": iso(row["closed_at"]),
    }
    if not context:
        del out["context"]
    return out
