"""The agents the suite configures: the scripted ACP agent (tests/support/scripted_agent.py)
under a few names, written to the test server's ``agents.toml``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPTED = Path(__file__).with_name("scripted_agent.py")


def agents_toml() -> str:
    """``scripted`` (announces session/load), ``forgetful`` (does not), ``missing`` (its
    command does not exist), ``permissive`` (policy allow-all), ``silent`` (never answers
    ``initialize``)."""
    cmd = json.dumps([sys.executable, str(SCRIPTED)])
    ro = json.dumps([str(SCRIPTED.parent)])
    return f"""
[agents.scripted]
command = {cmd}
ro_paths = {ro}
description = "the suite's scripted agent"
default_mode = "build"

[agents.forgetful]
command = {cmd}
ro_paths = {ro}
env = {{ SCRIPTED_LOAD = "0" }}

[agents.permissive]
command = {cmd}
ro_paths = {ro}
permissions = "allow-all"

[agents.missing]
command = ["/nonexistent/agent-binary", "acp"]

[agents.silent]
command = ["sleep", "600"]
"""


def write_agents_file(data_dir: Path) -> Path:
    path = data_dir / "agents.toml"
    path.write_text(agents_toml())
    return path
