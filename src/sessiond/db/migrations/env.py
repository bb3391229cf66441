"""Alembic environment: runs online against the engine passed in ``config.attributes``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from sessiond.db.tables import metadata

engine = context.config.attributes.get("engine")
if engine is None:  # plain `alembic` CLI use: a URL in the ini
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
