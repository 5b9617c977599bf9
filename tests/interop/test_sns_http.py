"""SNS http subscriptions against a local HTTP server: the SubscriptionConfirmation request and
both ways to confirm (ConfirmSubscription, a GET of the SubscribeURL), notifications with AWS's
headers (envelope and raw), retries after 500s per the DeliveryPolicy, and the RedrivePolicy's
dead-letter queue once the retries are spent."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from tests.interop import sns_helpers
from tests.interop.sns_helpers import HttpEndpoint, new_topic, wait_for
from tests.interop.sqs_helpers import arn_of, expect_error, new_queue, receive_n

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns
http_endpoint = sns_helpers.http_endpoint

FAST_RETRIES = {
    "healthyRetryPolicy": {
        "minDelayTarget": 1,
        "maxDelayTarget": 1,
        "numRetries": 2,
        "numNoDelayRetries": 0,
        "numMinDelayRetries": 0,
        "numMaxDelayRetries": 0,
        "backoffFunction": "linear",
    }
}


def subscribe_http(sns: Any, topic: str, endpoint: HttpEndpoint, **attributes: str) -> str:
    kwargs: dict[str, Any] = {"TopicArn": topic, "Protocol": "http", "Endpoint": endpoint.url}
    if attributes:
        kwargs["Attributes"] = attributes
    out = sns.subscribe(**kwargs)
    assert out["SubscriptionArn"] == "pending confirmation"
    arn: str = wait_for(
        lambda: [
            s["SubscriptionArn"]
            for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        ],
        "the subscription is listed",
    )[0]
    assert arn == "PendingConfirmation"
    return arn


def confirmed_arn(sns: Any, topic: str) -> str:
    (sub,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    arn: str = sub["SubscriptionArn"]
    return arn


def test_confirmation_request_and_confirm_subscription(
    sns: Any, http_endpoint: HttpEndpoint
) -> None:
    topic = new_topic(sns, "http")
    subscribe_http(sns, topic, http_endpoint)
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    assert req.path == "/sns"
    assert req.headers["content-type"] == "text/plain; charset=UTF-8"
    assert req.headers["x-amz-sns-topic-arn"] == topic
    assert req.headers["user-agent"] == "Amazon Simple Notification Service Agent"
    doc = req.json
    assert list(doc) == [
        "Type",
        "MessageId",
        "Token",
        "TopicArn",
        "Message",
        "SubscribeURL",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
    ]
    assert doc["Type"] == "SubscriptionConfirmation"
    assert doc["MessageId"] == req.headers["x-amz-sns-message-id"]
    assert doc["TopicArn"] == topic
    assert doc["Message"] == (
        f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, "
        "visit the SubscribeURL included in this message."
    )
    assert doc["SubscribeURL"].endswith(
        f"/?Action=ConfirmSubscription&TopicArn={topic}&Token={doc['Token']}"
    )
    # nothing is delivered while the subscription waits for its confirmation
    sns.publish(TopicArn=topic, Message="too early")
    attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert (attrs["SubscriptionsPending"], attrs["SubscriptionsConfirmed"]) == ("1", "0")
    expect_error(
        sns.confirm_subscription,
        "InvalidParameter",
        message="Invalid parameter: Token",
        TopicArn=topic,
        Token="not-the-token",
    )
    expect_error(
        sns.confirm_subscription,
        "InvalidParameter",
        message="Invalid parameter: Topic",
        TopicArn="arn:aws:sns:us-east-1:000000000000",
        Token=doc["Token"],
    )
    arn = sns.confirm_subscription(TopicArn=topic, Token=doc["Token"])["SubscriptionArn"]
    assert arn == confirmed_arn(sns, topic)
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert attrs["PendingConfirmation"] == "false"
    assert attrs["ConfirmationWasAuthenticated"] == "true"
    assert attrs["Protocol"] == "http" and attrs["Endpoint"] == http_endpoint.url
    assert json.loads(attrs["EffectiveDeliveryPolicy"])["healthyRetryPolicy"]["numRetries"] == 3
    sent = sns.publish(TopicArn=topic, Message="now", Subject="subj")
    (note,) = http_endpoint.wait("Notification")
    assert note.headers["x-amz-sns-message-id"] == sent["MessageId"]
    assert note.headers["x-amz-sns-topic-arn"] == topic
    assert note.headers["x-amz-sns-subscription-arn"] == arn
    assert note.headers["content-type"] == "text/plain; charset=UTF-8"
    assert "x-amz-sns-rawdelivery" not in note.headers
    env = note.json
    assert (env["Type"], env["Message"], env["Subject"]) == ("Notification", "now", "subj")
    time.sleep(0.3)
    assert [r.json["Message"] for r in http_endpoint.by_type("Notification")] == ["now"]


def test_confirm_by_visiting_the_subscribe_url_then_raw_delivery(
    sns: Any, http_endpoint: HttpEndpoint
) -> None:
    topic = new_topic(sns, "http-get")
    subscribe_http(sns, topic, http_endpoint, RawMessageDelivery="true")
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    with urllib.request.urlopen(req.json["SubscribeURL"], timeout=10) as reply:
        assert reply.status == 200
        assert b"<SubscriptionArn>" in reply.read()
    arn = confirmed_arn(sns, topic)
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert attrs["PendingConfirmation"] == "false"
    assert attrs["ConfirmationWasAuthenticated"] == "false"
    sns.publish(TopicArn=topic, Message="raw over http")
    (note,) = http_endpoint.wait("Notification")
    assert note.body == b"raw over http"
    assert note.headers["x-amz-sns-rawdelivery"] == "true"


def test_retries_after_500s_then_delivers(sns: Any, http_endpoint: HttpEndpoint) -> None:
    topic = new_topic(sns, "http-retry")
    subscribe_http(sns, topic, http_endpoint, DeliveryPolicy=json.dumps(FAST_RETRIES))
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    sns.confirm_subscription(TopicArn=topic, Token=req.json["Token"])
    http_endpoint.statuses = [500, 503]
    sns.publish(TopicArn=topic, Message="eventually")
    attempts = http_endpoint.wait("Notification", 3)
    assert [a.json["Message"] for a in attempts] == ["eventually"] * 3
    assert attempts[1].at - attempts[0].at >= 0.9  # minDelayTarget 1 s
    time.sleep(1.5)
    assert len(http_endpoint.by_type("Notification")) == 3


def test_gives_up_into_the_dead_letter_queue(
    sns: Any, sqs: Any, http_endpoint: HttpEndpoint
) -> None:
    topic = new_topic(sns, "http-dlq")
    dlq = new_queue(sqs, "http-dlq")
    subscribe_http(
        sns,
        topic,
        http_endpoint,
        DeliveryPolicy=json.dumps(FAST_RETRIES),
        RedrivePolicy=json.dumps({"deadLetterTargetArn": arn_of(dlq)}),
    )
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    sns.confirm_subscription(TopicArn=topic, Token=req.json["Token"])
    http_endpoint.default = 500
    sent = sns.publish(TopicArn=topic, Message="undeliverable")
    attempts = http_endpoint.wait("Notification", 3)
    assert len(attempts) == 3  # the first try and numRetries 2
    (dead,) = receive_n(sqs, dlq, 1, timeout=15)
    env = json.loads(dead["Body"])
    assert (env["MessageId"], env["Message"]) == (sent["MessageId"], "undeliverable")
    time.sleep(1.5)
    assert len(http_endpoint.by_type("Notification")) == 3


def test_client_errors_are_not_retried(sns: Any, http_endpoint: HttpEndpoint) -> None:
    topic = new_topic(sns, "http-400")
    subscribe_http(sns, topic, http_endpoint, DeliveryPolicy=json.dumps(FAST_RETRIES))
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    sns.confirm_subscription(TopicArn=topic, Token=req.json["Token"])
    http_endpoint.statuses = [400]
    sns.publish(TopicArn=topic, Message="refused")
    sns.publish(TopicArn=topic, Message="next")
    got = http_endpoint.wait("Notification", 2)
    assert [r.json["Message"] for r in got] == ["refused", "next"]


def test_unsubscribe_stops_deliveries(sns: Any, http_endpoint: HttpEndpoint) -> None:
    topic = new_topic(sns, "http-unsub")
    subscribe_http(sns, topic, http_endpoint)
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    arn = sns.confirm_subscription(TopicArn=topic, Token=req.json["Token"])["SubscriptionArn"]
    sns.unsubscribe(SubscriptionArn=arn)
    sns.publish(TopicArn=topic, Message="after")
    time.sleep(0.5)
    assert http_endpoint.by_type("Notification") == []


def test_http_endpoint_must_match_the_protocol(sns: Any) -> None:
    topic = new_topic(sns, "http-bad")
    expect_error(
        sns.subscribe,
        "InvalidParameter",
        message="Invalid parameter: Endpoint must match the specified protocol",
        TopicArn=topic,
        Protocol="http",
        Endpoint="https://example.com/x",
    )
