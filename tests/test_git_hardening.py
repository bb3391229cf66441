"""git push hardening: every pushed tree follows the workspace path rules (nothing written
otherwise), merges and snapshots apply the same rules, and pushes over git's 1 MiB
``http.postBuffer`` (sent chunked) work with git's default settings."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Blob, ObjectID, ShaFile, Tree
from fastapi.testclient import TestClient

from sessiond.db.executor import Tx
from sessiond.errors import InvalidPath
from sessiond.files.objects import ObjectStore
from sessiond.files.paths import check_tree
from sessiond.sessions import kernel
from sessiond.settings import Settings
from tests.support.api import Api, Tenant
from tests.support.live import Live, live_server
from tests.test_git import git, url

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git binary not installed")

FILE, EXEC, LINK, DIR = "100644", "100755", "120000", "40000"
Spec = list[tuple[str, bytes, Any]]  # (mode, name, blob content | nested Spec | hex sha)


@pytest.fixture
def live(settings: Settings, tenant: Tenant) -> Iterator[Live]:
    with live_server(settings) as server:
        yield server


# -- the bad trees, each with the message the push must be refused with -------------------

OK: Spec = [(FILE, b"ok.txt", b"fine\n")]
BAD_TREES: dict[str, tuple[Spec, str]] = {
    "dotdot_dir": ([(DIR, b"..", [(FILE, b"escape", b"x")])], "path ..: must not contain a .."),
    "dotdot_slash_name": ([(FILE, b"../escape", b"x")], "path ../escape: a name must not"),
    "backslash": ([(FILE, b"..\\escape", b"x")], "path ..\\escape: must use / as separator"),
    "dot_slash_name": ([(FILE, b"./escape", b"x")], "path ./escape: a name must not contain /"),
    "dot_name": ([(FILE, b".", b"x")], "path .: must be normalized"),
    "git_hooks": (
        [(DIR, b".git", [(DIR, b"hooks", [(EXEC, b"x", b"#!/bin/sh\n")])])],
        "path .git: must not be inside .git",
    ),
    "git_upper": ([(DIR, b".GIT", [(FILE, b"config", b"x")])], "path .GIT: must not be inside"),
    "git_in_subdir": (
        [(DIR, b"sub", [(DIR, b".git", [(FILE, b"config", b"x")])])],
        "path sub/.git: must not be inside .git",
    ),
    "git_file": ([(FILE, b".git", b"gitdir: /tmp\n")], "path .git: must not be inside .git"),
    "long_name": ([(FILE, b"n" * 300, b"x")], f"path {'n' * 300}: a name is at most 255 bytes"),
    "slash_name": ([(FILE, b"a/b", b"x")], "path a/b: a name must not contain /"),
    "invalid_utf8": ([(FILE, b"caf\xe9", b"x")], "path b'caf\\xe9': must be valid UTF-8"),
    "link_absolute": ([(LINK, b"link", b"/etc")], "symlink target /etc must be relative"),
    "link_climbs": (
        [(LINK, b"link", b"../../../../../../tmp")],
        "path link: symlink target ../../../../../../tmp points outside the workspace",
    ),
    "link_climbs_from_subdir": (
        [(DIR, b"sub", [(LINK, b"link", b"../../x")])],
        "path sub/link: symlink target ../../x points outside",
    ),
    "link_climbs_after_name": (
        [(DIR, b"sub", [(LINK, b"link", b"a/../../x")])],
        "path sub/link: symlink target a/../../x may use .. only at its start",
    ),
    "link_chain": (  # sub/up -> .. is the root; x -> sub/up/.. would be the root's parent
        [(DIR, b"sub", [(LINK, b"up", b"..")]), (LINK, b"x", b"sub/up/..")],
        "path x: symlink target sub/up/.. may use .. only at its start",
    ),
    "link_empty": ([(LINK, b"link", b"")], "path link: a symlink target must not be empty"),
    "link_nul": ([(LINK, b"link", b"a\x00b")], "path link: a symlink target must not contain NUL"),
    "link_into_git": ([(LINK, b"link", b".git/config")], "must not point into .git"),
    "gitlink": ([("160000", b"mod", "1" * 40)], "path mod: mode 160000 is not allowed"),
    "mode_664": ([("100664", b"f", b"x")], "path f: mode 100664 is not allowed"),
    "duplicate": (
        [(FILE, b"d", b"x"), (LINK, b"d", b"/etc")],
        "the root tree: the tree is not in git's form",
    ),
}
# Not representable in a git tree (git ends a name at NUL, refuses to walk an empty one):
# checked on in-memory trees only.
MEMORY_ONLY: dict[str, tuple[Spec, str]] = {
    "nul_name": ([(FILE, b"a\x00b", b"x")], "path b'a\\x00b': must not contain NUL"),
    "empty_name": ([(FILE, b"", b"x")], "path b'': must not be empty"),
}
GOOD_TREE: Spec = [
    (FILE, b"top.txt", b"top\n"),
    (LINK, b"link", b"sub/file"),
    (
        DIR,
        b"sub",
        [(FILE, b"file", b"in sub\n"), (LINK, b"up", b"../top.txt"), (LINK, b"me", b".")],
    ),
    (EXEC, b"tool.sh", b"#!/bin/sh\n"),
]


def _order(spec: Spec) -> Spec:
    """git's tree order: a directory sorts as if its name ended in /."""
    return sorted(spec, key=lambda e: e[1] + b"/" if e[0] == DIR else e[1])


