"""SegmentedLog: an append-only log of ``(index, term, data)`` entries in segment files.

Rules the code keeps:

1. Indexes are contiguous from ``first_index`` to ``last_index``; segment ``k+1`` starts at the
   index after the last entry of segment ``k``. Only the last segment (the active one) is written.
2. ``append`` hands each segment's part of a call to the OS with one ``os.write``; nothing is
   durable until ``sync`` returns (``synced_index`` says how far it got).
3. Before a new segment is created the active one is fsynced (and the directory, if it holds a
   not yet durable segment). So a torn record can only ever be at the end of the last segment,
   and recovery treats a torn record anywhere else as corruption.
4. Recovery verifies every record and changes nothing on disk until the whole scan is clean.
   Then it truncates a torn tail of the last segment and rewrites stale ``.idx`` hints.
5. Any I/O error while writing or syncing leaves the log failed: every later call raises
   ``LogError`` (after a failed fsync the kernel may have dropped the dirty pages, so retrying
   could report durability that does not exist).
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import re
import struct
from array import array
from collections.abc import Sequence
from itertools import accumulate, islice, repeat
from operator import add
from typing import Any

from crc32c import crc32c

from storage.errors import CorruptLogError, LogError
from storage.segment import (
    RECORD,
    RECORD_OVERHEAD_BYTES,
    TERM_BYTES,
    Segment,
    build_index,
    index_path,
    log_path,
    parse_records,
    read_index,
    scan_segment,
)

__all__ = ["CorruptLogError", "LogError", "SegmentedLog"]

logger = logging.getLogger("polymq.storage")

_TERM = struct.Struct("<Q")
_SEGMENT_NAME = re.compile(r"^(\d{20})\.(log|idx)$")
_TERM_MAX = (1 << 64) - 1
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentedLog:
    """See the module docstring. Create with :meth:`open`."""

    def __init__(
        self,
        directory: str,
        segments: list[Segment],
        terms: array[int],
        *,
        segment_bytes_max: int,
        payload_bytes_max: int,
        index_interval_records: int,
        index_interval_bytes: int,
    ) -> None:
        self._dir = directory
        self._segments = segments
        self._bases = [s.base_index for s in segments]
        self._terms = terms
        self._segment_bytes_max = segment_bytes_max
        self._payload_bytes_max = payload_bytes_max
        self._index_interval_records = index_interval_records
        self._index_interval_bytes = index_interval_bytes
        self._first = segments[0].base_index
        self._synced = self._first + len(terms) - 1
        self._unsynced = False  # the active segment holds bytes not yet fdatasynced
        self._dir_dirty = False  # a segment was created since the directory was last fsynced
        self._failed: BaseException | None = None
        self._closed = False
        self._buf = bytearray(1 << 16)
        self._stats = {"syncs": 0, "appends": 0, "records": 0, "bytes_written": 0, "rolls": 0}

    # -- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = 64 << 20,
        payload_bytes_max: int = 16 << 20,
        index_interval_records: int = 4096,
        index_interval_bytes: int = 1 << 20,
    ) -> SegmentedLog:
        """Open (creating if missing) the log in ``directory`` and recover it."""
        if segment_bytes_max < RECORD_OVERHEAD_BYTES:
            raise ValueError(f"segment_bytes_max must be >= {RECORD_OVERHEAD_BYTES}")
        if not 0 <= payload_bytes_max < (1 << 32) - RECORD_OVERHEAD_BYTES:
            raise ValueError("payload_bytes_max must fit the u32 length field")
        if index_interval_records < 1 or index_interval_bytes < 1:
            raise ValueError("index intervals must be positive")
        path = os.fspath(directory)
        try:
            os.makedirs(path, exist_ok=True)
            names = os.listdir(path)
        except OSError as exc:
            raise LogError(f"cannot open log directory {path}: {exc}") from exc
        try:
            return cls._recover(
                path,
                names,
                segment_bytes_max=segment_bytes_max,
                payload_bytes_max=payload_bytes_max,
                index_interval_records=index_interval_records,
                index_interval_bytes=index_interval_bytes,
            )
        except LogError:
            raise
        except OSError as exc:
            raise LogError(f"cannot open log in {path}: {exc}") from exc

    @staticmethod
    def set_aside_damage(directory: str | os.PathLike[str], error: CorruptLogError) -> str:
        """Keep the good prefix of a damaged log, for a node that can fetch the rest again
        (a cluster member). The damaged segment is copied whole, and every later segment moved,
        into a new ``damaged-<n>`` folder under ``directory`` (kept for inspection, never read
        again), and the damaged segment is cut at the record that failed. Returns the folder.
        The caller opens the log again (another damaged record further back is possible)."""
        path = os.fspath(directory)
        bad = os.path.basename(error.path)
        m = _SEGMENT_NAME.match(bad)
        if m is None or os.path.dirname(os.path.abspath(error.path)) != os.path.abspath(path):
            raise LogError(f"{error.path} is not a segment of the log in {path}") from error
        bad_base = int(m.group(1))
        n = 1
        while os.path.exists(os.path.join(path, f"damaged-{n}")):
            n += 1
        aside = os.path.join(path, f"damaged-{n}")
        try:
            os.mkdir(aside)
            with open(error.path, "rb") as f:
                _write_file(os.path.join(aside, bad), f.read())
            for name in sorted(os.listdir(path)):
                m = _SEGMENT_NAME.match(name)
                if m is None:
                    continue
                base = int(m.group(1))
                if base > bad_base or (base == bad_base and m.group(2) == "idx"):
                    os.replace(os.path.join(path, name), os.path.join(aside, name))
            fd = os.open(error.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, error.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            if error.offset == 0:
                os.unlink(error.path)
            _fsync_dir(aside)
            _fsync_dir(path)
        except OSError as exc:
            raise LogError(f"cannot set aside the damaged log in {path}: {exc}") from exc
        return aside

    @classmethod
    def _recover(
        cls,
        path: str,
        names: list[str],
        *,
        segment_bytes_max: int,
        payload_bytes_max: int,
        index_interval_records: int,
        index_interval_bytes: int,
    ) -> SegmentedLog:
        log_bases: list[int] = []
        idx_bases: list[int] = []
        temp_names: list[str] = []
        for name in names:
            m = _SEGMENT_NAME.match(name)
            if m is not None:
                (log_bases if m.group(2) == "log" else idx_bases).append(int(m.group(1)))
            elif name.endswith(".tmp"):
                temp_names.append(name)
        log_bases.sort()

        # Phase 1: read and verify everything; raise before touching the disk.
        scans = []
        expected = None
        for i, base in enumerate(log_bases):
            seg_path = log_path(path, base)
            if expected is not None and base != expected:
                raise CorruptLogError(
                    seg_path,
                    0,
                    f"segment base index {base} does not follow the previous segment, "
                    f"which ends at index {expected - 1}",
                )
            with open(seg_path, "rb") as f:
                data = f.read()
            scan = scan_segment(
                seg_path,
                data,
                is_last=i == len(log_bases) - 1,
                payload_bytes_max=payload_bytes_max,
            )
            scans.append(scan)
            expected = base + len(scan.offsets)

        # Phase 2: the scan is clean; repair the tail and the hints.
        segments: list[Segment] = []
        terms: array[int] = array("Q")
        created = False
        for base, scan in zip(log_bases, scans, strict=True):
            seg_path = log_path(path, base)
            fd = os.open(seg_path, _OPEN_FLAGS)
            seg = Segment(path, base, fd, scan.valid_bytes, scan.offsets)
            segments.append(seg)
            terms.extend(scan.terms)
            if scan.torn_reason is not None:
                logger.warning(
                    "truncating torn tail of the log",
                    extra={
                        "path": seg_path,
                        "offset": scan.valid_bytes,
                        "bytes_dropped": scan.file_bytes - scan.valid_bytes,
                        "reason": scan.torn_reason,
                    },
                )
                os.ftruncate(fd, scan.valid_bytes)
                os.fsync(fd)
        if not segments:
            fd = os.open(log_path(path, 1), _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
            segments.append(Segment(path, 1, fd, 0))
            created = True
        for seg in segments:
            want = build_index(
                seg.base_index,
                seg.offsets,
                seg.size,
                interval_records=index_interval_records,
                interval_bytes=index_interval_bytes,
            )
            if read_index(seg.idx_path) != want:
                if seg.base_index in idx_bases:
                    logger.info("rebuilding log index hint", extra={"path": seg.idx_path})
                _write_file(seg.idx_path, want)
        live = set(log_bases)
        for base in idx_bases:
            if base not in live:
                _unlink_quiet(index_path(path, base))
        for name in temp_names:
            _unlink_quiet(os.path.join(path, name))
        if created or temp_names or not live.issuperset(idx_bases):
            _fsync_dir(path)
        return cls(
            path,
            segments,
            terms,
            segment_bytes_max=segment_bytes_max,
            payload_bytes_max=payload_bytes_max,
            index_interval_records=index_interval_records,
            index_interval_bytes=index_interval_bytes,
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def directory(self) -> str:
        return self._dir

    @property
    def first_index(self) -> int:
        return self._first

    @property
    def last_index(self) -> int:
        return self._first + len(self._terms) - 1

    @property
    def synced_index(self) -> int:
        return self._synced

    @property
    def payload_bytes_max(self) -> int:
        return self._payload_bytes_max

    # -- writing --------------------------------------------------------------------------------

    def append(self, entries: Sequence[tuple[int, bytes]]) -> int:
        """Append ``(term, data)`` entries; returns the new last index. Not durable yet."""
        if not entries:
            self._check_writable()
            return self.last_index
        terms = [t for t, _ in entries]
        datas = [d for _, d in entries]
        return self._append(datas, terms, terms[0])

    def append_batch(self, term: int, datas: Sequence[bytes]) -> int:
        """Append every item of ``datas`` with the same ``term``: the group-commit fast path."""
        if not datas:
            self._check_writable()
            return self.last_index
        return self._append(datas, None, term)

    def _append(self, datas: Sequence[bytes], terms: list[int] | None, term: int) -> int:
        self._check_writable()
        n = len(datas)
        payload_max = self._payload_bytes_max
        if max(map(len, datas)) > payload_max:
            raise LogError(f"entry data is larger than payload_bytes_max={payload_max}")
        floor = self._terms[-1] if self._terms else 0
        if terms is None:
            if not floor <= term <= _TERM_MAX:
                raise LogError(f"term {term} is below the log's last term {floor} or too large")
        else:
            for t in terms:
                if not floor <= t <= _TERM_MAX:
                    raise LogError(f"term {t} is below the previous term {floor} or too large")
                floor = t
        need = sum(map(len, datas)) + RECORD_OVERHEAD_BYTES * n
        if terms is None and self._segments[-1].size + need <= self._segment_bytes_max:
            self._append_same_term(datas, term)
            self._stats["appends"] += 1
            return self.last_index
        if len(self._buf) < need:
            self._buf = bytearray(max(need, 2 * len(self._buf)))
        buf = self._buf
        pack_into = RECORD.pack_into
        seg = self._segments[-1]
        offsets = seg.offsets
        seg_max = self._segment_bytes_max
        file_off = seg.size  # file offset of buf[start]
        start = 0  # first byte in buf of the current segment's chunk
        first_rec = 0  # first record (position in datas) of the current chunk
        chunk_offsets = len(offsets)
        pos = 0
        cur_term = term
        crc_term = crc32c(_TERM.pack(term))
        with memoryview(buf) as view:
            try:
                for i, data in enumerate(datas):
                    ln = len(data)
                    end = pos + RECORD_OVERHEAD_BYTES + ln
                    if offsets and file_off + end - start > seg_max:
                        self._commit_chunk(seg, view[start:pos], terms, term, first_rec, i)
                        seg = self._roll()
                        offsets = seg.offsets
                        file_off = seg.size
                        start = pos
                        first_rec = i
                        chunk_offsets = 0
                    if terms is not None and terms[i] != cur_term:
                        cur_term = terms[i]
                        crc_term = crc32c(_TERM.pack(cur_term))
                    buf[pos + RECORD_OVERHEAD_BYTES : end] = data
                    pack_into(buf, pos, ln + 8, crc32c(data, crc_term), cur_term)
                    offsets.append(file_off + pos - start)
                    pos = end
            except (TypeError, ValueError, struct.error):
                del offsets[chunk_offsets:]
                raise
            self._commit_chunk(seg, view[start:pos], terms, term, first_rec, n)
        self._stats["appends"] += 1
        return self.last_index

    def _append_same_term(self, datas: Sequence[bytes], term: int) -> None:
        """Append ``datas`` (already checked) with one term into the active segment, which has
        room for all of it. Builds the records with C-level loops rather than one by one."""
        seg = self._segments[-1]
        n = len(datas)
        lengths = list(map(len, datas))
        crc_term = crc32c(_TERM.pack(term))
        parts: list[bytes] = [b""] * (2 * n)
        parts[::2] = map(
            RECORD.pack,
            map(add, lengths, repeat(TERM_BYTES)),
            map(crc32c, datas, repeat(crc_term)),
            repeat(term),
        )
        parts[1::2] = datas
        chunk = b"".join(parts)
        sizes = map(add, lengths, repeat(RECORD_OVERHEAD_BYTES))
        seg.offsets.extend(islice(accumulate(sizes, initial=seg.size), n))
        with memoryview(chunk) as view:
            self._commit_chunk(seg, view, None, term, 0, n)

    def _commit_chunk(
        self,
        seg: Segment,
        chunk: memoryview,
        terms: list[int] | None,
        term: int,
        lo: int,
        hi: int,
    ) -> None:
        """Write one segment's part of an append; the offsets of its records are already added."""
        count = hi - lo
        total = len(chunk)
        try:
            written = os.write(seg.fd, chunk)
            while written < total:
                written += os.write(seg.fd, chunk[written:])
        except OSError as exc:
            del seg.offsets[len(seg.offsets) - count :]
            self._fail(exc)
            try:
                os.ftruncate(seg.fd, seg.size)
            except OSError:
                pass
            raise LogError(f"write to {seg.path} failed: {exc}") from exc
        seg.size += total
        if terms is None:
            self._terms.extend(array("Q", (term,)) * count)
        else:
            self._terms.extend(terms[lo:hi])
        self._unsynced = True
        self._stats["records"] += count
        self._stats["bytes_written"] += total

    def _roll(self) -> Segment:
        """Seal the active segment (durably) and start a new one after it."""
        old = self._segments[-1]
        try:
            if self._unsynced:
                os.fdatasync(old.fd)
                self._unsynced = False
            if self._dir_dirty:
                _fsync_dir(self._dir)
                self._dir_dirty = False
            self._synced = self.last_index
            self._write_index(old)
            base = self.last_index + 1
            fd = os.open(log_path(self._dir, base), _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self._fail(exc)
            raise LogError(f"cannot roll to a new segment in {self._dir}: {exc}") from exc
        seg = Segment(self._dir, base, fd, 0)
        self._segments.append(seg)
        self._bases.append(base)
        self._dir_dirty = True
        self._stats["rolls"] += 1
        return seg

    def sync(self) -> int:
        """Make every appended entry durable; returns ``synced_index``.

        May run in a worker thread while the owner thread reads, but never alongside
        ``append``, ``truncate_suffix``, ``compact_prefix`` or ``close``.
        """
        self._check_writable()
        target = self.last_index
        if not self._unsynced and not self._dir_dirty:
            self._synced = target
            return target
        seg = self._segments[-1]
        try:
            if self._unsynced:
                self._unsynced = False
                os.fdatasync(seg.fd)
            if self._dir_dirty:
                self._dir_dirty = False
                _fsync_dir(self._dir)
        except OSError as exc:
            self._fail(exc)
            raise LogError(f"fsync of the log in {self._dir} failed: {exc}") from exc
        self._synced = target
        self._stats["syncs"] += 1
        return target

    def truncate_suffix(self, index: int) -> None:
        """Drop every entry above ``index``; durable on return."""
        self._check_writable()
        if index >= self.last_index:
            return
        if index < self._first - 1:
            raise LogError(
                f"cannot truncate to {index}: entries below {self._first} were compacted"
            )
        k = bisect.bisect_right(self._bases, index + 1) - 1
        seg = self._segments[k]
        doomed = self._segments[k + 1 :]
        try:
            for s in reversed(doomed):
                os.close(s.fd)
                _unlink_quiet(s.path)
                _unlink_quiet(s.idx_path)
            if doomed or self._dir_dirty:
                _fsync_dir(self._dir)
                self._dir_dirty = False
            rel = index + 1 - seg.base_index
            new_size = seg.offsets[rel] if rel < seg.count else seg.size
            os.ftruncate(seg.fd, new_size)
            os.fdatasync(seg.fd)
            del seg.offsets[rel:]
            seg.size = new_size
            del self._segments[k + 1 :]
            del self._bases[k + 1 :]
            del self._terms[index + 1 - self._first :]
            self._unsynced = False
            self._synced = index
            self._write_index(seg)
        except OSError as exc:
            self._fail(exc)
            raise LogError(f"truncating the log in {self._dir} failed: {exc}") from exc

    def compact_prefix(self, index: int) -> None:
        """Drop every sealed segment whose entries are all ``<= index``; durable on return.

        The active segment is never dropped, so ``first_index`` may stay below ``index + 1``.
        """
        self._check_writable()
        drop = 0
        while drop < len(self._segments) - 1 and self._segments[drop].last_index <= index:
            drop += 1
        if drop == 0:
            return
        dropped = self._segments[:drop]
        try:
            for s in dropped:  # lowest first: a crash midway leaves a contiguous log
                os.close(s.fd)
                _unlink_quiet(s.path)
                _unlink_quiet(s.idx_path)
            _fsync_dir(self._dir)
            self._dir_dirty = False
        except OSError as exc:
            self._fail(exc)
            raise LogError(f"compacting the log in {self._dir} failed: {exc}") from exc
        new_first = self._segments[drop].base_index
        del self._terms[: new_first - self._first]
        del self._segments[:drop]
        del self._bases[:drop]
        self._first = new_first
        self._synced = max(self._synced, new_first - 1)

    def reset(self, next_index: int) -> None:
        """Drop every entry and start empty, the next append taking ``next_index``; durable on
        return. For installing a snapshot that ends at ``next_index - 1``.

        Segments are removed lowest first, so a crash midway leaves a contiguous (stale) log
        that ends before the snapshot; the new empty segment is created last.
        """
        self._check_writable()
        if next_index < 1:
            raise ValueError("next_index must be >= 1")
        try:
            for s in self._segments:
                os.close(s.fd)
                _unlink_quiet(s.path)
                _unlink_quiet(s.idx_path)
            self._segments = []
            self._bases = []
            _fsync_dir(self._dir)
            fd = os.open(
                log_path(self._dir, next_index), _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644
            )
            seg = Segment(self._dir, next_index, fd, 0)
            self._write_index(seg)
            _fsync_dir(self._dir)
        except OSError as exc:
            self._fail(exc)
            raise LogError(f"resetting the log in {self._dir} failed: {exc}") from exc
        self._segments = [seg]
        self._bases = [next_index]
        self._terms = array("Q")
        self._first = next_index
        self._synced = next_index - 1
        self._unsynced = False
        self._dir_dirty = False

    def close(self) -> None:
        """Release the files. Does not sync: call :meth:`sync` first for durability."""
        if self._closed:
            return
        self._closed = True
        if self._failed is None:
            try:
                self._write_index(self._segments[-1])
            except OSError:
                pass
        for seg in self._segments:
            try:
                os.close(seg.fd)
            except OSError:
                pass

    # -- reading --------------------------------------------------------------------------------

    def term_at(self, index: int) -> int:
        """Term of entry ``index``; 0 for index 0 of a log that was never compacted."""
        rel = index - self._first
        if 0 <= rel < len(self._terms):
            return self._terms[rel]
        if index == 0 and self._first == 1:
            return 0
        raise IndexError(f"index {index} outside [{self._first}, {self.last_index}]")

    def entry(self, index: int) -> tuple[int, bytes]:
        """``(term, data)`` of entry ``index``, CRC-checked."""
        self._check_open()
        if not self._first <= index <= self.last_index:
            raise IndexError(f"index {index} outside [{self._first}, {self.last_index}]")
        seg = self._segments[bisect.bisect_right(self._bases, index) - 1]
        rel = index - seg.base_index
        off = seg.offsets[rel]
        out: list[tuple[int, bytes]] = []
        parse_records(seg.path, self._pread(seg, seg.record_end(rel) - off, off), off, 1, out)
        return out[0]

    def entries(self, lo: int, hi: int, *, bytes_max: int | None = None) -> list[tuple[int, bytes]]:
        """Entries ``[lo, hi)``; stops before the data would pass ``bytes_max`` (at least one)."""
        self._check_open()
        if lo >= hi:
            return []
        if lo < self._first or hi > self.last_index + 1:
            raise IndexError(f"range [{lo}, {hi}) outside [{self._first}, {self.last_index + 1})")
        out: list[tuple[int, bytes]] = []
        budget = bytes_max
        index = lo
        k = bisect.bisect_right(self._bases, lo) - 1
        while index < hi:
            seg = self._segments[k]
            rel_lo = index - seg.base_index
            rel_hi = min(hi - seg.base_index, seg.count)
            offsets = seg.offsets
            start = offsets[rel_lo]
            if budget is not None:
                rel = rel_lo
                while rel < rel_hi:
                    size = seg.record_end(rel) - offsets[rel] - RECORD_OVERHEAD_BYTES
                    if size > budget and (out or rel > rel_lo):
                        break
                    budget -= size
                    rel += 1
                stop = rel < rel_hi
                rel_hi = rel
            else:
                stop = False
            end = seg.record_end(rel_hi - 1)
            data = self._pread(seg, end - start, start)
            parse_records(seg.path, data, start, rel_hi - rel_lo, out)
            index = seg.base_index + rel_hi
            if stop:
                break
            k += 1
        return out

    def _pread(self, seg: Segment, size: int, offset: int) -> bytes:
        try:
            data = os.pread(seg.fd, size, offset)
        except OSError as exc:
            raise LogError(f"read of {seg.path} failed: {exc}") from exc
        if len(data) != size:
            raise CorruptLogError(seg.path, offset, f"short read ({len(data)} of {size} bytes)")
        return data

    # -- misc -----------------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return {
            "segments": len(self._segments),
            "bytes": sum(s.size for s in self._segments),
            "first_index": self._first,
            "last_index": self.last_index,
            "synced_index": self._synced,
            **self._stats,
        }

    def _write_index(self, seg: Segment) -> None:
        _write_file(
            seg.idx_path,
            build_index(
                seg.base_index,
                seg.offsets,
                seg.size,
                interval_records=self._index_interval_records,
                interval_bytes=self._index_interval_bytes,
            ),
        )

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            logger.error("log failed; refusing further writes", extra={"error": repr(exc)})

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("log is closed")

    def _check_writable(self) -> None:
        if self._closed:
            raise LogError("log is closed")
        if self._failed is not None:
            raise LogError(f"log failed earlier and accepts no more writes: {self._failed!r}")

    def __enter__(self) -> SegmentedLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _write_file(path: str, data: bytes) -> None:
    """Overwrite a hint file (no fsync: a lost or torn hint is rebuilt on open)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
