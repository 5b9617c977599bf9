"""needs_log, split_publish, id spaces, snapshot/restore, codec, purity."""

from __future__ import annotations

import ast
import pathlib

from hypothesis import given
from hypothesis import strategies as st

import broker.core
from broker.core import commands as C
from broker.core.codec import (
    DecodeError,
    decode_command,
    decode_entry,
    encode_command,
    encode_entry,
)
from broker.core.invariants import check_invariants
from broker.core.machine import Machine
from broker.core.model import LOCAL_ID_BASE, Meta
from tests.unit.core_helpers import Harness, V

P = {"delivery_mode": 2}


def test_needs_log_rules() -> None:
    h = Harness()
    m = h.m
    assert m.needs_log(C.cmd_declare_exchange(V, "x", "direct"))
    assert not m.needs_log(C.cmd_declare_exchange(V, "x", "direct", durable=False))
    assert not m.needs_log(C.cmd_declare_exchange(V, "x", "direct", passive=True))
    assert m.needs_log(C.cmd_declare_queue(V, "d"))
    assert not m.needs_log(C.cmd_declare_queue(V, "t", durable=False))
    assert not m.needs_log(C.cmd_declare_queue(V, "e", session=1, exclusive=True))
    assert not m.needs_log(C.cmd_declare_queue(V, "d", passive=True))
    h.queue("d")
    h.queue("t", durable=False)
    h.queue("e", session=1, exclusive=True)
    h.exchange("x", "direct")
    h.exchange("tx", "direct", durable=False)
    assert m.needs_log(C.cmd_delete_exchange(V, "x"))
    assert not m.needs_log(C.cmd_delete_exchange(V, "tx"))
    assert m.needs_log(C.cmd_delete_queue(V, "d")) and m.needs_log(C.cmd_purge_queue(V, "d"))
    assert not m.needs_log(C.cmd_delete_queue(V, "t"))
    assert not m.needs_log(C.cmd_purge_queue(V, "e"))
    assert m.needs_log(C.cmd_bind(V, "x", "d"))
    assert not m.needs_log(C.cmd_bind(V, "x", "t"))
    assert not m.needs_log(C.cmd_bind(V, "tx", "d"))
    assert m.needs_log(C.cmd_bind(V, "amq.topic", "x", dest_kind="exchange"))
    assert not m.needs_log(C.cmd_unbind(V, "x", "tx", dest_kind="exchange"))
    assert m.needs_log(C.cmd_consume(2, V, "d", "c"))
    assert not m.needs_log(C.cmd_consume(2, V, "t", "c"))
    assert m.needs_log(C.cmd_get(2, V, "d"))
    assert not m.needs_log(C.cmd_get(2, V, "missing"))
    h.consume(2, "d", "c")
    h.consume(3, "t", "c")
    assert m.needs_log(C.cmd_cancel(2, "c")) and not m.needs_log(C.cmd_cancel(3, "c"))
    assert m.needs_log(C.cmd_session_down(2)) and not m.needs_log(C.cmd_session_down(3))
    assert m.needs_log(C.cmd_settle(2, 0, [5 * 65536]))
    assert not m.needs_log(C.cmd_settle(2, 0, [LOCAL_ID_BASE + 1]))
    assert m.needs_log(C.cmd_sessions_reset())
    assert m.needs_log(C.cmd_session_prefetch(4, 1))


def test_split_publish_and_tick_rules() -> None:
    h = Harness()
    h.queue("d")
    h.queue("t", durable=False)
    h.exchange("f", "fanout")
    h.bind("f", "t")
    msgs = [
        C.msg("d", b"1", P),
        C.msg("d", b"2", P),
        C.msg("d", b"3"),
        C.msg("t", b"4", P),
        C.msg("d", b"5", P),
    ]
    runs = h.m.split_publish(V, "", msgs)
    assert [(flag, [x[2] for x in run]) for flag, run in runs] == [
        (True, [b"1", b"2"]),
        (False, [b"3", b"4"]),
        (True, [b"5"]),
    ]
    assert h.m.needs_log(C.cmd_publish(V, "", msgs))
    assert not h.m.needs_log(C.cmd_publish(V, "f", [C.msg("", b"x", P)]))
    h.bind("f", "d")
    assert h.m.split_publish(V, "f", [C.msg("", b"x", P)])[0][0] is True  # cache invalidated
    assert h.m.split_publish(V, "nope", msgs[:1]) == [(False, msgs[:1])]
    assert h.m.split_publish(V, "", []) == []
    # TICK needs the log only when something durable is due
    h.queue("tq", durable=False, arguments={"x-message-ttl": 10})
    h.publish("", "tq", b"x", P, t=2000)
    assert h.m.next_deadline() == 2011
    assert not h.m.needs_log(C.cmd_tick(), 3000)
    h.queue("dq", arguments={"x-message-ttl": 10})
    h.publish("", "dq", b"x", P, t=2000)
    assert h.m.needs_log(C.cmd_tick(), 3000) and not h.m.needs_log(C.cmd_tick(), 2005)


