"""What only polymq can show (skipped, with the reason, under ``POLYMQ_TEST_SQS_URL``):

- an SQS queue is a core queue: pika reads what SendMessage sent (message attributes arrive as
  AMQP headers; their exact mapping is the adapter's documented one, only their presence is
  checked here), and ReceiveMessage reads what pika published to the default exchange;
- messages and queue attributes survive ``kill -9`` and a restart;
- ``--aws-auth verify --aws-access-keys AKID:SECRET`` checks SigV4: a wrong secret is
  SignatureDoesNotMatch, an unknown access key InvalidClientTokenId.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.interop import sqs_helpers
from tests.interop.amqp_helpers import get_one
from tests.interop.sqs_helpers import (
    ACCESS_KEY,
    SECRET_KEY,
    arn_of,
    expect_error,
    make_client,
    md5_hex,
    name_of,
    new_queue,
    queue_attrs,
    receive_n,
)
from tests.polymq_process import PolymqProcess, SqsBroker, own_sqs_polymq

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures
sqs_polymq = sqs_helpers.sqs_polymq


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


# --- cross-protocol --------------------------------------------------------------------------


def test_pika_gets_what_send_message_sent(sqs: Any, channel: BlockingChannel) -> None:
    url = new_queue(sqs, "to-amqp")
    sqs.send_message(
        QueueUrl=url,
        MessageBody="from sqs",
        MessageAttributes={"color": {"DataType": "String", "StringValue": "blue"}},
    )
    got = get_one(channel, name_of(url), auto_ack=True)
    assert got.body == b"from sqs"
    assert got.properties.headers  # the attribute travels as a header (mapping documented)


def test_pika_consumes_what_send_message_sent(sqs: Any, channel: BlockingChannel) -> None:
    url = new_queue(sqs, "consume")
    bodies = [f"m{i}" for i in range(3)]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received: list[bytes] = []
    for method, _props, body in channel.consume(name_of(url), inactivity_timeout=10):
        assert method is not None and body is not None, f"only {received} within 10 s"
        received.append(body)
        channel.basic_ack(method.delivery_tag)
        if len(received) == 3:
            break
    channel.cancel()
    assert received == [b.encode() for b in bodies]


def test_receive_message_reads_what_pika_published(sqs: Any, channel: BlockingChannel) -> None:
    url = new_queue(sqs, "from-amqp")
    channel.confirm_delivery()
    channel.basic_publish(
        "",
        name_of(url),
        b"from amqp",
        pika.BasicProperties(delivery_mode=2, headers={"k": "v"}),
        mandatory=True,
    )
    (msg,) = receive_n(sqs, url, 1, MessageAttributeNames=["All"])
    assert msg["Body"] == "from amqp"
    assert msg["MD5OfBody"] == md5_hex("from amqp")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])


# --- durability ------------------------------------------------------------------------------


def test_messages_and_attributes_survive_kill_9(sqs_polymq: PolymqProcess) -> None:
    client = make_client(sqs_polymq.http_url)
    dlq = new_queue(client, "durable-dlq")
    policy = json.dumps({"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 4})
    url = new_queue(client, "durable", VisibilityTimeout="17", RedrivePolicy=policy)
    client.tag_queue(QueueUrl=url, Tags={"kept": "yes"})
    sent = [f"durable-{i}" for i in range(20)]
    for i in range(0, 20, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"e{j}", "MessageBody": sent[j]} for j in range(i, i + 10)],
        )
    before = queue_attrs(client, url)
    sqs_polymq.kill9()
    sqs_polymq.restart()
    client = make_client(sqs_polymq.http_url)  # the port changed
    url = client.get_queue_url(QueueName=name_of(url))["QueueUrl"]
    after = queue_attrs(client, url)
    for key in ("VisibilityTimeout", "QueueArn", "CreatedTimestamp", "RedrivePolicy"):
        assert after[key] == before[key], key
    assert after["ApproximateNumberOfMessages"] == "20"
    assert client.list_queue_tags(QueueUrl=url)["Tags"] == {"kept": "yes"}
    got = receive_n(client, url, 20)
    assert sorted(m["Body"] for m in got) == sorted(sent)


# --- --aws-auth verify -----------------------------------------------------------------------


@pytest.fixture
def verifying(tmp_path: Path) -> Iterator[PolymqProcess]:
    """polymq with ``--aws-auth verify``; skipped while the flag does not exist."""
    try:
        broker = own_sqs_polymq(
            tmp_path, ("--aws-auth", "verify", "--aws-access-keys", f"{ACCESS_KEY}:{SECRET_KEY}")
        )
    except AssertionError as exc:
        if "--aws-auth" in str(exc) or "unrecognized arguments" in str(exc):
            pytest.skip(f"this polymq has no --aws-auth flag yet: {str(exc)[:200]}")
        raise
    try:
        yield broker
    finally:
        broker.stop()


def test_aws_auth_verify(verifying: PolymqProcess) -> None:
    good = make_client(verifying.http_url, ACCESS_KEY, SECRET_KEY)
    url = new_queue(good, "auth")
    assert good.get_queue_url(QueueName=name_of(url))["QueueUrl"] == url
    wrong_secret = make_client(verifying.http_url, ACCESS_KEY, "not-the-secret")
    expect_error(wrong_secret.list_queues, "SignatureDoesNotMatch", 403)
    unknown_key = make_client(verifying.http_url, "AKIDUNKNOWN", SECRET_KEY)
    expect_error(unknown_key.list_queues, "InvalidClientTokenId", 403)
