"""Export and import (API.md § Export and import, docs/design/export.md), on both backends.

A session filled with one of everything is exported and imported, and everything a
client can read is compared (ids masked: the import gives new ones) — plus what only
the database shows: every branch of the conversation, and the memory rows. Bad archives
are built by hand (the archive is re-packed with dulwich and tarfile, not with the code
under test) and must answer 422 with nothing written.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob, ShaFile, Tree
from dulwich.pack import PackStreamReader, write_pack_objects
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.transfer import rows
from tests.support.api import Api, Tenant
from tests.support.resources import fill_session
from tests.support.servers import start_server, stop_server

ID = re.compile(r"\b(ses|msg|cp|tsk|nte|ann|apr|trn|mem|br|key)_[0-9A-Z]{26}\b")
MEDIA = "application/x-sessiond-export"
BINARY = bytes(range(256)) * 4 + b"\x00\xff"

# -- filling and reading a session -------------------------------------------------------------


def populate(api: Api, sid: str) -> dict[str, str]:
    """Everything a session holds, through the API (no agent, no sandbox): files (text,
    binary, nested), a commit, three branches, checkpoints, tasks, notes, annotations on a
    file, a message and a checkpoint, a granted and a pending approval, cache entries
    (one with a TTL), an environment spec and a custom event."""
    base = f"/v1/sessions/{sid}"
    ops = [
        {"op": "write", "path": "README.md", "content": "# demo\n"},
        {"op": "write", "path": "src/app.py", "content": "print('a')\n"},
        {"op": "write", "path": "data/blob.bin", "content": base64.b64encode(BINARY).decode(),
         "encoding": "base64"},
    ]  # fmt: skip
    api.post(f"{base}/files:batch", {"operations": ops}, expect=200)
    api.post(f"{base}/commit", {"message": "first"}, expect=201)
    first = api.post(f"{base}/messages", {"role": "user", "content": "one"}, expect=201)
    api.post(f"{base}/messages", {"role": "assistant", "content": "two"}, expect=201)
    third = api.post(f"{base}/messages", {"role": "user", "content": "three"}, expect=201)
    api.put(f"{base}/files/src/app.py", content=b"print('b')\n", expect=200)
    checkpoint = api.post(f"{base}/checkpoints", {"label": "mine", "description": "d"}, expect=201)
    cp_id = checkpoint.json()["checkpoint"]["id"]
    # A second branch: back to before "three", then something else.
    api.post(f"{base}/revert", {"messageId": third.json()["message"]["id"]}, expect=200)
    api.post(f"{base}/messages", {"role": "user", "content": "three, again"}, expect=201)
    api.post(f"{base}/messages", {"role": "assistant", "content": "four"}, expect=201)
    # A third: back to before "one".
    api.post(f"{base}/revert", {"messageId": first.json()["message"]["id"]}, expect=200)
    fresh = api.post(f"{base}/messages", {"role": "user", "content": "fresh start"}, expect=201)
    api.put(f"{base}/files/data/new.txt", content=b"new\n", expect=200)
    api.post(f"{base}/commit", {"message": "second"}, expect=201)
    task = api.post(f"{base}/tasks", {"content": "a task", "priority": "high"}, expect=201)
    api.post(f"{base}/tasks", {"content": "another"}, expect=201)
    api.patch(f"{base}/tasks/{task.json()['task']['id']}", {"status": "completed"}, expect=200)
    api.post(f"{base}/notes", {"title": "n", "body": "# body", "kind": "spec"}, expect=201)
    target = {"path": "README.md", "startLine": 1, "endLine": 1}
    api.post(f"{base}/annotations", {"target": target, "body": "file"}, expect=201)
    api.post(
        f"{base}/annotations", {"target": {**target, "checkpointId": cp_id}, "body": "at cp"},
        expect=201,
    )  # fmt: skip
    on_message = {"messageId": fresh.json()["message"]["id"]}
    api.post(f"{base}/annotations", {"target": on_message, "body": "msg"}, expect=201)
    granted = api.post(f"{base}/approvals", {"title": "ok?", "details": {"x": 1}}, expect=201)
    api.post(f"{base}/approvals/{granted.json()['approval']['id']}/grant", {"comment": "y"},
             expect=200)  # fmt: skip
    api.post(f"{base}/approvals", {"title": "pending?", "kind": "deploy"}, expect=201)
    api.put(f"{base}/cache/k1", {"value": {"n": [1, 2]}}, expect=201)
    api.put(f"{base}/cache/k2", {"value": "v", "ttlSeconds": 3600}, expect=201)
    api.put(f"{base}/environmentSpec", {"environmentSpec": {"language": "python"}}, expect=200)
    api.post(f"{base}/events", {"type": "custom.mine", "data": {"n": 1}}, expect=201)
    return {"checkpoint_id": cp_id}


def mask(value: Any) -> Any:
    """``value`` with every id replaced by its prefix (the import gives new ids)."""
    return json.loads(ID.sub(lambda m: f"{m.group(1)}_*", json.dumps(value, sort_keys=True)))


def _all(api: Api, path: str, key: str, **params: Any) -> list[Any]:
    out: list[Any] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = api.get(path, params=query, expect=200).json()
        out.extend(body[key])
        cursor = body.get("nextCursor")
        if not cursor:
            return out


# What differs between a session and its import by design (docs/design/export.md).
NEW_FIELDS = (
    "id", "accountId", "workspaceId", "createdAt", "updatedAt", "lastActivityAt",
    "lifecycleVersion", "importedFrom", "parentId", "forkedFrom", "sandbox", "activity",
)  # fmt: skip


def view(api: Api, sid: str) -> dict[str, Any]:
    """Everything a client reads of the session, ids masked, new fields left out."""
    base = f"/v1/sessions/{sid}"
    session = api.get(base, expect=200).json()["session"]
    workspace = session["workspaceId"]
    for name in NEW_FIELDS:
        session.pop(name)
    entries = _all(api, f"{base}/files", "entries", recursive="true")
    contents = {
        e["path"]: hashlib.sha256(
            api.get(f"{base}/files/{e['path']}", expect=200).content
        ).hexdigest()
        for e in entries
        if e["type"] == "file"
    }
    listed = {key: _all(api, f"{base}/{key}", key) for key in ("notes", "approvals")}
    for item in (*listed["notes"], *listed["approvals"]):
        assert item.pop("workspaceId") == workspace  # they follow the session
    return mask(
        {
            "session": session,
            "messages": _all(api, f"{base}/messages", "messages", limit=200),
            "files": entries,
            "contents": contents,
            "checkpoints": _all(api, f"{base}/checkpoints", "checkpoints"),
            "commits": _all(api, f"{base}/commits", "commits"),
            "tasks": api.get(f"{base}/tasks", expect=200).json()["tasks"],
            "notes": listed["notes"],
            "annotations": _all(api, f"{base}/annotations", "annotations"),
            "approvals": listed["approvals"],
            "cache": _all(api, f"{base}/cache", "entries"),
            "environmentSpec": api.get(f"{base}/environmentSpec", expect=200).json(),
            "turns": _all(api, f"{base}/turns", "turns"),
        }
    )


def stored(client: TestClient, sid: str) -> dict[str, Any]:
    """What only the database shows: every branch the session references (as a multiset
    of message lists) and its memory rows."""

    def read(tx: Any) -> dict[str, Any]:
        m, refs = t.messages, t.conversation_refs
        q = (
            sa.select(m.c.branch_id, m.c.bseq, m.c.role, m.c.status, m.c.doc)
            .join(refs, refs.c.branch_id == m.c.branch_id)
            .where(refs.c.session_id == sid)
            .order_by(m.c.branch_id, m.c.bseq)
        )
        branches: dict[str, list[Any]] = {}
        for r in tx.conn.execute(q):
            branches.setdefault(r.branch_id, []).append([r.bseq, r.role, r.status, r.doc])
        mem = t.memories
        memories = [
            [r.namespace, r.text, r.metadata, r.summary_of is not None, r.created_at]
            for r in tx.conn.execute(sa.select(mem).where(mem.c.session_id == sid))
        ]
        refs_count = tx.conn.execute(
            sa.select(sa.func.count()).select_from(refs).where(refs.c.session_id == sid)
        ).scalar_one()
        return {
            "branches": sorted(json.dumps(b) for b in branches.values()),
            "refs": refs_count,
            "memories": memories,
        }

    return mask(client.app.state.ctx.db.read_sync(read))  # type: ignore[attr-defined]


def add_memory(client: TestClient, tenant: Tenant, sid: str, workspace_id: str) -> None:
    """A memory of the session (no memory route yet: the row, as the memory service
    would write it) — the session's summary."""

    def write(tx: Any) -> None:
        tx.conn.execute(
            t.memories.insert().values(
                id=f"mem_{uuid.uuid4().hex[:26].upper()}",
                account_id=tenant.account_id,
                namespace="session-memory",
                text="what this session learned",
                metadata={"title": "t"},
                session_id=sid,
                workspace_id=workspace_id,
                summary_of=sid,
                created_at=1_700_000_000_000,
                updated_at=1_700_000_000_000,
                expires_at=None,
            )
        )

    client.app.state.ctx.db.write_sync(write)  # type: ignore[attr-defined]


