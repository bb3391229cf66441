"""JSON-RPC 2.0 framing for ``/api/acp``: parsing one message or a batch, and errors.

A request has ``method`` and ``id``; a notification has ``method`` and no ``id``; a
*response* (the client answering our ``session/request_permission``) has ``id`` and
``result`` or ``error``. Errors carry the JSON-RPC code and ``data.code``, the sessiond
error code (``not_found``, ``session_busy``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sessiond.errors import SessiondError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_BATCH = 100


class RpcError(Exception):
    def __init__(self, code: int, message: str, data_code: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = {"code": data_code, **({"details": details} if details else {})}


def params_error(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message, "validation_error")


def from_sessiond(e: SessiondError) -> RpcError:
    """A sessiond error as JSON-RPC: invalid input → -32602, anything else → -32603, both
    with the sessiond code in ``data.code``."""
    code = INVALID_PARAMS if e.status in (400, 413, 422) else INTERNAL_ERROR
    return RpcError(code, e.message, e.code, e.details)


@dataclass
class Message:
    kind: str  # "request" | "notification" | "response"
    id: Any = None
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: Any = None


def parse_one(raw: Any) -> Message:
    """One JSON-RPC message; RpcError(-32600) when it is not one."""
    if not isinstance(raw, dict) or raw.get("jsonrpc") != "2.0":
        raise RpcError(
            INVALID_REQUEST, 'not a JSON-RPC 2.0 message ("jsonrpc": "2.0")', "invalid_request"
        )
    has_id = "id" in raw
    msg_id = raw.get("id")
    valid_id = msg_id is None or (isinstance(msg_id, str | int) and not isinstance(msg_id, bool))
    if has_id and not valid_id:
        raise RpcError(INVALID_REQUEST, "id must be a string, a number or null", "invalid_request")
    if "method" in raw:
        method = raw["method"]
        if not isinstance(method, str) or not method:
            raise RpcError(INVALID_REQUEST, "method must be a non-empty string", "invalid_request")
        params = raw.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object", "validation_error")
        kind = "request" if has_id else "notification"
        return Message(kind, msg_id, method, params)
    if has_id and ("result" in raw or "error" in raw):
        return Message("response", msg_id, result=raw.get("result"), error=raw.get("error"))
    raise RpcError(INVALID_REQUEST, "neither a request nor a response", "invalid_request")


def reply(msg_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def failure(msg_id: Any, e: RpcError) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "error": {"code": e.code, "message": e.message, "data": e.data},
    }
