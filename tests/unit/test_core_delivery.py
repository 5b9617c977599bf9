"""Consumers, prefetch, settle, requeue order, GET and leases, priority, sessions."""

from __future__ import annotations

from broker.core import commands as C
from tests.unit.core_helpers import Harness, V


def fill(h: Harness, queue: str, n: int, props: dict | None = None) -> None:
    h.publish_many("", [(queue, str(i).encode(), props) for i in range(n)])


def test_round_robin_one_effect_per_consumer() -> None:
    h = Harness()
    h.queue("q")
    h.consume(1, "q", "a")
    h.consume(2, "q", "b")
    fill(h, "q", 6)
    effects = [e for e in h.effects if e[0] == "deliver"]
    assert [(e[1], e[2]) for e in effects] == [(1, "a"), (2, "b")]
    assert h.bodies("a") == [b"0", b"2", b"4"]
    assert h.bodies("b") == [b"1", b"3", b"5"]
    d = h.deliveries("a")[0]
    assert d[1:6] == (False, 1, "", "q", {})


def test_consumer_priority() -> None:
    h = Harness()
    h.queue("q")
    h.consume(1, "q", "low", prefetch=10)
    h.consume(2, "q", "high", prefetch=2, arguments={"x-priority": 5})
    fill(h, "q", 5)
    assert h.bodies("high") == [b"0", b"1"]
    assert h.bodies("low") == [b"2", b"3", b"4"]


def test_prefetch_per_consumer_and_ack_frees_credit() -> None:
    h = Harness()
    h.queue("q")
    h.consume(1, "q", "c", prefetch=2)
    fill(h, "q", 5)
    ids = [d[0] for d in h.deliveries()]
    assert len(ids) == 2 and h.ready("q") == 3
    assert h.settle(1, C.SETTLE_COMPLETE, ids[:1]) == 1
    assert h.bodies() == [b"2"]
    info = h.m.queue_info(V, "q")
    assert info["messages_unacked"] == 2 and info["messages_ready"] == 2


def test_session_prefetch() -> None:
    h = Harness()
    h.queue("q1")
    h.queue("q2")
    h.ok(C.cmd_session_prefetch(1, 3))
    h.consume(1, "q1", "a", prefetch=2)
    h.consume(1, "q2", "b")
    fill(h, "q1", 5)
    fill(h, "q2", 5)
    held = list(h.m.sessions[1].unacked)
    assert len(held) == 3
    assert h.m.queue_info(V, "q1")["messages_unacked"] == 2
    h.settle(1, C.SETTLE_COMPLETE, held)
    assert len(h.deliveries()) == 3
    h.ok(C.cmd_session_prefetch(1, 0))
    assert h.ready("q2") == 0
    assert h.m.queue_info(V, "q1")["messages_unacked"] == 2


def test_no_ack_consumer() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 3)
    h.consume(1, "q", "c", no_ack=True, prefetch=1)
    assert h.bodies() == [b"0", b"1", b"2"]
    info = h.m.queue_info(V, "q")
    assert info["messages"] == 0
    assert h.m.sessions[1].unacked == {}


def test_consume_errors() -> None:
    h = Harness()
    h.err(C.cmd_consume(1, V, "nope", "c"), 404)
    h.queue("q")
    h.consume(1, "q", "c")
    e = h.err(C.cmd_consume(1, V, "q", "c"), 530)
    assert e.text == "NOT_ALLOWED - attempt to reuse consumer tag 'c'"
    e = h.err(C.cmd_consume(2, V, "q", "x", exclusive=True), 403)
    assert e.text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    h.queue("q2")
    h.consume(2, "q2", "x", exclusive=True)
    h.err(C.cmd_consume(3, V, "q2", "y"), 403)
    h.err(C.cmd_consume(3, V, "q2", "y", arguments={"x-priority": "hi"}), 403)
    h.ok(C.cmd_cancel(2, "x"))
    h.consume(3, "q2", "y")


