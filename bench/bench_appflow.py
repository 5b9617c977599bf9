"""AppFlow throughput: records per second for ``--rows`` CSV rows (100,000 by default) through
a filter and maps into an SQS queue, on a real polymq node.

Workload: one CSV file of ``--rows`` rows (id, customer, amount, country, day) under a fresh
AppFlow root; an on-demand flow S3 (the directory) -> CustomConnector polymq-sqs with a
PROJECTION, a GREATER_THAN filter on ``amount`` that keeps about ``--keep`` of the rows, and
four Map tasks with type conversions (integer, double, string, date). The flow runs
``--runs`` times (the messages stay in the queue: each run adds its own); each run is timed
from StartFlow to the execution record saying Successful. Reported per run and as the median:
source records/s, messages written/s and the server's CPU milliseconds per 1,000 records
(from /proc).

polymq runs as a subprocess (``python -m broker serve``, fresh data directory, ``--http-port
0``, other listeners off, the port read from its JSON log); boto3 makes one attempt per call;
every wait is bounded.

    python bench/bench_appflow.py [--rows 100000] [--keep 0.5] [--runs 3] [--fsync always]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Polymq, boto3_client

RUN_TIMEOUT_S = 600.0


def start_polymq(conf: Path, root: Path, fsync: str) -> Polymq:
    """polymq with only the HTTP listener and ``appflow_root_dir`` at ``root``, ready once it
    logged ``started``."""
    conf.write_text(f"appflow_root_dir = {json.dumps(str(root))}\n")
    return Polymq(
        "http",
        fsync,
        ("amqp", "mqtt", "stomp", "admin"),
        prefix="bench-appflow-data-",
        extra=("--config", str(conf), "--log-level", "info"),
        wait_started=True,
    )


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_rows(path: Path, rows: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    countries = ["DE", "FR", "US", "JP", "BR"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "customer", "amount", "country", "day"])
        for i in range(rows):
            w.writerow(
                [
                    i,
                    f"customer-{i % 9973}",
                    (i * 7919) % 1000,
                    countries[i % 5],
                    f"2024-0{1 + i % 9}-1{i % 10}",
                ]
            )
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=float, default=0.5, help="share of rows the filter keeps")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fsync", default="always", choices=("always", "interval", "never"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-appflow-"))
    root = tmp / "root"
    size = write_rows(root / "bench-in" / "rows.csv", args.rows)
    server = start_polymq(tmp / "bench.toml", root, args.fsync)
    proc = server.proc
    try:
        url = server.endpoint
        appflow = boto3_client("appflow", url, retries={"max_attempts": 1}, read_timeout=60)
        sqs = boto3_client("sqs", url, retries={"max_attempts": 1}, read_timeout=60)
        queue_url = sqs.create_queue(QueueName="bench-out")["QueueUrl"]
        appflow.create_connector_profile(
            connectorProfileName="bench-sqs", connectorType="CustomConnector",
            connectorLabel="polymq-sqs", connectionMode="Public",
            connectorProfileConfig={"connectorProfileProperties": {}},
        )  # fmt: skip
        threshold = int(1000 * (1 - args.keep))

        def t(kind: str, fields: list[str], op: str = "NO_OP", **kw: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"taskType": kind, "sourceFields": fields,
                                   "connectorOperator": {"S3": op}}  # fmt: skip
            dest = kw.pop("dest", None)
            if dest:
                out["destinationField"] = dest
            if kw:
                out["taskProperties"] = kw
            return out

        appflow.create_flow(
            flowName="bench",
            triggerConfig={"triggerType": "OnDemand"},
            sourceFlowConfig={"connectorType": "S3", "sourceConnectorProperties": {
                "S3": {"bucketName": "bench-in", "s3InputFormatConfig": {"s3InputFileType": "CSV"}}
            }},
            destinationFlowConfigList=[{
                "connectorType": "CustomConnector", "connectorProfileName": "bench-sqs",
                "destinationConnectorProperties": {"CustomConnector": {"entityName": "bench-out"}},
            }],
            tasks=[
                t("Filter", ["id", "customer", "amount", "country", "day"], "PROJECTION"),
                t("Filter", ["amount"], "GREATER_THAN", DATA_TYPE="integer",
                  VALUE=str(threshold - 1)),
                t("Map", ["id"], dest="orderId", DESTINATION_DATA_TYPE="integer"),
                t("Map", ["amount"], DESTINATION_DATA_TYPE="double"),
                t("Map", ["country"], DESTINATION_DATA_TYPE="string"),
                t("Map", ["day"], DESTINATION_DATA_TYPE="date"),
            ],
        )  # fmt: skip
        print(f"{args.rows:,} CSV rows ({size / 1e6:.1f} MB), filter keeps ~{args.keep:.0%}, "
              f"fsync {args.fsync}")  # fmt: skip
        rates: list[float] = []

        def queued() -> int:
            attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
            return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

        for n in range(args.runs):
            before = queued()
            cpu0 = cpu_s(proc.pid)
            t0 = time.perf_counter()
            eid = appflow.start_flow(flowName="bench")["executionId"]
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                recs = appflow.describe_flow_execution_records(flowName="bench")["flowExecutions"]
                rec = next(r for r in recs if r["executionId"] == eid)
                if rec["executionStatus"] != "InProgress":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the run did not finish")
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            cpu = cpu_s(proc.pid) - cpu0
            assert rec["executionStatus"] == "Successful", rec
            result = rec["executionResult"]
            records = result["recordsProcessed"]
            written = queued() - before
            rates.append(records / elapsed)
            print(f"run {n + 1}: {records:,} records in {elapsed:.2f} s = "
                  f"{records / elapsed:,.0f} records/s; {written:,} messages "
                  f"({written / elapsed:,.0f}/s); server CPU {cpu:.2f} s "
                  f"({1e6 * cpu / records:.1f} ms per 1,000 records)")  # fmt: skip
        print(f"median: {statistics.median(rates):,.0f} records/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
