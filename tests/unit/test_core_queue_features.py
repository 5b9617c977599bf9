"""Queue features the AWS adapters build on: delayed messages, FIFO message groups,
deduplication windows, changing a queue's arguments, dead-letter reasons, service sessions
and GET times."""

from __future__ import annotations

from typing import Any

from broker.core import commands as C
from broker.core.machine import Machine
from broker.core.model import PRECONDITION_FAILED, SERVICE_SESSION_BASE, Meta
from tests.unit.core_helpers import Harness, V

DURABLE = {"delivery_mode": 2}


def send(h: Harness, queue: str, body: bytes, opts: dict[str, Any] | None = None, **kw: Any) -> Any:
    return h.ok(C.cmd_publish(V, "", [C.msg(queue, body, DURABLE, opts=opts)]), **kw)


def bodies(h: Harness, queue: str, n: int = 10, **kw: Any) -> list[bytes]:
    out, _ = h.get(1, queue, max_n=n, **kw)
    return [d[6] for d in out]


# -- delays ----------------------------------------------------------------------------------


def test_queue_delay_hides_messages_until_due_then_in_due_order() -> None:
    h = Harness()
    h.queue("q", arguments={"x-message-delay": 500}, t=1_000)
    send(h, "q", b"a", t=1_000)
    send(h, "q", b"b", {"delay_ms": 100}, t=1_000)
    send(h, "q", b"c", {"delay_ms": 0}, t=1_000)
    info = h.m.queue_info(V, "q")
    assert info is not None
    assert (info["messages_ready"], info["messages_delayed"]) == (1, 2)
    assert h.m.next_deadline() == 1_100
    assert bodies(h, "q", no_ack=True, t=1_050) == [b"c"]
    h.tick(1_100)
    assert bodies(h, "q", no_ack=True) == [b"b"]
    h.tick(1_499)
    assert h.ready("q") == 0
    h.tick(1_500)
    assert bodies(h, "q", no_ack=True) == [b"a"]
    assert h.m.queue_info(V, "q")["messages_delayed"] == 0  # type: ignore[index]


def test_delayed_message_goes_to_a_waiting_consumer_when_due() -> None:
    h = Harness()
    h.queue("q")
    h.consume(1, "q", "c1")
    send(h, "q", b"late", {"delay_ms": 200}, t=2_000)
    assert h.deliveries() == []
    h.tick(2_200)
    assert h.bodies("c1") == [b"late"]


def test_purge_drops_delayed_messages_and_tick_needs_log_for_logged_ones() -> None:
    h = Harness()
    h.queue("q")
    send(h, "q", b"a", {"delay_ms": 100}, t=1_000)
    assert h.m.durable_due(1_099) is False
    assert h.m.durable_due(1_100) is True
    assert h.ok(C.cmd_purge_queue(V, "q")) == 1
    h.tick(1_200)
    assert h.ready("q") == 0


# -- FIFO groups -----------------------------------------------------------------------------


def fifo(h: Harness, name: str = "q.fifo", **args: Any) -> None:
    h.queue(name, arguments={"x-fifo": True, **args})


def test_fifo_get_holds_a_group_while_one_of_its_messages_is_in_flight() -> None:
    h = Harness()
    fifo(h)
    for body, group in ((b"a1", "a"), (b"a2", "a"), (b"b1", "b"), (b"a3", "a"), (b"b2", "b")):
        send(h, "q.fifo", body, {"group": group})
    first, _ = h.get(1, "q.fifo", max_n=2, lease_ms=1_000)
    assert [d[6] for d in first] == [b"a1", b"a2"]
    # group a is held: only b's messages, in order
    second, _ = h.get(1, "q.fifo", max_n=10, lease_ms=1_000)
    assert [d[6] for d in second] == [b"b1", b"b2"]
    assert h.get(1, "q.fifo", max_n=10, lease_ms=1_000)[0] == []
    # deleting a1 alone keeps a held (a2 still in flight)
    h.settle(1, C.SETTLE_COMPLETE, [first[0][0]])
    assert h.get(1, "q.fifo", max_n=10, lease_ms=1_000)[0] == []
    h.settle(1, C.SETTLE_COMPLETE, [first[1][0]])
    third, _ = h.get(1, "q.fifo", max_n=10, lease_ms=1_000)
    assert [d[6] for d in third] == [b"a3"]


