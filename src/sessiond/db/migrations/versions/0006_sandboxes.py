"""sandboxes: where a session's sandbox lives, when it hibernates

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00.000000
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Sessions created before this revision keep their sandboxes (hibernating after the
# default 300 s); their stored documents gain the fields the session object now has.
DEFAULT_HIBERNATE = 300
EMPTY_USAGE = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "costUsd": 0.0, "turns": 0}


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sandbox_host", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("sandbox_due", sa.BigInteger, nullable=True))
        batch_op.add_column(sa.Column("hibernate_after_seconds", sa.BigInteger, nullable=True))
        batch_op.create_index(batch_op.f("ix_sessions_sandbox_due"), ["sandbox_due"], unique=False)
    op.create_table(
        "sandbox_homes",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    conn = op.get_bind()
    sessions = sa.table(
        "sessions",
        sa.column("id", sa.String),
        sa.column("doc", sa.Text),
        sa.column("hibernate_after_seconds", sa.BigInteger),
    )
    conn.execute(sessions.update().values(hibernate_after_seconds=DEFAULT_HIBERNATE))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(sessions.c.id, sessions.c.doc)
            .where(sessions.c.id > last)
            .order_by(sessions.c.id)
            .limit(500)
        ).all()
        if not rows:
            break
        for session_id, text in rows:
            doc = json.loads(text)
            doc.setdefault("permissions", None)
            doc.setdefault("usage", dict(EMPTY_USAGE))
            doc["hibernateAfterSeconds"] = DEFAULT_HIBERNATE
            old = doc.get("sandbox") or {}
            doc["sandbox"] = {
                "state": old.get("state"),
                "expiresAt": None,
                "hibernateAfter": DEFAULT_HIBERNATE,
                "lastUsedAt": None,
                "snapshot": None,
            }
            conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .values(doc=json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
            )
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_table("sandbox_homes")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_sandbox_due"))
        batch_op.drop_column("hibernate_after_seconds")
        batch_op.drop_column("sandbox_due")
        batch_op.drop_column("sandbox_host")
