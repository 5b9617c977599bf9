"""Fixtures for the conformance suites: the broker under test (see
``tests/polymq_process.py``), raw socket clients that are always closed, and a witness: every
test runs between a well-behaved client storing messages and a well-behaved client finding
them intact and still publishing and consuming (AMQP: ``witness``; MQTT: ``mqtt_witness``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest

from tests.conformance import mqtt_wire
from tests.conformance.amqp_wire import RawClient
from tests.conformance.mqtt_wire import RawClient as MqttRawClient
from tests.conformance.stomp_wire import RawClient as StompRawClient
from tests.polymq_process import (
    AmqpBroker,
    ExternalMqttBroker,
    MqttBroker,
    StompBroker,
    open_broker,
    open_mqtt_broker,
    open_stomp_broker,
    unique,
)

WITNESS_BODIES = [b"stored-before-0", b"stored-before-1", b"stored-before-2"]


@pytest.fixture(scope="module")
def amqp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmqpBroker]:
    broker = open_broker(tmp_path_factory.mktemp("polymq"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def raw(amqp_broker: AmqpBroker) -> Iterator[Callable[..., RawClient]]:
    """``raw()`` opens a TCP connection to the broker's AMQP port (nothing sent yet)."""
    opened: list[RawClient] = []

    def open_one(timeout: float = 5.0) -> RawClient:
        client = RawClient(amqp_broker.host, amqp_broker.amqp_port, timeout)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        client.close()


def pika_connection(broker: AmqpBroker) -> pika.BlockingConnection:
    params = pika.URLParameters(broker.url)
    params.socket_timeout = 10
    return pika.BlockingConnection(params)


