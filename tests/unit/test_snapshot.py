"""Snapshots: round trip, pruning, temp files, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import CorruptSnapshotError
from storage.snapshot import Snapshot, list_snapshots, load_latest_snapshot, write_snapshot


def test_empty_and_missing_directory(tmp_path: Path) -> None:
    assert load_latest_snapshot(tmp_path) is None
    assert load_latest_snapshot(tmp_path / "absent") is None


def test_round_trip_and_pruning(tmp_path: Path) -> None:
    for i, term in [(10, 1), (20, 1), (30, 2), (40, 3)]:
        path = write_snapshot(tmp_path, i, term, b"state-%d" % i)
        assert Path(path).name == f"{i:020d}-{term:020d}.snap"
    assert [(i, t) for i, t, _ in list_snapshots(tmp_path)] == [(30, 2), (40, 3)]
    snap = load_latest_snapshot(tmp_path)
    assert snap == Snapshot(40, 3, b"state-40", str(tmp_path / f"{40:020d}-{3:020d}.snap"))
    with pytest.raises(AttributeError):
        snap.index = 1  # type: ignore[misc]


def test_empty_data(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 0, 0, b"")
    snap = load_latest_snapshot(tmp_path)
    assert snap is not None
    assert (snap.index, snap.term, snap.data) == (0, 0, b"")


def test_leftover_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 5, 1, b"good")
    temp = tmp_path / f"{9:020d}-{1:020d}.snap.tmp"
    temp.write_bytes(b"half a snapshot")
    snap = load_latest_snapshot(tmp_path)
    assert snap is not None
    assert snap.index == 5
    assert not temp.exists()


@pytest.mark.parametrize("damage", ["data", "header", "truncate", "rename"])
def test_corrupt_newest_snapshot(tmp_path: Path, damage: str) -> None:
    write_snapshot(tmp_path, 5, 1, b"older")
    path = Path(write_snapshot(tmp_path, 9, 2, b"newest state" * 10))
    raw = bytearray(path.read_bytes())
    if damage == "data":
        raw[-1] ^= 1
    elif damage == "header":
        raw[0] ^= 1
    elif damage == "truncate":
        raw = raw[:-3]
    if damage == "rename":
        renamed = tmp_path / f"{11:020d}-{2:020d}.snap"
        path.rename(renamed)
        path = renamed
    else:
        path.write_bytes(bytes(raw))
    with pytest.raises(CorruptSnapshotError) as info:
        load_latest_snapshot(tmp_path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
