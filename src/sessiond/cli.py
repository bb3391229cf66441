"""``sessiond``: serve, migrate, accounts, keys. The only module that reads the environment."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from sessiond.auth import service as auth
from sessiond.db import migrate as migrations
from sessiond.db.engine import make_engine
from sessiond.errors import SessiondError
from sessiond.ids import iso
from sessiond.server.bootstrap import bootstrap, bootstrap_apart
from sessiond.server.listen import can_share_port, serve_app
from sessiond.server.supervisor import Supervisor
from sessiond.settings import Settings

app = typer.Typer(
    help="sessiond: a self-hosted session server for AI agents.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Manage accounts (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
memory_app = typer.Typer(help="Cross-session memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")

err = Console(stderr=True)


class EnvSettings(BaseSettings, Settings):
    """``Settings`` read from ``SESSIOND_*`` variables (nested: ``SESSIOND_LIMITS__BODY_BYTES``)."""

    model_config = SettingsConfigDict(env_prefix="SESSIOND_", env_nested_delimiter="__")


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the SQLite database and admin key live.")
]
DbUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (postgresql+psycopg://...).")
]


def load_settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    env = EnvSettings(**values)
    return Settings.model_validate(env.model_dump())


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8750).")] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="One JSON line a request.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes on the port (default: the number of cores).", min=1),
    ] = None,
) -> None:
    """Apply migrations and serve the HTTP API."""
    settings = load_settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        access_log=access_log,
        workers=workers,
    )
    _setup_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    count = settings.resolved_workers()
    if count > 1 and not can_share_port():
        err.print("sessiond: this system cannot share a port between processes; 1 worker")
        count = 1
    # With workers, in a process of its own: the supervisor never imports the app.
    secret, key_file = (bootstrap_apart if count > 1 else bootstrap)(settings)
    where = settings.database_url and _redact(settings.database_url)
    err.print(f"sessiond: data directory {settings.data_dir}")
    err.print(f"sessiond: database {where or settings.resolved_database_url()}")
    if secret is not None:
        err.print("sessiond: created account 'default' and an admin API key (shown once):")
        print(secret, flush=True)
        err.print(f"sessiond: the key is saved in {key_file} (mode 0600)")
    if count == 1:
        err.print(f"sessiond: listening on http://{settings.host}:{settings.port}  (docs: /docs)")
        serve_app(settings)
        return
    supervisor = Supervisor(settings, count)
    port = supervisor.bind()
    err.print(
        f"sessiond: listening on http://{settings.host}:{port}  (docs: /docs), {count} workers"
    )
    raise typer.Exit(supervisor.run())


@app.command()
def migrate(database_url: DbUrl = None, data_dir: DataDir = None) -> None:
    """Apply database migrations (``serve`` also does this on start)."""
    settings = load_settings(database_url=database_url, data_dir=data_dir)
    engine = make_engine(settings.resolved_database_url(), role="cli")
    try:
        migrations.upgrade(engine)
        err.print(f"schema at revision {migrations.current_revision(engine)}")
    finally:
        engine.dispose()


def _run(settings: Settings, fn: Any, *args: Any) -> Any:
    from sessiond.app import open_database

    db = open_database(settings)
    try:
        return db.write_sync(fn, *args)
    except SessiondError as exc:
        _fail(exc.message)
    finally:
        db.close()


@app.command()
def gc(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Finish the purge of deleted sessions, then delete git objects no working tree,
    checkpoint or commit refers to (safe while the server runs; it also does both
    periodically)."""
    from sessiond.app import open_database
    from sessiond.files import gc as collector
    from sessiond.sessions import purge

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db = open_database(settings)
    try:
        purged = 0
        while done := db.write_sync(purge.purge_step, batch=settings.tuning.purge_batch):
            purged += done
        result = collector.collect_all(db, batch=settings.tuning.gc_delete_batch)
    finally:
        db.close()
    print(
        f"gc: {purged} row(s) of deleted sessions purged; {result.accounts} account(s), "
        f"{result.marked} object(s) kept, {result.deleted} deleted"
    )


Account = Annotated[str, typer.Option("--account", help="Account name.")]


