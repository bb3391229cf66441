"""Stored events as ACP messages: what ``GET /api/acp?sessionId=`` sends.

``Translator.translate(event)`` turns one rendered event into zero or more JSON-RPC
messages: ``session/update`` notifications (user and agent message chunks, thoughts,
tool calls and their updates, the plan, the mode, an agent's own updates) and, for a
pending agent permission, a ``session/request_permission`` *request* whose id is the
approval id. It keeps which tool calls it already announced (``tool_call`` the first
time, ``tool_call_update`` after). Everything else has no ACP form and is skipped.
"""

from __future__ import annotations

from typing import Any

TOOL_STATUS = {
    "pending": "pending",
    "running": "in_progress",
    "completed": "completed",
    "error": "failed",
}
PLAN_STATUS = {"pending": "pending", "in_progress": "in_progress", "completed": "completed"}


def notification(session_id: str, update: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {"sessionId": session_id, "update": update},
    }


def _text(kind: str, text: str) -> dict[str, Any]:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


def _tool(part: dict[str, Any], *, new: bool) -> dict[str, Any]:
    update: dict[str, Any] = {
        "sessionUpdate": "tool_call" if new else "tool_call_update",
        "toolCallId": part["toolCallId"],
        "title": part.get("name") or "tool",
        "status": TOOL_STATUS.get(part.get("status") or "", "pending"),
    }
    if part.get("kind"):
        update["kind"] = part["kind"]
    if part.get("input"):
        update["rawInput"] = part["input"]
    if part.get("output") is not None:
        update["rawOutput"] = part["output"]
    return update


class Translator:
    def __init__(self) -> None:
        self.announced: set[str] = set()

    def translate(
        self, event: dict[str, Any], pending: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """The ACP messages of ``event``. ``pending``: ids of approvals still pending (a
        permission request already decided is not asked again)."""
        sid = event["sessionId"]
        data = event.get("data") or {}
        kind = event["type"]
        out: list[dict[str, Any]] = []
        if kind == "message.created":
            message = data.get("message") or {}
            role = message.get("role")
            chunk = {"user": "user_message_chunk", "assistant": "agent_message_chunk"}.get(
                str(role)
            )
            for part in message.get("parts") or []:
                if part.get("type") == "text" and chunk and part.get("text"):
                    out.append(notification(sid, _text(chunk, part["text"])))
                elif part.get("type") == "reasoning" and part.get("text"):
                    out.append(notification(sid, _text("agent_thought_chunk", part["text"])))
                elif part.get("type") == "tool_call":
                    out.append(notification(sid, self._tool(part)))
        elif kind == "message.updated":
            delta = data.get("delta") or {}
            message = data.get("message") or {}
            if delta.get("reasoning"):
                out.append(notification(sid, _text("agent_thought_chunk", delta["reasoning"])))
            if delta.get("text"):
                out.append(notification(sid, _text("agent_message_chunk", delta["text"])))
            parts = {
                p.get("toolCallId"): p
                for p in message.get("parts") or []
                if p.get("type") == "tool_call"
            }
            for tool_id in delta.get("toolCalls") or []:
                if tool_id in parts:
                    out.append(notification(sid, self._tool(parts[tool_id])))
        elif kind == "task.updated":
            entries = [
                {
                    "content": task.get("content", ""),
                    "priority": task.get("priority") or "medium",
                    "status": PLAN_STATUS.get(task.get("status") or "", "pending"),
                }
                for task in data.get("tasks") or []
            ]
            out.append(notification(sid, {"sessionUpdate": "plan", "entries": entries}))
        elif kind == "session.updated" and "mode" in (data.get("changes") or []):
            mode = (data.get("session") or {}).get("mode")
            if mode:
                update = {"sessionUpdate": "current_mode_update", "currentModeId": mode}
                out.append(notification(sid, update))
        elif kind == "agent.update":
            raw = data.get("update")
            if isinstance(raw, dict) and raw.get("sessionUpdate"):
                out.append(notification(sid, raw))
        elif kind == "approval.requested":
            approval = data.get("approval") or {}
            still = pending is None or approval.get("id") in pending
            if approval.get("kind") == "agent_permission" and still:
                out.append(self._permission(sid, approval))
        return out

    def _tool(self, part: dict[str, Any]) -> dict[str, Any]:
        new = part["toolCallId"] not in self.announced
        self.announced.add(part["toolCallId"])
        return _tool(part, new=new)

    def _permission(self, sid: str, approval: dict[str, Any]) -> dict[str, Any]:
        details = approval.get("details") or {}
        tool_call = dict(details.get("toolCall") or {})
        tool_call.setdefault("toolCallId", approval["id"])
        options = [
            {"optionId": o.get("id"), "name": o.get("name") or o.get("id"), "kind": o.get("kind")}
            for o in approval.get("options") or []
        ]
        return {
            "jsonrpc": "2.0",
            "id": approval["id"],
            "method": "session/request_permission",
            "params": {"sessionId": sid, "toolCall": tool_call, "options": options},
        }
