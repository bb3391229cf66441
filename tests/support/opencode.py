"""Run the real ``opencode acp`` agent against the mock model (tests/support/mock_model.py).

``find_opencode()`` finds the binary: ``$SESSIOND_TEST_OPENCODE``, else the default cache
``<repo>/.cache/opencode`` filled by ``tests/support/install_opencode.sh`` (which pins the
version and links ``bin/opencode`` there). ``opencode_env()`` builds the whole environment for
one agent process: an inline config that makes the mock its only provider and model, the
flags that turn off every network feature (autoupdate, models.dev fetch, share, LSP
downloads, default plugins), and a prepared config dir; HOME and the other XDG dirs are the
sandbox's own, so nothing is read from or written to the real home. The agent starts in
the session's sandbox: it serves (and scans) its working directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / ".cache" / "opencode"
ENV_VAR = "SESSIOND_TEST_OPENCODE"
INSTALL_SCRIPT = Path(__file__).resolve().parent / "install_opencode.sh"


def _pinned_version() -> str:
    """The opencode version pinned in install_opencode.sh (``OPENCODE_VERSION=...``)."""
    match = re.search(r"^OPENCODE_VERSION=([0-9][^\s]*)$", INSTALL_SCRIPT.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no OPENCODE_VERSION= line in {INSTALL_SCRIPT}")
    return match.group(1)


OPENCODE_VERSION = _pinned_version()
PROVIDER = "mock"
MODEL = "mock-model"


def find_opencode() -> str | None:
    """The ``opencode`` binary to test with, or None when there is none."""
    override = os.environ.get(ENV_VAR)
    if override:
        return override if os.access(override, os.X_OK) else None
    candidate = DEFAULT_CACHE / "bin" / "opencode"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def opencode_config(
    model_url: str,
    *,
    bash_permission: str = "ask",
    permission: dict[str, Any] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    """The opencode config: the mock as the one provider, nothing fetched from outside.

    ``permission`` entries (tool name -> "ask" | "allow" | "deny") are merged over
    ``{"bash": bash_permission}``; opencode's own default for the others (edit, write, ...) is
    "allow".
    """
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Mock",
                "options": {"baseURL": model_url, "apiKey": "x"},
                "models": {
                    model: {
                        "name": "Mock model",
                        "tool_call": True,
                        "limit": {"context": 128000, "output": 4096},
                    }
                },
            }
        },
        "enabled_providers": [PROVIDER],
        "model": f"{PROVIDER}/{model}",
        "small_model": f"{PROVIDER}/{model}",
        "permission": {"bash": bash_permission, **(permission or {})},
        "autoupdate": False,
        "share": "disabled",
        "lsp": False,
        "formatter": False,
        # No shadow git repo of the working dir under $XDG_DATA_HOME/opencode/snapshot (made
        # at each step when the dir is a git repo): the workspace is versioned by sessiond.
        "snapshot": False,
    }


def _mark_config_deps_installed(config_dir: Path) -> None:
    """Stop opencode from fetching ``@opencode-ai/plugin`` from the npm registry at start.

    For every config dir (here ``$XDG_CONFIG_HOME/opencode``) opencode starts a background
    ``npm install @opencode-ai/plugin`` (its embedded arborist, cache in ``$HOME/.npm``) unless
    the dir has a ``node_modules`` folder and a ``package-lock.json`` whose root lists every
    dependency named in ``package.json`` plus ``@opencode-ai/plugin``. The package is only needed
    by local plugins and custom tools written in that dir, and the tests have none, so these
    three entries are enough to make it skip the install (and ``.gitignore``, which it would
    write otherwise).
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "node_modules").mkdir(exist_ok=True)
    # opencode writes this file when it is missing: the dir is read-only in a sandbox.
    ignore = config_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore\n")
    deps = {"@opencode-ai/plugin": OPENCODE_VERSION}
    package = config_dir / "package.json"
    if not package.exists():
        package.write_text(json.dumps({"dependencies": deps}, indent=2) + "\n")
    lock = config_dir / "package-lock.json"
    if not lock.exists():
        lock.write_text(
            json.dumps(
                {
                    "name": "opencode",
                    "lockfileVersion": 3,
                    "requires": True,
                    "packages": {"": {"dependencies": deps}},
                },
                indent=2,
            )
            + "\n"
        )


def opencode_env(
    config_home: Path,
    model_url: str,
    *,
    bash_permission: str = "ask",
    permission: dict[str, Any] | None = None,
    model: str = MODEL,
) -> dict[str, str]:
    """The environment for ``opencode acp``. HOME and the other XDG dirs are the sandbox's
    own (the server sets them); ``XDG_CONFIG_HOME`` is ``config_home``, prepared here so
    that opencode installs nothing at start — give it to the agent as a ``ro_paths`` entry."""
    config_home = Path(config_home)
    _mark_config_deps_installed(config_home / "opencode")
    path_dirs = []
    node = shutil.which("node")
    if node:
        path_dirs.append(str(Path(node).resolve().parent))
    path_dirs += ["/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "XDG_CONFIG_HOME": str(config_home),
        "PATH": os.pathsep.join(dict.fromkeys(path_dirs)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "OPENCODE_CONFIG_CONTENT": json.dumps(
            opencode_config(
                model_url, bash_permission=bash_permission, permission=permission, model=model
            )
        ),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
        "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
        "NO_COLOR": "1",
    }
    return env