def build(spec: Spec, put: Callable[[ShaFile], object]) -> str:
    """Store the tree ``spec`` (raw, so any name goes) with ``put``; its sha."""
    raw = b""
    for mode, name, value in _order(spec):
        if isinstance(value, list):
            sha = build(value, put)
        elif isinstance(value, bytes):
            blob = Blob.from_string(value)
            put(blob)
            sha = blob.id.decode()
        else:
            sha = value
        raw += mode.encode() + b" " + name + b"\x00" + bytes.fromhex(sha)
    tree = Tree.from_raw_string(Tree.type_num, raw)
    put(tree)
    return str(tree.id.decode())


def build_in_memory(spec: Spec) -> tuple[dict[str, ShaFile], str]:
    """Tree ``spec`` as dulwich objects in memory (names that no raw tree can hold)."""
    objects: dict[str, ShaFile] = {}

    def add(spec: Spec) -> str:
        tree = Tree()
        for mode, name, value in spec:
            if isinstance(value, list):
                sha = add(value)
            else:
                blob = Blob.from_string(value)
                objects[blob.id.decode()] = blob
                sha = blob.id.decode()
            tree.add(name, int(mode, 8), sha.encode())
        objects[tree.id.decode()] = tree
        return str(tree.id.decode())

    return objects, add(spec)


# -- check_tree on its own ----------------------------------------------------------------


def _memory_store(spec: Spec) -> tuple[Callable[[str], ShaFile], str]:
    store = MemoryObjectStore()
    root = build(spec, store.add_object)
    return lambda sha: store[ObjectID(sha.encode())], root


@pytest.mark.parametrize("case", sorted(BAD_TREES))
def test_check_tree_refuses(case: str) -> None:
    spec, message = BAD_TREES[case]
    get, root = _memory_store(OK + spec)
    with pytest.raises(InvalidPath) as caught:
        check_tree(get, root)
    assert message in caught.value.message


@pytest.mark.parametrize("case", sorted(MEMORY_ONLY))
def test_check_tree_refuses_in_memory_names(case: str) -> None:
    spec, message = MEMORY_ONLY[case]
    objects, root = build_in_memory(OK + spec)
    with pytest.raises(InvalidPath) as caught:
        check_tree(objects.__getitem__, root)
    assert message in caught.value.message


def test_check_tree_accepts_links_inside_and_refuses_a_missing_subtree() -> None:
    get, root = _memory_store(GOOD_TREE)
    check_tree(get, root)
    get, root = _memory_store([(DIR, b"gone", "2" * 40)])
    with pytest.raises(InvalidPath, match=f"path gone: object {'2' * 40} is missing"):
        check_tree(get, root)


def test_check_tree_refuses_a_missing_file_when_told_what_exists() -> None:
    """A pushed pack may name file objects it never sent: the push must not land."""
    get, root = _memory_store([(FILE, b"ghost.txt", "3" * 40)])
    check_tree(get, root)  # without ``has`` only trees and symlinks are read

    def has(sha: str) -> bool:
        try:
            get(sha)
        except KeyError:
            return False
        return True

    with pytest.raises(InvalidPath, match=f"path ghost.txt: object {'3' * 40} is missing"):
        check_tree(get, root, has=has)
    get, root = _memory_store(GOOD_TREE)
    check_tree(get, root, has=has)


def test_check_tree_reads_the_database_store(client: TestClient, tenant: Tenant) -> None:
    """The same check over the database ``ObjectStore`` (both backends)."""

    def run(tx: Tx, spec: Spec) -> None:
        store = ObjectStore(tx, tenant.account_id)
        root = build(spec, lambda obj: store.add([obj]))
        check_tree(store.get, root)

    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    db.write_sync(run, GOOD_TREE)
    with pytest.raises(
        InvalidPath, match=r"path sub/link: symlink target \.\./\.\./x points outside"
    ):
        db.write_sync(run, OK + BAD_TREES["link_climbs_from_subdir"][0])


