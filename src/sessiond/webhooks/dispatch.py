"""The webhook dispatcher: one per instance (docs/design/webhooks.md).

A loop claims webhooks with work (``service.claim``, a lease per webhook) and runs one
worker per claimed webhook, at most ``webhook_concurrency`` at once. A worker fans new
events out into deliveries and sends the oldest pending one, again and again, until
nothing is due; then it releases the lease. The loop wakes on every published event
(the bus: this instance's commits and, on PostgreSQL, other instances'), when a retry
falls due, and every ``webhook_poll_seconds`` in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import httpx

from sessiond.db.executor import Database
from sessiond.settings import Settings
from sessiond.webhooks import service, signing
from sessiond.webhooks.targets import TargetRefused, check_target, needs_lookup

log = logging.getLogger("sessiond.webhooks")

FAN_OUT_BATCH = 500
# Deliveries read per step (bodies included: a message event may be ~1 MiB, so a step
# holds at most this many), and the longest a step sends before recording its outcomes
# (a crash in between sends them again: at least once).
SEND_BATCH = 25
BATCH_SECONDS = 2.0
CLAIM_PAUSE_SECONDS = 0.02
STOP_SECONDS = 5.0
ERROR_CHARS = 500


class Dispatcher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.owner = settings.resolved_instance_id()
        self.lease_ms = int(settings.webhook_lease_seconds * 1000)
        self.policy = service.Policy(
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            deactivate_after=settings.webhook_deactivate_after,
        )
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # No active webhook anywhere (as of the last look): events do not wake the loop
        # (every committed event used to cost two reads); the poll still looks every
        # ``webhook_poll_seconds``, and ``wake()`` (a webhook created here) at once.
        self._none = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        # The flag as well as the cancel: on Python 3.11 ``wait_for`` can swallow a
        # cancellation that arrives as its inner wait completes.
        self._closed = True
        self._wake.set()
        tasks = [t for t in (self._loop_task, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            for task in stuck:
                log.warning("webhooks: %s did not stop within %s s", task.get_name(), STOP_SECONDS)
        if self._timer is not None:
            self._timer.cancel()
        if self._client is not None:
            await self._client.aclose()

    def on_event(self, event: dict[str, Any]) -> None:
        """Bus listener: a committed event may be one a webhook wants."""
        if not self._none:
            self._wake.set()

    def wake(self) -> None:
        """Look for work now (a webhook created, a delivery retried, a webhook resumed)."""
        self._none = False
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_poll_seconds):
                    await self._wake.wait()
            if self._closed:
                return
            self._wake.clear()
            try:
                await self._claim()
                # A burst of events wakes the loop once per pass, not once per event.
                await asyncio.sleep(CLAIM_PAUSE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhooks: claiming work failed; will retry")

    async def _claim(self) -> None:
        free = self.settings.webhook_concurrency - len(self._workers)
        if free <= 0:
            return
        busy = list(self._workers)
        # A read first: with nothing to do (the usual case) the writer is not involved.
        if not await self.db.read(service.claimable, self.owner, busy):
            self._none = not busy and not await self.db.read(service.any_active)
            if not self._none:
                await self._schedule()
            return
        claimed = await self.db.write(service.claim, self.owner, self.lease_ms, free, busy)
        for webhook_id in claimed:
            task = asyncio.create_task(self._work(webhook_id), name=f"webhook {webhook_id}")
            self._workers[webhook_id] = task
            task.add_done_callback(functools.partial(self._done, webhook_id))
        if not claimed:
            await self._schedule()

    def _done(self, webhook_id: str, _task: asyncio.Task[None]) -> None:
        self._workers.pop(webhook_id, None)
        self._wake.set()  # a slot is free, and the webhook may have more work

    async def _schedule(self) -> None:
        """Wake when the soonest retry falls due (if sooner than the next poll)."""
        due = await self.db.read(service.next_due)
        if due is None:
            return
        delay = max(0.0, due / 1000 - self.db.clock() / 1000)
        if delay < self.settings.webhook_poll_seconds:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)

    # -- one webhook ---------------------------------------------------------------------

    async def _work(self, webhook_id: str) -> None:
        try:
            while not self._closed:
                heads, behind = await self.db.read(service.heads, webhook_id, SEND_BATCH)
                if behind:
                    read = await self.db.write(
                        service.fan_out, webhook_id, self.owner, self.lease_ms, FAN_OUT_BATCH
                    )
                    if read is None:
                        return  # lease lost, webhook inactive or deleted
                    if not heads:
                        continue
                outcomes = await self._send_in_order(heads)
                if not outcomes:
                    break  # nothing due now: claimed again when it is
                kept = await self.db.write(
                    service.record, webhook_id, self.owner, self.lease_ms, self.policy, outcomes
                )
                if not kept:
                    return  # lease lost: the next holder sends what was not recorded
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s: sending failed; will retry", webhook_id)
        with contextlib.suppress(Exception):
            await self.db.write(service.release, webhook_id, self.owner)

    async def _send_in_order(self, heads: list[service.Head]) -> list[tuple[str, service.Outcome]]:
        """Send the due deliveries one after the other, stopping at the first failure (it
        holds back the later ones) and after ``BATCH_SECONDS`` (the outcomes are recorded
        in one transaction, well within the lease)."""
        outcomes: list[tuple[str, service.Outcome]] = []
        started = time.monotonic()
        for head in heads:
            if self._closed or head.due_at > self.db.clock():
                break
            outcome = await self._send(head)
            outcomes.append((head.delivery_id, outcome))
            if not outcome.ok or time.monotonic() - started > BATCH_SECONDS:
                break
        return outcomes

    async def _send(self, head: service.Head) -> service.Outcome:
        """One attempt: POST the delivery's body, signed. A 2xx in time is success."""
        body = head.body.encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Sessiond-Event-Id": str(head.event_id),
            "Sessiond-Event-Type": head.event_type,
            "Sessiond-Timestamp": timestamp,
            "Sessiond-Signature": signing.sign(head.secret, timestamp, body),
            "Sessiond-Delivery-Id": head.delivery_id,
        }
        timeout = self.settings.webhook_timeout_seconds
        try:
            private = self.settings.webhook_allow_private
            if needs_lookup(head.url):  # DNS: off the event loop
                await asyncio.to_thread(check_target, head.url, allow_private=private)
            else:
                check_target(head.url, allow_private=private)
            async with asyncio.timeout(timeout):
                status, start = await self._post(head.url, body, headers)
        except TargetRefused as e:
            return service.Outcome(False, None, f"target refused: {e}")
        except TimeoutError:
            return service.Outcome(False, None, f"no answer within {timeout:g} s")
        except httpx.HTTPError as e:
            return service.Outcome(False, None, f"{type(e).__name__}: {e}"[:ERROR_CHARS])
        if 200 <= status < 300:
            return service.Outcome(True, status)
        text = start.decode("utf-8", errors="replace").strip()
        return service.Outcome(False, status, f"HTTP {status}" + (f": {text}" if text else ""))

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client, made at the first send (its TLS context costs tens of
        milliseconds: not paid by a server that has no webhook)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                follow_redirects=False,
                headers={"User-Agent": "sessiond-webhooks"},
                limits=httpx.Limits(max_connections=self.settings.webhook_concurrency * 2),
            )
        return self._client

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The answer's status and the start of its body (the rest is not read)."""
        async with self._http().stream("POST", url, content=body, headers=headers) as response:
            start = b""
            if not 200 <= response.status_code < 300:
                async for chunk in response.aiter_bytes():
                    start += chunk
                    if len(start) >= ERROR_CHARS:
                        break
            return response.status_code, start[:ERROR_CHARS]
