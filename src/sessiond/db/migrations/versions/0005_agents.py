"""agents: turns, what agents announced, the session's agent fields, approval options

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("permissions", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("usage", sa.JSON, nullable=True))
        batch_op.add_column(sa.Column("acp_session_id", sa.Text, nullable=True))
        batch_op.add_column(sa.Column("permission_rules", sa.JSON, nullable=True))
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("option_id", sa.Text, nullable=True))
    op.create_table(
        "turns",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stop_reason", sa.String(32), nullable=True),
        sa.Column("user_message_id", sa.String(40), nullable=True),
        sa.Column("assistant_message_id", sa.String(40), nullable=True),
        sa.Column("checkpoint_id", sa.String(40), nullable=True),
        sa.Column("files_changed", sa.JSON, nullable=False),
        sa.Column("skipped", sa.JSON, nullable=False),
        sa.Column("usage", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("mode", sa.String(200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("session_id", "seq"),
    )
    op.create_index(
        "ix_turns_account_id_session_id_id", "turns", ["account_id", "session_id", "id"]
    )
    op.create_index("ix_turns_status", "turns", ["status"])
    op.create_table(
        "agent_info",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("modes", sa.JSON, nullable=True),
        sa.Column("capabilities", sa.JSON, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_info")
    op.drop_index("ix_turns_status", "turns")
    op.drop_index("ix_turns_account_id_session_id_id", "turns")
    op.drop_table("turns")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("option_id")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("permission_rules")
        batch_op.drop_column("acp_session_id")
        batch_op.drop_column("usage")
        batch_op.drop_column("permissions")