# -- git push -----------------------------------------------------------------------------


def write_tree(repo: Path, spec: Spec) -> str:
    """Tree ``spec`` written into ``repo`` with ``git hash-object --literally`` (which,
    unlike ``git mktree``, takes any name and mode)."""
    raw = b""
    for mode, name, value in _order(spec):
        if isinstance(value, list):
            sha = write_tree(repo, value)
        elif isinstance(value, bytes):
            (repo / ".git" / "obj").write_bytes(value)
            sha = git("hash-object", "-w", ".git/obj", cwd=repo).stdout.strip()
        else:
            sha = value
        raw += mode.encode() + b" " + name + b"\x00" + bytes.fromhex(sha)
    (repo / ".git" / "obj").write_bytes(raw)
    args = ("hash-object", "-t", "tree", "--literally", "-w", ".git/obj")
    return git(*args, cwd=repo).stdout.strip()


def commit(repo: Path, tree: str, parent: str, message: str) -> str:
    return git("commit-tree", tree, "-p", parent, "-m", message, cwd=repo).stdout.strip()


def state(api: Api, sid: str) -> dict[str, Any]:
    """What a refused push must leave as it was."""
    return {
        "files": api.get(f"/v1/sessions/{sid}/files", params={"recursive": "true"}).json(),
        "commits": api.get(f"/v1/sessions/{sid}/commits").json(),
        "events": api.get(f"/v1/sessions/{sid}/events").json(),
        "workspace": api.get(f"/v1/sessions/{sid}").json()["session"]["workspace"],
    }


def cloned_session(live: Live, api: Api, key: str, tmp_path: Path) -> tuple[str, Path]:
    sid = api.post("/v1/sessions", {"source": {"files": {"ok.txt": "fine\n"}}}, expect=201)
    session_id = str(sid.json()["session"]["id"])
    git("clone", "-q", url(live, key, session_id), "repo", cwd=tmp_path)
    return session_id, tmp_path / "repo"


