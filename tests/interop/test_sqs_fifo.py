"""SQS FIFO queues with boto3: MessageGroupId rules, order per group, a group held while one
of its messages is in flight, deduplication (explicit ids and content-based, for 5 minutes,
also after the first copy was deleted), SequenceNumber, high-throughput attributes and
deduplication per message group, and DelaySeconds per message refused.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    expect_error,
    new_queue,
    queue_attrs,
    receive,
    receive_n,
)

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures


def fifo(sqs: Any, prefix: str, **attributes: str) -> str:
    return new_queue(sqs, prefix, fifo=True, **attributes)


def send(sqs: Any, url: str, body: str, group: str = "g", dedup: str | None = None) -> Any:
    kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body, "MessageGroupId": group}
    kwargs["MessageDeduplicationId"] = dedup or body
    return sqs.send_message(**kwargs)


def test_message_group_id_is_required(sqs: Any) -> None:
    url = fifo(sqs, "nogroup")
    expect_error(
        sqs.send_message,
        "MissingParameter",
        message="The request must contain the parameter MessageGroupId.",
        QueueUrl=url,
        MessageBody="x",
        MessageDeduplicationId="d",
    )


def test_deduplication_id_or_content_based_deduplication_is_required(sqs: Any) -> None:
    url = fifo(sqs, "nodedup")
    expect_error(
        sqs.send_message,
        "InvalidParameterValue",
        message="The queue should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly",
        QueueUrl=url,
        MessageBody="x",
        MessageGroupId="g",
    )


def test_delay_seconds_per_message_is_refused(sqs: Any) -> None:
    url = fifo(sqs, "delay")
    expect_error(
        sqs.send_message,
        "InvalidParameterValue",
        message="Value 2 for parameter DelaySeconds is invalid. Reason: The request include "
        "parameter that is not valid for this queue type.",
        QueueUrl=url,
        MessageBody="x",
        MessageGroupId="g",
        MessageDeduplicationId="d",
        DelaySeconds=2,
    )


def test_order_within_a_group_and_sequence_numbers(sqs: Any) -> None:
    url = fifo(sqs, "order")
    sent = [send(sqs, url, f"m{i}") for i in range(5)]
    sequence = [int(s["SequenceNumber"]) for s in sent]
    assert sequence == sorted(sequence) and len(set(sequence)) == 5
    got = []
    while len(got) < 5:
        batch = receive(sqs, url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
        assert batch, "FIFO messages did not come"
        got += batch
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert [m["Body"] for m in got] == [f"m{i}" for i in range(5)]
    assert [m["Attributes"]["SequenceNumber"] for m in got] == [s["SequenceNumber"] for s in sent]
    first = got[0]["Attributes"]
    assert first["MessageGroupId"] == "g"
    assert first["MessageDeduplicationId"] == "m0"
    assert first["ApproximateReceiveCount"] == "1"


def test_fifo_system_attributes_selected_one_by_one(sqs: Any) -> None:
    url = fifo(sqs, "sysattrs", VisibilityTimeout="0")
    sent = send(sqs, url, "x", group="grp-1", dedup="dd-1")
    for name, value in [
        ("MessageGroupId", "grp-1"),
        ("MessageDeduplicationId", "dd-1"),
        ("SequenceNumber", sent["SequenceNumber"]),
    ]:
        (msg,) = receive_n(sqs, url, 1, MessageSystemAttributeNames=[name])
        assert msg["Attributes"] == {name: value}


def test_a_group_is_held_while_a_message_is_in_flight(sqs: Any) -> None:
    url = fifo(sqs, "held")
    send(sqs, url, "a1", group="A")
    send(sqs, url, "a2", group="A")
    send(sqs, url, "b1", group="B")
    (first,) = receive(sqs, url, VisibilityTimeout=30)
    assert first["Body"] == "a1"
    # a2 waits behind a1 in flight; another receive gets group B only
    other = receive(sqs, url, MaxNumberOfMessages=10, VisibilityTimeout=30)
    assert [m["Body"] for m in other] == ["b1"]
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # releases group A
    (nxt,) = receive(sqs, url, MaxNumberOfMessages=10)
    assert nxt["Body"] == "a2"


def test_a_group_is_released_when_visibility_expires(sqs: Any) -> None:
    url = fifo(sqs, "expire")
    send(sqs, url, "a1", group="A")
    send(sqs, url, "a2", group="A")
    (first,) = receive(sqs, url, VisibilityTimeout=1)
    assert first["Body"] == "a1"
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    time.sleep(1.3)
    got = receive(sqs, url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    assert [m["Body"] for m in got] == ["a1", "a2"]  # a1 again first, order kept
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_duplicate_id_is_dropped_and_answered_with_the_original_message_id(sqs: Any) -> None:
    url = fifo(sqs, "dedup")
    first = send(sqs, url, "one", dedup="same")
    again = send(sqs, url, "two", dedup="same")
    assert again["MessageId"] == first["MessageId"]
    assert again["MD5OfMessageBody"] == sqs_helpers.md5_hex("two")
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == "one"
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    assert queue_attrs(sqs, url)["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_duplicate_is_dropped_even_after_the_first_copy_was_deleted(sqs: Any) -> None:
    """The deduplication interval is 5 minutes from the send, whatever happened to the first
    copy since: deleting it does not let a duplicate in."""
    url = fifo(sqs, "dedup-deleted")
    first = send(sqs, url, "one", dedup="kept")
    (msg,) = receive_n(sqs, url, 1)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    again = send(sqs, url, "one", dedup="kept")
    assert again["MessageId"] == first["MessageId"]
    assert receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=1) == []
    assert queue_attrs(sqs, url)["ApproximateNumberOfMessages"] == "0"


def test_content_based_deduplication(sqs: Any) -> None:
    url = fifo(sqs, "cbd", ContentBasedDeduplication="true")
    a = sqs.send_message(QueueUrl=url, MessageBody="same body", MessageGroupId="g")
    b = sqs.send_message(QueueUrl=url, MessageBody="same body", MessageGroupId="g")
    c = sqs.send_message(QueueUrl=url, MessageBody="other body", MessageGroupId="g")
    assert b["MessageId"] == a["MessageId"]
    assert c["MessageId"] != a["MessageId"]
    got = receive_n(sqs, url, 1, MessageSystemAttributeNames=["MessageDeduplicationId"])
    # the generated id is the SHA-256 of the body
    assert (
        got[0]["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same body").hexdigest()
    )
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == "other body"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    # still a duplicate after the first copy was deleted
    d = sqs.send_message(QueueUrl=url, MessageBody="same body", MessageGroupId="g")
    assert d["MessageId"] == a["MessageId"]
    assert receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=1) == []


def test_explicit_id_overrides_content_based_deduplication(sqs: Any) -> None:
    url = fifo(sqs, "cbd-override", ContentBasedDeduplication="true")
    sqs.send_message(QueueUrl=url, MessageBody="body", MessageGroupId="g")
    sqs.send_message(
        QueueUrl=url, MessageBody="body", MessageGroupId="g", MessageDeduplicationId="explicit"
    )
    got = receive_n(sqs, url, 2, timeout=5)
    assert [m["Body"] for m in got] == ["body", "body"]


def test_high_throughput_attributes_and_dedup_per_group(sqs: Any) -> None:
    url = fifo(
        sqs, "ht", DeduplicationScope="messageGroup", FifoThroughputLimit="perMessageGroupId"
    )
    attrs = queue_attrs(sqs, url, "DeduplicationScope", "FifoThroughputLimit")
    assert attrs == {
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    a = send(sqs, url, "in A", group="A", dedup="same")
    b = send(sqs, url, "in B", group="B", dedup="same")  # another group: not a duplicate
    a2 = send(sqs, url, "in A again", group="A", dedup="same")  # a duplicate within A
    assert b["MessageId"] != a["MessageId"]
    assert a2["MessageId"] == a["MessageId"]
    got = receive_n(sqs, url, 2, timeout=5)
    assert sorted(m["Body"] for m in got) == ["in A", "in B"]


def test_queue_scope_deduplicates_across_groups(sqs: Any) -> None:
    url = fifo(sqs, "scope-queue")
    a = send(sqs, url, "in A", group="A", dedup="same")
    b = send(sqs, url, "in B", group="B", dedup="same")
    assert b["MessageId"] == a["MessageId"]
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == "in A"


def test_batch_send_to_fifo(sqs: Any) -> None:
    url = fifo(sqs, "batch")
    reply = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": f"e{i}",
                "MessageBody": f"m{i}",
                "MessageGroupId": "g",
                "MessageDeduplicationId": f"d{i}",
            }
            for i in range(3)
        ],
    )
    assert reply.get("Failed", []) == []
    ok = {e["Id"]: e for e in reply["Successful"]}
    seq = [int(ok[f"e{i}"]["SequenceNumber"]) for i in range(3)]
    assert seq == sorted(seq) and len(set(seq)) == 3
    got = receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["Body"] for m in got] == ["m0", "m1", "m2"]


def test_batch_entry_without_group_fails_the_whole_batch(sqs: Any) -> None:
    """As AWS answers: the request fails (InvalidParameterValue), not just the entry."""
    url = fifo(sqs, "batch-nogroup")
    expect_error(
        sqs.send_message_batch,
        "InvalidParameterValue",
        message="The request must contain the parameter MessageGroupId.",
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
            {"Id": "b", "MessageBody": "y", "MessageDeduplicationId": "2"},
        ],
    )
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
