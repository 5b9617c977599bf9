"""Message TTL, dead-lettering (x-death), max-length overflow modes."""

from __future__ import annotations

from broker.core import commands as C
from tests.unit.core_helpers import Harness, V


def dlx_setup(h: Harness, qargs: dict) -> None:
    h.exchange("dlx", "fanout")
    h.queue("dead")
    h.bind("dlx", "dead")
    h.queue("q", arguments={"x-dead-letter-exchange": "dlx", **qargs})


def test_queue_ttl_expires_at_head_via_tick() -> None:
    h = Harness()
    h.queue("q", arguments={"x-message-ttl": 100})
    h.publish("", "q", b"a", t=1000)
    h.publish("", "q", b"b", t=1050)
    assert h.m.next_deadline() == 1101
    h.tick(1100)
    assert h.ready("q") == 2
    assert h.m.durable_due(1101)
    h.tick(1101)
    assert h.ready("q") == 1
    h.tick(1151)
    assert h.ready("q") == 0
    assert h.m.next_deadline() is None


def test_per_message_expiration_smaller_wins_and_never_delivered() -> None:
    h = Harness()
    h.queue("q", arguments={"x-message-ttl": 1000})
    h.publish("", "q", b"short", {"expiration": "10"}, t=1000)
    h.publish("", "q", b"long", {"expiration": "5000"}, t=1000)
    # the smaller (queue 1000 ms) applies to "long"; "short" dies after 10 ms
    h.consume(1, "q", "c", t=1011)  # no tick in between: expired head is dropped, not sent
    assert h.bodies() == [b"long"]


def test_expired_non_head_waits_for_head() -> None:
    h = Harness()
    h.queue("q")
    h.publish("", "q", b"keep", t=1000)
    h.publish("", "q", b"exp", {"expiration": "10"}, t=1000)
    h.tick(1100)
    assert h.ready("q") == 2  # only heads expire
    h.get(1, "q", no_ack=True)
    assert h.ready("q") == 1
    assert h.m.next_deadline() is not None and h.m.next_deadline() <= 1100
    h.tick(1101)
    assert h.ready("q") == 0


def test_ttl_zero_delivered_only_when_consumer_ready() -> None:
    h = Harness()
    dlx_setup(h, {"x-message-ttl": 0})
    h.publish("", "q", b"nobody")
    assert h.ready("q") == 0 and h.ready("dead") == 1
    h.consume(1, "q", "c", prefetch=1)
    h.publish("", "q", b"taken")
    assert h.bodies() == [b"taken"]
    h.publish("", "q", b"no-credit")
    assert h.ready("q") == 0 and h.ready("dead") == 2


def test_dlx_x_death_and_expiration_removed() -> None:
    h = Harness()
    dlx_setup(h, {"x-message-ttl": 50})
    h.exchange("src", "direct")
    h.bind("src", "q", "rk")
    h.publish("src", "rk", b"m", {"expiration": "20", "headers": {"h": 1}}, t=5000)
    props_in_q = h.m.vhosts[V].queues["q"].levels[0].fresh[0].props
    h.tick(5021)
    (d,), _ = h.get(1, "dead", no_ack=True)
    props = d[5]
    assert "expiration" not in props
    assert props_in_q["expiration"] == "20"  # the original dict is never mutated
    hd = props["headers"]
    assert hd["h"] == 1
    assert hd["x-death"] == [
        {
            "count": 1,
            "reason": "expired",
            "queue": "q",
            "time": 5,
            "exchange": "src",
            "routing-keys": ["rk"],
            "original-expiration": "20",
        }
    ]
    assert (
        hd["x-first-death-queue"],
        hd["x-first-death-reason"],
        hd["x-first-death-exchange"],
    ) == ("q", "expired", "src")
    assert (hd["x-last-death-queue"], hd["x-last-death-reason"]) == ("q", "expired")
    assert d[3] == "dlx" and d[4] == "rk"


def test_dlx_routing_key_override_and_missing_dlx() -> None:
    h = Harness()
    h.queue("target")
    h.queue("q", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "target"})
    h.publish("", "q", b"m")
    (d,), _ = h.get(1, "q")
    h.settle(1, C.SETTLE_DISCARD, [d[0]])
    (d2,), _ = h.get(1, "target", no_ack=True)
    assert d2[4] == "target" and d2[5]["headers"]["x-death"][0]["reason"] == "rejected"
    h.queue("q2", arguments={"x-dead-letter-exchange": "missing"})
    h.publish("", "q2", b"m")
    (d,), _ = h.get(1, "q2")
    h.settle(1, C.SETTLE_DISCARD, [d[0]])
    assert h.m.queue_info(V, "q2")["messages"] == 0


