"""STOMP, AMQP 0-9-1 and MQTT on one broker, the way RabbitMQ's STOMP plugin does it:
``/queue/<name>`` is the queue ``<name>``, ``/topic/<key>`` is ``amq.topic`` with routing key
``<key>``, and the STOMP headers content-type, reply-to, correlation-id, expiration, priority
and persistent are the AMQP basic properties (other headers are AMQP headers).

Against RabbitMQ the AMQP tests need ``POLYMQ_TEST_AMQP_URL`` beside ``POLYMQ_TEST_STOMP_URL``,
and the MQTT tests ``POLYMQ_TEST_MQTT_URL`` (RabbitMQ's MQTT plugin, 1884); without them they
skip, naming what is missing. Against polymq they always run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.interop.amqp_helpers import get_one
from tests.interop.conftest import mqtt_clients, stomp_clients
from tests.interop.mqtt_helpers import V311
from tests.interop.mqtt_helpers import Client as MqttClient
from tests.interop.stomp_helpers import Client, unique_name
from tests.polymq_process import StompBroker, open_stomp_broker

NewClient = Callable[..., Client]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StompBroker]:
    """polymq serving STOMP, AMQP and MQTT, or the reference named by the URLs."""
    b = open_stomp_broker(tmp_path_factory.mktemp("polymq-stomp-x"), ("amqp", "mqtt", "stomp"))
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def stomp(broker: StompBroker) -> Iterator[NewClient]:
    with stomp_clients(broker) as make:
        yield make


@pytest.fixture
def channel(broker: StompBroker) -> Iterator[BlockingChannel]:
    broker.require("amqp")
    params = pika.URLParameters(broker.url)
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def connected(make: NewClient) -> Client:
    client = make()
    client.connect()
    return client


def test_stomp_headers_are_amqp_properties(stomp: NewClient, channel: BlockingChannel) -> None:
    name = unique_name("s2a")
    channel.queue_declare(name, durable=True)
    sender = connected(stomp)
    sender.send(
        f"/queue/{name}",
        b"from-stomp",
        **{
            "content-type": "application/json",
            "reply-to": "reply-here",
            "correlation-id": "corr-1",
            "expiration": "60000",
            "priority": "5",
            "persistent": "true",
            "x-custom": "custom-value",
        },
    )
    got = get_one(channel, name, auto_ack=True)
    assert got.body == b"from-stomp"
    p = got.properties
    assert p.content_type == "application/json"
    assert p.reply_to == "reply-here"
    assert p.correlation_id == "corr-1"
    assert p.expiration == "60000"
    assert p.priority == 5
    assert p.delivery_mode == 2
    assert (p.headers or {}).get("x-custom") == "custom-value", p.headers
    channel.queue_delete(name)


def test_amqp_properties_are_stomp_headers(stomp: NewClient, channel: BlockingChannel) -> None:
    key = unique_name("a2s")
    sub = connected(stomp)
    sub.subscribe(f"/topic/{key}")
    props = pika.BasicProperties(
        content_type="text/plain",
        reply_to="amqp-reply",
        correlation_id="corr-2",
        expiration="60000",
        priority=3,
        delivery_mode=2,
        message_id="mid-1",
        headers={"x-custom": "from-amqp"},
    )
    channel.basic_publish("amq.topic", key, b"from-amqp", props)
    (msg,) = sub.expect()
    h = msg.headers
    assert msg.body == b"from-amqp"
    assert h["destination"] == f"/topic/{key}"
    assert h["content-type"] == "text/plain"
    assert h["correlation-id"] == "corr-2"
    assert h["expiration"] == "60000"
    assert h["priority"] == "3"
    assert h["persistent"] == "true"
    assert h["x-custom"] == "from-amqp"
    assert h["amqp-message-id"] == "mid-1", h
    # An AMQP reply-to is a queue name; STOMP sees it as a destination (RabbitMQ's form).
    assert h["reply-to"] == "/reply-queue/amqp-reply", h


def test_amqp_publish_to_queue_reaches_stomp_queue_subscriber(
    stomp: NewClient, channel: BlockingChannel
) -> None:
    name = unique_name("a2q")
    channel.queue_declare(name, durable=True)
    sub = connected(stomp)
    sub.subscribe(f"/amq/queue/{name}")
    channel.basic_publish("", name, b"to-queue")
    (msg,) = sub.expect()
    assert msg.body == b"to-queue"
    sub.disconnect()
    channel.queue_delete(name)


@pytest.fixture
def paho(broker: StompBroker) -> Iterator[Callable[..., MqttClient]]:
    broker.require("mqtt")
    with mqtt_clients(broker) as make:
        yield make


def test_mqtt_publish_reaches_stomp_topic(
    stomp: NewClient, paho: Callable[..., MqttClient]
) -> None:
    """MQTT topic ``a/b`` is routing key ``a.b``: STOMP ``/topic/a.b`` sees it."""
    word = unique_name("m2s")
    sub = connected(stomp)
    sub.subscribe(f"/topic/{word}.b")
    client = paho(f"pt-{word[-10:]}", V311)
    client.connect()
    client.publish(f"{word}/b", b"from-mqtt", 1)
    (msg,) = sub.expect()
    assert msg.body == b"from-mqtt"


def test_stomp_send_reaches_mqtt_subscriber(
    stomp: NewClient, paho: Callable[..., MqttClient]
) -> None:
    word = unique_name("s2m")
    client = paho(f"pt-{word[-10:]}", V311)
    client.connect()
    client.subscribe(f"{word}/b", 1)
    sender = connected(stomp)
    sender.send(f"/topic/{word}.b", b"from-stomp")
    (msg,) = client.expect_topic(f"{word}/b")
    assert msg.payload == b"from-stomp"
