"""Git packs (version 2, whole objects only) written from and read into ``git_objects`` rows.

A pack entry is a type-and-size header followed by the object's content as one zlib
stream — which is exactly what a ``git_objects.data`` cell holds. So writing copies the
stored bytes after a header (no blob is inflated), and reading keeps each entry's zlib
bytes to store as they are (no blob is deflated again); both still hash every object.

Reading trusts nothing: the declared size of each entry is checked while inflating, in
bounded steps (a lying header or a zlib bomb stops at the limit, never allocates what it
claims), every object's sha is computed from its content, and the trailer checksum and
the end of the file are checked.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from dulwich.errors import ObjectFormatException
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import ObjectID, ShaFile
from dulwich.pack import pack_header_chunks, pack_object_header

from sessiond.transfer.errors import InvalidArchive

# dulwich's type numbers (as ``git_objects.type``): whole objects we store. Tags (4) and
# deltas (6, 7) are never written by an export and are refused on import.
TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob"}
HEADER_BYTES = 12
TRAILER_BYTES = 20
STEP = 64 * 1024


def entry_header(type_num: int, size: int) -> bytes:
    """The pack entry header of a whole object of ``size`` bytes."""
    return bytes(pack_object_header(type_num, None, size, DEFAULT_OBJECT_FORMAT))


def pack_size(entries: Iterable[tuple[int, int, int]]) -> int:
    """The byte size of a pack of ``(type, size, len(zlib data))`` entries."""
    body = sum(len(entry_header(kind, size)) + stored for kind, size, stored in entries)
    return HEADER_BYTES + body + TRAILER_BYTES


def write_pack(count: int, entries: Iterator[tuple[int, int, bytes]]) -> Iterator[bytes]:
    """The chunks of a pack of ``count`` entries ``(type, size, zlib data)``."""
    sha = hashlib.sha1()
    for chunk in pack_header_chunks(count):
        sha.update(chunk)
        yield chunk
    written = 0
    for kind, size, data in entries:
        header = entry_header(kind, size)
        sha.update(header)
        sha.update(data)
        written += 1
        yield header
        yield data
    if written != count:
        raise AssertionError(f"pack announced {count} objects, got {written}")
    yield sha.digest()


class ChunkReader:
    """A file-like ``read(n)`` over an iterator of byte chunks (what ``tarfile`` copies
    a member from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0:
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


@dataclass(frozen=True)
class Entry:
    """Where an object is in a pack file: its type, size and zlib bytes ``[start, end)``."""

    type_num: int
    size: int
    start: int
    end: int


@dataclass
class Scanned:
    """What reading a pack found: every object's ``Entry``, and the parsed objects of the
    types asked to be kept (trees and commits: small, and needed to follow references)."""

    entries: dict[str, Entry]
    kept: dict[str, ShaFile]


def _bad(message: str) -> InvalidArchive:
    return InvalidArchive("bad_pack", f"objects.pack: {message}")


class _Hashed:
    """Reads of a file that also feed the pack checksum."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha = hashlib.sha1()

    def exactly(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise _bad("ends in the middle of an object (truncated)")
        self.sha.update(data)
        return data


def _entry_header(r: _Hashed) -> tuple[int, int]:
    byte = r.exactly(1)[0]
    kind, size, shift = (byte >> 4) & 7, byte & 15, 4
    while byte & 0x80:
        if shift > 63:
            raise _bad("an object header's size does not end")
        byte = r.exactly(1)[0]
        size |= (byte & 0x7F) << shift
        shift += 7
    return kind, size


def scan(
    f: IO[bytes],
    expected: list[str],
    *,
    object_limit: int,
    total_limit: int,
    keep: frozenset[int] = frozenset({1, 2}),
) -> Scanned:
    """Read the whole pack ``f`` (seekable, at its start) and check it: the i-th object
    must hash to ``expected[i]`` (``object_mismatch``), inflate to the size its header
    declares, at most ``object_limit`` bytes each and ``total_limit`` in all; the
    trailer must be the checksum and end the file (``bad_pack``)."""
    r = _Hashed(f)
    head = r.exactly(HEADER_BYTES)
    magic, version, count = head[:4], *struct.unpack(">LL", head[4:])
    if magic != b"PACK" or version not in (2, 3):
        raise _bad("not a git pack (no PACK signature, version 2)")
    if count != len(expected):
        raise _bad(f"holds {count} objects, the manifest lists {len(expected)}")
    entries: dict[str, Entry] = {}
    kept: dict[str, ShaFile] = {}
    total = 0
    for i in range(count):
        kind, size = _entry_header(r)
        if kind not in TYPE_NAMES:
            raise _bad(f"object {i} has type {kind}: only whole commits, trees and blobs")
        if size > object_limit:
            raise _bad(f"object {i} declares {size} bytes, over the {object_limit}-byte limit")
        total += size
        if total > total_limit:
            raise _bad(f"the objects hold more than {total_limit} bytes")
        start = f.tell()
        sha = hashlib.sha1(TYPE_NAMES[kind] + b" %d\0" % size)
        pieces: list[bytes] | None = [] if kind in keep else None
        try:
            _inflate(r, size, sha, pieces)
        except zlib.error as e:
            raise _bad(f"object {i} is not valid zlib data ({e})") from None
        got = sha.hexdigest()
        if got != expected[i]:
            raise InvalidArchive(
                "object_mismatch",
                f"object {i} hashes to {got}, the manifest says {expected[i]}",
                field=f"objects[{i}]",
            )
        entries[got] = Entry(kind, size, start, f.tell())
        if pieces is not None:
            kept[got] = _parse(kind, b"".join(pieces), got)
    trailer = f.read(TRAILER_BYTES)
    if trailer != r.sha.digest():
        raise _bad("the checksum at its end does not match its content")
    if f.read(1):
        raise _bad("has bytes after its checksum")
    return Scanned(entries, kept)


def _parse(kind: int, raw: bytes, sha: str) -> ShaFile:
    try:
        obj = ShaFile.from_raw_string(kind, raw, ObjectID(sha.encode()))
        if kind == 1:  # trees are held to the workspace rules later (paths.check_tree)
            obj.check()
    except (ObjectFormatException, ValueError, IndexError) as e:
        raise _bad(f"{TYPE_NAMES[kind].decode()} {sha} is malformed ({e})") from None
    return obj


def _inflate(r: _Hashed, size: int, sha: Any, pieces: list[bytes] | None) -> None:
    """Inflate one zlib stream from ``r`` into exactly ``size`` bytes, fed to ``sha`` (and
    kept in ``pieces`` unless None) piece by piece — at most ``STEP`` compressed and
    ``size + 1`` inflated bytes at a time — leaving ``r.f`` just after the stream."""
    d = zlib.decompressobj()
    f = r.f
    out_len = 0
    while not d.eof:
        chunk = f.read(STEP)
        if not chunk:
            raise _bad("ends in the middle of an object (truncated)")
        data = d.decompress(chunk, size - out_len + 1)
        while True:
            out_len += len(data)
            if out_len > size:
                raise _bad(f"an object inflates to more than the {size} bytes it declares")
            sha.update(data)
            if pieces is not None:
                pieces.append(data)
            if d.eof or not d.unconsumed_tail:
                break
            data = d.decompress(d.unconsumed_tail, size - out_len + 1)
        used = len(chunk) - len(d.unused_data)
        r.sha.update(chunk[:used])
        if used < len(chunk):
            f.seek(used - len(chunk), 1)
    if out_len != size:
        raise _bad(f"an object inflates to {out_len} bytes, its header declares {size}")


def stored(f: IO[bytes], entry: Entry) -> bytes:
    """The entry's zlib bytes (what ``git_objects.data`` stores)."""
    f.seek(entry.start)
    return f.read(entry.end - entry.start)


def content(f: IO[bytes], entry: Entry) -> bytes:
    """The entry's object content (inflated)."""
    return zlib.decompress(stored(f, entry))
