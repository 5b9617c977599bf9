"""Fixtures for the AMQP conformance suite: the broker under test (see
``tests/polymq_process.py``), raw socket clients that are always closed, and a witness: every
test runs between a well-behaved client storing messages and a well-behaved client finding
them intact and still publishing and consuming."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pika
import pytest

from tests.conformance.amqp_wire import RawClient
from tests.polymq_process import AmqpBroker, open_broker, unique

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
