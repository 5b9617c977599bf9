"""SQS messages with boto3 on standard queues: SendMessage (MD5s, message attributes of every
type, AWSTraceHeader, DelaySeconds, body rules and size), SendMessageBatch and its errors,
ReceiveMessage (count, long polling, visibility, system and message attribute selection),
DeleteMessage(Batch), ChangeMessageVisibility(Batch).

MD5s are checked twice: botocore checks MD5OfMessageBody and MD5OfMessageAttributes itself and
raises on a mismatch; the tests compare them with ``md5_hex`` / ``md5_of_attributes`` as well,
an independent implementation of the documented encoding. Tests about time use visibility
timeouts and delays of 1-2 s and sleep only for those.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    Later,
    expect_error,
    expect_shape_error,
    make_client,
    md5_hex,
    md5_of_attributes,
    new_queue,
    queue_attrs,
    receive,
    receive_n,
    wait_attr,
)
from tests.polymq_process import SqsBroker

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures

ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "héllo wörld"},
    "count": {"DataType": "Number", "StringValue": "42.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "custom": {"DataType": "String.foo", "StringValue": "custom type"},
    "custom.num": {"DataType": "Number.int", "StringValue": "-7"},
    "custom.bin": {"DataType": "Binary.gz", "BinaryValue": b"\x1f\x8b"},
}


def test_md5_of_attributes_matches_aws_vector() -> None:
    """The helper against a digest AWS returned for {"Foo": String "Bar"}."""
    attrs = {"Foo": {"DataType": "String", "StringValue": "Bar"}}
    assert md5_of_attributes(attrs) == "ae7155c6026991b6d54b11589678bf9c"


# --- SendMessage -----------------------------------------------------------------------------


def test_send_and_receive_body_and_md5(sqs: Any) -> None:
    url = new_queue(sqs, "send")
    body = "hello, polymq ✓"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5_hex(body)
    assert "MD5OfMessageAttributes" not in sent
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == body
    assert msg["MD5OfBody"] == md5_hex(body)
    assert msg["MessageId"] == sent["MessageId"]
    assert msg["ReceiptHandle"]
    assert "MessageAttributes" not in msg
    assert "MD5OfMessageAttributes" not in msg


def test_message_attributes_of_every_type(sqs: Any) -> None:
    url = new_queue(sqs, "attrs")
    sent = sqs.send_message(
        QueueUrl=url, MessageBody="with attributes", MessageAttributes=ATTRIBUTES
    )
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(ATTRIBUTES)
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=["All"])
    assert msg["MessageAttributes"] == ATTRIBUTES
    assert msg["MD5OfMessageAttributes"] == md5_of_attributes(ATTRIBUTES)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (["All"], {"foo.a", "foo.b", "bar"}),
        ([".*"], {"foo.a", "foo.b", "bar"}),
        (["foo.*"], {"foo.a", "foo.b"}),
        (["bar"], {"bar"}),
        (["foo.a", "bar"], {"foo.a", "bar"}),
        (["absent"], set()),
    ],
)
def test_message_attribute_names_select(sqs: Any, selection: list[str], expected: set[str]) -> None:
    url = new_queue(sqs, "select")
    attrs = {n: {"DataType": "String", "StringValue": n} for n in ("foo.a", "foo.b", "bar")}
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attrs)
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=selection)
    got = msg.get("MessageAttributes", {})
    assert set(got) == expected
    if expected:  # the digest covers the attributes returned
        assert msg["MD5OfMessageAttributes"] == md5_of_attributes(got)
    else:
        assert "MD5OfMessageAttributes" not in msg


def test_aws_trace_header_system_attribute(sqs: Any) -> None:
    url = new_queue(sqs, "trace")
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    system = {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="traced", MessageSystemAttributes=system)
    assert sent["MD5OfMessageSystemAttributes"] == md5_of_attributes(system)
    (msg,) = receive_n(sqs, url, 1, MessageSystemAttributeNames=["AWSTraceHeader"])
    assert msg["Attributes"] == {"AWSTraceHeader": trace}


def test_system_attributes_all_and_each(sqs: Any) -> None:
    url = new_queue(sqs, "sysattrs", VisibilityTimeout="0")
    before_ms = int(time.time() * 1000)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    (msg,) = receive_n(sqs, url, 1, MessageSystemAttributeNames=["All"])
    attrs = msg["Attributes"]
    assert set(attrs) == {
        "ApproximateFirstReceiveTimestamp",
        "ApproximateReceiveCount",
        "SenderId",
        "SentTimestamp",
    }
    assert attrs["ApproximateReceiveCount"] == "1"
    now_ms = int(time.time() * 1000)
    assert before_ms - 5000 <= int(attrs["SentTimestamp"]) <= now_ms + 5000
    assert int(attrs["SentTimestamp"]) <= int(attrs["ApproximateFirstReceiveTimestamp"]) + 1000
    assert attrs["SenderId"]
    for name in ("ApproximateReceiveCount", "SentTimestamp", "SenderId"):
        (msg,) = receive_n(sqs, url, 1, MessageSystemAttributeNames=[name])
        assert set(msg["Attributes"]) == {name}
    # the deprecated AttributeNames parameter selects the same
    (msg,) = receive_n(sqs, url, 1, AttributeNames=["ApproximateReceiveCount"])
    assert msg["Attributes"] == {"ApproximateReceiveCount": "5"}
    (msg,) = receive_n(sqs, url, 1)
    assert "Attributes" not in msg


def test_delay_seconds_hides_a_message_until_due(sqs: Any) -> None:
    url = new_queue(sqs, "delay")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    attrs = queue_attrs(sqs, url)
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesDelayed"]) == (
        "1",
        "1",
    )
    (now,) = receive_n(sqs, url, 1)
    assert now["Body"] == "now"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=now["ReceiptHandle"])
    assert receive(sqs, url) == []
    start = time.monotonic()
    (later,) = receive_n(sqs, url, 1, timeout=10)
    assert later["Body"] == "later"
    assert time.monotonic() - start < 4
    wait_attr(sqs, url, "ApproximateNumberOfMessagesDelayed", "0")


def test_queue_delay_seconds_applies_to_every_message(sqs: Any) -> None:
    url = new_queue(sqs, "qdelay", DelaySeconds="1")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert receive(sqs, url) == []
    assert queue_attrs(sqs, url)["ApproximateNumberOfMessagesDelayed"] == "1"
    (msg,) = receive_n(sqs, url, 1, timeout=5)
    assert msg["Body"] == "x"


@pytest.mark.parametrize("bad", [-1, 901])
def test_delay_seconds_out_of_range(sqs: Any, bad: int) -> None:
    url = new_queue(sqs, "baddelay")
    expect_error(
        sqs.send_message, "InvalidParameterValue", QueueUrl=url, MessageBody="x", DelaySeconds=bad
    )


@pytest.mark.parametrize(
    "body", ["\x00", "a\x08b", "\ufffe", "\x1f"], ids=["nul", "backspace", "fffe", "us"]
)
def test_body_with_characters_outside_the_allowed_set(sqs: Any, body: str) -> None:
    """Allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF."""
    url = new_queue(sqs, "badchars")
    expect_shape_error(sqs.send_message, "InvalidMessageContents", QueueUrl=url, MessageBody=body)


def test_allowed_edge_characters(sqs: Any) -> None:
    url = new_queue(sqs, "edgechars")
    body = "\t\n\r \ud7ff\ue000\ufffd\U00010000\U0010ffff"
    sqs.send_message(QueueUrl=url, MessageBody=body)
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == body


def test_empty_body_is_missing(sqs: Any) -> None:
    url = new_queue(sqs, "empty")
    expect_error(
        sqs.send_message,
        "MissingParameter",
        message="The request must contain the parameter MessageBody.",
        QueueUrl=url,
        MessageBody="",
    )


def test_message_size_limit(sqs: Any) -> None:
    """MaximumMessageSize counts body and attributes; the default is 1 MiB (256 KiB before
    2025); a message of exactly the limit is accepted."""
    url = new_queue(sqs, "size", MaximumMessageSize="1024")
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)
    expect_error(
        sqs.send_message,
        "InvalidParameterValue",
        message="One or more parameters are invalid. Reason: Message must be shorter than "
        "1024 bytes.",
        QueueUrl=url,
        MessageBody="x" * 1025,
    )
    default = new_queue(sqs, "size-default")
    sqs.send_message(QueueUrl=default, MessageBody="y" * 1048576)
    expect_error(
        sqs.send_message,
        "InvalidParameterValue",
        message="One or more parameters are invalid. Reason: Message must be shorter than "
        "1048576 bytes.",
        QueueUrl=default,
        MessageBody="y" * 1048577,
    )


def test_empty_string_attribute_is_rejected(sqs: Any) -> None:
    url = new_queue(sqs, "emptyattr")
    expect_error(
        sqs.send_message,
        "InvalidParameterValue",
        message="Message (user) attribute 'ErrorDetails' must contain a non-empty value of type "
        "'String'.",
        QueueUrl=url,
        MessageBody="x",
        MessageAttributes={"ErrorDetails": {"DataType": "String", "StringValue": ""}},
    )


# --- SendMessageBatch ------------------------------------------------------------------------


def test_send_message_batch(sqs: Any) -> None:
    url = new_queue(sqs, "batch")
    entries = [
        {"Id": f"e{i}", "MessageBody": f"body-{i}", "MessageAttributes": {"i": ATTRIBUTES["count"]}}
        for i in range(10)
    ]
    reply = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert reply.get("Failed", []) == []
    ok = {e["Id"]: e for e in reply["Successful"]}
    assert set(ok) == {f"e{i}" for i in range(10)}
    for i in range(10):
        assert ok[f"e{i}"]["MD5OfMessageBody"] == md5_hex(f"body-{i}")
        assert ok[f"e{i}"]["MD5OfMessageAttributes"] == md5_of_attributes(
            {"i": ATTRIBUTES["count"]}
        )
    got = receive_n(sqs, url, 10, MessageAttributeNames=["All"])
    assert sorted(m["Body"] for m in got) == sorted(f"body-{i}" for i in range(10))
    assert {m["MessageId"] for m in got} == {e["MessageId"] for e in ok.values()}


def test_send_message_batch_partial_failure(sqs: Any) -> None:
    url = new_queue(sqs, "partial")
    reply = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "good", "MessageBody": "fine"},
            {"Id": "bad", "MessageBody": "\x00"},
            {"Id": "late", "MessageBody": "delayed", "DelaySeconds": 1000},
        ],
    )
    assert [e["Id"] for e in reply["Successful"]] == ["good"]
    failed = {e["Id"]: e for e in reply["Failed"]}
    assert set(failed) == {"bad", "late"}
    assert failed["bad"]["Code"] == "InvalidMessageContents"
    assert failed["bad"]["SenderFault"] is True
    assert failed["late"]["Code"] == "InvalidParameterValue"
    assert failed["late"]["SenderFault"] is True
    (msg,) = receive_n(sqs, url, 1)
    assert msg["Body"] == "fine"


def test_send_message_batch_errors(sqs: Any) -> None:
    url = new_queue(sqs, "batcherr")
    expect_shape_error(
        sqs.send_message_batch,
        "BatchEntryIdsNotDistinct",
        QueueUrl=url,
        Entries=[{"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}],
    )
    expect_shape_error(
        sqs.send_message_batch,
        "TooManyEntriesInBatchRequest",
        message="Maximum number of entries per request are 10. You have sent 11.",
        QueueUrl=url,
        Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)],
    )
    expect_shape_error(sqs.send_message_batch, "EmptyBatchRequest", QueueUrl=url, Entries=[])
    expect_shape_error(
        sqs.send_message_batch,
        "InvalidBatchEntryId",
        message="A batch entry id can only contain alphanumeric characters, hyphens and "
        "underscores. It can be at most 80 letters long.",
        QueueUrl=url,
        Entries=[{"Id": "not valid!", "MessageBody": "x"}],
    )
    expect_shape_error(
        sqs.send_message_batch,
        "BatchRequestTooLong",
        message="Batch requests cannot be longer than 1048576 bytes. You have sent 1048580 bytes.",
        QueueUrl=url,
        Entries=[{"Id": f"e{i}", "MessageBody": "x" * 262145} for i in range(4)],
    )
    assert receive(sqs, url) == []


# --- ReceiveMessage --------------------------------------------------------------------------


def test_max_number_of_messages(sqs: Any) -> None:
    url = new_queue(sqs, "maxn")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": str(i)} for i in range(10)]
    )
    wait_attr(sqs, url, "ApproximateNumberOfMessages", "10")
    assert len(receive(sqs, url)) == 1  # the default is 1
    got = receive_n(sqs, url, 9)
    assert len(got) == 9


@pytest.mark.parametrize("bad", [0, 11, -1])
def test_max_number_of_messages_out_of_range(sqs: Any, bad: int) -> None:
    url = new_queue(sqs, "maxbad")
    expect_error(
        sqs.receive_message,
        "InvalidParameterValue",
        message=f"Value {bad} for parameter MaxNumberOfMessages is invalid. Reason: Must be "
        "between 1 and 10, if provided.",
        QueueUrl=url,
        MaxNumberOfMessages=bad,
    )


@pytest.mark.parametrize("bad", [-1, 21])
def test_wait_time_seconds_out_of_range(sqs: Any, bad: int) -> None:
    url = new_queue(sqs, "waitbad")
    expect_error(
        sqs.receive_message,
        "InvalidParameterValue",
        message=f"Value {bad} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 "
        "and <= 20, if provided.",
        QueueUrl=url,
        WaitTimeSeconds=bad,
    )


def test_long_poll_is_woken_by_a_send(sqs: Any, sqs_broker: SqsBroker) -> None:
    url = new_queue(sqs, "longpoll")
    sender = make_client(sqs_broker.http_url)
    later = Later(1.0, lambda: sender.send_message(QueueUrl=url, MessageBody="wake"))
    later.start()
    start = time.monotonic()
    got = receive(sqs, url, WaitTimeSeconds=10)
    returned = time.monotonic()
    later.join_checked()
    assert [m["Body"] for m in got] == ["wake"]
    assert returned - start < 5, returned - start  # woken, not timed out
    assert returned - later.sent_at < 2


def test_long_poll_returns_empty_after_the_wait(sqs: Any) -> None:
    url = new_queue(sqs, "longempty")
    start = time.monotonic()
    reply = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
    elapsed = time.monotonic() - start
    assert "Messages" not in reply or reply["Messages"] == []
    assert 1.8 <= elapsed < 6, elapsed


def test_queue_receive_wait_time_is_the_default_wait(sqs: Any) -> None:
    url = new_queue(sqs, "qwait", ReceiveMessageWaitTimeSeconds="2")
    start = time.monotonic()
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    assert 1.8 <= time.monotonic() - start < 6


def test_concurrent_long_polls_each_get_a_message(sqs: Any, sqs_broker: SqsBroker) -> None:
    url = new_queue(sqs, "pollers")
    results: list[list[dict[str, Any]]] = [[], []]

    def poll(i: int) -> None:
        results[i] = receive(make_client(sqs_broker.http_url), url, WaitTimeSeconds=10)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both polls are waiting (about time: not a readiness wait)
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}]
    )
    for t in threads:
        t.join(20)
    bodies = sorted(m["Body"] for r in results for m in r)
    left = receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert sorted(bodies + [m["Body"] for m in left]) == ["a", "b"]
    assert bodies, "no long poll was woken"


# --- visibility ------------------------------------------------------------------------------


def test_visibility_timeout_expiry_redelivers(sqs: Any) -> None:
    url = new_queue(sqs, "vis")
    sqs.send_message(QueueUrl=url, MessageBody="again")
    (first,) = receive_n(sqs, url, 1, VisibilityTimeout=1, MessageSystemAttributeNames=["All"])
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    attrs = queue_attrs(sqs, url)
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "1",
    )
    assert receive(sqs, url) == []
    time.sleep(1.2)
    (second,) = receive_n(sqs, url, 1, MessageSystemAttributeNames=["All"])
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert (
        second["Attributes"]["ApproximateFirstReceiveTimestamp"]
        == first["Attributes"]["ApproximateFirstReceiveTimestamp"]
    )


def test_queue_visibility_timeout_is_the_default(sqs: Any) -> None:
    url = new_queue(sqs, "qvis", VisibilityTimeout="1")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    receive_n(sqs, url, 1)
    assert receive(sqs, url) == []
    time.sleep(1.2)
    assert [m["Body"] for m in receive_n(sqs, url, 1)] == ["x"]


def test_change_message_visibility(sqs: Any) -> None:
    url = new_queue(sqs, "cmv")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    (msg,) = receive_n(sqs, url, 1, VisibilityTimeout=30)
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0
    )
    (again,) = receive_n(sqs, url, 1, VisibilityTimeout=1)  # visible at once
    assert again["MessageId"] == msg["MessageId"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=30
    )  # extended
    time.sleep(1.5)
    assert receive(sqs, url) == []


def test_change_visibility_of_a_message_not_in_flight(sqs: Any) -> None:
    url = new_queue(sqs, "notinflight")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    (msg,) = receive_n(sqs, url, 1, VisibilityTimeout=1)
    time.sleep(1.5)  # back in the queue, not in flight
    expect_shape_error(
        sqs.change_message_visibility,
        "MessageNotInflight",
        QueueUrl=url,
        ReceiptHandle=msg["ReceiptHandle"],
        VisibilityTimeout=10,
    )


def test_change_message_visibility_batch(sqs: Any) -> None:
    url = new_queue(sqs, "cmvb")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": str(i)} for i in range(3)]
    )
    got = receive_n(sqs, url, 3, VisibilityTimeout=30)
    reply = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": f"c{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(got[:2])
        ]
        + [{"Id": "bogus", "ReceiptHandle": "not-a-receipt-handle", "VisibilityTimeout": 0}],
    )
    assert sorted(e["Id"] for e in reply["Successful"]) == ["c0", "c1"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in reply["Failed"]] == [
        ("bogus", "ReceiptHandleIsInvalid", True)
    ]
    again = receive_n(sqs, url, 2)
    assert sorted(m["Body"] for m in again) == sorted(m["Body"] for m in got[:2])


# --- delete ----------------------------------------------------------------------------------


def test_delete_message(sqs: Any) -> None:
    url = new_queue(sqs, "delete")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    (msg,) = receive_n(sqs, url, 1, VisibilityTimeout=1)
    reply = sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    wait_attr(sqs, url, "ApproximateNumberOfMessagesNotVisible", "0")
    time.sleep(1.2)
    assert receive(sqs, url) == []
    assert queue_attrs(sqs, url)["ApproximateNumberOfMessages"] == "0"


def test_delete_with_an_invalid_receipt_handle(sqs: Any) -> None:
    url = new_queue(sqs, "badhandle")
    expect_shape_error(
        sqs.delete_message,
        "ReceiptHandleIsInvalid",
        message='The input receipt handle "garbage" is not a valid receipt handle.',
        QueueUrl=url,
        ReceiptHandle="garbage",
    )


def test_delete_message_batch(sqs: Any) -> None:
    url = new_queue(sqs, "delbatch")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": str(i)} for i in range(4)]
    )
    got = receive_n(sqs, url, 4, VisibilityTimeout=1)
    reply = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        + [{"Id": "bogus", "ReceiptHandle": "garbage"}],
    )
    assert sorted(e["Id"] for e in reply["Successful"]) == ["d0", "d1", "d2", "d3"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in reply["Failed"]] == [
        ("bogus", "ReceiptHandleIsInvalid", True)
    ]
    time.sleep(1.2)
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    expect_shape_error(sqs.delete_message_batch, "EmptyBatchRequest", QueueUrl=url, Entries=[])


def test_approximate_counts_follow_sends_receives_and_delays(sqs: Any) -> None:
    url = new_queue(sqs, "counts")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": str(i)} for i in range(3)]
    )
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=30)
    receive_n(sqs, url, 1, VisibilityTimeout=30)
    attrs = queue_attrs(sqs, url)
    assert {
        k: attrs[k]
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    } == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessagesDelayed": "1",
    }
