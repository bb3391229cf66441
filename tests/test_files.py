"""Workspace files over HTTP: manifest, raw read/write/delete, CAS, batches, path rules."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa
from dulwich.objects import Tree
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.sessions import figures
from tests.support.api import Api

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def test_the_empty_tree_is_gits() -> None:
    assert figures.EMPTY_TREE == EMPTY_TREE == Tree().id.decode()


def put(api: Api, sid: str, path: str, data: bytes, **kw: Any) -> Any:
    return api.put(f"/v1/sessions/{sid}/files/{path}", content=data, **kw)


def manifest(api: Api, sid: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"/v1/sessions/{sid}/files", params=params, expect=200)
    return r.json()["entries"]  # type: ignore[no-any-return]


def batch(api: Api, sid: str, ops: list[dict[str, Any]], **kw: Any) -> Any:
    return api.post(f"/v1/sessions/{sid}/files:batch", {"operations": ops}, **kw)


def ws(api: Api, sid: str) -> dict[str, Any]:
    return api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]["workspace"]  # type: ignore[no-any-return]


def test_write_read_list_delete(api: Api) -> None:
    sid = api.session()["id"]
    assert ws(api, sid) == {
        "head": EMPTY_TREE,
        "base": EMPTY_TREE,
        "filesChanged": 0,
        "linesAdded": 0,
        "linesRemoved": 0,
    }
    assert manifest(api, sid) == []
    r = put(api, sid, "src/app.py", b"print('hi')\n", expect=200)
    f = r.json()["file"]
    assert (f["path"], f["size"], len(f["sha"])) == ("src/app.py", 12, 40)
    assert r.headers["etag"] == f'"{f["sha"]}"'
    got = api.get(f"/v1/sessions/{sid}/files/src/app.py", expect=200)
    assert got.content == b"print('hi')\n" and got.headers["etag"] == f'"{f["sha"]}"'
    binary = bytes(range(256)) * 4
    put(api, sid, "img/logo.bin", binary, expect=200)
    assert api.get(f"/v1/sessions/{sid}/files/img/logo.bin").content == binary
    top = manifest(api, sid)
    assert [(e["path"], e["type"]) for e in top] == [("img", "dir"), ("src", "dir")]
    deep = manifest(api, sid, recursive="true")
    assert [(e["path"], e["type"], e["size"], e["mode"]) for e in deep] == [
        ("img/logo.bin", "file", 1024, "100644"),
        ("src/app.py", "file", 12, "100644"),
    ]
    assert manifest(api, sid, path="src") == [deep[1]]
    w = ws(api, sid)
    assert w["head"] != EMPTY_TREE and w["base"] == EMPTY_TREE
    assert (w["filesChanged"], w["linesAdded"], w["linesRemoved"]) == (2, 1, 0)
    api.delete(f"/v1/sessions/{sid}/files/src/app.py", expect=204)
    api.get(f"/v1/sessions/{sid}/files/src/app.py", expect=404, code="not_found")
    assert [e["path"] for e in manifest(api, sid, recursive="true")] == ["img/logo.bin"]
    assert [e["path"] for e in manifest(api, sid)] == ["img"]  # empty directories go
    api.delete(f"/v1/sessions/{sid}/files/img/logo.bin", expect=204)
    assert ws(api, sid)["head"] == EMPTY_TREE and ws(api, sid)["filesChanged"] == 0
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    changed = [e["data"]["paths"] for e in events if e["type"] == "files.changed"]
    assert changed == [["src/app.py"], ["img/logo.bin"], ["src/app.py"], ["img/logo.bin"]]


def test_real_git_hashes(api: Api) -> None:
    sid = api.session()["id"]
    f = put(api, sid, "hello.txt", b"hello\n", expect=200).json()["file"]
    assert f["sha"] == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_compare_and_set(api: Api) -> None:
    sid = api.session()["id"]
    first = put(api, sid, "a.txt", b"1\n", expect=200).json()["file"]["sha"]
    put(
        api,
        sid,
        "a.txt",
        b"2\n",
        headers={"If-Match": '"0000"'},
        expect=412,
        code="precondition_failed",
    )
    second = put(api, sid, "a.txt", b"2\n", headers={"If-Match": f'"{first}"'}, expect=200)
    sha2 = second.json()["file"]["sha"]
    put(api, sid, "a.txt", b"3\n", headers={"If-Match": f'"{first}"'}, expect=412)
    put(api, sid, "a.txt", b"x\n", headers={"If-None-Match": "*"}, expect=412)
    put(api, sid, "new.txt", b"x\n", headers={"If-None-Match": "*"}, expect=200)
    put(api, sid, "missing.txt", b"x\n", headers={"If-Match": f'"{first}"'}, expect=412)
    api.delete(f"/v1/sessions/{sid}/files/a.txt", headers={"If-Match": f'"{first}"'}, expect=412)
    assert api.get(f"/v1/sessions/{sid}/files/a.txt").content == b"2\n"
    api.delete(f"/v1/sessions/{sid}/files/a.txt", headers={"If-Match": f'"{sha2}"'}, expect=204)


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "a/../../b",
        "a/./b",
        "a//b",
        ".git/config",
        "src/.GIT/x",
        "a\\b",
        "x" * 256,
        "/".join(["d"] * 2100),
    ],
)
def test_bad_paths_are_refused_and_write_nothing(api: Api, path: str) -> None:
    sid = api.session()["id"]
    before = ws(api, sid)
    batch(
        api,
        sid,
        [
            {"op": "write", "path": "ok.txt", "content": "x"},
            {"op": "write", "path": path, "content": "x"},
        ],
        expect=422,
        code="invalid_path",
    )
    assert ws(api, sid) == before


def test_nul_and_absolute_paths(api: Api) -> None:
    sid = api.session()["id"]
    for path in ("/abs.txt", "a\x00b"):
        batch(
            api,
            sid,
            [{"op": "write", "path": path, "content": "x"}],
            expect=422,
            code="invalid_path",
        )
    put(api, sid, "a%00b", b"x", expect=422, code="invalid_path")
    assert manifest(api, sid) == []


def test_batch_is_all_or_nothing(api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "keep.txt", b"keep\n", expect=200)
    before = ws(api, sid)
    for bad in (
        {"op": "delete", "path": "missing.txt"},
        {"op": "rename", "from": "missing.txt", "to": "b.txt"},
        {"op": "write", "path": "b.txt", "content": "@@", "encoding": "base64"},
        {"op": "write", "path": "keep.txt/inner", "content": "x"},
        {"op": "copy", "path": "x"},
        {"op": "write", "path": "b.txt"},
    ):
        ops = [
            {"op": "write", "path": "first.txt", "content": "1"},
            bad,
            {"op": "write", "path": "last.txt", "content": "2"},
        ]
        r = batch(api, sid, ops)
        assert r.status_code in (404, 409, 422), r.text
        assert ws(api, sid) == before
        assert [e["path"] for e in manifest(api, sid)] == ["keep.txt"]


def test_batch_write_rename_delete(api: Api) -> None:
    sid = api.session()["id"]
    data = base64.b64encode(b"\x00\x01binary").decode()
    r = batch(
        api,
        sid,
        [
            {"op": "write", "path": "a.txt", "content": "one\ntwo\n"},
            {"op": "write", "path": "bin/b.dat", "content": data, "encoding": "base64"},
            {"op": "rename", "from": "a.txt", "to": "docs/a.md"},
            {"op": "write", "path": "c.txt", "content": "c"},
            {"op": "delete", "path": "c.txt"},
        ],
        expect=200,
    ).json()
    assert [f["path"] for f in r["files"]] == [
        "a.txt",
        "bin/b.dat",
        "a.txt",
        "docs/a.md",
        "c.txt",
        "c.txt",
    ]
    assert r["files"][5] == {"path": "c.txt", "deleted": True}
    assert [e["path"] for e in manifest(api, sid, recursive="true")] == ["bin/b.dat", "docs/a.md"]
    assert api.get(f"/v1/sessions/{sid}/files/bin/b.dat").content == b"\x00\x01binary"
    assert r["workspace"] == ws(api, sid)
    assert (r["workspace"]["filesChanged"], r["workspace"]["linesAdded"]) == (2, 2)
    events = [
        e
        for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]
        if e["type"] == "files.changed"
    ]
    assert len(events) == 1
    assert events[0]["data"]["paths"] == ["a.txt", "bin/b.dat", "c.txt", "docs/a.md"]


def test_change_figures_follow_edits(api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "f.txt", b"a\nb\nc\n", expect=200)
    assert (ws(api, sid)["linesAdded"], ws(api, sid)["linesRemoved"]) == (3, 0)
    put(api, sid, "f.txt", b"a\nB\nc\nd\n", expect=200)
    assert (ws(api, sid)["filesChanged"], ws(api, sid)["linesAdded"]) == (1, 4)
    put(api, sid, "g.bin", b"\x00\x00", expect=200)
    assert ws(api, sid)["filesChanged"] == 2 and ws(api, sid)["linesAdded"] == 4
    s = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert s["lifecycleVersion"] == 1  # the workspace figures never bump it


def test_writes_need_active_and_write_role(
    client: TestClient, api: Api, tenant: Any, other: Any
) -> None:
    sid = api.session()["id"]
    put(api, sid, "a.txt", b"x", expect=200)
    reader = Api(client, tenant.read)
    reader.get(f"/v1/sessions/{sid}/files/a.txt", expect=200)
    put(reader, sid, "a.txt", b"y", expect=403, code="forbidden")
    intruder = Api(client, other.admin)
    intruder.get(f"/v1/sessions/{sid}/files/a.txt", expect=404, code="not_found")
    intruder.get(f"/v1/sessions/{sid}/files", expect=404, code="not_found")
    put(intruder, sid, "a.txt", b"y", expect=404)
    intruder.delete(f"/v1/sessions/{sid}/files/a.txt", expect=404)
    batch(intruder, sid, [{"op": "delete", "path": "a.txt"}], expect=404)
    api.post(f"/v1/sessions/{sid}/close", expect=200)
    put(api, sid, "a.txt", b"y", expect=409, code="session_not_active")
    api.delete(f"/v1/sessions/{sid}/files/a.txt", expect=409, code="session_not_active")
    assert api.get(f"/v1/sessions/{sid}/files/a.txt").content == b"x"


def test_objects_are_scoped_per_account(client: TestClient, api: Api, other: Any) -> None:
    mine = api.session()["id"]
    theirs_api = Api(client, other.write)
    theirs = theirs_api.session()["id"]
    put(api, mine, "same.txt", b"identical\n", expect=200)
    put(theirs_api, theirs, "same.txt", b"identical\n", expect=200)

    def count(tx: Any) -> int:
        q = sa.select(sa.func.count()).select_from(t.git_objects)
        return int(tx.conn.execute(q).scalar_one())

    # one blob + one tree per account: identical content is never shared across accounts
    assert client.app.state.ctx.db.read_sync(count) == 4  # type: ignore[attr-defined]


def test_file_size_limit(client: TestClient, api: Api) -> None:
    limits = client.app.state.ctx.settings.limits  # type: ignore[attr-defined]
    limits.file_bytes = 1000
    sid = api.session()["id"]
    put(api, sid, "big.bin", b"x" * 1001, expect=413, code="payload_too_large")
    put(api, sid, "ok.bin", b"x" * 1000, expect=200)


def test_paths_through_a_symlink_are_refused(client: TestClient, api: Api, tenant: Any) -> None:
    """A symlink can arrive with a git push; nothing may be read or written through it."""
    from dulwich.objects import Blob

    from sessiond.files import trees
    from sessiond.files.objects import ObjectStore
    from sessiond.sessions import kernel

    sid = api.session()["id"]
    put(api, sid, "real/file.txt", b"inside\n", expect=200)

    def add_symlink(tx: Any) -> None:
        row = kernel.load_for_write(tx, tenant.account_id, sid)
        store = ObjectStore(tx, tenant.account_id)
        target = Blob.from_string(b"/etc")
        store.add([target])
        head = trees.apply(
            store, row["workspace"]["head"], {"link": (trees.SYMLINK, target.id.decode())}
        )
        kernel.write_fields(tx, row, {"workspace": {**row["workspace"], "head": head}})

    client.app.state.ctx.db.write_sync(add_symlink)  # type: ignore[attr-defined]
    entries = manifest(api, sid)
    assert [(e["path"], e["type"]) for e in entries] == [("link", "symlink"), ("real", "dir")]
    before = ws(api, sid)
    put(api, sid, "link/passwd", b"x", expect=422, code="invalid_path")
    batch(
        api,
        sid,
        [{"op": "write", "path": "link/a/b", "content": "x"}],
        expect=422,
        code="invalid_path",
    )
    batch(
        api,
        sid,
        [{"op": "rename", "from": "real/file.txt", "to": "link/file.txt"}],
        expect=422,
        code="invalid_path",
    )
    api.get(f"/v1/sessions/{sid}/files/link/passwd", expect=422, code="invalid_path")
    api.get(f"/v1/sessions/{sid}/files", params={"path": "link"}, expect=422)
    assert ws(api, sid) == before
    assert api.get(f"/v1/sessions/{sid}/files/link").content == b"/etc"  # the link itself


def test_figures_match_a_full_diff_after_random_edits(api: Api) -> None:
    """The incremental figures equal what a full diff from the base counts."""
    import random

    rng = random.Random(11)
    sid = api.post(
        "/v1/sessions",
        {"source": {"files": {f"d{i % 3}/f{i}.txt": "a\nb\nc\n" * (i + 1) for i in range(12)}}},
        expect=201,
    ).json()["session"]["id"]
    paths = [f"d{i % 3}/f{i}.txt" for i in range(12)] + [f"new/n{i}.txt" for i in range(4)]
    for step in range(40):
        path = rng.choice(paths)
        if rng.random() < 0.25:
            api.delete(f"/v1/sessions/{sid}/files/{path}")  # 204, or 404 when absent
        else:
            lines = "".join(rng.choice(["a\n", "b\n", "c\n", f"x{step}\n"]) for _ in range(6))
            put(api, sid, path, lines.encode(), expect=200)
        if step % 8 == 7:
            cp = api.post(f"/v1/sessions/{sid}/checkpoints", expect=201).json()
            if rng.random() < 0.5:
                api.post(
                    f"/v1/sessions/{sid}/restore",
                    {"checkpointId": cp["checkpoint"]["id"]},
                    expect=200,
                )
        summary = api.get(f"/v1/sessions/{sid}/diff", expect=200).json()["summary"]
        w = ws(api, sid)
        assert (w["filesChanged"], w["linesAdded"], w["linesRemoved"]) == (
            summary["files"],
            summary["additions"],
            summary["deletions"],
        ), f"step {step}"
