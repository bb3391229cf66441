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
