"""Declarations: equivalence, errors, exclusive, auto-delete, x-expires, purge, delete."""

from __future__ import annotations

import pytest

from broker.core import commands as C
from broker.core.model import CoreError
from tests.unit.core_helpers import Harness, V


def test_default_exchanges_exist() -> None:
    h = Harness()
    names = [x["name"] for x in h.m.list_exchanges(V)]
    assert names == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic"]
    assert all(x["durable"] for x in h.m.list_exchanges(V))
    h.ok(C.cmd_declare_exchange(V, "amq.direct", "direct", passive=True))
    h.ok(C.cmd_declare_exchange(V, "", "direct", passive=True))


def test_exchange_declare_errors() -> None:
    h = Harness()
    h.err(C.cmd_declare_exchange(V, "amq.mine", "direct"), 403)
    h.err(C.cmd_declare_exchange(V, "amq.direct", "direct"), 403)
    h.err(C.cmd_declare_exchange(V, "", "direct"), 403)
    e = h.err(C.cmd_declare_exchange(V, "x", "bogus"), 503)
    assert e.text == "COMMAND_INVALID - unknown exchange type 'bogus'"
    h.err(C.cmd_declare_exchange(V, "x", "direct", passive=True), 404)
    h.err(C.cmd_declare_exchange("/nope", "x", "direct"), 530)
    h.exchange("x", "direct")
    h.exchange("x", "direct")
    e = h.err(C.cmd_declare_exchange(V, "x", "fanout"), 406)
    assert e.text == (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )
    h.err(C.cmd_declare_exchange(V, "x", "direct", durable=False), 406)
    h.err(C.cmd_declare_exchange(V, "x", "direct", auto_delete=True), 406)
    h.err(C.cmd_declare_exchange(V, "x", "direct", internal=True), 406)
    h.err(C.cmd_declare_exchange(V, "x", "direct", arguments={"alternate-exchange": "y"}), 406)
    h.ok(C.cmd_declare_exchange(V, "x", "fanout", passive=True))


def test_exchange_delete() -> None:
    h = Harness()
    assert h.ok(C.cmd_delete_exchange(V, "x")) is None  # idempotent, as RabbitMQ
    h.err(C.cmd_delete_exchange(V, "amq.direct"), 403)
    h.exchange("x", "fanout")
    h.queue("q")
    h.bind("x", "q")
    h.err(C.cmd_delete_exchange(V, "x", if_unused=True), 406)
    h.ok(C.cmd_delete_exchange(V, "x"))
    assert not h.m.exchange_exists(V, "x")
    assert h.m.list_bindings(V) == []


def test_queue_declare_reply_and_passive() -> None:
    h = Harness()
    assert h.queue("q") == ["q", 0, 0]
    h.publish("", "q")
    h.publish("", "q")
    h.consume(1, "q", "c", prefetch=1)
    assert h.ok(C.cmd_declare_queue(V, "q", passive=True)) == ["q", 1, 1]
    assert h.queue("q") == ["q", 1, 1]
    e = h.err(C.cmd_declare_queue(V, "missing", passive=True), 404)
    assert e.text == "NOT_FOUND - no queue 'missing' in vhost '/'"
    h.err(C.cmd_declare_queue("/x", "q"), 530)
    h.err(C.cmd_declare_queue(V, "amq.q"), 403)
    assert h.queue("amq.gen-abc") == ["amq.gen-abc", 0, 0]


def test_queue_inequivalent() -> None:
    h = Harness()
    h.queue("q", arguments={"x-message-ttl": 100, "x-custom": 1})
    e = h.err(C.cmd_declare_queue(V, "q", durable=False, arguments={"x-message-ttl": 100}), 406)
    assert e.text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
        "received 'false' but current is 'true'"
    )
    h.err(C.cmd_declare_queue(V, "q", auto_delete=True, arguments={"x-message-ttl": 100}), 406)
    h.err(C.cmd_declare_queue(V, "q", arguments={"x-message-ttl": 200}), 406)
    h.err(C.cmd_declare_queue(V, "q"), 406)
    h.err(
        C.cmd_declare_queue(V, "q", session=1, exclusive=True, arguments={"x-message-ttl": 100}),
        406,
    )
    # unknown x- args are not compared
    h.queue("q", arguments={"x-message-ttl": 100, "x-custom": 2})


@pytest.mark.parametrize(
    "args",
    [
        {"x-message-ttl": -1},
        {"x-message-ttl": "10"},
        {"x-message-ttl": True},
        {"x-expires": 0},
        {"x-max-length": -1},
        {"x-max-length-bytes": 1.5},
        {"x-overflow": "drop-tail"},
        {"x-dead-letter-exchange": 5},
        {"x-dead-letter-routing-key": "k"},
        {"x-max-priority": 256},
        {"x-max-priority": -1},
        {"x-delivery-limit": -2},
        {"x-queue-type": 1},
    ],
)
def test_queue_argument_validation(args: dict) -> None:
    h = Harness()
    e = h.err(C.cmd_declare_queue(V, "q", arguments=args), 406)
    key = next(iter(args))
    assert e.text.startswith(f"PRECONDITION_FAILED - invalid arg '{key}' for queue 'q'")
    assert not h.m.queue_exists(V, "q")


