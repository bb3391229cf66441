"""Sandboxes over HTTP: exec, what a sync saves and skips, hibernation and restore, and
the confinement (bubblewrap) tried from inside — every escape attempt must fail."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.settings import Settings
from tests.support.api import Api

# Forks up to 200 children (bounded: a broken limit cannot hurt the machine) and prints
# how many it got.
PERL_BOMB = (
    "my $n = 0; for (1..200) { my $pid = fork(); last unless defined $pid;"
    " if ($pid == 0) { sleep 3; exit 0 } $n++ } print $n;"
)


def _exec(api: Api, sid: str, command: Any, expect: int = 200, **body: Any) -> dict[str, Any]:
    r = api.post(f"/v1/sessions/{sid}/exec", {"command": command, **body}, expect=expect)
    return r.json()  # type: ignore[no-any-return]


def _session(api: Api, sid: str) -> dict[str, Any]:
    return api.get(f"/v1/sessions/{sid}").json()["session"]  # type: ignore[no-any-return]


def _events(api: Api, sid: str) -> list[dict[str, Any]]:
    url = f"/v1/sessions/{sid}/events"
    return api.get(url, params={"limit": 200}).json()["events"]  # type: ignore[no-any-return]


def _ctx(client: TestClient) -> Any:
    return client.app.state.ctx  # type: ignore[attr-defined]


@pytest.fixture
def bwrap(client: TestClient) -> None:
    """The test needs bubblewrap in force: skipped without it, except under CI."""
    confinement = _ctx(client).sandboxes.confinement
    if confinement.mode != "bwrap":
        message = f"bubblewrap is not in force here: {confinement.reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_exec_runs_in_the_sandbox_and_saves_what_it_changed(api: Api) -> None:
    sid = api.session()["id"]
    api.put(f"/v1/sessions/{sid}/files/a.txt", content=b"one\n", expect=200)
    out = _exec(api, sid, ["cat", "a.txt"])
    assert out["exitCode"] == 0 and out["stdout"] == "one\n" and out["signal"] is None
    assert out["filesChanged"] == [] and out["timedOut"] is False and out["durationMs"] >= 0
    assert _session(api, sid)["sandbox"]["state"] == "active"
    out = _exec(api, sid, "mkdir -p src && echo hi > src/b.txt && rm a.txt && echo done")
    assert out["stdout"] == "done\n"
    assert out["filesChanged"] == ["a.txt", "src/b.txt"]
    assert api.get(f"/v1/sessions/{sid}/files/src/b.txt").content == b"hi\n"
    api.get(f"/v1/sessions/{sid}/files/a.txt", expect=404)
    changed = [e for e in _events(api, sid) if e["type"] == "files.changed"]
    assert changed[-1]["data"]["reason"] == "exec"
    # stdin, env, cwd, a failing command
    out = _exec(
        api,
        sid,
        ["sh", "-c", "cat; echo $GREETING; pwd"],
        stdin="in\n",
        env={"GREETING": "hello"},
        cwd="src",
    )
    assert out["stdout"].splitlines()[:2] == ["in", "hello"]
    assert out["stdout"].splitlines()[2].endswith("/work/src")
    out = _exec(api, sid, "echo oops >&2; exit 3")
    assert out["exitCode"] == 3 and out["stderr"] == "oops\n"
    # the private HOME is not part of the working tree
    out = _exec(api, sid, 'echo x > "$HOME/state" && echo "$HOME"')
    assert out["filesChanged"] == [] and out["stdout"].strip().endswith("/home")


def test_exec_refuses_bad_input(api: Api, client: TestClient, tenant: Any, other: Any) -> None:
    sid = api.session()["id"]
    for body in (
        {"command": []},
        {"command": [""]},
        {"command": ["ls"], "timeoutSeconds": 0},
        {"command": ["ls"], "timeoutSeconds": 3601},
        {"command": ["ls"], "env": {"A=B": "x"}},
        {"command": "ls", "extra": 1},
        {"command": ["ls", "a\x00b"]},
    ):
        api.post(f"/v1/sessions/{sid}/exec", body, expect=422, code="validation_error")
    for cwd in ("..", "../..", "/etc", "/"):
        api.post(
            f"/v1/sessions/{sid}/exec",
            {"command": ["ls"], "cwd": cwd},
            expect=422,
            code="invalid_path",
        )
    _exec(api, sid, "ln -s /etc out && mkdir -p d && ln -s .. d/up")
    for cwd in ("out", "d/up/..", "nope"):
        api.post(
            f"/v1/sessions/{sid}/exec",
            {"command": ["ls"], "cwd": cwd},
            expect=422,
            code="invalid_path",
        )
    tenant.api(client, "read").post(f"/v1/sessions/{sid}/exec", {"command": ["true"]}, expect=403)
    theirs = other.api(client)
    theirs.post(f"/v1/sessions/{sid}/exec", {"command": ["true"]}, expect=404, code="not_found")
    theirs.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=404, code="not_found")
    theirs.post(f"/v1/sessions/{sid}/sandbox:restore", expect=404, code="not_found")
    api.post("/v1/sessions/ses_nope/exec", {"command": ["true"]}, expect=404, code="not_found")
    api.post(f"/v1/sessions/{sid}/close", {}, expect=200)
    api.post(
        f"/v1/sessions/{sid}/exec", {"command": ["true"]}, expect=409, code="session_not_active"
    )


def test_timeouts_and_output_caps(api: Api, settings: Settings) -> None:
    sid = api.session()["id"]
    started = time.monotonic()
    out = _exec(api, sid, "sleep 30", timeoutSeconds=1)
    assert out["timedOut"] is True and out["exitCode"] is None and out["signal"] is not None
    # A command that ignores SIGTERM is killed 2 s later.
    out = _exec(api, sid, ["sh", "-c", "trap '' TERM; echo up; sleep 30"], timeoutSeconds=1)
    assert out["timedOut"] is True and out["stdout"] == "up\n"
    assert time.monotonic() - started < 15
    # A child left running with the pipes open does not hold the answer.
    t0 = time.monotonic()
    out = _exec(api, sid, "(sleep 30 &) ; echo bye")
    assert out["stdout"] == "bye\n" and time.monotonic() - t0 < 8
    cap = settings.limits.exec_output_bytes
    out = _exec(api, sid, f"head -c {cap + 5000} /dev/zero | tr '\\0' a; echo; echo END")
    assert out["truncated"] is True and len(out["stdout"]) == cap
    assert out["stdout"].endswith("END\n")  # the tail is kept


def test_a_sync_skips_what_may_not_be_saved(api: Api, settings: Settings) -> None:
    sid = api.session()["id"]
    too_big = settings.limits.file_bytes + 1
    out = _exec(
        api,
        sid,
        f"mkfifo pipe && ln -s /etc/passwd out && ln -s inside.txt ok && echo in > inside.txt"
        f" && head -c {too_big} /dev/zero > big.bin && mkdir -p .git && echo x > .git/config",
    )
    reasons = {s["path"]: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {"pipe", "out", "big.bin"}, reasons
    assert "special file" in reasons["pipe"] and "file limit" in reasons["big.bin"]
    assert sorted(out["filesChanged"]) == ["inside.txt", "ok"]
    listing = api.get(f"/v1/sessions/{sid}/files", params={"recursive": "true"}).json()
    paths = {e["path"] for e in listing["entries"]}
    assert paths == {"inside.txt", "ok"}


def test_hibernate_and_restore(api: Api, client: TestClient, settings: Settings) -> None:
    sid = api.session()["id"]
    assert _session(api, sid)["sandbox"]["state"] is None
    assert _session(api, sid)["hibernateAfterSeconds"] == 300
    _exec(api, sid, "echo kept > kept.txt && mkfifo lost")
    box = _session(api, sid)["sandbox"]
    assert box["state"] == "active" and box["hibernateAfter"] == 300
    assert box["expiresAt"] is not None and box["lastUsedAt"] is not None
    root = settings.data_dir / "sandboxes" / sid
    assert (root / "work" / "kept.txt").is_file()
    r = api.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=200)
    assert r.json()["session"]["sandbox"]["state"] == "hibernated"
    assert r.json()["session"]["sandbox"]["expiresAt"] is None
    assert not root.exists()
    hibernated = [e for e in _events(api, sid) if e["type"] == "sandbox.hibernated"]
    assert hibernated[-1]["data"]["reason"] == "requested"
    assert hibernated[-1]["data"]["skipped"][0]["path"] == "lost"
    # Hibernating again is a no-op; the next exec restores it.
    api.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=200)
    out = _exec(api, sid, "cat kept.txt; ls")
    assert out["stdout"] == "kept\nkept.txt\n"
    types = [e["type"] for e in _events(api, sid) if e["type"].startswith("sandbox.")]
    assert types == ["sandbox.provisioned", "sandbox.hibernated", "sandbox.restored"]
    api.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=200)
    r = api.post(f"/v1/sessions/{sid}/sandbox:restore", expect=200)
    assert r.json()["session"]["sandbox"]["state"] == "active"
    assert (root / "work" / "kept.txt").read_text() == "kept\n"


def test_idle_sandboxes_hibernate(
    api: Api, client: TestClient, clock: Any, settings: Settings
) -> None:
    idle = api.session(hibernateAfterSeconds=60)["id"]
    never = api.session(hibernateAfterSeconds=None)["id"]
    assert _session(api, never)["hibernateAfterSeconds"] is None
    for sid in (idle, never):
        _exec(api, sid, "echo x > f")
    assert _session(api, never)["sandbox"]["expiresAt"] is None
    sandboxes = _ctx(client).sandboxes
    clock.advance(30)
    assert client.portal.call(sandboxes.sweep)["hibernated"] == 0  # type: ignore[union-attr]
    clock.advance(31)
    assert client.portal.call(sandboxes.sweep)["hibernated"] == 1  # type: ignore[union-attr]
    assert _session(api, idle)["sandbox"]["state"] == "hibernated"
    assert _session(api, never)["sandbox"]["state"] == "active"
    assert not (settings.data_dir / "sandboxes" / idle).exists()
    events = [e for e in _events(api, idle) if e["type"] == "sandbox.hibernated"]
    assert events[0]["data"]["reason"] == "idle"
    # PATCH changes the clock of an active sandbox; bad values are refused.
    api.patch(f"/v1/sessions/{never}", {"hibernateAfterSeconds": 10}, expect=200)
    assert _session(api, never)["sandbox"]["expiresAt"] is not None
    for bad in (0, -1, "60", 1.5, 10**9):
        api.patch(f"/v1/sessions/{never}", {"hibernateAfterSeconds": bad}, expect=422)
        api.post("/v1/sessions", {"hibernateAfterSeconds": bad}, expect=422)


def test_closing_a_session_removes_its_sandbox(
    api: Api, client: TestClient, settings: Settings
) -> None:
    sid = api.session()["id"]
    _exec(api, sid, "echo x > f")
    api.post(f"/v1/sessions/{sid}/close", {}, expect=200)
    client.portal.call(_ctx(client).sandboxes.sweep)  # type: ignore[union-attr]
    assert not (settings.data_dir / "sandboxes" / sid).exists()
    assert _session(api, sid)["sandbox"]["state"] == "hibernated"
    doomed = api.session()["id"]
    _exec(api, doomed, "echo x > f")
    api.delete(f"/v1/sessions/{doomed}", expect=204)
    client.portal.call(_ctx(client).sandboxes.sweep)  # type: ignore[union-attr]
    assert not (settings.data_dir / "sandboxes" / doomed).exists()


def test_agents_list_says_which_confinement_is_in_force(api: Api, client: TestClient) -> None:
    sandbox = api.get("/v1/agents").json()["sandbox"]
    confinement = _ctx(client).sandboxes.confinement
    assert sandbox == {"mode": confinement.mode, "network": True, "reason": confinement.reason}


# -- escapes (bubblewrap) ------------------------------------------------------------------


@pytest.mark.usefixtures("bwrap")
def test_nothing_outside_the_sandbox_is_visible_or_writable(api: Api, settings: Settings) -> None:
    sid = api.session()["id"]
    neighbour = api.session()["id"]
    _exec(api, neighbour, "echo secret > neighbour.txt")
    data = settings.data_dir
    theirs = data / "sandboxes" / neighbour / "work" / "neighbour.txt"
    probe = "; ".join(
        f"if {test}; then echo 'ESCAPED {label}'; fi"
        for label, test in (
            # The folders above the sandbox exist inside, empty but for the path to it.
            ("data dir", f'test "$(ls -A {data})" != sandboxes'),
            ("other sandboxes", f'test "$(ls -A {data}/sandboxes)" != {sid}'),
            ("database", f"test -e {data / 'sessiond.db'}"),
            ("neighbour", f"cat {theirs} >/dev/null 2>&1"),
            ("server environ", "grep -q PYTEST_CURRENT_TEST /proc/1/environ 2>/dev/null"),
            ("write /usr", "touch /usr/escape 2>/dev/null"),
            ("write /etc", "touch /etc/escape 2>/dev/null"),
            ("shadow", "cat /etc/shadow >/dev/null 2>&1"),
            ("root home", 'ls /root >/dev/null 2>&1 && test -n "$(ls -A /root)"'),
            ("hard link", "ln /etc/passwd hl 2>/dev/null"),
        )
    )
    out = _exec(api, sid, probe + "; echo checked")
    assert "ESCAPED" not in out["stdout"], out["stdout"]
    assert out["stdout"].endswith("checked\n")
    assert not Path("/usr/escape").exists() and not Path("/etc/escape").exists()
    # The other session's processes are not visible either.
    out = _exec(api, sid, "ls /proc | grep -c '^[0-9]'")
    assert int(out["stdout"]) < 10
    # A symlink planted inside that points out leads nowhere when followed inside, and a
    # sync does not save it.
    out = _exec(api, sid, f"ln -s {theirs} planted; cat planted 2>&1 || echo unreadable")
    assert "secret" not in out["stdout"]
    assert {s["path"] for s in out["skipped"]} == {"planted"}


@pytest.mark.usefixtures("bwrap")
def test_process_memory_and_file_limits_hold(database_url: str, tmp_path: Path) -> None:
    from sessiond.app import create_app
    from sessiond.auth import service as auth
    from tests.support.api import make_tenant

    if os.geteuid() != 0:
        pytest.skip("the process limit is per session only when the server runs as root")
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        access_log=False,
        sweep_interval_seconds=None,
        sandbox_processes=40,
        sandbox_memory_bytes=512 * 1024**2,
        sandbox_file_bytes=1024**2,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        secret = _ctx(client).db.write_sync(auth.bootstrap)
        api = make_tenant(client, "default", admin_secret=secret).api(client)
        sid = api.session()["id"]
        # A fork bomb (bounded: PERL_BOMB).
        out = _exec(api, sid, ["perl", "-e", PERL_BOMB], timeoutSeconds=30)
        assert out["exitCode"] == 0 and int(out["stdout"]) < 40, out
        out = _exec(api, sid, ["perl", "-e", "$x = 'a' x (1 << 30); print 'allocated'"])
        assert out["exitCode"] != 0 and "allocated" not in out["stdout"]
        out = _exec(api, sid, "head -c 5000000 /dev/zero > filler; stat -c %s filler")
        assert int(out["stdout"].split()[-1]) <= 1024**2
        # A neighbour still has its own process budget.
        other = api.session()["id"]
        assert _exec(api, other, "echo fine")["stdout"] == "fine\n"


@pytest.mark.usefixtures("bwrap")
def test_the_network_can_be_cut(database_url: str, tmp_path: Path) -> None:
    from sessiond.app import create_app
    from sessiond.auth import service as auth
    from tests.support.api import make_tenant

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached || echo cut"
    secret = None
    try:
        for network, expected in ((True, "reached"), (False, "cut")):
            settings = Settings(
                data_dir=tmp_path / str(network),
                database_url=database_url,
                access_log=False,
                sweep_interval_seconds=None,
                sandbox_network=network,
            )
            with TestClient(create_app(settings), raise_server_exceptions=False) as client:
                secret = secret or _ctx(client).db.write_sync(auth.bootstrap)
                api = make_tenant(client, "default", admin_secret=secret).api(client)
                sid = api.session()["id"]
                out = _exec(api, sid, ["bash", "-c", probe])
                assert out["stdout"].strip().endswith(expected), out
    finally:
        listener.close()


def _turn(api: Api, sid: str, script: str) -> dict[str, Any]:
    turn = api.post(f"/v1/sessions/{sid}/prompt", {"content": script}, expect=202).json()["turn"]
    deadline = time.monotonic() + 60
    while turn["status"] in ("queued", "running") and time.monotonic() < deadline:
        url = f"/v1/sessions/{sid}/turns/{turn['id']}"
        turn = api.get(url, params={"wait": 5}).json()["turn"]
    return turn  # type: ignore[no-any-return]


def test_an_agent_resumes_after_hibernation(api: Api, settings: Settings) -> None:
    """Hibernation stops the agent and keeps its HOME; the next prompt restores the
    sandbox and the agent loads its ACP session from there (session/load)."""
    sid = api.session(agent="scripted")["id"]
    assert _turn(api, sid, "write: notes.txt one\nrecall")["status"] == "completed"
    api.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=200)
    assert not (settings.data_dir / "sandboxes" / sid).exists()
    event = [e for e in _events(api, sid) if e["type"] == "sandbox.hibernated"][-1]
    assert event["data"]["home"] == "kept"
    done = _turn(api, sid, "recall")
    assert done["status"] == "completed", done
    msgs = api.get(f"/v1/sessions/{sid}/messages", params={"limit": 50}).json()["messages"]
    texts = ["".join(p.get("text", "") for p in m["parts"] if p["type"] == "text") for m in msgs]
    assert texts[-1] == "prompts=2", texts
    assert (settings.data_dir / "sandboxes" / sid / "work" / "notes.txt").read_text() == "one"
    # A turn keeps its sandbox: hibernating while it runs is refused.
    turn = api.post(f"/v1/sessions/{sid}/prompt", {"content": "sleep: 3\nsay: x"}, expect=202)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = api.get(f"/v1/sessions/{sid}/turns/{turn.json()['turn']['id']}").json()["turn"]
        if now["status"] == "running":
            break
        time.sleep(0.05)
    api.post(f"/v1/sessions/{sid}/sandbox:hibernate", expect=409, code="session_busy")
