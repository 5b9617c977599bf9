"""SNS subscription filter policies, end to end: a topic fans out to one SQS queue per policy,
a set of messages is published, and each queue must hold exactly the messages its policy
matches. Every operator family on message attributes (exact, prefix, suffix, anything-but with
its nested operators, numeric, exists, equals-ignore-case, ``$or``, String.Array attributes),
and on the message body (FilterPolicyScope MessageBody) with nested keys, arrays of objects
and ``$or`` (SNS Developer Guide, "Amazon SNS message filtering")."""

from __future__ import annotations

import json
from typing import Any

from tests.interop import sns_helpers
from tests.interop.sns_helpers import bodies, drain, new_topic, subscribe_queue

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns


def s(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def n(value: str) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": value}


def arr(values: list[Any]) -> dict[str, str]:
    return {"DataType": "String.Array", "StringValue": json.dumps(values)}


# message name -> attributes
MESSAGES: dict[str, dict[str, dict[str, str]]] = {
    "red-big": {"color": s("red"), "size": n("150"), "store": s("example_corp")},
    "blue-small": {"color": s("blue"), "size": n("5"), "store": s("other-shop")},
    "green-mid": {"color": s("Green"), "size": n("100.5")},
    "no-color": {"size": n("0")},
    "red-array": {"color": arr(["red", "yellow"]), "size": n("-3")},
    "nums": {"color": arr([1, 2]), "price": n("3.018e2")},
    "empty": {},
}

# subscription name -> (policy, the messages it must receive)
POLICIES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "exact": ({"color": ["red"]}, {"red-big", "red-array"}),
    "exact-number": ({"size": [150]}, {"red-big"}),
    "exact-number-in-array": ({"color": [2]}, {"nums"}),
    "prefix": ({"store": [{"prefix": "example"}]}, {"red-big"}),
    "suffix": ({"store": [{"suffix": "-shop"}]}, {"blue-small"}),
    "anything-but": (
        {"color": [{"anything-but": ["red", "blue"]}]},
        {"green-mid", "red-array", "nums"},
    ),
    "anything-but-prefix": ({"store": [{"anything-but": {"prefix": "example"}}]}, {"blue-small"}),
    "anything-but-number": (
        {"size": [{"anything-but": [150, 0]}]},
        {"blue-small", "green-mid", "red-array"},
    ),
    "numeric-range": ({"size": [{"numeric": [">", 0, "<=", 100.5]}]}, {"blue-small", "green-mid"}),
    "numeric-eq": ({"price": [{"numeric": ["=", 301.8]}]}, {"nums"}),
    "numeric-negative": ({"size": [{"numeric": ["<", 0]}]}, {"red-array"}),
    "exists": ({"store": [{"exists": True}]}, {"red-big", "blue-small"}),
    "not-exists": (
        {"color": [{"exists": False}]},
        {"no-color", "empty"},
    ),
    "ignore-case": ({"color": [{"equals-ignore-case": "GREEN"}]}, {"green-mid"}),
    "and": ({"color": ["red"], "size": [{"numeric": [">", 100]}]}, {"red-big"}),
    "or-values": ({"color": ["blue", "yellow"]}, {"blue-small", "red-array"}),
    "$or": (
        {"$or": [{"color": ["blue"]}, {"size": [{"numeric": [">=", 150]}]}]},
        {"blue-small", "red-big"},
    ),
    "string-array-any": ({"color": ["yellow"]}, {"red-array"}),
}


def test_filter_policies_on_message_attributes(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "filters")
    queues = {
        name: subscribe_queue(
            sns, sqs, topic, f"f-{i}", RawMessageDelivery="true", FilterPolicy=json.dumps(policy)
        )[0]
        for i, (name, (policy, _)) in enumerate(POLICIES.items())
    }
    everything = subscribe_queue(sns, sqs, topic, "f-all", RawMessageDelivery="true")[0]
    for body, attrs in MESSAGES.items():
        kwargs: dict[str, Any] = {"TopicArn": topic, "Message": body}
        if attrs:
            kwargs["MessageAttributes"] = attrs
        sns.publish(**kwargs)
    assert sorted(bodies(drain(sqs, everything))) == sorted(MESSAGES)
    got = {name: set(bodies(drain(sqs, url, settle_s=0.3))) for name, url in queues.items()}
    want = {name: expected for name, (_policy, expected) in POLICIES.items()}
    assert got == want


