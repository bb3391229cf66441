"""Diff (JSON and git-format patches that the real ``git apply`` accepts) and snapshots."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git binary not installed")


def put(api: Api, sid: str, path: str, data: bytes) -> None:
    api.put(f"/v1/sessions/{sid}/files/{path}", content=data, expect=200)


def batch(api: Api, sid: str, ops: list[dict[str, Any]]) -> None:
    api.post(f"/v1/sessions/{sid}/files:batch", {"operations": ops}, expect=200)


def _setup(api: Api) -> tuple[str, str]:
    sid = api.session()["id"]
    put(api, sid, "keep.txt", b"same\n")
    put(api, sid, "edit.py", b"a = 1\nb = 2\nc = 3\n")
    put(api, sid, "gone.txt", b"bye\n")
    put(api, sid, "move.md", b"# moved\nbody\n")
    put(api, sid, "img.bin", b"\x00\x01\x02")
    cp = api.post(f"/v1/sessions/{sid}/checkpoints", expect=201).json()["checkpoint"]["id"]
    batch(
        api,
        sid,
        [
            {"op": "write", "path": "edit.py", "content": "a = 1\nb = 20\nc = 3\nd = 4\n"},
            {"op": "delete", "path": "gone.txt"},
            {"op": "rename", "from": "move.md", "to": "docs/moved.md"},
            {"op": "write", "path": "new/file.txt", "content": "fresh\nno newline at end"},
            {"op": "write", "path": "img.bin", "content": "AAMEBQ==", "encoding": "base64"},
        ],
    )
    return sid, cp


def test_diff_json(api: Api) -> None:
    sid, cp = _setup(api)
    r = api.get(f"/v1/sessions/{sid}/diff", params={"from": cp}, expect=200).json()
    by_path = {f["path"]: f for f in r["files"]}
    assert set(by_path) == {"edit.py", "gone.txt", "docs/moved.md", "new/file.txt", "img.bin"}
    assert by_path["edit.py"]["status"] == "modified"
    assert (by_path["edit.py"]["additions"], by_path["edit.py"]["deletions"]) == (2, 1)
    assert by_path["gone.txt"]["status"] == "deleted" and by_path["gone.txt"]["deletions"] == 1
    moved = by_path["docs/moved.md"]
    assert moved["status"] == "renamed" and moved["oldPath"] == "move.md"
    assert by_path["new/file.txt"]["status"] == "added"
    assert by_path["img.bin"]["binary"] is True and by_path["img.bin"]["additions"] == 0
    assert "+b = 20" in by_path["edit.py"]["patch"]
    assert r["summary"] == {"files": 5, "additions": 4, "deletions": 2}
    # default from = base (empty tree for a new session): everything is added
    full = api.get(f"/v1/sessions/{sid}/diff", expect=200).json()
    assert {f["status"] for f in full["files"]} == {"added"}
    assert full["summary"]["files"] == 5
    ws = api.get(f"/v1/sessions/{sid}").json()["session"]["workspace"]
    assert full["summary"]["files"] == ws["filesChanged"]
    assert full["summary"]["additions"] == ws["linesAdded"]
    same = api.get(f"/v1/sessions/{sid}/diff", params={"from": "head"}).json()
    assert same == {"files": [], "summary": {"files": 0, "additions": 0, "deletions": 0}}
    api.get(f"/v1/sessions/{sid}/diff", params={"from": "HEAD~1"}, expect=422)
    api.get(f"/v1/sessions/{sid}/diff", params={"format": "svg"}, expect=422)
    api.get(f"/v1/sessions/{sid}/diff", params={"to": "cp_missing"}, expect=404)


@needs_git
def test_patch_applies_with_git(api: Api, tmp_path: Path) -> None:
    sid, cp = _setup(api)
    repo = tmp_path / "repo"
    repo.mkdir()
    # the checkpoint's files, from the snapshot
    snap = api.get(f"/v1/sessions/{sid}/snapshot", params={"at": cp}, expect=200)
    with tarfile.open(fileobj=io.BytesIO(snap.content), mode="r:gz") as tar:
        tar.extractall(repo, filter="data")
    patch = api.get(f"/v1/sessions/{sid}/diff", params={"from": cp, "format": "patch"}, expect=200)
    assert patch.headers["content-type"].startswith("text/x-diff")
    (tmp_path / "p.diff").write_bytes(patch.content)
    done = subprocess.run(
        ["git", "apply", "--binary", str(tmp_path / "p.diff")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    for path in ("edit.py", "docs/moved.md", "new/file.txt", "keep.txt"):
        assert (repo / path).read_bytes() == api.get(f"/v1/sessions/{sid}/files/{path}").content
    assert not (repo / "gone.txt").exists() and not (repo / "move.md").exists()


def test_snapshot(api: Api) -> None:
    sid, cp = _setup(api)
    r = api.get(f"/v1/sessions/{sid}/snapshot", expect=200)
    assert r.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers())
        assert names == ["docs/moved.md", "edit.py", "img.bin", "keep.txt", "new/file.txt"]
        member = tar.extractfile("edit.py")
        assert member is not None and member.read() == b"a = 1\nb = 20\nc = 3\nd = 4\n"
    old = api.get(f"/v1/sessions/{sid}/snapshot", params={"at": cp}, expect=200)
    with tarfile.open(fileobj=io.BytesIO(old.content), mode="r:gz") as tar:
        assert "gone.txt" in tar.getnames()
    empty = api.session()["id"]
    with tarfile.open(
        fileobj=io.BytesIO(api.get(f"/v1/sessions/{empty}/snapshot").content), mode="r:gz"
    ) as tar:
        assert tar.getnames() == []


def test_diff_and_snapshot_isolation(client: Any, api: Api, other: Any, tenant: Any) -> None:
    sid, _cp = _setup(api)
    intruder = Api(client, other.admin)
    intruder.get(f"/v1/sessions/{sid}/diff", expect=404, code="not_found")
    intruder.get(f"/v1/sessions/{sid}/snapshot", expect=404, code="not_found")
    Api(client, tenant.read).get(f"/v1/sessions/{sid}/diff", expect=200)


def test_commits_and_summary(client: Any, api: Api, tenant: Any, other: Any) -> None:
    sid = api.session()["id"]
    put(api, sid, "src/app.py", b"a\nb\n")
    put(api, sid, "src/util.py", b"u\n")
    s = api.post(f"/v1/sessions/{sid}/generateCommitSummary", expect=200).json()
    assert s["summary"]["title"] == "Add src/app.py and 1 other file in src/"
    assert s["summary"]["body"] == "A src/app.py (+2 -0)\nA src/util.py (+1 -0)"
    assert (s["files"], s["additions"], s["deletions"]) == (2, 3, 0)
    first = api.post(f"/v1/sessions/{sid}/commit", {"message": "initial"}, expect=201).json()
    first = first["commit"]
    assert first["message"] == "initial" and first["parents"] == []
    assert first["author"] == {"name": "sessiond", "email": "sessiond@localhost"}
    ws = api.get(f"/v1/sessions/{sid}").json()["session"]["workspace"]
    assert first["tree"] == ws["head"] and len(first["id"]) == 40
    api.post(f"/v1/sessions/{sid}/commit", expect=409, code="conflict")  # nothing new
    none = api.post(f"/v1/sessions/{sid}/generateCommitSummary").json()
    assert none["summary"]["title"] == "No changes" and none["files"] == 0
    put(api, sid, "src/app.py", b"a\nB\nc\n")
    author = {"name": "Ada", "email": "ada@example.com"}
    second = api.post(f"/v1/sessions/{sid}/commit", {"author": author}, expect=201).json()
    second = second["commit"]
    assert second["parents"] == [first["id"]] and second["author"] == author
    assert second["message"] == "Update src/app.py\n\nM src/app.py (+2 -1)"
    listed = api.get(f"/v1/sessions/{sid}/commits", expect=200).json()
    assert [x["id"] for x in listed["commits"]] == [second["id"], first["id"]]
    assert listed["commits"][0] == second
    # commits work as diff endpoints and as ?at=
    d = api.get(f"/v1/sessions/{sid}/diff", params={"from": first["id"], "to": second["id"]})
    assert [f["path"] for f in d.json()["files"]] == ["src/app.py"]
    at = api.get(f"/v1/sessions/{sid}/files", params={"at": first["id"], "recursive": "true"})
    assert [e["path"] for e in at.json()["entries"]] == ["src/app.py", "src/util.py"]
    api.get(f"/v1/sessions/{sid}/diff", params={"from": "0" * 40}, expect=404)
    events = [e["type"] for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]]
    assert events.count("commit.created") == 2
    # a fork continues the branch
    child = api.post(f"/v1/sessions/{sid}/fork", expect=201).json()["session"]["id"]
    put(api, child, "child.txt", b"c\n")
    third = api.post(f"/v1/sessions/{child}/commit", {"message": "child"}, expect=201).json()
    assert third["commit"]["parents"] == [second["id"]]
    # roles, accounts, bad input
    Api(client, tenant.read).post(f"/v1/sessions/{sid}/commit", expect=403)
    Api(client, tenant.read).post(f"/v1/sessions/{sid}/generateCommitSummary", expect=200)
    Api(client, other.admin).get(f"/v1/sessions/{sid}/commits", expect=404)
    Api(client, other.admin).post(f"/v1/sessions/{sid}/commit", expect=404)
    api.post(f"/v1/sessions/{sid}/commit", {"message": "  "}, expect=422)
    api.post(f"/v1/sessions/{sid}/commit", {"author": {"name": "x"}}, expect=422)


@needs_git
def test_commit_objects_are_valid_git(client: Any, api: Api, tenant: Any, tmp_path: Path) -> None:
    """Write the commit's objects into a real repository and let git check them."""
    import zlib

    import sqlalchemy as sa

    from sessiond.db import tables as t

    sid = api.session()["id"]
    put(api, sid, "a/b.txt", b"hello\n")
    put(api, sid, "bin.dat", b"\x00\xff")
    c1 = api.post(f"/v1/sessions/{sid}/commit", {"message": "one"}, expect=201).json()
    put(api, sid, "a/b.txt", b"hello again\n")
    c2 = api.post(f"/v1/sessions/{sid}/commit", expect=201).json()["commit"]["id"]
    repo = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)

    def objects(tx: Any) -> list[Any]:
        g = t.git_objects
        return list(
            tx.conn.execute(
                sa.select(g.c.sha, g.c.type, g.c.data).where(g.c.account_id == tenant.account_id)
            )
        )

    names = {1: "commit", 2: "tree", 3: "blob"}
    for sha, kind, data in client.app.state.ctx.db.read_sync(objects):
        raw = zlib.decompress(data)
        done = subprocess.run(
            ["git", "hash-object", "-w", "--stdin", "-t", names[kind]],
            cwd=repo,
            input=raw,
            capture_output=True,
            check=True,
        )
        assert done.stdout.decode().strip() == sha
    subprocess.run(["git", "update-ref", "refs/heads/main", c2], cwd=repo, check=True)
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    log = subprocess.run(
        ["git", "log", "--format=%s", "main"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert log.stdout.split("\n")[:2] == ["Update a/b.txt", "one"]
    assert (
        c1["commit"]["id"]
        in subprocess.run(
            ["git", "rev-list", "main"], cwd=repo, capture_output=True, text=True
        ).stdout
    )
