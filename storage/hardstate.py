"""The Raft hard state (term, vote, commit) in one small CRC-checked file.

Layout (little-endian)::

    magic "PMQH" | version u32 | term u64 | commit u64 | vote length u16 | vote (UTF-8)
    | crc32c of everything before it u32

``save`` writes ``<path>.tmp``, fsyncs it, renames it over ``path`` and fsyncs the directory, so
after a crash the file holds either the old or the new state, never a mix. ``load`` returns the
default state (term 0, no vote, commit 0) when the file does not exist, ignores a leftover
``.tmp`` (an interrupted save), and raises ``CorruptHardStateError`` naming the file when the
bytes fail their checks: a node must not forget a vote it gave, so a damaged file stops it.
"""

from __future__ import annotations

import os
import struct

from crc32c import crc32c

from storage.errors import LogError
from storage.raft.core import HardState

__all__ = ["CorruptHardStateError", "load_hard_state", "save_hard_state"]

_MAGIC = b"PMQH"
_VERSION = 1
_HEAD = struct.Struct("<4sIQQH")
_CRC = struct.Struct("<I")
VOTE_BYTES_MAX = 1024


class CorruptHardStateError(LogError):
    """The hard state file exists but fails its checks."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt hard state file {path}: {reason}")
        self.path = path
        self.reason = reason


def encode_hard_state(hs: HardState) -> bytes:
    vote = (hs.vote or "").encode()
    if len(vote) > VOTE_BYTES_MAX:
        raise ValueError(f"vote of {len(vote)} bytes exceeds VOTE_BYTES_MAX")
    body = _HEAD.pack(_MAGIC, _VERSION, hs.term, hs.commit, len(vote)) + vote
    return body + _CRC.pack(crc32c(body))


def decode_hard_state(raw: bytes, path: str = "<bytes>") -> HardState:
    if len(raw) < _HEAD.size + _CRC.size:
        raise CorruptHardStateError(path, f"{len(raw)} bytes is shorter than the header")
    magic, version, term, commit, vote_len = _HEAD.unpack_from(raw)
    if magic != _MAGIC:
        raise CorruptHardStateError(path, f"bad magic {magic!r}")
    if version != _VERSION:
        raise CorruptHardStateError(path, f"unknown version {version}")
    end = _HEAD.size + vote_len
    if len(raw) != end + _CRC.size:
        raise CorruptHardStateError(path, f"length {len(raw)} does not match the vote length")
    (crc,) = _CRC.unpack_from(raw, end)
    if crc32c(raw[:end]) != crc:
        raise CorruptHardStateError(path, "crc32c mismatch")
    try:
        vote = raw[_HEAD.size : end].decode() or None
    except UnicodeDecodeError:
        raise CorruptHardStateError(path, "vote is not UTF-8") from None
    return HardState(term, vote, commit)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_hard_state(path: str | os.PathLike[str], hs: HardState) -> None:
    """Durably replace the file at ``path`` with ``hs`` (temp file, fsync, rename, fsync dir)."""
    final = os.fspath(path)
    temp = final + ".tmp"
    data = encode_hard_state(hs)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        _fsync_dir(os.path.dirname(os.path.abspath(final)))
    except OSError as exc:
        raise LogError(f"cannot write hard state {final}: {exc}") from exc


def load_hard_state(path: str | os.PathLike[str]) -> HardState:
    """The saved hard state, or the initial one when nothing was saved yet."""
    final = os.fspath(path)
    try:
        with open(final, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return HardState()
    except OSError as exc:
        raise LogError(f"cannot read hard state {final}: {exc}") from exc
    return decode_hard_state(raw, final)
