"""Log and group-commit throughput.

    python bench/bench_log.py --dir PATH --seconds N

Rows: a raw loop of one 256-byte os.write + os.fdatasync per record; GroupCommitter with
fsync="always" and 1, 16 and 256 concurrent proposers each looping ``await append(payload)``;
the same with fsync="never" for reference. For the committer rows "extra" gives the CPU time of
the trio thread per record and the share of wall time it was busy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from collections.abc import Callable

import trio

from storage.commit import FsyncPolicy, GroupCommitter
from storage.log import SegmentedLog

PAYLOAD_BYTES = 256


def bench_raw(directory: str, seconds: float) -> dict[str, float]:
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    payload = b"r" * PAYLOAD_BYTES
    latencies: list[float] = []
    clock = time.perf_counter
    count = 0
    start = clock()
    deadline = start + seconds
    try:
        while True:
            os.write(fd, payload)
            t0 = clock()
            os.fdatasync(fd)
            t1 = clock()
            latencies.append(t1 - t0)
            count += 1
            if t1 >= deadline:
                break
    finally:
        os.close(fd)
        os.unlink(path)
    elapsed = clock() - start
    latencies.sort()
    return {
        "records_s": count / elapsed,
        "mb_s": count * PAYLOAD_BYTES / elapsed / 1e6,
        "fsyncs_s": count / elapsed,
        "avg_batch": 1.0,
        "fsync_ms_p50": latencies[len(latencies) // 2] * 1e3,
        "fsync_ms_p99": latencies[int(len(latencies) * 0.99)] * 1e3,
        "fsync_ms_avg": statistics.fmean(latencies) * 1e3,
    }


async def _bench_committer(
    directory: str, seconds: float, proposers: int, policy: FsyncPolicy, per_call: int = 1
) -> dict[str, float]:
    log_dir = os.path.join(directory, f"log-{policy}-{proposers}-{per_call}")
    shutil.rmtree(log_dir, ignore_errors=True)
    log = SegmentedLog.open(log_dir)
    committer = GroupCommitter(log, fsync=policy)
    payload = b"p" * PAYLOAD_BYTES
    stop = False

    async def proposer() -> None:
        append = committer.append
        while not stop:
            await append(payload)

    batch = [payload] * per_call

    async def batch_proposer() -> None:
        # A protocol connection handing over every message of one received chunk at once.
        propose_many = committer.propose_many
        wait_committed = committer.wait_committed
        while not stop:
            await wait_committed(propose_many(batch))

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with trio.open_nursery() as workers:
            for _ in range(proposers):
                workers.start_soon(proposer if per_call == 1 else batch_proposer)
            await trio.sleep(0.2)  # warm-up
            base = committer.statistics()
            start = time.perf_counter()
            cpu_start = time.thread_time()
            await trio.sleep(seconds)
            cpu = time.thread_time() - cpu_start
            end = committer.statistics()
            elapsed = time.perf_counter() - start
            stop = True
        await committer.flush()
        nursery.cancel_scope.cancel()
    log.close()
    shutil.rmtree(log_dir, ignore_errors=True)
    records = end["records"] - base["records"]
    batches = end["batches"] - base["batches"]
    return {
        "records_s": records / elapsed,
        "mb_s": records * PAYLOAD_BYTES / elapsed / 1e6,
        "fsyncs_s": (end["fsyncs"] - base["fsyncs"]) / elapsed,
        "avg_batch": records / batches if batches else 0.0,
        "loop_cpu_us": cpu / records * 1e6 if records else 0.0,
        "loop_busy": cpu / elapsed,
    }


def bench_committer(
    proposers: int, policy: FsyncPolicy, per_call: int = 1
) -> Callable[[str, float], dict[str, float]]:
    def run(directory: str, seconds: float) -> dict[str, float]:
        return trio.run(_bench_committer, directory, seconds, proposers, policy, per_call)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="scratch directory on the disk to measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per row")
    parser.add_argument("--only", help="run only rows whose name contains this text")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rows: list[tuple[str, Callable[[str, float], dict[str, float]]]] = [
        ("raw write+fdatasync", bench_raw),
        *((f"always, {n} proposers", bench_committer(n, "always")) for n in (1, 16, 256)),
        *((f"never, {n} proposers", bench_committer(n, "never")) for n in (1, 256)),
        ("always, 16 x 64/call", bench_committer(16, "always", 64)),
        ("always, 256 x 16/call", bench_committer(256, "always", 16)),
    ]
    print(f"{'row':<24} {'records/s':>11} {'MB/s':>8} {'fsyncs/s':>9} {'avg batch':>9}  extra")
    for name, fn in rows:
        if args.only and args.only not in name:
            continue
        r = fn(args.dir, args.seconds)
        extra = ""
        if "fsync_ms_p50" in r:
            extra = (
                f"fdatasync avg {r['fsync_ms_avg']:.3f} ms, p50 {r['fsync_ms_p50']:.3f} ms,"
                f" p99 {r['fsync_ms_p99']:.3f} ms"
            )
        elif "loop_cpu_us" in r:
            extra = f"trio thread {r['loop_cpu_us']:.2f} us CPU/record, busy {r['loop_busy']:.0%}"
        print(
            f"{name:<24} {r['records_s']:>11,.0f} {r['mb_s']:>8.1f} {r['fsyncs_s']:>9,.0f}"
            f" {r['avg_batch']:>9.1f}  {extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
