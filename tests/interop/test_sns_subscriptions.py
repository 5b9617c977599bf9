"""SNS subscriptions with boto3: Subscribe to SQS queues (idempotent, attributes), Unsubscribe,
ListSubscriptions(+ByTopic) paging, Get/SetSubscriptionAttributes and their validation, and the
protocols this endpoint does not deliver to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.interop import sns_helpers
from tests.interop.sns_helpers import new_topic, subscribe_queue, topic_arn, topic_name
from tests.interop.sqs_helpers import ACCESS_KEY, ACCOUNT, arn_of, expect_error, new_queue

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns


def test_subscribe_sqs_and_read_the_attributes(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "sub")
    policy = {"attr1": [{"numeric": [">", 0, "<=", 100]}]}
    url, arn = subscribe_queue(
        sns, sqs, topic, "sub-q", FilterPolicy=json.dumps(policy), RawMessageDelivery="false"
    )
    assert arn.startswith(topic + ":") and len(arn.split(":")) == 7
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert json.loads(attrs.pop("FilterPolicy")) == policy
    assert attrs == {
        "ConfirmationWasAuthenticated": "true",
        "Endpoint": arn_of(url),
        "FilterPolicyScope": "MessageAttributes",
        "Owner": ACCOUNT,
        "PendingConfirmation": "false",
        "Protocol": "sqs",
        "RawMessageDelivery": "false",
        "SubscriptionArn": arn,
        "SubscriptionPrincipal": f"arn:aws:iam::{ACCOUNT}:user/{ACCESS_KEY}",
        "TopicArn": topic,
    }
    topic_attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert topic_attrs["SubscriptionsConfirmed"] == "1"
    assert topic_attrs["SubscriptionsPending"] == "0"


def test_subscribe_returns_the_arn_without_asking_for_sqs(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "plain")
    url = new_queue(sqs, "plain-q")
    arn = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn_of(url))["SubscriptionArn"]
    assert arn.startswith(topic + ":")


def test_subscribing_twice_returns_the_same_subscription(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "twice")
    url, arn = subscribe_queue(sns, sqs, topic, "twice-q", RawMessageDelivery="true")
    endpoint = arn_of(url)
    again = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=endpoint,
        Attributes={"RawMessageDelivery": "true"},
    )
    assert again["SubscriptionArn"] == arn
    bare = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=endpoint)
    assert bare["SubscriptionArn"] == arn
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Attributes Reason: Subscription already exists with "
        "different attributes",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=endpoint,
        Attributes={"RawMessageDelivery": "false"},
    )
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [s["SubscriptionArn"] for s in subs] == [arn]


def test_unsubscribe(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "unsub")
    _url, arn = subscribe_queue(sns, sqs, topic, "unsub-q")
    sns.unsubscribe(SubscriptionArn=arn)
    expect_error(
        sns.get_subscription_attributes,
        "NotFound",
        404,
        message="Subscription does not exist",
        SubscriptionArn=arn,
    )
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    sns.unsubscribe(SubscriptionArn=arn)  # again: success, as AWS answers
    expect_error(
        sns.unsubscribe,
        "InvalidParameter",
        message="Invalid parameter: SubscriptionArn Reason: An ARN must have at least 6 "
        "elements, not 1",
        SubscriptionArn="garbage",
    )


def test_list_subscriptions_and_by_topic(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "list")
    made = [subscribe_queue(sns, sqs, topic, f"list-q{i}") for i in range(3)]
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed == [
        {
            "SubscriptionArn": arn,
            "Owner": ACCOUNT,
            "Protocol": "sqs",
            "Endpoint": arn_of(url),
            "TopicArn": topic,
        }
        for url, arn in made
    ]
    everything: list[str] = []
    kwargs: dict[str, Any] = {}
    for _ in range(100):
        page = sns.list_subscriptions(**kwargs)
        assert len(page["Subscriptions"]) <= 100
        everything += [s["SubscriptionArn"] for s in page["Subscriptions"]]
        if "NextToken" not in page:
            break
        kwargs = {"NextToken": page["NextToken"]}
    assert {arn for _url, arn in made} <= set(everything)
    expect_error(
        sns.list_subscriptions_by_topic,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("none")),
    )


def test_list_subscriptions_by_topic_pages_of_100(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "many")
    made = {subscribe_queue(sns, sqs, topic, f"many{i}")[1] for i in range(102)}
    first = sns.list_subscriptions_by_topic(TopicArn=topic)
    assert len(first["Subscriptions"]) == 100
    second = sns.list_subscriptions_by_topic(TopicArn=topic, NextToken=first["NextToken"])
    assert len(second["Subscriptions"]) == 2 and "NextToken" not in second
    got = {s["SubscriptionArn"] for s in first["Subscriptions"] + second["Subscriptions"]}
    assert got == made


def test_set_subscription_attributes(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "setsub")
    dlq = new_queue(sqs, "setsub-dlq")
    _url, arn = subscribe_queue(sns, sqs, topic, "setsub-q")
    redrive = json.dumps({"deadLetterTargetArn": arn_of(dlq)})
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicy", AttributeValue='{"a": ["b"]}'
    )
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicyScope", AttributeValue="MessageBody"
    )
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="RedrivePolicy", AttributeValue=redrive
    )
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert attrs["RawMessageDelivery"] == "true"
    assert attrs["FilterPolicy"] == '{"a": ["b"]}'
    assert attrs["FilterPolicyScope"] == "MessageBody"
    assert attrs["RedrivePolicy"] == redrive
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicy", AttributeValue=""
    )
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert "FilterPolicy" not in attrs and "FilterPolicyScope" not in attrs


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RawMessageDelivery",
            "test-ValUe",
            "Invalid parameter: RawMessageDelivery: Invalid value [test-ValUe]. Must be true or "
            "false.",
        ),
        (
            "FilterPolicyScope",
            "RandomValue",
            "Invalid parameter: FilterPolicyScope: Invalid value [RandomValue]. Please use either "
            "MessageBody or MessageAttributes",
        ),
        (
            "RedrivePolicy",
            '{"deadLetterTargetArn": "not-an-arn"}',
            "Invalid parameter: RedrivePolicy: deadLetterTargetArn is an invalid arn",
        ),
        (
            "FilterPolicy",
            '{"key": [{"wrong-operator": true}]}',
            "Invalid parameter: FilterPolicy: Unrecognized match type wrong-operator",
        ),
        ("NoSuchAttribute", "x", "Invalid parameter: AttributeName"),
    ],
)
def test_set_subscription_attribute_errors(
    sns: Any, sqs: Any, name: str, value: str, message: str
) -> None:
    topic = new_topic(sns, "suberr")
    _url, arn = subscribe_queue(sns, sqs, topic, "suberr-q")
    expect_error(
        sns.set_subscription_attributes,
        "InvalidParameter",
        message=message,
        SubscriptionArn=arn,
        AttributeName=name,
        AttributeValue=value,
    )


def test_subscribe_validation(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "subval")
    url = new_queue(sqs, "subval-q")
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Amazon SNS does not support this protocol string: "
        "test-protocol",
        TopicArn=topic,
        Protocol="test-protocol",
        Endpoint="x",
    )
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: SQS endpoint ARN",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint="not-an-arn",
    )
    missing = f"arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-queue-{topic[-12:]}"
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message=f"Invalid parameter: Endpoint Reason: Queue does not exist: {missing}",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=missing,
    )
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value "
        "[wrongvalue]. Must be true or false.",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn_of(url),
        Attributes={"RawMessageDelivery": "wrongvalue"},
    )
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Attributes Reason: FilterPolicy: Unrecognized match type "
        "wrong-operator",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn_of(url),
        Attributes={"FilterPolicy": '{"key": [{"wrong-operator": true}]}'},
    )
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Filter policy scope MessageAttributes does not support "
        "nested filter policy",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn_of(url),
        Attributes={"FilterPolicy": '{"a": {"b": ["c"]}}'},
    )
    expect_error(
        sns.subscribe,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("gone")),
        Protocol="sqs",
        Endpoint=arn_of(url),
    )
    fifo_q = new_queue(sqs, "subval-fifo", fifo=True)
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not "
        "be subscribed to standard SNS topics",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn_of(fifo_q),
    )
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


@pytest.mark.parametrize(
    ("protocol", "endpoint"),
    [
        ("email", "someone@example.com"),
        ("email-json", "someone@example.com"),
        ("sms", "+15551234567"),
        ("lambda", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"),
        ("application", f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/GCM/app/1"),
        ("firehose", f"arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/s"),
    ],
)
def test_protocols_not_delivered_here_are_refused(sns: Any, protocol: str, endpoint: str) -> None:
    sns_broker_topic = new_topic(sns, "proto")
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message=f"Invalid parameter: Protocol Reason: {protocol} is not supported by this "
        "endpoint (polymq delivers to sqs, http and https)",
        TopicArn=sns_broker_topic,
        Protocol=protocol,
        Endpoint=endpoint,
    )


def test_fifo_subscription_needs_a_fifo_dlq(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "fifo-dlq", fifo=True)
    url = new_queue(sqs, "fifo-dlq-q", fifo=True)
    dlq = new_queue(sqs, "fifo-dlq-std")
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Attributes Reason: RedrivePolicy: must use a FIFO queue as "
        "DLQ for a FIFO Subscription to a FIFO Topic.",
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn_of(url),
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn_of(dlq)})},
    )
