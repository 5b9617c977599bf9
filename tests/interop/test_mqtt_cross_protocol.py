"""MQTT and AMQP 0-9-1 on one broker, the way RabbitMQ's MQTT plugin does it: an MQTT topic is an
``amq.topic`` routing key with ``/`` as ``.``, ``+`` as ``*`` and ``#`` as ``#``
(DESIGN.md section 3). Runs against a polymq process serving both protocols, or against
RabbitMQ when ``POLYMQ_TEST_AMQP_URL`` and ``POLYMQ_TEST_MQTT_URL`` both name it.

MQTT 5 User Properties <-> AMQP headers: polymq maps one to the other (string values). RabbitMQ
3.13 and later do so too (rabbitmq.com/docs/conversions); the reference RabbitMQ 3.10 has no
MQTT 5 at all, so those tests skip against it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.interop.amqp_helpers import get_one
from tests.interop.conftest import mqtt_clients
from tests.interop.mqtt_helpers import V5, V311, Client, props, unique_id
from tests.polymq_process import CrossBroker

NewClient = Callable[..., Client]


@pytest.fixture
def clients(cross_broker: CrossBroker) -> Iterator[NewClient]:
    with mqtt_clients(cross_broker) as make:
        yield make


@pytest.fixture
def channel(
    cross_broker: CrossBroker,
) -> Iterator[BlockingChannel]:
    params = pika.URLParameters(cross_broker.url)
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def prefix() -> tuple[str, str]:
    """An MQTT topic prefix and the routing-key prefix it maps to (no ``.`` in the topic:
    RabbitMQ swaps ``.`` and ``/``)."""
    word = f"polymq-test-{uuid.uuid4().hex[:10]}"
    return f"{word}/x", f"{word}.x"


def bound_queue(ch: BlockingChannel, key: str) -> str:
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "amq.topic", key)
    return queue


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5"])
def test_mqtt_publish_reaches_amqp_queues_bound_to_amq_topic(
    cross_broker: CrossBroker, clients: NewClient, channel: BlockingChannel, version: int
) -> None:
    if version == V5:
        cross_broker.require("v5")
    ch = channel
    topic, key = prefix()
    queues = {
        pattern: bound_queue(ch, f"{key}.{pattern}") for pattern in ("a.b.c", "a.*.c", "a.#", "a.c")
    }
    pub = clients(unique_id("x-pub"), version)
    pub.connect()
    pub.publish(f"{topic}/a/b/c", b"from mqtt", 1)
    for pattern in ("a.b.c", "a.*.c", "a.#"):
        got = get_one(ch, queues[pattern], auto_ack=True)
        assert got.body == b"from mqtt", pattern
        assert got.method.exchange == "amq.topic"
        assert got.method.routing_key == f"{key}.a.b.c"
    method, _, _ = ch.basic_get(queues["a.c"], auto_ack=True)
    assert method is None


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5"])
def test_amqp_publish_reaches_mqtt_subscribers(
    cross_broker: CrossBroker, clients: NewClient, channel: BlockingChannel, version: int
) -> None:
    if version == V5:
        cross_broker.require("v5")
    ch = channel
    topic, key = prefix()
    subscribers = {}
    for mqtt_filter in ("a/b/c", "a/+/c", "a/#", "a/c"):
        sub = clients(unique_id("x-sub"), version)
        sub.connect()
        sub.subscribe(f"{topic}/{mqtt_filter}", 1)
        subscribers[mqtt_filter] = sub
    ch.basic_publish(
        "amq.topic", f"{key}.a.b.c", b"from amqp", pika.BasicProperties(delivery_mode=2)
    )
    for mqtt_filter in ("a/b/c", "a/+/c", "a/#"):
        (msg,) = subscribers[mqtt_filter].expect(1)
        assert (msg.topic, msg.payload) == (f"{topic}/a/b/c", b"from amqp"), mqtt_filter
        assert msg.qos <= 1
    subscribers["a/c"].quiet(0.3)


def test_5_user_properties_become_amqp_headers(
    cross_broker: CrossBroker, clients: NewClient, channel: BlockingChannel
) -> None:
    cross_broker.require("v5")
    ch = channel
    topic, key = prefix()
    queue = bound_queue(ch, f"{key}.#")
    pub = clients(unique_id("x-up"), V5)
    pub.connect()
    pub.publish(
        f"{topic}/up",
        b"x",
        1,
        properties=props(UserProperty=[("colour", "blue"), ("size", "10")]),
    )
    got = get_one(ch, queue, auto_ack=True)
    headers = {
        k: v.decode() if isinstance(v, bytes) else v
        for k, v in (got.properties.headers or {}).items()
    }
    assert headers.get("colour") == "blue" and headers.get("size") == "10"


def test_5_amqp_headers_become_user_properties(
    cross_broker: CrossBroker, clients: NewClient, channel: BlockingChannel
) -> None:
    cross_broker.require("v5")
    ch = channel
    topic, key = prefix()
    sub = clients(unique_id("x-hdr"), V5)
    sub.connect()
    sub.subscribe(f"{topic}/#", 1)
    ch.basic_publish(
        "amq.topic",
        f"{key}.hdr",
        b"x",
        pika.BasicProperties(headers={"colour": "blue", "size": "10"}),
    )
    (msg,) = sub.expect(1)
    user = dict(msg.properties.get("UserProperty", []))
    assert user.get("colour") == "blue" and user.get("size") == "10"
