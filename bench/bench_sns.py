"""SNS fan-out with boto3: Publish to a topic with 10 SQS subscriptions, polymq and moto side by
side, in one run.

Workload, per endpoint: one fresh standard topic with ``--queues`` (default 10) fresh SQS
queues subscribed (envelope delivery, no filter policy). ``--publishers`` processes each loop
``sns.publish`` of a 256-byte message for ``--duration`` seconds; one drainer process per
queue loops ReceiveMessage(MaxNumberOfMessages=10, WaitTimeSeconds=1) + DeleteMessageBatch
until every queue has received every publish (or ``--drain`` seconds pass after publishing
stops). Each message carries its publisher and sequence number: the drainers count lost and
duplicated copies per queue.

Reported: publishes/s (accepted by the endpoint over the publishing window), copies delivered/s
(received from all queues, from the start until the last copy was received), Publish latency
p50 / p99, and the ratio polymq/moto. The servers are started as in ``bench_sqs.py``: polymq as
``python -m broker serve`` (fresh data directory, only the HTTP listener), moto as
``moto_server`` with ``MOTO_ACCOUNT_ID=000000000000`` (skipped, with a message, when it is not
installed). boto3 makes one attempt per call; every wait is bounded.

    python bench/bench_sns.py [--duration 10] [--publishers 2] [--queues 10]
                              [--only polymq|moto] [--fsync always]
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
ACCOUNT = "000000000000"
REGION = "us-east-1"


def _message(publisher: int, seq: int) -> str:
    head = f"{publisher:04x}{seq:012x}"
    return head + "." * (BODY_SIZE - len(head))


def _client(service: str, endpoint: str, timeout: float) -> Any:
    return boto3_client(
        service,
        endpoint,
        REGION,
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=4,
    )


# -- worker processes ------------------------------------------------------------------------


def publisher(endpoint: str, topic: str, index: int, opts: dict, out: Any) -> None:
    result: dict[str, Any] = {"role": "publisher", "sent": 0, "latencies": [], "error": None}
    try:
        client = _client("sns", endpoint, opts["timeout"])
        wait_until(opts["start"])
        deadline = opts["start"] + opts["duration"]
        seq = 0
        while time.time() < deadline:
            t0 = time.perf_counter()
            client.publish(TopicArn=topic, Message=_message(index, seq))
            result["latencies"].append((time.perf_counter() - t0) * 1000)
            seq += 1
            result["sent"] += 1
    except Exception as exc:  # reported in the table
        result["error"] = describe(exc)
    out.put(result)


def drainer(endpoint: str, url: str, opts: dict, out: Any, total: Any) -> None:
    """Receive and delete from one queue until it has ``total`` messages (set once the
    publishers are done) or the drain time is up."""
    result: dict[str, Any] = {"role": "drainer", "received": 0, "dup": 0, "error": None}
    seen: set[tuple[int, int]] = set()
    try:
        client = _client("sqs", endpoint, opts["timeout"] + 1)
        wait_until(opts["start"])
        hard_stop = opts["start"] + opts["duration"] + opts["drain"]
        while time.time() < hard_stop:
            want = total.value
            if want >= 0 and len(seen) >= want:
                break
            reply = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = reply.get("Messages", [])
            if not messages:
                continue
            for m in messages:
                text = json.loads(m["Body"])["Message"]
                key = (int(text[:4], 16), int(text[4:16], 16))
                if key in seen:
                    result["dup"] += 1
                seen.add(key)
            result["received"] += len(messages)
            result["last"] = time.time()
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
    except Exception as exc:
        result["error"] = describe(exc)
    result["unique"] = len(seen)
    out.put(result)


# -- one run ---------------------------------------------------------------------------------


def run(endpoint: str, name: str, opts: dict) -> dict[str, Any]:
    sns = _client("sns", endpoint, opts["timeout"])
    sqs = _client("sqs", endpoint, opts["timeout"])
    stamp = int(time.time() * 1000)
    topic = sns.create_topic(Name=f"bench-sns-{name}-{stamp}")["TopicArn"]
    urls = []
    for i in range(opts["queues"]):
        qname = f"bench-sns-{name}-{stamp}-{i}"
        url = sqs.create_queue(QueueName=qname)["QueueUrl"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{qname}",
        )
        urls.append(url)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    total = ctx.Value("q", -1)
    run_opts = dict(opts, start=time.time() + 3.0)
    pubs = [
        ctx.Process(target=publisher, args=(endpoint, topic, i, run_opts, out), daemon=True)
        for i in range(opts["publishers"])
    ]
    drains = [
        ctx.Process(target=drainer, args=(endpoint, url, run_opts, out, total), daemon=True)
        for url in urls
    ]
    procs = pubs + drains
    limit = time.time() + 3 + opts["duration"] + opts["drain"] + opts["timeout"] + 30
    published = 0
    publishers_done = 0

    def on_result(r: dict[str, Any]) -> None:
        nonlocal published, publishers_done
        if r["role"] == "publisher":
            publishers_done += 1
            published += r["sent"]
            if publishers_done == opts["publishers"]:
                total.value = published

    results = run_workers(procs, out, limit, on_result)
    with contextlib.suppress(Exception):
        sns.delete_topic(TopicArn=topic)
        for url in urls:
            sqs.delete_queue(QueueUrl=url)
    prods = [r for r in results if r["role"] == "publisher"]
    cons = [r for r in results if r["role"] == "drainer"]
    received = sum(c["received"] for c in cons)
    lat = sorted(x for p in prods for x in p["latencies"])
    span = opts["duration"]
    last = max([c.get("last", 0) for c in cons] + [run_opts["start"] + span])
    e2e = last - run_opts["start"]
    return {
        "pub_rate": published / span,
        "copy_rate": received / e2e if e2e else 0,
        "published": published,
        "received": received,
        "lost": sum(max(0, published - c["unique"]) for c in cons),
        "dup": sum(c["dup"] for c in cons),
        **median_p99(lat),
        "errors": worker_errors(results, len(procs)),
    }


def print_table(rows: dict[str, dict[str, Any]], opts: dict) -> None:
    print()
    print(
        f"SNS {opts['publishers']} publishers x Publish -> 1 topic -> {opts['queues']} SQS "
        f"subscriptions (envelope), {BODY_SIZE}-byte messages, {opts['duration']:.0f} s; one "
        "drainer per queue x ReceiveMessage(10) + DeleteMessageBatch"
    )
    print(
        f"{'endpoint':<9} {'publish/s':>10} {'delivered/s':>12} {'pub p50 ms':>11} "
        f"{'pub p99 ms':>11} {'published':>10} {'copies':>9} {'lost':>6} {'dup':>5}"
    )
    print("-" * 92)
    for name, r in rows.items():
        print(
            f"{name:<9} {fmt(r['pub_rate']):>10} {fmt(r['copy_rate']):>12} "
            f"{fmt(r['p50'], 2):>11} {fmt(r['p99'], 2):>11} {r['published']:>10,} "
            f"{r['received']:>9,} {r['lost']:>6} {r['dup']:>5}"
        )
        for err in r["errors"]:
            print(f"{'':<9} ERROR {err[:200]}")
    if len(rows) == 2 and all(r["copy_rate"] and r["pub_rate"] for r in rows.values()):
        pm, mo = rows["polymq"], rows["moto"]
        print(
            f"polymq/moto: publish {pm['pub_rate'] / mo['pub_rate']:.2f}x, "
            f"delivered {pm['copy_rate'] / mo['copy_rate']:.2f}x, "
            f"p50 {pm['p50'] / mo['p50']:.2f}x, p99 {pm['p99'] / mo['p99']:.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--queues", type=int, default=10, help="SQS subscriptions of the topic")
    ap.add_argument("--drain", type=float, default=60.0, help="max seconds to drain after")
    ap.add_argument("--only", choices=["polymq", "moto"], help="one endpoint only")
    ap.add_argument("--fsync", default="always", help="polymq's --fsync")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-call timeout, seconds")
    args = ap.parse_args()
    opts = {k: getattr(args, k) for k in ("duration", "publishers", "queues", "drain", "timeout")}
    rows = each_endpoint(args.only, args.fsync, lambda endpoint, name: run(endpoint, name, opts))
    print_table(rows, opts)


if __name__ == "__main__":
    main()
