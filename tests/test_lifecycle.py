"""The status machine of API.md, exhaustively: every (from, to) pair over PATCH and close."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.errors import InvalidTransition
from sessiond.ids import parse_iso
from sessiond.sessions.lifecycle import PATCH_TRANSITIONS, STATUSES, check_patch_transition
from tests.support.api import Api
from tests.support.clock import Clock

# The table of API.md, written out independently of the implementation.
ALLOWED_BY_PATCH = {
    ("active", "completed"),
    ("active", "failed"),
    ("archived", "active"),
} | {(s, "archived") for s in STATUSES if s != "archived"}


def test_transition_table_matches_contract() -> None:
    for frm in STATUSES:
        for to in STATUSES:
            if frm == to:
                assert check_patch_transition(frm, to) is False
            elif (frm, to) in ALLOWED_BY_PATCH:
                assert check_patch_transition(frm, to) is True
            else:
                with pytest.raises(InvalidTransition):
                    check_patch_transition(frm, to)
    assert {(f, t) for f, ts in PATCH_TRANSITIONS.items() for t in ts} == ALLOWED_BY_PATCH


def _session_in(api: Api, clock: Clock, status: str) -> dict[str, Any]:
    """A session brought to ``status`` through the public API only (and the clock)."""
    if status == "expired":
        s = api.session(ttl_seconds=60)
        clock.advance(60)
        return api.get(f"/v1/sessions/{s['id']}", expect=200).json()["session"]  # type: ignore[no-any-return]
    s = api.session()
    if status == "active":
        return s
    if status == "closed":
        return api.post(f"/v1/sessions/{s['id']}/close", expect=200).json()["session"]  # type: ignore[no-any-return]
    if status == "archived":
        return api.patch(f"/v1/sessions/{s['id']}", {"status": "archived"}, expect=200).json()[
            "session"
        ]
    return api.patch(f"/v1/sessions/{s['id']}", {"status": status}, expect=200).json()["session"]  # type: ignore[no-any-return]


PAIRS = [(f, t) for f in STATUSES for t in STATUSES]


@pytest.mark.parametrize(("frm", "to"), PAIRS, ids=[f"{f}->{t}" for f, t in PAIRS])
def test_patch_status_pairs(api: Api, clock: Clock, frm: str, to: str) -> None:
    s = _session_in(api, clock, frm)
    assert s["status"] == frm
    v = s["lifecycleVersion"]
    r = api.patch(f"/v1/sessions/{s['id']}", {"status": to})
    if frm == to:
        assert r.status_code == 200
        assert r.json()["session"]["lifecycleVersion"] == v  # a no-op
    elif (frm, to) in ALLOWED_BY_PATCH:
        assert r.status_code == 200, r.text
        out = r.json()["session"]
        assert out["status"] == to
        assert out["lifecycleVersion"] == v + 1
    else:
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "invalid_transition"
        again = api.get(f"/v1/sessions/{s['id']}").json()["session"]
        assert again["status"] == frm and again["lifecycleVersion"] == v


@pytest.mark.parametrize("frm", STATUSES)
def test_close_only_from_active(api: Api, clock: Clock, frm: str) -> None:
    s = _session_in(api, clock, frm)
    r = api.post(f"/v1/sessions/{s['id']}/close")
    if frm == "active":
        assert r.status_code == 200
        out = r.json()["session"]
        assert out["status"] == "closed" and out["closedAt"] is not None
    else:
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition"


def test_expired_can_only_be_archived(api: Api, clock: Clock) -> None:
    s = _session_in(api, clock, "expired")
    for to in ("active", "completed", "failed", "closed"):
        api.patch(f"/v1/sessions/{s['id']}", {"status": to}, expect=409, code="invalid_transition")
    api.post(f"/v1/sessions/{s['id']}/close", expect=409, code="invalid_transition")
    out = api.patch(f"/v1/sessions/{s['id']}", {"status": "archived"}, expect=200).json()
    assert out["session"]["status"] == "archived"


def test_unarchive_restarts_ttl_window(api: Api, clock: Clock) -> None:
    s = api.session(ttl_seconds=3600)
    api.patch(f"/v1/sessions/{s['id']}", {"status": "archived"}, expect=200)
    clock.advance(7200)  # long past the first window: archived sessions do not expire
    back = api.patch(f"/v1/sessions/{s['id']}", {"status": "active"}, expect=200).json()["session"]
    assert back["status"] == "active"
    assert parse_iso(back["expiresAt"]) == parse_iso(back["updatedAt"]) + 3600 * 1000
    assert parse_iso(back["expiresAt"]) >= parse_iso(s["expiresAt"]) + 7200 * 1000
    clock.advance(3500)
    assert api.get(f"/v1/sessions/{s['id']}").json()["session"]["status"] == "active"


def test_archived_hidden_from_default_list(api: Api) -> None:
    a = api.session(title="keep")
    b = api.session(title="archive me")
    api.patch(f"/v1/sessions/{b['id']}", {"status": "archived"}, expect=200)
    ids = [x["id"] for x in api.get("/v1/sessions").json()["sessions"]]
    assert a["id"] in ids and b["id"] not in ids
    ids = [x["id"] for x in api.get("/v1/sessions?status=archived").json()["sessions"]]
    assert ids == [b["id"]]


@pytest.mark.parametrize("status", ["completed", "failed", "closed", "archived", "expired"])
def test_writes_to_inactive_session_refused(api: Api, clock: Clock, status: str) -> None:
    s = _session_in(api, clock, status)
    sid = s["id"]
    for method, path, body in [
        ("PUT", f"/v1/sessions/{sid}/context", {"context": {"a": 1}}),
        ("PATCH", f"/v1/sessions/{sid}/context", {"context": {"a": 1}}),
        ("POST", f"/v1/sessions/{sid}/events", {"type": "custom.x", "data": {}}),
        ("PATCH", f"/v1/sessions/{sid}", {"ttlSeconds": 60}),
        ("PATCH", f"/v1/sessions/{sid}", {"model": "m"}),
    ]:
        r = api.request(method, path, json=body, expect=409, code="session_not_active")
        assert status in r.json()["error"]
    # Organising fields stay writable, reads always work.
    api.patch(f"/v1/sessions/{sid}", {"title": "renamed", "tags": ["x"]}, expect=200)
    api.get(f"/v1/sessions/{sid}/context", expect=200)
