"""Appending a message, with the state before a user message recorded first.

Every user message gets an automatic checkpoint of the files, context and tasks as they
were just before it (``checkpoints.before_message_id``), in the same transaction: that is
what revert-to-message and fork-from-message find. The conversation itself knows nothing
of checkpoints; this composition sits above both (docs/design/layout.md).
"""

from __future__ import annotations

from typing import Any

from sessiond.conversation import messages
from sessiond.conversation.models import MessageCreate
from sessiond.db.executor import Tx
from sessiond.settings import Limits
from sessiond.versions import record


def append(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: MessageCreate,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """``conversation.messages.append``; a user message checkpoints the state first."""
    if body.role != "user":
        return messages.append(tx, limits, account_id, session_id, body, if_match=if_match)

    def record_state(row: dict[str, Any], message_id: str, parent_id: str | None) -> None:
        record.take(tx, row, auto=True, before_message_id=message_id, head_message_id=parent_id)

    return messages.append(
        tx, limits, account_id, session_id, body, if_match=if_match, before=record_state
    )
