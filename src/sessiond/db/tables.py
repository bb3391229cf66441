"""All tables, on one ``MetaData``. Times are integer milliseconds since the epoch (UTC).

The same definitions serve SQLite and PostgreSQL; the Alembic history in
``migrations/versions`` creates exactly these.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# On SQLite an INTEGER PRIMARY KEY is the rowid (monotonic with AUTOINCREMENT);
# on PostgreSQL a BIGINT fed by a sequence (BIGSERIAL).
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ms = sa.BigInteger

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", Ms, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("revoked_at", Ms, nullable=True),
    sa.Index(None, "account_id", "created_at"),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("workspace_id", sa.String(63), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("activity", sa.String(8), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("parent_id", sa.String(40), nullable=True),
    sa.Column("forked_from", sa.JSON, nullable=True),
    sa.Column("agent", sa.String(200), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("mode", sa.String(200), nullable=True),
    sa.Column("ttl_seconds", sa.BigInteger, nullable=True),
    sa.Column("expires_at", Ms, nullable=True),
    sa.Column("ephemeral", sa.Boolean, nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("summary", sa.JSON, nullable=True),
    sa.Column("last_error", sa.JSON, nullable=True),
    sa.Column("workspace", sa.JSON, nullable=False),
    sa.Column("repo", sa.JSON, nullable=True),
    sa.Column("sandbox", sa.JSON, nullable=False),
    sa.Column("lifecycle_version", sa.Integer, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Column("last_activity_at", Ms, nullable=False),
    sa.Column("closed_at", Ms, nullable=True),
    # The session object as JSON text (without ``context``), rewritten with every change:
    # GET and list serve it without decoding and re-encoding 9 JSON columns per row.
    sa.Column("doc", sa.Text, nullable=False),
    # The conversation path: {"head", "next", "segments"} (docs/design/conversation.md).
    sa.Column("conversation", sa.JSON, nullable=False),
    # Set when the session closes, cleared when its summary is stored: the summary queue.
    sa.Column("summary_due", Ms, nullable=True),
    # The checkpoint the last revert recorded first (what unrevert restores), or null.
    sa.Column("revert_undo", sa.String(40), nullable=True),
    # The last commit on the session's branch (a fork starts from its parent's).
    sa.Column("commit_head", sa.String(40), nullable=True),
    sa.Column("environment_spec", sa.JSON, nullable=True),
    # Agents (docs/design/agents.md): the permission policy (null = the agent's default),
    # the sums over ended turns, the agent's own session id (for session/load) and the
    # remembered *_always answers ({toolKind: "allow" | "reject"}).
    sa.Column("permissions", sa.String(16), nullable=True),
    sa.Column("usage", sa.JSON, nullable=True),
    sa.Column("acp_session_id", sa.Text, nullable=True),
    sa.Column("permission_rules", sa.JSON, nullable=True),
    # Sandboxes (docs/design/sandbox.md): ``sandbox`` holds {state, lastUsedAt}; the
    # instance whose disk has the directory; when the sweeper hibernates it; the
    # session's hibernateAfterSeconds (null = never).
    sa.Column("sandbox_host", sa.String(200), nullable=True),
    sa.Column("sandbox_due", Ms, nullable=True),
    sa.Column("hibernate_after_seconds", sa.BigInteger, nullable=True),
    # How many times the conversation was compacted; where an imported session came from.
    sa.Column("compactions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("imported_from", sa.JSON, nullable=True),
    # Set by DELETE: the session answers 404 everywhere from then on; the sweeper purges
    # its rows in batches, this row last (docs/design/deletion.md). The purge queue.
    sa.Column("deleted_at", Ms, nullable=True),
    sa.Index(None, "account_id", "last_activity_at", "id"),
    sa.Index(None, "account_id", "created_at", "id"),
    sa.Index(None, "account_id", "workspace_id"),
    sa.Index(None, "account_id", "parent_id"),
    sa.Index(None, "status", "expires_at"),
    sa.Index(None, "summary_due"),
    sa.Index(None, "sandbox_due"),
    sa.Index(None, "deleted_at"),
)

# One row per (session, tag): makes "all of these tags" an indexed filter on both dialects.
session_tags = sa.Table(
    "session_tags",
    metadata,
    sa.Column(
        "session_id",
        sa.String(40),
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag", sa.String(100), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Index(None, "account_id", "tag"),
)

# The outbox and the event log in one: written in the same transaction as the change.
# Ids are allocated in commit order (see docs/design/events.md), so "id > N" never skips.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("workspace_id", sa.String(63), nullable=True),
    sa.Column("session_id", sa.String(40), nullable=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Index(None, "account_id", "id"),
    sa.Index(None, "session_id", "id"),
    sqlite_autoincrement=True,
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Index(None, "created_at"),
)


# -- conversation (docs/design/conversation.md) ----------------------------------------------

# Immutable once complete. ``session_id`` is the session that appended it (the owner of
# its branch); other sessions may show it through their path.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("branch_id", sa.String(40), nullable=False),
    sa.Column("bseq", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The message's own fields as JSON text (reads splice id/seq/parentId in front).
    sa.Column("doc", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.UniqueConstraint("branch_id", "bseq"),
)

# Which sessions show which branches: deleting a session frees only what no one else shows.
conversation_refs = sa.Table(
    "conversation_refs",
    metadata,
    sa.Column("branch_id", sa.String(40), primary_key=True),
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Index(None, "session_id"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "session_id", "position"),
)

notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("workspace_id", sa.String(63), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "session_id", "id"),
    sa.Index(None, "account_id", "workspace_id", "id"),
    sa.Index(None, "account_id", "id"),
)

annotations_table = sa.Table(  # (``annotations`` is taken by the __future__ import)
    "annotations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("target", sa.JSON, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "session_id", "id"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("workspace_id", sa.String(63), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=True),
    sa.Column("kind", sa.String(100), nullable=True),
    sa.Column("options", sa.JSON, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("decided_by", sa.String(40), nullable=True),
    # The option a decision chose (agent permissions carry ACP options; null otherwise).
    sa.Column("option_id", sa.Text, nullable=True),
    sa.Column("decided_at", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "session_id", "id"),
    sa.Index(None, "account_id", "status", "id"),
    sa.Index(None, "account_id", "id"),  # the review queue without a status filter
)

# Keys compare byte by byte on both backends (SQLite's BINARY; "C" on PostgreSQL), so
# listings are ordered the same everywhere and a prefix is an index range.
CacheKey = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")

cache_entries = sa.Table(
    "cache_entries",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("key", CacheKey, primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("value", sa.Text, nullable=False),  # JSON text
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("expires_at", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "expires_at"),  # the purge of expired entries
)

# -- workspace (docs/design/workspace.md) ---------------------------------------------------

# Git objects (blob 3, tree 2, commit 1: dulwich's type numbers), content zlib-compressed.
git_objects = sa.Table(
    "git_objects",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("sha", sa.String(40), primary_key=True),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),  # BYTEA on PostgreSQL
)

# A checkpoint: the files (a tree), the conversation path, the context and the task list
# of a session at one moment — a handful of ids and small JSON, never a copy of files or
# messages. ``figures`` holds the workspace figures of that tree against the session's
# base (filesChanged, linesAdded, linesRemoved), so a restore sets them back in O(1).
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(40), nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("tree", sa.String(40), nullable=False),
    sa.Column("base", sa.String(40), nullable=False),
    sa.Column("conversation", sa.JSON, nullable=False),
    sa.Column("message_id", sa.String(40), nullable=True),
    # Automatic checkpoints: the user message appended right after (revert-to-message).
    sa.Column("before_message_id", sa.String(40), nullable=True),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("tasks", sa.JSON, nullable=False),
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Column("auto", sa.Boolean, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Index(None, "session_id", "id"),
    # The state before a message, whichever session recorded it (a fork shares history).
    sa.Index(None, "account_id", "before_message_id"),
)

# Commits made on a session's branch (the git commit objects live in ``git_objects``).
commits = sa.Table(
    "commits",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("sha", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("tree", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Index(None, "session_id", "created_at"),
)


# One prompt = one turn (docs/design/agents.md). ``seq`` orders a session's turns: the
# queue is the queued turns by seq. Everything about a turn is here, so a restarted server
# or another instance knows what ran, what is queued, and in which order.
turns = sa.Table(
    "turns",
    metadata,
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
    # The instance running the turn, and when it last said so: a turn whose instance is
    # gone (no heartbeat for turn_stale_seconds) is failed by whoever notices.
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("started_at", Ms, nullable=True),
    sa.Column("ended_at", Ms, nullable=True),
    sa.UniqueConstraint("session_id", "seq"),
    sa.Index(None, "account_id", "session_id", "id"),
    sa.Index(None, "status"),  # recovery: the running turns; workers: sessions with queued ones
)

# What each configured agent announced the last time it started (server-wide: agents are
# server configuration and their modes name no tenant's data).
agent_info = sa.Table(
    "agent_info",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("modes", sa.JSON, nullable=True),
    sa.Column("capabilities", sa.JSON, nullable=True),
    sa.Column("updated_at", Ms, nullable=False),
)

# A hibernated sandbox's HOME (the agent's own state: opencode keeps its sessions there),
# as a gzipped tar, so that the agent can resume with session/load after a restore.
sandbox_homes = sa.Table(
    "sandbox_homes",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
)

# Which instance owns a session's live agent (docs/design/agents.md, the lease): taken
# when it claims a turn, renewed by its heartbeat while the agent lives, released when
# the agent stops. Another instance takes a session over only once the lease expired.
agent_leases = sa.Table(
    "agent_leases",
    metadata,
    sa.Column("session_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Index(None, "owner"),
)

# Webhooks (docs/design/webhooks.md): a subscription per row, with the cursor of the
# event log it has turned into deliveries and the lease of the instance sending for it.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("types", sa.JSON, nullable=False),
    sa.Column("workspace_id", sa.String(63), nullable=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("cursor", EventId, nullable=False),
    sa.Column("failed_in_a_row", sa.Integer, nullable=False),
    sa.Column("deactivated_reason", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index(None, "account_id", "id"),
)

# One event to one webhook: its body frozen when made, its attempts and outcome.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("webhook_id", sa.String(40), nullable=False),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("event_id", EventId, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.UniqueConstraint("webhook_id", "event_id"),
    sa.Index(None, "webhook_id", "status", "event_id"),
    sa.Index(None, "status", "updated_at"),
)


# Memory (docs/design/memory.md). ``num`` is the full-text index's row id (SQLite FTS5
# ``memories_fts`` with ``content_rowid='num'``, kept by triggers; on PostgreSQL a
# generated ``tsv`` column with a GIN index): both are made by migration 0009 and are
# not declared here. ``summary_of`` is the session whose summary this is (one per
# session: unique, NULLs allowed).
memories = sa.Table(
    "memories",
    metadata,
    sa.Column("num", EventId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("session_id", sa.String(40), nullable=True),
    sa.Column("workspace_id", sa.String(63), nullable=True),
    sa.Column("summary_of", sa.String(40), nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=True),
    sa.Index(None, "account_id", "namespace", "num"),
    sa.Index(None, "account_id", "num"),
    sa.Index(None, "account_id", "session_id"),
    sa.Index(None, "account_id", "summary_of", unique=True),
    sa.Index(None, "expires_at"),
    sqlite_autoincrement=True,
)

# A memory's vector under one embedding model (float32, normalized). Several models may
# coexist while a re-embed runs; search reads only the configured model's rows. A new
# vector is a new row (a new ``seq``): the matrices read the rows past the last they saw.
memory_vectors = sa.Table(
    "memory_vectors",
    metadata,
    # Taken under ``Tx.order_commits``: a matrix that read up to N never misses a lower one.
    sa.Column("seq", EventId, primary_key=True, autoincrement=True),
    sa.Column("memory_num", EventId, nullable=False),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("dims", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.UniqueConstraint("memory_num", "model"),
    sa.Index(None, "account_id", "model", "seq"),
    sqlite_autoincrement=True,
)

# Per account, kept in the transaction of every change: ``generation`` moves when vectors
# are lost (the in-process matrices are then rebuilt, on any instance); ``item_count``
# counts the account's memories (the limit check reads it, never counting rows).
memory_generations = sa.Table(
    "memory_generations",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
)

# Background jobs that one process runs at a time (the sweeper, overdue summaries):
# the worker or instance holding a job's row until ``until`` runs it and renews it;
# another takes it over once it lapsed (docs/design/workers.md).
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("until", Ms, nullable=False),
)
