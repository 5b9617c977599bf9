"""The broker's state machine in the simulator, and a seeded broker workload that checks the
broker's guarantees under Raft with faults.

``BrokerMachine`` applies each committed entry (msgpack ``[time_ms, command]``, the encoding of
``broker.core.codec.encode_entry`` that the node uses) to its own ``broker.core.machine.Machine``
with ``Meta(index, term, time_ms)``; empty entries (a new leader's no-op) are skipped. Its
snapshot is ``[index, chain digest, Machine.snapshot()]`` and restore uses ``Machine.restore``,
so InstallSnapshot carries the broker's own snapshot bytes. ``state_digest`` hashes
``Machine.snapshot()`` (the whole state: every command here is logged).

``BrokerClient`` is the workload, all through the log:

* Setup: durable exchanges (direct, topic, fanout, a fanout dead-letter exchange), durable
  queues (plain; message TTL; priorities with a delivery limit; max-length drop-head; delayed
  delivery; the dead-letter queue) and their bindings. A declaration is retried until a reply
  without error is acknowledged; publishing starts when the whole topology is confirmed.
* Publishes of 1-3 persistent messages, each with a unique body ``m<n>`` (some with a
  per-message expiration where the queue dead-letters). The confirm is the acknowledgement:
  the reply of the apply on the node proposed to, at the index and term ``propose`` returned.
* GET from three sessions with leases (or none, or no_ack), SETTLE COMPLETE / REQUEUE /
  DISCARD / MODIFY (now or after a delay) of held deliveries, SESSION_DOWN of a session.
* The leader proposes TICK when ``Machine.next_deadline`` is due and ``durable_due`` says a
  TICK changes logged state (as ``broker/node.py`` does), and now and then a plain TICK;
  a new leader sometimes proposes SESSIONS_RESET.

Checks (each returns the broken rule; the simulator fails the seed with it):

* On each confirm: a publish was routed to exactly the queues the topology routes it to and
  nothing was refused; a GET delivered only published bodies, ``redelivered`` is
  ``delivery_count > 1``, and no message id came with ``redelivered=False`` twice.
* On each committed entry, once, in log order (``observe``): a body is published by one entry
  only; a delivered body was published before; each delivery of a message id has the delivery
  count of the previous one plus one (so never ``redelivered=False`` twice); a SETTLE COMPLETE
  settles every id it names, each one delivered before.
* At the end, on every replica: every copy in a queue (ready, unacked or delayed) has a
  published body, and for every published body the copies still in queues plus the copies
  completed (SETTLE COMPLETE, or a no_ack GET) equal the copies it was routed to. Dead-letter
  routes lead to exactly one queue, so dead-lettering moves a copy and never loses one; a
  confirmed message is therefore either still in a queue or was delivered and completed, and
  nothing was duplicated.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import msgpack

from broker.core import commands as C
from broker.core.codec import decode_entry, encode_entry
from broker.core.invariants import check_invariants
from broker.core.machine import Machine
from broker.core.model import CoreError, Meta
from tests.sim.machine import StateMachine, chain
from tests.sim.sim import SimConfig

__all__ = ["BrokerClient", "BrokerMachine", "broker_config"]

VHOST = "/"
DLX = "dlx"
_DL = {"x-dead-letter-exchange": DLX}
EXCHANGES: tuple[tuple[str, str], ...] = (
    ("ex.direct", "direct"),
    ("ex.topic", "topic"),
    ("ex.fanout", "fanout"),
    (DLX, "fanout"),
)
QUEUES: dict[str, dict[str, Any]] = {
    "q.plain": {},
    "q.ttl": {"x-message-ttl": 150, **_DL},
    "q.prio": {"x-max-priority": 3, "x-delivery-limit": 3, **_DL},
    "q.short": {"x-max-length": 8, **_DL},
    "q.delay": {"x-message-delay": 40},
    "dlq": {},
}
BINDINGS: tuple[tuple[str, str, str], ...] = (
    ("ex.direct", "q.plain", "a"),
    ("ex.direct", "q.ttl", "b"),
    ("ex.topic", "q.prio", "k.*"),
    ("ex.topic", "q.short", "k.#"),
    ("ex.fanout", "q.plain", ""),
    ("ex.fanout", "q.delay", ""),
    (DLX, "dlq", ""),
)
#: exchange -> [(routing key, number of queues it routes to)]
ROUTES: dict[str, list[tuple[str, int]]] = {
    "ex.direct": [("a", 1), ("b", 1), ("nowhere", 0)],
    "ex.topic": [("k.x", 2), ("k.x.y", 1), ("k", 1), ("j.x", 0)],
    "ex.fanout": [("", 2)],
    "": [(q, 1) for q in QUEUES],
}
SESSIONS = (1 << 16, 2 << 16, 3 << 16)
LEASES_MS = (0, 0, 40, 150, 400, 1000)
#: a setup command not confirmed this long after it was proposed is proposed again
SETUP_RETRY_MS = 150
TICK_SPACING_MS = 15


def _setup_commands() -> list[list[Any]]:
    out = [C.cmd_declare_exchange(VHOST, name, type_) for name, type_ in EXCHANGES]
    out += [C.cmd_declare_queue(VHOST, name, arguments=args) for name, args in QUEUES.items()]
    out += [C.cmd_bind(VHOST, src, dest, rk) for src, dest, rk in BINDINGS]
    return out


SETUP = _setup_commands()
_SETUP_KEYS = [encode_entry(0, cmd) for cmd in SETUP]


def _replicated(machine: Machine) -> Machine:
    """The machine as a cluster runs it (replicated mode, where the core has one)."""
    switch = getattr(machine, "set_replicated", None)
    if switch is not None:
        switch()
    return machine


class BrokerMachine:
    """``broker.core.machine.Machine`` behind the simulator's ``StateMachine`` protocol."""

    def __init__(self) -> None:
        self.machine = _replicated(Machine())
        self._index = 0
        self._digest = b""

    @property
    def index(self) -> int:
        return self._index

    @property
    def digest(self) -> bytes:
        return self._digest

    def apply(self, index: int, term: int, data: bytes) -> Any:
        assert index == self._index + 1, f"applied {index} after {self._index}"
        self._index = index
        self._digest = chain(self._digest, data)
        if not data:
            return None
        time_ms, cmd = decode_entry(data)
        reply, effects = self.machine.apply(Meta(index, term, time_ms), cmd)
        return [reply, effects] if effects else reply

    def snapshot(self) -> bytes:
        out = msgpack.packb([self._index, self._digest, self.machine.snapshot()], use_bin_type=True)
        assert isinstance(out, bytes)
        return out

    def restore(self, data: bytes) -> None:
        index, digest, state = msgpack.unpackb(data, raw=False)
        self.machine = _replicated(Machine.restore(state))
        self._index, self._digest = index, digest

    def state_digest(self) -> bytes:
        return hashlib.blake2b(self.machine.snapshot(), digest_size=16).digest()

    def check(self) -> None:
        check_invariants(self.machine)

    def copies(self) -> dict[bytes, int]:
        """Body -> number of copies in queues (ready, unacked or delayed)."""
        out: dict[bytes, int] = {}
        for vh in self.machine.vhosts.values():
            for q in vh.queues.values():
                msgs = q.ready_in_order() + list(q.unacked.values())
                msgs += [m for _, _, m in q.delayed]
                for m in msgs:
                    out[m.body] = out.get(m.body, 0) + 1
        return out


