"""A seeded simulation of a Raft cluster: N cores in one process over a simulated network, disk
and clock, with every fault chosen by one ``random.Random(seed)``.

Model:

* Clock: integer time units; each node ticks every ``TICK_UNITS`` (with a per-node phase).
* Network: each message is encoded with ``encode_message`` and decoded on arrival; while faults
  are on it may be dropped, duplicated, delayed (so reordered) or cut by a partition.
* Disk (``SimDisk``): a Ready is persisted in two steps. At the start the snapshot (rename) and a
  truncation are durable at once and the appended entries are written but not synced (a
  leader's appends and heartbeats are sent now: ``sendable_early``); after a disk delay the
  sync completes, and only then are the other messages sent, committed entries applied and
  ``advance`` called. A crash in between keeps a random prefix of the unsynced entries (a
  torn tail) and either the old or the new hard state.
* Crash and restart from the durable state; a restart may find a damaged log (truncated to a
  random earlier index and started with ``log_damaged=True``), one node at a time.
* Clients propose values to the node they believe leads (``Client.next_value``, stamped with
  that node's clock; clocks are skewed per node by up to ``clock_skew_ms_max``); a value is
  acknowledged, with the reply of that apply, when the node it was proposed to applies it at
  the index and term ``propose`` returned. A leader may propose values of its own as time
  passes (``Client.leader_value``: the broker's TICK).
* The state machine is ``ListMachine`` (a hash chain) or the broker's ``Machine``
  (``tests/sim/broker.py``); one time unit is one millisecond of every node's clock.

Checked after every event (``SafetyError`` names the rule): at most one leader per term; log
matching (an (index, term) pair always names the same entry and the same previous term);
leader completeness (a new leader holds every entry applied anywhere, and every leader holds
entries committed after it was elected); state machine safety (every replica's hash chain at
index i is the same, every replica's reply to entry i is the same, and at every index that
is a multiple of ``state_every`` (and at every snapshot restored) the whole state,
``state_digest``, is the same); nothing applied that was not proposed; each core's own
invariants and, at every ``invariants_every``-th index and every restore, the machine's own;
the client's checks of each reply it gets (``acknowledged``) and of each committed entry, once,
in index order (``observe``). After the fault phase the network heals and every node restarts;
then a leader must be elected, a final proposal acknowledged and every replica caught up within
``LIVENESS_UNITS``, with equal states and the client's ``final_check`` passing on each.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.raft.core import (
    Entry,
    HardState,
    Message,
    Proposed,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    SnapshotMeta,
    decode_message,
    encode_message,
    sendable_early,
)
from tests.sim.machine import Client, ListMachine, StateMachine, UniqueValueClient, chain

__all__ = ["SafetyError", "SimConfig", "SimDisk", "Simulation", "run_seed"]

TICK_UNITS = 10
FAULT_UNITS = 10
LIVENESS_UNITS = 40_000


class SafetyError(AssertionError):
    """A Raft guarantee was broken; the message says which."""


@dataclass
class SimConfig:
    nodes: int = 3
    fault_units: int = 3_000
    snapshot_every_entries: int = 20
    chunk_bytes_max: int = 64
    pre_vote: bool = True
    check_quorum: bool = True
    make_machine: Callable[[], StateMachine] = ListMachine
    make_client: Callable[[], Client] = UniqueValueClient
    #: compare whole states at indexes that are multiples of this; run the machine's
    #: invariants at multiples of ``invariants_every``
    state_every: int = 1
    invariants_every: int = 1
    clock_skew_ms_max: int = 0
    # fault rates (per message / per time unit), drawn from the seed when None
    drop: float | None = None
    duplicate: float | None = None
    crash: float | None = None
    partition: float | None = None
    damage: float | None = None


class SimDisk:
    """One node's durable state, and the RaftStorage view of it the core reads."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snap = SnapshotMeta()
        self.snap_data = b""
        self.first = 1  # index of log[0]
        self.log: list[tuple[int, bytes]] = []
        self.synced_last = 0
        self.staged_hs: HardState | None = None

    # RaftStorage
    def initial_state(self) -> HardState:
        return self.hard_state

    def snapshot_meta(self) -> SnapshotMeta:
        return self.snap

    def snapshot_read(self, index: int, offset: int, size_bytes_max: int) -> bytes:
        assert index == self.snap.index, (index, self.snap.index)
        return self.snap_data[offset : offset + size_bytes_max]

    def first_index(self) -> int:
        return self.first

    def last_index(self) -> int:
        return self.first + len(self.log) - 1

    def term_at(self, index: int) -> int | None:
        if index == self.snap.index:
            return self.snap.term
        rel = index - self.first
        if 0 <= rel < len(self.log):
            return self.log[rel][0]
        return 0 if index == 0 else None

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[tuple[int, bytes]]:
        assert self.first <= lo <= hi <= self.last_index() + 1, (lo, hi, self.first)
        out: list[tuple[int, bytes]] = []
        for term, data in self.log[lo - self.first : hi - self.first]:
            if out and len(data) > bytes_max:
                break
            bytes_max -= len(data)
            out.append((term, data))
        return out

    # the driver's side
    def begin(self, rd: Ready) -> None:
        """Start persisting ``rd``: snapshot and truncation durable now, appends unsynced."""
        if rd.snapshot is not None:
            s = rd.snapshot
            self.snap = SnapshotMeta(s.index, s.term, len(s.data))
            self.snap_data = s.data
            self.first, self.log = s.index + 1, []
            self.synced_last = s.index
        if rd.entries:
            start = rd.entries[0].index
            assert self.first <= start <= self.last_index() + 1, (start, self.first)
            if start <= self.last_index():
                del self.log[start - self.first :]
                self.synced_last = min(self.synced_last, start - 1)
            prev = self.term_at(start - 1)
            for e in rd.entries:
                assert prev is None or e.term >= prev, "log terms must not decrease"
                prev = e.term
                self.log.append((e.term, e.data))
        if rd.hard_state is not None:
            self.staged_hs = rd.hard_state

    def sync(self) -> None:
        self.synced_last = self.last_index()
        if self.staged_hs is not None:
            self.hard_state, self.staged_hs = self.staged_hs, None

    def crash(self, rng: random.Random) -> None:
        """Lose what was not synced: keep a random prefix of it (a torn tail beyond)."""
        unsynced = self.last_index() - self.synced_last
        if unsynced > 0:
            keep = rng.randrange(unsynced + 1)
            del self.log[self.synced_last + keep + 1 - self.first :]
        self.synced_last = self.last_index()
        if self.staged_hs is not None:
            if rng.random() < 0.5:
                self.hard_state = self.staged_hs
            self.staged_hs = None

    def compact(self, index: int, term: int, data: bytes) -> None:
        self.snap = SnapshotMeta(index, term, len(data))
        self.snap_data = data
        if index >= self.first:
            del self.log[: index + 1 - self.first]
            self.first = index + 1

    def damage(self, rng: random.Random) -> int:
        """A CRC failure: the log is truncated to a random last good index. Returns it."""
        good = self.snap.index
        if self.log:
            good = max(rng.randrange(self.snap.index, self.last_index() + 1), self.first - 1)
        del self.log[good + 1 - self.first :]
        self.synced_last = self.last_index()
        return good


