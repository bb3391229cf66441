"""Compaction: the conversation becomes (summary + last N), the full history checkpointed.

docs/design/compaction.md. Three steps: ``prepare`` (a read: refusals, the part to
summarize, the summarizer's input), the summarizer (no transaction, in a thread), then
``apply`` (one write: everything checked again, the prefix compared with the one that was
summarized, the checkpoint, the summary message, the new path, the counter and the events).
A prefix that changed meanwhile (a delete, revert or restore) is summarized again; a
prefix that only grew at its end (appends) keeps those messages after the last N.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond.conversation import messages
from sessiond.conversation import path as P
from sessiond.conversation.parts import text_of
from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.errors import SessionBusy, UpstreamError, VersionConflict, invalid
from sessiond.ids import new_id
from sessiond.sessions import kernel
from sessiond.settings import Limits
from sessiond.summaries import service as summaries
from sessiond.summaries.summarizer import Summarizer, SummaryInput
from sessiond.versions import record

log = logging.getLogger("sessiond.compaction")

DEFAULT_KEEP = 20
MAX_KEEP = 10_000
ATTEMPTS = 3
EARLIER_CHARS = 4000


def check_keep(keep_last: Any) -> int:
    if keep_last is None:
        return DEFAULT_KEEP
    if isinstance(keep_last, bool) or not isinstance(keep_last, int):
        raise invalid("keepLast", f"must be an integer from 0 to {MAX_KEEP}")
    if not 0 <= keep_last <= MAX_KEEP:
        raise invalid("keepLast", f"must be an integer from 0 to {MAX_KEEP} (got {keep_last})")
    return keep_last


def is_summary(doc: dict[str, Any]) -> bool:
    """Whether a message's own fields are those of a compaction summary."""
    return doc.get("role") == "system" and isinstance(
        doc.get("metadata", {}).get("compaction"), dict
    )


def _busy(tx: Tx, session_id: str) -> None:
    """409 ``session_busy`` while a turn is queued or running: a running agent writes to
    the path, and a queued turn's user message must stay on it for its prompt."""
    tr = t.turns
    ids = list(
        tx.conn.execute(
            sa.select(tr.c.id)
            .where(tr.c.session_id == session_id, tr.c.status.in_(("queued", "running")))
            .order_by(tr.c.seq)
        ).scalars()
    )
    if ids:
        raise SessionBusy(
            f"session {session_id} has {len(ids)} turn(s) queued or running; compact it "
            "when they have ended (POST .../cancel stops them)",
            details={"turns": ids},
        )


def _first_doc(tx: Tx, account_id: str, path: P.Path) -> dict[str, Any] | None:
    found = messages.fetch_range(tx, account_id, path, 1, 1)
    return json.loads(found[0][1].doc) if found else None


@dataclass(frozen=True)
class Plan:
    """What ``prepare`` read: the path prefix to compact and the summarizer's input."""

    compacted: int  # K: messages 1..K leave the path (0: nothing to compact)
    prefix: list[Any]  # the segments of seqs 1..K, as read
    data: SummaryInput | None
    earlier: str | None  # the text of an earlier compaction summary at seq 1


def prepare(tx: Tx, account_id: str, session_id: str, keep_last: int, *, scan: int) -> Plan:
    """The read before summarizing: 404, 409 ``session_not_active``, 409 ``session_busy``."""
    row = kernel.get_row(tx, account_id, session_id)
    kernel.require_active(row)
    _busy(tx, session_id)
    path = row["conversation"]
    compacted = max(P.count(path) - keep_last, 0)
    first = _first_doc(tx, account_id, path) if compacted else None
    if compacted == 0 or (compacted == 1 and first is not None and is_summary(first)):
        return Plan(0, [], None, None)
    earlier = text_of(first["parts"]) if first is not None and is_summary(first) else None
    data = summaries.gather_prefix(tx, row, compacted, scan=scan)
    return Plan(compacted, P.cut(path, compacted)["segments"], data, earlier)


def summary_text(compacted: int, summary: str, earlier: str | None) -> str:
    text = f"Summary of the {compacted} earlier messages of this conversation:\n{summary}"
    if earlier:
        clipped = earlier if len(earlier) <= EARLIER_CHARS else earlier[: EARLIER_CHARS - 1] + "…"
        text += f"\n\nEarlier: {clipped}"
    return text


class PrefixChanged(Exception):
    """The part that was summarized is no longer the start of the path."""