@app.command("export")
def export_session(
    session_id: str,
    account: Account = "default",
    events: Annotated[bool, typer.Option("--events", help="Add the event log.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Write a session of ACCOUNT as an archive (docs/export.md) to stdout or --output,
    straight from the configured database (safe while servers run)."""
    import shutil

    from sessiond.app import open_database
    from sessiond.transfer import export

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db = open_database(settings)
    try:
        account_id = db.read_sync(lambda tx: auth.account_by_name(tx, account)["id"])
        archive = db.read_sync(
            export.build,
            account_id,
            session_id,
            events=events,
            spool_bytes=settings.tuning.snapshot_spool_bytes,
        )
    except SessiondError as exc:
        _fail(exc.message)
    finally:
        db.close()
    with archive:
        if output is None:
            shutil.copyfileobj(archive, sys.stdout.buffer, 1024 * 1024)
            sys.stdout.buffer.flush()
        else:
            with open(output, "wb") as fh:
                shutil.copyfileobj(archive, fh, 1024 * 1024)


@app.command("import")
def import_session(
    file: Annotated[str, typer.Argument(help="The archive; - reads stdin.")],
    account: Account = "default",
    workspace_id: Annotated[
        str | None, typer.Option("--workspace-id", help="Workspace of the new session.")
    ] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a new session of ACCOUNT from an archive, in the configured database;
    prints {"session": ...} as JSON. A bad archive writes nothing (exit status 1)."""
    import shutil
    import tempfile

    from sessiond.app import open_database
    from sessiond.sessions.render import render_session
    from sessiond.transfer import importer

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    limits = importer.Limits.of(settings)
    with tempfile.TemporaryFile() as spooled:
        source: IO[bytes]
        if file == "-":
            shutil.copyfileobj(sys.stdin.buffer, spooled, 1024 * 1024)
            spooled.seek(0)
            source = spooled
        else:
            try:
                source = open(file, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                _fail(f"cannot read {file}: {exc.strerror}")
        with source:
            size = source.seek(0, 2)
            source.seek(0)
            if size > limits.archive:
                _fail(f"{file} is over the {limits.archive}-byte import limit (import_max_bytes)")
            try:
                prepared = importer.prepare(source, limits)
            except SessiondError as exc:
                _fail(exc.message)
    db = open_database(settings)
    try:

        def write(tx: Any) -> dict[str, Any]:
            account_id = auth.account_by_name(tx, account)["id"]
            row = importer.apply(tx, account_id, prepared, workspace_id=workspace_id)
            return render_session(row, tx.now)

        session = db.write_sync(write)
    except SessiondError as exc:
        _fail(exc.message)
    finally:
        db.close()
        prepared.close()
    print(json.dumps({"session": session}))


@memory_app.command("reembed")
def memory_reembed(
    all_items: Annotated[
        bool, typer.Option("--all", help="Embed every item again, not only those without.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Embed now every memory item that has no vector of the configured model
    (SESSIOND_EMBEDDER / SESSIOND_EMBEDDING_MODEL); the server does it in the background
    after a model change. Safe while the server runs."""
    import asyncio

    from sessiond.app import open_database
    from sessiond.memory import service as memories
    from sessiond.memory.embedders import EmbedError
    from sessiond.memory.runtime import make_memory

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db = open_database(settings)
    try:
        memory = make_memory(settings, db)
        if memory.embedder is None:
            _fail(
                f"no embedder (SESSIOND_EMBEDDER={settings.embedder}): set builtin (pip "
                "install 'sessiond[memory]') or openai:<base url>"
            )
        if all_items:
            db.write_sync(memories.drop_vectors, memory.model)

        def progress(done: int) -> None:
            err.print(f"memory: {done} embedded…", highlight=False)

        async def run() -> int:
            await memory.prepare()
            return await memory.embed_backlog(progress=progress)

        try:
            done = asyncio.run(run())
        except EmbedError as e:
            _fail(f"embedding failed: {e}")
        finally:
            memory.close()
    finally:
        db.close()
    print(f"memory: {done} {'memory' if done == 1 else 'memories'} embedded with {memory.model}")


@accounts_app.command("create")
def accounts_create(name: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Create an account; prints its id alone on stdout."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    row = _run(settings, auth.create_account, name)
    print(row["id"])


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="Account name.")] = "default",
    role: Annotated[str, typer.Option(help="admin | write | read")] = "write",
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create an API key; prints the secret alone on stdout (shown once)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)

    def create(tx: Any) -> str:
        acct = auth.account_by_name(tx, account)
        _row, secret = auth.create_key(tx, acct["id"], name, role)
        return secret

    print(_run(settings, create))


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array (for scripts).")
    ] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """List API keys (never their secrets)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)

    def rows(tx: Any) -> list[dict[str, Any]]:
        account_id = auth.account_by_name(tx, account)["id"] if account else None
        return auth.list_keys(tx, account_id)

    found = _run(settings, rows)
    if as_json:
        out = [{**auth.render_key(r), "account": r["account_name"]} for r in found]
        print(json.dumps(out, indent=2))
        return
    table = Table("id", "account", "name", "role", "prefix", "created", "revoked")
    for r in found:
        table.add_row(
            r["id"],
            r["account_name"],
            r["name"],
            r["role"],
            r["prefix"],
            iso(r["created_at"]),
            iso(r["revoked_at"]) or "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Revoke an API key (requests with it answer 401)."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    _run(settings, auth.revoke_key, None, key_id)
    err.print(f"revoked {key_id}")


def _redact(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()
