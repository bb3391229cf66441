"""git over HTTP with the real git binary: clone, fsck, push, refusals, roles, accounts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sessiond.settings import Settings
from tests.support.api import Api, Tenant
from tests.support.live import Live, live_server

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git binary not installed")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


@pytest.fixture
def live(settings: Settings, tenant: Tenant) -> Iterator[Live]:
    with live_server(settings) as server:
        yield server


def git(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**GIT_ENV, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def url(live: Live, key: str, sid: str) -> str:
    host = live.url.removeprefix("http://")
    return f"http://git:{key}@{host}/v1/sessions/{sid}/git"


def test_clone_edit_push_read_back(live: Live, tenant: Tenant, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        files = {"README.md": "# hello\n", "src/app.py": "print(1)\n", "bin/tool.sh": "#!/bin/sh\n"}
        sid = api.post("/v1/sessions", {"source": {"files": files}}, expect=201).json()["session"][
            "id"
        ]
        api.put(f"/v1/sessions/{sid}/files/data.bin", content=b"\x00\x01\x02", expect=200)
        git("clone", "-q", url(live, tenant.read, sid), "repo", cwd=tmp_path)  # read keys clone
        repo = tmp_path / "repo"
        assert (repo / "src/app.py").read_text() == "print(1)\n"
        assert (repo / "data.bin").read_bytes() == b"\x00\x01\x02"
        git("fsck", "--strict", cwd=repo)
        assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo).stdout.strip() == "main"
        (repo / "src/app.py").write_text("print(2)\n")
        (repo / "new.txt").write_text("new\n")
        (repo / "README.md").unlink()
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "edited with git", cwd=repo)
        pushed_sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
        git("remote", "set-url", "origin", url(live, tenant.write, sid), cwd=repo)
        git("push", "-q", "origin", "main", cwd=repo)
        assert api.get(f"/v1/sessions/{sid}/files/src/app.py").content == b"print(2)\n"
        api.get(f"/v1/sessions/{sid}/files/README.md", expect=404)
        entries = api.get(f"/v1/sessions/{sid}/files", params={"recursive": "true"}).json()
        assert [e["path"] for e in entries["entries"]] == [
            "bin/tool.sh",
            "data.bin",
            "new.txt",
            "src/app.py",
        ]
        events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
        pushed = [
            e for e in events if e["type"] == "files.changed" and e["data"].get("reason") == "push"
        ]
        assert len(pushed) == 1
        assert pushed[0]["data"]["paths"] == ["README.md", "new.txt", "src/app.py"]
        commits = api.get(f"/v1/sessions/{sid}/commits").json()["commits"]
        assert commits[0]["id"] == pushed_sha and commits[0]["message"] == "edited with git"
        # a second clone sees the pushed history as is
        git("clone", "-q", url(live, tenant.write, sid), "again", cwd=tmp_path)
        assert git("rev-parse", "HEAD", cwd=tmp_path / "again").stdout.strip() == pushed_sha
        # pull after an API write
        api.put(f"/v1/sessions/{sid}/files/api.txt", content=b"from the API\n", expect=200)
        git("pull", "-q", "--ff-only", "origin", "main", cwd=repo)
        assert (repo / "api.txt").read_text() == "from the API\n"


def test_refusals(live: Live, tenant: Tenant, other: Tenant, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        sid = api.post("/v1/sessions", {"source": {"files": {"a.txt": "a\n"}}}, expect=201).json()[
            "session"
        ]["id"]
        git("clone", "-q", url(live, tenant.write, sid), "repo", cwd=tmp_path)
        repo = tmp_path / "repo"
        (repo / "a.txt").write_text("changed\n")
        git("commit", "-qam", "x", cwd=repo)
        other_ref = git("push", "origin", "main:refs/heads/feature", cwd=repo, ok=False)
        assert other_ref.returncode != 0 and "only main can be pushed" in other_ref.stderr
        git("remote", "set-url", "origin", url(live, tenant.read, sid), cwd=repo)
        read_only = git("push", "origin", "main", cwd=repo, ok=False)
        assert read_only.returncode != 0 and "403" in read_only.stderr
        foreign = git("clone", url(live, other.admin, sid), "x", cwd=tmp_path, ok=False)
        assert foreign.returncode != 0 and "not found" in foreign.stderr.lower()
        bare = git("clone", f"{live.url}/v1/sessions/{sid}/git", "y", cwd=tmp_path, ok=False)
        assert bare.returncode != 0
        # the working tree moved since the clone: the push is refused, nothing changes
        api.put(f"/v1/sessions/{sid}/files/a.txt", content=b"api edit\n", expect=200)
        git("remote", "set-url", "origin", url(live, tenant.write, sid), cwd=repo)
        stale = git("push", "origin", "main", cwd=repo, ok=False)
        assert stale.returncode != 0
        assert api.get(f"/v1/sessions/{sid}/files/a.txt").content == b"api edit\n"
        r = http.get(f"/v1/sessions/{sid}/git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        api.post(f"/v1/sessions/{sid}/close", expect=200)
        git("clone", "-q", url(live, tenant.read, sid), "closed", cwd=tmp_path)  # still readable
        (tmp_path / "closed" / "a.txt").write_text("late\n")
        git("commit", "-qam", "late", cwd=tmp_path / "closed")
        git("remote", "set-url", "origin", url(live, tenant.write, sid), cwd=tmp_path / "closed")
        late = git("push", "origin", "main", cwd=tmp_path / "closed", ok=False)
        assert late.returncode != 0 and "accepts no pushes" in late.stderr