@pytest.fixture(autouse=True)
def witness(amqp_broker: AmqpBroker) -> Iterator[None]:
    queue = unique("witness")
    conn = pika_connection(amqp_broker)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(queue, durable=True)
        for body in WITNESS_BODIES:
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()

    yield

    conn = pika_connection(amqp_broker)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        assert ch.queue_declare(queue, passive=True).method.message_count == len(WITNESS_BODIES)
        ch.basic_publish("", queue, b"published-after", pika.BasicProperties(delivery_mode=2))
        got: list[bytes] = []
        ch.basic_consume(queue, lambda c, m, _p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
        deadline = time.monotonic() + 10
        while len(got) < len(WITNESS_BODIES) + 1:
            assert time.monotonic() < deadline, f"witness received only {got}"
            conn.process_data_events(time_limit=0.1)
        assert got == [*WITNESS_BODIES, b"published-after"]
        ch.queue_delete(queue)
    finally:
        conn.close()


# --- MQTT -----------------------------------------------------------------------------------
# MQTT test modules replace the AMQP ``witness`` above with ``mqtt_witness`` by defining an
# autouse fixture named ``witness`` of their own.

MQTT_WITNESS_BODIES = [b"queued-before-0", b"queued-before-1", b"queued-before-2"]


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    broker = open_mqtt_broker(tmp_path_factory.mktemp("polymq-mqtt"))
    if isinstance(broker, ExternalMqttBroker):
        broker.features = mqtt_features(broker)
    try:
        yield broker
    finally:
        broker.stop()


def mqtt_features(broker: ExternalMqttBroker) -> set[str]:
    """What an external broker supports, asked over the wire: MQTT 5, and whether it advertises
    a Maximum Packet Size (then "maximum-packet-size")."""
    features = {"v311"}
    client = MqttRawClient(broker.host, broker.mqtt_port)
    try:
        connack = client.handshake(mqtt_wire.V5, client_id=f"probe-{uuid.uuid4().hex[:8]}")
        if connack.code == 0:
            features.add("v5")
            if mqtt_wire.MAXIMUM_PACKET_SIZE in connack.props:
                features.add("maximum-packet-size")
    except (mqtt_wire.Closed, OSError):
        pass
    finally:
        client.close()
    return features


@pytest.fixture
def mqtt_raw(mqtt_broker: MqttBroker) -> Iterator[Callable[..., MqttRawClient]]:
    """``mqtt_raw()`` opens a TCP connection to the broker's MQTT port (nothing sent yet)."""
    opened: list[MqttRawClient] = []

    def open_one(timeout: float = 5.0) -> MqttRawClient:
        client = MqttRawClient(mqtt_broker.host, mqtt_broker.mqtt_port, timeout)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        client.close()


@pytest.fixture
def mqtt_witness(mqtt_broker: MqttBroker) -> Iterator[None]:
    """Before the test: a retained message and a persistent session (QoS 1 subscription) with
    three messages queued while it is offline. After: a well-behaved paho client finds both
    intact, and publishes and receives a new message."""
    from tests.interop.mqtt_helpers import V311
    from tests.interop.mqtt_helpers import Client as PahoClient

    base = f"polymq-test/witness/{uuid.uuid4().hex[:10]}"
    session_id = f"pt-witness-{uuid.uuid4().hex[:10]}"
    setup = PahoClient(mqtt_broker, f"{session_id}-setup", V311)
    session = PahoClient(mqtt_broker, session_id, V311, clean=False)
    try:
        session.connect()
        assert session.subscribe(f"{base}/queued", 1) == [1]
        session.disconnect()
        setup.connect()
        setup.publish(f"{base}/retained", b"retained-before", 1, retain=True)
        for body in MQTT_WITNESS_BODIES:
            setup.publish(f"{base}/queued", body, 1)
    finally:
        setup.disconnect()

    yield

    after = PahoClient(mqtt_broker, f"{session_id}-after", V311)
    again = PahoClient(mqtt_broker, session_id, V311, clean=False)
    try:
        after.connect()
        after.subscribe(f"{base}/retained", 1)
        (retained,) = after.expect_topic(f"{base}/retained")
        assert (retained.payload, retained.retain) == (b"retained-before", True)

        assert again.connect().session_present, "the persistent session was lost"
        queued = again.expect_topic(f"{base}/queued", len(MQTT_WITNESS_BODIES))
        assert [m.payload for m in queued] == MQTT_WITNESS_BODIES

        after.subscribe(f"{base}/fresh", 1)
        after.publish(f"{base}/fresh", b"published-after", 1)
        (fresh,) = after.expect_topic(f"{base}/fresh")
        assert fresh.payload == b"published-after"
        after.publish(f"{base}/retained", b"", 1, retain=True)
    finally:
        after.disconnect()
        again.disconnect()
    sweep = PahoClient(mqtt_broker, session_id, V311, clean=True)
    sweep.connect()
    sweep.disconnect()


# --- STOMP ----------------------------------------------------------------------------------
# STOMP test modules replace the AMQP ``witness`` with ``stomp_witness`` the same way.

STOMP_WITNESS_BODIES = [b"stomp-stored-0", b"stomp-stored-1", b"stomp-stored-2"]


@pytest.fixture(scope="module")
def stomp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StompBroker]:
    broker = open_stomp_broker(tmp_path_factory.mktemp("polymq-stomp"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def stomp_raw(stomp_broker: StompBroker) -> Iterator[Callable[..., StompRawClient]]:
    """``stomp_raw()`` opens a TCP connection to the broker's STOMP port (nothing sent yet)."""
    opened: list[StompRawClient] = []

    def open_one(timeout: float = 5.0) -> StompRawClient:
        client = StompRawClient(stomp_broker.host, stomp_broker.stomp_port, timeout)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        client.close()


@pytest.fixture
def stomp_witness(stomp_broker: StompBroker) -> Iterator[None]:
    """Before the test: three persistent messages stored on a ``/queue/`` (receipted). After: a
    well-behaved stomp.py client finds them intact, then sends and receives a new one."""
    from tests.interop.stomp_helpers import Client, bodies, unique_name

    queue = f"/queue/{unique_name('witness')}"
    setup = Client(stomp_broker)
    try:
        setup.connect()
        for body in STOMP_WITNESS_BODIES:
            setup.send(queue, body, persistent="true")
    finally:
        setup.disconnect()

    yield

    after = Client(stomp_broker)
    try:
        after.connect()
        after.subscribe(queue, ack="client-individual")
        stored = after.expect(len(STOMP_WITNESS_BODIES))
        assert bodies(stored) == STOMP_WITNESS_BODIES
        after.send(queue, b"sent-after")
        (fresh,) = after.expect()
        assert fresh.body == b"sent-after"
        for msg in [*stored, fresh]:
            after.ack(msg)
    finally:
        after.disconnect()