def export(api: Api, sid: str, **params: Any) -> bytes:
    r = api.get(f"/v1/sessions/{sid}/export", params=params, expect=200)
    assert r.headers["content-type"] == MEDIA
    assert int(r.headers["content-length"]) == len(r.content)
    return r.content


def import_(api: Api, data: bytes, *, expect: int = 201, **kw: Any) -> httpx.Response:
    return api.post("/v1/sessions:import", content=data, expect=expect, **kw)


def counts(client: TestClient) -> dict[str, int]:
    def read(tx: Any) -> dict[str, int]:
        return {
            table.name: tx.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in t.metadata.sorted_tables
        }

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


# -- the round trip -----------------------------------------------------------------------------


def test_round_trip_keeps_everything(client: TestClient, api: Api, tenant: Tenant) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    sid = api.session(
        title="full", tags=["a", "b"], metadata={"m": 1}, context={"step": 2},
        workspaceId="team-a",
    )["id"]  # fmt: skip
    ids = populate(api, sid)
    fill_session(api, sid)  # an exec, a hibernated sandbox, an agent turn
    add_memory(client, tenant, sid, "team-a")
    before, before_rows = view(api, sid), stored(client, sid)
    data = export(api, sid, events="true")

    made = import_(api, data).json()["session"]
    new = made["id"]
    assert new != sid and made["workspaceId"] == "team-a"  # the original's workspace
    manifest = read_archive(data)[0]
    assert made["importedFrom"] == {"sessionId": sid, "exportedAt": manifest["exportedAt"]}
    assert made["lifecycleVersion"] == 1 and made["parentId"] is None
    assert manifest["events"] and manifest["events"] >= 20
    assert view(api, new) == before
    assert stored(client, new) == before_rows
    assert len(json.loads(json.dumps(before_rows))["branches"]) >= 3
    # The exported archive of the import holds the same thing (same objects too).
    again = read_archive(export(api, new))[0]
    assert again["objects"] == manifest["objects"]
    for key in ("messages", "checkpoints", "tasks", "notes", "approvals", "memories"):

        def canon(items: list[Any]) -> list[str]:
            return sorted(json.dumps(x, sort_keys=True) for x in mask(items))

        assert canon(again[key]) == canon(manifest[key]), key
    # References point at the new rows: an annotation on a message, a turn's messages.
    texts = {m["id"]: m["parts"] for m in _all(api, f"/v1/sessions/{new}/messages", "messages")}
    anns = _all(api, f"/v1/sessions/{new}/annotations", "annotations")
    on_message = [a for a in anns if "messageId" in a["target"]]
    assert on_message and all(a["target"]["messageId"].startswith("msg_") for a in on_message)
    assert all(a["target"]["messageId"] not in json.dumps(manifest) for a in on_message)
    turn = _all(api, f"/v1/sessions/{new}/turns", "turns")[0]
    assert turn["userMessageId"] in texts or turn["userMessageId"] is None

    # A checkpoint of the import restores like the original's.
    cps = {c["label"]: c["id"] for c in _all(api, f"/v1/sessions/{new}/checkpoints", "checkpoints")}
    for session, checkpoint in ((sid, ids["checkpoint_id"]), (new, cps["mine"])):
        body = {"checkpointId": checkpoint, "scope": "all"}
        api.post(f"/v1/sessions/{session}/restore", body, expect=200)
    after, restored = view(api, sid), view(api, new)
    for v in (after, restored):  # the undo checkpoints of the two restores: made apart
        assert v["checkpoints"][0]["label"] == "before restore"
        v["checkpoints"][0].pop("createdAt")
    assert restored == after
    assert restored["contents"]["src/app.py"] == hashlib.sha256(b"print('b')\n").hexdigest()
    assert api.get(f"/v1/sessions/{new}/files/data/blob.bin", expect=200).content == BINARY