def test_fifo_group_released_by_lease_expiry_in_original_order() -> None:
    h = Harness()
    fifo(h)
    for body in (b"1", b"2", b"3"):
        send(h, "q.fifo", body, {"group": "g"}, t=1_000)
    got, _ = h.get(1, "q.fifo", max_n=1, lease_ms=100, t=1_000)
    assert [d[6] for d in got] == [b"1"]
    assert h.get(1, "q.fifo", max_n=10, lease_ms=100)[0] == []
    h.tick(1_200)
    again, _ = h.get(1, "q.fifo", max_n=10, lease_ms=100)
    assert [(d[6], d[2]) for d in again] == [(b"1", 2), (b"2", 1), (b"3", 1)]


def test_fifo_change_visibility_keeps_the_group_held() -> None:
    h = Harness()
    fifo(h)
    send(h, "q.fifo", b"1", {"group": "g"}, t=1_000)
    send(h, "q.fifo", b"2", {"group": "g"}, t=1_000)
    got, _ = h.get(1, "q.fifo", max_n=1, lease_ms=100, t=1_000)
    h.settle(1, C.SETTLE_MODIFY, [got[0][0]], 5_000)
    h.tick(1_200)
    assert h.get(1, "q.fifo", max_n=10, lease_ms=100)[0] == []
    h.settle(1, C.SETTLE_MODIFY, [got[0][0]], 0)  # visible now: the group is free
    assert [d[6] for d in h.get(1, "q.fifo", max_n=10, lease_ms=100)[0]] == [b"1", b"2"]


def test_groups_are_ignored_outside_fifo_queues() -> None:
    h = Harness()
    h.queue("std")
    send(h, "std", b"1", {"group": "g"})
    send(h, "std", b"2", {"group": "g"})
    assert bodies(h, "std", n=1) == [b"1"]
    assert bodies(h, "std", n=1) == [b"2"]


# -- deduplication ---------------------------------------------------------------------------


def test_dedup_within_window_even_after_the_original_was_deleted() -> None:
    h = Harness()
    fifo(h, **{"x-deduplication-window": 300_000})
    r1 = send(h, "q.fifo", b"x", {"group": "g", "dedup": "d1"}, t=10_000)
    assert r1[0] == [1] and len(r1[2]) == 1
    pos, mid, dup, _ = r1[2][0]
    assert (pos, dup) == (0, None)
    got, _ = h.get(1, "q.fifo", max_n=1, lease_ms=1_000)
    h.settle(1, C.SETTLE_COMPLETE, [got[0][0]])
    r2 = send(h, "q.fifo", b"x", {"group": "g", "dedup": "d1"}, t=200_000)
    assert r2[2] == [[0, mid, mid, None]]
    assert h.ready("q.fifo") == 0
    # past the window the same id is new again
    r3 = send(h, "q.fifo", b"x", {"group": "g", "dedup": "d1"}, t=310_001)
    assert r3[2][0][2] is None
    assert h.ready("q.fifo") == 1


def test_dedup_needs_a_window() -> None:
    h = Harness()
    h.queue("q")
    send(h, "q", b"x", {"dedup": "same"})
    send(h, "q", b"x", {"dedup": "same"})
    assert h.ready("q") == 2


# -- changing arguments ----------------------------------------------------------------------


def test_set_queue_arguments_changes_settings_and_refuses_fixed_ones() -> None:
    h = Harness()
    h.queue("q", arguments={"x-max-priority": 2})
    h.ok(C.cmd_set_queue_arguments(V, "q", {"x-max-priority": 2, "x-message-delay": 100}))
    info = h.m.queue_info(V, "q")
    assert info is not None and info["arguments"]["x-message-delay"] == 100
    send(h, "q", b"a", t=1_000)
    assert h.ready("q") == 0
    h.err(C.cmd_set_queue_arguments(V, "q", {}), PRECONDITION_FAILED)
    h.err(
        C.cmd_set_queue_arguments(V, "q", {"x-max-priority": 2, "x-fifo": True}),
        PRECONDITION_FAILED,
    )
    h.err(
        C.cmd_set_queue_arguments(V, "q", {"x-max-priority": 2, "x-message-ttl": -1}),
        PRECONDITION_FAILED,
    )


