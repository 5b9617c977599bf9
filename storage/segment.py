"""One segment of the log: a ``{base_index:020d}.log`` file and its ``.idx`` hint.

Record layout (all integers little-endian)::

    length u32 | crc32c u32 | payload          payload = term u64 | data

``length`` counts the payload (so it is always >= 8) and the CRC covers the payload.

The ``.idx`` file is a sparse index written when a segment is sealed, truncated or closed:
an entry every ``index_interval_records`` records or ``index_interval_bytes`` bytes, mapping a
record number to its file offset, plus the record count and byte size it describes. It is only a
hint: recovery scans every record anyway, and rewrites an ``.idx`` that is missing or does not
match what the scan found. In memory a segment keeps a dense offset table (8 bytes a record).
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from crc32c import crc32c

from storage.errors import CorruptLogError

__all__ = [
    "HEADER_BYTES",
    "RECORD",
    "RECORD_OVERHEAD_BYTES",
    "Segment",
    "ScanResult",
    "build_index",
    "index_path",
    "log_path",
    "parse_records",
    "scan_segment",
]

RECORD = struct.Struct("<IIQ")  # length, crc32c, term (the first 8 bytes of the payload)
HEADER_BYTES = 8  # length + crc32c
TERM_BYTES = 8
RECORD_OVERHEAD_BYTES = RECORD.size  # header + term
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<II")
_TERM = struct.Struct("<Q")

_IDX_MAGIC = b"PMQX"
_IDX_VERSION = 1
_IDX_HEAD = struct.Struct("<4sIQQQ")  # magic, version, base_index, record_count, size_bytes
_IDX_ENTRY = struct.Struct("<QQ")  # record number within the segment, file offset

LOG_SUFFIX = ".log"
IDX_SUFFIX = ".idx"


def log_path(directory: str, base_index: int) -> str:
    return os.path.join(directory, f"{base_index:020d}{LOG_SUFFIX}")


def index_path(directory: str, base_index: int) -> str:
    return os.path.join(directory, f"{base_index:020d}{IDX_SUFFIX}")


@dataclass
class Segment:
    """An open segment file. ``offsets[i]`` is the file offset of record ``base_index + i``."""

    directory: str
    base_index: int
    fd: int
    size: int
    offsets: array[int] = field(default_factory=lambda: array("Q"))

    @property
    def path(self) -> str:
        return log_path(self.directory, self.base_index)

    @property
    def idx_path(self) -> str:
        return index_path(self.directory, self.base_index)

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.offsets) - 1

    def record_end(self, rel: int) -> int:
        """File offset just past record number ``rel``."""
        offsets = self.offsets
        return offsets[rel + 1] if rel + 1 < len(offsets) else self.size


@dataclass
class ScanResult:
    offsets: array[int]
    terms: array[int]
    valid_bytes: int  # bytes of complete, verified records
    file_bytes: int
    torn_reason: str | None  # why the bytes after valid_bytes were not accepted


def scan_segment(path: str, data: bytes, *, is_last: bool, payload_bytes_max: int) -> ScanResult:
    """Verify every record of a segment's contents.

    A record that runs past the end of the file, or a zero-filled tail, is a torn tail when
    ``is_last`` (reported in ``torn_reason``) and corruption otherwise. A complete record with a
    bad length or CRC is always corruption.
    """
    offsets: array[int] = array("Q")
    terms: array[int] = array("Q")
    size = len(data)
    length_max = payload_bytes_max + TERM_BYTES
    head_from = _HEADER.unpack_from
    term_from = _TERM.unpack_from
    mv = memoryview(data)
    pos = 0
    torn: str | None = None
    while pos < size:
        if pos + HEADER_BYTES > size:
            torn = f"record header runs past end of file ({size - pos} bytes left)"
            break
        length, crc = head_from(data, pos)
        if length == 0:
            if len(data.rstrip(b"\x00")) > pos:
                raise CorruptLogError(path, pos, "zero length field followed by non-zero bytes")
            torn = "zero-filled tail"
            break
        end = pos + HEADER_BYTES + length
        if end > size:
            torn = f"record of {length} bytes runs past end of file ({size - pos} bytes left)"
            break
        if length < TERM_BYTES:
            raise CorruptLogError(path, pos, f"length field {length} is below {TERM_BYTES}")
        if length > length_max:
            raise CorruptLogError(path, pos, f"length field {length} is above {length_max}")
        actual = crc32c(mv[pos + HEADER_BYTES : end])
        if actual != crc:
            raise CorruptLogError(
                path, pos, f"crc32c mismatch (stored {crc:#010x}, computed {actual:#010x})"
            )
        offsets.append(pos)
        terms.append(term_from(data, pos + HEADER_BYTES)[0])
        pos = end
    if torn is not None and not is_last:
        raise CorruptLogError(path, pos, f"{torn} in a sealed segment")
    return ScanResult(offsets, terms, pos, size, torn)


def parse_records(
    path: str, data: bytes, file_offset: int, count: int, out: list[tuple[int, bytes]]
) -> None:
    """Decode ``count`` records from ``data`` (read at ``file_offset``), checking each CRC."""
    unpack_from = RECORD.unpack_from
    mv = memoryview(data)
    pos = 0
    for _ in range(count):
        length, crc, term = unpack_from(data, pos)
        end = pos + HEADER_BYTES + length
        if end > len(data) or length < TERM_BYTES:
            raise CorruptLogError(path, file_offset + pos, f"bad length field {length} on read")
        if crc32c(mv[pos + HEADER_BYTES : end]) != crc:
            raise CorruptLogError(path, file_offset + pos, "crc32c mismatch on read")
        out.append((term, bytes(mv[pos + RECORD.size : end])))
        pos = end


def build_index(
    base_index: int,
    offsets: array[int],
    size: int,
    *,
    interval_records: int,
    interval_bytes: int,
) -> bytes:
    """The ``.idx`` contents describing a segment; deterministic, so it can be compared."""
    parts = [_IDX_HEAD.pack(_IDX_MAGIC, _IDX_VERSION, base_index, len(offsets), size)]
    pack = _IDX_ENTRY.pack
    count = len(offsets)
    rel = 0
    # Offsets increase strictly, so the next entry is the first record at least
    # ``interval_records`` later or ``interval_bytes`` further, whichever comes first.
    while rel < count:
        off = offsets[rel]
        parts.append(pack(rel, off))
        rel = min(rel + interval_records, bisect_left(offsets, off + interval_bytes, rel + 1))
    body = b"".join(parts)
    return body + _U32.pack(crc32c(body))


def read_index(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
