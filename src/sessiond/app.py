"""``create_app(settings)``: builds everything; resources open and close in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import TextIO

from fastapi import FastAPI

from sessiond.acp.routes import router as acp_router
from sessiond.agents.registry import Registry
from sessiond.agents.routes import router as agents_router
from sessiond.agents.runner import Runner
from sessiond.annotations.routes import router as annotations_router
from sessiond.approvals.routes import router as approvals_router
from sessiond.auth.routes import router as auth_router
from sessiond.background import sweeper
from sessiond.cache.routes import router as cache_router
from sessiond.context import AppContext, AuthCache
from sessiond.conversation.routes import router as messages_router
from sessiond.db import leases, migrate
from sessiond.db.executor import Clock, Database, Tx
from sessiond.events.bus import EventBus
from sessiond.events.routes import router as events_router
from sessiond.files.git_routes import router as git_router
from sessiond.files.routes import router as files_router
from sessiond.http import errors, openapi
from sessiond.http.accesslog import AccessLog
from sessiond.http.metrics import Metrics
from sessiond.http.middleware import EdgeMiddleware
from sessiond.http.ops import router as ops_router
from sessiond.http.routing import RawBodyRoutes
from sessiond.ids import now_ms
from sessiond.memory.routes import router as memory_router
from sessiond.memory.runtime import make_memory
from sessiond.notes.routes import router as notes_router
from sessiond.sandbox.confine import Confinement, RLimits, resolve
from sessiond.sandbox.manager import Sandboxes
from sessiond.sandbox.routes import router as sandbox_router
from sessiond.sessions.routes import router as sessions_router
from sessiond.settings import Settings
from sessiond.summaries import service as summaries
from sessiond.summaries.routes import router as summaries_router
from sessiond.summaries.summarizer import Summarizer, make_summarizer
from sessiond.tasks.routes import router as tasks_router
from sessiond.transfer.routes import router as transfer_router
from sessiond.versions.compact_routes import router as compact_router
from sessiond.versions.routes import merge_router
from sessiond.versions.routes import router as versions_router
from sessiond.webhooks.dispatch import Dispatcher
from sessiond.webhooks.routes import router as webhooks_router
from sessiond.workspaces.routes import router as workspaces_router

VERSION = "0.1.0"
log = logging.getLogger("sessiond")


def confinement(settings: Settings) -> Confinement:
    """The sandbox confinement in force (logged). Raises SandboxUnavailable when
    ``SESSIOND_SANDBOX=bwrap`` and bubblewrap cannot work here."""
    chosen = resolve(
        settings.sandbox,
        network=settings.sandbox_network,
        uid_base=settings.sandbox_uid_base,
        rlimits=RLimits(
            cpu_seconds=settings.sandbox_cpu_seconds,
            memory_bytes=settings.sandbox_memory_bytes,
            file_bytes=settings.sandbox_file_bytes,
            processes=settings.sandbox_processes,
        ),
        hidden=[str(settings.data_dir.resolve())],
    )
    log.info("sandbox: %s (%s)", chosen.mode, chosen.reason)
    return chosen


def open_database(
    settings: Settings, *, run_migrations: bool = True, clock: Clock = now_ms
) -> Database:
    """Migrate (if asked) and start the executor for the configured database; ``clock``
    gives every transaction its ``now``."""
    db = Database(
        settings.resolved_database_url(),
        readers=settings.sqlite_readers,
        pg_workers=settings.pg_workers,
        clock=clock,
    )
    if run_migrations:
        migrate.upgrade(db.write_engine)
    db.start()
    return db


def _release_jobs(tx: Tx, owner: str) -> None:
    for job in ("sweeper", "summaries"):
        leases.release(tx, job, owner)


def create_app(
    settings: Settings,
    *,
    run_migrations: bool = True,
    access_stream: TextIO | None = None,
    summarizer: Summarizer | None = None,
    tune_gc: bool = False,
    clock: Clock | None = None,
) -> FastAPI:
    """The app. ``access_stream`` receives the access log (default: stderr);
    ``summarizer`` replaces the default, deterministic one (see ``summaries.summarizer``);
    ``tune_gc`` freezes start-up objects out of the garbage collector (``sessiond serve``
    does; an embedder or a test process that builds many apps should not); ``clock``
    (milliseconds) replaces the wall clock as the time of every transaction."""
    metrics = Metrics(settings.resolved_instance_id())
    summarize = summarizer or make_summarizer(settings)
    access_log = AccessLog(access_stream) if settings.access_log else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await asyncio.to_thread(
            open_database, settings, run_migrations=run_migrations, clock=clock or now_ms
        )
        bus = EventBus(
            db,
            poll_seconds=settings.event_poll_seconds,
            # Only workers watch: with one process, every commit is this one's (and the
            # CLI's rare ones wait for the poll); the watch cost ~5 % of the loop.
            watch_seconds=settings.event_watch_seconds if settings.worker is not None else 0,
            batch=settings.tuning.event_pump_batch,
            queue_size=settings.tuning.subscriber_queue,
            on_publish=metrics.events_published.inc,
        )
        await bus.start()
        if access_log is not None:
            access_log.start()
        if tune_gc:
            # Start-up objects (routes, models, compiled statements) never die: keep them
            # out of the collector's scans, and collect young objects less eagerly (fewer
            # pauses). A process-wide choice: only for a process that runs one app.
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 20)
        app.state.ctx = AppContext(
            settings=settings,
            db=db,
            bus=bus,
            metrics=metrics,
            auth_cache=AuthCache(settings.auth_cache_seconds),
            summarizer=summarize,
        )
        registry = Registry(settings.resolved_agents_file())
        sandboxes = Sandboxes(settings, db, confinement(settings))
        runner = Runner(settings, db, bus, registry, sandboxes)
        ctx = app.state.ctx
        ctx.registry, ctx.runner, ctx.sandboxes = registry, runner, sandboxes
        await sandboxes.start()
        await runner.start()
        webhooks = ctx.webhooks = Dispatcher(settings, db)
        bus.listeners.append(webhooks.on_event)
        await webhooks.start()
        memory = ctx.memory = await asyncio.to_thread(make_memory, settings, db)
        bus.listeners.append(memory.on_event)
        await memory.start()
        sweeps: list[asyncio.Task[None]] = []
        if interval := settings.sweep_interval_seconds:  # None or 0: no background sweep
            sweeps.append(
                asyncio.create_task(
                    sweeper(
                        db,
                        interval=interval,
                        idempotency_ttl=settings.idempotency_ttl_seconds,
                        gc_every=settings.gc_every_sweeps,
                        tuning=settings.tuning,
                        delivery_retention_ms=settings.webhook_retention_seconds * 1000,
                        owner=settings.resolved_instance_id(),
                    ),
                    name="sweeper",
                )
            )
            sweeps.append(
                asyncio.create_task(
                    summaries.sweep_loop(
                        db,
                        summarize,
                        interval=interval,
                        scan=settings.summary_scan_messages,
                        owner=settings.resolved_instance_id(),
                    ),
                    name="summaries",
                )
            )
        try:
            yield
        finally:
            jobs = [*sweeps, *app.state.ctx.background]
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            if sweeps:
                with contextlib.suppress(Exception):  # lets another worker take them at once
                    await db.write(_release_jobs, settings.resolved_instance_id())
            await memory.stop()
            await webhooks.stop()
            await runner.stop()
            await sandboxes.stop()
            await bus.stop()
            if access_log is not None:
                await access_log.stop()
            await asyncio.to_thread(db.close)

    app = FastAPI(
        title="sessiond",
        version=VERSION,
        summary="A self-hosted session server for AI agents.",
        lifespan=lifespan,
        # Our own metrics and access log cover this; FastAPI's OpenTelemetry layer costs
        # a noticeable share of every request even with no provider configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    openapi.install(app)
    for router in (
        ops_router,
        auth_router,
        workspaces_router,
        sessions_router,
        messages_router,
        tasks_router,
        notes_router,
        annotations_router,
        approvals_router,
        cache_router,
        summaries_router,
        files_router,
        versions_router,
        compact_router,
        merge_router,
        git_router,
        events_router,
        agents_router,
        sandbox_router,
        acp_router,
        webhooks_router,
        memory_router,
        transfer_router,
    ):
        # The routes themselves, not ``include_router``: FastAPI (0.16x) includes a router
        # as a lazy wrapper that rebuilds every route's fields (a pydantic adapter per
        # response code) on an app's first requests — ~0.3 s per app. The routes are built
        # once, at import, with their router's settings; nothing here adds a prefix,
        # dependency or override, so they serve every app as they are.
        app.router.routes.extend(router.routes)
    raw_routes = RawBodyRoutes(app.routes)
    app.add_middleware(
        EdgeMiddleware,
        metrics=metrics,
        body_limit=settings.limits.body_bytes,
        raw_body_limit=settings.limits.file_bytes,
        is_raw=raw_routes.matches,
        own_limit=raw_routes.own_limit,
        access_log=access_log,
    )
    return app
