"""pika BlockingConnection against the broker: routing, confirms, settles, queue properties,
channel-level errors that leave the connection working, transactions, recover, QoS and
consumer-cancel notifications.

Reply codes and texts are the ones RabbitMQ sends (AMQP 0-9-1 section 1.3 and RabbitMQ's
``rabbit_misc:protocol_error`` wording); clients and operators grep for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError

from tests.interop.amqp_helpers import (
    Got,
    assert_empty,
    get_n,
    get_one,
    ready_count,
    settle_window,
    wait_until,
)
from tests.polymq_process import unique

Connect = Callable[..., pika.BlockingConnection]


def confirmed_channel(conn: pika.BlockingConnection) -> BlockingChannel:
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


def declare_queue(ch: BlockingChannel, prefix: str = "q", **kw: Any) -> str:
    name = unique(prefix)
    ch.queue_declare(name, **kw)
    return name


# --- routing ------------------------------------------------------------------------------------


def test_direct_exchange_declare_bind_publish_confirm_get(connect: Connect) -> None:
    conn = connect()
    ch = confirmed_channel(conn)
    ex = unique("direct")
    ch.exchange_declare(ex, exchange_type="direct")
    q = declare_queue(ch)
    ch.queue_bind(q, ex, routing_key="k1")
    ch.basic_publish(ex, "k1", b"hello", pika.BasicProperties(content_type="text/plain"))
    ch.basic_publish(ex, "other", b"dropped")  # not mandatory: silently dropped, still acked
    got = get_one(ch, q)
    assert got.body == b"hello"
    assert got.properties.content_type == "text/plain"
    assert got.method.exchange == ex and got.method.routing_key == "k1"
    assert got.redelivered is False
    assert got.method.message_count == 0
    ch.basic_ack(got.tag)
    assert_empty(ch, q)


def test_basic_get_empty_then_message_count(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    q = declare_queue(ch)
    assert ch.basic_get(q) == (None, None, None)
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    got = get_one(ch, q, auto_ack=True)
    # basic.get-ok's message-count is what is left after this one
    assert got.body == b"m0" and got.method.message_count == 2
    assert ready_count(ch, q) == 2


def test_mandatory_unroutable_returns_312_no_route(connect: Connect) -> None:
    conn = connect()
    ch = confirmed_channel(conn)
    ex = unique("direct")
    ch.exchange_declare(ex, exchange_type="direct")
    with pytest.raises(UnroutableError) as info:
        ch.basic_publish(ex, "nobody-home", b"lost", mandatory=True)
    returned = info.value.messages[0]
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.exchange == ex and returned.method.routing_key == "nobody-home"
    assert returned.body == b"lost"
    # the channel stays usable
    q = declare_queue(ch)
    ch.basic_publish("", q, b"ok", mandatory=True)
    assert get_one(ch, q).body == b"ok"


def test_topic_routing(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    ex = unique("topic")
    ch.exchange_declare(ex, exchange_type="topic")
    patterns = {"star": "*.orange.*", "hash": "lazy.#", "rabbit": "*.*.rabbit", "exact": "a.b"}
    queues = {}
    for name, pattern in patterns.items():
        queues[name] = declare_queue(ch, name)
        ch.queue_bind(queues[name], ex, routing_key=pattern)
    table = [
        ("quick.orange.rabbit", {"star", "rabbit"}),
        ("lazy.orange.elephant", {"star", "hash"}),
        ("quick.orange.fox", {"star"}),
        ("lazy.brown.fox", {"hash"}),
        ("lazy", {"hash"}),
        ("lazy.pink.rabbit", {"hash", "rabbit"}),
        ("quick.brown.fox", set()),
        ("orange", set()),
        ("quick.orange.new.rabbit", set()),
        ("a.b", {"exact"}),
    ]
    for key, _ in table:
        ch.basic_publish(ex, key, key.encode())
    received: dict[str, set[str]] = {name: set() for name in patterns}
    for name, q in queues.items():
        for _ in range(ready_count(ch, q)):
            received[name].add(get_one(ch, q, auto_ack=True).body.decode())
    for key, expected in table:
        got = {name for name, keys in received.items() if key in keys}
        assert got == expected, key


def test_headers_exchange_all_and_any(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    ex = unique("headers")
    ch.exchange_declare(ex, exchange_type="headers")
    q_all, q_any = declare_queue(ch, "all"), declare_queue(ch, "any")
    ch.queue_bind(q_all, ex, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(q_any, ex, arguments={"x-match": "any", "format": "pdf", "type": "report"})
    cases = [
        ({"format": "pdf", "type": "report"}, True, True),
        ({"format": "pdf", "type": "log"}, False, True),
        ({"format": "pdf"}, False, True),
        ({"format": "zip", "type": "log"}, False, False),
        ({}, False, False),
    ]
    for i, (headers, _, _) in enumerate(cases):
        ch.basic_publish(ex, "ignored", b"%d" % i, pika.BasicProperties(headers=headers))
    all_bodies = {get_one(ch, q_all, auto_ack=True).body for _ in range(ready_count(ch, q_all))}
    any_bodies = {get_one(ch, q_any, auto_ack=True).body for _ in range(ready_count(ch, q_any))}
    assert all_bodies == {b"%d" % i for i, c in enumerate(cases) if c[1]}
    assert any_bodies == {b"%d" % i for i, c in enumerate(cases) if c[2]}


def test_fanout_and_exchange_to_exchange_binding(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    src, dst = unique("src-topic"), unique("dst-fanout")
    ch.exchange_declare(src, exchange_type="topic")
    ch.exchange_declare(dst, exchange_type="fanout")
    ch.exchange_bind(destination=dst, source=src, routing_key="orders.*")
    q1, q2, direct_q = declare_queue(ch, "f1"), declare_queue(ch, "f2"), declare_queue(ch, "src")
    ch.queue_bind(q1, dst)
    ch.queue_bind(q2, dst)
    ch.queue_bind(direct_q, src, routing_key="#")
    ch.basic_publish(src, "orders.new", b"via-e2e")
    ch.basic_publish(src, "invoices.new", b"not-for-dst")
    for q in (q1, q2):
        assert get_one(ch, q, auto_ack=True).body == b"via-e2e"
        assert_empty(ch, q)
    assert {get_one(ch, direct_q, auto_ack=True).body for _ in range(2)} == {
        b"via-e2e",
        b"not-for-dst",
    }
    ch.exchange_unbind(destination=dst, source=src, routing_key="orders.*")
    ch.basic_publish(src, "orders.new", b"after-unbind")
    assert_empty(ch, q1)
    # a message is delivered once per queue even when two routes reach it
    ch.exchange_bind(destination=dst, source=src, routing_key="#")
    ch.queue_bind(q1, src, routing_key="#")
    ch.basic_publish(src, "x", b"twice-routed")
    assert get_one(ch, q1, auto_ack=True).body == b"twice-routed"
    assert_empty(ch, q1)


# --- consumers, prefetch, settles ------------------------------------------------------------


def test_consume_with_prefetch_and_multiple_ack(connect: Connect) -> None:
    conn = connect()
    ch = confirmed_channel(conn)
    q = declare_queue(ch)
    for i in range(12):
        ch.basic_publish("", q, b"%02d" % i)
    ch.basic_qos(prefetch_count=5)
    seen: list[Got] = []
    tag = ch.basic_consume(q, lambda _c, m, p, b: seen.append(Got(m, p, b)))
    wait_until(conn, lambda: len(seen) >= 5, what="5 deliveries")
    settle_window(conn, 0.3)
    assert len(seen) == 5, "prefetch_count=5 must cap unacked deliveries at 5"
    ch.basic_ack(seen[4].tag, multiple=True)
    wait_until(conn, lambda: len(seen) >= 10, what="the next 5 deliveries")
    settle_window(conn, 0.3)
    assert len(seen) == 10
    ch.basic_ack(seen[9].tag, multiple=True)
    wait_until(conn, lambda: len(seen) == 12, what="the last 2 deliveries")
    ch.basic_ack(seen[11].tag, multiple=True)
    assert [g.body for g in seen] == [b"%02d" % i for i in range(12)]
    assert [g.tag for g in seen] == list(range(1, 13))
    assert all(g.method.consumer_tag == tag for g in seen)
    ch.basic_cancel(tag)
    assert ready_count(ch, q) == 0


def test_nack_multiple_requeue_and_reject(connect: Connect) -> None:
    conn = connect()
    ch = confirmed_channel(conn)
    q = declare_queue(ch)
    for i in range(4):
        ch.basic_publish("", q, b"%d" % i)
    first = get_n(ch, q, 4)
    assert [g.redelivered for g in first] == [False] * 4
    ch.basic_nack(first[2].tag, multiple=True, requeue=True)  # 0, 1, 2 back to the queue
    ch.basic_reject(first[3].tag, requeue=False)  # 3 discarded (no dead-letter exchange)
    again = get_n(ch, q, 3)
    # requeued messages keep their queue position and are marked redelivered
    assert [g.body for g in again] == [b"0", b"1", b"2"]
    assert all(g.redelivered for g in again)
    ch.basic_reject(again[0].tag, requeue=True)
    last = get_one(ch, q)
    assert last.body == b"0" and last.redelivered
    ch.basic_nack(0, multiple=True, requeue=False)  # delivery-tag 0 + multiple: everything
    assert_empty(ch, q)
    assert ready_count(ch, q) == 0


def test_ack_of_unknown_delivery_tag_is_406_and_connection_survives(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.basic_ack(999)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(unique("after"))  # any synchronous call sees the close
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 999"
    assert conn.is_open and conn.channel().is_open


def test_basic_recover_requeues_unacked(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    q = declare_queue(ch)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    got = get_n(ch, q, 2)
    assert not any(g.redelivered for g in got)
    ch.basic_recover(requeue=True)
    again = get_n(ch, q, 2)
    assert [g.body for g in again] == [b"a", b"b"]
    assert all(g.redelivered for g in again)
    ch.basic_ack(again[1].tag, multiple=True)
    assert ready_count(ch, q) == 0


def test_qos_per_consumer_and_global(connect: Connect) -> None:
    """RabbitMQ's reading of basic.qos: global=false limits each new consumer, global=true
    limits the channel as a whole (shared by its consumers)."""
    conn = connect()
    pub = confirmed_channel(conn)
    q = declare_queue(pub)
    for i in range(20):
        pub.basic_publish("", q, b"%d" % i)

    per_consumer = conn.channel()
    per_consumer.basic_qos(prefetch_count=2, global_qos=False)
    a: list[int] = []
    b: list[int] = []
    per_consumer.basic_consume(q, lambda _c, m, _p, _b: a.append(m.delivery_tag))
    per_consumer.basic_consume(q, lambda _c, m, _p, _b: b.append(m.delivery_tag))
    wait_until(conn, lambda: len(a) + len(b) >= 4, what="2 deliveries per consumer")
    settle_window(conn)
    assert (len(a), len(b)) == (2, 2)
    per_consumer.close()  # unacked go back

    shared = conn.channel()
    shared.basic_qos(prefetch_count=3, global_qos=True)
    c: list[int] = []
    d: list[int] = []
    shared.basic_consume(q, lambda _c, m, _p, _b: c.append(m.delivery_tag))
    shared.basic_consume(q, lambda _c, m, _p, _b: d.append(m.delivery_tag))
    wait_until(conn, lambda: len(c) + len(d) >= 3, what="3 deliveries on the channel")
    settle_window(conn)
    assert len(c) + len(d) == 3
    shared.basic_ack(max(c + d), multiple=True)
    wait_until(conn, lambda: len(c) + len(d) >= 6, what="3 more after the ack")
    settle_window(conn)
    assert len(c) + len(d) == 6
    shared.close()
    assert ready_count(pub, q) == 17


def test_consumer_cancel_notification_when_queue_deleted(connect: Connect) -> None:
    conn = connect()
    consumer_ch = conn.channel()
    q = declare_queue(consumer_ch)
    cancelled: list[Any] = []
    consumer_ch.add_on_cancel_callback(cancelled.append)
    tag = consumer_ch.basic_consume(q, lambda *_: None)
    other = connect().channel()
    assert other.queue_delete(q).method.message_count == 0
    wait_until(conn, lambda: bool(cancelled), what="basic.cancel from the broker")
    assert cancelled[0].method.consumer_tag == tag
    assert consumer_ch.is_open
    assert consumer_ch.consumer_tags == []


def test_exclusive_consumer_refuses_others_with_403(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    q = declare_queue(ch)
    ch.basic_consume(q, lambda *_: None, exclusive=True)
    other = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        other.basic_consume(q, lambda *_: None)
    assert info.value.reply_code == 403
    assert info.value.reply_text == (f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")
    assert ch.is_open


# --- queue properties ------------------------------------------------------------------------


def test_server_named_exclusive_auto_delete_queues(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True)
    name = ok.method.queue
    assert name.startswith("amq.gen-") and len(name) > len("amq.gen-")
    assert ok.method.message_count == 0 and ok.method.consumer_count == 0

    other_conn = connect()
    other = other_conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        other.queue_declare(name, passive=True)
    assert info.value.reply_code == 405
    assert info.value.reply_text == (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'."
        " It could be originally declared on another connection or the exclusive property value"
        " does not match that of the original declaration."
    )

    auto = unique("auto")
    ch.queue_declare(auto, auto_delete=True)
    tag = ch.basic_consume(auto, lambda *_: None)
    ch.basic_cancel(tag)  # the last consumer goes: the queue goes
    check = other_conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        check.queue_declare(auto, passive=True)
    assert info.value.reply_code == 404

    conn.close()  # the exclusive queue goes with its connection
    check = other_conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        check.queue_declare(name, passive=True)
    assert info.value.reply_code == 404


def test_reserved_amq_prefix_is_403(connect: Connect) -> None:
    conn = connect()
    with pytest.raises(ChannelClosedByBroker) as info:
        conn.channel().queue_declare("amq.mine")
    assert info.value.reply_code == 403
    assert info.value.reply_text == (
        "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    )
    with pytest.raises(ChannelClosedByBroker) as info:
        conn.channel().exchange_declare("amq.mine", exchange_type="direct")
    assert info.value.reply_code == 403
    assert info.value.reply_text == (
        "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'"
    )
    assert conn.is_open


def test_passive_declare_missing_is_404_channel_close_only(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    missing = unique("missing")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(missing, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no queue '{missing}' in vhost '/'"
    assert ch.is_closed and conn.is_open
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(missing, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no exchange '{missing}' in vhost '/'"
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_bind(unique("nope"), "amq.direct")
    assert info.value.reply_code == 404
    assert conn.is_open
    q = declare_queue(ch := confirmed_channel(conn))
    ch.basic_publish("", q, b"still fine")
    assert get_one(ch, q).body == b"still fine"


def test_redeclare_with_different_properties_is_406(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    q = declare_queue(ch, durable=False)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(q, durable=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/':"
        " received 'true' but current is 'false'"
    )
    ex = unique("ex")
    ch = conn.channel()
    ch.exchange_declare(ex, exchange_type="direct")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(ex, exchange_type="topic")
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{ex}' in vhost '/':"
        " received 'topic' but current is 'direct'"
    )
    assert conn.is_open


def test_purge_and_conditional_delete(connect: Connect) -> None:
    conn = connect()
    ch = confirmed_channel(conn)
    q = declare_queue(ch)
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_delete(q, if_empty=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"
    assert conn.is_open

    ch = conn.channel()
    assert ch.queue_purge(q).method.message_count == 5
    assert ready_count(ch, q) == 0

    consumer = conn.channel()
    consumer.basic_consume(q, lambda *_: None)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_delete(q, if_unused=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"
    assert conn.is_open and consumer.is_open

    ch = conn.channel()
    consumer.close()
    assert ch.queue_delete(q, if_unused=True, if_empty=True).method.message_count == 0
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(q, passive=True)
    assert info.value.reply_code == 404
    # deleting what is not there is fine (idempotent delete)
    conn.channel().queue_delete(q)


def test_ttl_and_dead_letter_with_x_death(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    dlx = unique("dlx")
    ch.exchange_declare(dlx, exchange_type="direct")
    dead = declare_queue(ch, "dead")
    ch.queue_bind(dead, dlx, routing_key="dead")
    src = declare_queue(
        ch,
        "ttl",
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": dlx,
            "x-dead-letter-routing-key": "dead",
        },
    )
    ch.basic_publish("", src, b"expires", pika.BasicProperties(headers={"mine": "kept"}))
    got = get_one(ch, dead, timeout=10)
    assert got.body == b"expires"
    headers = got.properties.headers
    assert headers["mine"] == "kept"
    death = headers["x-death"]
    assert isinstance(death, list) and len(death) == 1
    assert death[0]["reason"] == "expired"
    assert death[0]["queue"] == src
    assert death[0]["exchange"] == ""
    assert death[0]["routing-keys"] == [src]
    assert death[0]["count"] == 1
    assert headers["x-first-death-reason"] == "expired"
    assert headers["x-first-death-queue"] == src
    assert got.method.exchange == dlx and got.method.routing_key == "dead"
    ch.basic_ack(got.tag)
    assert ready_count(ch, src) == 0

    # per-message expiration, and a rejected message, on a queue without a TTL of its own
    plain = declare_queue(ch, "dl-plain", arguments={"x-dead-letter-exchange": dlx})
    ch.queue_bind(dead, dlx, routing_key=plain)
    ch.basic_publish("", plain, b"short-lived", pika.BasicProperties(expiration="50"))
    got = get_one(ch, dead, timeout=10)
    assert got.body == b"short-lived"
    entry = got.properties.headers["x-death"][0]
    assert entry["reason"] == "expired" and entry["original-expiration"] == "50"
    assert got.properties.expiration is None
    ch.basic_ack(got.tag)

    ch.basic_publish("", plain, b"refused")
    victim = get_one(ch, plain)
    ch.basic_reject(victim.tag, requeue=False)
    got = get_one(ch, dead)
    assert got.body == b"refused"
    assert got.properties.headers["x-death"][0]["reason"] == "rejected"
    assert got.properties.headers["x-death"][0]["queue"] == plain


def test_max_length_drops_head_or_rejects_publish(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    q = declare_queue(ch, "maxlen", arguments={"x-max-length": 3})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    assert ready_count(ch, q) == 3
    assert [g.body for g in get_n(ch, q, 3)] == [b"2", b"3", b"4"]

    strict = declare_queue(
        ch, "maxlen-reject", arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
    )
    ch.basic_publish("", strict, b"a")
    ch.basic_publish("", strict, b"b")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", strict, b"c")
    assert [g.body for g in get_n(ch, strict, 2)] == [b"a", b"b"]


def test_priority_queue_delivers_highest_first(connect: Connect) -> None:
    ch = confirmed_channel(connect())
    q = declare_queue(ch, "prio", arguments={"x-max-priority": 10})
    order = [(1, b"p1"), (5, b"p5a"), (9, b"p9"), (0, b"p0"), (5, b"p5b"), (None, b"none")]
    for priority, body in order:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=priority))
    got = [g.body for g in get_n(ch, q, len(order))]
    # equal priorities keep publish order; no priority counts as 0
    assert got == [b"p9", b"p5a", b"p5b", b"p1", b"p0", b"none"]


# --- transactions ----------------------------------------------------------------------------


def test_tx_commit_and_rollback_of_publishes_and_acks(connect: Connect) -> None:
    conn = connect()
    observer = conn.channel()
    tx = conn.channel()
    q = declare_queue(observer)
    tx.tx_select()
    tx.basic_publish("", q, b"rolled-back-1")
    tx.basic_publish("", q, b"rolled-back-2")
    assert ready_count(observer, q) == 0  # nothing visible before commit
    tx.tx_rollback()
    assert ready_count(observer, q) == 0
    tx.basic_publish("", q, b"committed-1")
    tx.basic_publish("", q, b"committed-2")
    tx.tx_commit()
    assert ready_count(observer, q) == 2

    got = get_one(tx, q)
    assert got.body == b"committed-1"
    tx.basic_ack(got.tag)
    tx.tx_rollback()  # the ack is discarded: the message stays unacked on the channel
    tx.close()
    assert ready_count(observer, q) == 2

    tx = conn.channel()
    tx.tx_select()
    got = get_one(tx, q)
    assert got.body == b"committed-1" and got.redelivered
    tx.basic_ack(got.tag)
    tx.tx_commit()
    tx.close()
    assert ready_count(observer, q) == 1
    assert get_one(observer, q).body == b"committed-2"


def test_confirm_select_on_tx_channel_is_406(connect: Connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.confirm_delivery()
    assert info.value.reply_code == 406
    assert info.value.reply_text == ("PRECONDITION_FAILED - cannot switch from tx to confirm mode")
    assert conn.is_open


# --- a second client keeps working while the first one misbehaves ------------------------------


def test_errors_on_one_client_leave_another_untouched(connect: Connect) -> None:
    steady_conn = connect()
    steady = confirmed_channel(steady_conn)
    q = declare_queue(steady, "steady")
    received: list[bytes] = []
    listener = steady_conn.channel()
    listener.basic_consume(q, lambda c, m, _p, b: (received.append(b), c.basic_ack(m.delivery_tag)))

    def round_trip(n: int) -> None:
        steady.basic_publish("", q, b"steady-%d" % n)
        wait_until(steady_conn, lambda: len(received) == n + 1, what=f"steady message {n}")

    round_trip(0)
    bad = connect()
    for provoke in (
        lambda ch: ch.queue_declare(unique("missing"), passive=True),  # 404
        lambda ch: ch.queue_declare("amq.forbidden"),  # 403
        lambda ch: ch.basic_ack(12345) or ch.queue_declare(unique("x")),  # 406
        lambda ch: ch.queue_declare(q, durable=True),  # 406 inequivalent
    ):
        with pytest.raises(ChannelClosedByBroker):
            provoke(bad.channel())
        assert bad.is_open
    round_trip(1)

    # a connection-level error: an unknown exchange type is 503 COMMAND_INVALID
    with pytest.raises(ConnectionClosedByBroker) as info:
        bad.channel().exchange_declare(unique("weird"), exchange_type="no-such-type")
    assert info.value.reply_code == 503
    assert info.value.reply_text == "COMMAND_INVALID - unknown exchange type 'no-such-type'"
    assert bad.is_closed
    round_trip(2)
    assert received == [b"steady-0", b"steady-1", b"steady-2"]
    assert steady_conn.is_open and listener.is_open
