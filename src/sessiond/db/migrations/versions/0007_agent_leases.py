"""agent leases: which instance owns a session's live agent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_leases",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_agent_leases_owner", "agent_leases", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_agent_leases_owner", "agent_leases")
    op.drop_table("agent_leases")
