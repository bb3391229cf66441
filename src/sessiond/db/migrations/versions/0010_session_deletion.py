"""deleted sessions: sessions.deleted_at (marked by DELETE, purged in the background)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.create_index("ix_sessions_deleted_at", "sessions", ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_deleted_at", "sessions")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("deleted_at")
