"""checkpoints: find the state before a message account-wide (forks share history)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_checkpoints_session_id_before_message_id")
        batch_op.create_index(
            "ix_checkpoints_account_id_before_message_id",
            ["account_id", "before_message_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_checkpoints_account_id_before_message_id")
        batch_op.create_index(
            "ix_checkpoints_session_id_before_message_id",
            ["session_id", "before_message_id"],
            unique=False,
        )