def test_id_spaces() -> None:
    h = Harness()
    h.queue("d")
    h.queue("t", durable=False)
    h.exchange("f", "fanout")
    h.bind("f", "d")
    h.bind("f", "t")
    h.consume(1, "d", "cd")
    h.consume(1, "t", "ct")
    h.publish_many("f", [("", b"a", P), ("", b"b", P)])
    idx = h.index
    assert [d[0] for d in h.deliveries("cd")] == [idx * 65536, idx * 65536 + 1]
    assert all(d[0] >= LOCAL_ID_BASE for d in h.deliveries("ct"))
    h.publish("", "d", b"c", P, local=True)
    assert h.deliveries("cd")[0][0] >= LOCAL_ID_BASE


def test_snapshot_restore_roundtrip_and_transient_dropped() -> None:
    h = Harness()
    h.exchange("x", "topic")
    h.exchange("tx", "topic", durable=False)
    h.queue("d", arguments={"x-message-ttl": 10_000, "x-max-priority": 3})
    h.queue("t", durable=False)
    h.bind("x", "d", "a.#")
    h.bind("x", "t", "a.#")
    h.publish_many("x", [("a.b", b"1", P), ("a.c", b"2", {"priority": 2, **P})], t=5000)
    h.publish("x", "a.l", b"local", P, local=True)
    h.consume(1, "d", "c", prefetch=1)
    h.get(2, "d", lease_ms=500)
    snap = h.m.snapshot()
    m2 = Machine.restore(snap)
    check_invariants(m2)
    assert m2.snapshot() == snap
    assert not m2.exchange_exists(V, "tx") and not m2.queue_exists(V, "t")
    info = m2.queue_info(V, "d")
    assert (info["messages_ready"], info["messages_unacked"], info["consumers"]) == (0, 2, 1)
    assert m2.next_deadline() == 5501
    # the restored machine behaves the same as the original
    for mm in (h.m, m2):
        r, eff = mm.apply(Meta(1000, 1, 6000), C.cmd_tick())
        check_invariants(mm)
    assert h.m.snapshot() == m2.snapshot()


def test_core_imports_are_pure() -> None:
    banned = {"trio", "socket", "time", "random", "os", "threading", "asyncio"}
    root = pathlib.Path(broker.core.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for n in names:
                assert n.split(".")[0] not in banned, f"{path.name} imports {n}"


# codec ----------------------------------------------------------------------------

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(op=st.sampled_from(sorted(C.ARITY)), data=st.data())
def test_codec_roundtrip(op: int, data: st.DataObject) -> None:
    cmd = [op] + [data.draw(values) for _ in range(C.ARITY[op])]
    assert decode_command(encode_command(cmd)) == cmd
    t = data.draw(st.integers(0, 2**62))
    assert decode_entry(encode_entry(t, cmd)) == (t, cmd)


def test_codec_builders_roundtrip() -> None:
    cmds = [
        C.cmd_declare_exchange(V, "x", "topic", arguments={"alternate-exchange": "ae"}),
        C.cmd_declare_queue(V, "q", session=3, exclusive=True, arguments={"x-max-length": 3}),
        C.cmd_publish(V, "x", [C.msg("a.b", b"\x00\xff", {"headers": {"k": [1, b"v"]}})]),
        C.cmd_settle(1, C.SETTLE_MODIFY, [1, 2], 500),
        C.cmd_tick(),
        C.cmd_sessions_reset(),
        C.cmd_get(1, V, "q", max_n=10, lease_ms=30_000),
    ]
    for cmd in cmds:
        assert decode_command(encode_command(cmd)) == cmd


@given(st.binary(max_size=64))
def test_codec_garbage_only_decode_error(data: bytes) -> None:
    for fn in (decode_command, decode_entry):
        try:
            fn(data)
        except DecodeError:
            pass


@given(values)
def test_codec_wrong_shapes(obj: object) -> None:
    import msgpack

    data = msgpack.packb(obj, use_bin_type=True)
    for fn in (decode_command, decode_entry):
        try:
            fn(data)
        except DecodeError:
            pass


def test_retained_messages_set_replace_clear_and_survive_a_snapshot() -> None:
    h = Harness()
    m = h.m
    retain = C.cmd_publish(V, "amq.topic", [C.msg("a.b", b"one", {}, retain=True)])
    # retained messages are durable even when transient and unroutable
    assert m.needs_log(retain)
    assert h.ok(retain) == [[0], []]
    h.ok(C.cmd_publish(V, "amq.topic", [C.msg("a.c", b"other", P, retain=True)]))
    h.ok(C.cmd_publish(V, "amq.topic", [C.msg("a.b", b"two", P, retain=True)]))
    h.ok(C.cmd_publish(V, "amq.topic", [C.msg("a.b", b"not kept", P)]))
    assert sorted(m.retained(V, "amq.topic")) == [("a.b", P, b"two"), ("a.c", P, b"other")]
    restored = Machine.restore(m.snapshot())
    assert sorted(restored.retained(V, "amq.topic")) == sorted(m.retained(V, "amq.topic"))
    assert restored.snapshot() == m.snapshot()
    h.ok(C.cmd_publish(V, "amq.topic", [C.msg("a.b", b"", P, retain=True)]))  # empty clears
    assert m.retained(V, "amq.topic") == [("a.c", P, b"other")]
    assert m.retained(V, "amq.direct") == []
