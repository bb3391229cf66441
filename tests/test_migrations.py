"""Upgrading a database made by an earlier revision keeps its data readable."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.db.engine import make_engine
from sessiond.db.executor import Tx
from sessiond.db.migrate import alembic_config, current_revision, head_revision
from sessiond.settings import Settings
from tests.support.api import make_tenant


def test_upgrade_from_0001_keeps_sessions(empty_database_url: str, settings: Settings) -> None:
    settings = settings.model_copy(update={"database_url": empty_database_url})
    engine = make_engine(empty_database_url, role="cli")
    try:
        command.upgrade(alembic_config(engine), "0001")
        # A session as revision 0001 stored it: its doc held the activity counters.
        doc = {
            "id": "ses_01M7ZZZZZZZZZZZZZZZZZZZZZZ",
            "title": "old",
            "messageCount": 0,
            "lastActivityAt": "2026-11-21T20:00:00.000Z",
        }
        with engine.begin() as conn:
            secret = auth.bootstrap(Tx(conn, conn.dialect.name))
            account_id = conn.execute(sa.text("SELECT id FROM accounts")).scalar_one()
            conn.execute(
                sa.text(
                    "INSERT INTO sessions (id, account_id, workspace_id, title, status, activity,"
                    " tags, metadata, context, ephemeral, message_count, workspace, sandbox,"
                    " lifecycle_version, created_at, updated_at, last_activity_at, doc) VALUES"
                    " (:id, :acc, 'default', 'old', 'active', 'idle', '[]', '{}', '{}', false, 0,"
                    " :ws, '{}', 1, 1, 1, 1, :doc)"
                ),
                {
                    "id": doc["id"],
                    "acc": account_id,
                    "ws": json.dumps(
                        {
                            "head": "x",
                            "base": "x",
                            "filesChanged": 0,
                            "linesAdded": 0,
                            "linesRemoved": 0,
                        }
                    ),
                    "doc": json.dumps(doc),
                },
            )
        command.upgrade(alembic_config(engine), "head")
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()
    assert secret is not None
    with TestClient(create_app(settings)) as client:
        tenant = make_tenant(client, "default", admin_secret=secret)
        r = client.get(
            f"/v1/sessions/{doc['id']}", headers={"Authorization": f"Bearer {tenant.write}"}
        )
        assert r.status_code == 200, r.text
        session = r.json()["session"]  # valid JSON: no duplicated keys from the old doc
        assert session["messageCount"] == 0 and session["title"] == "old"
        assert r.text.count('"messageCount"') == 1
        m = client.post(
            f"/v1/sessions/{doc['id']}/messages",
            json={"role": "user", "content": "hi"},
            headers={"Authorization": f"Bearer {tenant.write}"},
        )
        assert m.status_code == 201, m.text
        assert m.json()["message"]["seq"] == 1
