"""Machine rule 7 (replicated mode): a transient apply on the node hosting a session must not
change which logged message a logged apply hands out there, so replicas stay equal."""

from __future__ import annotations

from broker.core import commands as C
from broker.core.machine import Machine
from broker.core.model import LOCAL_ID_BASE
from tests.unit.core_helpers import Harness

S = 1 << 16


def _pair(replicated: bool) -> tuple[Harness, Harness]:
    """The session's own node (which also holds a transient queue) and another replica."""
    out = []
    for _ in range(2):
        m = Machine()
        if replicated:
            m.set_replicated()
        out.append(Harness(m))
    return out[0], out[1]


def _scenario(host: Harness, other: Harness) -> tuple[object, object]:
    for h in (host, other):
        h.queue("durable", durable=True)
        h.ok(C.cmd_session_prefetch(S, 1))
        h.consume(S, "durable", "c-logged")
    # transient on the host only: a non-durable queue, a consumer, a delivery
    host.queue("temp", durable=False, local=True)
    host.consume(S, "temp", "c-temp", local=True)
    host.publish("", "temp", b"t", local=True)
    # a logged publish, applied on both replicas at the same index
    for h in (host, other):
        h.index = 10
        h.publish("", "durable", b"d", {"delivery_mode": 2})
    return host.m.queue_counts("/", "durable"), other.m.queue_counts("/", "durable")


def test_replicated_prefetch_counts_logged_deliveries_only() -> None:
    host, other = _pair(replicated=True)
    a, b = _scenario(host, other)
    assert a == b
    assert [d[0] for d in host.deliveries("c-logged")] == [
        d[0] for d in other.deliveries("c-logged")
    ]


def test_single_node_prefetch_counts_every_delivery() -> None:
    """Without replicated mode (one node) the session prefetch counts transient deliveries
    too, exactly as before: the logged message waits."""
    host, other = _pair(replicated=False)
    _scenario(host, other)
    assert host.deliveries("c-logged") == []
    assert other.deliveries("c-logged") != []


def test_replicated_logs_transient_messages_of_durable_queues() -> None:
    m = Machine()
    m.set_replicated()
    h = Harness(m)
    h.queue("durable", durable=True)
    h.queue("temp", durable=False, local=True)
    msgs = [C.msg("durable", b"a", {"delivery_mode": 1}), C.msg("temp", b"b", None)]
    runs = m.split_publish("/", "", msgs)
    assert [flag for flag, _ in runs] == [True, False]
    h.ok(C.cmd_publish("/", "", msgs[:1]))
    got = h.get(S, "durable", max_n=1)[0]
    assert got and got[0][0] < LOCAL_ID_BASE
    plain = Machine()
    assert [flag for flag, _ in plain.split_publish("/", "", msgs)] == [False]
