"""STOMP messages survive a crash: persistent SENDs to a durable ``/queue/`` (receipted, so
the broker has them) are all there after ``kill -9`` and a restart over the same data
directory, and so is a durable topic subscription's backlog. polymq only: these kill the
broker (skipped, with the reason, under ``POLYMQ_TEST_STOMP_URL``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.conftest import stomp_clients
from tests.interop.stomp_helpers import bodies, unique_name
from tests.polymq_process import PolymqProcess

COUNT = 50


@pytest.fixture
def broker(stomp_polymq: PolymqProcess) -> Iterator[PolymqProcess]:
    yield stomp_polymq


def test_persistent_queue_messages_survive_kill_9(broker: PolymqProcess) -> None:
    queue = f"/queue/{unique_name('d')}"
    sent = [f"persistent-{i}".encode() for i in range(COUNT)]
    with stomp_clients(broker) as make:
        sender = make()
        sender.connect()
        for body in sent:
            sender.send(queue, body, persistent="true")  # waits for each RECEIPT
    broker.kill9()
    broker.restart()
    with stomp_clients(broker) as make:
        consumer = make()
        consumer.connect()
        consumer.subscribe(queue, ack="client-individual")
        got = consumer.expect(COUNT)
        assert bodies(got) == sent
        assert all(m.headers.get("persistent") == "true" for m in got), got[0].headers
        for msg in got:
            consumer.ack(msg)
        consumer.expect_none(0.3)


def test_unacked_messages_survive_kill_9(broker: PolymqProcess) -> None:
    """Delivered but not acked when the broker dies: delivered again after the restart."""
    queue = f"/queue/{unique_name('unacked')}"
    with stomp_clients(broker) as make:
        client = make()
        client.connect()
        client.subscribe(queue, ack="client-individual")
        for i in range(3):
            client.send(queue, f"u{i}".encode(), persistent="true")
        got = client.expect(3)
        client.ack(got[0])
        broker.kill9()
        client.wait_disconnected()
    broker.restart()
    with stomp_clients(broker) as make:
        again = make()
        again.connect()
        again.subscribe(queue)
        assert bodies(again.expect(2)) == [b"u1", b"u2"]


def test_durable_subscription_backlog_survives_kill_9(broker: PolymqProcess) -> None:
    topic = f"/topic/{unique_name('dtopic')}"
    sub_id = unique_name("dsub")
    durable = {"persistent": "true", "auto-delete": "false"}
    with stomp_clients(broker) as make:
        sub = make()
        sub.connect()
        sub.subscribe(topic, sub_id=sub_id, **durable)
        sub.disconnect()
        sender = make()
        sender.connect()
        for i in range(5):
            sender.send(topic, f"t{i}".encode(), persistent="true")
    broker.kill9()
    broker.restart()
    with stomp_clients(broker) as make:
        again = make()
        again.connect()
        again.subscribe(topic, sub_id=sub_id, **durable)
        assert bodies(again.expect(5)) == [f"t{i}".encode() for i in range(5)]
