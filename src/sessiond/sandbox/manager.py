"""The sandboxes of one instance: ready directories, syncs, hibernation, the sweeper.

``Sandboxes`` is the only code that writes, syncs or removes a session's directory.
Calls for one session are serialized by a per-session lock, so that a turn end, an exec
and a hibernation never interleave. Users of a directory (the agents runner) register a
``stopper``: it is awaited before a directory is hibernated or removed. A session in
``use`` (a running turn or exec) is never hibernated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond.db.executor import Database, Tx
from sessiond.errors import SessionBusy
from sessiond.sandbox import directory, homes, state
from sessiond.sandbox.confine import Confinement, install_prefixes
from sessiond.settings import Settings

log = logging.getLogger("sessiond.sandbox")

Stopper = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Layout:
    """A sandbox on disk: ``work`` (the working tree, synced) and ``home`` (the private
    HOME of what runs there, never synced) under ``root``."""

    root: Path
    uid: int | None

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def env(self) -> dict[str, str]:
        """HOME, the XDG dirs and TMPDIR of processes run here."""
        home = str(self.home)
        return {
            "HOME": home,
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_STATE_HOME": f"{home}/.local/state",
            "XDG_CACHE_HOME": f"{home}/.cache",
            "TMPDIR": "/tmp",
        }


@dataclass
class Synced:
    changed: list[str]
    skipped: list[dict[str, str]]


class Sandboxes:
    def __init__(self, settings: Settings, db: Database, confinement: Confinement) -> None:
        self.settings = settings
        self.db = db
        self.confinement = confinement
        self.host = settings.resolved_instance_id()
        self.base = settings.sandboxes_dir()
        self.stoppers: list[Stopper] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_use: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- layout --------------------------------------------------------------------------

    def layout(self, session_id: str) -> Layout:
        return Layout(self.base / session_id, self.confinement.uid_for(session_id))

    def command(
        self, layout: Layout, argv: list[str], *, readable: list[Path], cwd: Path | None = None
    ) -> list[str]:
        """``argv`` confined to the sandbox (``readable``: extra read-only paths)."""
        return self.confinement.command(
            argv,
            session_id=layout.root.name,
            writable=[layout.work, layout.home],
            readable=readable,
            chdir=cwd or layout.work,
        )

    def agent_paths(self, executable: str, given: str, ro_paths: list[str]) -> list[Path]:
        """What an agent needs to read inside: its installation and its ``ro_paths``."""
        return [*install_prefixes(executable, given), *(Path(p) for p in ro_paths)]

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """Make the rows true to this disk: a sandbox recorded here whose directory is
        gone is ``hibernated`` (its files are in the database); then start the sweeper."""
        for account_id, session_id, box_state, status in await self.db.read(
            state.hosted, self.host
        ):
            layout = self.layout(session_id)
            if status == "active" and box_state == "active" and layout.work.is_dir():
                continue
            # Closed meanwhile, or cut short while written, saved or removed: what the
            # last sync saved is in the working tree; the rest is not trusted.
            await asyncio.to_thread(directory.remove, layout.root)
            reason = "closed" if status != "active" else "lost"
            await self.db.write(state.hibernated, account_id, session_id, reason=reason)
        self._sweeper = asyncio.create_task(self._sweep(), name="sandbox-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper

    # -- use -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self, account_id: str, session_id: str, *, touch: bool = True
    ) -> AsyncIterator[Layout]:
        """A ready directory for a turn or an exec (restored or written first if needed);
        it is not hibernated until the block ends, and its idle clock restarts then
        (``touch=False``: the caller restarts it itself, with ``sync(touch=True)``)."""
        self._in_use[session_id] = self._in_use.get(session_id, 0) + 1
        try:
            layout = await self.ensure(account_id, session_id)
            yield layout
        finally:
            left = self._in_use[session_id] - 1
            if left:
                self._in_use[session_id] = left
            else:
                del self._in_use[session_id]
            if touch:
                with contextlib.suppress(Exception):
                    await self.db.write(state.used, account_id, session_id)

    def in_use(self, session_id: str) -> bool:
        return session_id in self._in_use

    async def ensure(self, account_id: str, session_id: str) -> Layout:
        """The session's directory, ready on this instance. Raises SessionNotActive."""
        layout = self.layout(session_id)
        async with self._lock(session_id):
            on_disk = layout.work.is_dir()
            if await self.db.read(
                state.ready_here, account_id, session_id, self.host, on_disk=on_disk
            ):
                return layout
            kind = await self.db.write(
                state.begin, account_id, session_id, self.host, on_disk=on_disk
            )
            if kind == state.READY:
                return layout
            try:
                entries = await self.db.read(directory.manifest, account_id, session_id)
                data = await self.db.read(
                    directory.contents, account_id, [e[1] for e in entries.values()]
                )
                home = await self.db.read(homes.load, account_id, session_id)
                await asyncio.to_thread(self._write, layout, entries, data, home)
            except Exception as e:
                log.exception("sandbox of %s could not be written", session_id)
                await self.db.write(
                    state.failed, account_id, session_id, f"{type(e).__name__}: {e}"
                )
                raise
            await self.db.write(state.ready, account_id, session_id, self.host, kind)
            return layout

    def _write(
        self,
        layout: Layout,
        entries: directory.Manifest,
        data: dict[str, bytes],
        home: bytes | None,
    ) -> None:
        directory.remove(layout.root)
        layout.root.mkdir(parents=True)
        os.chmod(layout.root, 0o755)
        directory.materialize(layout.work, entries, data, layout.uid)
        layout.home.mkdir()
        if layout.uid is not None:
            os.chown(layout.home, layout.uid, layout.uid)
        if home is not None:
            try:
                homes.unpack(home, layout.home, layout.uid)
            except Exception:
                log.exception("sandbox of %s: its kept HOME could not be restored", layout.root)

    async def sync(
        self, account_id: str, session_id: str, reason: str, *, touch: bool = False
    ) -> Synced:
        """Save what the directory holds into the working tree (``files.changed`` with
        ``reason``); what may not be saved is in ``skipped``. Nothing when there is no
        directory here. ``touch``: restart the idle clock in the same transaction."""
        async with self._lock(session_id):
            return await self._sync(account_id, session_id, reason, touch=touch)

    async def _sync(
        self, account_id: str, session_id: str, reason: str, *, touch: bool = False
    ) -> Synced:
        work = self.layout(session_id).work
        if not work.is_dir():
            return Synced([], [])
        base = await self.db.read(directory.manifest, account_id, session_id)
        found = await asyncio.to_thread(directory.scan, work, base, self.settings.limits)

        def save(tx: Tx) -> list[str]:
            changed = directory.save(tx, account_id, session_id, found, reason)
            if touch:
                state.used(tx, account_id, session_id)
            return changed

        changed = await self.db.write(save)
        return Synced(changed, found.skipped)

    # -- hibernate and remove ------------------------------------------------------------

    async def hibernate(self, account_id: str, session_id: str, *, reason: str) -> bool:
        """Stop what runs there, save the directory, remove it: ``hibernated``. False when
        it was not active here. Raises SessionBusy when a turn or an exec uses it."""
        if self.in_use(session_id):
            raise SessionBusy("the sandbox is in use by a turn or an exec")
        async with self._lock(session_id):
            if self.in_use(session_id):
                raise SessionBusy("the sandbox is in use by a turn or an exec")
            if not await self.db.write(state.hibernating, account_id, session_id):
                return False
            await self._stop_users(session_id)
            synced = Synced([], [])
            try:
                synced = await self._sync(account_id, session_id, "sandbox")
            except Exception:
                log.exception("sandbox of %s: not saved before hibernation", session_id)
            home = await self.keep_home(account_id, session_id)
            await asyncio.to_thread(directory.remove, self.layout(session_id).root)
            await self.db.write(
                state.hibernated,
                account_id,
                session_id,
                reason=reason,
                changed=synced.changed,
                skipped=synced.skipped,
                home=home,
            )
            return True

    async def keep_home(self, account_id: str, session_id: str) -> str:
        """Store the HOME for the next restore (here or on another instance): ``kept``,
        ``empty`` or why it was not."""
        limit = self.settings.sandbox_home_bytes
        if not self.layout(session_id).work.is_dir():
            return "absent"  # not here: whatever was kept stays
        try:
            data = await asyncio.to_thread(homes.pack, self.layout(session_id).home, limit)
        except homes.TooLarge as e:
            data, outcome = None, f"not kept: {e}"
        except OSError as e:
            data, outcome = None, f"not kept: {e}"
        else:
            outcome = "kept" if data is not None else "empty"
        await self.db.write(homes.save, account_id, session_id, data)
        return outcome

    async def discard(self, session_id: str, account_id: str | None = None) -> None:
        """The session was closed, archived or deleted: stop what runs there and remove
        the directory (nothing saved: the session takes no writes any more)."""
        async with self._lock(session_id):
            await self._stop_users(session_id)
            await asyncio.to_thread(directory.remove, self.layout(session_id).root)
            if account_id is not None:
                with contextlib.suppress(Exception):
                    await self.db.write(state.hibernated, account_id, session_id, reason="closed")
        self._locks.pop(session_id, None)

    async def _stop_users(self, session_id: str) -> None:
        for stop in self.stoppers:
            try:
                await stop(session_id)
            except Exception:
                log.exception("stopping the users of the sandbox of %s failed", session_id)

    # -- the sweeper ---------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sandbox_sweep_seconds)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sandbox sweep failed; will retry")

    async def sweep(self) -> dict[str, int]:
        """Hibernate idle sandboxes of this instance; remove directories of sessions that
        are gone or not active. Returns what it did."""
        hibernated = removed = 0
        now = self.db.clock()
        for account_id, session_id in await self.db.read(state.due, self.host, now, 100):
            if self.in_use(session_id):
                continue
            with contextlib.suppress(SessionBusy):
                if await self.hibernate(account_id, session_id, reason="idle"):
                    hibernated += 1
        if self.base.is_dir():
            names = [p.name for p in self.base.iterdir()]
            statuses = await self.db.read(state.statuses, names)
            for name in names:
                found = statuses.get(name)
                if (found is None or found[0] != "active") and not self.in_use(name):
                    await self.discard(name, found[1] if found else None)
                    removed += 1
        return {"hibernated": hibernated, "removed": removed}

    def describe(self) -> dict[str, Any]:
        return self.confinement.describe()
