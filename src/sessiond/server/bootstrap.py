"""The first-start work of ``sessiond serve``: migrations, then the ``default`` account and
its admin key when the database has no account yet.

``python -m sessiond.server.bootstrap`` does it in a process of its own (settings as
JSON on stdin, ``{"secret": ..., "keyFile": ...}`` on stdout): the supervisor of several
workers runs it so that it never imports the app itself (it stays ~65 MB, not ~120).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sessiond.settings import Settings

ADMIN_KEY_FILE = "admin.key"


def bootstrap(settings: Settings) -> tuple[str | None, Path]:
    """Migrate, then create the default account and admin key on the very first start
    (the secret, None after that; the key file, mode 0600)."""
    from sessiond.app import open_database
    from sessiond.auth import service as auth

    db = open_database(settings)
    try:
        secret = db.write_sync(auth.bootstrap)
    finally:
        db.close()
    key_file = settings.data_dir / ADMIN_KEY_FILE
    if secret is not None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        os.chmod(key_file, 0o600)
    return secret, key_file


def bootstrap_apart(settings: Settings) -> tuple[str | None, Path]:
    """``bootstrap`` in a child process; its errors (stderr) reach the caller's stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "sessiond.server.bootstrap"],
        input=settings.model_dump_json().encode(),
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    out = json.loads(done.stdout)
    return out["secret"], Path(out["keyFile"])


def main() -> None:
    settings = Settings.model_validate_json(sys.stdin.read())
    secret, key_file = bootstrap(settings)
    json.dump({"secret": secret, "keyFile": str(key_file)}, sys.stdout)


if __name__ == "__main__":
    main()
