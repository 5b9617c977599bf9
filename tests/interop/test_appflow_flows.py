"""AppFlow flows end to end on a real polymq node, driven by boto3 and read back with the real
clients: CSV files -> filter/map -> an SQS queue read over AMQP (pika); a scheduled incremental
SQLite -> JSON lines flow; an event-triggered flow started by an EventBridge rule; a paginated
HTTP API -> SQL upsert; an SQS queue -> SNS; validation that terminates a run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pytest

from tests.interop import appflow_helpers as H
from tests.interop.amqp_helpers import get_n
from tests.interop.events_helpers import client
from tests.polymq_process import ROOT, PolymqProcess, server_env

appflow_env, appflow_broker, appflow, sqs, root = (
    H.appflow_env,
    H.appflow_broker,
    H.appflow,
    H.sqs,
    H.root,
)


@pytest.fixture(scope="module")
def events(appflow_broker: PolymqProcess) -> Any:
    return client("events", appflow_broker.http_url)


@pytest.fixture(scope="module")
def sns(appflow_broker: PolymqProcess) -> Any:
    return client("sns", appflow_broker.http_url)


def receive_all(sqs: Any, url: str, n: int, timeout: float = H.WAIT_S) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < n and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in got.get("Messages", []):
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(bodies) == n, bodies
    return bodies


def test_csv_filter_map_to_sqs_read_over_amqp(
    appflow: Any, sqs: Any, root: Path, appflow_broker: PolymqProcess
) -> None:
    bucket = "orders-csv"
    rows = [[i, f"customer {i}", i * 7 % 100, f"2024-05-0{1 + i % 9}"] for i in range(1, 61)]
    H.write_csv(root / bucket / "2024" / "a.csv", ["id", "customer", "amount", "day"], rows[:30])
    H.write_csv(root / bucket / "2024" / "b.csv", ["id", "customer", "amount", "day"], rows[30:])
    H.write_csv(root / bucket / "other" / "c.csv", ["id", "customer", "amount", "day"], rows)
    queue = H.name("orders")
    sqs.create_queue(QueueName=queue)
    profile = H.custom_profile(appflow, "polymq-sqs")
    flow = H.name("csv2sqs")
    appflow.create_flow(
        flowName=flow,
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.s3_source(bucket, prefix="2024/"),
        destinationFlowConfigList=[H.custom_destination(profile, queue)],
        tasks=[
            H.task("Filter", ["id", "customer", "amount", "day"], "PROJECTION"),
            H.task(
                "Filter", ["amount"], "GREATER_THAN_OR_EQUAL_TO", DATA_TYPE="integer", VALUE="50"
            ),
            H.task("Filter", ["customer"], "CONTAINS", VALUE="customer"),
            H.task("Map", ["id"], dest="orderId", DESTINATION_DATA_TYPE="integer"),
            H.task("Map", ["amount"], DESTINATION_DATA_TYPE="double"),
            H.task("Mask", ["customer"], "MASK_LAST_N", MASK_LENGTH="2"),
            H.task("Map", ["customer"]),
            H.task("Map", ["day"], DESTINATION_DATA_TYPE="date"),
        ],
    )
    run = H.run_now(appflow, flow)
    assert run["executionStatus"] == "Successful", run
    expected = [r for r in rows if r[2] >= 50]
    assert run["executionResult"]["recordsProcessed"] == 60  # the other/ prefix is not read
    assert run["executionResult"]["errorInfo"]["putFailuresCount"] == 0
    assert run["executionResult"]["bytesWritten"] > 0

    conn = pika.BlockingConnection(pika.URLParameters(appflow_broker.url))
    try:
        ch = conn.channel()
        got = get_n(ch, queue, len(expected))
        for g in got:
            ch.basic_ack(g.tag)
        assert ch.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        conn.close()
    bodies = [json.loads(g.body) for g in got]
    assert [b["orderId"] for b in bodies] == [r[0] for r in expected]
    first = bodies[0]
    assert first == {
        "orderId": expected[0][0],
        "amount": float(expected[0][2]),
        "customer": f"customer {expected[0][0]}"[:-2] + "**",
        "day": expected[0][3],
    }
    assert got[0].properties.delivery_mode == 2  # an SQS message, persistent


def _sqlite(path: Path, rows: list[tuple[int, str, int]]) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, name TEXT, updated INTEGER)"
        )
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
        db.commit()
    finally:
        db.close()


def _lines(directory: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in sorted(directory.rglob("*.jsonl")):
        out[path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_scheduled_incremental_sqlite_to_json_lines(appflow: Any, root: Path) -> None:
    db = root / "shop.sqlite"
    _sqlite(db, [(1, "old", 100), (2, "a", 1_000), (3, "b", 2_000), (4, "c", 3_000)])
    profile = H.custom_profile(appflow, "polymq-sql", {"database": "shop.sqlite"})
    flow = H.name("sql2lake")
    definition: dict[str, Any] = {
        "flowName": flow,
        "sourceFlowConfig": H.custom_source(profile, "events", watermark="updated"),
        "destinationFlowConfigList": [
            H.s3_destination(
                "lake", "JSON", "SingleFile", {"prefixType": "PATH", "prefixFormat": "DAY"}
            )
        ],
        "tasks": [
            H.task("Filter", ["id", "name", "updated"], "PROJECTION", key="CustomConnector"),
            H.task("Map_all", [], key="CustomConnector"),
        ],
    }

    def trigger(start: float | None = None) -> dict[str, Any]:
        props: dict[str, Any] = {
            "scheduleExpression": "rate(1hours)",
            "dataPullMode": "Incremental",
            "firstExecutionFrom": 0.5,  # epoch ms 500: row 1 (updated 100) is before it
        }
        if start is not None:
            props["scheduleStartTime"] = start
        return {"triggerType": "Scheduled", "triggerProperties": {"Scheduled": props}}

    assert appflow.create_flow(triggerConfig=trigger(), **definition)["flowStatus"] == "Draft"
    assert appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"] == []
    appflow.start_flow(flowName=flow)  # the first firing is the activation
    first = H.wait_run(appflow, flow)
    assert first["executionStatus"] == "Successful", first
    assert first["executionResult"]["recordsProcessed"] == 3
    out = root / "lake" / flow
    files = _lines(out)
    assert [[r["id"] for r in rows] for rows in files.values()] == [[2, 3, 4]]
    day_dirs = [p for p in out.rglob("*") if p.is_dir()]
    assert len(day_dirs) == 3  # YYYY/MM/DD

    _sqlite(db, [(5, "d", 4_000), (6, "e", 5_000)])
    # the next firing: re-anchor the schedule one second ahead (UpdateFlow of an active flow)
    appflow.update_flow(
        triggerConfig=trigger(time.time() + 1),
        **{k: v for k, v in definition.items() if k != "flowName"},
        flowName=flow,
    )
    second = H.wait_run(appflow, flow, count=2)
    assert second["executionStatus"] == "Successful", second
    assert second["executionResult"]["recordsProcessed"] == 2
    assert second["dataPullStartTime"].timestamp() == 3.0  # the first run's watermark (ms)
    files = _lines(out)
    assert sorted([r["id"] for r in rows] for rows in files.values()) == [[2, 3, 4], [5, 6]]
    assert appflow.describe_flow(flowName=flow)["flowStatus"] == "Active"
    appflow.stop_flow(flowName=flow)
    appflow.delete_flow(flowName=flow)


def test_event_triggered_flow_from_an_eventbridge_rule(
    appflow: Any, sqs: Any, events: Any, root: Path
) -> None:
    inbox = H.name("inbox")
    inbox_url = sqs.create_queue(QueueName=inbox)["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = H.name("orders")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": inbox_arn, "InputPath": "$.detail"}])
    reports = H.name("reports")
    reports_url = sqs.create_queue(QueueName=reports)["QueueUrl"]
    reports_arn = sqs.get_queue_attributes(QueueUrl=reports_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    report_rule = H.name("report")
    flow = H.name("onevent")
    events.put_rule(
        Name=report_rule,
        EventPattern=json.dumps({"source": ["aws.appflow"], "detail": {"flow-name": [flow]}}),
    )
    events.put_targets(Rule=report_rule, Targets=[{"Id": "r", "Arn": reports_arn}])

    profile = H.custom_profile(appflow, "polymq-sqs")
    appflow.create_flow(
        flowName=flow,
        triggerConfig={"triggerType": "Event"},
        sourceFlowConfig=H.custom_source(profile, inbox),
        destinationFlowConfigList=[H.s3_destination("event-lake", "CSV")],
        tasks=[
            H.task("Filter", ["order", "qty"], "PROJECTION", key="CustomConnector"),
            H.task(
                "Arithmetic",
                ["qty", "order"],
                "MULTIPLICATION",
                dest="score",
                key="CustomConnector",
            ),
            H.task("Map", ["order"], key="CustomConnector"),
        ],
    )
    # nothing runs while the flow is not active
    events.put_events(
        Entries=[
            {"Source": "shop", "DetailType": "o", "Detail": json.dumps({"order": 1, "qty": 2})}
        ]
    )
    assert appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"] == []
    assert appflow.start_flow(flowName=flow)["flowStatus"] == "Active"
    run = H.wait_run(appflow, flow)
    assert run["executionStatus"] == "Successful", run
    events.put_events(
        Entries=[
            {"Source": "shop", "DetailType": "o", "Detail": json.dumps({"order": n, "qty": 3})}
            for n in (2, 3)
        ]
    )
    total = 1
    deadline = time.monotonic() + H.WAIT_S
    while total < 3 and time.monotonic() < deadline:
        runs = appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"]
        done = [r for r in runs if r["executionStatus"] == "Successful"]
        total = sum(r["executionResult"]["recordsProcessed"] for r in done)
        time.sleep(0.05)
    assert total == 3
    rows: list[str] = []
    for path in sorted((root / "event-lake" / flow).glob("*.csv")):
        lines = path.read_text().splitlines()
        assert lines[0] == "score,order"
        rows += lines[1:]
    assert sorted(rows) == ["2,1", "6,2", "9,3"]
    assert (
        sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )
    reports = receive_all(sqs, reports_url, len(done))  # one report per run
    assert {r["detail-type"] for r in reports} == {"AppFlow End Flow Run Report"}
    assert {r["detail"]["execution-id"] for r in reports} == {r["executionId"] for r in done}
    assert {r["detail"]["status"] for r in reports} == {"Execution Successful"}
    appflow.stop_flow(flowName=flow)
    appflow.delete_flow(flowName=flow)


class _Api(BaseHTTPRequestHandler):
    """A paginated JSON API: /items?cursor=N returns 3 items and the next cursor; the
    X-API-Key header must be ``k1``."""

    def do_GET(self) -> None:
        if self.headers.get("X-API-Key") != "k1":
            self.send_response(401)
            self.end_headers()
            return
        query = parse_qs(urlsplit(self.path).query)
        cursor = int(query.get("cursor", ["0"])[0])
        items = [{"sku": f"s{i}", "price": str(i * 1.5), "stock": i} for i in range(cursor, 8)][:3]
        nxt = cursor + 3 if cursor + 3 < 8 else None
        body = json.dumps({"data": {"items": items}, "next": nxt}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_http_source_paginated_to_sql_upsert(appflow: Any, root: Path, api: str) -> None:
    db = root / "catalog.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE products (sku TEXT PRIMARY KEY, price REAL, stock INTEGER)")
    conn.execute("INSERT INTO products VALUES ('s1', 0, 0), ('zz', 9, 9)")
    conn.commit()
    conn.close()
    http = H.custom_profile(
        appflow,
        "polymq-http",
        {"baseUrl": api},
        {"authenticationType": "APIKEY", "apiKey": {"apiKey": "k1"}},
    )
    sql = H.custom_profile(appflow, "polymq-sql", {"database": "catalog.sqlite"})
    flow = H.name("http2sql")
    custom = {
        "recordsPath": "data.items",
        "pagination": "nextToken",
        "nextTokenPath": "next",
        "nextTokenParam": "cursor",
    }
    appflow.create_flow(
        flowName=flow,
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.custom_source(http, "items", custom),
        destinationFlowConfigList=[H.custom_destination(sql, "products", "UPSERT", ["sku"])],
        tasks=[
            H.task("Map", ["sku"], key="CustomConnector"),
            H.task("Map", ["price"], key="CustomConnector", DESTINATION_DATA_TYPE="double"),
            H.task("Map", ["stock"], key="CustomConnector"),
        ],
    )
    run = H.run_now(appflow, flow)
    assert run["executionStatus"] == "Successful", run
    assert run["executionResult"]["recordsProcessed"] == 8
    conn = sqlite3.connect(db)
    try:
        got = conn.execute("SELECT sku, price, stock FROM products ORDER BY sku").fetchall()
    finally:
        conn.close()
    assert got == [(f"s{i}", i * 1.5, i) for i in range(8)] + [("zz", 9.0, 9)]
    # wrong credentials: the run fails with the connector's authentication error
    appflow.update_connector_profile(
        connectorProfileName=http,
        connectionMode="Public",
        connectorProfileConfig={
            "connectorProfileProperties": {
                "CustomConnector": {"profileProperties": {"baseUrl": api}}
            },
            "connectorProfileCredentials": {
                "CustomConnector": {"authenticationType": "APIKEY", "apiKey": {"apiKey": "nope"}}
            },
        },
    )
    failed = H.run_now(appflow, flow)
    assert failed["executionStatus"] == "Error"
    assert failed["executionResult"]["errorInfo"]["executionMessage"].startswith(
        "ConnectorAuthenticationException"
    )
    appflow.delete_flow(flowName=flow)


def test_sqs_source_to_sns_topic(appflow: Any, sqs: Any, sns: Any) -> None:
    source = H.name("src")
    source_url = sqs.create_queue(QueueName=source)["QueueUrl"]
    sink_url = sqs.create_queue(QueueName=H.name("sink"))["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    topic = H.name("topic")
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=sink_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    for i in range(15):
        body = json.dumps({"n": i}) if i % 5 else "plain text"
        sqs.send_message(QueueUrl=source_url, MessageBody=body)
    sqs_profile = H.custom_profile(appflow, "polymq-sqs")
    sns_profile = H.custom_profile(appflow, "polymq-sns")
    flow = H.name("sqs2sns")
    appflow.create_flow(
        flowName=flow,
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.custom_source(sqs_profile, source),
        destinationFlowConfigList=[H.custom_destination(sns_profile, topic)],
        tasks=[
            H.task("Validate", ["n"], "VALIDATE_NON_NULL", key="CustomConnector"),
            H.task("Map", ["n"], dest="value", key="CustomConnector"),
        ],
    )
    run = H.run_now(appflow, flow)
    assert run["executionStatus"] == "Successful", run
    assert run["executionResult"]["recordsProcessed"] == 15
    bodies = receive_all(sqs, sink_url, 12)
    assert sorted(b["value"] for b in bodies) == [i for i in range(15) if i % 5]
    attrs = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["All"])["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == ("0", "0")
    appflow.delete_flow(flowName=flow)


def test_terminate_flow_validation_publishes_nothing(appflow: Any, root: Path) -> None:
    H.write_csv(root / "strict-in" / "a.csv", ["id", "qty"], [[1, 5], [2, "many"], [3, 1]])
    flow = H.name("strict")
    appflow.create_flow(
        flowName=flow,
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.s3_source("strict-in"),
        destinationFlowConfigList=[H.s3_destination("strict-out")],
        tasks=[
            H.task("Validate", ["qty"], "VALIDATE_NUMERIC", VALIDATION_ACTION="TerminateFlow"),
            H.task("Map_all", []),
        ],
    )
    run = H.run_now(appflow, flow)
    assert run["executionStatus"] == "Error"
    message = run["executionResult"]["errorInfo"]["executionMessage"]
    assert "Terminated by a Validate task" in message and "qty VALIDATE_NUMERIC" in message
    assert list((root / "strict-out").rglob("*")) in ([], [root / "strict-out" / flow])
    appflow.delete_flow(flowName=flow)


def _cli(broker: PolymqProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server_env(), "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "broker", "flow", "run", *args, "--endpoint", broker.http_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_polymq_flow_run(appflow: Any, root: Path, appflow_broker: PolymqProcess) -> None:
    H.write_csv(root / "cli-in" / "a.csv", ["id"], [[i] for i in range(250)])
    flow = H.name("cli")
    appflow.create_flow(
        flowName=flow,
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.s3_source("cli-in"),
        destinationFlowConfigList=[H.s3_destination("cli-out", "CSV", "None")],
        tasks=[H.task("Map", ["id"], DESTINATION_DATA_TYPE="integer")],
    )
    done = _cli(appflow_broker, flow)
    assert done.returncode == 0, done.stderr
    assert f"flow {flow} execution " in done.stdout and ": Successful" in done.stdout
    assert "records processed  250" in done.stdout
    assert "progress: 250 records" in done.stderr  # the final line of the bar
    parts = sorted((root / "cli-out" / flow).glob("*-part-*.csv"))
    assert parts and sum(len(p.read_text().splitlines()) - 1 for p in parts) == 250

    as_json = _cli(appflow_broker, flow, "--json")
    assert as_json.returncode == 0
    record = json.loads(as_json.stdout)
    assert record["executionStatus"] == "Successful"
    assert record["executionResult"]["recordsProcessed"] == 250

    (root / "cli-in" / "a.csv").unlink()
    (root / "cli-in").rmdir()
    failed = _cli(appflow_broker, flow)
    assert failed.returncode == 1
    assert ": Error" in failed.stdout and "bucket cli-in does not exist" in failed.stdout

    missing = _cli(appflow_broker, H.name("nope"))
    assert missing.returncode == 1
    assert "ResourceNotFoundException" in missing.stderr
    appflow.delete_flow(flowName=flow)