def test_queue_arguments_accepted() -> None:
    h = Harness()
    args = {
        "x-message-ttl": 0,
        "x-expires": 1,
        "x-max-length": 0,
        "x-max-length-bytes": 0,
        "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "k",
        "x-max-priority": 255,
        "x-delivery-limit": 0,
        "x-queue-type": "quorum",
        "x-unknown": [1, 2],
    }
    h.queue("q", arguments=args)
    assert h.m.queue_info(V, "q")["arguments"] == args


def test_exclusive_queue_locks_other_connections() -> None:
    # Session ids carry their connection in the high bits: A and B are two connections' own
    # sessions, A | n their channels.
    a, b = 1 << 16, 2 << 16
    h = Harness()
    h.queue("ex", session=a | 1, exclusive=True)
    info = h.m.queue_info(V, "ex")
    assert info["exclusive"] and info["owner"] == a
    other = b | 1
    locked = [
        C.cmd_declare_queue(V, "ex", session=other, exclusive=True),
        C.cmd_declare_queue(V, "ex", session=other, passive=True),
        C.cmd_consume(other, V, "ex", "t"),
        C.cmd_get(other, V, "ex"),
        C.cmd_bind(V, "amq.direct", "ex", "k", session=other),
        C.cmd_purge_queue(V, "ex", session=other),
        C.cmd_delete_queue(V, "ex", session=other),
    ]
    for cmd in locked:
        e = h.err(cmd, 405)
        assert e.text.startswith(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex' in vhost '/'"
        )
    # another channel of the owning connection may use it
    h.consume(a | 2, "ex", "t")
    h.ok(C.cmd_bind(V, "amq.direct", "ex", "k", session=a | 1))
    # closing the declaring channel keeps the queue; closing the connection removes it
    h.ok(C.cmd_session_down(a | 1))
    h.ok(C.cmd_session_down(a | 2))
    assert h.m.queue_exists(V, "ex")
    h.ok(C.cmd_session_down(a))
    assert not h.m.queue_exists(V, "ex")
    assert h.m.list_bindings(V) == []
    assert h.m.sessions == {}


def test_auto_delete_queue_on_last_cancel() -> None:
    h = Harness()
    h.queue("ad", auto_delete=True)
    h.ok(C.cmd_cancel(1, "none"))  # unknown tag is fine
    h.consume(1, "ad", "a")
    h.consume(2, "ad", "b")
    h.ok(C.cmd_cancel(1, "a"))
    assert h.m.queue_exists(V, "ad")
    h.ok(C.cmd_session_down(2))
    assert not h.m.queue_exists(V, "ad")


def test_queue_expires() -> None:
    h = Harness()
    h.ok(C.cmd_declare_queue(V, "tmp", arguments={"x-expires": 1000}), t=1000)
    assert h.m.next_deadline() == 2000
    h.tick(1500)
    h.ok(C.cmd_declare_queue(V, "tmp", passive=True), t=1800)  # use resets the timer
    h.tick(2100)
    assert h.m.queue_exists(V, "tmp")
    h.consume(1, "tmp", "c", t=2500)
    h.tick(5000)
    assert h.m.queue_exists(V, "tmp")  # consumers keep it
    h.ok(C.cmd_cancel(1, "c"), t=5000)
    h.get(2, "tmp", no_ack=True, t=5500)
    h.tick(6499)
    assert h.m.queue_exists(V, "tmp")
    assert h.m.durable_due(6500)
    h.tick(6500)
    assert not h.m.queue_exists(V, "tmp")
    assert h.m.next_deadline() is None


def test_purge_and_delete() -> None:
    h = Harness()
    h.queue("q")
    for _ in range(3):
        h.publish("", "q")
    h.consume(1, "q", "c", prefetch=1)
    assert h.ok(C.cmd_purge_queue(V, "q")) == 2
    info = h.m.queue_info(V, "q")
    assert (info["messages_ready"], info["messages_unacked"]) == (0, 1)
    h.err(C.cmd_purge_queue(V, "nope"), 404)
    h.err(C.cmd_delete_queue(V, "q", if_unused=True), 406)
    h.publish("", "q")
    h.ok(C.cmd_cancel(1, "c"))
    h.err(C.cmd_delete_queue(V, "q", if_empty=True), 406)
    held = list(h.m.sessions[1].unacked)
    assert h.ok(C.cmd_delete_queue(V, "q")) == 1
    assert h.ok(C.cmd_delete_queue(V, "q")) == 0  # idempotent, as RabbitMQ
    # settling a message of a deleted queue is ignored
    assert h.settle(1, C.SETTLE_COMPLETE, held) == 0
    assert h.m.sessions == {}


def test_delete_cancels_consumers() -> None:
    h = Harness()
    h.queue("q")
    h.consume(1, "q", "c1")
    h.consume(2, "q", "c2")
    h.publish("", "q")
    h.ok(C.cmd_delete_queue(V, "q"))
    assert sorted(e for e in h.effects) == [("cancelled", 1, "c1"), ("cancelled", 2, "c2")]
    h.ok(C.cmd_session_down(1))
    h.ok(C.cmd_session_down(2))
    assert h.m.sessions == {}


def test_malformed_command() -> None:
    h = Harness()
    assert isinstance(h.apply([999]), CoreError)
    assert isinstance(h.apply([C.TICK, 1]), CoreError)