def test_dlx_cycle_count_increments_with_rejects() -> None:
    h = Harness()
    # a --reject--> b (ttl) --expire--> a: allowed because the cycle contains a rejection
    h.queue("a", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "b"})
    h.queue(
        "b",
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "a",
            "x-message-ttl": 10,
        },
    )
    h.publish("", "a", b"m", t=1000)
    for _ in (1, 2):
        (d,), _ = h.get(1, "a")
        h.settle(1, C.SETTLE_DISCARD, [d[0]])
        h.tick(h.time + 11)
        assert h.ready("a") == 1
    (d,), _ = h.get(1, "a", no_ack=True)
    deaths = d[5]["headers"]["x-death"]
    assert [(x["queue"], x["reason"], x["count"]) for x in deaths] == [
        ("b", "expired", 2),
        ("a", "rejected", 2),
    ]
    hd = d[5]["headers"]
    assert hd["x-first-death-queue"] == "a" and hd["x-first-death-reason"] == "rejected"
    assert hd["x-last-death-queue"] == "b" and hd["x-last-death-reason"] == "expired"


def test_dlx_automatic_cycle_is_dropped() -> None:
    h = Harness()
    h.queue("self", arguments={"x-dead-letter-exchange": "", "x-message-ttl": 5})
    h.publish("", "self", b"m", t=1000)
    h.tick(1006)
    assert h.m.queue_info(V, "self")["messages"] == 0


def test_max_length_drop_head_dead_letters() -> None:
    h = Harness()
    dlx_setup(h, {"x-max-length": 2})
    h.publish_many("", [("q", b"1", None), ("q", b"2", None), ("q", b"3", None)])
    assert h.ready("q") == 2
    (d,), _ = h.get(1, "dead", no_ack=True)
    assert d[6] == b"1" and d[5]["headers"]["x-death"][0]["reason"] == "maxlen"
    assert [x[6] for x in h.get(1, "q", max_n=5, no_ack=True)[0]] == [b"2", b"3"]


def test_max_length_bytes_drop_head() -> None:
    h = Harness()
    h.queue("q", arguments={"x-max-length-bytes": 10})
    h.publish_many("", [("q", b"aaaa", None), ("q", b"bbbb", None), ("q", b"cccc", None)])
    info = h.m.queue_info(V, "q")
    assert info["messages_ready"] == 2 and info["bytes"] == 8
    h.publish("", "q", b"x" * 11)
    assert h.m.queue_info(V, "q")["messages_ready"] == 0


def test_max_length_with_consumer_does_not_drop() -> None:
    h = Harness()
    h.queue("q", arguments={"x-max-length": 1})
    h.consume(1, "q", "c")
    h.publish_many("", [("q", str(i).encode(), None) for i in range(5)])
    assert len(h.deliveries()) == 5


def test_reject_publish() -> None:
    h = Harness()
    dlx_setup(h, {"x-max-length": 1, "x-overflow": "reject-publish"})
    reply = h.publish_many("", [("q", b"1", None), ("q", b"2", None), ("q", b"3", None)])
    assert reply == [[1, 1, 1], [1, 2]]
    assert h.ready("q") == 1 and h.ready("dead") == 0
    # a fanout to q and another queue: the message is still nacked
    h.queue("other")
    h.exchange("f", "fanout")
    h.bind("f", "q")
    h.bind("f", "other")
    assert h.publish("f", "") == [[2], [0]]
    assert h.ready("other") == 1


def test_reject_publish_dlx() -> None:
    h = Harness()
    dlx_setup(h, {"x-max-length-bytes": 3, "x-overflow": "reject-publish-dlx"})
    reply = h.publish_many("", [("q", b"abc", None), ("q", b"d", None)])
    assert reply == [[1, 1], [1]]
    (d,), _ = h.get(1, "dead", no_ack=True)
    assert d[6] == b"d" and d[5]["headers"]["x-death"][0]["reason"] == "maxlen"
