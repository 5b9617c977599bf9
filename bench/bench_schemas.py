"""PutEvents throughput with and without a running schema discoverer on the bus, in one run.

Same load as bench_events.py: a bus with ``--rules`` rules (realistic patterns, every rule
targets one SQS queue), ``--procs`` processes each looping PutEvents(10 entries) for
``--duration`` seconds. The "discoverer" row adds a discoverer on the bus before the load: every
event is also copied to the discoverer's transient queue (memory only, never logged) and a
worker of the node infers schemas from it while the load runs. A second pair of rows, "0
rules", runs both modes against a bus with no rules (no durable target: PutEvents is not logged,
with or without the discoverer). Each row runs ``--trials`` times, the rows of a trial one after
the other, every other trial with the discoverer row first (so drift of the machine spreads over
all rows); reported per row: the median events/s accepted over the trials, the ratio of the
medians to the row without a discoverer, the median of the per-trial (paired) ratios and the
lowest and highest of them, median PutEvents latency p50 / p99, the server's CPU time per
event accepted (user + system, from /proc, over the load and for discoverer rows until the
backlog drained: the cost a discoverer adds, whatever the clients manage), and for discoverer rows
the discovered schemas and versions once the backlog drained (and the longest drain after the
load stopped).

    python bench/bench_schemas.py [--duration 10] [--procs 4] [--rules 10] [--trials 3]
        [--fsync always]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_events import client, load, setup, target_queue  # noqa: E402
from common import aws_polymq  # noqa: E402

DRAIN_TIMEOUT_S = 120.0


def discovered(schemas: Any, prefix: str) -> tuple[int, int]:
    """(schemas, versions) in discovered-schemas whose name starts with ``prefix``."""
    n = versions = 0
    token: dict[str, Any] = {}
    while True:
        page = schemas.list_schemas(
            RegistryName="discovered-schemas", SchemaNamePrefix=prefix, **token
        )
        for s in page["Schemas"]:
            n += 1
            versions += s["VersionCount"]
        if "NextToken" not in page:
            return n, versions
        token = {"NextToken": page["NextToken"]}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    endpoint: str, pid: int, n_rules: int, with_discoverer: bool, opts: dict[str, Any]
) -> dict[str, Any]:
    sqs = client("sqs", endpoint)
    schemas = client("schemas", endpoint)
    events = client("events", endpoint)
    tag = f"{n_rules}-{'d' if with_discoverer else 'n'}-{int(time.time() * 1000) % 10**8}"
    bus = f"bench-{tag}"
    if n_rules:
        _, arn = target_queue(sqs, f"bench-schemas-{tag}")
        setup(endpoint, bus, n_rules, arn)
    else:
        events.create_event_bus(Name=bus)
    did = None
    if with_discoverer:
        bus_arn = f"arn:aws:events:us-east-1:000000000000:event-bus/{bus}"
        did = schemas.create_discoverer(SourceArn=bus_arn)["DiscovererId"]
    cpu0 = cpu_s(pid)
    got = load(endpoint, bus, max(n_rules, 30), opts)
    stopped = got["stopped"]
    row: dict[str, Any] = {
        "rules": n_rules,
        "discoverer": with_discoverer,
        "rate": got["rate"],
        "failed": got["failed"],
        "p50": got["p50"] if got["p50"] is not None else 0.0,
        "p99": got["p99"] if got["p99"] is not None else 0.0,
        "schemas": None,
        "versions": None,
        "drain_s": None,
    }
    if did is not None:
        # the backlog has drained when the schema count stays still for 2 s
        last = (-1, -1)
        still_since = time.monotonic()
        while time.monotonic() - stopped < DRAIN_TIMEOUT_S:
            now = discovered(schemas, "bench.src")
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= 2.0:
                break
            time.sleep(0.2)
        row["schemas"], row["versions"] = last
        row["drain_s"] = max(0.0, still_since - stopped)
        row["cpu_us"] = (cpu_s(pid) - cpu0) / max(got["sent"], 1) * 1e6
        schemas.delete_discoverer(DiscovererId=did)
    else:
        row["cpu_us"] = (cpu_s(pid) - cpu0) / max(got["sent"], 1) * 1e6
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rules", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--fsync", default="always")
    args = ap.parse_args()
    opts = {"duration": args.duration, "procs": args.procs}
    keys = [(n, d) for n in (args.rules, 0) for d in (False, True)]
    trials: dict[tuple[int, bool], list[dict[str, Any]]] = {k: [] for k in keys}
    server = aws_polymq(args.fsync)
    try:
        for trial in range(args.trials):
            # every other trial runs the discoverer row first: drift does not favour either
            for n_rules in (args.rules, 0):
                for with_discoverer in (trial % 2 == 1, trial % 2 == 0):
                    row = run(server.endpoint, server.proc.pid, n_rules, with_discoverer, opts)
                    trials[(n_rules, with_discoverer)].append(row)
    finally:
        server.stop()
    print(
        f"PutEvents, {args.procs} processes x PutEvents(10), {args.duration:.0f} s, "
        f"fsync {args.fsync}, medians of {args.trials} trials"
    )
    print(
        f"{'rules':>6} {'discoverer':>10} {'events/s':>9} {'ratio':>6} {'paired':>6} "
        f"{'trials':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu us/ev':>9} {'failed':>6} "
        f"{'schemas':>7} {'versions':>8} {'drain s':>7}"
    )
    for n_rules, with_discoverer in keys:
        rows = trials[(n_rules, with_discoverer)]
        base = trials[(n_rules, False)]
        rate = statistics.median(r["rate"] for r in rows)
        ratio = rate / statistics.median(r["rate"] for r in base)
        per_trial = [r["rate"] / b["rate"] for r, b in zip(rows, base, strict=True) if b["rate"]]
        paired = statistics.median(per_trial) if per_trial else 0.0
        spread = f"{min(per_trial):.2f}-{max(per_trial):.2f}" if per_trial else "-"
        extra = (
            f"{rows[-1]['schemas']:>7} {rows[-1]['versions']:>8} "
            f"{max(r['drain_s'] for r in rows):>7.1f}"
            if with_discoverer
            else f"{'-':>7} {'-':>8} {'-':>7}"
        )
        label = "yes" if with_discoverer else "no"
        print(
            f"{n_rules:>6} {label:>10} {rate:>9,.0f} {ratio:>5.2f}x {paired:>5.2f}x {spread:>11} "
            f"{statistics.median(r['p50'] for r in rows):>7.1f} "
            f"{statistics.median(r['p99'] for r in rows):>7.1f} "
            f"{statistics.median(r['cpu_us'] for r in rows):>9.1f} "
            f"{sum(r['failed'] for r in rows):>6} {extra}"
        )
    print("rates per trial (events/s):")
    for n_rules, with_discoverer in keys:
        rates = ", ".join(f"{r['rate']:,.0f}" for r in trials[(n_rules, with_discoverer)])
        print(f"  {n_rules:>3} rules, discoverer {'yes' if with_discoverer else 'no':>3}: {rates}")


if __name__ == "__main__":
    main()
