"""Remote git repositories: fetch one into memory, push a commit to one (dulwich's
client; no database here). docs/design/git.md.

``fetch`` brings the history of one ref into a ``MemoryRepo`` (at most ``max_bytes`` of
pack data); ``push`` sends a commit and what the remote lacks to a branch, refusing a
non-fast-forward itself. Failures are ``RemoteError`` (the remote cannot be reached or
answered with an error), ``PushRefused`` (it, or we, refused the update) or, for what
the caller sent, ``sessiond.errors.ValidationFailed``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.client import GitClient, SubprocessGitClient, get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.pack import UnpackedObject
from dulwich.refs import Ref, check_ref_format
from dulwich.repo import MemoryRepo

from sessiond.errors import invalid

SCHEMES = ("http", "https", "file")
SHA = re.compile(r"[0-9a-f]{7,40}")
HEAD = Ref(b"HEAD")


class RemoteError(Exception):
    """The remote could not be reached, or failed (``str(e)`` says how)."""


class PushRefused(Exception):
    """The update was refused: not a fast-forward, or by the remote (protected, hook)."""


class TooLarge(RemoteError):
    pass


@dataclass
class Fetched:
    url: str
    ref: str | None
    repo: MemoryRepo
    commit: Commit
    branch: str | None  # the branch the ref names (or HEAD points to), if any


@dataclass
class Pushed:
    branch: str
    commit: str
    created: bool  # the branch did not exist on the remote


# -- URLs and credentials -------------------------------------------------------------------


def check_url(url: str, file_roots: Sequence[Path], field: str = "source.git.url") -> str:
    """``url`` if sessiond may use it: http(s) or file (under ``file_roots``), with no
    credentials in it."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise invalid(field, "a URL of at most 2048 characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise invalid(field, "http://, https:// or file:// (ssh is not supported)")
    if parts.username is not None or parts.password is not None:
        raise invalid(
            field,
            "no credentials in the URL: the server reads them from SESSIOND_GIT_CREDENTIALS",
        )
    if parts.scheme == "file":
        path = os.path.realpath(urllib.parse.unquote(parts.path))
        roots = [os.path.realpath(r) for r in file_roots]
        if not any(os.path.commonpath([path, r]) == r for r in roots):
            raise invalid(field, "file:// URLs are allowed only under SESSIOND_GIT_FILE_ROOTS")
    elif not parts.hostname:
        raise invalid(field, "a URL with a host")
    return url


def credentials_for(url: str, store: Path | None) -> tuple[str, str] | None:
    """(user, password) for ``url`` from a git-credential-store file: the first line with
    the same scheme, host and port whose path (if any) is a prefix of the URL's."""
    if store is None:
        return None
    want = urllib.parse.urlsplit(url)
    try:
        lines = store.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        entry = urllib.parse.urlsplit(line.strip())
        if entry.scheme != want.scheme or entry.hostname != want.hostname:
            continue
        if entry.port != want.port or entry.username is None:
            continue
        if entry.path.strip("/") and not want.path.startswith(entry.path.rstrip("/")):
            continue
        return urllib.parse.unquote(entry.username), urllib.parse.unquote(entry.password or "")
    return None


def _client(
    url: str, store: Path | None, timeout: float, *, pushing: bool = False
) -> tuple[GitClient, str]:
    if pushing and url.startswith("file://") and shutil.which("git-receive-pack"):
        # The real git receives the push (the repository's hooks and config apply), not
        # dulwich writing into it in process.
        return SubprocessGitClient(), urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    auth = credentials_for(url, store)
    kwargs: dict[str, object] = {}
    if url.startswith(("http://", "https://")):
        from dulwich.client import default_urllib3_manager

        kwargs["pool_manager"] = default_urllib3_manager(None, timeout=timeout)
        if auth is not None:
            kwargs["username"], kwargs["password"] = auth
    return get_transport_and_path(url, **kwargs)  # type: ignore[arg-type]


def _failure(e: Exception) -> RemoteError:
    name = type(e).__name__
    if "Unauthorized" in name:
        return RemoteError("the remote wants credentials (SESSIOND_GIT_CREDENTIALS)")
    return RemoteError(f"{name}: {e}" if str(e) else name)


# -- fetch ----------------------------------------------------------------------------------


def _pick(refs: dict[Ref, ObjectID], ref: str | None) -> tuple[list[ObjectID], str | None]:
    """The shas to want for ``ref``, and the branch it names (if any)."""
    if ref is None:
        if HEAD not in refs:
            raise invalid("source.git.ref", "the remote has no HEAD: name a ref")
        return [refs[HEAD]], None
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        key = Ref(name.encode())
        if key in refs:
            sha = refs.get(Ref(key + b"^{}"), refs[key])  # a tag: the commit it points to
            branch = name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else None
            return [sha], branch
    if SHA.fullmatch(ref):
        tips = [s for n, s in refs.items() if n.startswith((b"refs/heads/", b"refs/tags/"))]
        return list(dict.fromkeys(tips)), None
    raise invalid("source.git.ref", f"no branch, tag or commit {ref!r} on the remote")


