"""EventBridge PutEvents throughput with boto3 against buses with 10, 1,000 and 10,000 rules,
and moto_server side by side at 10 rules, in one run.

Rules have realistic patterns: an exact ``source`` (one of 50), an exact ``detail-type``
shared by a group of three rules, and a numeric condition on ``detail.amount``; every rule
targets one SQS queue. Each event names one group's detail-type, so it matches at most three
rules (the numeric condition decides which). ``--procs`` processes each loop
PutEvents(10 entries) for ``--duration`` seconds; reported: events/s accepted, PutEvents
latency p50 / p99, events delivered (the SQS queue's depth after the run, when the endpoint
reports it), the setup time of the rules, and the ratio of each row to the 10-rule row
(goal: 10,000 rules >= 0.5x of 10).

polymq runs as a subprocess (fresh data directory, only the HTTP listener), moto as
``moto_server`` with MOTO_ACCOUNT_ID=000000000000 (see bench_sqs.py for both).

    python bench/bench_events.py [--duration 10] [--procs 4] [--rules 10,1000,10000]
                                 [--only polymq|moto] [--fsync always]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Moto, aws_polymq, boto3_client  # noqa: E402

SOURCES = 50
GROUP = 3
BATCH = 10
SETUP_THREADS = 16


def client(service: str, endpoint: str, timeout: float = 60.0) -> Any:
    return boto3_client(
        service,
        endpoint,
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=SETUP_THREADS,
    )


def target_queue(sqs: Any, name: str) -> tuple[str, str]:
    """A fresh SQS queue for the rules to target: its URL and ARN."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, attrs["QueueArn"]


def rule_pattern(i: int) -> dict[str, Any]:
    group = i // GROUP
    return {
        "source": [f"bench.src{group % SOURCES}"],
        "detail-type": [f"type{group}"],
        "detail": {"amount": [{"numeric": [">", (i % GROUP) * 10]}]},
    }


def setup(endpoint: str, bus: str, n_rules: int, queue_arn: str) -> float:
    events = client("events", endpoint)
    events.create_event_bus(Name=bus)
    started = time.monotonic()

    def one(i: int) -> None:
        name = f"r{i:05d}"
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(rule_pattern(i)))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])

    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(one, range(n_rules)))
    return time.monotonic() - started


def producer(endpoint: str, bus: str, n_rules: int, index: int, opts: dict, out: Any) -> None:
    events = client("events", endpoint)
    groups = max(1, n_rules // GROUP)
    latencies: list[float] = []
    sent = failed = 0
    k = index * 7919
    start = time.monotonic()
    deadline = start + opts["duration"]
    while time.monotonic() < deadline:
        entries = []
        for _ in range(BATCH):
            g = k % groups
            k += 1
            entries.append(
                {
                    "Source": f"bench.src{g % SOURCES}",
                    "DetailType": f"type{g}",
                    "Detail": json.dumps({"amount": k % 30, "order": {"id": k, "items": [1, 2]}}),
                    "EventBusName": bus,
                }
            )
        t0 = time.perf_counter()
        reply = events.put_events(Entries=entries)
        latencies.append(time.perf_counter() - t0)
        failed += reply["FailedEntryCount"]
        sent += BATCH - reply["FailedEntryCount"]
    out.put({"sent": sent, "failed": failed, "lat": latencies, "elapsed": time.monotonic() - start})


def load(endpoint: str, bus: str, n_rules: int, opts: dict) -> dict[str, Any]:
    """``opts["procs"]`` producer processes on the bus for ``opts["duration"]`` s: events/s
    accepted, failed entries, PutEvents latency p50 / p99 in ms (None without calls) and the
    time.monotonic() the last producer was joined."""
    out: Any = mp.Queue()
    procs = [
        mp.Process(target=producer, args=(endpoint, bus, n_rules, i, opts, out))
        for i in range(opts["procs"])
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=opts["duration"] + 120) for _ in procs]
    for p in procs:
        p.join(30)
    stopped = time.monotonic()
    sent = sum(r["sent"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    return {
        "rate": sent / elapsed,
        "sent": sent,
        "failed": sum(r["failed"] for r in results),
        "p50": statistics.median(lat) * 1000 if lat else None,
        "p99": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else None,
        "stopped": stopped,
    }


def run(endpoint: str, n_rules: int, opts: dict) -> dict[str, Any]:
    sqs = client("sqs", endpoint)
    tag = f"{n_rules}-{int(time.time())}"
    url, arn = target_queue(sqs, f"bench-events-{tag}")
    bus = f"bench-{tag}"
    setup_s = setup(endpoint, bus, n_rules, arn)
    got = load(endpoint, bus, n_rules, opts)
    time.sleep(1.0)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return {
        "rules": n_rules,
        "rate": got["rate"],
        "failed": got["failed"],
        "p50": got["p50"],
        "p99": got["p99"],
        "delivered": int(attrs["Attributes"]["ApproximateNumberOfMessages"]),
        "setup_s": setup_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rules", default="10,1000,10000")
    ap.add_argument("--only", choices=["polymq", "moto"])
    ap.add_argument("--fsync", default="always")
    args = ap.parse_args()
    opts = {"duration": args.duration, "procs": args.procs}
    rows: list[tuple[str, dict[str, Any]]] = []
    if args.only != "moto":
        server = aws_polymq(args.fsync)
        try:
            for n in (int(x) for x in args.rules.split(",")):
                rows.append(("polymq", run(server.endpoint, n, opts)))
        finally:
            server.stop()
    if args.only != "polymq":
        try:
            moto = Moto()
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"moto skipped: {exc}")
        else:
            try:
                rows.append(("moto", run(moto.endpoint, 10, opts)))
            finally:
                moto.stop()
    base = next((r["rate"] for name, r in rows if name == "polymq" and r["rules"] == 10), None)
    print(
        f"PutEvents, {args.procs} processes x PutEvents({BATCH}), {args.duration:.0f} s, "
        f"fsync {args.fsync}"
    )
    print(
        f"{'endpoint':8} {'rules':>6} {'events/s':>9} {'vs 10':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'delivered':>9} {'failed':>6} {'setup s':>8}"
    )
    for name, r in rows:
        ratio = f"{r['rate'] / base:.2f}x" if base else "-"
        print(
            f"{name:8} {r['rules']:>6} {r['rate']:>9,.0f} {ratio:>6} {r['p50']:>7.1f} "
            f"{r['p99']:>7.1f} {r['delivered']:>9,} {r['failed']:>6} {r['setup_s']:>8.1f}"
        )


if __name__ == "__main__":
    main()
