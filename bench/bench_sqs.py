"""SQS throughput and ReceiveMessage latency with boto3: polymq and moto side by side, in one run.

Workload, per endpoint, on one fresh standard queue: ``--producers`` processes each loop
SendMessageBatch of 10 messages with 256-byte bodies, and ``--consumers`` processes each loop
ReceiveMessage(MaxNumberOfMessages=10, WaitTimeSeconds=``--wait``) + DeleteMessageBatch of
what came, for ``--duration`` seconds (then consumers drain for up to ``--drain`` seconds).
Every body carries a sequence number: the consumers count lost and duplicated messages.

Reported: messages/s sent, received and deleted over the run, ReceiveMessage latency p50 / p99
(non-empty receives only: an empty long poll measures the wait, not the server), and the ratio
polymq/moto. polymq runs as a subprocess (``python -m broker serve``, fresh data directory,
``--http-port 0``, other listeners off, the port read from its JSON log); moto as
``moto_server`` on a free port (skipped, with a message, when it is not installed). boto3 makes
one attempt per call; every wait is bounded.

    python bench/bench_sqs.py [--duration 10] [--producers 2] [--consumers 2]
                              [--only polymq|moto] [--fsync always]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import time
from typing import Any

from common import (
    boto3_client,
    describe,
    each_endpoint,
    fmt,
    median_p99,
    run_workers,
    wait_until,
    worker_errors,
)

BODY_SIZE = 256
BATCH = 10


def _body(producer: int, seq: int) -> str:
    head = f"{producer:04x}{seq:012x}"
    return head + "." * (BODY_SIZE - len(head))


def _client(endpoint: str, timeout: float) -> Any:
    return boto3_client(
        "sqs", endpoint, connect_timeout=timeout, read_timeout=timeout, max_pool_connections=4
    )


# -- worker processes ------------------------------------------------------------------------


def producer(endpoint: str, url: str, index: int, opts: dict, out: Any) -> None:
    result: dict[str, Any] = {"role": "producer", "sent": 0, "errors": 0, "error": None}
    try:
        client = _client(endpoint, opts["timeout"])
        deadline = opts["start"] + opts["duration"]
        wait_until(opts["start"])
        seq = 0
        while time.time() < deadline:
            entries = [{"Id": str(i), "MessageBody": _body(index, seq + i)} for i in range(BATCH)]
            reply = client.send_message_batch(QueueUrl=url, Entries=entries)
            ok = len(reply.get("Successful", []))
            result["sent"] += ok
            result["errors"] += len(reply.get("Failed", []))
            seq += BATCH
        result["last_ns"] = time.time()
    except Exception as exc:  # reported in the table
        result["error"] = describe(exc)
    out.put(result)


def consumer(endpoint: str, url: str, index: int, opts: dict, out: Any, stop: Any) -> None:
    result: dict[str, Any] = {
        "role": "consumer",
        "received": 0,
        "deleted": 0,
        "latencies": [],
        "seen": [],
        "error": None,
    }
    seen: set[tuple[int, int]] = set()
    dup = 0
    try:
        client = _client(endpoint, opts["timeout"] + opts["wait"])
        wait_until(opts["start"])
        drain_until = opts["start"] + opts["duration"] + opts["drain"]
        idle_after_stop = 0
        while time.time() < drain_until:
            t0 = time.perf_counter()
            reply = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=opts["wait"]
            )
            elapsed = time.perf_counter() - t0
            messages = reply.get("Messages", [])
            if not messages:
                if stop.is_set():
                    idle_after_stop += 1
                    if idle_after_stop >= 2:
                        break
                continue
            idle_after_stop = 0
            result["latencies"].append(elapsed * 1000)
            result["received"] += len(messages)
            for m in messages:
                key = (int(m["Body"][:4], 16), int(m["Body"][4:16], 16))
                if key in seen:
                    dup += 1
                seen.add(key)
            reply = client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            result["deleted"] += len(reply.get("Successful", []))
            result["last"] = time.time()
    except Exception as exc:
        result["error"] = describe(exc)
    result["seen"] = sorted(seen)
    result["dup"] = dup
    out.put(result)


# -- one run ---------------------------------------------------------------------------------


def run(endpoint: str, name: str, opts: dict) -> dict[str, Any]:
    client = _client(endpoint, opts["timeout"])
    url = client.create_queue(QueueName=f"bench-sqs-{name}-{int(time.time() * 1000)}")["QueueUrl"]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    run_opts = dict(opts, start=time.time() + 3.0)  # every process started and connected
    procs = [
        ctx.Process(target=producer, args=(endpoint, url, i, run_opts, out), daemon=True)
        for i in range(opts["producers"])
    ] + [
        ctx.Process(target=consumer, args=(endpoint, url, i, run_opts, out, stop), daemon=True)
        for i in range(opts["consumers"])
    ]
    limit = time.time() + 3 + opts["duration"] + opts["drain"] + opts["timeout"] + 30
    producers_done = 0

    def on_result(r: dict[str, Any]) -> None:
        nonlocal producers_done
        if r["role"] == "producer":
            producers_done += 1
            if producers_done == opts["producers"]:
                stop.set()

    results = run_workers(procs, out, limit, on_result)
    with contextlib.suppress(Exception):
        client.delete_queue(QueueUrl=url)
    prods = [r for r in results if r["role"] == "producer"]
    cons = [r for r in results if r["role"] == "consumer"]
    seen: set[tuple[int, int]] = set()
    for c in cons:
        seen.update(map(tuple, c["seen"]))
    sent = sum(p["sent"] for p in prods)
    received = sum(c["received"] for c in cons)
    deleted = sum(c["deleted"] for c in cons)
    lat = sorted(x for c in cons for x in c["latencies"])
    span = opts["duration"]
    last = max([c.get("last", 0) for c in cons] + [run_opts["start"] + span])
    e2e = last - run_opts["start"]
    return {
        "sent_rate": sent / span,
        "recv_rate": received / e2e if e2e else 0,
        "del_rate": deleted / e2e if e2e else 0,
        "sent": sent,
        "received": received,
        "deleted": deleted,
        "lost": max(0, sent - len(seen)),
        "dup": sum(c.get("dup", 0) for c in cons),
        **median_p99(lat),
        "errors": worker_errors(results, len(procs)),
    }


def print_table(rows: dict[str, dict[str, Any]], opts: dict) -> None:
    print()
    print(
        f"SQS {opts['producers']} producers x SendMessageBatch(10) -> 1 queue -> "
        f"{opts['consumers']} consumers x ReceiveMessage(10, wait {opts['wait']} s) + "
        f"DeleteMessageBatch, {BODY_SIZE}-byte bodies, {opts['duration']:.0f} s"
    )
    print(
        f"{'endpoint':<9} {'sent/s':>9} {'recv/s':>9} {'deleted/s':>10} {'recv p50 ms':>12} "
        f"{'recv p99 ms':>12} {'sent':>9} {'lost':>6} {'dup':>5}"
    )
    print("-" * 90)
    for name, r in rows.items():
        print(
            f"{name:<9} {fmt(r['sent_rate']):>9} {fmt(r['recv_rate']):>9} "
            f"{fmt(r['del_rate']):>10} {fmt(r['p50'], 2):>12} {fmt(r['p99'], 2):>12} "
            f"{r['sent']:>9,} {r['lost']:>6} {r['dup']:>5}"
        )
        for err in r["errors"]:
            print(f"{'':<9} ERROR {err[:200]}")
    if len(rows) == 2 and all(r["del_rate"] for r in rows.values()):
        pm, mo = rows["polymq"], rows["moto"]
        print(
            f"polymq/moto: sent {pm['sent_rate'] / mo['sent_rate']:.2f}x, "
            f"deleted {pm['del_rate'] / mo['del_rate']:.2f}x, "
            f"p50 {pm['p50'] / mo['p50']:.2f}x, p99 {pm['p99'] / mo['p99']:.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--wait", type=int, default=1, help="WaitTimeSeconds of receives, 1..20")
    ap.add_argument("--drain", type=float, default=30.0, help="max seconds to drain after")
    ap.add_argument("--only", choices=["polymq", "moto"], help="one endpoint only")
    ap.add_argument("--fsync", default="always", help="polymq's --fsync")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-call timeout, seconds")
    args = ap.parse_args()
    assert 1 <= args.wait <= 20, "--wait must be 1..20"
    opts = {k: getattr(args, k) for k in ("duration", "producers", "consumers", "wait", "drain")}
    opts["timeout"] = args.timeout
    rows = each_endpoint(args.only, args.fsync, lambda endpoint, name: run(endpoint, name, opts))
    print_table(rows, opts)


if __name__ == "__main__":
    main()
