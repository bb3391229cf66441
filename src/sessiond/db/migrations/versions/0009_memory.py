"""memory (items, vectors, full-text index), session compactions and import origin

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Num = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# SQLite: an external-content FTS5 index over memories.text, kept by triggers.
SQLITE_FTS = [
    "CREATE VIRTUAL TABLE memories_fts USING fts5(text, content='memories', "
    "content_rowid='num', tokenize='unicode61 remove_diacritics 2')",
    # Each term's document count: search leaves out the commonest words of a query.
    "CREATE VIRTUAL TABLE memories_fts_vocab USING fts5vocab(memories_fts, 'row')",
    "CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN "
    "INSERT INTO memories_fts(rowid, text) VALUES (new.num, new.text); END",
    "CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN "
    "INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.num, old.text); "
    "END",
    "CREATE TRIGGER memories_fts_au AFTER UPDATE OF text ON memories BEGIN "
    "INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.num, old.text); "
    "INSERT INTO memories_fts(rowid, text) VALUES (new.num, new.text); END",
]
# PostgreSQL: a generated tsvector ('simple': no stemming, exact words) with a GIN index.
POSTGRES_FTS = [
    "ALTER TABLE memories ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX ix_memories_tsv ON memories USING gin (tsv)",
]


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(
            sa.Column("compactions", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("imported_from", sa.JSON(), nullable=True))
    op.create_table(
        "memories",
        sa.Column("num", Num, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("session_id", sa.String(40), nullable=True),
        sa.Column("workspace_id", sa.String(63), nullable=True),
        sa.Column("summary_of", sa.String(40), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("id", name=op.f("uq_memories_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_memories_account_id_namespace_num", "memories", ["account_id", "namespace", "num"]
    )
    op.create_index("ix_memories_account_id_num", "memories", ["account_id", "num"])
    op.create_index("ix_memories_account_id_session_id", "memories", ["account_id", "session_id"])
    op.create_index(
        "ix_memories_account_id_summary_of", "memories", ["account_id", "summary_of"], unique=True
    )
    op.create_index("ix_memories_expires_at", "memories", ["expires_at"])
    op.create_table(
        "memory_vectors",
        sa.Column("seq", Num, primary_key=True, autoincrement=True),
        sa.Column("memory_num", Num, nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("dims", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("memory_num", "model", name=op.f("uq_memory_vectors_memory_num_model")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_memory_vectors_account_id_model_seq", "memory_vectors", ["account_id", "model", "seq"]
    )
    op.create_table(
        "memory_generations",
        sa.Column("account_id", sa.String(40), primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
    )
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("memories_fts_ai", "memories_fts_ad", "memories_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memories_fts_vocab")
        op.execute("DROP TABLE IF EXISTS memories_fts")
    op.drop_table("memory_generations")
    op.drop_table("memory_vectors")
    op.drop_table("memories")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("imported_from")
        batch_op.drop_column("compactions")
