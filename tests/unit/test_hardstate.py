"""storage/hardstate.py: the Raft hard state file survives crashes as old-or-new, never a mix,
and a damaged file stops the node instead of forgetting a vote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.hardstate import (
    CorruptHardStateError,
    decode_hard_state,
    encode_hard_state,
    load_hard_state,
    save_hard_state,
)
from storage.raft.core import HardState


def test_missing_file_is_the_initial_state(tmp_path: Path) -> None:
    assert load_hard_state(tmp_path / "hardstate") == HardState()


def test_round_trip_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "hardstate"
    save_hard_state(path, HardState(3, "n2", 17))
    assert load_hard_state(path) == HardState(3, "n2", 17)
    save_hard_state(path, HardState(4, None, 20))
    assert load_hard_state(path) == HardState(4, None, 20)
    assert os.listdir(tmp_path) == ["hardstate"]


@given(
    st.integers(0, (1 << 64) - 1),
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    st.integers(0, (1 << 64) - 1),
)
def test_codec_round_trip(term: int, vote: str | None, commit: int) -> None:
    hs = HardState(term, vote, commit)
    assert decode_hard_state(encode_hard_state(hs)) == hs


@given(st.binary(max_size=80))
def test_garbage_raises_only_corrupt(raw: bytes) -> None:
    try:
        decode_hard_state(raw)
    except CorruptHardStateError:
        pass


def test_every_bit_flip_is_detected(tmp_path: Path) -> None:
    raw = encode_hard_state(HardState(9, "n1", 5))
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(CorruptHardStateError):
            decode_hard_state(bytes(flipped))


def test_truncated_file_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "hardstate"
    save_hard_state(path, HardState(2, "n3", 1))
    raw = path.read_bytes()
    path.write_bytes(raw[:-3])
    with pytest.raises(CorruptHardStateError, match="hardstate"):
        load_hard_state(path)


def test_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    """A crash before the rename leaves the old state in force."""
    path = tmp_path / "hardstate"
    save_hard_state(path, HardState(5, "n1", 3))
    (tmp_path / "hardstate.tmp").write_bytes(b"PMQH half a wri")
    assert load_hard_state(path) == HardState(5, "n1", 3)
    save_hard_state(path, HardState(6, None, 3))
    assert load_hard_state(path) == HardState(6, None, 3)
    assert not (tmp_path / "hardstate.tmp").exists()


_CHILD = """
import os, sys
from storage.hardstate import save_hard_state
from storage.raft.core import HardState
path = sys.argv[1]
for t in range(1, 1_000_000):
    save_hard_state(path, HardState(t, "n%d" % (t % 3), t * 2))
    if t == 50:
        print("ready", flush=True)
"""


def test_kill_during_saves_leaves_a_whole_state(tmp_path: Path) -> None:
    """SIGKILL a process that saves in a loop: the file always decodes to one whole state."""
    path = tmp_path / "hardstate"
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        hs = load_hard_state(path)
        assert hs.term >= 50 and hs.commit == hs.term * 2 and hs.vote == f"n{hs.term % 3}"
