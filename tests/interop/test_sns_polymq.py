"""What only polymq can show (skipped under ``POLYMQ_TEST_SQS_URL``), and the AWS CLI:

- a topic is the core exchange ``sns:<TopicName>``: a pika queue bound to it receives every
  publish raw (the message text as the body, the message attributes as AMQP headers);
- topics, subscriptions (with their filter policies) and undelivered notifications survive
  ``kill -9`` and a restart;
- ``aws sns create-topic / subscribe / publish`` work unchanged against the endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.interop import sns_helpers, sqs_helpers
from tests.interop.amqp_helpers import get_one
from tests.interop.sns_helpers import bodies, drain, make_sns_client, new_topic, subscribe_queue
from tests.interop.sqs_helpers import arn_of, env_for_cli, make_client, receive_n
from tests.polymq_process import PolymqProcess, SqsBroker

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns
sqs_polymq = sqs_helpers.sqs_polymq

AWS_CLI = str(Path(sys.executable).parent / "aws")
CLI_TIMEOUT_S = 60


@pytest.fixture
def channel(sqs_broker: SqsBroker) -> Iterator[BlockingChannel]:
    sqs_broker.require_polymq()
    params = pika.URLParameters(sqs_broker.url)
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def test_amqp_queue_bound_to_the_topic_exchange_gets_the_raw_message(
    sns: Any, channel: BlockingChannel
) -> None:
    topic = new_topic(sns, "amqp")
    exchange = "sns:" + topic.rsplit(":", 1)[1]
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange)
    sent = sns.publish(
        TopicArn=topic,
        Message="to amqp",
        Subject="s",
        MessageAttributes={
            "color": {"DataType": "String", "StringValue": "red"},
            "n": {"DataType": "Number", "StringValue": "7"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x01"},
        },
    )
    got = get_one(channel, queue, auto_ack=True)
    assert got.body == b"to amqp"
    assert got.properties.message_id == sent["MessageId"]
    assert got.properties.delivery_mode == 2
    assert got.properties.headers == {"color": "red", "n": "7", "b": b"\x01"}


def test_topics_subscriptions_and_messages_survive_kill_9(sqs_polymq: PolymqProcess) -> None:
    sns_client = make_sns_client(sqs_polymq.http_url)
    sqs_client = make_client(sqs_polymq.http_url)
    topic = new_topic(sns_client, "durable", DisplayName="kept")
    fifo_topic = new_topic(sns_client, "durable", fifo=True, ContentBasedDeduplication="true")
    sns_client.tag_resource(ResourceArn=topic, Tags=[{"Key": "k", "Value": "v"}])
    url, sub = subscribe_queue(
        sns_client,
        sqs_client,
        topic,
        "durable-q",
        RawMessageDelivery="true",
        FilterPolicy='{"keep": ["yes"]}',
    )
    for i in range(5):
        sns_client.publish(
            TopicArn=topic,
            Message=f"before-{i}",
            MessageAttributes={"keep": {"DataType": "String", "StringValue": "yes"}},
        )
    before = sns_client.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    sqs_polymq.kill9()
    sqs_polymq.restart()
    sns_client = make_sns_client(sqs_polymq.http_url)  # the port changed
    sqs_client = make_client(sqs_polymq.http_url)
    url = sqs_client.get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"]
    arns = {t["TopicArn"] for t in sns_client.list_topics()["Topics"]}
    assert {topic, fifo_topic} <= arns
    attrs = sns_client.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attrs["DisplayName"] == "kept" and attrs["SubscriptionsConfirmed"] == "1"
    fifo_attrs = sns_client.get_topic_attributes(TopicArn=fifo_topic)["Attributes"]
    assert fifo_attrs["FifoTopic"] == "true" and fifo_attrs["ContentBasedDeduplication"] == "true"
    assert sns_client.list_tags_for_resource(ResourceArn=topic)["Tags"] == [
        {"Key": "k", "Value": "v"}
    ]
    after = sns_client.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert after == before
    sns_client.publish(TopicArn=topic, Message="dropped by the filter")
    sns_client.publish(
        TopicArn=topic,
        Message="after",
        MessageAttributes={"keep": {"DataType": "String", "StringValue": "yes"}},
    )
    got = sorted(bodies(drain(sqs_client, url)))
    assert got == sorted([f"before-{i}" for i in range(5)] + ["after"])


def test_http_subscription_survives_a_restart(
    sqs_polymq: PolymqProcess, http_endpoint: sns_helpers.HttpEndpoint
) -> None:
    client = make_sns_client(sqs_polymq.http_url)
    topic = new_topic(client, "durable-http")
    client.subscribe(TopicArn=topic, Protocol="http", Endpoint=http_endpoint.url)
    (req,) = http_endpoint.wait("SubscriptionConfirmation")
    arn = client.confirm_subscription(TopicArn=topic, Token=req.json["Token"])["SubscriptionArn"]
    sqs_polymq.kill9()
    sqs_polymq.restart()
    client = make_sns_client(sqs_polymq.http_url)
    attrs = client.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    assert attrs["PendingConfirmation"] == "false"
    client.publish(TopicArn=topic, Message="after restart")
    (note,) = http_endpoint.wait("Notification")
    assert note.json["Message"] == "after restart"


http_endpoint = sns_helpers.http_endpoint


def aws(endpoint: str, *args: str) -> Any:
    out = subprocess.run(
        [AWS_CLI, "--endpoint-url", endpoint, "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env_for_cli(endpoint),
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli(sqs_broker: SqsBroker, sqs: Any) -> None:
    endpoint = sqs_broker.http_url
    name = sns_helpers.topic_name("cli")
    topic = aws(endpoint, "sns", "create-topic", "--name", name)["TopicArn"]
    assert topic == sns_helpers.topic_arn(name)
    url = sqs_helpers.new_queue(sqs, "cli-q")
    sub = aws(
        endpoint,
        "sns",
        "subscribe",
        "--topic-arn",
        topic,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        arn_of(url),
        "--attributes",
        "RawMessageDelivery=true",
    )["SubscriptionArn"]
    assert sub.startswith(topic + ":")
    sent = aws(
        endpoint,
        "sns",
        "publish",
        "--topic-arn",
        topic,
        "--message",
        "from the cli",
        "--message-attributes",
        '{"k": {"DataType": "String", "StringValue": "v"}}',
    )
    assert len(sent["MessageId"]) == 36
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=["All"])
    assert msg["Body"] == "from the cli"
    assert msg["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    listed = aws(endpoint, "sns", "list-subscriptions-by-topic", "--topic-arn", topic)
    assert [s["SubscriptionArn"] for s in listed["Subscriptions"]] == [sub]
    aws(endpoint, "sns", "delete-topic", "--topic-arn", topic)
    topics = aws(endpoint, "sns", "list-topics")["Topics"]
    assert topic not in [t["TopicArn"] for t in topics]