def test_requeue_goes_back_to_original_position() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 5)
    h.consume(1, "q", "c", prefetch=3)
    ids = [d[0] for d in h.deliveries()]
    assert h.bodies() == [b"0", b"1", b"2"]
    h.ok(C.cmd_cancel(1, "c"))
    # requeue 2 then 0: they return before the never-delivered 3, 4 in original order
    h.settle(1, C.SETTLE_REQUEUE, [ids[2], ids[0]])
    h.consume(2, "q", "d", no_ack=True)
    ds = h.deliveries()
    assert [d[6] for d in ds] == [b"0", b"2", b"3", b"4"]
    assert [(d[1], d[2]) for d in ds] == [(True, 2), (True, 2), (False, 1), (False, 1)]
    # the one still held by session 1 returns on session down, redelivered
    h.ok(C.cmd_session_down(1))
    assert [(d[6], d[1], d[2]) for d in h.deliveries()] == [(b"1", True, 2)]


def test_settle_unknown_and_discard_without_dlx() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 2)
    h.consume(1, "q", "c")
    ids = [d[0] for d in h.deliveries()]
    e = h.err(C.cmd_settle(1, C.SETTLE_COMPLETE, [ids[0], 12345]), 406)
    assert e.text == "PRECONDITION_FAILED - unknown delivery tag"
    h.err(C.cmd_settle(2, C.SETTLE_COMPLETE, [ids[0]]), 406)
    h.err(C.cmd_settle(1, C.SETTLE_COMPLETE, [ids[0], ids[0]]), 406)
    h.err(C.cmd_settle(1, 9, [ids[0]]), 503)
    assert h.settle(1, C.SETTLE_DISCARD, ids) == 2
    assert h.m.queue_info(V, "q")["messages"] == 0
    h.err(C.cmd_settle(1, C.SETTLE_COMPLETE, [ids[0]]), 406)


def test_get_without_lease() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 3)
    out, remaining = h.get(1, "q", max_n=2)
    assert [d[6] for d in out] == [b"0", b"1"] and remaining == 1
    out2, remaining = h.get(2, "q", no_ack=True)
    assert [d[6] for d in out2] == [b"2"] and remaining == 0
    assert h.get(2, "q") == [[], 0]
    h.tick(10**9)
    assert h.m.queue_info(V, "q")["messages_unacked"] == 2
    h.settle(1, C.SETTLE_REQUEUE, [out[1][0]])
    out3, _ = h.get(3, "q", no_ack=True)
    assert out3[0][6] == b"1" and out3[0][1] is True and out3[0][2] == 2
    h.err(C.cmd_get(1, V, "nope"), 404)


def test_get_lease_expiry_and_modify() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 2)
    out, _ = h.get(1, "q", max_n=2, lease_ms=1000, t=1000)
    assert h.m.next_deadline() == 2001
    assert not h.m.durable_due(2000)
    # extend one lease (SQS ChangeMessageVisibility)
    h.settle(1, C.SETTLE_MODIFY, [out[1][0]], 5000, t=1500)
    h.tick(2000)
    assert h.ready("q") == 0
    assert h.m.durable_due(2001)
    h.tick(2001)
    assert h.ready("q") == 1
    assert h.m.sessions[1].unacked.keys() == {out[1][0]}
    # a lapsed lease cannot be settled any more
    h.err(C.cmd_settle(1, C.SETTLE_COMPLETE, [out[0][0]]), 406)
    h.tick(6500)
    assert h.ready("q") == 2
    again, _ = h.get(2, "q", max_n=5, no_ack=True)
    assert [(d[6], d[1], d[2]) for d in again] == [(b"0", True, 2), (b"1", True, 2)]
    assert h.m.sessions == {}


def test_modify_zero_delay_returns_now() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 1)
    h.consume(1, "q", "c")
    mid = h.deliveries()[0][0]
    h.settle(1, C.SETTLE_MODIFY, [mid], 0)
    assert h.deliveries()[0][:3] == (mid, True, 2)


