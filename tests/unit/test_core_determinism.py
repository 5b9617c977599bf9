"""Determinism: random command streams give equal replies, effects and snapshots.

Streams are drawn as abstract steps; a step that needs live ids (SETTLE) picks them
from the reference machine's state, and the resolved command is applied everywhere.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.core import commands as C
from broker.core.invariants import check_invariants
from broker.core.machine import Machine
from broker.core.model import Meta

V = "/"
QUEUE_ARGS: dict[str, dict[str, Any]] = {
    "q0": {},
    "q1": {"x-message-ttl": 50, "x-dead-letter-exchange": "dlx"},
    "q2": {"x-max-length": 2, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q0"},
    "q3": {
        "x-max-priority": 3,
        "x-delivery-limit": 2,
        "x-dead-letter-exchange": "dlx",
        "x-max-length": 3,
        "x-overflow": "reject-publish-dlx",
    },
    "q4": {"x-expires": 200, "x-dead-letter-exchange": "t"},
}
EXCHANGES = {"dlx": "fanout", "t": "topic", "h": "headers", "d": "direct"}
KEYS = ["", "a", "a.b", "q0", "q1", "q2", "q3", "q4", "b.c"]
SESSIONS = [1, 2, 3]

props_st = st.fixed_dictionaries(
    {},
    optional={
        "delivery_mode": st.sampled_from([1, 2]),
        "expiration": st.sampled_from(["0", "10", "100"]),
        "priority": st.integers(0, 5),
        "headers": st.fixed_dictionaries(
            {}, optional={"k": st.sampled_from([1, 2]), "x": st.just("y")}
        ),
    },
)


def step_st(durable_only: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    queue = st.sampled_from(sorted(QUEUE_ARGS))
    exch = st.sampled_from(sorted(EXCHANGES))
    sess = st.sampled_from(SESSIONS)
    flag = st.booleans()
    durable = st.just(True) if durable_only else st.booleans()
    exclusive = st.just(False) if durable_only else st.booleans()
    targets = st.sampled_from(["", "t", "h", "dlx", "d", "amq.fanout"])
    publish = st.tuples(
        st.just("publish"),
        targets,
        st.lists(st.tuples(st.sampled_from(KEYS), props_st), min_size=1, max_size=4),
    )
    consume = st.tuples(
        st.just("consume"),
        sess,
        queue,
        st.sampled_from(["a", "b"]),
        st.integers(0, 3),
        st.booleans(),
        st.integers(0, 10),
        st.integers(0, 2),
    )
    settle = st.tuples(
        st.just("settle"),
        sess,
        st.sampled_from(C.SETTLE_OPS),
        st.integers(0, 3),
        st.sampled_from([0, 0, 30]),
    )
    get = st.tuples(
        st.just("get"), sess, queue, st.integers(1, 3), st.sampled_from([0, 40]), st.booleans()
    )
    tick = st.tuples(
        st.just("tick"),
    )
    return st.one_of(
        publish,
        publish,
        publish,
        consume,
        consume,
        settle,
        settle,
        settle,
        get,
        get,
        tick,
        tick,
        st.tuples(st.just("declare_queue"), queue, durable, exclusive, sess, st.booleans()),
        st.tuples(st.just("delete_queue"), queue, flag, flag, sess),
        st.tuples(st.just("purge"), queue, sess),
        st.tuples(st.just("declare_exchange"), exch, durable),
        st.tuples(st.just("delete_exchange"), exch),
        st.tuples(
            st.just("bind"),
            exch,
            st.sampled_from(["queue", "exchange"]),
            st.sampled_from(sorted(QUEUE_ARGS) + sorted(EXCHANGES)),
            st.sampled_from(["#", "a.*", "a", "q0", ""]),
            st.booleans(),
            sess,
        ),
        st.tuples(
            st.just("publish"),
            st.sampled_from(["", "t", "h", "dlx", "d", "amq.fanout"]),
            st.lists(st.tuples(st.sampled_from(KEYS), props_st), min_size=1, max_size=4),
        ),
        st.tuples(
            st.just("consume"),
            sess,
            queue,
            st.sampled_from(["a", "b"]),
            st.integers(0, 3),
            st.booleans(),
            st.integers(0, 10),
            st.integers(0, 2),
        ),
        st.tuples(st.just("cancel"), sess, st.sampled_from(["a", "b"])),
        st.tuples(
            st.just("settle"),
            sess,
            st.sampled_from(C.SETTLE_OPS),
            st.integers(0, 3),
            st.sampled_from([0, 0, 30]),
        ),
        st.tuples(
            st.just("get"), sess, queue, st.integers(1, 3), st.sampled_from([0, 40]), st.booleans()
        ),
        st.tuples(st.just("session_down"), sess),
        st.tuples(st.just("prefetch"), sess, st.integers(0, 3)),
        st.tuples(
            st.just("tick"),
        ),
        st.tuples(
            st.just("reset"),
        ),
    )


def resolve(step: tuple[Any, ...], m: Machine) -> list[Any]:
    kind = step[0]
    if kind == "declare_queue":
        _, q, durable, exclusive, s, passive = step
        return C.cmd_declare_queue(
            V,
            q,
            session=s,
            durable=durable,
            exclusive=exclusive,
            arguments=QUEUE_ARGS[q],
            passive=passive and exclusive,
        )
    if kind == "delete_queue":
        _, q, if_unused, if_empty, s = step
        return C.cmd_delete_queue(V, q, session=s, if_unused=if_unused, if_empty=if_empty)
    if kind == "purge":
        return C.cmd_purge_queue(V, step[1], session=step[2])
    if kind == "declare_exchange":
        return C.cmd_declare_exchange(V, step[1], EXCHANGES[step[1]], durable=step[2])
    if kind == "delete_exchange":
        return C.cmd_delete_exchange(V, step[1])
    if kind == "bind":
        _, src, dkind, dest, rk, unbind, s = step
        dkind = "queue" if dest in QUEUE_ARGS else "exchange"
        args = {"x-match": "any", "k": 1} if EXCHANGES.get(src) == "headers" else {}
        build = C.cmd_unbind if unbind else C.cmd_bind
        return build(V, src, dest, rk, dest_kind=dkind, arguments=args, session=s)
    if kind == "publish":
        _, x, items = step
        return C.cmd_publish(V, x, [C.msg(rk, b"b" * (len(rk) + 1), dict(p)) for rk, p in items])
    if kind == "consume":
        _, s, q, tag, prefetch, no_ack, exclusive, prio = step
        return C.cmd_consume(
            s,
            V,
            q,
            tag,
            prefetch=prefetch,
            no_ack=no_ack and prefetch == 0,
            exclusive=exclusive == 0,
            arguments={"x-priority": prio},
        )
    if kind == "cancel":
        return C.cmd_cancel(step[1], step[2])
    if kind == "settle":
        _, s, op, n, delay = step
        sess = m.sessions.get(s)
        held = sorted(sess.unacked)[:n] if sess is not None else []
        if n == 3 and held:
            held = held[:1] + [held[0] + 7]  # sometimes an unknown id
        return C.cmd_settle(s, op, held, delay)
    if kind == "get":
        _, s, q, n, lease, no_ack = step
        return C.cmd_get(s, V, q, max_n=n, lease_ms=lease, no_ack=no_ack)
    if kind == "session_down":
        return C.cmd_session_down(step[1])
    if kind == "prefetch":
        return C.cmd_session_prefetch(step[1], step[2])
    if kind == "tick":
        return C.cmd_tick()
    return C.cmd_sessions_reset()


PRELUDE: list[tuple[Any, int]] = (
    [(("declare_exchange", x, True), 0) for x in sorted(EXCHANGES)]
    + [(("declare_queue", q, True, False, 1, False), 0) for q in sorted(QUEUE_ARGS)]
    + [
        (("bind", "t", "queue", "q0", "#", False, 1), 0),
        (("bind", "t", "queue", "q3", "a.*", False, 1), 0),
        (("bind", "d", "queue", "q1", "a", False, 1), 0),
        (("bind", "h", "queue", "q2", "", False, 1), 0),
        (("bind", "dlx", "queue", "q0", "", False, 1), 0),
        (("bind", "dlx", "exchange", "t", "", False, 1), 0),
    ]
)


def stream_st(durable_only: bool) -> st.SearchStrategy[list[tuple[Any, int]]]:
    steps = st.lists(
        st.tuples(step_st(durable_only), st.integers(0, 40)), min_size=20, max_size=100
    )
    return steps.map(lambda s: PRELUDE + s)


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(stream_st(durable_only=False))
def test_two_machines_agree(stream: list[tuple[Any, int]]) -> None:
    a, b = Machine(), Machine()
    t = 1000
    for i, (step, dt) in enumerate(stream, start=1):
        t += dt
        cmd = resolve(step, a)
        meta = Meta(i, 1, t)
        ra = a.apply(meta, cmd)
        rb = b.apply(meta, cmd)
        check_invariants(a)
        assert ra == rb, (cmd, ra, rb)
        assert a.next_deadline() == b.next_deadline()
    assert a.snapshot() == b.snapshot()
    # SESSIONS_RESET leaves no session behind and nothing unacked
    a.apply(Meta(len(stream) + 1, 1, t), C.cmd_sessions_reset())
    check_invariants(a)
    assert a.sessions == {}
    assert all(not q.unacked for vh in a.vhosts.values() for q in vh.queues.values())


@SETTINGS
@given(stream_st(durable_only=True), st.integers(0, 60))
def test_snapshot_restore_matches_straight_run(stream: list[tuple[Any, int]], cut: int) -> None:
    cut = min(cut, len(stream))
    straight = Machine()
    t = 1000
    metas_cmds = []
    for i, (step, dt) in enumerate(stream, start=1):
        t += dt
        cmd = resolve(step, straight)
        meta = Meta(i, 1, t)
        metas_cmds.append((meta, cmd, straight.apply(meta, cmd)))
        check_invariants(straight)
    other = Machine()
    for meta, cmd, _ in metas_cmds[:cut]:
        other.apply(meta, cmd)
    other = Machine.restore(other.snapshot())
    check_invariants(other)
    for meta, cmd, expected in metas_cmds[cut:]:
        got = other.apply(meta, cmd)
        check_invariants(other)
        assert got == expected, (cmd, got, expected)
    assert other.snapshot() == straight.snapshot()
