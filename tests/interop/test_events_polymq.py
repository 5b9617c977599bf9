"""What only polymq can show (skipped under ``POLYMQ_TEST_SQS_URL``):

- a bus is a core exchange (``events:<bus>``, type ``x-rules``): a pika queue bound to
  ``events:default`` with no arguments receives every event's JSON, and a binding with
  ``x-pattern`` filters as a rule does;
- rules, targets, buses and archives survive ``kill -9`` and a restart, and keep delivering;
- the AWS CLI (``aws events put-rule / put-targets / put-events``) works unchanged;
- a scheduled rule fires (slow: AWS's smallest rate is one minute; the timer arithmetic is
  unit-tested with a mock clock in ``tests/unit/test_events_schedule.py``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.interop import events_helpers
from tests.interop.events_helpers import (
    client,
    name,
    new_queue,
    put,
    receive_bodies,
    rule_arn,
    rule_to_queue,
)
from tests.interop.sqs_helpers import env_for_cli
from tests.polymq_process import ROOT, PolymqProcess, SqsBroker, own_sqs_polymq

events_broker, events, sqs = (
    events_helpers.events_broker,
    events_helpers.events,
    events_helpers.sqs,
)
CLI_TIMEOUT_S = 60.0


@pytest.fixture
def channel(events_broker: SqsBroker) -> Iterator[BlockingChannel]:
    events_broker.require_polymq()
    params = pika.URLParameters(events_broker.url)
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def get_one(channel: BlockingChannel, queue: str, timeout: float = 10.0) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return bytes(body)
        time.sleep(0.05)
    return None


def test_amqp_queue_bound_to_bus(events: Any, channel: BlockingChannel) -> None:
    everything = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(everything, "events:default")
    source = name("src").replace("-", ".")
    filtered = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(
        filtered,
        "events:default",
        arguments={"x-pattern": {"source": [source], "detail": {"n": [2]}}},
    )
    reply = put(
        events,
        {"Source": source, "DetailType": "t", "Detail": {"n": 1}},
        {"Source": source, "DetailType": "t", "Detail": {"n": 2}},
    )
    ids = [e["EventId"] for e in reply["Entries"]]
    seen = []
    while True:
        body = get_one(channel, everything, timeout=2.0)
        if body is None:
            break
        event = json.loads(body)
        if event["source"] == source:
            seen.append(event["id"])
    assert seen == ids
    body = get_one(channel, filtered)
    assert body is not None and json.loads(body)["id"] == ids[1]
    assert get_one(channel, filtered, timeout=0.5) is None


def test_rules_survive_kill9(tmp_path: Path) -> None:
    proc: PolymqProcess = own_sqs_polymq(tmp_path)
    try:
        ev, sq = client("events", proc.http_url), client("sqs", proc.http_url)
        bus = name("bus")
        ev.create_event_bus(Name=bus)
        source = name("src").replace("-", ".")
        rule, url = rule_to_queue(
            ev, sq, {"source": [source]}, bus=bus, target={"InputPath": "$.detail"}
        )
        disabled, url_off = rule_to_queue(ev, sq, {"source": [source]}, state="DISABLED")
        proc.kill9()
        proc.start()
        ev, sq = client("events", proc.http_url), client("sqs", proc.http_url)
        url = url.replace(url.split("/")[2], proc.http_url.split("/")[2])
        url_off = url_off.replace(url_off.split("/")[2], proc.http_url.split("/")[2])
        assert ev.describe_rule(Name=rule, EventBusName=bus)["State"] == "ENABLED"
        assert ev.describe_rule(Name=disabled)["State"] == "DISABLED"
        assert [
            t["Id"] for t in ev.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
        ] == ["t1"]  # noqa: E501
        put(
            ev,
            {
                "Source": source,
                "DetailType": "t",
                "Detail": {"after": "restart"},
                "EventBusName": bus,
            },
        )  # noqa: E501
        put(ev, {"Source": source, "DetailType": "t", "Detail": {"after": "restart"}})
        assert receive_bodies(sq, url, 1) == ['{"after":"restart"}']
        events_helpers.nothing(sq, url_off)
    finally:
        proc.stop()


def aws(broker: SqsBroker, *args: str) -> Any:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "aws"), "--endpoint-url", broker.http_url]
        + ["--region", "us-east-1", "--output", "json", "events", *args],
        env=env_for_cli(broker.http_url),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli(events_broker: SqsBroker, sqs: Any) -> None:
    source = name("src").replace("-", ".")
    rule = name("cli")
    url, arn = new_queue(sqs, "cli")
    created = aws(
        events_broker,
        "put-rule",
        "--name",
        rule,
        "--event-pattern",
        json.dumps({"source": [source]}),
    )
    assert created["RuleArn"] == rule_arn(rule)
    aws(events_broker, "put-targets", "--rule", rule, "--targets", f"Id=q,Arn={arn}")
    sent = aws(
        events_broker,
        "put-events",
        "--entries",
        json.dumps([{"Source": source, "DetailType": "cli", "Detail": '{"from": "cli"}'}]),
    )
    assert sent["FailedEntryCount"] == 0
    body = json.loads(receive_bodies(sqs, url, 1)[0])
    assert (body["id"], body["detail"]) == (sent["Entries"][0]["EventId"], {"from": "cli"})
    listed = aws(events_broker, "list-rules", "--name-prefix", rule)
    assert [r["Name"] for r in listed["Rules"]] == [rule]


@pytest.mark.slow
def test_scheduled_rule_fires(events_broker: SqsBroker, events: Any, sqs: Any) -> None:
    events_broker.require_polymq()
    rule = name("sched")
    url, arn = new_queue(sqs, "sched")
    events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    event = json.loads(receive_bodies(sqs, url, 1, timeout=75.0)[0])
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")
    assert (event["resources"], event["detail"]) == ([rule_arn(rule)], {})
    events.remove_targets(Rule=rule, Ids=["q"])
    events.delete_rule(Name=rule)
