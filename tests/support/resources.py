"""One real resource of every kind, made through the HTTP API only.

Tests that hold an invariant over "every route" or "every table" start from this: the
isolation test fills every route's path parameters from it, the deletion test needs a
row of the session in every table that has a ``session_id``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.support.api import Api

FILE_PATH = "src/app.py"
CACHE_KEY = "notes/k1"


@dataclass(frozen=True)
class Resources:
    """Ids of one account's resources, named like the routes' path parameters."""

    workspace_id: str
    session_id: str
    message_id: str
    task_id: str
    note_id: str
    annotation_id: str
    approval_id: str
    checkpoint_id: str
    turn_id: str
    key_id: str
    webhook_id: str
    delivery_id: str
    memory_id: str
    key: str = CACHE_KEY  # a cache key
    path: str = FILE_PATH  # a workspace file

    def path_params(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def fill_session(api: Api, sid: str) -> dict[str, str]:
    """Give session ``sid`` one of everything a session holds; returns their ids."""
    base = f"/v1/sessions/{sid}"
    api.put(f"{base}/files/{FILE_PATH}", content=b"print('hi')\n", expect=200)
    api.post(f"{base}/commit", {"message": "initial"}, expect=201)
    api.put(f"{base}/files/{FILE_PATH}", content=b"print('hello')\n", expect=200)
    message = api.post(f"{base}/messages", {"role": "user", "content": "hello"}, expect=201)
    api.post(f"{base}/messages", {"role": "assistant", "content": "hi"}, expect=201)
    task = api.post(f"{base}/tasks", {"content": "a task"}, expect=201)
    note = api.post(f"{base}/notes", {"title": "a note", "body": "text"}, expect=201)
    target = {"path": FILE_PATH, "startLine": 1, "endLine": 1}
    annotation = api.post(f"{base}/annotations", {"target": target, "body": "look"}, expect=201)
    approval = api.post(f"{base}/approvals", {"title": "May I?"}, expect=201)
    api.put(f"{base}/cache/{CACHE_KEY}", {"value": {"n": 1}}, expect=201)
    api.post(f"{base}/events", {"type": "custom.mine", "data": {"n": 1}}, expect=201)
    checkpoint = api.post(f"{base}/checkpoints", {"label": "mine"}, expect=201)
    memory = api.post(
        "/v1/memory",
        {"namespace": "facts", "text": "the session's secret fact", "sessionId": sid},
        expect=201,
    )
    # A sandbox hibernated with something in its HOME (kept for the next restore).
    api.post(f"{base}/exec", {"command": 'echo state > "$HOME/state"'}, expect=200)
    api.post(f"{base}/sandbox:hibernate", expect=200)
    # Then a turn (the sandbox restored; the agent stays, holding the session's lease).
    api.patch(base, {"agent": "scripted"}, expect=200)
    turn = api.post(f"{base}/prompt", {"content": "say: hi"}, expect=202).json()["turn"]
    deadline = time.monotonic() + 30
    while turn["status"] in ("queued", "running") and time.monotonic() < deadline:
        turn = api.get(f"{base}/turns/{turn['id']}", params={"wait": 5}).json()["turn"]
    assert turn["status"] == "completed", turn
    return {
        "turn_id": turn["id"],
        "message_id": message.json()["message"]["id"],
        "task_id": task.json()["task"]["id"],
        "note_id": note.json()["note"]["id"],
        "annotation_id": annotation.json()["annotation"]["id"],
        "approval_id": approval.json()["approval"]["id"],
        "checkpoint_id": checkpoint.json()["checkpoint"]["id"],
        "memory_id": memory.json()["memory"]["id"],
    }


def make_resources(admin: Api) -> Resources:
    """A workspace, a session in it holding one of everything, and an extra API key."""
    workspace = admin.post("/v1/workspaces", {"id": "team-a", "name": "Team A"}, expect=201)
    workspace_id = workspace.json()["workspace"]["id"]
    # A webhook of the session's custom events, sent where nothing listens (port 9): it
    # gets a pending delivery, and is then deactivated so that nothing moves any more.
    body = {"url": "http://127.0.0.1:9/", "types": ["custom."]}
    webhook_id = admin.post("/v1/webhooks", body, expect=201).json()["webhook"]["id"]
    sid = admin.session(
        workspaceId=workspace_id,
        title="private",
        tags=["keep"],
        metadata={"secret": 1},
        context={"step": 1},
    )["id"]
    ids = fill_session(admin, sid)
    key = admin.post("/v1/keys", {"name": "spare", "role": "read"}, expect=201)
    deliveries = f"/v1/webhooks/{webhook_id}/deliveries"
    deadline = time.monotonic() + 30
    while not (made := admin.get(deliveries).json()["deliveries"]):
        assert time.monotonic() < deadline, "the webhook made no delivery"
        time.sleep(0.05)
    admin.patch(f"/v1/webhooks/{webhook_id}", {"active": False}, expect=200)
    return Resources(
        workspace_id=workspace_id,
        session_id=sid,
        key_id=key.json()["key"]["id"],
        webhook_id=webhook_id,
        delivery_id=made[0]["id"],
        **ids,
    )