BODY_MESSAGES: dict[str, dict[str, Any]] = {
    "order-eu": {
        "kind": "order",
        "customer": {"region": "eu-west", "tier": "gold"},
        "total": 250,
        "items": [{"sku": "a1", "qty": 2}, {"sku": "b2", "qty": 1}],
    },
    "order-us": {
        "kind": "order",
        "customer": {"region": "us-east", "tier": "silver"},
        "total": 20,
        "items": [{"sku": "c3", "qty": 5}],
    },
    "refund": {
        "kind": "refund",
        "customer": {"region": "eu-central"},
        "total": 10,
        "tags": ["x", "vip"],
    },
}

BODY_POLICIES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "nested-prefix": ({"customer": {"region": [{"prefix": "eu-"}]}}, {"order-eu", "refund"}),
    "nested-and": (
        {"kind": ["order"], "customer": {"tier": ["gold"]}},
        {"order-eu"},
    ),
    "array-of-objects": ({"items": {"sku": ["c3"]}}, {"order-us"}),
    "array-of-objects-same-element": (
        {"items": {"sku": ["a1"], "qty": [{"numeric": [">", 1]}]}},
        {"order-eu"},
    ),
    "array-of-strings": ({"tags": ["vip"]}, {"refund"}),
    "numeric": ({"total": [{"numeric": [">=", 20, "<", 300]}]}, {"order-eu", "order-us"}),
    "$or-nested": (
        {"$or": [{"kind": ["refund"]}, {"customer": {"tier": ["silver"]}}]},
        {"refund", "order-us"},
    ),
    "not-exists-nested": ({"customer": {"tier": [{"exists": False}]}}, {"refund"}),
}


def test_filter_policies_on_the_message_body(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "body")
    queues = {
        name: subscribe_queue(
            sns,
            sqs,
            topic,
            f"b-{i}",
            RawMessageDelivery="true",
            FilterPolicyScope="MessageBody",
            FilterPolicy=json.dumps(policy),
        )[0]
        for i, (name, (policy, _)) in enumerate(BODY_POLICIES.items())
    }
    for doc in BODY_MESSAGES.values():
        sns.publish(TopicArn=topic, Message=json.dumps(doc))
    sns.publish(TopicArn=topic, Message="not json at all")  # matches no body policy
    names = {json.dumps(doc): name for name, doc in BODY_MESSAGES.items()}
    got = {
        name: {names.get(b, b) for b in bodies(drain(sqs, url, settle_s=0.3))}
        for name, url in queues.items()
    }
    want = {name: expected for name, (_policy, expected) in BODY_POLICIES.items()}
    assert got == want


def test_changing_the_filter_policy_applies_to_the_next_publish(sns: Any, sqs: Any) -> None:
    topic = new_topic(sns, "change")
    url, arn = subscribe_queue(
        sns, sqs, topic, "change-q", RawMessageDelivery="true", FilterPolicy='{"k": ["one"]}'
    )
    sns.publish(TopicArn=topic, Message="1", MessageAttributes={"k": s("one")})
    sns.publish(TopicArn=topic, Message="2", MessageAttributes={"k": s("two")})
    assert bodies(drain(sqs, url)) == ["1"]
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicy", AttributeValue='{"k": ["two"]}'
    )
    sns.publish(TopicArn=topic, Message="3", MessageAttributes={"k": s("one")})
    sns.publish(TopicArn=topic, Message="4", MessageAttributes={"k": s("two")})
    assert bodies(drain(sqs, url)) == ["4"]
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicyScope", AttributeValue="MessageBody"
    )
    sns.publish(TopicArn=topic, Message='{"k": "two"}')
    sns.publish(TopicArn=topic, Message='{"k": "one"}', MessageAttributes={"k": s("two")})
    assert bodies(drain(sqs, url)) == ['{"k": "two"}']
