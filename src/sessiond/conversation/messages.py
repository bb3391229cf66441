"""Message service: append, list, get, patch, delete; fork and head moves of the path.

Messages live on append-only branches; a session shows a *path* through them
(``conversation.path``, docs/design/conversation.md). Writes lock the session row, so
appends to a session are serialized and every change commits with its event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond import jsontext
from sessiond.conversation import path as P
from sessiond.conversation.models import MessageCreate, MessagePatch
from sessiond.conversation.parts import validate_parts
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import InvalidTransition, NotFound, PayloadTooLarge, ValidationFailed, invalid
from sessiond.ids import iso, new_id
from sessiond.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor
from sessiond.sessions import kernel, refs
from sessiond.sessions import validation as v
from sessiond.settings import Limits

NAME_MAX = 200
m = t.messages


def message_not_found(message_id: str) -> NotFound:
    return NotFound(f"message {message_id} not found in this session's conversation")


def _dumps(value: Any) -> str:
    return jsontext.dumps(value)


# -- rendering -----------------------------------------------------------------------------


def own_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The fields a message row stores in ``doc`` (everything but id, session, seq, parent)."""
    return {
        "role": row["role"],
        "parts": row["parts"],
        "toolCallId": row["tool_call_id"],
        "toolName": row["tool_name"],
        "metadata": row["metadata"],
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def splice(message_id: str, session_id: str, parent_id: str | None, seq: int, doc: str) -> str:
    """The message object as JSON text: the per-path fields, then the stored ``doc``."""
    parent = "null" if parent_id is None else f'"{parent_id}"'
    head = f'{{"id":"{message_id}","sessionId":"{session_id}","parentId":{parent}'
    return f'{head},"seq":{seq},{doc[1:]}'


def render(
    message_id: str, session_id: str, parent_id: str | None, seq: int, doc: dict[str, Any]
) -> dict[str, Any]:
    return {"id": message_id, "sessionId": session_id, "parentId": parent_id, "seq": seq, **doc}


# -- reads ---------------------------------------------------------------------------------

_PATH = sa.select(t.sessions.c.conversation).where(
    t.sessions.c.id == sa.bindparam("session_id"),
    t.sessions.c.account_id == sa.bindparam("account_id"),
    t.sessions.c.deleted_at.is_(None),
)


def read_path(tx: Tx, account_id: str, session_id: str) -> P.Path:
    row = tx.conn.execute(_PATH, {"session_id": session_id, "account_id": account_id}).first()
    if row is None:
        raise kernel.not_found(session_id)
    return row[0]  # type: ignore[no-any-return]


_RANGE = sa.select(m.c.id, m.c.branch_id, m.c.bseq, m.c.doc).where(
    m.c.account_id == sa.bindparam("account_id"),
    m.c.branch_id == sa.bindparam("branch"),
    m.c.bseq.between(sa.bindparam("lo"), sa.bindparam("hi")),
)


def fetch_range(
    tx: Tx, account_id: str, path: P.Path, first: int, last: int
) -> list[tuple[int, Any]]:
    """``[(seq, row)]`` for seqs ``first..last`` of the path, in seq order (one query)."""
    if last < first:
        return []
    ranges = P.window(path, first, last)
    if not ranges:
        return []
    if len(ranges) == 1:  # the common case: one prebuilt statement
        r = ranges[0]
        params = {"account_id": account_id, "branch": r.branch, "lo": r.lo, "hi": r.hi}
        rows = tx.conn.execute(_RANGE, params).all()
    else:
        where = [sa.and_(m.c.branch_id == r.branch, m.c.bseq.between(r.lo, r.hi)) for r in ranges]
        rows = tx.conn.execute(
            sa.select(m.c.id, m.c.branch_id, m.c.bseq, m.c.doc).where(
                m.c.account_id == account_id, sa.or_(*where)
            )
        ).all()
    out = [(_seq_in(ranges, row.branch_id, row.bseq), row) for row in rows]
    out.sort(key=lambda item: item[0])
    return out


def _seq_in(ranges: list[P.Range], branch: str, bseq: int) -> int:
    # A branch may appear in several ranges (a delete splits its segment).
    for r in ranges:
        if r.branch == branch and r.lo <= bseq <= r.hi:
            return bseq + r.offset
    raise AssertionError(f"row {branch}/{bseq} outside the ranges it was fetched by")


def _page_text(session_id: str, fetched: list[tuple[int, Any]], first: int) -> list[str]:
    """Message JSON texts for seqs >= ``first``; the row before ``first`` (if fetched) is
    only the parent of the first."""
    out: list[str] = []
    parent: str | None = None
    for seq, row in fetched:
        if seq >= first:
            out.append(splice(row.id, session_id, parent, seq, row.doc))
        parent = row.id
    return out


@dataclass(frozen=True)
class PageQuery:
    after: int | None = None
    before: int | None = None
    limit: int | None = None  # None: the cursor's limit, else 50
    cursor: str | None = None
    order: str = "asc"


def _resolve(tx: Tx, account_id: str, path: P.Path, message_id: str, seq: int) -> int | None:
    """Where the cursor's anchor message is now (None: no longer on the path)."""
    row = tx.conn.execute(
        sa.select(m.c.branch_id, m.c.bseq).where(m.c.id == message_id, m.c.account_id == account_id)
    ).first()
    return None if row is None else P.locate(path, row.branch_id, row.bseq)


def list_page(
    tx: Tx, account_id: str, session_id: str, q: PageQuery
) -> tuple[list[str], str | None]:
    """A page of the current path as JSON texts, and the cursor of the next page.

    ``asc``: with only ``before``, the ``limit`` messages just before it; otherwise the
    ones just after ``after`` (or the start). ``desc``: newest first, from ``before`` (or
    the end) down to ``after``. The page's seq window comes from the path, not an OFFSET.
    """
    if q.order not in ("asc", "desc"):
        raise invalid("order", "must be asc or desc")
    for name in ("after", "before"):
        value = getattr(q, name)
        if value is not None and value < 0:
            raise invalid(name, "must be a seq (0 or more)")
    path = read_path(tx, account_id, session_id)
    n = P.count(path)
    order, after, before = q.order, q.after, q.before
    limit = q.limit or DEFAULT_LIMIT
    if q.cursor is not None:
        c = decode_cursor(q.cursor, "messages")
        order, direction = c["o"], c["d"]
        limit = q.limit or c.get("l") or DEFAULT_LIMIT
        where = _resolve(tx, account_id, path, c["id"], c["s"])
        if direction == "down":  # after the anchor (deleted since: the seq it had, minus 1)
            after, before = (where if where is not None else c["s"] - 1), c.get("b")
        else:
            after, before = c.get("a"), (where if where is not None else c["s"])
    else:
        up = order == "desc" or (before is not None and after is None)
        direction = "up" if up else "down"
    lo = after or 0
    hi = min(before, n + 1) if before is not None else n + 1
    if direction == "up":
        last, first = hi - 1, max(lo + 1, hi - limit)
    else:
        first, last = lo + 1, min(hi - 1, lo + limit)
    fetched = fetch_range(tx, account_id, path, max(first - 1, 1), last)
    docs = _page_text(session_id, fetched, first)
    ids = {seq: row.id for seq, row in fetched}
    next_cursor = None
    if docs and direction == "up" and first > lo + 1:
        next_cursor = encode_cursor(
            {"k": "messages", "o": order, "d": "up", "id": ids[first], "s": first, "a": after}
            | {"l": limit}
        )
    elif docs and direction == "down" and last < hi - 1:
        next_cursor = encode_cursor(
            {"k": "messages", "o": order, "d": "down", "id": ids[last], "s": last, "b": before}
            | {"l": limit}
        )
    if order == "desc":
        docs.reverse()
    return docs, next_cursor


_BY_ID = sa.select(m).where(
    m.c.id == sa.bindparam("id"), m.c.account_id == sa.bindparam("account_id")
)


def _locate_row(
    tx: Tx, account_id: str, path: P.Path, message_id: str
) -> tuple[dict[str, Any], int]:
    row = tx.conn.execute(_BY_ID, {"id": message_id, "account_id": account_id}).first()
    if row is None:
        raise message_not_found(message_id)
    seq = P.locate(path, row.branch_id, row.bseq)
    if seq is None:
        raise message_not_found(message_id)
    return dict(row._mapping), seq


_ID_AT = sa.select(m.c.id).where(
    m.c.branch_id == sa.bindparam("branch"), m.c.bseq == sa.bindparam("bseq")
)
_INSERT = m.insert()


def _parent_id(tx: Tx, account_id: str, path: P.Path, seq: int) -> str | None:
    if seq <= 1:
        return None
    where = P.at_seq(path, seq - 1)
    if where is None:
        return None
    found = tx.conn.execute(_ID_AT, {"branch": where[0], "bseq": where[1]}).first()
    return None if found is None else str(found[0])


def get_text(tx: Tx, account_id: str, session_id: str, message_id: str) -> str:
    path = read_path(tx, account_id, session_id)
    row, seq = _locate_row(tx, account_id, path, message_id)
    return splice(row["id"], session_id, _parent_id(tx, account_id, path, seq), seq, row["doc"])


# -- writes --------------------------------------------------------------------------------


def _check_size(limits: Limits, doc: str) -> None:
    size = len(doc.encode("utf-8"))
    if size > limits.message_bytes:
        raise PayloadTooLarge(
            f"message is {size} bytes; at most {limits.message_bytes} bytes per message "
            "(store large content as a file and reference it with a file part)",
            details={"limit": limits.message_bytes, "size": size},
        )


def _set_path(tx: Tx, row: dict[str, Any], path: P.Path) -> None:
    kernel.touch(tx, row, conversation=path, message_count=P.count(path))


def _emit(tx: Tx, row: dict[str, Any], type: str, data: Any) -> None:
    tx.emit(row["account_id"], type, data, session_id=row["id"], workspace_id=row["workspace_id"])


def _create_parts(body: MessageCreate) -> list[dict[str, Any]]:
    given = body.model_fields_set
    if "parts" in given and "content" in given:
        raise ValidationFailed(
            [{"field": "content", "message": "send either parts or content, not both"}]
        )
    if "content" in given:
        if body.content is None:
            raise invalid("content", "may not be null")
        return [{"type": "text", "text": body.content}]
    if "parts" not in given:
        raise invalid("parts", "required (or send content for a single text part)")
    return validate_parts(body.parts)


def append(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: MessageCreate,
    *,
    if_match: int | str | None = None,
    before: Callable[[dict[str, Any], str, str | None], None] | None = None,
) -> dict[str, Any]:
    """Append a message at the end of the session's path; returns the message object.

    ``before(row, message_id, parent_id)`` runs once the input is valid, just before the
    message is written, with the whole locked session row (``versions.appends`` records
    the state before a user message this way)."""
    parts = _create_parts(body)
    for name in ("tool_call_id", "tool_name"):
        v.check_name(name, getattr(body, name))
    if body.status == "streaming" and body.role != "assistant":
        raise invalid("status", "only an assistant message may start as streaming")
    message_id = new_id("msg")
    row = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=before is not None)
    path = row["conversation"]
    branch = path["head"]
    if branch is None:
        branch = new_id("br")
        refs.add_refs(tx, session_id, [branch])
    new_path, bseq, seq = P.append(path, branch)
    fields = {
        "role": body.role,
        "parts": parts,
        "tool_call_id": body.tool_call_id,
        "tool_name": body.tool_name,
        "metadata": body.metadata or {},
        "status": body.status,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    own = own_fields(fields)
    doc = _dumps(own)
    _check_size(limits, doc)
    parent_id = _parent_id(tx, account_id, new_path, seq) if seq > 1 else None
    if before is not None:
        before(row, message_id, parent_id)
    tx.conn.execute(
        _INSERT,
        {
            "id": message_id,
            "account_id": account_id,
            "session_id": session_id,
            "branch_id": branch,
            "bseq": bseq,
            "role": body.role,
            "status": body.status,
            "doc": doc,
            "created_at": tx.now,
            "updated_at": tx.now,
        },
    )
    _set_path(tx, row, new_path)
    message = render(message_id, session_id, parent_id, seq, own)
    _emit(tx, row, "message.created", {"message": message})
    return message


def _tool_call_only(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """True when ``new`` differs from ``old`` only in tool_call status, output or error."""
    if len(old) != len(new):
        return False
    mutable = {"status", "output", "error"}
    for a, b in zip(old, new, strict=True):
        if a.get("type") != "tool_call" or b.get("type") != "tool_call":
            if a != b:
                return False
            continue
        if {k: x for k, x in a.items() if k not in mutable} != {
            k: x for k, x in b.items() if k not in mutable
        }:
            return False
    return True


def _apply_tool_call(parts: list[dict[str, Any]], update: Any) -> None:
    for part in parts:
        if part.get("type") == "tool_call" and part.get("toolCallId") == update.tool_call_id:
            part["status"] = update.status
            for name in ("output", "error"):
                if name in update.model_fields_set:
                    part[name] = getattr(update, name)
            return
    raise invalid("toolCall.toolCallId", f"no tool_call part with toolCallId {update.tool_call_id}")


def update(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    message_id: str,
    body: MessagePatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """PATCH a message. A streaming message takes any change; a complete (or error) one
    only tool_call status/output/error changes (else 409 ``invalid_transition``)."""
    given = body.model_fields_set
    for name in ("parts", "append_parts", "metadata", "status"):
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    new_parts = validate_parts(body.parts) if "parts" in given else None
    extra = validate_parts(body.append_parts, "appendParts") if "append_parts" in given else None
    row = kernel.lock_light(tx, account_id, session_id, if_match=if_match)
    kernel.require_active(row)
    path = row["conversation"]
    msg, seq = _locate_row(tx, account_id, path, message_id)
    own = json.loads(msg["doc"])
    old_parts = own["parts"]
    parts = [dict(p) for p in (new_parts if new_parts is not None else old_parts)]
    if extra:
        parts.extend(extra)
    if body.append_text is not None:
        if parts and parts[-1].get("type") == "text":
            parts[-1]["text"] += body.append_text
        else:
            parts.append({"type": "text", "text": body.append_text})
    if body.tool_call is not None:
        _apply_tool_call(parts, body.tool_call)
    status = body.status if body.status is not None else own["status"]
    metadata = body.metadata if "metadata" in given else own["metadata"]
    if own["status"] != "streaming":
        frozen = (
            status != own["status"]
            or metadata != own["metadata"]
            or not _tool_call_only(old_parts, parts)
        )
        if frozen:
            raise InvalidTransition(
                f"message {message_id} is {own['status']}: only tool_call status, output "
                "and error may change now (a message can be edited only while streaming)",
                details={"status": own["status"]},
            )
    changed = parts != old_parts or status != own["status"] or metadata != own["metadata"]
    if changed:
        own.update(parts=parts, status=status, metadata=metadata, updatedAt=iso(tx.now))
        doc = _dumps(own)
        _check_size(limits, doc)
        tx.conn.execute(
            m.update().where(m.c.id == message_id).values(doc=doc, status=status, updated_at=tx.now)
        )
        kernel.touch(tx, row)
    message = render(message_id, session_id, _parent_id(tx, account_id, path, seq), seq, own)
    if changed:
        _emit(tx, row, "message.updated", {"message": message})
    return message


def replace(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    message_id: str,
    parts: list[dict[str, Any]],
    status: str,
    *,
    delta: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Set a streaming message's parts (stored form, built by the server: an agent's
    turn) and status, with one ``message.updated`` whose ``data.delta`` says what was
    appended. A message no longer streaming, or no longer on the path (reverted), or a
    session no longer active is left alone: returns None."""
    row = kernel.lock_light(tx, account_id, session_id)
    if row["status"] != "active":
        return None
    path = row["conversation"]
    try:
        msg, seq = _locate_row(tx, account_id, path, message_id)
    except NotFound:
        return None
    own = json.loads(msg["doc"])
    if own["status"] != "streaming":
        return None
    own.update(parts=parts, status=status, updatedAt=iso(tx.now))
    if metadata is not None:
        own["metadata"] = {**own["metadata"], **metadata}
    doc = _dumps(own)
    if len(doc.encode("utf-8")) > limits.message_bytes:
        # Over the message limit: the parts stay as last stored, marked truncated.
        own = json.loads(msg["doc"])
        own.update(status=status, updatedAt=iso(tx.now))
        own["metadata"] = {**own["metadata"], "truncated": True}
        doc = _dumps(own)
        delta = None
    tx.conn.execute(
        m.update()
        .where(m.c.id == message_id)
        .values(doc=doc, status=own["status"], updated_at=tx.now)
    )
    kernel.touch(tx, row)
    message = render(message_id, session_id, _parent_id(tx, account_id, path, seq), seq, own)
    data: dict[str, Any] = {"message": message}
    if delta:
        data["delta"] = delta
    _emit(tx, row, "message.updated", data)
    return message


def delete(
    tx: Tx,
    account_id: str,
    session_id: str,
    message_id: str,
    *,
    if_match: int | str | None = None,
) -> None:
    """Take the message off the path; its children now follow its parent.

    The row stays: a fork or a checkpoint may still show it.
    """
    row = kernel.lock_light(tx, account_id, session_id, if_match=if_match)
    kernel.require_active(row)
    path = row["conversation"]
    _msg, seq = _locate_row(tx, account_id, path, message_id)
    _set_path(tx, row, P.remove(path, seq))
    _emit(tx, row, "message.deleted", {"id": message_id, "seq": seq})


# -- head moves (restore, revert, fork: versions/checkpoints.py, versions/fork.py) ---------


def seq_of(tx: Tx, account_id: str, path: P.Path, message_id: str) -> int:
    return _locate_row(tx, account_id, path, message_id)[1]


def adopt(tx: Tx, session_id: str, path: P.Path) -> None:
    """Record that ``session_id`` shows the branches of ``path``."""
    refs.add_refs(tx, session_id, P.branches(path))


def move_head(tx: Tx, row: dict[str, Any], path: P.Path) -> None:
    """Make ``path`` (a cut of this session's own path or a path a checkpoint recorded) the
    session's conversation. The next append opens a new branch, so the messages that left
    the path stay intact (for unrevert and for anyone else who shows them)."""
    new = {"head": None, "next": 1, "segments": path["segments"]}
    adopt(tx, row["id"], new)
    _set_path(tx, row, new)


def compact(
    tx: Tx,
    limits: Limits,
    row: dict[str, Any],
    compacted: int,
    message_id: str,
    text: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Replace the first ``compacted`` messages of the path by one ``system`` message
    holding ``text``, on a new head branch (docs/design/compaction.md). The rows that
    leave the path stay (checkpoints and forks show them); the kept ones are not
    rewritten. ``row``: the locked session row. Emits ``message.created`` (seq 1)."""
    branch = new_id("br")
    own = own_fields(
        {
            "role": "system",
            "parts": [{"type": "text", "text": text}],
            "tool_call_id": None,
            "tool_name": None,
            "metadata": metadata,
            "status": "complete",
            "created_at": tx.now,
            "updated_at": tx.now,
        }
    )
    doc = _dumps(own)
    _check_size(limits, doc)
    refs.add_refs(tx, row["id"], [branch])
    tx.conn.execute(
        _INSERT,
        {
            "id": message_id,
            "account_id": row["account_id"],
            "session_id": row["id"],
            "branch_id": branch,
            "bseq": 1,
            "role": "system",
            "status": "complete",
            "doc": doc,
            "created_at": tx.now,
            "updated_at": tx.now,
        },
    )
    _set_path(tx, row, P.compact(row["conversation"], compacted, branch))
    message = render(message_id, row["id"], None, 1, own)
    _emit(tx, row, "message.created", {"message": message})
    return message
