"""boto3 clients, fixtures and checks for the EventBridge interop suites (``test_events_*.py``).

The endpoint under test is a polymq process serving the AWS APIs and AMQP (``open_sqs_broker``:
EventBridge shares the SQS endpoint), or ``POLYMQ_TEST_SQS_URL``. A test module takes the
fixtures by assignment (see ``sqs_helpers``)::

    events_broker, events, sqs = (
        events_helpers.events_broker, events_helpers.events, events_helpers.sqs
    )

Clients make exactly one attempt per call. Every test names its rules, buses and queues with
``name()``; targets are SQS queues read with ``receive_bodies`` (long polls, bounded).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.interop.sqs_helpers import ACCESS_KEY, REGION, SECRET_KEY, client_config
from tests.polymq_process import SqsBroker, open_sqs_broker

ACCOUNT = "000000000000"
WAIT_S = 10.0


def name(prefix: str) -> str:
    return f"pmq-{prefix}-{uuid.uuid4().hex[:10]}"


def client(service: str, endpoint: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(service, endpoint_url=endpoint, config=client_config())


@pytest.fixture(scope="module")
def events_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsBroker]:
    broker = open_sqs_broker(tmp_path_factory.mktemp("polymq-events"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def events(events_broker: SqsBroker) -> Any:
    return client("events", events_broker.http_url)


@pytest.fixture(scope="module")
def sqs(events_broker: SqsBroker) -> Any:
    return client("sqs", events_broker.http_url)


def queue_arn(queue: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"


def bus_arn(bus: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"


def rule_arn(rule: str, bus: str = "default") -> str:
    tail = rule if bus == "default" else f"{bus}/{rule}"
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{tail}"


def new_queue(sqs: Any, prefix: str, fifo: bool = False) -> tuple[str, str]:
    """A fresh queue: ``(url, arn)``."""
    qname = name(prefix) + (".fifo" if fifo else "")
    attrs = {"FifoQueue": "true"} if fifo else {}
    url: str = sqs.create_queue(QueueName=qname, Attributes=attrs)["QueueUrl"]
    return url, queue_arn(qname)


def rule_to_queue(
    events: Any,
    sqs: Any,
    pattern: dict[str, Any],
    *,
    bus: str = "default",
    target: dict[str, Any] | None = None,
    state: str = "ENABLED",
) -> tuple[str, str]:
    """A rule with ``pattern`` on ``bus`` whose one target is a fresh queue; ``(rule, url)``."""
    rule = name("rule")
    url, arn = new_queue(sqs, "target")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern), State=state)
    events.put_targets(
        Rule=rule, EventBusName=bus, Targets=[{"Id": "t1", "Arn": arn, **(target or {})}]
    )
    return rule, url


def put(events: Any, *entries: dict[str, Any]) -> dict[str, Any]:
    """PutEvents with ``Detail`` given as a dict (dumped here); asserts no entry failed."""
    out = []
    for entry in entries:
        e = dict(entry)
        if isinstance(e.get("Detail"), dict):
            e["Detail"] = json.dumps(e["Detail"])
        out.append(e)
    reply: dict[str, Any] = events.put_events(Entries=out)
    assert reply["FailedEntryCount"] == 0, reply
    return reply


def receive_bodies(sqs: Any, url: str, n: int, timeout: float = WAIT_S) -> list[str]:
    """Exactly ``n`` message bodies (deleted as read), within ``timeout``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} messages within {timeout} s"
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, n - len(got)), WaitTimeSeconds=1
        )
        for m in reply.get("Messages", []):
            got.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(got) == n
    return got


def nothing(sqs: Any, url: str, wait_s: int = 1) -> None:
    """The queue stays empty for ``wait_s``."""
    reply = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=wait_s)
    assert reply.get("Messages", []) == [], reply


def expect_error(call: Any, code: str, message: str | None = None, **kwargs: Any) -> Any:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response["Error"]
    assert err["Code"] == code, info.value.response
    if message is not None:
        assert err["Message"] == message, info.value.response
    return info.value
