"""Git sources and push against real repositories: a bare repository made with the real
``git`` (``file://``) and one served by ``git http-backend`` over HTTP with basic auth;
every pushed branch is checked with the real ``git``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support.api import Api
from tests.support.git_http import GitHttpServer, http_backend

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=GIT_ENV, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``repos/project.git``: main with two commits and a tag v1 on the first; HEAD →
    main."""
    repos = tmp_path_factory.mktemp("repos")
    bare = repos / "project.git"
    git("init", "--bare", "-b", "main", str(bare))
    work = repos / "work"
    git("clone", str(bare), str(work))
    (work / "README.md").write_text("# project\n")
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("print('v1')\n")
    git("add", "-A", cwd=work)
    git("commit", "-m", "first", cwd=work)
    git("tag", "v1", cwd=work)
    (work / "src" / "app.py").write_text("print('v2')\n")
    git("commit", "-am", "second", cwd=work)
    git("push", "origin", "main", "--tags", cwd=work)
    return bare


@pytest.fixture
def git_client(settings: Settings, upstream: Path) -> Iterator[TestClient]:
    roots = settings.model_copy(update={"git_file_roots": [upstream.parent]})
    with TestClient(create_app(roots), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def gapi(git_client: TestClient) -> Api:
    secret = git_client.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
    return Api(git_client, secret)


def _file(api: Api, sid: str, path: str) -> bytes:
    return api.get(f"/v1/sessions/{sid}/files/{path}").content


def _count(api: Api) -> int:
    return len(api.get("/v1/sessions", params={"limit": 200}).json()["sessions"])


def test_a_session_starts_from_a_repository_and_pushes_a_new_branch(
    gapi: Api, upstream: Path, tmp_path: Path
) -> None:
    url = f"file://{upstream}"
    head = git("--git-dir", str(upstream), "rev-parse", "main")
    session = gapi.post("/v1/sessions", {"source": {"git": {"url": url}}}, expect=201).json()
    session = session["session"]
    sid = session["id"]
    assert session["repo"]["url"] == url and session["repo"]["commit"] == head
    assert session["repo"]["ref"] is None and session["repo"]["branch"] is None
    assert session["workspace"]["head"] == session["workspace"]["base"]
    assert session["workspace"]["head"] == git(
        "--git-dir", str(upstream), "rev-parse", "main^{tree}"
    )
    assert _file(gapi, sid, "src/app.py") == b"print('v2')\n"
    # Nothing to push before a commit.
    gapi.post(f"/v1/sessions/{sid}/push", {}, expect=409, code="conflict")
    gapi.put(f"/v1/sessions/{sid}/files/src/app.py", content=b"print('v3')\n", expect=200)
    r = gapi.post(f"/v1/sessions/{sid}/commit", {"message": "v3", "push": True}, expect=201)
    pushed = r.json()["push"]
    branch = f"sessiond/{sid}"
    assert pushed == {"branch": branch, "commit": r.json()["commit"]["id"], "remote": url}
    # The real git sees the branch: our commit on top of main, with our file.
    assert git("--git-dir", str(upstream), "rev-parse", branch) == pushed["commit"]
    assert git("--git-dir", str(upstream), "rev-parse", f"{branch}^") == head
    check = tmp_path / "check"
    git("clone", "-b", branch, url, str(check))
    assert (check / "src" / "app.py").read_text() == "print('v3')\n"
    assert (check / "README.md").read_text() == "# project\n"
    repo = gapi.get(f"/v1/sessions/{sid}").json()["session"]["repo"]
    assert repo["branch"] == branch and repo["isNewBranch"] is True
    # A second commit goes to the same branch (a fast-forward).
    gapi.put(f"/v1/sessions/{sid}/files/NEW.md", content=b"new\n", expect=200)
    r = gapi.post(f"/v1/sessions/{sid}/commit", {"push": True}, expect=201)
    assert git("--git-dir", str(upstream), "rev-parse", branch) == r.json()["commit"]["id"]
    events = gapi.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).json()["events"]
    assert [e["data"]["isNewBranch"] for e in events if e["type"] == "repo.pushed"] == [True, False]


