"""The CLI contract: accounts create, keys create/list/revoke, migrate (both backends)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sessiond.cli import app

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_accounts_and_keys(tmp_path: Path, database_url: str) -> None:
    common = ["--data-dir", str(tmp_path), "--database-url", database_url]
    _run("migrate", "--database-url", database_url)
    account_id = _run("accounts", "create", "acme", *common).strip()
    assert account_id.startswith("acc_") and "\n" not in account_id
    secret = _run(
        "keys", "create", "--account", "acme", "--role", "read", "--name", "ci", *common
    ).strip()
    assert secret.startswith("sk_") and len(secret) > 40
    keys = json.loads(_run("keys", "list", "--account", "acme", "--json", *common))
    assert [(k["name"], k["role"], k["account"], k["revokedAt"]) for k in keys] == [
        ("ci", "read", "acme", None)
    ]
    assert secret not in json.dumps(keys) and keys[0]["prefix"] == secret[:10]
    _run("keys", "revoke", keys[0]["id"], *common)
    keys = json.loads(_run("keys", "list", "--account", "acme", "--json", *common))
    assert keys[0]["revokedAt"] is not None
    assert "ci" in _run("keys", "list", *common)  # the human table
    bad = runner.invoke(app, ["accounts", "create", "acme", *common])
    assert bad.exit_code == 1 and "already exists" in bad.output
    bad = runner.invoke(app, ["keys", "create", "--account", "nope", *common])
    assert bad.exit_code == 1 and "not found" in bad.output
    bad = runner.invoke(app, ["keys", "create", "--role", "root", *common])
    assert bad.exit_code != 0