def fetch(
    url: str, ref: str | None, *, store: Path | None, timeout: float, max_bytes: int
) -> Fetched:
    """The history of ``ref`` (default: the remote's HEAD) in a new MemoryRepo."""
    client, path = _client(url, store, timeout)
    repo = MemoryRepo()
    picked: dict[str, Any] = {}

    def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        wants, branch = _pick(dict(refs), ref)
        picked.update(wants=wants, branch=branch, refs=refs)
        return wants

    buffer = io.BytesIO()

    def pack_data(data: bytes) -> int:
        buffer.write(data)
        if buffer.tell() > max_bytes:
            raise TooLarge(f"the repository is over {max_bytes} bytes (SESSIOND_GIT_FETCH_BYTES)")
        return len(data)

    try:
        result = client.fetch_pack(path, determine_wants, repo.get_graph_walker(), pack_data)
    except (TooLarge, ValueError):
        raise
    except (GitProtocolError, HangupException, NotGitRepository, OSError) as e:
        raise _failure(e) from None
    except Exception as e:  # urllib3 and dulwich raise many kinds
        if type(e).__module__.startswith(("urllib3", "dulwich")):
            raise _failure(e) from None
        raise
    if buffer.tell():
        buffer.seek(0)
        objects = repo.object_store
        assert isinstance(objects, MemoryObjectStore)
        objects.add_thin_pack(buffer.read, None)
    wants = list(picked.get("wants") or [])
    branch = picked.get("branch")
    if ref is None:
        head = result.symrefs.get(HEAD) if result.symrefs else None
        branch = head.decode().removeprefix("refs/heads/") if head else None
    if ref is not None and SHA.fullmatch(ref) and not _is_ref(ref, picked.get("refs")):
        commits = [
            sha
            for sha in repo.object_store
            if sha.decode().startswith(ref) and isinstance(repo.object_store[sha], Commit)
        ]
        if len(commits) != 1:
            why = "is ambiguous" if commits else "is not on any branch or tag of the remote"
            raise invalid("source.git.ref", f"commit {ref} {why}")
        wants = [ObjectID(commits[0])]
    if not wants:
        raise invalid("source.git.ref", "the remote has no commit to start from")
    obj = repo.object_store[wants[0]]
    while isinstance(obj, Tag):
        obj = repo.object_store[obj.object[1]]
    if not isinstance(obj, Commit):
        raise invalid("source.git.ref", f"{ref} does not name a commit")
    named = branch if isinstance(branch, str) else None
    return Fetched(url=url, ref=ref, repo=repo, commit=obj, branch=named)


def _is_ref(ref: str, refs: object) -> bool:
    if not isinstance(refs, dict):
        return False
    names = {ref, f"refs/heads/{ref}", f"refs/tags/{ref}"}
    return any(Ref(n.encode()) in refs for n in names)


# -- push -----------------------------------------------------------------------------------


def check_branch(branch: str) -> str:
    if not isinstance(branch, str) or not branch or len(branch) > 200:
        raise invalid("branch", "a branch name of at most 200 characters")
    if not check_ref_format(Ref(b"refs/heads/" + branch.encode())):
        raise invalid("branch", f"{branch!r} is not a valid git branch name")
    return branch


def _is_ancestor(repo: MemoryRepo, old: ObjectID, new: ObjectID, limit: int = 100_000) -> bool:
    pending: list[ObjectID] = [new]
    seen: set[ObjectID] = set()
    while pending and len(seen) < limit:
        sha = pending.pop()
        if sha == old:
            return True
        if sha in seen or sha not in repo.object_store:
            continue
        seen.add(sha)
        obj = repo.object_store[sha]
        if isinstance(obj, Commit):
            pending.extend(obj.parents)
    return False


def push(
    url: str, repo: MemoryRepo, commit: str, branch: str, *, store: Path | None, timeout: float
) -> Pushed:
    """Send ``commit`` (in ``repo``, with its history) to ``branch`` of the remote."""
    client, path = _client(url, store, timeout, pushing=True)
    target = Ref(b"refs/heads/" + branch.encode())
    new = ObjectID(commit.encode())
    seen: dict[str, Any] = {}

    def generate(
        have: AbstractSet[ObjectID],
        want: AbstractSet[ObjectID],
        *,
        ofs_delta: bool = False,
        progress: Callable[[bytes], None] | None = None,
    ) -> tuple[int, Iterator[UnpackedObject]]:
        return repo.generate_pack_data(set(have), set(want), ofs_delta=ofs_delta)

    def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        old = refs.get(target)
        seen["old"] = old
        if old is not None and old != new and not _is_ancestor(repo, old, new):
            seen["refused"] = (
                f"non-fast-forward: {branch} on the remote has commits this session does not"
            )
            return dict(refs)  # nothing to update: the client ends the exchange cleanly
        return {**refs, target: new}

    try:
        result = client.send_pack(
            path.encode() if isinstance(path, str) else path,
            update_refs,
            generate_pack_data=generate,
        )
    except (GitProtocolError, HangupException, NotGitRepository, OSError) as e:
        raise _failure(e) from None
    except Exception as e:
        if type(e).__module__.startswith(("urllib3", "dulwich")):
            raise _failure(e) from None
        raise
    if "refused" in seen:
        raise PushRefused(seen["refused"])
    status = (result.ref_status or {}).get(target)
    if status is not None:
        raise PushRefused(f"the remote refused {branch}: {status}")
    return Pushed(branch=branch, commit=commit, created=seen.get("old") is None)