def test_refs_branches_tags_and_commits(gapi: Api, upstream: Path) -> None:
    url = f"file://{upstream}"
    first = git("--git-dir", str(upstream), "rev-parse", "v1^{commit}")
    for ref, expected in (
        ("main", b"print('v2')\n"),
        ("v1", b"print('v1')\n"),
        (first[:10], b"print('v1')\n"),
        (first, b"print('v1')\n"),
        ("refs/tags/v1", b"print('v1')\n"),
    ):
        body = {"source": {"git": {"url": url, "ref": ref}}}
        session = gapi.post("/v1/sessions", body, expect=201).json()["session"]
        assert _file(gapi, session["id"], "src/app.py") == expected, ref
        assert session["repo"]["ref"] == ref
    before = _count(gapi)
    for ref in ("nope", "0000000", "refs/heads/nope"):
        gapi.post(
            "/v1/sessions",
            {"source": {"git": {"url": url, "ref": ref}}},
            expect=422,
            code="validation_error",
        )
    assert _count(gapi) == before


def test_bad_sources_are_refused(gapi: Api, upstream: Path, tmp_path: Path) -> None:
    before = _count(gapi)
    outside = tmp_path / "outside.git"
    git("init", "--bare", str(outside))
    for body, code in (
        ({"git": {"url": f"file://{outside}"}}, "validation_error"),  # not under the roots
        ({"git": {"url": "https://user:secret@example.com/x.git"}}, "validation_error"),
        ({"git": {"url": "ssh://example.com/x.git"}}, "validation_error"),
        ({"git": {"url": "file:///etc"}}, "validation_error"),
        ({"git": {"url": f"file://{upstream}", "extra": 1}}, "validation_error"),
        ({"git": {"url": f"file://{upstream}"}, "files": {}}, "validation_error"),
        ({"git": "x"}, "validation_error"),
    ):
        gapi.post("/v1/sessions", {"source": body}, expect=422, code=code)
    # An unreachable remote is the upstream's fault.
    gapi.post(
        "/v1/sessions",
        {"source": {"git": {"url": "http://127.0.0.1:9/x.git"}}},
        expect=502,
        code="upstream_error",
    )
    gapi.post(
        "/v1/sessions",
        {"source": {"git": {"url": f"file://{upstream.parent}/nope.git"}}},
        expect=502,
        code="upstream_error",
    )
    assert _count(gapi) == before


@pytest.mark.parametrize("entry", [".git", "..", "link"])
def test_a_tree_that_breaks_the_path_rules_creates_nothing(
    gapi: Api, upstream: Path, entry: str
) -> None:
    repo = Repo(str(upstream))
    blob = Blob.from_string(b"/etc/passwd" if entry == "link" else b"x")
    inner = Tree()
    inner.add(b"config", 0o100644, blob.id)
    root = Tree()
    if entry == "link":
        root.add(b"link", 0o120000, blob.id)  # a symlink that leaves the tree
    else:
        root.add(entry.encode(), 0o040000, inner.id)
    commit = Commit()
    commit.tree, commit.parents = root.id, [repo.refs[b"refs/heads/main"]]
    commit.author = commit.committer = b"t <t@example.com>"
    commit.commit_time = commit.author_time = 1_700_000_000
    commit.commit_timezone = commit.author_timezone = 0
    commit.message = b"bad\n"
    for obj in (blob, inner, root, commit):
        repo.object_store.add_object(obj)
    repo.refs[b"refs/heads/bad"] = commit.id
    before = _count(gapi)
    body = {"source": {"git": {"url": f"file://{upstream}", "ref": "bad"}}}
    gapi.post("/v1/sessions", body, expect=422, code="invalid_path")
    assert _count(gapi) == before


