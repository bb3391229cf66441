"""Schemathesis over ``/openapi.json`` against a live server, on both backends.

Every operation gets a few generated, schema-valid requests (with the admin key, against a
session of its own where the path names one); the server must never answer 5xx, and every
answer must match what the document declares for it: status code, content type, headers
and body schema. So the document cannot drift from what the server does.

Left out: the SSE streams (they never end), and ``POST /v1/keys`` / ``DELETE /v1/keys/{id}``
(a key created or revoked mid-run changes what the other requests may do).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support.api import make_tenant
from tests.support.live import Live, live_server

EXAMPLES = 3  # per operation
BUDGET_SECONDS = 120.0  # for the whole run (~15-30 s here); operations past it are printed
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXCLUDED = {("POST", "/v1/keys"), ("DELETE", "/v1/keys/{key_id}")}

# An export archive is a binary body: generated as bytes like any octet stream (the
# import answers 422 invalid_archive to them, which the document declares).
schemathesis.serializer.alias("application/x-sessiond-export", "application/octet-stream")


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as server:
        yield server


def _streams(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in r.get("content", {}) for r in responses.values())


def _new_session(client: httpx.Client) -> str:
    r = client.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["session"]["id"])


def test_openapi_fuzz(live: Live) -> None:
    secret = live.app.state.ctx.db.write_sync(auth.bootstrap)
    assert secret is not None
    admin = make_tenant(live, "default", admin_secret=secret).admin
    headers = {"Authorization": f"Bearer {admin}"}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers=headers)

    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key not in EXCLUDED and not _streams(operation):
            operations.append(operation)
    assert len(operations) > 60, [o.label for o in operations]

    with httpx.Client(base_url=live.url, headers=headers) as client, requests.Session() as session:
        # one connection for every request; both closed even when a check fails
        start = time.monotonic()
        left: list[str] = []
        for operation in operations:
            if time.monotonic() - start > BUDGET_SECONDS:
                left.append(operation.label)
                continue
            fixed = {}
            if "{session_id}" in operation.path:  # a live session: the request gets past 404
                fixed["session_id"] = _new_session(client)
            strategy = operation.as_strategy(path_parameters=fixed or None)

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                case.call_and_validate(
                    base_url=live.url, session=session, headers=headers, checks=CHECKS, timeout=15
                )

            run()
    elapsed = time.monotonic() - start
    print(f"fuzzed {len(operations) - len(left)}/{len(operations)} operations in {elapsed:.1f}s")
    if left:
        print(f"over the {BUDGET_SECONDS:.0f}s budget, not run: {', '.join(left)}")
