"""AppFlow state survives restarts, and a run interrupted by kill -9 is marked failed (not
resumed) when the node comes back: status Error with a message saying it was interrupted,
nothing of it published to a directory destination, and the next run moves everything."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.interop import appflow_helpers as H
from tests.interop.events_helpers import client

GATE_WAIT_S = 30.0


class _Gated(BaseHTTPRequestHandler):
    """Pages of 2 items; the second page waits for ``server.gate`` (so a run is caught in the
    middle), and ``server.asked`` is set once a client asked for it."""

    server: Any

    def do_GET(self) -> None:
        cursor = int(parse_qs(urlsplit(self.path).query).get("cursor", ["0"])[0])
        if cursor == 2:
            self.server.asked.set()
            if not self.server.gate.wait(GATE_WAIT_S):
                self.send_response(503)
                self.end_headers()
                return
        items = [{"id": i} for i in range(cursor, min(cursor + 2, 6))]
        body = json.dumps({"items": items, "next": cursor + 2 if cursor + 2 < 6 else None})
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def gated() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    server.daemon_threads = True
    server.gate = threading.Event()
    server.asked = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()


def test_run_interrupted_by_kill9_is_marked_failed(tmp_path: Path, gated: Any) -> None:
    broker, root = H.start_broker(tmp_path)
    try:
        appflow = client("appflow", broker.http_url)
        url = f"http://127.0.0.1:{gated.server_address[1]}"
        profile = H.custom_profile(appflow, "polymq-http", {"baseUrl": url})
        flow = H.name("crash")
        custom = {
            "recordsPath": "items",
            "pagination": "nextToken",
            "nextTokenPath": "next",
            "nextTokenParam": "cursor",
        }
        appflow.create_flow(
            flowName=flow,
            triggerConfig=H.on_demand(),
            sourceFlowConfig=H.custom_source(profile, "records", custom),
            destinationFlowConfigList=[H.s3_destination("crash-out", "JSON", "None")],
            tasks=[H.task("Map_all", [], key="CustomConnector")],
            tags={"keep": "me"},
        )
        eid = appflow.start_flow(flowName=flow)["executionId"]
        assert gated.asked.wait(H.WAIT_S), "the run never asked for its second page"
        running = appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"]
        assert [(r["executionId"], r["executionStatus"]) for r in running] == [(eid, "InProgress")]

        broker.kill9()
        gated.gate.set()
        broker.start()
        appflow = client("appflow", broker.http_url)

        record = H.wait_run(appflow, flow, eid)
        assert record["executionStatus"] == "Error"
        message = record["executionResult"]["errorInfo"]["executionMessage"]
        assert "interrupted" in message and "not resumed" in message
        # the flow, its profile and its tags came back with it
        described = appflow.describe_flow(flowName=flow)
        assert described["tags"] == {"keep": "me"}
        assert described["lastRunExecutionDetails"]["mostRecentExecutionStatus"] == "Error"
        out = root / "crash-out" / flow
        published = [p for p in out.rglob("*.jsonl")] if out.exists() else []
        assert published == []

        again = H.run_now(appflow, flow)
        assert again["executionStatus"] == "Successful", again
        assert again["executionResult"]["recordsProcessed"] == 6
        rows = [
            json.loads(line)
            for p in sorted(out.rglob("*.jsonl"))
            for line in p.read_text().splitlines()
        ]
        assert sorted(r["id"] for r in rows) == list(range(6))
        runs = appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"]
        assert [r["executionStatus"] for r in runs] == ["Successful", "Error"]
    finally:
        broker.stop()


def test_scheduled_flow_stays_active_across_restart(tmp_path: Path) -> None:
    broker, root = H.start_broker(tmp_path)
    try:
        appflow = client("appflow", broker.http_url)
        H.write_csv(root / "tick-in" / "a.csv", ["id"], [[1], [2]])
        flow = H.name("tick")
        start = time.time() + 3600  # the first firing is an hour away
        appflow.create_flow(
            flowName=flow,
            triggerConfig={
                "triggerType": "Scheduled",
                "triggerProperties": {
                    "Scheduled": {"scheduleExpression": "rate(1hours)", "scheduleStartTime": start}
                },
            },
            sourceFlowConfig=H.s3_source("tick-in"),
            destinationFlowConfigList=[H.s3_destination("tick-out")],
            tasks=[H.task("Map", ["id"])],
        )
        appflow.start_flow(flowName=flow)
        broker.stop()
        broker.start()
        appflow = client("appflow", broker.http_url)
        described = appflow.describe_flow(flowName=flow)
        assert described["flowStatus"] == "Active"
        scheduled = described["triggerConfig"]["triggerProperties"]["Scheduled"]
        assert int(scheduled["scheduleStartTime"].timestamp()) == int(start)
        assert appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"] == []
        # re-anchored to now: it fires after the restart too
        appflow.update_flow(
            flowName=flow,
            triggerConfig={
                "triggerType": "Scheduled",
                "triggerProperties": {"Scheduled": {"scheduleExpression": "rate(1hours)"}},
            },
            sourceFlowConfig=H.s3_source("tick-in"),
            destinationFlowConfigList=[H.s3_destination("tick-out")],
            tasks=[H.task("Map", ["id"])],
        )
        run = H.wait_run(appflow, flow)
        assert run["executionStatus"] == "Successful", run
        assert run["executionResult"]["recordsProcessed"] == 2
    finally:
        broker.stop()