def test_rejected_pushes_lose_nothing(gapi: Api, upstream: Path, tmp_path: Path) -> None:
    url = f"file://{upstream}"
    sid = gapi.post(
        "/v1/sessions", {"source": {"git": {"url": url, "ref": "main"}}}, expect=201
    ).json()["session"]["id"]
    # Someone else pushes to main meanwhile.
    other = tmp_path / "other"
    git("clone", url, str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git("add", "-A", cwd=other)
    git("commit", "-m", "theirs", cwd=other)
    git("push", "origin", "main", cwd=other)
    theirs = git("--git-dir", str(upstream), "rev-parse", "main")
    gapi.put(f"/v1/sessions/{sid}/files/mine.txt", content=b"mine\n", expect=200)
    r = gapi.post(
        f"/v1/sessions/{sid}/commit",
        {"push": True, "branch": "main"},
        expect=409,
        code="push_rejected",
    )
    assert "non-fast-forward" in r.json()["error"]
    assert git("--git-dir", str(upstream), "rev-parse", "main") == theirs
    commits = gapi.get(f"/v1/sessions/{sid}/commits").json()["commits"]
    assert len(commits) == 1  # the commit stays
    # A protected branch (refused by the remote's hook), then another branch works.
    hook = upstream / "hooks" / "update"
    hook.write_text(
        '#!/bin/sh\nif [ "$1" = refs/heads/protected ]; then\n'
        '  echo "protected branch" >&2; exit 1\nfi\nexit 0\n'
    )
    hook.chmod(0o755)
    r = gapi.post(
        f"/v1/sessions/{sid}/push", {"branch": "protected"}, expect=409, code="push_rejected"
    )
    gapi.post(f"/v1/sessions/{sid}/push", {"branch": "bad..name"}, expect=422)
    r = gapi.post(f"/v1/sessions/{sid}/push", {"branch": "feature/mine"}, expect=200)
    assert r.json()["push"]["commit"] == commits[0]["id"]
    assert git("--git-dir", str(upstream), "rev-parse", "feature/mine") == commits[0]["id"]
    # A fast-forward of main works when main did not move: a fresh session.
    sid2 = gapi.post(
        "/v1/sessions", {"source": {"git": {"url": url, "ref": "main"}}}, expect=201
    ).json()["session"]["id"]
    gapi.put(f"/v1/sessions/{sid2}/files/ff.txt", content=b"ff\n", expect=200)
    r = gapi.post(f"/v1/sessions/{sid2}/commit", {"push": True, "branch": "main"}, expect=201)
    assert git("--git-dir", str(upstream), "rev-parse", "main") == r.json()["commit"]["id"]
    assert r.json()["push"]["branch"] == "main"


def test_over_http_with_credentials(settings: Settings, upstream: Path, tmp_path: Path) -> None:
    if http_backend() is None:
        pytest.skip("git http-backend not found")
    git("--git-dir", str(upstream), "config", "http.receivepack", "true")
    store = tmp_path / "credentials"
    with GitHttpServer(upstream.parent, auth=("alice", "s3cret")) as server:
        url = server.url("project.git")
        store.write_text(f"http://alice:s3cret@127.0.0.1:{server.port}\n")
        without = settings.model_copy(update={"git_credentials": None})
        with TestClient(create_app(without), raise_server_exceptions=False) as client:
            secret = client.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
            api = Api(client, secret)
            r = api.post(
                "/v1/sessions", {"source": {"git": {"url": url}}}, expect=502, code="upstream_error"
            )
            assert "credentials" in r.json()["error"]
        with_creds = settings.model_copy(update={"git_credentials": store})
        with TestClient(create_app(with_creds), raise_server_exceptions=False) as client:
            api = Api(client, secret)
            session = api.post("/v1/sessions", {"source": {"git": {"url": url}}}, expect=201)
            sid = session.json()["session"]["id"]
            assert _file(api, sid, "README.md") == b"# project\n"
            api.put(f"/v1/sessions/{sid}/files/http.txt", content=b"over http\n", expect=200)
            r = api.post(f"/v1/sessions/{sid}/commit", {"push": True}, expect=201)
            branch = r.json()["push"]["branch"]
        assert git("--git-dir", str(upstream), "rev-parse", branch) == r.json()["commit"]["id"]
        check = tmp_path / "check"
        git("clone", "-b", branch, f"file://{upstream}", str(check))
        assert (check / "http.txt").read_text() == "over http\n"


def test_read_keys_and_other_accounts(gapi: Api, git_client: TestClient, upstream: Path) -> None:
    from tests.support.api import make_tenant

    url = f"file://{upstream}"
    sid = gapi.post("/v1/sessions", {"source": {"git": {"url": url}}}, expect=201).json()
    sid = sid["session"]["id"]
    gapi.put(f"/v1/sessions/{sid}/files/x.txt", content=b"x\n", expect=200)
    gapi.post(f"/v1/sessions/{sid}/commit", {}, expect=201)
    tenant = make_tenant(git_client, "default", admin_secret=gapi.key)
    tenant.api(git_client, "read").post(f"/v1/sessions/{sid}/push", {}, expect=403)
    other = make_tenant(git_client, "other").api(git_client)
    other.post(f"/v1/sessions/{sid}/push", {}, expect=404, code="not_found")
    assert "sessiond/" not in git("--git-dir", str(upstream), "branch", "--list")