def test_modify_delay_on_consumer_frees_credit() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 2)
    h.consume(1, "q", "c", prefetch=1, t=2000)
    mid = h.deliveries()[0][0]
    h.settle(1, C.SETTLE_MODIFY, [mid], 50, t=2000)
    assert h.bodies() == [b"1"]
    h.tick(2049)
    assert h.ready("q") == 0
    h.tick(2050)
    assert h.ready("q") == 1
    h.settle(1, C.SETTLE_COMPLETE, [next(iter(h.m.sessions[1].unacked))])
    assert h.bodies() == [b"0"]


def test_priority_queue() -> None:
    h = Harness()
    h.queue("pq", arguments={"x-max-priority": 5})
    h.publish_many(
        "",
        [
            ("pq", b"p0", None),
            ("pq", b"p3", {"priority": 3}),
            ("pq", b"p9", {"priority": 9}),
            ("pq", b"p3b", {"priority": 3}),
            ("pq", b"p1", {"priority": 1}),
        ],
    )
    out, _ = h.get(1, "pq", max_n=10)
    assert [d[6] for d in out] == [b"p9", b"p3", b"p3b", b"p1", b"p0"]
    h.settle(1, C.SETTLE_REQUEUE, [out[4][0], out[1][0]])
    h.publish("", "pq", b"new3", {"priority": 3})
    out, _ = h.get(2, "pq", max_n=10, no_ack=True)
    assert [d[6] for d in out] == [b"p3", b"new3", b"p0"]
    # no x-max-priority: priority ignored, FIFO
    h.queue("fifo")
    h.publish_many("", [("fifo", b"a", None), ("fifo", b"b", {"priority": 9})])
    assert [d[6] for d in h.get(2, "fifo", max_n=2, no_ack=True)[0]] == [b"a", b"b"]


def test_delivery_limit() -> None:
    h = Harness()
    h.queue("dlq")
    h.queue(
        "q",
        arguments={
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    h.publish("", "q", b"m")
    for expected_count in (1, 2, 3):
        assert h.ready("dlq") == 0
        (d,), _ = h.get(1, "q")
        assert d[2] == expected_count
        h.settle(1, C.SETTLE_REQUEUE, [d[0]])
    assert h.ready("q") == 0 and h.ready("dlq") == 1
    (d,), _ = h.get(1, "dlq", no_ack=True)
    assert d[5]["headers"]["x-death"][0]["reason"] == "delivery_limit"
    assert d[2] == 1  # a dead-lettered copy starts counting again
    # without a DLX it is dropped; leases expiring count too
    h.queue("q2", arguments={"x-delivery-limit": 1})
    h.publish("", "q2", b"m")
    h.get(1, "q2", lease_ms=10, t=2000)
    h.tick(2011)
    assert h.m.queue_info(V, "q2")["messages"] == 1  # delivered once: not more than the limit
    h.get(1, "q2", lease_ms=10, t=2020)
    h.tick(2031)
    assert h.m.queue_info(V, "q2")["messages"] == 0


def test_sessions_reset_returns_everything() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 4)
    h.consume(1, "q", "a", prefetch=1)
    h.consume(2, "q", "b", prefetch=1)
    h.get(3, "q", lease_ms=100)
    h.queue("ex", session=4, exclusive=True)
    assert h.ready("q") == 1
    h.ok(C.cmd_sessions_reset())
    assert h.m.sessions == {}
    assert not h.m.queue_exists(V, "ex")
    info = h.m.queue_info(V, "q")
    assert (info["messages_ready"], info["messages_unacked"], info["consumers"]) == (4, 0, 0)
    out, _ = h.get(5, "q", max_n=4, no_ack=True)
    assert [d[6] for d in out] == [b"0", b"1", b"2", b"3"]
    assert [d[1] for d in out] == [True, True, True, False]


def test_cancel_keeps_unacked_until_settled() -> None:
    h = Harness()
    h.queue("q")
    fill(h, "q", 2)
    h.consume(1, "q", "c", prefetch=1)
    mid = h.deliveries()[0][0]
    h.ok(C.cmd_cancel(1, "c"))
    assert h.m.queue_info(V, "q")["messages_unacked"] == 1
    h.settle(1, C.SETTLE_COMPLETE, [mid])
    assert h.m.sessions == {}
