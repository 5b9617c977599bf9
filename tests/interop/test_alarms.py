"""Resource alarms with real clients: publishers are blocked while an alarm is raised, consumers
drain, and everything resumes when it clears.

The disk alarm is driven from here: the broker's ``disk_free_limit_bytes`` is set
``MARGIN_BYTES`` below the free space of its filesystem when it starts, and a test raises the
alarm by allocating twice that margin in a file next to the data directory (``fallocate``: no
data is written) and clears it by deleting the file. Each step waits for the broker's own log
line ("resource alarm raised" / "cleared"), never for a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.interop.stomp_helpers import Client as StompClient
from tests.polymq_process import PolymqProcess, unique

MARGIN_BYTES = 1 << 30
WAIT_S = 10.0
CHECK_ARGS = ("--resource-check-interval-ms", "50")


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture(scope="module")
def disk_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    root = tmp_path_factory.mktemp("alarms")
    free = _free_bytes(root)
    if free < 4 * MARGIN_BYTES:
        pytest.skip(f"needs {4 * MARGIN_BYTES} bytes free on {root}, has {free}")
    limit = free - MARGIN_BYTES
    broker = PolymqProcess(
        root / "data",
        extra_args=("--disk-free-limit-bytes", str(limit), *CHECK_ARGS),
        listeners=("amqp", "mqtt", "stomp", "http"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _alarm_event(kind: str, alarm: str) -> Any:
    return lambda r: r.get("event") == f"resource alarm {kind}" and r.get("alarm") == alarm


@contextmanager
def disk_alarm(broker: PolymqProcess) -> Iterator[None]:
    """Raise the disk alarm for the body of the ``with``; cleared on the way out."""
    assert broker.data_dir is not None
    ballast = broker.data_dir.parent / "ballast"
    fd = os.open(ballast, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, 2 * MARGIN_BYTES)
    finally:
        os.close(fd)
    try:
        broker.wait_event(_alarm_event("raised", "disk"), what="the disk alarm")
        yield
    finally:
        ballast.unlink()
        broker.wait_event(_alarm_event("cleared", "disk"), what="the disk alarm clearing")


def _pika(broker: PolymqProcess) -> pika.BlockingConnection:
    params = pika.URLParameters(broker.url)
    params.socket_timeout = WAIT_S
    return pika.BlockingConnection(params)


def _pump(conn: pika.BlockingConnection, done: Any, what: str) -> None:
    """Let pika read until ``done()`` (at most WAIT_S)."""
    for _ in range(int(WAIT_S / 0.05)):
        if done():
            return
        conn.process_data_events(time_limit=0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_amqp_publisher_is_blocked_and_consumers_drain(disk_broker: PolymqProcess) -> None:
    consumer = _pika(disk_broker)
    publisher = _pika(disk_broker)
    notices: list[str] = []
    publisher.add_on_connection_blocked_callback(
        lambda _c, frame: notices.append(f"blocked: {frame.method.reason}")
    )
    publisher.add_on_connection_unblocked_callback(lambda _c, _f: notices.append("unblocked"))
    queue = unique("alarm-amqp")
    pub = publisher.channel()
    pub.queue_declare(queue)
    for i in range(3):
        pub.basic_publish("", queue, f"before {i}".encode())
    cons = consumer.channel()
    _pump(
        consumer,
        lambda: cons.queue_declare(queue, passive=True).method.message_count == 3,
        "three messages",
    )
    with disk_alarm(disk_broker):
        pub.basic_publish("", queue, b"during")
        _pump(publisher, lambda: bool(notices), "connection.blocked")
        assert notices == ["blocked: low on disk"]
        # the connection that only consumes is served: the queue drains
        got = [cons.basic_get(queue, auto_ack=True)[2] for _ in range(3)]
        assert got == [b"before 0", b"before 1", b"before 2"]
        # and the held publish is not in the queue
        assert cons.queue_declare(queue, passive=True).method.message_count == 0
    _pump(publisher, lambda: len(notices) == 2, "connection.unblocked")
    assert notices[1] == "unblocked"
    _pump(
        consumer,
        lambda: cons.queue_declare(queue, passive=True).method.message_count == 1,
        "the held message",
    )
    assert cons.basic_get(queue, auto_ack=True)[2] == b"during"
    cons.queue_delete(queue)
    consumer.close()
    publisher.close()


def _mqtt(broker: PolymqProcess, name: str) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique(name))
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(broker.host, broker.mqtt_port)
    client.loop_start()
    assert connected.wait(WAIT_S)
    return client


def test_mqtt_publisher_is_held_until_the_alarm_clears(disk_broker: PolymqProcess) -> None:
    topic = unique("alarm").replace(".", "/")
    subscriber = _mqtt(disk_broker, "sub")
    publisher = _mqtt(disk_broker, "pub")
    got: list[bytes] = []
    arrived = threading.Event()
    subacks: list[int] = []
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        got.append(msg.payload)
        arrived.set()

    def on_subscribe(_c: Any, _u: Any, mid: int, *_a: Any) -> None:
        subacks.append(mid)
        subscribed.set()

    subscriber.on_message = on_message
    subscriber.on_subscribe = on_subscribe
    try:
        subscriber.subscribe(topic, qos=1)
        assert subscribed.wait(WAIT_S)
        with disk_alarm(disk_broker):
            info = publisher.publish(topic, b"during", qos=1)
            # a connection that does not publish is still read and answered
            subscribed.clear()
            subscriber.subscribe(topic + "/more", qos=1)
            assert subscribed.wait(WAIT_S)
            assert not info.is_published() and not got
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
        assert arrived.wait(WAIT_S) and got == [b"during"]
    finally:
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()


def test_stomp_sender_is_held_until_the_alarm_clears(disk_broker: PolymqProcess) -> None:
    destination = "/queue/" + unique("alarm-stomp")
    sender = StompClient(disk_broker)
    receiver = StompClient(disk_broker)
    sender.connect()
    receiver.connect()
    try:
        with disk_alarm(disk_broker):
            rid = "held-send"
            sender.conn.send(destination, b"during", headers={"receipt": rid})
            # the subscriber's frames are read while the sender waits unread
            receiver.subscribe(destination)
            assert rid not in sender.rec.receipts
            assert not receiver.rec.messages
        sender.wait_receipt(rid)
        assert [m.body for m in receiver.expect(1)] == [b"during"]
    finally:
        sender.disconnect()
        receiver.disconnect()


def _aws(broker: PolymqProcess, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=broker.http_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_aws_publishing_calls_are_throttled_until_the_alarm_clears(
    disk_broker: PolymqProcess,
) -> None:
    sqs, sns, events = (_aws(disk_broker, s) for s in ("sqs", "sns", "events"))
    queue_url = sqs.create_queue(QueueName=unique("alarm").replace(".", "-"))["QueueUrl"]
    topic_arn = sns.create_topic(Name=unique("alarm").replace(".", "-"))["TopicArn"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="before")
    entry = {"Source": "polymq.test", "DetailType": "t", "Detail": "{}"}
    with disk_alarm(disk_broker):
        with pytest.raises(ClientError) as sent:
            sqs.send_message(QueueUrl=queue_url, MessageBody="during")
        assert _error_code(sent) == "RequestThrottled"
        assert "low on disk" in sent.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as batch:
            sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": "1", "MessageBody": "during"}]
            )
        assert _error_code(batch) == "RequestThrottled"
        with pytest.raises(ClientError) as published:
            sns.publish(TopicArn=topic_arn, Message="during")
        assert _error_code(published) == "Throttling"
        with pytest.raises(ClientError) as put:
            events.put_events(Entries=[entry])
        assert _error_code(put) == "ThrottlingException"
        # consumers drain
        received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in received] == ["before"]
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=received[0]["ReceiptHandle"])
    sqs.send_message(QueueUrl=queue_url, MessageBody="after")
    sns.publish(TopicArn=topic_arn, Message="after")
    assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0


# -- the memory watermark ----------------------------------------------------------------------


def test_memory_watermark_blocks_publishers_from_the_start(tmp_path: Path) -> None:
    broker = PolymqProcess(
        tmp_path / "data",
        extra_args=("--memory-high-watermark-bytes", "1", *CHECK_ARGS),
        listeners=("amqp", "http"),
    )
    broker.start()
    publisher: pika.BlockingConnection | None = None
    try:
        # the first check runs before the node reports it started
        match = _alarm_event("raised", "memory")
        record = next(r for r in broker.lines if match(r))
        assert record["memory_limit_bytes"] == 1 and record["memory_bytes"] > 1
        with pytest.raises(ClientError) as sent:
            sqs = _aws(broker, "sqs")
            url = sqs.create_queue(QueueName=unique("mem").replace(".", "-"))["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody="x")
        assert _error_code(sent) == "RequestThrottled"
        assert "low on memory" in sent.value.response["Error"]["Message"]
        publisher = _pika(broker)
        notices: list[str] = []
        publisher.add_on_connection_blocked_callback(
            lambda _c, frame: notices.append(frame.method.reason)
        )
        publisher.channel().basic_publish("amq.fanout", "", b"x")
        _pump(publisher, lambda: bool(notices), "connection.blocked")
        assert notices == ["low on memory"]
    finally:
        broker.stop()
        if publisher is not None:
            try:
                publisher.close()
            except pika.exceptions.AMQPError:
                pass  # the broker is gone