def test_push_refuses_every_bad_tree(live: Live, tenant: Tenant, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        sid, repo = cloned_session(live, api, tenant.write, tmp_path)
        head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
        before = state(api, sid)
        pushes = {
            case: commit(repo, write_tree(repo, OK + spec), head, case)
            for case, (spec, _) in BAD_TREES.items()
        }
        # a bad tree anywhere in the pushed history, under a clean commit
        bad = commit(repo, write_tree(repo, OK + BAD_TREES["dotdot_dir"][0]), head, "bad")
        clean_on_top = commit(repo, write_tree(repo, [*OK, (FILE, b"b.txt", b"b")]), bad, "ok")
        expected = {case: message for case, (_, message) in BAD_TREES.items()}
        pushes["bad_in_history"] = clean_on_top
        expected["bad_in_history"] = BAD_TREES["dotdot_dir"][1]
        for case, sha in pushes.items():
            done = git("push", "origin", f"{sha}:refs/heads/main", cwd=repo, ok=False)
            assert done.returncode != 0, case
            assert "[remote rejected]" in done.stderr, (case, done.stderr)
            assert "(refused: " in done.stderr and expected[case] in done.stderr, (
                case,
                done.stderr,
            )
        assert state(api, sid) == before
        git("clone", "-q", url(live, tenant.read, sid), "again", cwd=tmp_path)
        assert git("rev-parse", "HEAD", cwd=tmp_path / "again").stdout.strip() == head


def test_push_of_a_clean_tree_with_links_inside(live: Live, tenant: Tenant, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        sid, repo = cloned_session(live, api, tenant.write, tmp_path)
        head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
        pushed = commit(repo, write_tree(repo, GOOD_TREE), head, "links inside")
        git("push", "-q", "origin", f"{pushed}:refs/heads/main", cwd=repo)
        entries = api.get(f"/v1/sessions/{sid}/files", params={"recursive": "true"}).json()
        kinds = {e["path"]: e["type"] for e in entries["entries"]}
        assert kinds == {
            "link": "symlink",
            "sub/file": "file",
            "sub/me": "symlink",
            "sub/up": "symlink",
            "tool.sh": "file",
            "top.txt": "file",
        }
        assert api.get(f"/v1/sessions/{sid}/commits").json()["commits"][0]["id"] == pushed
        git("clone", "-q", url(live, tenant.read, sid), "again", cwd=tmp_path)
        again = tmp_path / "again"
        git("fsck", "--strict", cwd=again)
        assert os.readlink(again / "link") == "sub/file"
        assert (again / "sub" / "up").read_text() == "top\n"


def test_push_over_the_post_buffer_with_git_defaults(
    live: Live, tenant: Tenant, tmp_path: Path
) -> None:
    """~3 MiB of incompressible data: git sends the pack chunked (over http.postBuffer)."""
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        sid, repo = cloned_session(live, api, tenant.write, tmp_path)
        data = os.urandom(3 * 1024 * 1024)
        (repo / "big.bin").write_bytes(data)
        git("add", "big.bin", cwd=repo)
        git("commit", "-qm", "big", cwd=repo)
        git("push", "-q", "origin", "main", cwd=repo)
        got = api.get(f"/v1/sessions/{sid}/files/big.bin", expect=200).content
        assert len(got) == len(data) and got == data


# -- merge and snapshot of trees stored before the rules ----------------------------------


def plant(client: TestClient, tenant: Tenant, sid: str, spec: Spec) -> None:
    """Make tree ``spec`` the session's working tree directly in the database, as a tree
    that came in before every tree followed the path rules would be."""

    def run(tx: Tx) -> None:
        store = ObjectStore(tx, tenant.account_id)
        root = build(spec, lambda obj: store.add([obj]))
        row = kernel.load_for_write(tx, tenant.account_id, sid)
        kernel.write_fields(tx, row, {"workspace": dict(row["workspace"], head=root)})

    client.app.state.ctx.db.write_sync(run)  # type: ignore[attr-defined]


def test_merge_refuses_a_source_tree_from_before_the_rules(
    client: TestClient, tenant: Tenant, api: Api
) -> None:
    parent = api.session(source={"files": {"ok.txt": "fine\n"}})["id"]
    child = api.post(f"/v1/sessions/{parent}/fork", expect=201).json()["session"]["id"]
    plant(client, tenant, child, OK + BAD_TREES["dotdot_dir"][0])
    before = state(api, parent)
    r = api.post(f"/v1/sessions/{child}:merge", {"strategy": "theirs"}, expect=422)
    assert r.json()["code"] == "invalid_path"
    assert "path ../escape: must not contain a .. segment" in r.json()["error"]
    assert state(api, parent) == before


def test_merge_cannot_turn_a_symlink_into_an_escape(
    live: Live, tenant: Tenant, tmp_path: Path
) -> None:
    """Our ``l`` is a symlink, their ``l`` a file holding ``../../../etc``: resolving the
    conflict with their text keeps our mode, which would make a symlink out."""
    with httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        parent, repo = cloned_session(live, api, tenant.write, tmp_path)
        head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
        base = commit(repo, write_tree(repo, [*OK, (LINK, b"l", b"ok.txt")]), head, "base")
        git("push", "-q", "origin", f"{base}:refs/heads/main", cwd=repo)
        child = api.post(f"/v1/sessions/{parent}/fork", expect=201).json()["session"]["id"]
        ours = commit(repo, write_tree(repo, [*OK, (LINK, b"l", b"ok")]), base, "ours")
        git("push", "-q", "origin", f"{ours}:refs/heads/main", cwd=repo)
        git("clone", "-q", url(live, tenant.write, child), "child", cwd=tmp_path)
        fork = tmp_path / "child"
        theirs_tree = write_tree(fork, [*OK, (FILE, b"l", b"../../../etc")])
        theirs = commit(fork, theirs_tree, git("rev-parse", "HEAD", cwd=fork).stdout.strip(), "t")
        git("push", "-q", "origin", f"{theirs}:refs/heads/main", cwd=fork)
        before = state(api, parent)
        r = api.post(f"/v1/sessions/{child}:merge", {"strategy": "theirs"}, expect=422)
        assert "path l: symlink target ../../../etc points outside" in r.json()["error"]
        assert state(api, parent) == before


def test_snapshot_leaves_out_what_would_extract_outside(
    client: TestClient, tenant: Tenant, api: Api
) -> None:
    sid = api.session(source={"files": {"ok.txt": "fine\n"}})["id"]
    plant(client, tenant, sid, GOOD_TREE)
    assert snapshot(api, sid) == {
        "link": "sub/file",
        "sub/file": "",
        "sub/me": ".",
        "sub/up": "../top.txt",
        "tool.sh": "",
        "top.txt": "",
    }
    kept = {"slash_name": {"a/b": ""}, "link_chain": {"sub/up": ".."}}  # inside the root
    for case, (spec, _) in BAD_TREES.items():
        plant(client, tenant, sid, OK + spec)
        assert snapshot(api, sid) == {"ok.txt": "", **kept.get(case, {})}, case


def snapshot(api: Api, sid: str) -> dict[str, str]:
    """The snapshot's members: name → symlink target (empty for a file)."""
    r = api.get(f"/v1/sessions/{sid}/snapshot", expect=200)
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        return {m.name: m.linkname for m in tar.getmembers()}