def test_set_queue_arguments_applies_a_new_delivery_limit_with_dead_letter_reasons() -> None:
    h = Harness()
    h.queue("dlq")
    h.queue("q")
    h.ok(
        C.cmd_set_queue_arguments(
            V,
            "q",
            {
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dlq",
                "x-delivery-limit": 0,
                "x-dead-letter-reasons": ["delivery_limit"],
                "x-message-ttl": 1_000,
            },
        ),
        t=1_000,
    )
    send(h, "q", b"once", t=1_000)
    got, _ = h.get(1, "q", max_n=1, lease_ms=10, t=1_000)
    assert got[0][2] == 1
    h.tick(1_100)  # lease over: received once, limit 0 -> dead-lettered
    assert h.ready("q") == 0 and h.ready("dlq") == 1
    send(h, "q", b"expires", t=1_200)
    h.tick(2_300)  # expiry is not a listed reason: dropped, not dead-lettered
    assert h.ready("q") == 0 and h.ready("dlq") == 1


def test_bad_new_arguments_are_refused() -> None:
    h = Harness()
    h.err(C.cmd_declare_queue(V, "q", arguments={"x-fifo": "yes"}), PRECONDITION_FAILED)
    h.err(
        C.cmd_declare_queue(V, "q", arguments={"x-dead-letter-reasons": ["bored"]}),
        PRECONDITION_FAILED,
    )
    h.err(C.cmd_declare_queue(V, "q", arguments={"x-message-delay": -5}), PRECONDITION_FAILED)


# -- service sessions, GET times, snapshots --------------------------------------------------


def test_service_session_leases_survive_a_sessions_reset() -> None:
    h = Harness()
    h.queue("q")
    send(h, "q", b"a", t=1_000)
    send(h, "q", b"b", t=1_000)
    svc = SERVICE_SESSION_BASE + 1
    h.get(svc, "q", max_n=1, lease_ms=60_000, t=1_000)
    h.get(1 << 16, "q", max_n=1, lease_ms=60_000)
    h.ok(C.cmd_sessions_reset())
    info = h.m.queue_info(V, "q")
    assert info is not None
    assert (info["messages_ready"], info["messages_unacked"]) == (1, 1)
    assert svc in h.m.sessions


def test_get_reports_first_delivery_and_enqueue_times() -> None:
    h = Harness()
    h.queue("q")
    send(h, "q", b"a", t=1_000)
    got, _, times = h.get_full(1, "q", max_n=1, lease_ms=10, t=2_000)
    assert times == [[2_000, 1_000]]
    h.tick(2_100)
    _, _, times = h.get_full(1, "q", max_n=1, lease_ms=10, t=3_000)
    assert times == [[2_000, 1_000]]


def test_snapshot_keeps_delayed_dedup_groups_and_times() -> None:
    h = Harness()
    fifo(h, **{"x-deduplication-window": 300_000})
    h.queue("d")
    send(h, "d", b"later", {"delay_ms": 5_000}, t=1_000)
    send(h, "q.fifo", b"g1", {"group": "g", "dedup": "k1"}, t=1_000)
    send(h, "q.fifo", b"g2", {"group": "g", "dedup": "k2"}, t=1_000)
    h.get(1, "q.fifo", max_n=1, lease_ms=60_000, t=1_500)
    data = h.m.snapshot()
    m2 = Machine.restore(data)
    assert m2.snapshot() == data
    h2 = Harness(m2)
    h2.index, h2.time = h.index, h.time
    # the group is still held, the dedup id still known, the delayed message still delayed
    assert h2.get(1, "q.fifo", max_n=10, lease_ms=1_000)[0] == []
    r = send(h2, "q.fifo", b"g1", {"group": "g", "dedup": "k1"})
    assert r[2][0][2] is not None
    assert h2.m.queue_info(V, "d")["messages_delayed"] == 1  # type: ignore[index]
    h2.tick(6_000)
    assert bodies(h2, "d", no_ack=True) == [b"later"]


def test_version_1_snapshot_rows_still_restore() -> None:
    h = Harness()
    h.queue("q")
    send(h, "q", b"old")
    import msgpack

    snap = msgpack.unpackb(h.m.snapshot(), raw=False, strict_map_key=False)
    snap[0] = 1
    for vhost in snap[3]:
        for q in vhost[2]:
            del q[7:]
            for row in q[6]:
                del row[10:]
    m2 = Machine.restore(msgpack.packb(snap, use_bin_type=True))
    reply, _ = m2.apply(Meta(99, 1, 5_000), C.cmd_get(1, V, "q", max_n=1, no_ack=True))
    assert [d[6] for d in reply[0]] == [b"old"]
