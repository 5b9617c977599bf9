"""End-to-end node benchmark: confirmed persistent publishes through the core API into a durable
queue, with a consumer acking everything, on a real segmented log.

    python bench/bench_node.py --dir /tmp/bn --seconds 3

Rows: concurrent publishers x messages per publish call, at the chosen fsync policy. Each
publisher loops ``await broker.publish(...)`` (a confirm = the batch is applied after its log
fsync); the consumer settles each delivery batch with one settle call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.api import COMPLETE, D_ID, Broker  # noqa: E402
from broker.config import Config  # noqa: E402
from broker.node import Node  # noqa: E402
from broker.runtime import tune_gc  # noqa: E402

BODY = b"x" * 256
PERSISTENT = {"delivery_mode": 2}


class AckingSink:
    def __init__(self) -> None:
        self.broker: Broker | None = None
        self.session = 0
        self.pending: list[int] = []
        self.received = 0
        self.wake = trio.Event()

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        self.pending.extend(d[D_ID] for d in deliveries)
        self.received += len(deliveries)
        self.wake.set()

    def cancelled(self, tag: str) -> None:
        pass

    async def ack_loop(self) -> None:
        assert self.broker is not None
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            ids, self.pending = self.pending, []
            if ids:
                await self.broker.settle(self.session, ids, COMPLETE)


async def run_row(base: Path, fsync: str, publishers: int, per_call: int, seconds: float) -> str:
    data = base / f"{fsync}-{publishers}-{per_call}"
    shutil.rmtree(data, ignore_errors=True)
    node = Node(Config(data_dir=str(data), fsync=fsync, snapshot_entries_interval=10**9))
    published = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        broker = Broker(node)
        await broker.declare_queue("bench", durable=True)
        sink = AckingSink()
        sink.broker = broker
        sink.session = broker.open_session(sink)
        await broker.consume(sink.session, "bench", tag="c", prefetch=0)
        nursery.start_soon(sink.ack_loop)
        batch = [("bench", PERSISTENT, BODY)] * per_call
        stop_at = time.perf_counter() + seconds

        async def publisher() -> None:
            nonlocal published
            while time.perf_counter() < stop_at:
                await broker.publish("", batch)
                published += per_call

        start = time.perf_counter()
        async with trio.open_nursery() as pubs:
            for _ in range(publishers):
                pubs.start_soon(publisher)
        elapsed = time.perf_counter() - start
        stats = node.statistics()["commit"]
        node.stop()
        await node.wait_stopped()
        nursery.cancel_scope.cancel()
    shutil.rmtree(data, ignore_errors=True)
    rate = published / elapsed
    return (
        f"{fsync:>8} {publishers:>5} {per_call:>6} {rate:>14,.0f} {rate * 256 / 1e6:>8.1f}"
        f" {stats['fsyncs'] / elapsed:>9,.0f} {sink.received:>10,}"
    )


async def main() -> None:
    tune_gc()
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="./bench-data")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fsync", default="always")
    args = parser.parse_args()
    base = Path(args.dir)
    os.makedirs(base, exist_ok=True)
    print(
        f"{'fsync':>8} {'pubs':>5} {'batch':>6} {'confirmed msg/s':>14} {'MB/s':>8}"
        f" {'fsyncs/s':>9} {'delivered':>10}"
    )
    for publishers, per_call in ((1, 1), (16, 1), (256, 1), (16, 64), (64, 64)):
        print(await run_row(base, args.fsync, publishers, per_call, args.seconds), flush=True)


if __name__ == "__main__":
    trio.run(main)
