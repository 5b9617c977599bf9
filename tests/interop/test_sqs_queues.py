"""SQS queues with boto3: CreateQueue (attributes, tags, idempotence, name rules), GetQueueUrl,
ListQueues (prefix, pagination), DeleteQueue, PurgeQueue, Get/SetQueueAttributes for every
documented attribute and its limits, tags, and AddPermission / RemovePermission.

Expected values are AWS's: the API reference in botocore's model (limits, defaults) and replies
recorded from AWS (error codes and messages). Where a reference emulator answers differently
the test says so in a comment; the test keeps AWS's answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    ACCOUNT,
    NON_EXISTENT_QUEUE_MESSAGE,
    arn_of,
    expect_error,
    expect_shape_error,
    name_of,
    new_queue,
    queue_attrs,
    queue_name,
    receive,
    wait_attr,
)
from tests.polymq_process import SqsBroker

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures

STANDARD_DEFAULTS = {
    "ApproximateNumberOfMessages": "0",
    "ApproximateNumberOfMessagesDelayed": "0",
    "ApproximateNumberOfMessagesNotVisible": "0",
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",  # 1 MiB since 2025 (256 KiB before)
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "SqsManagedSseEnabled": "true",  # SSE-SQS is on by default for new queues
    "VisibilityTimeout": "30",
}
FIFO_DEFAULTS = STANDARD_DEFAULTS | {
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoQueue": "true",
    "FifoThroughputLimit": "perQueue",
}
NAME_RULE = "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"


def check_timestamp(value: str) -> None:
    """CreatedTimestamp / LastModifiedTimestamp: whole epoch seconds, about now."""
    assert value.isdigit(), value
    assert abs(int(value) - time.time()) < 60, value


# --- CreateQueue -----------------------------------------------------------------------------


def test_create_queue_url_and_default_attributes(sqs: Any, sqs_broker: SqsBroker) -> None:
    name = queue_name("defaults")
    reply = sqs.create_queue(QueueName=name)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    url = reply["QueueUrl"]
    assert url == f"{sqs_broker.http_url}/{ACCOUNT}/{name}"
    attrs = queue_attrs(sqs, url)
    assert set(attrs) == set(STANDARD_DEFAULTS) | {
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "QueueArn",
    }
    assert {k: attrs[k] for k in STANDARD_DEFAULTS} == STANDARD_DEFAULTS
    assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
    check_timestamp(attrs["CreatedTimestamp"])
    check_timestamp(attrs["LastModifiedTimestamp"])
    assert int(attrs["LastModifiedTimestamp"]) >= int(attrs["CreatedTimestamp"])


def test_create_fifo_queue_default_attributes(sqs: Any) -> None:
    url = new_queue(sqs, "fifo-defaults", fifo=True)
    attrs = queue_attrs(sqs, url)
    assert {k: attrs.get(k) for k in FIFO_DEFAULTS} == FIFO_DEFAULTS
    assert attrs["QueueArn"] == arn_of(url)


def test_create_queue_with_attributes_and_tags(sqs: Any) -> None:
    attributes = {
        "DelaySeconds": "5",
        "MaximumMessageSize": "2048",
        "MessageRetentionPeriod": "120",
        "ReceiveMessageWaitTimeSeconds": "2",
        "VisibilityTimeout": "7",
    }
    tags = {"team": "core", "env": "test"}
    url = sqs.create_queue(QueueName=queue_name("attrs"), Attributes=attributes, tags=tags)[
        "QueueUrl"
    ]
    attrs = queue_attrs(sqs, url)
    assert {k: attrs[k] for k in attributes} == attributes
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == tags


def test_create_queue_again_with_same_attributes_returns_same_url(sqs: Any) -> None:
    name = queue_name("idem")
    attributes = {"VisibilityTimeout": "12", "DelaySeconds": "3"}
    first = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    again = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    assert again == first
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == first


def test_create_queue_again_with_different_attributes_fails(sqs: Any) -> None:
    name = queue_name("exists")
    sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "1"})
    expect_shape_error(
        sqs.create_queue,
        "QueueNameExists",
        message="A queue already exists with the same name and a different value for attribute "
        "DelaySeconds",
        QueueName=name,
        Attributes={"DelaySeconds": "2"},
    )


def test_queue_name_of_80_characters_is_accepted(sqs: Any) -> None:
    name = (queue_name("len80") + "_" * 80)[:80]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert name_of(url) == name


@pytest.mark.parametrize(
    "bad",
    ["x" * 81, "has.dot", "has space", "has/slash", "ümlaut", ""],
    ids=["81-chars", "dot", "space", "slash", "non-ascii", "empty"],
)
def test_invalid_queue_names_are_rejected(sqs: Any, bad: str) -> None:
    expect_error(sqs.create_queue, "InvalidParameterValue", message=NAME_RULE, QueueName=bad)


def test_fifo_suffix_needs_fifo_queue_attribute(sqs: Any) -> None:
    """A ``.fifo`` name is a FIFO queue's only: a standard queue may not have it, and a FIFO
    queue must have it."""
    expect_error(sqs.create_queue, "InvalidParameterValue", QueueName=queue_name("std", True))
    expect_error(
        sqs.create_queue,
        "InvalidParameterValue",
        QueueName=queue_name("fifo-no-suffix"),
        Attributes={"FifoQueue": "true"},
    )


def test_fifo_only_attributes_on_standard_queue_are_rejected(sqs: Any) -> None:
    expect_error(
        sqs.create_queue,
        "InvalidAttributeName",
        message="Unknown Attribute ContentBasedDeduplication.",
        QueueName=queue_name("std-cbd"),
        Attributes={"ContentBasedDeduplication": "true"},
    )


# --- GetQueueUrl, ListQueues, DeleteQueue ----------------------------------------------------


def test_get_queue_url(sqs: Any) -> None:
    url = new_queue(sqs, "geturl")
    assert sqs.get_queue_url(QueueName=name_of(url))["QueueUrl"] == url


def test_get_queue_url_of_missing_queue(sqs: Any) -> None:
    expect_shape_error(
        sqs.get_queue_url,
        "QueueDoesNotExist",
        message=NON_EXISTENT_QUEUE_MESSAGE,
        QueueName=queue_name("missing"),
    )


def test_list_queues_by_prefix(sqs: Any) -> None:
    prefix = queue_name("lst")
    urls = {sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3)}
    new_queue(sqs, "other")
    listed = sqs.list_queues(QueueNamePrefix=prefix)
    assert set(listed["QueueUrls"]) == urls
    assert len(listed["QueueUrls"]) == 3
    assert "NextToken" not in listed
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=prefix + "-none")


def test_list_queues_pagination(sqs: Any) -> None:
    prefix = queue_name("page")
    urls = {sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)}
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2
    seen = list(first["QueueUrls"])
    token = first["NextToken"]
    while token:
        page = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=token)
        assert 1 <= len(page["QueueUrls"]) <= 2
        seen += page["QueueUrls"]
        token = page.get("NextToken")
    assert sorted(seen) == sorted(urls)


@pytest.mark.parametrize("bad", [0, 1001])
def test_list_queues_max_results_out_of_range(sqs: Any, bad: int) -> None:
    expect_error(sqs.list_queues, "InvalidParameterValue", MaxResults=bad)


def test_delete_queue(sqs: Any) -> None:
    url = new_queue(sqs, "del")
    reply = sqs.delete_queue(QueueUrl=url)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    expect_shape_error(sqs.get_queue_url, "QueueDoesNotExist", QueueName=name_of(url))
    expect_shape_error(sqs.send_message, "QueueDoesNotExist", QueueUrl=url, MessageBody="x")
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=name_of(url))


# --- PurgeQueue ------------------------------------------------------------------------------


def test_purge_queue_empties_it_and_a_second_purge_within_60_s_fails(sqs: Any) -> None:
    url = new_queue(sqs, "purge")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    wait_attr(sqs, url, "ApproximateNumberOfMessages", "3")
    assert sqs.purge_queue(QueueUrl=url)["ResponseMetadata"]["HTTPStatusCode"] == 200
    wait_attr(sqs, url, "ApproximateNumberOfMessages", "0")
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    expect_shape_error(
        sqs.purge_queue,
        "PurgeQueueInProgress",
        403,
        message=f"Only one PurgeQueue operation on {name_of(url)} is allowed every 60 seconds.",
        QueueUrl=url,
    )


# --- Get/SetQueueAttributes ------------------------------------------------------------------


def test_get_queue_attributes_by_name(sqs: Any) -> None:
    url = new_queue(sqs, "byname", VisibilityTimeout="9")
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "QueueArn"])
    assert got["Attributes"] == {"VisibilityTimeout": "9", "QueueArn": arn_of(url)}


def test_get_queue_attributes_unknown_name(sqs: Any) -> None:
    url = new_queue(sqs, "unknown-attr")
    expect_shape_error(
        sqs.get_queue_attributes,
        "InvalidAttributeName",
        message="Unknown Attribute Bogus.",
        QueueUrl=url,
        AttributeNames=["Bogus"],
    )


POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "allow-send",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sqs:SendMessage",
                "Resource": "*",
            }
        ],
    }
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DelaySeconds", "900"),
        ("DelaySeconds", "0"),
        ("MaximumMessageSize", "1024"),
        ("MaximumMessageSize", "1048576"),
        ("MessageRetentionPeriod", "60"),
        ("MessageRetentionPeriod", "1209600"),
        ("ReceiveMessageWaitTimeSeconds", "20"),
        ("VisibilityTimeout", "0"),
        ("VisibilityTimeout", "43200"),
        ("KmsMasterKeyId", "alias/aws/sqs"),
        ("KmsDataKeyReusePeriodSeconds", "86400"),
        ("SqsManagedSseEnabled", "false"),
        ("RedriveAllowPolicy", '{"redrivePermission":"denyAll"}'),
    ],
)
def test_set_queue_attribute(sqs: Any, name: str, value: str) -> None:
    url = new_queue(sqs, "set")
    before = queue_attrs(sqs, url)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={name: value})
    got = queue_attrs(sqs, url, name)[name]
    if value.startswith("{"):
        assert json.loads(got) == json.loads(value)
    else:
        assert got == value
    assert queue_attrs(sqs, url)["CreatedTimestamp"] == before["CreatedTimestamp"]


def test_set_policy_attribute(sqs: Any) -> None:
    url = new_queue(sqs, "policy")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": POLICY})
    assert json.loads(queue_attrs(sqs, url, "Policy")["Policy"]) == json.loads(POLICY)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
    assert "Policy" not in queue_attrs(sqs, url)


def test_set_redrive_policy_attribute(sqs: Any) -> None:
    dlq = new_queue(sqs, "dlq")
    url = new_queue(sqs, "src")
    policy = {"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 3}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    assert json.loads(queue_attrs(sqs, url, "RedrivePolicy")["RedrivePolicy"]) == policy


def test_kms_master_key_replaces_sqs_managed_sse(sqs: Any) -> None:
    url = new_queue(sqs, "kms")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": "testKeyId"})
    attrs = queue_attrs(sqs, url)
    assert attrs["KmsMasterKeyId"] == "testKeyId"
    assert attrs["SqsManagedSseEnabled"] == "false"
    assert attrs["KmsDataKeyReusePeriodSeconds"] == "300"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DelaySeconds", "901"),
        ("DelaySeconds", "-1"),
        ("DelaySeconds", "soon"),
        ("MaximumMessageSize", "1023"),
        ("MaximumMessageSize", "1048577"),
        ("MessageRetentionPeriod", "59"),
        ("MessageRetentionPeriod", "1209601"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("VisibilityTimeout", "43201"),
        ("KmsDataKeyReusePeriodSeconds", "59"),
        ("RedrivePolicy", "not json"),
    ],
)
def test_invalid_attribute_values_are_rejected(sqs: Any, name: str, value: str) -> None:
    url = new_queue(sqs, "invalid")
    expect_shape_error(
        sqs.set_queue_attributes,
        "InvalidAttributeValue",
        QueueUrl=url,
        Attributes={name: value},
    )
    expect_shape_error(
        sqs.create_queue,
        "InvalidAttributeValue",
        QueueName=queue_name("invalid"),
        Attributes={name: value},
    )


def test_set_unknown_attribute_is_rejected(sqs: Any) -> None:
    url = new_queue(sqs, "unknown-set")
    expect_shape_error(
        sqs.set_queue_attributes,
        "InvalidAttributeName",
        message="Unknown Attribute Bogus.",
        QueueUrl=url,
        Attributes={"Bogus": "1"},
    )


def test_fifo_queue_attribute_cannot_change(sqs: Any) -> None:
    url = new_queue(sqs, "modify-type", fifo=True)
    expect_shape_error(
        sqs.set_queue_attributes,
        "InvalidAttributeValue",
        message="Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not "
        "supported.",
        QueueUrl=url,
        Attributes={"FifoQueue": "false"},
    )


# --- tags ------------------------------------------------------------------------------------


def test_tag_untag_and_list_queue_tags(sqs: Any) -> None:
    url = new_queue(sqs, "tags")
    assert sqs.list_queue_tags(QueueUrl=url).get("Tags", {}) == {}
    sqs.tag_queue(QueueUrl=url, Tags={"a": "1", "b": "2"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "1", "b": "2"}
    sqs.tag_queue(QueueUrl=url, Tags={"a": "one", "c": "3"})  # overwrites a
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "one", "b": "2", "c": "3"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["a", "c", "absent"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}


# --- permissions -----------------------------------------------------------------------------


def test_add_and_remove_permission_show_in_policy(sqs: Any) -> None:
    url = new_queue(sqs, "perm")
    arn = arn_of(url)
    sqs.add_permission(
        QueueUrl=url, Label="first", AWSAccountIds=[ACCOUNT], Actions=["ReceiveMessage"]
    )
    sqs.add_permission(
        QueueUrl=url, Label="second", AWSAccountIds=[ACCOUNT], Actions=["SendMessage"]
    )
    policy = json.loads(queue_attrs(sqs, url, "Policy")["Policy"])
    assert policy["Version"] == "2008-10-17"
    assert policy["Id"] == f"{arn}/SQSDefaultPolicy"
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Resource": arn,
    }
    assert policy["Statement"] == [
        {"Sid": "first", **statement, "Action": "SQS:ReceiveMessage"},
        {"Sid": "second", **statement, "Action": "SQS:SendMessage"},
    ]
    expect_error(
        sqs.add_permission,
        "InvalidParameterValue",
        message="Value first for parameter Label is invalid. Reason: Already exists.",
        QueueUrl=url,
        Label="first",
        AWSAccountIds=[ACCOUNT],
        Actions=["DeleteMessage"],
    )
    sqs.remove_permission(QueueUrl=url, Label="first")
    policy = json.loads(queue_attrs(sqs, url, "Policy")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["second"]
    sqs.remove_permission(QueueUrl=url, Label="second")
    assert "Policy" not in queue_attrs(sqs, url)
    expect_error(
        sqs.remove_permission,
        "InvalidParameterValue",
        message="Value second for parameter Label is invalid. Reason: can't find label.",
        QueueUrl=url,
        Label="second",
    )