def test_import_into_another_account_and_twice_into_one(
    client: TestClient, api: Api, tenant: Tenant, other: Tenant
) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    sid = api.session(title="moving", workspaceId="team-a")["id"]
    populate(api, sid)
    before = view(api, sid)
    data = export(api, sid)
    theirs = other.api(client)
    moved = import_(theirs, data).json()["session"]
    assert moved["accountId"] == other.account_id
    assert moved["workspaceId"] == "default"  # "team-a" is not one of theirs
    assert view(theirs, moved["id"]) == before
    api.get(f"/v1/sessions/{moved['id']}", expect=404, code="not_found")
    theirs.get(f"/v1/sessions/{sid}/export", expect=404, code="not_found")
    theirs.post("/v1/workspaces", {"id": "team-b"}, expect=201)
    chosen = import_(theirs, data, params={"workspaceId": "team-b"}).json()["session"]
    assert chosen["workspaceId"] == "team-b"
    import_(theirs, data, expect=404, code="not_found", params={"workspaceId": "nope"})
    Api(client, tenant.read).post("/v1/sessions:import", content=data, expect=403)

    # Twice into the same account: two independent sessions.
    one = import_(api, data).json()["session"]["id"]
    two = import_(api, data).json()["session"]["id"]
    assert len({sid, one, two}) == 3
    assert view(api, one) == view(api, two) == before
    api.put(f"/v1/sessions/{one}/files/README.md", content=b"changed\n", expect=200)
    api.post(f"/v1/sessions/{one}/messages", {"role": "user", "content": "only one"}, expect=201)
    api.post(f"/v1/sessions/{one}/tasks", {"content": "only one"}, expect=201)
    assert view(api, two) == before
    assert view(api, sid) == before
    api.delete(f"/v1/sessions/{one}", expect=204)
    assert view(api, two) == before


