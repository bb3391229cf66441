"""Webhooks against a real HTTP receiver on loopback (tests/support/receiver.py): signed
deliveries from the event store, in id order, retried with backoff, timed out, logged,
retried by hand, deactivated; the URL rules; a server killed with deliveries pending."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.events.store import EventFilter, list_events
from sessiond.settings import Settings
from sessiond.webhooks import signing
from tests.support.api import Api, Tenant
from tests.support.receiver import Received, receiver
from tests.support.servers import start_server, stop_server

QUICK = {
    "webhook_retry_base_seconds": 0.05,
    "webhook_poll_seconds": 0.1,
    "webhook_timeout_seconds": 1.0,
}
pytestmark = pytest.mark.settings(**QUICK)


@pytest.fixture
def admin(client: TestClient, tenant: Tenant) -> Api:
    return tenant.api(client, "admin")


def hook(admin: Api, url: str, **body: Any) -> tuple[dict[str, Any], str]:
    r = admin.post("/v1/webhooks", {"url": url, "types": ["*"], **body}, expect=201).json()
    return r["webhook"], r["secret"]


def deliveries(admin: Api, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = admin.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 200, **params})
    return r.json()["deliveries"]  # type: ignore[no-any-return]


def account_events(client: TestClient, tenant: Tenant, prefix: str) -> list[dict[str, Any]]:
    """The account's stored events of types under ``prefix`` (no session: no polling
    route lists them; the account stream would)."""
    f = EventFilter(tenant.account_id, types=(prefix,))
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    return db.read_sync(list_events, f, after=0, limit=1000)  # type: ignore[no-any-return]


def wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- registration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "event_type", "expected"),
    [
        (["*"], "anything.at.all", True),
        (["session."], "session.created", True),
        (["session.*"], "session.created", True),
        (["session."], "sessions.created", False),
        (["session"], "session", True),
        (["session"], "session.created", False),
        (["session"], "sessions.created", False),
        (["session.created"], "session.created", True),
        (["session.created"], "session.created.more", False),
        (["session.create"], "session.created", False),
        (["turn.completed", "message."], "message.updated", True),
        (["turn.completed", "message."], "turn.failed", False),
    ],
)
def test_type_patterns(types: list[str], event_type: str, expected: bool) -> None:
    """The rule of the event streams' ``types``: exact types, or prefixes ending in ``.``
    or ``*``."""
    wanted = EventFilter("acc", types=tuple(types))
    event = {"account_id": "acc", "session_id": None, "workspace_id": None, "type": event_type}
    assert wanted.matches(event) is expected


def test_create_shows_the_secret_once_and_reads_never(
    client: TestClient, tenant: Tenant, admin: Api, api: Api
) -> None:
    created = admin.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/x", "types": ["session."]}, expect=201
    ).json()
    webhook, secret = created["webhook"], created["secret"]
    assert webhook["id"].startswith("whk_") and secret.startswith("whsec_")
    assert webhook["active"] is True and webhook["types"] == ["session."]
    assert webhook["workspaceId"] is None and webhook["deactivatedReason"] is None
    got = admin.get(f"/v1/webhooks/{webhook['id']}", expect=200).json()["webhook"]
    assert got == webhook and "secret" not in got
    listed = admin.get("/v1/webhooks", expect=200).json()
    assert listed["webhooks"] == [webhook] and listed["nextCursor"] is None
    given = admin.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/y", "types": ["*"], "secret": "s" * 20},
        expect=201,
    ).json()  # fmt: skip
    assert given["secret"] == "s" * 20
    # Only admin keys manage webhooks.
    api.get("/v1/webhooks", expect=403, code="forbidden")
    api.post("/v1/webhooks", {"url": "http://127.0.0.1:9/", "types": ["*"]}, expect=403)
    events = account_events(client, tenant, "webhook.")
    assert [e["type"] for e in events] == ["webhook.created", "webhook.created"]
    assert all(secret not in str(e["data"]) and "s" * 20 not in str(e["data"]) for e in events)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://[fe80::1]/x"}, "url"),
        ({"url": "http://[::ffff:169.254.169.254]/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": "http://127.0.0.1:99999/x"}, "url"),
        ({"types": []}, "types"),
        ({"types": [""]}, "types"),
        ({"types": ["a b"]}, "types"),
        ({"types": "session."}, "types"),
        ({"secret": "short"}, "secret"),
        ({"active": "yes"}, "active"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_bodies_are_422_and_write_nothing(admin: Api, body: dict[str, Any], field: str) -> None:
    full = {"url": "http://127.0.0.1:9/x", "types": ["*"], **body}
    r = admin.post("/v1/webhooks", full, expect=422, code="validation_error")
    assert field in [e["field"] for e in r.json()["details"]["errors"]]
    assert admin.get("/v1/webhooks").json()["webhooks"] == []


@pytest.mark.settings(**QUICK, webhook_allow_private=False)
def test_private_targets_can_be_refused(admin: Api) -> None:
    for url in ("http://127.0.0.1/x", "http://10.1.2.3/x", "http://[::1]/x"):
        r = admin.post("/v1/webhooks", {"url": url, "types": ["*"]}, expect=422)
        assert "private or loopback" in r.json()["details"]["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://169.254.169.254/"}, "url"),
        ({"url": None}, "url"),
        ({"types": []}, "types"),
        ({"types": ["a b"]}, "types"),
        ({"types": None}, "types"),
        ({"secret": "short"}, "secret"),
        ({"active": None}, "active"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_patches_are_422_and_change_nothing(
    admin: Api, body: dict[str, Any], field: str
) -> None:
    webhook, _ = hook(admin, "http://127.0.0.1:9/x")
    base = f"/v1/webhooks/{webhook['id']}"
    r = admin.patch(base, body, expect=422, code="validation_error")
    assert field in [e["field"] for e in r.json()["details"]["errors"]]
    assert admin.get(base).json()["webhook"] == webhook


@pytest.mark.settings(**QUICK, webhooks_per_account=2)
def test_an_account_has_at_most_the_configured_webhooks(admin: Api) -> None:
    hook(admin, "http://127.0.0.1:9/a")
    second, _ = hook(admin, "http://127.0.0.1:9/b")
    admin.post("/v1/webhooks", {"url": "http://127.0.0.1:9/c", "types": ["*"]}, expect=409,
               code="conflict")  # fmt: skip
    admin.delete(f"/v1/webhooks/{second['id']}", expect=204)
    hook(admin, "http://127.0.0.1:9/c")


def test_another_accounts_webhook_is_404(client: TestClient, admin: Api, other: Tenant) -> None:
    webhook, _ = hook(admin, "http://127.0.0.1:9/x")
    theirs = other.api(client, "admin")
    base = f"/v1/webhooks/{webhook['id']}"
    theirs.get(base, expect=404, code="not_found")
    theirs.patch(base, {"active": False}, expect=404, code="not_found")
    theirs.delete(base, expect=404, code="not_found")
    theirs.get(base + "/deliveries", expect=404, code="not_found")
    # A delivery is found only through its own webhook.
    with receiver() as rec:
        mine, _ = hook(admin, rec.url, types=["session.created"])
        admin.session()
        made = wait_until(lambda: deliveries(admin, mine["id"]))
        wrong = f"{base}/deliveries/{made[0]['id']}"
        admin.get(wrong, expect=404, code="not_found")
        admin.post(wrong + "/retry", expect=404, code="not_found")
        theirs.post(f"/v1/webhooks/{mine['id']}/deliveries/{made[0]['id']}/retry", expect=404)
    assert theirs.get("/v1/webhooks").json()["webhooks"] == []
    admin.post("/v1/webhooks", {"url": "http://127.0.0.1:9/", "types": ["*"],
               "workspaceId": "nope"}, expect=404, code="not_found")  # fmt: skip


# -- delivery ------------------------------------------------------------------------------


def test_events_arrive_signed_in_order_as_stored(admin: Api, api: Api) -> None:
    with receiver() as rec:
        webhook, secret = hook(admin, rec.url)
        sid = api.session(title="one")["id"]
        api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "parts": [
            {"type": "text", "text": "hi"}]}, expect=201)  # fmt: skip
        api.patch(f"/v1/sessions/{sid}", {"title": "two"}, expect=200)
        stored = api.get(f"/v1/sessions/{sid}/events").json()["events"]
        got = rec.wait_for(len(stored))
        assert [r.event for r in got] == stored  # the event JSON, as the API renders it
        assert rec.event_ids() == sorted(rec.event_ids())
        for r in got:
            assert r.headers["content-type"] == "application/json"
            assert r.headers["sessiond-event-id"] == str(r.event["id"])
            assert r.headers["sessiond-event-type"] == r.event["type"]
            ts = r.headers["sessiond-timestamp"]
            assert abs(int(ts) - time.time()) < 60
            assert signing.verify(secret, ts, r.body, r.headers["sessiond-signature"])
            assert not signing.verify(
                "another secret!!", ts, r.body, r.headers["sessiond-signature"]
            )
            assert not signing.verify(secret, ts, r.body + b" ", r.headers["sessiond-signature"])
        # The outcomes are recorded after the POSTs they describe: wait for them.
        log = wait_until(
            lambda: (
                (x := deliveries(admin, webhook["id"]))
                and {d["status"] for d in x} == {"succeeded"}
                and x
            )
        )
        assert [d["eventId"] for d in log] == [e["id"] for e in stored]
        assert {(d["attempts"], d["lastStatusCode"], d["nextAttemptAt"]) for d in log} == {
            (1, 200, None)
        }


def test_types_and_workspace_filter(admin: Api, api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    with receiver() as rec:
        messages, _ = hook(admin, rec.url, types=["message."])
        team, _ = hook(admin, rec.url, types=["session.created"], workspaceId="team-a")
        sid = api.session()["id"]
        api.session(workspaceId="team-a")
        api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "parts": [
            {"type": "text", "text": "hi"}]}, expect=201)  # fmt: skip
        wait_until(lambda: len(rec.requests) >= 2)
        time.sleep(0.5)  # nothing else may come
        by_hook = {
            messages["id"]: [d["eventType"] for d in deliveries(admin, messages["id"])],
            team["id"]: [d["eventType"] for d in deliveries(admin, team["id"])],
        }
        assert by_hook[messages["id"]] and all(
            t.startswith("message.") for t in by_hook[messages["id"]]
        )
        assert by_hook[team["id"]] == ["session.created"]
        assert len(rec.requests) == len(by_hook[messages["id"]]) + 1


def test_a_receiver_that_fails_three_times_gets_the_event_four_times(admin: Api, api: Api) -> None:
    with receiver() as rec:
        rec.behaviour = lambda n, r: 500 if n <= 3 else 200
        webhook, _ = hook(admin, rec.url, types=["session.created"])
        api.session()
        got = rec.wait_for(4)
        assert len({r.headers["sessiond-event-id"] for r in got}) == 1
        assert len({r.body for r in got}) == 1
        # Backoff: each wait at least ~0.05 · 2^(n-1) s minus jitter.
        gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
        assert gaps[0] >= 0.03 and gaps[1] >= 0.07 and gaps[2] >= 0.15, gaps
        log = wait_until(
            lambda: [d for d in deliveries(admin, webhook["id"]) if d["status"] == "succeeded"]
        )
        assert log[0]["attempts"] == 4 and log[0]["lastStatusCode"] == 200
        time.sleep(0.3)
        assert len(rec.requests) == 4


def test_a_hanging_receiver_is_timed_out_and_retried(admin: Api, api: Api) -> None:
    with receiver() as rec:
        rec.behaviour = lambda n, r: ("hang", 5.0) if n == 1 else 200
        webhook, _ = hook(admin, rec.url, types=["session.created"])
        started = time.monotonic()
        api.session()
        rec.wait_for(2, timeout=10)
        assert time.monotonic() - started < 4  # the 1 s timeout, not the 5 s hang
        log = wait_until(
            lambda: [d for d in deliveries(admin, webhook["id"]) if d["status"] == "succeeded"]
        )
        assert log[0]["attempts"] == 2


@pytest.mark.settings(**QUICK, webhook_max_attempts=3)
def test_a_failing_event_holds_back_later_ones_until_it_fails_for_good(
    admin: Api, api: Api
) -> None:
    with receiver() as rec:
        first_id: list[str] = []

        def behaviour(n: int, r: Received) -> int:
            if not first_id:
                first_id.append(r.headers["sessiond-event-id"])
            return 503 if r.headers["sessiond-event-id"] == first_id[0] else 200

        rec.behaviour = behaviour
        webhook, _ = hook(admin, rec.url, types=["session.created"])
        for _ in range(3):
            api.session()
        got = rec.wait_for(5)
        ids = [int(r.headers["sessiond-event-id"]) for r in got]
        assert ids[:3] == [ids[0]] * 3 and ids[3] < ids[4], ids
        log = wait_until(
            lambda: (
                (x := deliveries(admin, webhook["id"]))
                and all(d["status"] != "pending" for d in x)
                and x
            )
        )
        assert [d["status"] for d in log] == ["failed", "succeeded", "succeeded"]
        failed = log[0]
        assert failed["attempts"] == 3 and failed["lastStatusCode"] == 503
        assert "HTTP 503" in failed["lastError"] and "receiver says no" in failed["lastError"]
        # Manual retry: pending again, sent again once the receiver accepts it.
        rec.behaviour = lambda n, r: 200
        base = f"/v1/webhooks/{webhook['id']}/deliveries/{failed['id']}"
        again = admin.post(base + "/retry", expect=200).json()["delivery"]
        assert again["status"] == "pending" and again["attempts"] == 0
        done = wait_until(
            lambda: (x := admin.get(base).json()["delivery"])["status"] == "succeeded" and x
        )
        assert done["attempts"] == 1 and done["lastError"] is None
        assert deliveries(admin, webhook["id"], status="failed") == []
        admin.get(base[: base.rindex("/") + 1] + "whd_nope", expect=404, code="not_found")
        admin.get(f"/v1/webhooks/{webhook['id']}/deliveries", params={"status": "odd"},
                  expect=422, code="validation_error")  # fmt: skip


@pytest.mark.settings(**QUICK, webhook_max_attempts=1, webhook_deactivate_after=2)
def test_a_webhook_failing_every_delivery_is_deactivated_and_resumes(
    client: TestClient, tenant: Tenant, admin: Api, api: Api
) -> None:
    with receiver() as rec:
        rec.behaviour = lambda n, r: 500
        webhook, _ = hook(admin, rec.url, types=["session.created"])
        for _ in range(3):
            api.session()
        off = wait_until(
            lambda: (
                not (x := admin.get(f"/v1/webhooks/{webhook['id']}").json()["webhook"])["active"]
                and x
            )
        )
        assert "2 deliveries in a row failed" in off["deactivatedReason"]
        time.sleep(0.4)
        assert len(rec.requests) == 2  # nothing more is sent
        events = account_events(client, tenant, "webhook.deactivated")
        assert len(events) == 1 and events[0]["data"]["webhookId"] == webhook["id"]
        # Resumed: the third event, still pending, goes now.
        rec.behaviour = lambda n, r: 200
        on = admin.patch(f"/v1/webhooks/{webhook['id']}", {"active": True}, expect=200).json()
        assert on["webhook"]["active"] is True and on["webhook"]["deactivatedReason"] is None
        rec.wait_for(3)
        statuses = [d["status"] for d in deliveries(admin, webhook["id"])]
        assert wait_until(
            lambda: (
                [d["status"] for d in deliveries(admin, webhook["id"])]
                == ["failed", "failed", "succeeded"]
            )
        ), statuses


def test_deleted_webhook_sends_nothing_more(admin: Api, api: Api) -> None:
    with receiver() as rec:
        webhook, _ = hook(admin, rec.url, types=["session.created"])
        api.session()
        rec.wait_for(1)
        admin.delete(f"/v1/webhooks/{webhook['id']}", expect=204)
        admin.get(f"/v1/webhooks/{webhook['id']}", expect=404, code="not_found")
        api.session()
        time.sleep(0.5)
        assert len(rec.requests) == 1


# -- a real server killed with deliveries pending --------------------------------------------


@pytest.mark.slow
def test_deliveries_pending_at_a_sigkill_are_sent_after_restart(
    tmp_path: Path, database_url: str
) -> None:
    quick = {"SESSIOND_WEBHOOK_RETRY_BASE_SECONDS": "0.2", "SESSIOND_WEBHOOK_POLL_SECONDS": "0.2"}
    with receiver() as rec:
        rec.behaviour = lambda n, r: 503  # down while the server runs
        proc, url = start_server(tmp_path, database_url, **quick)
        try:
            key = (tmp_path / "admin.key").read_text().strip()
            c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            r = c.post("/v1/webhooks", json={"url": rec.url, "types": ["session.created"]})
            webhook_id = r.json()["webhook"]["id"]
            made = [c.post("/v1/sessions", json={}).json()["session"]["id"] for _ in range(3)]
            rec.wait_for(2)
            c.close()
        finally:
            stop_server(proc, signal.SIGKILL)
        tried = len(rec.requests)
        rec.behaviour = lambda n, r: 200  # back up
        proc, url = start_server(tmp_path, database_url, **quick)
        try:
            c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            wait_until(lambda: len(rec.requests) >= tried + 3)
            ok = [r for r in rec.requests if r.event["type"] == "session.created"]
            sessions = {r.event["sessionId"] for r in ok}
            assert sessions == set(made)  # every one at least once
            log = wait_until(
                lambda: (
                    (x := c.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"])
                    and all(d["status"] == "succeeded" for d in x)
                    and x
                )
            )
            assert len(log) == 3
            c.close()
        finally:
            stop_server(proc, signal.SIGTERM)


# -- several instances ---------------------------------------------------------------------


def test_two_instances_send_each_delivery_once(
    settings: Settings, tenant: Tenant, backend: str
) -> None:
    """Two apps (two dispatchers, two instance ids) on one database: every event reaches
    the receiver exactly once (no failure, so no retry)."""
    if backend != "postgresql":
        pytest.skip("instances share a database only on PostgreSQL")
    a = settings.model_copy(update={"instance_id": "instance-a"})
    b = settings.model_copy(update={"instance_id": "instance-b"})
    with (
        receiver() as rec,
        TestClient(create_app(a), raise_server_exceptions=False) as ca,
        TestClient(create_app(b), raise_server_exceptions=False) as cb,
    ):
        admin = tenant.api(ca, "admin")
        hooks = [hook(admin, rec.url, types=["session.created"])[0] for _ in range(4)]
        apis = [tenant.api(ca), tenant.api(cb)]
        for i in range(30):
            apis[i % 2].session()
        rec.wait_for(4 * 30)
        time.sleep(0.5)
        pairs = [
            (r.headers["sessiond-event-id"], r.headers["sessiond-delivery-id"])
            for r in rec.requests
        ]
        assert len(pairs) == 120 and len(set(pairs)) == 120
        for h in hooks:
            assert len(deliveries(admin, h["id"])) == 30
