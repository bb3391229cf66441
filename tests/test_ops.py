"""Operations: health, readiness, metrics, OpenAPI, access log and 500 bodies."""

from __future__ import annotations

import io
import json
import logging

import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.settings import Settings
from tests.support.api import Api


def test_health_and_ready(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store"
    assert client.get("/readyz").json() == {"status": "ok"}


def test_metrics_count_requests_and_events(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    api.get(f"/v1/sessions/{sid}", expect=200)
    api.get("/v1/sessions/ses_missing", expect=404)
    text = client.get("/metrics").text
    assert (
        'sessiond_http_requests_total{method="GET",route="/v1/sessions/{session_id}",status="200"}'
        in text
    )
    assert 'route="/v1/sessions/{session_id}",status="404"' in text
    assert "sessiond_http_request_duration_seconds_bucket" in text
    assert "sessiond_sse_subscribers" in text
    assert "sessiond_events_published_total" in text


def test_openapi_matches_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, methods in {
        "/v1/sessions": {"get", "post"},
        "/v1/sessions/{session_id}": {"get", "patch", "delete"},
        "/v1/sessions/{session_id}/context": {"get", "put", "patch"},
        "/v1/sessions/{session_id}/events/stream": {"get"},
        "/v1/events/stream": {"get"},
        "/v1/keys": {"get", "post"},
        "/v1/workspaces/{workspace_id}": {"get", "patch", "delete"},
    }.items():
        assert methods <= set(paths[path]), path
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert paths["/healthz"]["get"]["security"] == []
    create = paths["/v1/sessions"]["post"]
    assert "201" in create["responses"] and "422" in create["responses"]
    assert client.get("/docs").status_code == 200


def test_access_log_and_500_body_carry_request_id(settings: Settings) -> None:
    settings.access_log = True
    stream = io.StringIO()
    app = create_app(settings, access_stream=stream)

    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-Id": "trace-123"})
        ok = c.get("/healthz")
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "internal" and body["details"]["requestId"] == "trace-123"
    assert "trace-123" in body["error"] and "kaboom" not in body["error"]
    assert ok.headers["x-request-id"].startswith("req_")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # flushed at shutdown
    assert [line["path"] for line in lines] == ["/boom", "/healthz"]
    boom_line = lines[0]
    assert boom_line["status"] == 500 and boom_line["requestId"] == "trace-123"
    assert {"time", "method", "route", "durationMs", "accountId", "keyId"} <= set(boom_line)
    assert lines[1]["requestId"] == ok.headers["x-request-id"]


def test_readyz_failure_names_no_cause(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Unauthenticated callers get the error shape and a request id; the cause (here: the
    database executor is down) goes to the log under that id."""
    client.app.state.ctx.db.close()  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="sessiond.http"):
        r = client.get("/readyz", headers={"X-Request-Id": "ready-1"})
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "error" and body["code"] == "not_ready"
    assert body["details"] == {"requestId": "ready-1"} and "ready-1" in body["error"]
    cause = caplog.records[-1]
    assert "ready-1" in cause.getMessage() and cause.exc_info is not None
    assert str(cause.exc_info[1]) not in body["error"]
