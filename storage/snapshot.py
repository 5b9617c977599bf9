"""State snapshots: ``{index:020d}-{term:020d}.snap`` files.

Layout (little-endian)::

    magic "PMQS" | version u32 | index u64 | term u64 | length u64 | crc32c(data) u32 | data

A snapshot is written to ``<name>.tmp``, fsynced, renamed into place and the directory fsynced;
only then are older snapshots beyond the newest ``keep`` removed. Leftover ``.tmp`` files are from
an interrupted write and are removed when found.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from crc32c import crc32c

from storage.errors import CorruptSnapshotError, LogError

__all__ = ["Snapshot", "list_snapshots", "load_latest_snapshot", "write_snapshot"]

_MAGIC = b"PMQS"
_VERSION = 1
_HEAD = struct.Struct("<4sIQQQI")
_NAME = re.compile(r"^(\d{20})-(\d{20})\.snap$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: int
    term: int
    data: bytes
    path: str = ""


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_snapshots(directory: str | os.PathLike[str]) -> list[tuple[int, int, str]]:
    """``(index, term, path)`` of every snapshot file, oldest first."""
    path = os.fspath(directory)
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LogError(f"cannot list snapshot directory {path}: {exc}") from exc
    found = []
    for name in names:
        m = _NAME.match(name)
        if m is not None:
            found.append((int(m.group(1)), int(m.group(2)), os.path.join(path, name)))
    found.sort()
    return found


def write_snapshot(
    directory: str | os.PathLike[str],
    index: int,
    term: int,
    data: bytes,
    *,
    keep: int = 2,
) -> str:
    """Durably write a snapshot and return its path; then prune to the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    path = os.fspath(directory)
    final = os.path.join(path, f"{index:020d}-{term:020d}.snap")
    temp = final + ".tmp"
    header = _HEAD.pack(_MAGIC, _VERSION, index, term, len(data), crc32c(data))
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with memoryview(header + data) as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        _fsync_dir(path)
        for _, _, old in list_snapshots(path)[:-keep]:
            os.unlink(old)
        for name in os.listdir(path):
            if name.endswith(".snap.tmp") and os.path.join(path, name) != temp:
                os.unlink(os.path.join(path, name))
    except OSError as exc:
        raise LogError(f"cannot write snapshot {final}: {exc}") from exc
    return final


def read_snapshot(path: str) -> Snapshot:
    """Read and verify one snapshot file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise LogError(f"cannot read snapshot {path}: {exc}") from exc
    if len(raw) < _HEAD.size:
        raise CorruptSnapshotError(path, f"file of {len(raw)} bytes is shorter than the header")
    magic, version, index, term, length, crc = _HEAD.unpack_from(raw)
    if magic != _MAGIC:
        raise CorruptSnapshotError(path, f"bad magic {magic!r}")
    if version != _VERSION:
        raise CorruptSnapshotError(path, f"unknown version {version}")
    if len(raw) - _HEAD.size != length:
        raise CorruptSnapshotError(
            path, f"length field {length} but {len(raw) - _HEAD.size} data bytes"
        )
    data = raw[_HEAD.size :]
    if crc32c(data) != crc:
        raise CorruptSnapshotError(path, "crc32c mismatch")
    m = _NAME.match(os.path.basename(path))
    if m is not None and (int(m.group(1)), int(m.group(2))) != (index, term):
        raise CorruptSnapshotError(path, f"header says index {index} term {term}")
    return Snapshot(index, term, data, path)


def load_latest_snapshot(directory: str | os.PathLike[str]) -> Snapshot | None:
    """The newest snapshot, verified; ``None`` when there is none.

    A corrupt newest snapshot raises :class:`CorruptSnapshotError` rather than silently falling
    back to an older one: the log prefix it covered may already be compacted away.
    """
    path = os.fspath(directory)
    found = list_snapshots(path)
    try:
        for name in os.listdir(path) if found or os.path.isdir(path) else []:
            if name.endswith(".snap.tmp"):
                os.unlink(os.path.join(path, name))
    except OSError as exc:
        raise LogError(f"cannot clean snapshot directory {path}: {exc}") from exc
    if not found:
        return None
    return read_snapshot(found[-1][2])