@dataclass
class SimNode:
    id: str
    disk: SimDisk
    machine: StateMachine
    core: RaftCore | None = None
    pending: Ready | None = None
    generation: int = 0
    was_leader: bool = False
    led_term: int = 0  # the term of its last leader_value call


# events: (time, seq, kind, node, generation, payload); seq makes the order total
_Event = tuple[int, int, int, str, int, bytes]
_TICK, _DELIVER, _PERSIST, _FAULT, _CLIENT = range(5)


class Simulation:
    def __init__(self, seed: int, cfg: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg = cfg if cfg is not None else SimConfig()
        self.rng = rng = random.Random(seed)
        self.ids = tuple(f"n{i}" for i in range(cfg.nodes))
        self.drop = cfg.drop if cfg.drop is not None else rng.choice((0.0, 0.02, 0.1, 0.3))
        self.duplicate = cfg.duplicate if cfg.duplicate is not None else rng.choice((0.0, 0.05))
        # crash and partition rates are per fault check, one every FAULT_UNITS
        self.crash_rate = cfg.crash if cfg.crash is not None else rng.choice((0.0, 5e-3, 2e-2))
        self.partition_rate = (
            cfg.partition if cfg.partition is not None else rng.choice((0.0, 5e-3, 2e-2))
        )
        self.damage_rate = cfg.damage if cfg.damage is not None else rng.choice((0.0, 0.3))
        self.heartbeat_ticks = rng.choice((1, 2))
        self.inflight_max = rng.choice((1, 2, 8))
        self.entries_per_message_max = rng.choice((1, 3, 64))
        self.client = cfg.make_client()
        skews = random.Random(seed * 1_000_003 + 17)  # its own stream: the fault draws stay put
        self.skew = {i: skews.randrange(cfg.clock_skew_ms_max + 1) for i in self.ids}
        self.nodes = {i: SimNode(i, SimDisk(), cfg.make_machine()) for i in self.ids}
        self.now = 0
        self.steps = 0
        self.faults_on = True
        self.groups: dict[str, int] = {}  # partition group per node; empty = healed
        self.down: dict[str, int] = {}  # crashed node -> restart time
        self._events: list[_Event] = []
        self._seq = 0
        # what the checker knows
        self.leaders: dict[int, str] = {}
        self.entries_seen: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self.applied: dict[int, tuple[int, bytes, bytes]] = {}  # index -> (term, data, digest)
        self.replies: dict[int, bytes] = {}  # index -> hash of the first reply
        self.states: dict[int, bytes] = {}  # index -> state_digest, at the sampled indexes
        self.outstanding: dict[tuple[str, int], tuple[int, bytes]] = {}
        self.damaged_node: str | None = None
        self.stats = {"messages": 0, "crashes": 0, "partitions": 0, "snapshots_sent": 0}
        for i in self.ids:
            self._start(i, damaged=False)
            self._push(rng.randrange(TICK_UNITS), _TICK, i, self.nodes[i].generation)
        self._push(1, _FAULT, "")
        self._push(1, _CLIENT, "")

    # -- plumbing ----------------------------------------------------------------------------

    def _push(
        self, delay: int, kind: int, node: str, generation: int = 0, payload: bytes = b""
    ) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + delay, self._seq, kind, node, generation, payload))

    def _config(self, node: str) -> RaftConfig:
        return RaftConfig(
            id=node,
            peers=self.ids,
            election_ticks=10,
            heartbeat_ticks=self.heartbeat_ticks,
            pre_vote=self.cfg.pre_vote,
            check_quorum=self.cfg.check_quorum,
            entries_per_message_max=self.entries_per_message_max,
            bytes_per_message_max=256,
            inflight_messages_max=self.inflight_max,
            snapshot_chunk_bytes_max=self.cfg.chunk_bytes_max,
            seed=self.seed,
            unstable_entries_max=64,
        )

    def _start(self, node_id: str, *, damaged: bool) -> None:
        node = self.nodes[node_id]
        node.generation += 1
        node.pending = None
        node.was_leader = False
        node.led_term = 0
        node.machine = self.cfg.make_machine()
        if node.disk.snap.index:
            node.machine.restore(node.disk.snap_data)
            self._check_digest(node_id, node.machine.index, node.machine.digest)
            self._check_state(node, always=True)
        node.core = RaftCore(self._config(node_id), node.disk, log_damaged=damaged)

    def _crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.core = None
        node.pending = None
        node.generation += 1
        node.disk.crash(self.rng)
        for key in [k for k in self.outstanding if k[0] == node_id]:
            del self.outstanding[key]
        self.stats["crashes"] += 1

    def _fail(self, rule: str) -> SafetyError:
        return SafetyError(f"seed {self.seed}, t={self.now}, step {self.steps}: {rule}")

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        cfg = self.cfg
        while self.now < cfg.fault_units:
            self.step()
        self.faults_on = False
        self.groups.clear()
        for node_id in list(self.down):
            del self.down[node_id]
            self._start(node_id, damaged=False)
            self._push(1, _TICK, node_id, self.nodes[node_id].generation)
        deadline = self.now + LIVENESS_UNITS
        marker: bytes | None = None
        while True:
            if self.now > deadline:
                raise self._fail(self._liveness_report(marker))
            self.step()
            if self.steps % 16:
                continue
            leader = self._leader()
            if leader is None:
                continue
            if marker is None:
                marker = self._propose(leader)
                continue
            if marker in self.client.acked and self._caught_up():
                break
            core = self.nodes[leader].core
            assert core is not None
            term = core.term
            # Proposals this node made as leader of an earlier term may be lost for good
            # (never committed, overwritten) without its log ever reaching their index again:
            # only those of its current term are still on their way.
            waiting = any(k[0] == leader and v[0] == term for k, v in self.outstanding.items())
            if not waiting and marker not in self.client.acked:
                marker = self._propose(leader)  # the first try was lost with a leader change
        self._final_check()
        return {"steps": self.steps, "time": self.now, **self.stats, **self.client.stats()}

    def _leader(self) -> str | None:
        for node in self.nodes.values():
            if node.core is not None and node.core.role == Role.LEADER:
                return node.id
        return None

    def _caught_up(self) -> bool:
        indexes = set()
        for node in self.nodes.values():
            if node.core is None or node.pending is not None or node.core.has_ready():
                return False
            indexes.add((node.machine.index, node.core.committed, node.core.last_index))
        return len(indexes) == 1

    def _liveness_report(self, marker: bytes | None) -> str:
        parts = []
        for node in self.nodes.values():
            c = node.core
            if c is None:
                parts.append(f"{node.id}: down")
            else:
                parts.append(
                    f"{node.id}: {c.role.name} t{c.term} commit {c.committed} "
                    f"last {c.last_index} applied {node.machine.index}"
                    f"{' damaged' if c.log_damaged else ''}"
                )
        return f"liveness: not converged (marker {marker!r}): " + "; ".join(parts)

    def step(self) -> None:
        self.now, _, kind, node_id, generation, payload = heapq.heappop(self._events)
        self.steps += 1
        node = self.nodes.get(node_id)
        if kind == _TICK:
            assert node is not None
            if node.core is None or generation != node.generation:
                return
            node.core.tick()
            self._push(TICK_UNITS, _TICK, node_id, node.generation)
            if self.faults_on and node.core.role == Role.LEADER:
                elected = node.led_term != node.core.term
                node.led_term = node.core.term
                value = self.client.leader_value(
                    self.rng, node.machine, self._clock(node_id), elected
                )
                if value is not None:
                    self._propose(node_id, value)
        elif kind == _DELIVER:
            assert node is not None
            if node.core is None:
                return
            node.core.step(decode_message(payload))
        elif kind == _PERSIST:
            assert node is not None
            if node.core is None or generation != node.generation:
                return
            self._finish_ready(node)
        elif kind == _FAULT:
            self._faults()
            self._push(FAULT_UNITS, _FAULT, "")
            return
        elif kind == _CLIENT:
            self._client()
            self._push(self.rng.randrange(5, 40), _CLIENT, "")
            return
        assert node is not None
        if node.core is not None:
            self._drive(node)
            node.core.check_invariants()
            self._check_leaders()

    def _drive(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if node.pending is not None:
            return
        rd = core.ready()
        if rd is None:
            return
        # log matching: an (index, term) pair names one entry with one previous term
        node.disk.begin(rd)
        for e in rd.entries:
            prev = node.disk.term_at(e.index - 1)
            seen = self.entries_seen.setdefault((e.index, e.term), (e.data, prev))
            if seen[0] != e.data or (seen[1] is not None and prev is not None and seen[1] != prev):
                raise self._fail(
                    f"log matching: {node.id} wrote ({e.index}, t{e.term}) = "
                    f"{e.data!r}/prev t{prev}, elsewhere {seen[0]!r}/prev t{seen[1]}"
                )
        # a leader's appends leave before its disk write (thesis 10.2.1), as broker/cluster.py
        # sends them; a crash before the sync keeps them on the followers only
        for m in rd.messages:
            if sendable_early(rd, m):
                self._send(m)
        node.pending = rd
        self._push(self.rng.randrange(1, 4), _PERSIST, node.id, node.generation)

    def _finish_ready(self, node: SimNode) -> None:
        core, rd = node.core, node.pending
        assert core is not None and rd is not None
        node.pending = None
        node.disk.sync()
        for m in rd.messages:
            if not sendable_early(rd, m):
                self._send(m)
        if rd.snapshot is not None:
            node.machine.restore(rd.snapshot.data)
            if node.machine.index != rd.snapshot.index:
                raise self._fail(f"{node.id}: snapshot {rd.snapshot.index} holds another index")
            self._check_digest(node.id, node.machine.index, node.machine.digest)
            self._check_state(node, always=True)
        for e in rd.committed:
            self._apply(node, e)
        core.advance(rd)
        applied = node.machine.index
        if applied - node.disk.snap.index >= self.cfg.snapshot_every_entries:
            term = core.term_at(applied)
            if term is None:
                # a snapshot received since this Ready waits to replace the log: not now
                assert core.has_ready(), (node.id, applied)
                return
            node.disk.compact(applied, term, node.machine.snapshot())
            core.report_compacted(applied)
            self._check_state(node, always=True)

    def _apply(self, node: SimNode, e: Entry) -> None:
        if e.data and not self.client.is_proposed(e.data):
            raise self._fail(f"{node.id} applied {e.data!r} at {e.index}, never proposed")
        reply = node.machine.apply(e.index, e.term, e.data)
        digest = node.machine.digest
        reply_hash = _reply_hash(reply)
        got = self.applied.get(e.index)
        if got is None:
            prev = self.applied.get(e.index - 1)
            if prev is not None and chain(prev[2], e.data) != digest:
                raise self._fail(f"state machine safety: {node.id} diverged at {e.index}")
            self.applied[e.index] = (e.term, e.data, digest)
            self.replies[e.index] = reply_hash
            self._check_new_commit(e.index, e.term)
            broken = self.client.observe(e.index, e.data, reply)
            if broken is not None:
                raise self._fail(f"entry {e.index} (first applied on {node.id}): {broken}")
        elif got != (e.term, e.data, digest):
            raise self._fail(
                f"state machine safety: {node.id} applied ({e.index}, t{e.term}, {e.data!r}), "
                f"another node applied (t{got[0]}, {got[1]!r})"
            )
        elif self.replies.get(e.index, reply_hash) != reply_hash:
            raise self._fail(
                f"state machine safety: {node.id} replied {reply!r} to entry {e.index}, "
                "another replica replied otherwise"
            )
        self._check_state(node)
        key = (node.id, e.index)
        want = self.outstanding.pop(key, None)
        if want is not None and want[0] == e.term:
            if want[1] != e.data:
                raise self._fail(f"{node.id}: ({e.index}, t{e.term}) is not what was proposed")
            broken = self.client.acknowledged(e.data, reply)
            if broken is not None:
                raise self._fail(f"reply from {node.id} to entry {e.index}: {broken}")

    def _check_state(self, node: SimNode, *, always: bool = False) -> None:
        """Whole-state equality at the sampled indexes (and ``always``: after a restore), and
        the machine's own invariants at theirs."""
        machine = node.machine
        index = machine.index
        if always or index % self.cfg.state_every == 0:
            state = machine.state_digest()
            seen = self.states.setdefault(index, state)
            if seen != state:
                raise self._fail(f"state machine safety: {node.id}'s state at {index} differs")
        if always or index % self.cfg.invariants_every == 0:
            try:
                machine.check()
            except AssertionError as exc:
                raise self._fail(f"{node.id}: machine invariant at {index}: {exc}") from None

    def _check_digest(self, node_id: str, index: int, digest: bytes) -> None:
        got = self.applied.get(index)
        if got is not None and got[2] != digest:
            raise self._fail(f"state machine safety: {node_id} snapshot at {index} differs")

    def _check_leaders(self) -> None:
        for node in self.nodes.values():
            core = node.core
            if core is None or core.role != Role.LEADER:
                node.was_leader = False
                continue
            other = self.leaders.setdefault(core.term, node.id)
            if other != node.id:
                raise self._fail(f"two leaders in term {core.term}: {other} and {node.id}")
            if not node.was_leader:
                node.was_leader = True
                # leader completeness (§5.4.3): everything applied anywhere is in its log
                for index, (term, _, _) in self.applied.items():
                    has = core.term_at(index)
                    if has is None and index <= core.committed:
                        continue  # compacted into its snapshot
                    if has != term:
                        raise self._fail(
                            f"leader completeness: {node.id} (t{core.term}) lacks "
                            f"({index}, t{term}); has t{core.term_at(index)}"
                        )

    def _check_new_commit(self, index: int, term: int) -> None:
        for node in self.nodes.values():
            core = node.core
            if core is None or core.role != Role.LEADER or core.term <= term:
                continue
            has = core.term_at(index)
            if (has is not None or index > core.committed) and has != term:
                raise self._fail(
                    f"leader completeness: leader {node.id} (t{core.term}) lacks committed "
                    f"({index}, t{term})"
                )

    def _final_check(self) -> None:
        digests = {(n.machine.index, n.machine.digest) for n in self.nodes.values()}
        if len(digests) != 1:
            raise self._fail(f"replicas differ at the end: {digests}")
        states = {n.machine.state_digest() for n in self.nodes.values()}
        if len(states) != 1:
            raise self._fail("replica states differ at the end")
        for node in self.nodes.values():
            broken = self.client.final_check(node.machine)
            if broken is not None:
                raise self._fail(f"at the end on {node.id}: {broken}")

    # -- network, clients, faults ------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self.stats["messages"] += 1
        if m.data:
            self.stats["snapshots_sent"] += 1
        rng = self.rng
        if self.faults_on:
            if self.groups and self.groups.get(m.frm, 0) != self.groups.get(m.to, 0):
                return
            if rng.random() < self.drop:
                return
            copies = 2 if rng.random() < self.duplicate else 1
            delay_max = 30
        else:
            copies, delay_max = 1, 5
        raw = encode_message(m)
        for _ in range(copies):
            self._push(rng.randrange(1, delay_max), _DELIVER, m.to, payload=raw)

    def _clock(self, node_id: str) -> int:
        return self.now + self.skew[node_id]

    def _propose(self, node_id: str, value: bytes | None = None) -> bytes | None:
        core = self.nodes[node_id].core
        if core is None:
            return None
        if value is None:
            value = self.client.next_value(self.rng, self._clock(node_id))
        res = core.propose([value])
        if isinstance(res, Proposed):
            self.outstanding[(node_id, res.first_index)] = (res.term, value)
            self._drive(self.nodes[node_id])
            return value
        return None

    def _client(self) -> None:
        if not self.faults_on:
            return
        leader = self._leader()
        target = leader if leader is not None and self.rng.random() < 0.9 else None
        if target is None:
            target = self.rng.choice(self.ids)
        for _ in range(self.rng.randrange(1, 4)):
            self._propose(target)

    def _faults(self) -> None:
        if not self.faults_on:
            return
        rng = self.rng
        for node_id, when in list(self.down.items()):
            if when <= self.now:
                del self.down[node_id]
                damaged = False
                if self.damaged_node is None and rng.random() < self.damage_rate:
                    self.nodes[node_id].disk.damage(rng)
                    damaged = True
                    self.damaged_node = node_id
                self._start(node_id, damaged=damaged)
                self._push(1, _TICK, node_id, self.nodes[node_id].generation)
        if self.damaged_node is not None:
            core = self.nodes[self.damaged_node].core
            if core is not None and not core.log_damaged:
                self.damaged_node = None
        if rng.random() < self.crash_rate:
            # leaders half the time: their crashes are the ones that test the safety rules
            leader = self._leader()
            node_id = leader if leader is not None and rng.random() < 0.5 else rng.choice(self.ids)
            if node_id not in self.down and node_id != self.damaged_node:
                self._crash(node_id)
                self.down[node_id] = self.now + rng.randrange(10, 40 * TICK_UNITS)
        if rng.random() < self.partition_rate:
            if self.groups:
                self.groups.clear()
            else:
                self.groups = {i: rng.randrange(2) for i in self.ids}
                self.stats["partitions"] += 1


def _reply_hash(reply: Any) -> bytes:
    if reply is None:
        return b""
    return hashlib.blake2b(repr(reply).encode(), digest_size=16).digest()


def run_seed(seed: int, cfg: SimConfig | None = None) -> dict[str, int]:
    """Run one seed to the end; raises SafetyError (or an AssertionError) on a violation."""
    return Simulation(seed, cfg).run()