def apply(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    plan: Plan,
    keep_last: int,
    text: str | None,
    *,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """The write: ``(200, {"message", "compactedCount"})``. Raises ``PrefixChanged``
    when the path's first ``plan.compacted`` messages are no longer the ones summarized."""
    row = kernel.load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=expected_version
    )
    kernel.require_active(row)
    _busy(tx, session_id)
    path = row["conversation"]
    if plan.compacted == 0 or text is None:
        return 200, {"message": None, "compactedCount": 0}
    if P.count(path) < plan.compacted or P.cut(path, plan.compacted)["segments"] != plan.prefix:
        raise PrefixChanged
    message_id = new_id("msg")
    # The state just before the summary message: revert to the summary finds it.
    checkpoint = record.take(
        tx, row, label=record.COMPACTION_LABEL, auto=True, before_message_id=message_id
    )
    meta = {
        "compaction": {
            "compactedCount": plan.compacted,
            "keepLast": keep_last,
            "checkpointId": checkpoint["id"],
        }
    }
    message = messages.compact(tx, limits, row, plan.compacted, message_id, text, meta)
    compactions = int(row.get("compactions") or 0) + 1
    # A counter (no lifecycleVersion bump); the agent's ACP session holds the old history.
    kernel.write_fields(tx, row, {"compactions": compactions, "acp_session_id": None})
    kernel.emit(
        tx,
        row,
        "session.compacted",
        {
            "messageId": message["id"],
            "compactedCount": plan.compacted,
            "keepLast": keep_last,
            "checkpointId": checkpoint["id"],
            "messageCount": row["message_count"],
            "compactions": compactions,
        },
    )
    return 200, {"message": message, "compactedCount": plan.compacted}


Write = Callable[[Callable[[Tx], tuple[int, Any]]], Awaitable[Any]]


async def compact(
    db: Database,
    summarizer: Summarizer,
    write: Write,
    account_id: str,
    session_id: str,
    keep_last: int,
    *,
    limits: Limits,
    scan: int,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> Any:
    """Prepare, summarize outside any transaction, apply through ``write`` (the route's
    idempotent write); a prefix that changed meanwhile is summarized again, at most
    ``ATTEMPTS`` times in all, then 409 ``version_conflict``."""
    for _ in range(ATTEMPTS):
        plan = await db.read(prepare, account_id, session_id, keep_last, scan=scan)
        text = None
        if plan.data is not None:
            try:
                summary = await asyncio.to_thread(summarizer.summarize, plan.data)
            except Exception as e:  # a plugged-in summarizer (a model) that failed
                log.warning("summary for compacting %s failed: %r", session_id, e)
                raise UpstreamError(
                    f"the summarizer failed ({type(e).__name__}); nothing was compacted, "
                    "retry later"
                ) from e
            text = summary_text(plan.compacted, summary.text, plan.earlier)

        def run(tx: Tx, plan: Plan = plan, text: str | None = text) -> tuple[int, Any]:
            return apply(
                tx,
                limits,
                account_id,
                session_id,
                plan,
                keep_last,
                text,
                if_match=if_match,
                expected_version=expected_version,
            )

        try:
            return await write(run)
        except PrefixChanged:
            continue
    raise VersionConflict(
        f"the conversation of session {session_id} kept changing while it was being "
        "summarized; retry the compaction",
        details={"reason": "conversation_changed"},
    )


# -- the context an agent's new ACP session gets --------------------------------------

CONTEXT_CHARS = 64 * 1024
CONTEXT_MESSAGES = 200


def agent_context(tx: Tx, account_id: str, session_id: str, before_seq: int) -> str | None:
    """The text block sent in front of the first prompt of a new ACP session when the
    conversation starts with a compaction summary: the summary, then the messages kept
    after it up to ``before_seq`` (the prompt), the oldest dropped first beyond
    ``CONTEXT_CHARS``. None when the conversation was never compacted."""
    path = messages.read_path(tx, account_id, session_id)
    first = _first_doc(tx, account_id, path)
    if first is None or not is_summary(first):
        return None
    lines: list[str] = []
    size = 0
    start = max(2, before_seq - CONTEXT_MESSAGES)
    for _seq, row in reversed(messages.fetch_range(tx, account_id, path, start, before_seq - 1)):
        doc = json.loads(row.doc)
        said = text_of(doc["parts"]).strip()
        if not said:
            continue
        line = f"{doc['role']}: {said}"
        if size + len(line) > CONTEXT_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
    body = text_of(first["parts"])
    if lines:
        body += "\n\nMessages since then, oldest first:\n" + "\n".join(reversed(lines))
    return f'<context source="sessiond" reason="compaction">\n{body}\n</context>\n\n'
