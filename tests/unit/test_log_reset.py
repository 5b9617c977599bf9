"""Log.reset(next_index): the log restarts empty after an installed snapshot, on disk and in
memory, and survives reopening and a crash in the middle of the reset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.log import SegmentedLog
from storage.memlog import MemoryLog
from storage.raft.core import LogStorage, SnapshotMeta


def _fill(log: SegmentedLog | MemoryLog, n: int, term: int = 1) -> None:
    log.append_batch(term, [b"e%d" % i for i in range(n)])
    log.sync()


def test_segmented_reset_then_append_and_reopen(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes_max=256)
    _fill(log, 50)
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".log")]) > 1
    log.reset(101)
    assert (log.first_index, log.last_index, log.synced_index) == (101, 100, 100)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".log")] == [f"{101:020d}.log"]
    log.append([(3, b"a"), (3, b"b")])
    log.sync()
    assert log.entries(101, 103) == [(3, b"a"), (3, b"b")]
    log.close()
    again = SegmentedLog.open(tmp_path, segment_bytes_max=256)
    assert (again.first_index, again.last_index) == (101, 102)
    assert again.entry(102) == (3, b"b")
    again.close()


def test_segmented_reset_of_empty_log_reopens_empty(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    log.reset(7)
    log.close()
    again = SegmentedLog.open(tmp_path)
    assert (again.first_index, again.last_index) == (7, 6)
    again.close()


def test_segmented_reset_interrupted_leaves_a_contiguous_log(tmp_path: Path) -> None:
    """A crash after some segments were removed (lowest first) leaves a contiguous suffix that
    ends before the snapshot; the next reset finishes the job."""
    log = SegmentedLog.open(tmp_path, segment_bytes_max=200)
    _fill(log, 40)
    log.close()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".log"))
    assert len(names) >= 3
    os.unlink(tmp_path / names[0])  # the crash happened after the first unlink
    again = SegmentedLog.open(tmp_path, segment_bytes_max=200)
    assert again.last_index == 40 and again.first_index > 1
    again.reset(60)
    assert (again.first_index, again.last_index) == (60, 59)
    again.close()


def test_memory_reset() -> None:
    log = MemoryLog(segment_entries_max=4)
    _fill(log, 10)
    log.reset(21)
    assert (log.first_index, log.last_index, log.synced_index) == (21, 20, 20)
    log.append([(2, b"x")])
    assert log.entry(21) == (2, b"x")
    log.compact_prefix(21)
    assert log.first_index == 21  # the only segment is the active one


@pytest.mark.parametrize("kind", ["memory", "segmented"])
def test_log_storage_after_reset(kind: str, tmp_path: Path) -> None:
    log: SegmentedLog | MemoryLog = MemoryLog() if kind == "memory" else SegmentedLog.open(tmp_path)
    _fill(log, 5)
    storage = LogStorage(log, snapshot=SnapshotMeta(30, 4, 10))
    assert storage.last_index() == 30  # the old log ends before the snapshot: unusable
    log.reset(31)
    assert (storage.first_index(), storage.last_index()) == (31, 30)
    assert storage.term_at(30) == 4
    assert storage.term_at(29) is None
    log.close()


def test_reset_rejects_zero(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MemoryLog().reset(0)
    log = SegmentedLog.open(tmp_path)
    with pytest.raises(ValueError):
        log.reset(0)
    log.close()
