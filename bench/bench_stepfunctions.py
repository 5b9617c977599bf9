"""Step Functions state transitions per second and StartSyncExecution latency with boto3.

Workloads, on one polymq process (``python -m broker serve``, fresh data directory, ``--http-port
0``, other listeners off, the port read from its JSON log; boto3 makes one attempt per call):

* a 10-state Pass chain, Standard: ``--executions`` StartExecution calls from ``--clients``
  threads, then ListExecutions until all have SUCCEEDED; transitions/s = executions x 10 / wall
  time of the whole (each execution is two commands in the log: its record, then its end);
* the same chain, Express, through StartSyncExecution from ``--clients`` threads: transitions/s
  and the call's latency p50 / p99;
* a Map over 1,000 items (a Pass state per item), Standard and Express: 1,001 transitions per
  execution, timed from StartExecution until DescribeExecution shows its end (Standard) or to
  the synchronous reply (Express);
* the pure interpreter alone (``broker/adapters/asl``), in this process: the ceiling without
  HTTP, the log or the driver.

    python bench/bench_stepfunctions.py [--executions 300] [--clients 4] [--fsync always]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import ROOT, aws_polymq, boto3_client, p99

ROLE = "arn:aws:iam::000000000000:role/bench"
CHAIN_STATES = 10
MAP_ITEMS = 1000
WAIT_S = 300.0

sys.path.insert(0, str(ROOT))


def chain_definition() -> dict[str, Any]:
    states: dict[str, Any] = {}
    for i in range(CHAIN_STATES):
        state: dict[str, Any] = {"Type": "Pass", "Result": i, "ResultPath": f"$.s{i}"}
        if i + 1 < CHAIN_STATES:
            state["Next"] = f"S{i + 1}"
        else:
            state["End"] = True
        states[f"S{i}"] = state
    return {"StartAt": "S0", "States": states}


def map_definition() -> dict[str, Any]:
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                "End": True,
            }
        },
    }


def client(endpoint: str) -> Any:
    return boto3_client(
        "stepfunctions",
        endpoint,
        read_timeout=120,
        max_pool_connections=16,
        inject_host_prefix=False,
    )


def create(sfn: Any, name: str, definition: dict[str, Any], kind: str) -> str:
    arn: str = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=ROLE, type=kind
    )["stateMachineArn"]
    return arn


def wait_all(sfn: Any, arn: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        done: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs = {"nextToken": token} if token else {}
            page = sfn.list_executions(stateMachineArn=arn, maxResults=1000, **kwargs)
            done += [e for e in page["executions"] if e["status"] != "RUNNING"]
            token = page.get("nextToken")
            if not token:
                break
        if len(done) >= count:
            failed = [e for e in done if e["status"] != "SUCCEEDED"]
            if failed:
                raise RuntimeError(f"{len(failed)} executions did not succeed: {failed[0]}")
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(done)} of {count} executions ended within {WAIT_S} s")
        time.sleep(0.1)


def standard_chain(sfn: Any, executions: int, clients: int) -> dict[str, Any]:
    arn = create(sfn, f"bench-chain-{int(time.time())}", chain_definition(), "STANDARD")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(
            pool.map(
                lambda i: sfn.start_execution(stateMachineArn=arn, input="{}"), range(executions)
            )
        )
    wait_all(sfn, arn, executions)
    span = time.perf_counter() - t0
    return {"transitions_s": executions * CHAIN_STATES / span, "executions_s": executions / span}


def express_chain(sfn: Any, executions: int, clients: int) -> dict[str, Any]:
    arn = create(sfn, f"bench-express-{int(time.time())}", chain_definition(), "EXPRESS")
    latencies: list[float] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        t0 = time.perf_counter()
        out = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
        took = time.perf_counter() - t0
        if out["status"] != "SUCCEEDED":
            raise RuntimeError(f"express execution {out['status']}: {out.get('error')}")
        with lock:
            latencies.append(took)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(executions)))
    span = time.perf_counter() - t0
    latencies.sort()
    return {
        "transitions_s": executions * CHAIN_STATES / span,
        "executions_s": executions / span,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": p99(latencies) * 1000,
    }


def map_runs(sfn: Any) -> dict[str, Any]:
    items = json.dumps({"items": list(range(MAP_ITEMS))})
    standard = create(sfn, f"bench-map-{int(time.time())}", map_definition(), "STANDARD")
    t0 = time.perf_counter()
    execution = sfn.start_execution(stateMachineArn=standard, input=items)["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        if time.perf_counter() - t0 > WAIT_S:
            raise RuntimeError("the Map execution did not end")
        time.sleep(0.005)
    span = time.perf_counter() - t0
    assert len(json.loads(described["output"])) == MAP_ITEMS
    express = create(sfn, f"bench-map-x-{int(time.time())}", map_definition(), "EXPRESS")
    t0 = time.perf_counter()
    out = sfn.start_sync_execution(stateMachineArn=express, input=items)
    express_span = time.perf_counter() - t0
    assert out["status"] == "SUCCEEDED"
    return {
        "standard_transitions_s": (MAP_ITEMS + 1) / span,
        "standard_s": span,
        "express_transitions_s": (MAP_ITEMS + 1) / express_span,
        "express_s": express_span,
    }


def interpreter_only(executions: int) -> dict[str, Any]:
    from broker.adapters.asl.interpreter import Execution

    arn = "arn:aws:states:us-east-1:000000000000:stateMachine:b"
    definition = chain_definition()
    t0 = time.perf_counter()
    for i in range(executions):
        exe = Execution(
            definition,
            execution_arn=f"{arn}:{i}",
            name=str(i),
            state_machine_arn=arn,
            state_machine_name="b",
            seed=str(i),
        )
        exe.feed({"k": "start", "t": 0, "input": {}})
        assert exe.status == "SUCCEEDED"
    chain_span = time.perf_counter() - t0
    t0 = time.perf_counter()
    exe = Execution(
        map_definition(),
        execution_arn=f"{arn}:map",
        name="map",
        state_machine_arn=arn,
        state_machine_name="b",
        seed="m",
    )
    exe.feed({"k": "start", "t": 0, "input": {"items": list(range(MAP_ITEMS))}})
    map_span = time.perf_counter() - t0
    return {
        "chain_transitions_s": executions * CHAIN_STATES / chain_span,
        "map_transitions_s": (MAP_ITEMS + 1) / map_span,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executions", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--fsync", default="always", help="polymq's --fsync")
    opts = ap.parse_args()
    pure = interpreter_only(opts.executions)
    server = aws_polymq(opts.fsync, prefix="polymq-bench-sfn-")
    try:
        sfn = client(server.endpoint)
        std = standard_chain(sfn, opts.executions, opts.clients)
        exp = express_chain(sfn, opts.executions, opts.clients)
        mp = map_runs(sfn)
    finally:
        server.stop()
    print()
    print(
        f"Step Functions, {opts.executions} executions from {opts.clients} boto3 threads, "
        f"fsync {opts.fsync}"
    )
    print(f"{'workload':<44} {'transitions/s':>14} {'other':>30}")
    print("-" * 90)
    print(
        f"{'10-state Pass chain, Standard':<44} {std['transitions_s']:>14,.0f} "
        f"{std['executions_s']:>22,.1f} exec/s"
    )
    print(
        f"{'10-state Pass chain, Express (sync)':<44} {exp['transitions_s']:>14,.0f} "
        f"{'p50 {:.1f} ms, p99 {:.1f} ms'.format(exp['p50_ms'], exp['p99_ms']):>30}"
    )
    print(
        f"{'Map over 1,000 items, Standard':<44} {mp['standard_transitions_s']:>14,.0f} "
        f"{'{:.3f} s per execution'.format(mp['standard_s']):>30}"
    )
    print(
        f"{'Map over 1,000 items, Express (sync)':<44} {mp['express_transitions_s']:>14,.0f} "
        f"{'{:.3f} s per call'.format(mp['express_s']):>30}"
    )
    print(f"{'interpreter alone: 10-state chain':<44} {pure['chain_transitions_s']:>14,.0f}")
    print(f"{'interpreter alone: Map over 1,000 items':<44} {pure['map_transitions_s']:>14,.0f}")
    if server.notable:
        print("polymq said:", " | ".join(server.notable[:5]))


if __name__ == "__main__":
    main()
