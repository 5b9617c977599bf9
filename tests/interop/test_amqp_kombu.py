"""kombu (the transport under Celery): Producer/Consumer over a topic exchange, SimpleQueue, and
client heartbeats checked with ``heartbeat_check``."""

from __future__ import annotations

import time
from typing import Any

import kombu
import pytest
from kombu import Consumer, Exchange, Producer, Queue

from tests.polymq_process import AmqpBroker, unique


def test_producer_consumer_over_topic_exchange(amqp_broker: AmqpBroker) -> None:
    exchange = Exchange(unique("kombu-topic"), type="topic", durable=False)
    eu = Queue(unique("eu"), exchange, routing_key="orders.eu.*", durable=False)
    all_orders = Queue(unique("all"), exchange, routing_key="orders.#", durable=False)
    received: dict[str, list[Any]] = {eu.name: [], all_orders.name: []}

    with kombu.Connection(amqp_broker.url, connect_timeout=10) as conn:
        channel = conn.channel()
        for q in (eu, all_orders):
            q(channel).declare()
        producer = Producer(channel, exchange=exchange, serializer="json")
        producer.publish({"id": 1, "region": "eu"}, routing_key="orders.eu.new", retry=False)
        producer.publish({"id": 2, "region": "us"}, routing_key="orders.us.new", retry=False)
        producer.publish(
            {"id": 3, "region": "eu"},
            routing_key="orders.eu.paid",
            headers={"trace": "abc"},
            retry=False,
        )
        producer.publish({"id": 4}, routing_key="invoices.eu.new", retry=False)

        def on_message(queue_name: str) -> Any:
            def handle(body: Any, message: kombu.Message) -> None:
                received[queue_name].append((body, message.headers))
                message.ack()

            return handle

        consumers = [
            Consumer(conn.channel(), queues=[q], callbacks=[on_message(q.name)], accept=["json"])
            for q in (eu, all_orders)
        ]
        for consumer in consumers:
            consumer.consume()
        deadline = time.monotonic() + 10
        while len(received[eu.name]) < 2 or len(received[all_orders.name]) < 3:
            assert time.monotonic() < deadline, received
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
        for consumer in consumers:
            consumer.cancel()

    assert [body["id"] for body, _ in received[eu.name]] == [1, 3]
    assert [body["id"] for body, _ in received[all_orders.name]] == [1, 2, 3]
    assert received[eu.name][1][1]["trace"] == "abc"


def test_simple_queue_round_trip(amqp_broker: AmqpBroker) -> None:
    name = unique("simple")
    with kombu.Connection(amqp_broker.url, connect_timeout=10) as conn:
        sq = conn.SimpleQueue(name, queue_opts={"durable": False, "auto_delete": False})
        try:
            for i in range(5):
                sq.put({"n": i, "text": "héllo"})
            got = []
            for _ in range(5):
                message = sq.get(block=True, timeout=10)
                got.append(message.payload)
                message.ack()
            assert got == [{"n": i, "text": "héllo"} for i in range(5)]
            with pytest.raises(sq.Empty):
                sq.get(block=False)
            assert len(sq) == 0
        finally:
            sq.close()
            Queue(name, durable=False)(conn.default_channel).delete()


def test_heartbeats_keep_an_idle_connection_alive(amqp_broker: AmqpBroker) -> None:
    name = unique("hb")
    with kombu.Connection(amqp_broker.url, heartbeat=2, connect_timeout=10) as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.heartbeat == 2
        assert conn.connection.heartbeat == 2  # the broker accepted the client's proposal
        sq = conn.SimpleQueue(name, queue_opts={"durable": False})
        try:
            # idle for three heartbeat intervals, sending and checking heartbeats as kombu's
            # event loop does (rate 2: check twice per interval)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                conn.heartbeat_check(rate=2)
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
            sq.put("after idling")
            message = sq.get(block=True, timeout=10)
            assert message.payload == "after idling"
            message.ack()
        finally:
            sq.close()
            Queue(name, durable=False)(conn.default_channel).delete()
