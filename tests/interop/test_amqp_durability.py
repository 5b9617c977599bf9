"""Durability across ``kill -9`` (polymq only: the test owns the process it kills).

Persistent messages confirmed to a durable queue survive a crash, in order, with
``redelivered=False`` unless they had been delivered; transient messages and non-durable queues
do not survive; delivered-but-unacked messages come back ``redelivered=True``; durable exchanges
and bindings survive; acks survive a clean restart.
"""

from __future__ import annotations

import pika

from tests.interop.amqp_helpers import Got, assert_empty, get_n, persistent, wait_until
from tests.polymq_process import PolymqProcess, unique


def connect(broker: PolymqProcess) -> pika.BlockingConnection:
    params = pika.URLParameters(broker.url)
    params.socket_timeout = 10
    return pika.BlockingConnection(params)


def passive_missing(conn: pika.BlockingConnection, queue: str) -> bool:
    try:
        conn.channel().queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return True
    return False


def abandon(conn: pika.BlockingConnection) -> None:
    """The broker was killed under this connection: drop it without a handshake."""
    try:
        conn.close()
    except pika.exceptions.AMQPError:
        pass


def test_persistent_messages_survive_kill9_in_order(polymq: PolymqProcess) -> None:
    durable_q, transient_q, ex = unique("durable"), unique("transient"), unique("durable-ex")
    expected = [b"p%03d" % i for i in range(100)]

    conn = connect(polymq)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(ex, exchange_type="direct", durable=True)
    ch.queue_declare(durable_q, durable=True)
    ch.queue_bind(durable_q, ex, routing_key="k")
    for i, body in enumerate(expected):
        ch.basic_publish("", durable_q, body, persistent(message_id=str(i)))
        if i % 10 == 5:
            ch.basic_publish("", durable_q, b"t%03d" % i, pika.BasicProperties(delivery_mode=1))
    ch.queue_declare(transient_q, durable=False)
    for i in range(5):
        ch.basic_publish("", transient_q, b"x%d" % i, persistent())
    assert ch.queue_declare(durable_q, passive=True).method.message_count == 110

    polymq.kill9()
    abandon(conn)
    polymq.restart()

    conn = connect(polymq)
    ch = conn.channel()
    assert ch.queue_declare(durable_q, passive=True).method.message_count == 100
    assert passive_missing(conn, transient_q)

    # deliver the first 10 and leave them unacked across another crash
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    delivered: list[Got] = []
    ch.basic_consume(durable_q, lambda _c, m, p, b: delivered.append(Got(m, p, b)))
    wait_until(conn, lambda: len(delivered) == 10, what="10 deliveries")
    assert [g.body for g in delivered] == expected[:10]
    assert not any(g.redelivered for g in delivered)

    polymq.kill9()
    abandon(conn)
    polymq.restart()

    conn = connect(polymq)
    ch = conn.channel()
    ch.confirm_delivery()
    assert ch.queue_declare(durable_q, passive=True).method.message_count == 100
    got = get_n(ch, durable_q, 100, timeout=30)
    assert [g.body for g in got] == expected
    assert [g.redelivered for g in got] == [True] * 10 + [False] * 90
    assert [g.properties.message_id for g in got] == [str(i) for i in range(100)]
    assert all(g.properties.delivery_mode == 2 for g in got)
    assert_empty(ch, durable_q)
    ch.basic_ack(got[-1].tag, multiple=True)

    # the durable exchange and its binding came back too
    ch.basic_publish(ex, "k", b"through-the-exchange", persistent())

    polymq.stop()
    abandon(conn)
    polymq.restart()

    conn = connect(polymq)
    try:
        ch = conn.channel()
        assert ch.queue_declare(durable_q, passive=True).method.message_count == 1
        (last,) = get_n(ch, durable_q, 1)
        assert last.body == b"through-the-exchange" and not last.redelivered
        ch.basic_ack(last.tag)
    finally:
        conn.close()
