"""SIGKILL a process that appends with group commit, 50 times, and check what survives."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.log import SegmentedLog

sys.path.insert(0, str(Path(__file__).parent))
from logcrash_child import record_ok  # noqa: E402

CHILD = Path(__file__).with_name("logcrash_child.py")
RUNS = 50
SEGMENT_BYTES_MAX = 256 << 10
READY_TIMEOUT_S = 20


def read_until_ready(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """Read the child's stdout until its ``ready`` line; returns (last index, rest)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError("child did not report ready in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited before ready: {proc.wait()}")
            buf += chunk
    line, rest = buf.split(b"\n", 1)
    word, last = line.split()
    assert word == b"ready"
    return int(last), rest


def confirmed_from(output: bytes) -> int:
    best = 0
    for line in output.split(b"\n"):
        if line.startswith(b"c "):
            best = max(best, int(line[2:]))
    return best


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_sigkill_loses_no_confirmed_record(tmp_path: Path) -> None:
    rng = random.Random()
    confirmed = 0
    checked = 0  # records up to here passed their content check in an earlier round
    total_confirmed_runs = 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    for _ in range(RUNS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path), str(SEGMENT_BYTES_MAX)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            start_last, rest = read_until_ready(proc)
            assert start_last >= confirmed
            time.sleep(rng.uniform(0.05, 0.4))  # the crash moment, not a readiness wait
            proc.send_signal(signal.SIGKILL)
            assert proc.stdout is not None
            rest += proc.stdout.read()
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        run_confirmed = confirmed_from(rest)
        if run_confirmed > start_last:
            total_confirmed_runs += 1
        confirmed = max(confirmed, run_confirmed)
        with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
            assert log.first_index == 1
            assert log.last_index >= confirmed, "a confirmed record was lost"
            for index, (term, data) in enumerate(
                log.entries(checked + 1, log.last_index + 1), start=checked + 1
            ):
                assert term == 1
                assert record_ok(data), f"record {index} fails its content check"
            checked = log.last_index
    assert total_confirmed_runs >= RUNS // 2
    with SegmentedLog.open(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as log:
        assert log.statistics()["segments"] > 1
        for start in range(1, log.last_index + 1, 4096):
            batch = log.entries(start, min(start + 4096, log.last_index + 1))
            assert all(record_ok(d) for _, d in batch)
