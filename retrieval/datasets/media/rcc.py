"""Reader for Qt binary resource files (`.rcc`), which is how GCompris ships its media.

Why our own reader: the format is small (a header, a tree of fixed-size nodes, a table of
UTF-16 names and a data area of length-prefixed, optionally zlib-compressed blobs), and the
alternative, Qt's `rcc` tool, would add a Qt install to the demo build. The file is untrusted
input: every offset is bounds-checked and every size is capped before anything is allocated.

Layout (qtbase/src/corelib/io/qresource.cpp): header `qres`, version, tree offset, data offset,
names offset[, flags (v3)]; tree nodes are 14 bytes (v1) or 22 bytes (v2+: + u64 mtime):
name offset u32, flags u16, then for a directory child count u32 + first child index u32, for a
file territory u16 + language u16 + data offset u32. Names are u16 length, u32 hash, UTF-16BE.
Data is u32 length + bytes; a compressed entry (flag 1) holds a qCompress blob: u32 BE
uncompressed length + zlib stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import FusionrecError

MAX_ENTRY_BYTES = 64 * 1024 * 1024  # largest entry we inflate; GCompris' biggest is ~3 MB
MAX_NODES = 200_000  # tree nodes visited per file; real files have a few thousand
MAX_DEPTH = 64  # directory nesting; guards against cyclic trees

FLAG_COMPRESSED = 0x01  # zlib (qCompress) entry
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04  # zstd entry (rcc format 3); not used by GCompris, refused with a clear error


class RccError(FusionrecError, ValueError):
    """The file is not a readable Qt resource file, or an entry is corrupt or too large."""


@dataclass(frozen=True)
class RccEntry:
    """One file in the resource tree: its path and where its bytes lie."""

    path: str  # "/gcompris/src/activities/..." style, '/'-separated, no leading ':'
    data_offset: int  # absolute offset of the u32 length prefix
    compressed: bool
    zstd: bool


class RccFile:
    """A parsed `.rcc` file: `names()` lists entries, `read(path)` returns their bytes."""

    def __init__(self, data: bytes, *, where: str = "rcc") -> None:
        self._data = data
        self._where = where
        if len(data) < 20 or data[:4] != b"qres":
            raise RccError(f"{where}: not a Qt resource file (no 'qres' header)")
        version, tree, payload, names = struct.unpack(">IIII", data[4:20])
        if version not in (1, 2, 3):
            raise RccError(f"{where}: unsupported rcc format version {version}")
        for what, off in (("tree", tree), ("data", payload), ("names", names)):
            if off >= len(data):
                raise RccError(f"{where}: {what} offset {off} is past the end ({len(data)} bytes)")
        self.version = version
        self._tree, self._payload, self._names = tree, payload, names
        self._node_size = 14 if version == 1 else 22
        self._entries: dict[str, RccEntry] = {}
        self._walk()

    @classmethod
    def open(cls, path: str | Path) -> RccFile:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise RccError(f"{p}: cannot read ({e.strerror})") from e
        return cls(data, where=str(p))

    def _u(self, fmt: str, off: int) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if off < 0 or off + size > len(self._data):
            raise RccError(f"{self._where}: offset {off} is out of bounds")
        return struct.unpack(fmt, self._data[off : off + size])

    def _name(self, off: int) -> str:
        (length,) = self._u(">H", self._names + off)
        start = self._names + off + 6  # u16 length + u32 hash
        end = start + 2 * length
        if end > len(self._data):
            raise RccError(f"{self._where}: name at {off} runs past the end")
        return self._data[start:end].decode("utf-16-be", errors="replace")

    def _node(self, index: int) -> tuple[int, int, int, int]:
        """(name offset, flags, a, b): a/b are child count/first child or locale/data offset."""
        base = self._tree + index * self._node_size
        name_off, flags = self._u(">IH", base)
        if flags & FLAG_DIRECTORY:
            count, first = self._u(">II", base + 6)
            return name_off, flags, count, first
        _territory, _language, data_off = self._u(">HHI", base + 6)
        return name_off, flags, 0, data_off

    def _walk(self) -> None:
        stack: list[tuple[int, str, int]] = [(0, "", 0)]
        visited = 0
        while stack:
            index, prefix, depth = stack.pop()
            visited += 1
            if visited > MAX_NODES or depth > MAX_DEPTH:
                raise RccError(f"{self._where}: resource tree is too large or cyclic")
            name_off, flags, a, b = self._node(index)
            name = "" if index == 0 else self._name(name_off)
            path = f"{prefix}/{name}" if index else ""
            if flags & FLAG_DIRECTORY:
                if a > MAX_NODES:
                    raise RccError(f"{self._where}: directory claims {a} children")
                stack.extend((b + i, path, depth + 1) for i in range(a))
            else:
                self._entries[path.lstrip("/")] = RccEntry(
                    path=path.lstrip("/"),
                    data_offset=self._payload + b,
                    compressed=bool(flags & FLAG_COMPRESSED),
                    zstd=bool(flags & FLAG_ZSTD),
                )

    def names(self) -> list[str]:
        """Every file path in the tree, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def read(self, path: str) -> bytes:
        """The uncompressed bytes of one entry.

        Raises:
            RccError: unknown path, sizes that exceed the file or MAX_ENTRY_BYTES, corrupt zlib.
        """
        entry = self._entries.get(path.lstrip("/"))
        if entry is None:
            raise RccError(f"{self._where}: no entry {path!r}")
        (size,) = self._u(">I", entry.data_offset)
        start = entry.data_offset + 4
        if size > MAX_ENTRY_BYTES or start + size > len(self._data):
            raise RccError(f"{self._where}: entry {path!r} claims {size:,} bytes; refused")
        blob = self._data[start : start + size]
        if entry.zstd:
            raise RccError(f"{self._where}: entry {path!r} is zstd-compressed; not supported")
        if not entry.compressed:
            return blob
        if len(blob) < 4:
            raise RccError(f"{self._where}: compressed entry {path!r} is truncated")
        (expected,) = struct.unpack(">I", blob[:4])
        if expected > MAX_ENTRY_BYTES:
            raise RccError(f"{self._where}: entry {path!r} claims {expected:,} bytes; refused")
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(blob[4:], expected + 1)  # never more than claimed + 1
        except zlib.error as e:
            raise RccError(f"{self._where}: entry {path!r} is corrupt ({e})") from e
        if len(out) != expected:
            raise RccError(
                f"{self._where}: entry {path!r} inflates to {len(out):,} bytes, "
                f"not the {expected:,} it claims"
            )
        return out

    def extract(self, path: str, dest: Path) -> Path:
        """Write one entry to `dest` (parents created) and return `dest`."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.read(path))
        return dest
