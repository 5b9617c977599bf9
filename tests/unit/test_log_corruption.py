"""Recovery: corruption stops the open and changes nothing; torn tails are cut; hints rebuilt."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from storage.errors import CorruptLogError, CorruptSnapshotError, LogError
from storage.log import SegmentedLog
from storage.segment import RECORD_OVERHEAD_BYTES
from storage.snapshot import load_latest_snapshot, write_snapshot

SEGMENT_BYTES_MAX = 512


def make_log(directory: Path, count: int = 40) -> list[tuple[int, bytes]]:
    entries = [(1 + i // 10, f"entry-{i:04d}-".encode() * (1 + i % 5)) for i in range(count)]
    with SegmentedLog.open(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        for i in range(0, count, 3):
            log.append(entries[i : i + 3])
        log.sync()
        assert log.statistics()["segments"] >= 3
    return entries


def snapshot_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 8 + int.from_bytes(data[pos : pos + 4], "little")
    return offsets


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_flipped_byte_in_early_segment_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    seg = segment_files(tmp_path)[0]
    offsets = record_offsets(seg)
    middle = offsets[len(offsets) // 2]
    flip(seg, middle + RECORD_OVERHEAD_BYTES + 2)
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    err = info.value
    assert err.path == str(seg)
    assert err.offset == middle
    assert str(err).startswith(f"corrupt log record in {seg} at offset {middle}: ")
    assert snapshot_files(tmp_path) == before


def test_flipped_byte_in_last_record_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    seg = segment_files(tmp_path)[-1]
    last = record_offsets(seg)[-1]
    flip(seg, seg.stat().st_size - 1)
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert info.value.path == str(seg)
    assert info.value.offset == last
    assert "crc32c" in info.value.reason
    assert snapshot_files(tmp_path) == before


def test_flipped_length_field_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    seg = segment_files(tmp_path)[0]
    offset = record_offsets(seg)[1]
    flip(seg, offset)  # length changes by 64: the record boundary is wrong
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert info.value.path == str(seg)
    assert snapshot_files(tmp_path) == before


def test_missing_middle_segment_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    segs = segment_files(tmp_path)
    segs[1].unlink()
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert info.value.path == str(segs[2])
    assert "does not follow" in info.value.reason
    assert snapshot_files(tmp_path) == before


def test_oversize_length_in_complete_record_is_corruption(tmp_path: Path) -> None:
    with SegmentedLog.open(tmp_path, payload_bytes_max=64) as log:
        log.append([(1, b"a" * 10), (1, b"b" * 60)])
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, payload_bytes_max=32)
    assert "above" in info.value.reason
    assert info.value.offset == RECORD_OVERHEAD_BYTES + 10


@pytest.mark.parametrize("cut", [1, 5, 9, RECORD_OVERHEAD_BYTES + 3])
def test_torn_tail_is_truncated(tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    entries = make_log(tmp_path)
    seg = segment_files(tmp_path)[-1]
    last = record_offsets(seg)[-1]
    with seg.open("r+b") as f:
        f.truncate(last + cut)
    with caplog.at_level(logging.WARNING, logger="polymq.storage"):
        log = SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    with log:
        assert log.last_index == len(entries) - 1
        assert log.entries(1, log.last_index + 1) == entries[:-1]
        assert seg.stat().st_size == last
        assert log.append([(9, b"after")]) == len(entries)
    assert any("torn tail" in r.getMessage() for r in caplog.records)
    with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        assert log.entries(1, log.last_index + 1) == [*entries[:-1], (9, b"after")]


def test_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    entries = make_log(tmp_path)
    seg = segment_files(tmp_path)[-1]
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(bytes(4096))
    with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        assert log.entries(1, log.last_index + 1) == entries
    assert seg.stat().st_size == size


def test_zeros_then_data_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    seg = segment_files(tmp_path)[-1]
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(bytes(100) + b"\x01")
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert info.value.offset == size
    assert snapshot_files(tmp_path) == before


def test_torn_record_in_sealed_segment_is_corruption(tmp_path: Path) -> None:
    make_log(tmp_path)
    seg = segment_files(tmp_path)[0]
    with seg.open("r+b") as f:
        f.truncate(seg.stat().st_size - 3)
    before = snapshot_files(tmp_path)
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert info.value.path == str(seg)
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize("damage", ["missing", "garbage", "stale"])
def test_bad_index_hint_is_rebuilt(tmp_path: Path, damage: str) -> None:
    entries = make_log(tmp_path)
    idx = sorted(tmp_path.glob("*.idx"))[0]
    good = idx.read_bytes()
    if damage == "missing":
        idx.unlink()
    elif damage == "garbage":
        idx.write_bytes(b"\xff" * 37)
    else:
        idx.write_bytes(good[:-5] + bytes(5))
    with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        assert log.entries(1, log.last_index + 1) == entries
    assert idx.read_bytes() == good


def test_unreadable_directory_raises_log_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a file in place of the directory fails the same way
        target = tmp_path / "file"
        target.write_bytes(b"")
        with pytest.raises(LogError, match="cannot open log directory"):
            SegmentedLog.open(target)
        return
    target = tmp_path / "locked"
    target.mkdir()
    target.chmod(0)
    try:
        with pytest.raises(LogError, match="cannot open log directory"):
            SegmentedLog.open(target)
    finally:
        target.chmod(stat.S_IRWXU)


def test_snapshot_crc_corruption(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 10, 2, b"older state")
    path = Path(write_snapshot(tmp_path, 20, 3, b"state" * 100))
    flip(path, path.stat().st_size - 7)
    with pytest.raises(CorruptSnapshotError) as info:
        load_latest_snapshot(tmp_path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, LogError)


def test_set_aside_damage_keeps_the_good_prefix(tmp_path: Path) -> None:
    entries = make_log(tmp_path)
    segs = segment_files(tmp_path)
    seg = segs[1]
    offsets = record_offsets(seg)
    middle = offsets[len(offsets) // 2]
    flip(seg, middle + RECORD_OVERHEAD_BYTES + 2)
    original = {p.name: p.read_bytes() for p in segs}
    with pytest.raises(CorruptLogError) as info:
        SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX)
    aside = Path(SegmentedLog.set_aside_damage(tmp_path, info.value))
    assert aside.parent == tmp_path and aside.name == "damaged-1"
    # the damaged segment is kept whole and every later segment moved, byte for byte
    assert {p.name: p.read_bytes() for p in aside.glob("*.log")} == {
        p.name: original[p.name] for p in segs[1:]
    }
    with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        base = int(seg.name.split(".")[0])
        kept = base - 1 + len(offsets) // 2
        assert log.first_index == 1 and log.last_index == kept
        assert log.entries(1, kept + 1) == entries[:kept]
        log.append([(9, b"next")])  # and it takes new entries after the prefix
        log.sync()
    # a second damage goes to a new folder; a path outside the log is refused
    err = CorruptLogError(str(segment_files(tmp_path)[0]), 0, "test")
    assert Path(SegmentedLog.set_aside_damage(tmp_path, err)).name == "damaged-2"
    with pytest.raises(LogError):
        SegmentedLog.set_aside_damage(tmp_path, CorruptLogError("/elsewhere/1.log", 0, "x"))
