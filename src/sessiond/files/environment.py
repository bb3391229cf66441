"""The session's environment spec: stored (GET/PUT) or inferred from its files."""

from __future__ import annotations

from typing import Any

from dulwich.objects import Blob

from sessiond.db.executor import Tx
from sessiond.files import envspec, trees
from sessiond.files.objects import ObjectStore
from sessiond.sessions import kernel
from sessiond.sessions import validation as v
from sessiond.settings import Limits

READ_BYTES = 1024 * 1024  # larger files are not read for inference


def get(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    spec: dict[str, Any] = kernel.get_row(tx, account_id, session_id)["environment_spec"] or {}
    return spec


def put(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    spec: Any,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    value = v.check_json_object(limits, "environmentSpec", spec)
    row = kernel.load_for_write(tx, account_id, session_id, if_match=if_match)
    kernel.require_active(row)
    if row["environment_spec"] != value:
        kernel.write_fields(tx, row, {"environment_spec": value, "last_activity_at": tx.now})
        tx.emit(
            account_id,
            "environmentSpec.updated",
            {"environmentSpec": value},
            session_id=session_id,
            workspace_id=row["workspace_id"],
        )
    return value


def generate(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    """Infer the spec from the working tree's well-known files; nothing is written."""
    root = kernel.get_row(tx, account_id, session_id)["workspace"]["head"]
    store = ObjectStore(tx, account_id)
    files: dict[str, str] = {}
    for name in envspec.KNOWN:
        entry = trees.lookup(store, root, name)
        if entry is None or trees.kind(entry[0]) != "file":
            continue
        blob = store.get(entry[1])
        assert isinstance(blob, Blob)
        data = blob.as_raw_string()
        if len(data) <= READ_BYTES:
            files[name] = data.decode("utf-8", "replace")
    spec, evidence = envspec.infer(files)
    return {"environmentSpec": spec, "evidence": evidence}