def test_idempotency_key_replays_the_import(client: TestClient, api: Api) -> None:
    sid = api.session(title="once")["id"]
    api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "hi"}, expect=201)
    data = export(api, sid)
    headers = {"Idempotency-Key": "import-1"}
    first = import_(api, data, headers=headers)
    sessions = counts(client)["sessions"]
    again = import_(api, data, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert counts(client)["sessions"] == sessions
    other = export(api, first.json()["session"]["id"])
    import_(api, other, expect=422, code="idempotency_mismatch", headers=headers)


PINNED = {
    "session": "- account_id doc sandbox sandbox_host sandbox_due acp_session_id "
    "lifecycle_version summary_due deleted_at",
    "messages": "branch_id bseq created_at doc id role session_id status updated_at",
    "checkpoints": "auto base before_message_id context conversation created_at description "
    "figures id label message_id session_id tasks tree",
    "commits": "created_at message session_id sha tree",
    "tasks": "content created_at id position priority session_id status updated_at",
    "notes": "body created_at id kind session_id title updated_at workspace_id",
    "annotations": "body created_at id session_id status target updated_at",
    "approvals": "comment created_at decided_at decided_by details id kind option_id options "
    "session_id status title updated_at workspace_id",
    "cacheEntries": "created_at expires_at key session_id updated_at value version",
    "turns": "assistant_message_id cancel_requested checkpoint_id created_at ended_at error "
    "files_changed id mode seq session_id skipped started_at status stop_reason usage "
    "user_message_id",
    "memories": "created_at expires_at id metadata namespace session_id summary_of text "
    "updated_at workspace_id",
}


def test_columns_that_travel_are_pinned() -> None:
    """A column added to a table that travels changes the format: bump archive.VERSION
    and teach the importer (then update ``PINNED``). The session travels whole but for
    the columns after ``-``."""
    travels = {spec.key: set(spec.names) for spec in (rows.SESSION, rows.MESSAGES, *rows.OWNED)}
    pinned = {key: set(text.split()) for key, text in PINNED.items()}
    pinned["session"] = {c.name for c in t.sessions.c} - pinned["session"] - {"-"}
    assert travels == pinned


# -- bad archives -------------------------------------------------------------------------------


def read_archive(data: bytes) -> tuple[dict[str, Any], list[ShaFile]]:
    """The manifest and the pack's objects, in pack order (read with tarfile and dulwich)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        assert names[:2] == ["manifest.json", "objects.pack"], names
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        pack = tar.extractfile("objects.pack").read()  # type: ignore[union-attr]
    reader = PackStreamReader(hashlib.sha1, io.BytesIO(pack).read)
    objects = [u.sha_file() for u in reader.read_objects()]
    assert [o.id.decode() for o in objects] == manifest["objects"]
    return manifest, objects


def make_pack(objects: list[ShaFile]) -> tuple[bytes, list[str]]:
    """A pack of ``objects`` written by dulwich, and the shas in the order it wrote them."""
    out = io.BytesIO()
    write_pack_objects(out.write, [(o, None) for o in objects], DEFAULT_OBJECT_FORMAT)
    data = out.getvalue()
    reader = PackStreamReader(hashlib.sha1, io.BytesIO(data).read)
    order = [u.sha().hex() for u in reader.read_objects()]
    return data, order


def make_tar(members: list[tuple[str, bytes]], *, claims: dict[str, int] | None = None) -> bytes:
    """A gzip tar of ``members``; ``claims`` makes a member's header state another size
    (its data stays what it is: a header that lies)."""
    raw = io.BytesIO()
    for name, body in members:
        info = tarfile.TarInfo(name)
        info.size = (claims or {}).get(name, len(body))
        raw.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        raw.write(body + b"\0" * (-len(body) % 512))
    raw.write(b"\0" * 1024)
    return gzip.compress(raw.getvalue())


def rebuild(
    data: bytes,
    edit: Callable[[dict[str, Any], list[ShaFile]], list[ShaFile] | None] | None = None,
    *,
    ids: Callable[[list[str]], list[str]] | None = None,
) -> bytes:
    """The archive again, after ``edit(manifest, objects)`` (which may return new objects);
    ``ids`` may change the object ids the manifest lists."""
    manifest, objects = read_archive(data)
    if edit is not None:
        objects = edit(manifest, objects) or objects
    pack, order = make_pack(objects)
    manifest["objects"] = ids(order) if ids else order
    body = json.dumps(manifest).encode()
    return make_tar([("manifest.json", body), ("objects.pack", pack)])


def _blob(objects: list[ShaFile]) -> ShaFile:
    return next(o for o in objects if isinstance(o, Blob))


def _tamper(manifest: dict[str, Any], objects: list[ShaFile]) -> list[ShaFile]:
    """A blob whose content no longer hashes to its id (the manifest keeps the id)."""
    blob = _blob(objects)
    fake = Blob.from_string(blob.as_raw_string() + b"tampered")
    tampered[fake.id.decode()] = blob.id.decode()
    return [fake if o is blob else o for o in objects]


tampered: dict[str, str] = {}


def _dotdot(manifest: dict[str, Any], objects: list[ShaFile]) -> list[ShaFile]:
    """A working tree with an entry named ``..``."""
    blob = Blob.from_string(b"evil\n")
    tree = Tree()
    tree.add(b"..", 0o100644, blob.id)
    manifest["session"]["workspace"]["head"] = tree.id.decode()
    return [*objects, blob, tree]


def _drop_blob(manifest: dict[str, Any], objects: list[ShaFile]) -> list[ShaFile]:
    blob = _blob(objects)
    return [o for o in objects if o is not blob]


def _set(path: str, value: Any) -> Callable[[dict[str, Any], list[ShaFile]], None]:
    def edit(manifest: dict[str, Any], objects: list[ShaFile]) -> None:
        *parents, last = path.split(".")
        target: Any = manifest
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return edit


def _duplicate_message(manifest: dict[str, Any], objects: list[ShaFile]) -> None:
    manifest["messages"].append(dict(manifest["messages"][0]))


def bad_archives(data: bytes) -> Iterator[tuple[str, bytes, str]]:
    """``(case, archive, reason)`` for every kind of bad archive."""
    manifest, _objects = read_archive(data)
    body = json.dumps(manifest).encode()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        pack = tar.extractfile("objects.pack").read()  # type: ignore[union-attr]
    good = [("manifest.json", body), ("objects.pack", pack)]
    tiny = [("manifest.json", body), ("objects.pack", b"PACK" * 250)]
    two_gb, first_branch = 2 * 1024**3, manifest["messages"][0]["branch_id"]
    yield "empty", b"", "truncated"
    yield "not gzip", b"PK\x03\x04 a zip file, say", "truncated"
    yield "truncated", data[: len(data) // 2], "truncated"
    yield "last bytes cut", data[:-30], "truncated"
    yield "gzip of garbage", gzip.compress(b"x" * 5000), "truncated"
    yield "version 2", rebuild(data, _set("version", 2)), "unsupported_version"
    yield "no version", rebuild(data, _set("version", None)), "unsupported_version"
    yield "other format", rebuild(data, _set("format", "other")), "unsupported_version"
    keep_ids = lambda order: [tampered.get(s, s) for s in order]  # noqa: E731
    yield "tampered object", rebuild(data, _tamper, ids=keep_ids), "object_mismatch"
    yield "path with ..", rebuild(data, _dotdot), "invalid_path"
    yield "member ../x", make_tar([("../manifest.json", body), good[1]]), "bad_member"
    yield "member /abs", make_tar([("/manifest.json", body), good[1]]), "bad_member"
    yield "pack first", make_tar(good[::-1]), "bad_member"
    yield "no pack", make_tar(good[:1]), "bad_member"
    yield "extra member", make_tar([*good, ("x", b"")]), "bad_member"
    yield "missing object", rebuild(data, _drop_blob), "missing_reference"
    claim = {"manifest.json": two_gb}
    yield "manifest claims 2 GB", make_tar(tiny[:1], claims=claim), "member_too_large"
    yield "pack claims 2 GB", make_tar(tiny, claims={"objects.pack": two_gb}), "member_too_large"
    claim = {"objects.pack": 100 * 1024**2}
    yield "pack claims 100 MB", make_tar(tiny, claims=claim), "truncated"
    changed = pack[:-25] + b"x" + pack[-24:]
    yield "pack bytes changed", make_tar([good[0], ("objects.pack", changed)]), "bad_pack"
    yield "not json", make_tar([("manifest.json", b"{nope"), good[1]]), "bad_manifest"
    yield "unknown field", rebuild(data, _set("extra", 1)), "bad_manifest"
    yield "title not text", rebuild(data, _set("session.title", 12)), "bad_manifest"
    yield "id too long", rebuild(data, _set("session.id", "x" * 41)), "bad_manifest"
    yield "nul in text", rebuild(data, _set("session.title", "a\u0000b")), "bad_manifest"
    yield "huge integer", rebuild(data, _set("messages.0.bseq", 2**40)), "bad_manifest"
    yield "duplicate message", rebuild(data, _duplicate_message), "bad_manifest"
    yield "bad part", rebuild(data, _set("messages.0.doc.parts", [{"type": "x"}])), "bad_manifest"
    unknown = _set("messages.0.branch_id", "br_nope")
    yield "unknown branch", rebuild(data, unknown), "missing_reference"
    too_far = _set("session.conversation.segments", [[first_branch, 1, 99, 0]])
    yield "path past messages", rebuild(data, too_far), "missing_reference"
    undo = _set("session.revert_undo", "cp_nope")
    yield "unknown checkpoint", rebuild(data, undo), "missing_reference"
    absent = _set("session.workspace.base", "1" * 40)
    yield "tree not in pack", rebuild(data, absent), "missing_reference"


def test_bad_archives_are_refused_and_write_nothing(client: TestClient, api: Api) -> None:
    sid = api.session(title="source")["id"]
    populate(api, sid)
    data = export(api, sid)
    import_(api, data)  # the good one passes
    before = counts(client)
    problems = []
    for case, archive, reason in bad_archives(data):
        r = api.post("/v1/sessions:import", content=archive)
        body = r.json()
        got = (r.status_code, body.get("code"), body.get("details", {}).get("reason"))
        if got != (422, "invalid_archive", reason):
            problems.append(f"{case}: {got} {body.get('error')}")
        elif not body["error"].startswith("not a valid sessiond export"):
            problems.append(f"{case}: {body}")
    assert not problems, "\n".join(problems)
    assert counts(client) == before


@pytest.mark.settings(import_max_bytes=4096)
def test_the_import_limit_is_413(client: TestClient, api: Api) -> None:
    sid = api.session(title="big")["id"]
    noise = b"".join(uuid.uuid4().bytes for _ in range(1000))
    api.put(f"/v1/sessions/{sid}/files/noise.bin", content=noise, expect=200)
    data = export(api, sid)
    assert len(data) > 4096
    before = counts(client)
    import_(api, data, expect=413, code="payload_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the running count stops it
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    import_(api, chunked(), expect=413, code="payload_too_large")  # type: ignore[arg-type]
    assert counts(client) == before


def test_an_archive_above_the_request_body_limit_imports(client: TestClient, api: Api) -> None:
    """The import route has its own limit (import_max_bytes), not the 10 MiB body limit."""
    sid = api.session(title="big")["id"]
    noise = b"".join(uuid.uuid4().bytes for _ in range(12 * 1024 * 1024 // 16))
    api.put(f"/v1/sessions/{sid}/files/noise.bin", content=noise, expect=200)
    data = export(api, sid)
    assert len(data) > client.app.state.ctx.settings.limits.body_bytes  # type: ignore[attr-defined]
    new = import_(api, data).json()["session"]["id"]
    assert api.get(f"/v1/sessions/{new}/files/noise.bin", expect=200).content == noise


def test_export_is_404_for_unknown_and_foreign_sessions(
    client: TestClient, api: Api, other: Tenant
) -> None:
    sid = api.session()["id"]
    other.api(client).get(f"/v1/sessions/{sid}/export", expect=404, code="not_found")
    api.get("/v1/sessions/ses_01JD0000000000000000000000/export", expect=404, code="not_found")


# -- real servers and the CLI -------------------------------------------------------------------


def _server_api(data_dir: Path, url: str) -> Api:
    key = (data_dir / "admin.key").read_text().strip()
    return Api(httpx.Client(base_url=url, timeout=60), key)


def test_move_between_sqlite_and_postgresql_servers(
    tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> None:
    """A session goes from a SQLite server to a PostgreSQL server and back, over HTTP."""
    cluster = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip("PostgreSQL server binaries not found: the PostgreSQL half is skipped")
    lite_dir, pg_dir = tmp_path / "lite", tmp_path / "pg"
    lite_dir.mkdir()
    pg_dir.mkdir()
    name = f"t_{uuid.uuid4().hex[:16]}"
    cluster.create_database(name)
    servers = []
    clients: list[httpx.Client] = []
    try:
        servers.append(start_server(lite_dir, f"sqlite:///{lite_dir / 'sessiond.db'}", "lite"))
        servers.append(start_server(pg_dir, cluster.url(name), "pg"))
        lite = _server_api(lite_dir, servers[0][1])
        pg = _server_api(pg_dir, servers[1][1])
        clients += [lite.client, pg.client]  # type: ignore[list-item]
        sid = lite.session(title="travels", tags=["x"])["id"]
        populate(lite, sid)
        before = view(lite, sid)
        on_pg = import_(pg, export(lite, sid)).json()["session"]["id"]
        assert view(pg, on_pg) == before
        pg.post(f"/v1/sessions/{on_pg}/messages", {"role": "user", "content": "on pg"}, expect=201)
        changed = view(pg, on_pg)
        back = import_(lite, export(pg, on_pg)).json()["session"]
        assert back["importedFrom"]["sessionId"] == on_pg
        assert view(lite, back["id"]) == changed
    finally:
        for c in clients:
            c.close()
        for proc, _url in servers:
            stop_server(proc, signal.SIGTERM)
        cluster.drop_database(name)


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "sessiond"
    return subprocess.run([str(exe), *args], capture_output=True, timeout=120)


def test_cli_export_and_import(client: TestClient, api: Api, settings: Any, tmp_path: Path) -> None:
    sid = api.session(title="by cli")["id"]
    populate(api, sid)
    before = view(api, sid)
    where = ["--data-dir", str(tmp_path), "--database-url", settings.database_url]
    done = _cli("export", sid, *where)
    assert done.returncode == 0, done.stderr.decode()
    archive = tmp_path / "s.sessiond"
    archive.write_bytes(done.stdout)
    assert read_archive(done.stdout)[0]["session"]["id"] == sid
    made = _cli("import", str(archive), "--account", "default", *where)
    assert made.returncode == 0, made.stderr.decode()
    new = json.loads(made.stdout)["session"]
    assert new["importedFrom"]["sessionId"] == sid
    assert view(api, new["id"]) == before
    # Refusals: exit status 1, the reason on stderr, nothing written.
    sessions = counts(client)["sessions"]
    (tmp_path / "bad.sessiond").write_bytes(done.stdout[:100])
    failed = _cli("import", str(tmp_path / "bad.sessiond"), *where)
    assert failed.returncode == 1 and b"truncated" in failed.stderr
    missing = _cli("export", "ses_01JD0000000000000000000000", *where)
    assert missing.returncode == 1 and b"not found" in missing.stderr
    assert counts(client)["sessions"] == sessions
