"""SQS dead-letter queues with boto3: RedrivePolicy (maxReceiveCount 1 and 2),
ListDeadLetterSourceQueues, RedriveAllowPolicy, and message move tasks (Start / List / Cancel)
from a dead-letter queue back to its source queues or to a chosen destination.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    WAIT_S,
    arn_of,
    expect_error,
    new_queue,
    receive,
    receive_n,
    wait_attr,
)

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures


def with_dlq(sqs: Any, prefix: str, max_receives: int, fifo: bool = False) -> tuple[str, str]:
    dlq = new_queue(sqs, f"{prefix}-dlq", fifo=fifo)
    policy = {"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": max_receives}
    src = new_queue(sqs, prefix, fifo=fifo, RedrivePolicy=json.dumps(policy))
    return src, dlq


@pytest.mark.parametrize("max_receives", [1, 2])
def test_message_moves_to_dlq_after_max_receive_count(sqs: Any, max_receives: int) -> None:
    src, dlq = with_dlq(sqs, "redrive", max_receives)
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    for count in range(1, max_receives + 1):
        (msg,) = receive_n(sqs, src, 1, VisibilityTimeout=1, MessageSystemAttributeNames=["All"])
        assert msg["Attributes"]["ApproximateReceiveCount"] == str(count)
        time.sleep(1.2)
    # the next receive finds the count exceeded: the message goes to the DLQ instead
    assert receive(sqs, src, MaxNumberOfMessages=10, WaitTimeSeconds=1) == []
    (dead,) = receive_n(sqs, dlq, 1, MessageSystemAttributeNames=["All"])
    assert dead["MessageId"] == sent["MessageId"]
    assert dead["Body"] == "poison"
    wait_attr(sqs, src, "ApproximateNumberOfMessagesNotVisible", "0")


def test_list_dead_letter_source_queues(sqs: Any) -> None:
    dlq = new_queue(sqs, "sources-dlq")
    policy = json.dumps({"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 3})
    sources = {new_queue(sqs, f"source{i}", RedrivePolicy=policy) for i in range(3)}
    new_queue(sqs, "unrelated")
    listed = sqs.list_dead_letter_source_queues(QueueUrl=dlq)
    assert set(listed["queueUrls"]) == sources
    assert len(listed["queueUrls"]) == 3
    page = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2)
    assert len(page["queueUrls"]) == 2
    rest = sqs.list_dead_letter_source_queues(
        QueueUrl=dlq, MaxResults=2, NextToken=page["NextToken"]
    )
    assert set(page["queueUrls"]) | set(rest["queueUrls"]) == sources


def test_redrive_allow_policy_deny_all_blocks_use_as_dlq(sqs: Any) -> None:
    dlq = new_queue(sqs, "deny-dlq", RedriveAllowPolicy='{"redrivePermission":"denyAll"}')
    policy = json.dumps({"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 1})
    src = new_queue(sqs, "deny-src")
    expect_error(
        sqs.set_queue_attributes,
        "InvalidParameterValue",
        QueueUrl=src,
        Attributes={"RedrivePolicy": policy},
    )


def test_redrive_allow_policy_by_queue(sqs: Any) -> None:
    allowed = new_queue(sqs, "allowed")
    dlq = new_queue(
        sqs,
        "byqueue-dlq",
        RedriveAllowPolicy=json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [arn_of(allowed)]}
        ),
    )
    policy = json.dumps({"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 1})
    sqs.set_queue_attributes(QueueUrl=allowed, Attributes={"RedrivePolicy": policy})
    other = new_queue(sqs, "not-allowed")
    expect_error(
        sqs.set_queue_attributes,
        "InvalidParameterValue",
        QueueUrl=other,
        Attributes={"RedrivePolicy": policy},
    )


def dead_letters(sqs: Any, src: str, dlq: str, count: int) -> None:
    """Send ``count`` messages to ``src`` (maxReceiveCount 1) and let them reach ``dlq``."""
    sqs.send_message_batch(
        QueueUrl=src, Entries=[{"Id": f"e{i}", "MessageBody": f"m{i}"} for i in range(count)]
    )
    receive_n(sqs, src, count, VisibilityTimeout=1)
    time.sleep(1.2)
    assert receive(sqs, src, MaxNumberOfMessages=10, WaitTimeSeconds=1) == []
    wait_attr(sqs, dlq, "ApproximateNumberOfMessages", str(count))


def wait_task(sqs: Any, source_arn: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        results = sqs.list_message_move_tasks(SourceArn=source_arn)["Results"]
        if results and results[0]["Status"] == status or time.monotonic() > deadline:
            assert results and results[0]["Status"] == status, results
            task: dict[str, Any] = results[0]
            return task
        time.sleep(0.1)


def test_move_task_back_to_the_source_queue(sqs: Any) -> None:
    src, dlq = with_dlq(sqs, "move", 1)
    dead_letters(sqs, src, dlq, 2)
    handle = sqs.start_message_move_task(SourceArn=arn_of(dlq))["TaskHandle"]
    assert handle
    task = wait_task(sqs, arn_of(dlq), "COMPLETED")
    assert task["SourceArn"] == arn_of(dlq)
    assert task["ApproximateNumberOfMessagesMoved"] == 2
    assert task["ApproximateNumberOfMessagesToMove"] == 2
    assert "DestinationArn" not in task
    got = receive_n(sqs, src, 2)
    assert sorted(m["Body"] for m in got) == ["m0", "m1"]
    wait_attr(sqs, dlq, "ApproximateNumberOfMessages", "0")


def test_move_task_to_an_explicit_destination(sqs: Any) -> None:
    src, dlq = with_dlq(sqs, "move-dest", 1)
    dest = new_queue(sqs, "move-target")
    dead_letters(sqs, src, dlq, 2)
    sqs.start_message_move_task(SourceArn=arn_of(dlq), DestinationArn=arn_of(dest))
    task = wait_task(sqs, arn_of(dlq), "COMPLETED")
    assert task["DestinationArn"] == arn_of(dest)
    assert task["ApproximateNumberOfMessagesMoved"] == 2
    assert sorted(m["Body"] for m in receive_n(sqs, dest, 2)) == ["m0", "m1"]


def test_move_task_from_multiple_sources(sqs: Any) -> None:
    dlq = new_queue(sqs, "multi-dlq")
    policy = json.dumps({"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 1})
    a = new_queue(sqs, "multi-a", RedrivePolicy=policy)
    b = new_queue(sqs, "multi-b", RedrivePolicy=policy)
    sqs.send_message(QueueUrl=a, MessageBody="from-a")
    sqs.send_message(QueueUrl=b, MessageBody="from-b")
    receive_n(sqs, a, 1, VisibilityTimeout=1)
    receive_n(sqs, b, 1, VisibilityTimeout=1)
    time.sleep(1.2)
    assert receive(sqs, a, WaitTimeSeconds=1) == [] and receive(sqs, b) == []
    wait_attr(sqs, dlq, "ApproximateNumberOfMessages", "2")
    sqs.start_message_move_task(SourceArn=arn_of(dlq))
    wait_task(sqs, arn_of(dlq), "COMPLETED")
    assert [m["Body"] for m in receive_n(sqs, a, 1)] == ["from-a"]
    assert [m["Body"] for m in receive_n(sqs, b, 1)] == ["from-b"]


def test_cancel_a_running_move_task(sqs: Any) -> None:
    src, dlq = with_dlq(sqs, "cancel", 1)
    dead_letters(sqs, src, dlq, 10)
    handle = sqs.start_message_move_task(SourceArn=arn_of(dlq), MaxNumberOfMessagesPerSecond=1)[
        "TaskHandle"
    ]
    running = wait_task(sqs, arn_of(dlq), "RUNNING")
    assert running["TaskHandle"] == handle
    assert running["MaxNumberOfMessagesPerSecond"] == 1
    expect_error(
        sqs.start_message_move_task,
        "InvalidParameterValue",
        message="There is already a task running. Only one active task is allowed for a source "
        "queue arn at a given time.",
        SourceArn=arn_of(dlq),
    )
    moved = sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert 0 <= moved < 10
    cancelled = wait_task(sqs, arn_of(dlq), "CANCELLED")
    assert cancelled["ApproximateNumberOfMessagesToMove"] == 10


def test_move_task_source_must_be_a_dlq(sqs: Any) -> None:
    plain = new_queue(sqs, "plain")
    expect_error(
        sqs.start_message_move_task,
        "InvalidParameterValue",
        message="Source queue must be configured as a Dead Letter Queue.",
        SourceArn=arn_of(plain),
    )


def test_cancel_with_an_invalid_task_handle(sqs: Any) -> None:
    expect_error(
        sqs.cancel_message_move_task,
        "InvalidParameterValue",
        message="Value for parameter TaskHandle is invalid.",
        TaskHandle="not-a-task-handle",
    )
