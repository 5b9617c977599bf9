"""``check_invariants(machine)``: consistency checks run after every apply in tests.

Each failure raises AssertionError naming the entity and the broken rule:

1. Per queue: ready_count/ready_bytes/n_expiring equal what the priority levels hold;
   every ready message belongs to the queue, is held by no session and has no lease;
   returned messages were delivered before and precede the fresh ones of their level.
2. Per queue: every unacked message is held by exactly one session, which lists it;
   unacked_bytes is their byte sum; no message is both ready and unacked.
3. Per session: every unacked message is in its queue's unacked set (or the queue was
   deleted and the id moved to ``gone``); cunacked equals the messages held through
   consumers; each live consumer's unacked count equals the messages it holds.
4. Consumers: listed by their session and their queue, queues ordered by priority,
   at most one exclusive consumer and then no other.
5. Bindings reference existing exchanges and queues and are indexed by destination;
   binding durability matches its ends.
6. Exclusive queues: the owner session exists and lists the queue.
7. Timers: every queue head with an expiry, every lease, and every queue subject to
   x-expires has a heap entry due no later than it.
8. Message ids are unique across the machine.
9. Users and permissions (access.py): permissions name existing users and vhosts, their
   patterns compile, password hashes are well formed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.core.queue import Message

if TYPE_CHECKING:
    from broker.core.machine import Machine


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def check_invariants(machine: Machine) -> None:
    heap_entries: set[tuple[int, int, Any]] = set()
    for t, kind, key, _, obj in machine._heap:
        heap_entries.add((t, kind, key if kind else id(obj)))
    seen_ids: dict[int, str] = {}
    held_by_consumer: dict[int, int] = {}

    def see(m: Message, where: str) -> None:
        if m.id in seen_ids:
            _fail(f"message id {m.id} in {where} and in {seen_ids[m.id]}")
        seen_ids[m.id] = where

    for vname, vh in machine.vhosts.items():
        for qname, q in vh.queues.items():
            where = f"queue '{qname}' in vhost '{vname}'"
            if q.name != qname or q.vhost != vname or q.deleted:
                _fail(f"{where}: name/vhost/deleted mismatch")
            count = size = expiring = 0
            for p, lv in enumerate(q.levels):
                fresh_min = lv.fresh[0].seq if lv.fresh else None
                last = -1
                for m in lv.fresh:
                    if m.seq <= last:
                        _fail(f"{where}: fresh messages out of order at seq {m.seq}")
                    last = m.seq
                    if m.delivery_count:
                        _fail(f"{where}: message {m.id} delivered before but in fresh")
                for seq, m in lv.returned:
                    if seq != m.seq:
                        _fail(f"{where}: returned entry seq mismatch for message {m.id}")
                    if fresh_min is not None and m.seq > fresh_min:
                        _fail(f"{where}: returned message {m.id} after a fresh one")
                for m in list(lv.fresh) + [m for _, m in lv.returned]:
                    see(m, f"ready of {where}")
                    if m.queue is not q:
                        _fail(f"{where}: ready message {m.id} belongs to another queue")
                    if m.session is not None or m.consumer is not None or m.lease_at is not None:
                        _fail(f"{where}: ready message {m.id} is held or leased")
                    if m.priority != p:
                        _fail(f"{where}: message {m.id} of priority {m.priority} in level {p}")
                    count += 1
                    size += m.size
                    expiring += m.expires_at is not None
            if (count, size, expiring) != (q.ready_count, q.ready_bytes, q.n_expiring):
                _fail(
                    f"{where}: ready counters {(q.ready_count, q.ready_bytes, q.n_expiring)} "
                    f"but levels hold {(count, size, expiring)}"
                )
            ubytes = 0
            for mid, m in q.unacked.items():
                see(m, f"unacked of {where}")
                s = m.session
                if m.id != mid or m.queue is not q:
                    _fail(f"{where}: unacked entry {mid} is inconsistent")
                if s is None or s.unacked.get(mid) is not m:
                    _fail(f"{where}: unacked message {mid} not held by its session")
                    return
                if machine.sessions.get(s.id) is not s:
                    _fail(f"{where}: unacked message {mid} held by unknown session {s.id}")
                if m.lease_at is not None and (m.lease_at, 0, id(m)) not in heap_entries:
                    _fail(f"{where}: leased message {mid} has no timer")
                if m.consumer is not None:
                    held_by_consumer[id(m.consumer)] = held_by_consumer.get(id(m.consumer), 0) + 1
                ubytes += m.size
            if ubytes != q.unacked_bytes:
                _fail(f"{where}: unacked_bytes {q.unacked_bytes} but messages hold {ubytes}")
            # consumers
            prio = None
            excl = 0
            for c in q.consumers:
                if c.queue is not q or c.session.consumers.get(c.tag) is not c:
                    _fail(f"{where}: consumer '{c.tag}' not listed by its session")
                if machine.sessions.get(c.session.id) is not c.session:
                    _fail(f"{where}: consumer '{c.tag}' of unknown session {c.session.id}")
                if prio is not None and c.priority > prio:
                    _fail(f"{where}: consumers not ordered by priority")
                prio = c.priority
                excl += c.exclusive
            if excl > 1 or (excl and len(q.consumers) > 1) or bool(excl) != q.exclusive_consumer:
                _fail(f"{where}: exclusive consumer rule broken")
            if q.owner is not None:
                owner = machine.sessions.get(q.owner)
                if owner is None or (vname, qname) not in owner.owned:
                    _fail(f"{where}: exclusive owner {q.owner} missing or does not list it")
            # timers
            head_exp = q.min_head_expiry()
            if head_exp is not None and (
                q.ttl_sched is None
                or q.ttl_sched > head_exp + 1
                or (q.ttl_sched, 1, (vname, qname)) not in heap_entries
            ):
                _fail(f"{where}: head expiry {head_exp} not covered by timer {q.ttl_sched}")
            if (
                q.expires is not None
                and not q.consumers
                and (
                    q.exp_sched is None
                    or q.exp_sched > q.last_used + q.expires
                    or (q.exp_sched, 2, (vname, qname)) not in heap_entries
                )
            ):
                _fail(f"{where}: x-expires not covered by timer {q.exp_sched}")
        # bindings
        for xname, x in vh.exchanges.items():
            for key, b in x.bindings.items():
                bw = f"binding {b.source}->{b.kind}:{b.dest} '{b.routing_key}'"
                if b.key != key or b.source != xname:
                    _fail(f"{bw}: indexed under the wrong key/source")
                if b.kind == "queue":
                    dq = vh.queues.get(b.dest)
                    if dq is None:
                        _fail(f"{bw}: destination queue missing")
                    elif b.durable != (x.durable and dq.logged):
                        _fail(f"{bw}: durability mismatch")
                else:
                    dx = vh.exchanges.get(b.dest)
                    if dx is None:
                        _fail(f"{bw}: destination exchange missing")
                    elif b.durable != (x.durable and dx.durable):
                        _fail(f"{bw}: durability mismatch")
                if b not in vh.by_dest.get((b.kind, b.dest), {}):
                    _fail(f"{bw}: not indexed by destination")
        for (dkind, dest), group in vh.by_dest.items():
            for b in group:
                src = vh.exchanges.get(b.source)
                if (
                    src is None
                    or src.bindings.get(b.key) is not b
                    or (b.kind, b.dest)
                    != (
                        dkind,
                        dest,
                    )
                ):
                    _fail(f"destination index lists a stale binding to {dkind}:{dest}")
    machine.auth.check(machine.vhosts)
    # sessions
    for sid, s in machine.sessions.items():
        if s.id != sid:
            _fail(f"session {sid} stored under the wrong id")
        if s.idle():
            _fail(f"session {sid} is idle but kept")
        cun = 0
        for mid, m in s.unacked.items():
            if m.session is not s or m.queue.unacked.get(mid) is not m or m.queue.deleted:
                _fail(f"session {sid}: unacked message {mid} not in its queue's unacked set")
            cun += m.consumer is not None and mid < machine.credit_id_max
        if cun != s.cunacked:
            _fail(f"session {sid}: cunacked {s.cunacked} but {cun} messages held by consumers")
        if s.gone & s.unacked.keys():
            _fail(f"session {sid}: an id is both unacked and gone")
        for tag, c in s.consumers.items():
            if c.tag != tag or c.session is not s or c.queue.deleted or c not in c.queue.consumers:
                _fail(f"session {sid}: consumer '{tag}' not on its queue")
            if not c.no_ack and c.unacked != held_by_consumer.get(id(c), 0):
                _fail(
                    f"session {sid}: consumer '{tag}' unacked {c.unacked} but holds "
                    f"{held_by_consumer.get(id(c), 0)}"
                )
            if c.prefetch and not c.no_ack and c.unacked > c.prefetch:
                _fail(f"session {sid}: consumer '{tag}' holds {c.unacked} > prefetch {c.prefetch}")
            if c.no_ack and c.unacked:
                _fail(f"session {sid}: no_ack consumer '{tag}' holds messages")
        for vname, qname in s.owned:
            oq = machine.vhosts[vname].queues.get(qname)
            if oq is None or oq.owner != sid:
                _fail(f"session {sid}: owns missing queue '{qname}'")
