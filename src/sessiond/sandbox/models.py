"""Request and response shapes of the sandbox routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, StrictInt, StrictStr

from sessiond.errors import invalid
from sessiond.models import ApiModel, Declared

MAX_TIMEOUT_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 60
MAX_ARGS = 4096
MAX_ENV = 256
MAX_COMMAND_BYTES = 256 * 1024


class ExecBody(ApiModel):
    """``{command: [argv] | "shell string", cwd?, env?, timeoutSeconds?, stdin?}``."""

    command: list[StrictStr] | StrictStr
    cwd: StrictStr | None = None
    env: dict[StrictStr, StrictStr] | None = None
    timeout_seconds: Annotated[StrictInt, Declared(minimum=1, maximum=MAX_TIMEOUT_SECONDS)] = (
        DEFAULT_TIMEOUT_SECONDS
    )
    stdin: StrictStr | None = None

    def argv(self) -> list[str]:
        """The argv to run (a string runs with ``/bin/sh -c``), checked."""
        argv = ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else self.command
        if not argv or not argv[0]:
            raise invalid("command", "must be a non-empty argv list or shell string")
        if len(argv) > MAX_ARGS:
            raise invalid("command", f"at most {MAX_ARGS} arguments")
        if sum(len(a.encode("utf-8", "surrogatepass")) for a in argv) > MAX_COMMAND_BYTES:
            raise invalid("command", f"at most {MAX_COMMAND_BYTES} bytes")
        if any("\x00" in a for a in argv):
            raise invalid("command", "must not contain NUL")
        return argv

    def environment(self) -> dict[str, str]:
        env = self.env or {}
        if len(env) > MAX_ENV:
            raise invalid("env", f"at most {MAX_ENV} variables")
        for name, value in env.items():
            if not name or "=" in name or "\x00" in name or "\x00" in value:
                raise invalid("env", f"{name!r}: a name without '=' or NUL, a value without NUL")
        return env

    def timeout(self) -> int:
        if not 1 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise invalid("timeoutSeconds", f"between 1 and {MAX_TIMEOUT_SECONDS}")
        return self.timeout_seconds


class Skipped(BaseModel):
    path: str
    reason: str


class ExecResult(BaseModel):
    exitCode: int | None
    signal: str | None  # the signal that ended the command (SIGKILL after a timeout)
    stdout: str  # the last limits.exec_output_bytes bytes, as UTF-8 (invalid bytes replaced)
    stderr: str
    truncated: bool  # stdout or stderr was longer than the cap
    timedOut: bool
    durationMs: int
    filesChanged: list[str]  # saved into the working tree (files.changed, reason "exec")
    skipped: list[Skipped]  # not saved: over the file limit, special files, links out
