"""Snapshot of the logged (durable) part of the machine state.

Layout (msgpack, every collection in a canonical order so that the same command
stream always gives the same bytes)::

    [MACHINE_VERSION, now, overflow_counter, vhosts, sessions]
    [MACHINE_VERSION, now, overflow_counter, vhosts, sessions, auth]  (version 3)
    auth     = [seeded, users, permissions, topic_permissions]       (see access.py)
    users    = [[name, password_hash, tags], ...]
    permissions = [[user, vhost, configure, write, read], ...]
    topic_permissions = [[user, vhost, exchange, write, read], ...]
    vhost    = [name, exchanges, queues, bindings]
    exchange = [name, type, durable, auto_delete, internal, arguments]   (not the defaults)
    queue    = [name, auto_delete, arguments, next_seq, last_used, consumer_order, messages]
    consumer_order = [[session, tag], ...]            (round-robin order of the queue)
    message  = [id, seq, priority, exchange, routing_key, props, body, expires_at,
                delivery_count, holder, group, at, first_at]      (version 1: no last three)
    queue    += [delayed, dedup]                                  (version 2)
    delayed  = [[visible_at, message], ...]
    dedup    = [[id, expires_at, message id, message_id property], ...]
    holder   = None (ready) | [session, kind, tag, lease_at]
               kind 0: got by GET, 1: held by live consumer tag, 2: by a cancelled consumer
    binding  = [source, kind, dest, routing_key, arguments]
    session  = [id, prefetch, consumers, gone_ids]
    consumer = [tag, vhost, queue, prefetch, no_ack, exclusive, priority, arguments]

From version 3 the vhost list is the whole set of vhosts (a deleted "/" stays deleted); an
older snapshot has no users (the node seeds the default one, as on an empty data directory).

Only durable exchanges, durable non-exclusive queues, bindings between them, logged
messages (ids below ``LOCAL_ID_BASE``) and the consumers on those queues are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from broker.core.access import AuthState
from broker.core.commands import MACHINE_VERSION, MACHINE_VERSIONS_READABLE
from broker.core.model import LOCAL_ID_BASE
from broker.core.queue import NO_DEDUP, NO_DELAYED, Consumer, Message, Queue, Session
from broker.core.routing import DEFAULT, Binding, Exchange, freeze

if TYPE_CHECKING:
    from broker.core.machine import Machine

_DEFAULT_NAMES = ("", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match")


class SnapshotError(ValueError):
    """The snapshot bytes cannot be restored."""


def _holder(m: Message) -> Any:
    s = m.session
    if s is None:
        return None
    c = m.consumer
    if c is None:
        return [s.id, 0, None, m.lease_at]
    live = s.consumers.get(c.tag) is c
    return [s.id, 1 if live else 2, c.tag, m.lease_at]


def _msg(m: Message) -> list[Any]:
    return [
        m.id,
        m.seq,
        m.priority,
        m.exchange,
        m.routing_key,
        m.props,
        m.body,
        m.expires_at,
        m.delivery_count,
        _holder(m),
        m.group,
        m.at,
        m.first_at,
    ]


def _message(q: Queue, row: list[Any]) -> Message:
    mid, seq, prio, exchange, rk, props, body, expires_at, dcount = row[:9]
    m = Message(mid, seq, q, exchange, rk, props, body, prio, expires_at)
    m.delivery_count = dcount
    if len(row) > 10:
        m.group, m.at, m.first_at = row[10], row[11], row[12]
    return m


def _bkey(b: Binding) -> tuple[str, str, str, str, str]:
    return (b.source, b.kind, b.dest, b.routing_key, repr(freeze(b.arguments)))


def dump_snapshot(machine: Machine) -> bytes:
    vhosts = []
    for vname in sorted(machine.vhosts):
        vh = machine.vhosts[vname]
        exchanges = [
            [x.name, x.type, x.durable, x.auto_delete, x.internal, x.arguments]
            for n, x in sorted(vh.exchanges.items())
            if x.durable and n not in _DEFAULT_NAMES
        ]
        queues = []
        for n in sorted(vh.queues):
            q = vh.queues[n]
            if not q.logged:
                continue
            msgs = [_msg(m) for m in q.ready_in_order() if m.id < LOCAL_ID_BASE]
            msgs.extend(_msg(q.unacked[i]) for i in sorted(q.unacked) if i < LOCAL_ID_BASE)
            queues.append(
                [
                    q.name,
                    q.auto_delete,
                    q.arguments,
                    q.next_seq,
                    q.last_used,
                    [[c.session.id, c.tag] for c in q.consumers],
                    msgs,
                    [[t, _msg(m)] for t, _, m in sorted(q.delayed) if m.id < LOCAL_ID_BASE],
                    [[k, exp, mid, pid] for k, (exp, mid, pid) in q.dedup.items()],
                ]
            )
        bindings = sorted(
            (b for x in vh.exchanges.values() for b in x.bindings.values() if b.durable),
            key=_bkey,
        )
        vhosts.append(
            [
                vname,
                exchanges,
                queues,
                [[b.source, b.kind, b.dest, b.routing_key, b.arguments] for b in bindings],
                [[x, rk, p, b] for (x, rk), (p, b) in sorted(vh.retained.items())],
            ]
        )
    sessions = []
    for sid in sorted(machine.sessions):
        s = machine.sessions[sid]
        consumers = [
            [
                c.tag,
                c.queue.vhost,
                c.queue.name,
                c.prefetch,
                c.no_ack,
                c.exclusive,
                c.priority,
                c.arguments,
            ]
            for tag, c in sorted(s.consumers.items())
            if c.queue.logged
        ]
        gone = sorted(i for i in s.gone if i < LOCAL_ID_BASE)
        held = any(i < LOCAL_ID_BASE for i in s.unacked)
        if consumers or gone or held or s.prefetch:
            sessions.append([sid, s.prefetch, consumers, gone])
    data = msgpack.packb(
        [
            MACHINE_VERSION,
            machine.now,
            machine.overflow_counter,
            vhosts,
            sessions,
            machine.auth.dump(),
        ],
        use_bin_type=True,
    )
    assert isinstance(data, bytes)
    return data


def load_snapshot(machine: Machine, data: bytes) -> None:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        version, now, overflow, vhosts, sessions = obj[:5]
        auth = AuthState.load(obj[5]) if version >= 3 else AuthState()
    except Exception as exc:
        raise SnapshotError(f"unreadable snapshot: {exc}") from None
    if version not in MACHINE_VERSIONS_READABLE:
        raise SnapshotError(f"snapshot version {version}, this machine is {MACHINE_VERSION}")
    machine.now = now
    machine.overflow_counter = overflow
    machine.auth = auth
    if version >= 3:
        machine.vhosts = {}
    # sessions first (consumers need them); their consumers are attached per queue below
    sess: dict[int, Session] = {}
    consumer_rows: dict[tuple[int, str], list[Any]] = {}
    for sid, prefetch, consumers, gone in sessions:
        s = Session(sid)
        s.prefetch = prefetch
        if gone:
            s.gone = set(gone)
        sess[sid] = s
        for row in consumers:
            consumer_rows[(sid, row[0])] = row
    machine.sessions = sess
    from broker.core.machine import VHost

    for vname, exchanges, queues, bindings, retained in vhosts:
        vh = machine.vhosts.setdefault(vname, VHost(vname))
        for x, rk, p, b in retained:
            vh.retained[(x, rk)] = (p, b)
        for name, type_, durable, auto_delete, internal, arguments in exchanges:
            vh.exchanges[name] = Exchange(name, type_, durable, auto_delete, internal, arguments)
        for qrow in queues:
            name, auto_delete, arguments, next_seq, last_used, order, msgs = qrow[:7]
            settings = machine._queue_settings(vname, name, arguments)
            assert isinstance(settings, dict), settings
            q = Queue(vname, name, True, None, auto_delete, arguments, settings, last_used)
            q.next_seq = next_seq
            vh.queues[name] = q
            for sid, tag in order:
                row = consumer_rows[(sid, tag)]
                s = sess[sid]
                _, _, _, prefetch, no_ack, exclusive, priority, cargs = row
                c = Consumer(s, tag, q, prefetch, no_ack, exclusive, priority, cargs)
                s.consumers[tag] = c
                q.consumers.append(c)
                if exclusive:
                    q.exclusive_consumer = True
            dead: dict[tuple[int, str], Consumer] = {}
            if len(qrow) > 7:
                for visible_at, row in qrow[7]:
                    m = _message(q, row)
                    machine._hn += 1
                    if q.delayed is NO_DELAYED:
                        q.delayed = []
                    q.delayed.append((visible_at, machine._hn, m))
                if q.delayed:
                    q.delayed.sort(key=lambda e: (e[0], e[1]))
                machine._sched_delay(q)
                for k, exp, mid, pid in qrow[8]:
                    if q.dedup is NO_DEDUP:
                        q.dedup = {}
                    q.dedup[k] = (exp, mid, pid)
            for row in msgs:
                m = _message(q, row)
                mid, dcount, holder = m.id, m.delivery_count, row[9]
                if holder is None:
                    if dcount > 0:
                        q.push_returned(m)
                    else:
                        q.push_fresh(m)
                    continue
                hsid, kind, tag, lease_at = holder
                s = sess[hsid]
                m.session = s
                m.lease_at = lease_at
                holder_c: Consumer | None = None
                if kind == 1:
                    holder_c = s.consumers[tag]
                elif kind == 2:
                    holder_c = dead.get((hsid, tag))
                    if holder_c is None:
                        holder_c = Consumer(s, tag, q, 0, False, False, 0, {})
                        dead[(hsid, tag)] = holder_c
                if m.group is not None:
                    q.groups_held[m.group] = q.groups_held.get(m.group, 0) + 1
                if holder_c is not None:
                    m.consumer = holder_c
                    holder_c.unacked += 1
                    s.cunacked += 1
                s.unacked[mid] = m
                q.unacked[mid] = m
                q.unacked_bytes += m.size
                if lease_at is not None:
                    machine._push(lease_at, 0, mid, m)
            machine._resched_ttl(q)
            machine._sched_expiry(q)
        for source, kind, dest, rk, arguments in bindings:
            b = Binding(source, kind, dest, rk, arguments, True)
            if vh.exchanges[source].add_binding(b):
                vh.by_dest.setdefault((kind, dest), {})[b] = None
    assert all(
        x.type != DEFAULT or x.name == ""
        for vh in machine.vhosts.values()
        for x in vh.exchanges.values()
    )
