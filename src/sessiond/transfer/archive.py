"""The archive file: a gzip tar of ``manifest.json``, ``objects.pack`` and, optionally,
``events.jsonl`` (docs/design/export.md). Writing and reading, nothing about rows.

Reading trusts nothing in the file: member names, types, order and sizes are checked
from the tar headers *before* any member's data is read, a header that claims more than
the file holds is a truncated file, and a member is copied in bounded steps, never read
whole because its header says so.
"""

from __future__ import annotations

import gzip
import json
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from sessiond import values
from sessiond.errors import SessiondError
from sessiond.transfer.errors import InvalidArchive
from sessiond.transfer.pack import ChunkReader

FORMAT = "sessiond-export"
VERSION = 1
MEDIA_TYPE = "application/x-sessiond-export"
MANIFEST = "manifest.json"
PACK = "objects.pack"
EVENTS = "events.jsonl"
ORDER = (MANIFEST, PACK, EVENTS)
REQUIRED = (MANIFEST, PACK)
COPY_STEP = 1024 * 1024
# Zero blocks a tar writer may leave after the end of the archive (a record is 10 KiB).
TRAILING_BYTES = 64 * 1024
# Compression of the whole file: the pack is zlib data already (it barely shrinks), the
# manifest is JSON (it shrinks ~6x at level 1 already); higher levels cost time on the pack.
GZIP_LEVEL = 1


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    return info


def write(
    out: IO[bytes],
    manifest: dict[str, Any],
    pack_size: int,
    pack_chunks: Iterator[bytes],
    *,
    mtime: int,
    events: IO[bytes] | None = None,
    events_size: int = 0,
) -> None:
    """Write the archive to ``out``: the manifest, then the pack (``pack_size`` bytes
    produced by ``pack_chunks``, copied as they come), then the events file if given.
    ``mtime`` (seconds) is the time of the gzip header and of every member, so the same
    content exported at the same moment gives the same bytes."""
    body = dumps(manifest)
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=mtime) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_member(MANIFEST, len(body), mtime), ChunkReader(iter([body])))
        tar.addfile(_member(PACK, pack_size, mtime), ChunkReader(pack_chunks))
        if events is not None:
            tar.addfile(_member(EVENTS, events_size, mtime), events)


@dataclass
class Opened:
    """A read archive: the parsed manifest and the pack, copied to a temporary file
    (seekable; the caller closes it)."""

    manifest: dict[str, Any]
    pack: IO[bytes]
    events_size: int | None

    def close(self) -> None:
        self.pack.close()


def _truncated(detail: str) -> InvalidArchive:
    return InvalidArchive(
        "truncated", f"the file is truncated or not a gzip tar ({detail}); export it again"
    )


def _copy(src: IO[bytes], dst: IO[bytes], size: int) -> None:
    left = size
    while left:
        block = src.read(min(COPY_STEP, left))
        if not block:
            raise _truncated("a member ends early")
        dst.write(block)
        left -= len(block)


def _skip(src: IO[bytes], size: int) -> None:
    left = size
    while left:
        block = src.read(min(COPY_STEP, left))
        if not block:
            raise _truncated("a member ends early")
        left -= len(block)


def read(f: IO[bytes], *, manifest_limit: int, member_limit: int) -> Opened:
    """Open the archive in ``f`` (at its start) and check its structure; the manifest
    is parsed (strict JSON, ``values.loads``) but not yet checked as a manifest."""
    pack = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, or closed here)
    try:
        return _read(f, pack, manifest_limit=manifest_limit, member_limit=member_limit)
    except BaseException:
        pack.close()
        raise


def _read(f: IO[bytes], pack: IO[bytes], *, manifest_limit: int, member_limit: int) -> Opened:
    manifest_bytes: bytes | None = None
    seen: list[str] = []
    events_size: int | None = None
    try:
        gz = gzip.GzipFile(fileobj=f, mode="rb")
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                name = member.name
                shown = json.dumps(name, ensure_ascii=True)[:120]
                if name not in ORDER or not member.isreg():
                    raise InvalidArchive(
                        "bad_member",
                        f"member {shown} is not one of {', '.join(ORDER)} as a regular file",
                    )
                if name in seen or (seen and ORDER.index(name) < ORDER.index(seen[-1])):
                    raise InvalidArchive(
                        "bad_member", f"member {shown} is repeated or out of order ({ORDER})"
                    )
                seen.append(name)
                limit = manifest_limit if name == MANIFEST else member_limit
                if member.size > limit:
                    raise InvalidArchive(
                        "member_too_large",
                        f"member {name} declares {member.size} bytes, over the {limit}-byte limit",
                    )
                data = tar.extractfile(member)
                assert data is not None  # a regular file
                if name == MANIFEST:
                    manifest_bytes = data.read(member.size)
                    if len(manifest_bytes) != member.size:
                        raise _truncated("the manifest ends early")
                elif name == PACK:
                    _copy(data, pack, member.size)
                else:
                    events_size = member.size  # kept for audit, not imported
                    _skip(data, member.size)
        # The tar ended: what follows (its zero padding) must end the gzip stream intact
        # (CRC and length), so a file cut anywhere is refused.
        if len(gz.read(TRAILING_BYTES + 1)) > TRAILING_BYTES:
            raise InvalidArchive("bad_member", "the archive has data after its end")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _truncated(str(e) or type(e).__name__) from None
    except OSError as e:
        raise _truncated(str(e) or type(e).__name__) from None
    missing = [name for name in REQUIRED if name not in seen]
    if missing or manifest_bytes is None:
        raise InvalidArchive("bad_member", f"the archive has no {' or '.join(missing)}")
    pack.seek(0)
    return Opened(_parse(manifest_bytes), pack, events_size)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        manifest = values.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArchive("bad_manifest", f"{MANIFEST} is not JSON ({e})") from None
    except SessiondError as e:  # NaN, a lone surrogate, NUL in a string
        raise InvalidArchive("bad_manifest", f"{MANIFEST}: {e.message}") from None
    if not isinstance(manifest, dict):
        raise InvalidArchive("bad_manifest", f"{MANIFEST} must hold a JSON object")
    if manifest.get("format") != FORMAT:
        raise InvalidArchive(
            "unsupported_version", f'{MANIFEST} has no "format": "{FORMAT}"', field="format"
        )
    version = manifest.get("version")
    if version != VERSION or isinstance(version, bool):
        raise InvalidArchive(
            "unsupported_version",
            f"format version {json.dumps(version)[:40]} is not one this server reads "
            f"(it reads {VERSION}); export with a matching server",
            field="version",
        )
    return manifest
