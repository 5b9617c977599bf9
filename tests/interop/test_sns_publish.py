"""SNS Publish and PublishBatch with boto3, delivered to SQS queues: the notification envelope
(exact keys and order, Subject, MessageAttributes), raw delivery (attributes become SQS message
attributes, MD5s checked), MessageStructure=json, fan-out to several queues, FIFO topics into
FIFO queues (order per group, deduplication, SequenceNumber), and the validation errors AWS
answers with."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.interop import sns_helpers
from tests.interop.sns_helpers import (
    NOTIFICATION_KEYS,
    bodies,
    drain,
    new_topic,
    notifications,
    subscribe_queue,
    topic_arn,
    topic_name,
)
from tests.interop.sqs_helpers import (
    ACCOUNT,
    expect_error,
    md5_hex,
    md5_of_attributes,
    receive_n,
)

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns

ATTRS = {
    "color": {"DataType": "String", "StringValue": "red"},
    "size": {"DataType": "Number", "StringValue": "42.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01bin"},
    "list": {"DataType": "String.Array", "StringValue": '["a", 1, true]'},
}


def test_envelope_fields_in_order(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "env")
    url, sub = subscribe_queue(sns, sqs, topic, "env-q")
    sent = sns.publish(TopicArn=topic, Message="hello")
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=["All"])
    assert "MessageAttributes" not in msg  # the attributes travel inside the envelope
    assert msg["MD5OfBody"] == md5_hex(msg["Body"])
    env = json.loads(msg["Body"])
    assert list(env) == NOTIFICATION_KEYS
    assert env["Type"] == "Notification"
    assert env["MessageId"] == sent["MessageId"]
    assert env["TopicArn"] == topic
    assert env["Message"] == "hello"
    assert env["SignatureVersion"] == "1"
    assert len(base64.b64decode(env["Signature"])) == 256
    assert env["UnsubscribeURL"].endswith(f"/?Action=Unsubscribe&SubscriptionArn={sub}")
    assert env["Timestamp"][-1] == "Z" and len(env["Timestamp"]) == len("2024-01-01T00:00:00.000Z")


def test_envelope_with_subject_and_attributes(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "env-attrs")
    url, _sub = subscribe_queue(sns, sqs, topic, "env-attrs-q")
    sns.publish(TopicArn=topic, Message="m", Subject="The subject", MessageAttributes=ATTRS)
    (env,) = notifications(receive_n(sqs, url, 1))
    keys = list(env)
    assert keys == [*NOTIFICATION_KEYS[:3], "Subject", *NOTIFICATION_KEYS[3:], "MessageAttributes"]
    assert env["Subject"] == "The subject"
    assert env["MessageAttributes"] == {
        "color": {"Type": "String", "Value": "red"},
        "size": {"Type": "Number", "Value": "42.5"},
        "blob": {"Type": "Binary", "Value": base64.b64encode(b"\x00\x01bin").decode()},
        "list": {"Type": "String.Array", "Value": '["a", 1, true]'},
    }


def test_raw_delivery_carries_the_attributes_as_sqs_attributes(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "raw")
    url, _sub = subscribe_queue(sns, sqs, topic, "raw-q", RawMessageDelivery="true")
    sns.publish(TopicArn=topic, Message="raw body", Subject="ignored", MessageAttributes=ATTRS)
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=["All"])
    assert msg["Body"] == "raw body"
    assert msg["MD5OfBody"] == md5_hex("raw body")
    assert msg["MessageAttributes"] == {
        "color": {"DataType": "String", "StringValue": "red"},
        "size": {"DataType": "Number", "StringValue": "42.5"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01bin"},
        "list": {"DataType": "String.Array", "StringValue": '["a", 1, true]'},
    }
    assert msg["MD5OfMessageAttributes"] == md5_of_attributes(msg["MessageAttributes"])


def test_message_structure_json(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "struct")
    env_url, _ = subscribe_queue(sns, sqs, topic, "struct-env")
    raw_url, _ = subscribe_queue(sns, sqs, topic, "struct-raw", RawMessageDelivery="true")
    message = json.dumps({"default": "for everyone", "sqs": "for sqs", "email": "for email"})
    sns.publish(TopicArn=topic, Message=message, MessageStructure="json")
    (env,) = notifications(receive_n(sqs, env_url, 1))
    assert env["Message"] == "for sqs"
    assert bodies(receive_n(sqs, raw_url, 1)) == ["for sqs"]
    only_default = json.dumps({"default": "plain default"})
    sns.publish(TopicArn=topic, Message=only_default, MessageStructure="json")
    assert bodies(receive_n(sqs, raw_url, 1)) == ["plain default"]
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: Message Structure - No default entry in JSON message body",
        TopicArn=topic,
        Message=json.dumps({"sqs": "x"}),
        MessageStructure="json",
    )
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: Message Structure - JSON message body failed to parse",
        TopicArn=topic,
        Message="not json",
        MessageStructure="json",
    )


def test_fan_out_to_several_queues(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "fan")
    urls = [
        subscribe_queue(sns, sqs, topic, f"fan{i}", RawMessageDelivery="true")[0] for i in range(5)
    ]
    sent = [f"m{i}" for i in range(10)]
    for body in sent:
        sns.publish(TopicArn=topic, Message=body)
    for url in urls:
        assert sorted(bodies(receive_n(sqs, url, 10))) == sorted(sent)


def test_target_arn_publishes_to_the_topic(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "target")
    url, _ = subscribe_queue(sns, sqs, topic, "target-q", RawMessageDelivery="true")
    assert sns.publish(TargetArn=topic, Message="via target")["MessageId"]
    assert bodies(receive_n(sqs, url, 1)) == ["via target"]


def test_publish_without_subscriptions_succeeds(sns: Any) -> None:
    topic = new_topic(sns, "lonely")
    assert len(sns.publish(TopicArn=topic, Message="nobody")["MessageId"]) == 36


def test_publish_errors(sns: Any) -> None:
    topic = new_topic(sns, "errs")
    expect_error(
        sns.publish,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("nowhere")),
        Message="x",
    )
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: TopicArn Reason: An ARN must have at least 6 elements, not 2",
        TopicArn="a:b",
        Message="x",
    )
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: Empty message",
        TopicArn=topic,
        Message="",
    )
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: Message too long",
        TopicArn=topic,
        Message="x" * (262_144 + 1),
    )
    assert sns.publish(TopicArn=topic, Message="x" * 262_144)["MessageId"]
    for subject in ("", "s" * 100, "line\nbreak"):
        expect_error(
            sns.publish,
            "InvalidParameter",
            message="Invalid parameter: Subject",
            TopicArn=topic,
            Message="x",
            Subject=subject,
        )
    assert sns.publish(TopicArn=topic, Message="x", Subject="s" * 99)["MessageId"]
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: MessageDeduplicationId Reason: The request includes "
        "MessageDeduplicationId parameter that is not valid for this topic type",
        TopicArn=topic,
        Message="x",
        MessageDeduplicationId="d",
    )


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"attr1": {"DataType": "String", "StringValue": ""}},
            "The message attribute 'attr1' must contain non-empty message attribute value for "
            "message attribute type 'String'.",
        ),
        (
            {"attr1": {"DataType": "String", "BinaryValue": b"x"}},
            "The message attribute 'attr1' with type 'String' must use field 'String'.",
        ),
        (
            {"attr1": {"DataType": "Number", "BinaryValue": b"x"}},
            "The message attribute 'attr1' with type 'Number' must use field 'String'.",
        ),
        (
            {"attr1": {"DataType": "Binary", "StringValue": "x"}},
            "The message attribute 'attr1' with type 'Binary' must use field 'Binary'.",
        ),
        (
            {"attr1": {"DataType": "Binary", "BinaryValue": b""}},
            "The message attribute 'attr1' must contain non-empty message attribute value for "
            "message attribute type 'Binary'.",
        ),
        (
            {"attr1": {"DataType": "Integer", "StringValue": "1"}},
            "The message attribute 'attr1' has an invalid message attribute type, the set of "
            "supported type prefixes is Binary, Number, and String.",
        ),
        (
            {"a^b": {"DataType": "String", "StringValue": "v"}},
            "Invalid non-alphanumeric character '#x5E' was found in the message attribute name. "
            "Can only include alphanumeric characters, hyphens, underscores, or dots.",
        ),
        (
            {".a": {"DataType": "String", "StringValue": "v"}},
            "Invalid message attribute name starting with character '.' was found.",
        ),
        (
            {"a.": {"DataType": "String", "StringValue": "v"}},
            "Invalid message attribute name ending with character '.' was found.",
        ),
        (
            {"a..b": {"DataType": "String", "StringValue": "v"}},
            "Message attribute name can not have successive '.' character.",
        ),
        (
            {"a" * 256: {"DataType": "String", "StringValue": "v"}},
            "Length of message attribute name must be less than 256 bytes.",
        ),
        (
            {"n": {"DataType": "Number", "StringValue": "abc"}},
            "Could not cast message attribute 'n' value to number.",
        ),
        (
            {"arr": {"DataType": "String.Array", "StringValue": "not an array"}},
            "The message attribute 'arr' with type 'String.Array' must be a JSON array of "
            "strings, numbers, true, false or null.",
        ),
    ],
)
def test_message_attribute_validation(sns: Any, attributes: dict[str, Any], message: str) -> None:
    topic = new_topic(sns, "attrval")
    expect_error(
        sns.publish,
        "ParameterValueInvalid",
        message=message,
        TopicArn=topic,
        Message="x",
        MessageAttributes=attributes,
    )


def test_publish_batch(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "batch")
    url, _ = subscribe_queue(sns, sqs, topic, "batch-q", RawMessageDelivery="true")
    entries = [{"Id": f"e{i}", "Message": f"b{i}"} for i in range(9)]
    entries.append({"Id": "bad", "Message": "x", "Subject": ""})
    out = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
    assert [s["Id"] for s in out["Successful"]] == [f"e{i}" for i in range(9)]
    assert all(len(s["MessageId"]) == 36 for s in out["Successful"])
    assert out["Failed"] == [
        {
            "Id": "bad",
            "Code": "InvalidParameter",
            "Message": "Invalid parameter: Subject",
            "SenderFault": True,
        }
    ]
    assert sorted(bodies(receive_n(sqs, url, 9))) == sorted(f"b{i}" for i in range(9))


def test_publish_batch_errors(sns: Any) -> None:
    topic = new_topic(sns, "batcherr")
    expect_error(
        sns.publish_batch,
        "TooManyEntriesInBatchRequest",
        message="The batch request contains more entries than permissible.",
        TopicArn=topic,
        PublishBatchRequestEntries=[{"Id": f"e{i}", "Message": "x"} for i in range(11)],
    )
    expect_error(
        sns.publish_batch,
        "BatchEntryIdsNotDistinct",
        message="Two or more batch entries in the request have the same Id.",
        TopicArn=topic,
        PublishBatchRequestEntries=[{"Id": "same", "Message": "x"}] * 2,
    )
    expect_error(
        sns.publish_batch,
        "EmptyBatchRequest",
        message="The batch request doesn't contain any entries.",
        TopicArn=topic,
        PublishBatchRequestEntries=[],
    )
    expect_error(
        sns.publish_batch,
        "BatchRequestTooLong",
        message="The length of all the messages put together is more than the limit.",
        TopicArn=topic,
        PublishBatchRequestEntries=[{"Id": f"e{i}", "Message": "x" * 30_000} for i in range(10)],
    )
    expect_error(
        sns.publish_batch,
        "InvalidBatchEntryId",
        message="The Id of a batch entry in the batch request contains an impermissible "
        "character: message.id",
        TopicArn=topic,
        PublishBatchRequestEntries=[{"Id": "message.id", "Message": "x"}],
    )
    expect_error(
        sns.publish_batch,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("nobatch")),
        PublishBatchRequestEntries=[{"Id": "a", "Message": "x"}],
    )


# --- FIFO --------------------------------------------------------------------------------------


def test_fifo_topic_to_fifo_queue_keeps_order_and_deduplicates(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "fifo", fifo=True)
    url, _ = subscribe_queue(sns, sqs, topic, "fifo-q", fifo=True, RawMessageDelivery="true")
    seqs = []
    for i in range(10):
        out = sns.publish(
            TopicArn=topic, Message=f"f{i}", MessageGroupId="g1", MessageDeduplicationId=f"d{i}"
        )
        assert len(out["SequenceNumber"]) == 20
        seqs.append(int(out["SequenceNumber"]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    first = sns.publish(
        TopicArn=topic, Message="dup", MessageGroupId="g1", MessageDeduplicationId="d0"
    )
    assert first["MessageId"]  # accepted, and not delivered again
    got = receive_n(sqs, url, 10, AttributeNames=["All"])
    assert bodies(got) == [f"f{i}" for i in range(10)]
    assert drain(sqs, url, settle_s=0.5) == []


def test_fifo_delivery_shows_group_and_deduplication_id(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "fifo-sys", fifo=True, ContentBasedDeduplication="true")
    url, _ = subscribe_queue(sns, sqs, topic, "fifo-sys-q", fifo=True)
    sns.publish(TopicArn=topic, Message="same", MessageGroupId="g")
    (msg,) = receive_n(sqs, url, 1, AttributeNames=["All"])
    assert msg["Attributes"]["MessageGroupId"] == "g"
    assert msg["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same").hexdigest()


def test_fifo_content_based_deduplication(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "cbd", fifo=True, ContentBasedDeduplication="true")
    url, _ = subscribe_queue(sns, sqs, topic, "cbd-q", fifo=True)
    a = sns.publish(TopicArn=topic, Message="same", MessageGroupId="g")
    b = sns.publish(TopicArn=topic, Message="same", MessageGroupId="g")
    assert a["MessageId"] == b["MessageId"] and a["SequenceNumber"] == b["SequenceNumber"]
    (msg,) = receive_n(sqs, url, 1, AttributeNames=["All"])
    env = json.loads(msg["Body"])
    assert list(env) == [
        "Type",
        "MessageId",
        "SequenceNumber",
        "TopicArn",
        "Message",
        "Timestamp",
        "UnsubscribeURL",
    ]
    assert env["SequenceNumber"] == a["SequenceNumber"]
    assert drain(sqs, url, settle_s=0.5) == []


def test_fifo_publish_errors(sns: Any) -> None:
    topic = new_topic(sns, "fifoerr", fifo=True)
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
        TopicArn=topic,
        Message="x",
        MessageDeduplicationId="d",
    )
    expect_error(
        sns.publish,
        "InvalidParameter",
        message="Invalid parameter: The topic should either have ContentBasedDeduplication "
        "enabled or MessageDeduplicationId provided explicitly",
        TopicArn=topic,
        Message="x",
        MessageGroupId="g",
    )
    out = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {"Id": "a", "Message": "x", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
            {"Id": "b", "Message": "y", "MessageGroupId": "g", "MessageDeduplicationId": "2"},
        ],
    )
    assert [s["Id"] for s in out["Successful"]] == ["a", "b"]
    seq = [int(s["SequenceNumber"]) for s in out["Successful"]]
    assert seq[0] < seq[1]


def test_fifo_groups_are_ordered_independently(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "groups", fifo=True, ContentBasedDeduplication="true")
    url, _ = subscribe_queue(sns, sqs, topic, "groups-q", fifo=True, RawMessageDelivery="true")
    for i in range(6):
        sns.publish(TopicArn=topic, Message=f"{'ab'[i % 2]}{i}", MessageGroupId="ab"[i % 2])
    got = drain(sqs, url)
    assert [b for b in bodies(got) if b[0] == "a"] == ["a0", "a2", "a4"]
    assert [b for b in bodies(got) if b[0] == "b"] == ["b1", "b3", "b5"]


def test_standard_topic_message_id_format(sns: Any) -> None:
    topic = new_topic(sns, "ids")
    out = sns.publish(TopicArn=topic, Message="x")
    assert set(out) == {"MessageId", "ResponseMetadata"}
    assert topic.split(":")[4] == ACCOUNT
