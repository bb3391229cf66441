"""``session/request_permission`` → an approval (docs/design/agents.md, decision 5).

The session's policy (``ask`` | ``allow-reads`` | ``allow-all``; null = the agent's
default) and the ``*_always`` answers it remembered decide at once, recorded as a decided
approval (``decidedBy: "policy"``); otherwise the approval waits for a human.
"""

from __future__ import annotations

from typing import Any

from sessiond.approvals import service as approvals
from sessiond.db.executor import Tx
from sessiond.sessions import kernel

READ_KINDS = frozenset({"read", "search", "think", "fetch"})


def options_of(acp_options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ACP ``PermissionOption``s as an approval's options ``[{id, name, kind}]``."""
    return [
        {"id": str(o.get("optionId")), "name": str(o.get("name") or ""), "kind": o.get("kind")}
        for o in acp_options
    ]


def _first(options: list[dict[str, Any]], kinds: tuple[str, ...]) -> str | None:
    for kind in kinds:
        for o in options:
            if o["kind"] == kind:
                return str(o["id"])
    return None


def by_policy(
    policy: str, rules: dict[str, str], tool_call: dict[str, Any], options: list[dict[str, Any]]
) -> tuple[str, str] | None:
    """``(verdict, optionId)`` when the policy or a remembered answer decides, else None."""
    kind = str(tool_call.get("kind") or "other")
    allow = _first(options, approvals.ALLOW)
    reject = _first(options, approvals.REJECT)
    rule = rules.get(kind)
    # A remembered answer is given as the agent's own *_always option when it has one.
    if rule == "reject" and reject is not None:
        return "denied", _first(options, ("reject_always", "reject_once")) or reject
    if rule == "allow" and allow is not None:
        return "granted", _first(options, ("allow_always", "allow_once")) or allow
    if allow is not None and (
        policy == "allow-all" or (policy == "allow-reads" and kind in READ_KINDS)
    ):
        return "granted", allow
    return None


def ask(
    tx: Tx,
    account_id: str,
    session_id: str,
    turn_id: str,
    default_policy: str,
    tool_call: dict[str, Any],
    acp_options: list[dict[str, Any]],
) -> dict[str, Any]:
    """The approval for one request: pending, or decided by the policy."""
    session = kernel.lock_active(tx, account_id, session_id, full=True)
    options = options_of(acp_options)
    policy = session["permissions"] or default_policy
    decided = by_policy(policy, session["permission_rules"] or {}, tool_call, options)
    return approvals.create_for_agent(
        tx,
        session,
        title=str(tool_call.get("title") or tool_call.get("kind") or "permission"),
        details={"turnId": turn_id, "toolCall": tool_call},
        options=options,
        decided=decided,
    )


def remember(tx: Tx, account_id: str, session_id: str, approval: dict[str, Any]) -> None:
    """An ``allow_always`` / ``reject_always`` answer decides this tool kind from now on."""
    chosen = next((o for o in approval["options"] or [] if o["id"] == approval["optionId"]), None)
    if chosen is None or chosen["kind"] not in ("allow_always", "reject_always"):
        return
    kind = str((approval["details"] or {}).get("toolCall", {}).get("kind") or "other")
    row = kernel.load_for_write(tx, account_id, session_id)
    rules = dict(row["permission_rules"] or {})
    rules[kind] = "allow" if chosen["kind"] == "allow_always" else "reject"
    if rules != row["permission_rules"]:
        kernel.write_fields(tx, row, {"permission_rules": rules})