class BrokerClient:
    """The seeded broker workload and its checks (see the module docstring)."""

    def __init__(self) -> None:
        self._proposed: set[bytes] = set()
        self._acked: set[bytes] = set()
        self._setup_done = [False] * len(SETUP)
        self._setup_sent = [-SETUP_RETRY_MS] * len(SETUP)
        self._n = 0
        self._bodies: set[bytes] = set()  # proposed bodies
        self.confirmed: set[bytes] = set()
        #: session -> message id -> (queue, body): what the client believes it holds
        self._held: dict[int, dict[int, tuple[str, bytes]]] = {s: {} for s in SESSIONS}
        self._fresh: set[int] = set()  # ids the client got with redelivered=False
        self._last_tick_ms = -(10**9)
        # what the committed log did (observe)
        self.routed: dict[bytes, int] = {}
        self._body_of: dict[int, bytes] = {}
        self._count: dict[int, int] = {}
        self.completed: dict[bytes, int] = {}
        self.deliveries = 0

    # -- proposing ---------------------------------------------------------------------------

    def _entry(self, now_ms: int, cmd: list[Any]) -> bytes:
        data = encode_entry(now_ms, cmd)
        self._proposed.add(data)
        return data

    def next_value(self, rng: random.Random, now_ms: int) -> bytes:
        if not all(self._setup_done):
            todo = [i for i, done in enumerate(self._setup_done) if not done]
            due = [i for i in todo if now_ms - self._setup_sent[i] >= SETUP_RETRY_MS]
            i = due[0] if due else rng.choice(todo)
            self._setup_sent[i] = now_ms
            return self._entry(now_ms, SETUP[i])
        r = rng.random()
        if r < 0.35:
            return self._entry(now_ms, self._publish(rng))
        if r < 0.6:
            session = rng.choice(SESSIONS)
            queue = rng.choice(list(QUEUES))
            no_ack = rng.random() < 0.05
            lease = rng.choice(LEASES_MS)
            cmd = C.cmd_get(
                session, VHOST, queue, max_n=rng.randrange(1, 5), lease_ms=lease, no_ack=no_ack
            )
            return self._entry(now_ms, cmd)
        if r < 0.97:
            settle = self._settle(rng)
            if settle is not None:
                return self._entry(now_ms, settle)
            return self._entry(now_ms, self._publish(rng))
        session = rng.choice(SESSIONS)
        self._held[session].clear()
        return self._entry(now_ms, C.cmd_session_down(session))

    def _publish(self, rng: random.Random) -> list[Any]:
        exchange = rng.choice(list(ROUTES))
        msgs = []
        for _ in range(rng.randrange(1, 4)):
            self._n += 1
            body = b"m%d" % self._n + b"." * rng.randrange(0, 32)
            self._bodies.add(body)
            rk, _ = rng.choice(ROUTES[exchange])
            props: dict[str, Any] = {"delivery_mode": 2}
            if exchange == "ex.topic":
                props["priority"] = rng.randrange(0, 5)
            if rk == "b" and rng.random() < 0.3:
                props["expiration"] = str(rng.randrange(0, 200))
            msgs.append(C.msg(rk, body, props))
        return C.cmd_publish(VHOST, exchange, msgs)

    def _settle(self, rng: random.Random) -> list[Any] | None:
        sessions = [s for s in SESSIONS if self._held[s]]
        if not sessions:
            return None
        session = rng.choice(sessions)
        held = self._held[session]
        ids = rng.sample(sorted(held), min(len(held), rng.randrange(1, 4)))
        r = rng.random()
        delay = 0
        if r < 0.6:
            op = C.SETTLE_COMPLETE
        elif r < 0.75:
            op = C.SETTLE_REQUEUE
        elif r < 0.9:
            op = C.SETTLE_MODIFY
            delay = rng.choice((0, rng.randrange(10, 200)))
        elif all("x-dead-letter-exchange" in QUEUES[held[i][0]] for i in ids):
            op = C.SETTLE_DISCARD
        else:
            op = C.SETTLE_COMPLETE
        if not (op == C.SETTLE_MODIFY and delay):
            for i in ids:
                del held[i]
        return C.cmd_settle(session, op, ids, delay)

    def leader_value(
        self, rng: random.Random, machine: StateMachine, now_ms: int, elected: bool
    ) -> bytes | None:
        assert isinstance(machine, BrokerMachine)
        if elected and rng.random() < 0.25:
            return self._entry(now_ms, C.cmd_sessions_reset())
        if now_ms - self._last_tick_ms < TICK_SPACING_MS:
            return None
        m = machine.machine
        deadline = m.next_deadline()
        due = deadline is not None and deadline <= now_ms and m.durable_due(now_ms)
        if due or rng.random() < 0.01:
            self._last_tick_ms = now_ms
            return self._entry(now_ms, C.cmd_tick())
        return None

    # -- replies -----------------------------------------------------------------------------

    def acknowledged(self, data: bytes, reply: Any) -> str | None:
        self._acked.add(data)
        _, cmd = decode_entry(data)
        op = cmd[0]
        if op in (C.DECLARE_EXCHANGE, C.DECLARE_QUEUE, C.BIND):
            if isinstance(reply, CoreError):
                return None  # e.g. a bind before its queue: retried
            key = encode_entry(0, cmd)
            self._setup_done[_SETUP_KEYS.index(key)] = True
        elif op == C.PUBLISH:
            if isinstance(reply, CoreError):
                return f"confirmed publish refused: {reply}"
            routed, rejected = reply[0], reply[1]
            want = dict(ROUTES[cmd[2]])
            for (rk, _, body, _), n in zip(cmd[3], routed, strict=True):
                if n != want[rk]:
                    return f"publish of {body!r} to {cmd[2]!r}/{rk!r} routed to {n}, not {want[rk]}"
                self.confirmed.add(body)
            if rejected:
                return f"publish refused positions {rejected}"
        elif op == C.GET:
            if isinstance(reply, CoreError):
                return f"GET refused: {reply}"
            session, queue, no_ack = cmd[1], cmd[3], cmd[6]
            for mid, redelivered, count, _, _, _, body in reply[0]:
                if body not in self._bodies:
                    return f"GET delivered {body!r}, never published"
                if redelivered != (count > 1):
                    return f"message {mid}: redelivered={redelivered} at delivery {count}"
                if not redelivered:
                    if mid in self._fresh:
                        return f"message {mid} ({body!r}) delivered with redelivered=False twice"
                    self._fresh.add(mid)
                if not no_ack:
                    self._held[session][mid] = (queue, body)
        elif op == C.SETTLE and isinstance(reply, CoreError):
            for mid in cmd[3]:
                self._held[cmd[1]].pop(mid, None)  # no longer held (lease, session down)
        return None

    def observe(self, index: int, data: bytes, reply: Any) -> str | None:
        if not data:
            return None
        _, cmd = decode_entry(data)
        op = cmd[0]
        if isinstance(reply, CoreError):
            if op in (C.PUBLISH, C.GET):  # proposed only once the topology was confirmed
                return f"{C.NAMES[op]} refused: {reply}"
            return None
        if op == C.PUBLISH:
            for (_, _, body, _), n in zip(cmd[3], reply[0], strict=True):
                if body in self.routed:
                    return f"{body!r} published twice"
                self.routed[body] = n
        elif op == C.GET:
            for mid, redelivered, count, _, _, _, body in reply[0]:
                self.deliveries += 1
                if body not in self.routed:
                    return f"GET delivered {body!r}, never published"
                last = self._count.get(mid, 0)
                if count != last + 1 or redelivered != (count > 1):
                    return (
                        f"message {mid} ({body!r}) delivered with count {count} redelivered="
                        f"{redelivered}, after delivery {last}"
                    )
                self._count[mid] = count
                self._body_of[mid] = body
                if cmd[6]:  # no_ack
                    self.completed[body] = self.completed.get(body, 0) + 1
        elif op == C.SETTLE and cmd[2] == C.SETTLE_COMPLETE:
            if reply != len(cmd[3]):
                return f"SETTLE COMPLETE of {cmd[3]} settled {reply}"
            for mid in cmd[3]:
                body = self._body_of.get(mid)
                if body is None:
                    return f"SETTLE COMPLETE of {mid}, never delivered"
                self.completed[body] = self.completed.get(body, 0) + 1
        return None

    def final_check(self, machine: StateMachine) -> str | None:
        assert isinstance(machine, BrokerMachine)
        copies = machine.copies()
        for body in copies:
            if body not in self.routed:
                return f"{body!r} is in a queue but was never published"
        lost = [b for b in self.confirmed if b not in self.routed]
        if lost:
            return f"confirmed messages not in the committed log: {sorted(lost)[:3]}"
        for body, n in self.routed.items():
            have = copies.get(body, 0) + self.completed.get(body, 0)
            if have != n:
                what = "lost" if have < n else "duplicated"
                return (
                    f"{body!r} {what}: routed to {n} queues, {copies.get(body, 0)} copies left "
                    f"and {self.completed.get(body, 0)} completed"
                    f"{' (confirmed)' if body in self.confirmed else ''}"
                )
        return None

    def is_proposed(self, data: bytes) -> bool:
        return data in self._proposed

    def stats(self) -> dict[str, int]:
        return {
            "acked": len(self._acked),
            "published": len(self.routed),
            "confirmed": len(self.confirmed),
            "deliveries": self.deliveries,
            "redeliveries": sum(n - 1 for n in self._count.values()),
            "completed": sum(self.completed.values()),
        }

    @property
    def acked(self) -> set[bytes]:
        return self._acked


def broker_config(nodes: int = 3, fault_units: int = 3_000) -> SimConfig:
    """The simulator with the broker machine and workload."""
    return SimConfig(
        nodes=nodes,
        fault_units=fault_units,
        make_machine=BrokerMachine,
        make_client=BrokerClient,
        chunk_bytes_max=512,
        state_every=4,
        invariants_every=4,
        clock_skew_ms_max=40,
    )
