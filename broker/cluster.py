"""Cluster mode: the Raft replicator behind the node's commit pipeline.

One Raft group holds the whole broker (DESIGN.md section 4); ``Cluster`` owns its core
(``storage/raft/core.py``), its log, hard state and snapshots, and the peer links
(``storage/raft/transport.py``), and drives the core with etcd's Ready loop.

How a durable command travels:

1. ``Node.submit`` hands it to ``submit(cmd) -> ticket``. On the leader the command becomes an
   entry at once; on a follower it is queued for the leader and sent in one ``KIND_FORWARD``
   frame per loop iteration (``[incarnation, [[ticket, command bytes], ...]]``). With no
   leader known it waits in that queue.
2. The leader stamps the time and proposes ``header | encode_entry(time_ms, cmd)``; the header
   (``ENTRY_HEADER``) names the node that submitted it, that process's incarnation and the
   ticket. Every proposal made while the previous Ready was persisted goes into the next Ready:
   group commit. A leader that cannot propose (not leader any more, transfer in progress,
   buffer full) answers ``KIND_FORWARD_NACK`` and the submitter queues them again.
3. The Ready loop persists snapshot, entries and hard state, fsyncs, and only then sends the
   messages; then every replica applies the committed entries to its own machine
   (``Node.apply_cluster_entries``) and the submitting node answers its client when it
   applies the entry carrying its (incarnation, ticket). Empty entries (a new leader's no-op)
   are skipped.
4. A ticket not applied within ``cluster_propose_timeout_ms`` answers its client with
   ``RESOURCE_ERROR`` (no leader, no quorum): never a silent hang. The command may still commit
   later (the client sees an error for a command that took effect: at-least-once).

Sessions carry the number of the node that hosts them in bits ``SESSION_NODE_SHIFT`` and up, and
a per-process random start for their connection numbers, so every replica tells whose a session
is, and a restarted node never reuses the id of a session the cluster still knows. Effects are
executed by the node hosting the session they name (the others find no sink for it); that is
how deliveries reach a client connected to a follower. Sessions of a node whose link has been
down for ``cluster_session_timeout_ms`` are closed by the leader (``SESSION_DOWN``), and a node
closes the sessions of its own previous incarnations once it has caught up, so unsettled
deliveries of a dead node are redelivered.

Transient commands never leave the node (DESIGN.md section 1): transient queues live on the node
that declared them. Machine rule 7 (``Machine.set_replicated``) keeps the replicas equal.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from broker.config import Config
from broker.core import commands as C
from broker.core.codec import DecodeError, decode_entry, encode_command
from broker.core.machine import Machine, Meta
from broker.core.model import SERVICE_SESSION_BASE, CoreError
from storage.errors import CorruptLogError
from storage.hardstate import load_hard_state, save_hard_state
from storage.log import LogError, SegmentedLog
from storage.raft.core import (
    Entry,
    HardState,
    LogStorage,
    Message,
    NotLeader,
    Proposed,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    sendable_early,
)
from storage.raft.transport import KIND_USER_BASE, PeerTransport, TransportLimits
from storage.snapshot import list_snapshots, load_latest_snapshot, write_snapshot

if TYPE_CHECKING:
    from broker.node import Node

__all__ = [
    "ENTRY_HEADER",
    "SESSION_NODE_SHIFT",
    "Cluster",
    "session_host",
]

log = logging.getLogger("polymq.cluster")

KIND_FORWARD = KIND_USER_BASE
KIND_FORWARD_NACK = KIND_USER_BASE + 1
KIND_RPC = KIND_USER_BASE + 2  # [call id, service, payload]: a request for the leader
KIND_RPC_REPLY = KIND_USER_BASE + 3  # [call id, ok, payload or error text]

#: version u8 | origin node number u16 | origin incarnation u32 | ticket u64
ENTRY_HEADER = struct.Struct("<BHIQ")
ENTRY_VERSION = 1
#: a session id's bits from here up name the node that hosts it (0 on a single node)
SESSION_NODE_SHIFT = 48
SESSION_CONNECTION_BITS = 32
SESSION_NODES_MAX = (SERVICE_SESSION_BASE >> SESSION_NODE_SHIFT) - 1
#: the header of a snapshot file (storage/snapshot.py): magic, version, index, term, length, crc
SNAPSHOT_HEADER_BYTES = struct.calcsize("<4sIQQQI")
RESOURCE_ERROR = 506
FORWARD_BATCH_COMMANDS_MAX = 4096
SESSION_SWEEP_INTERVAL_S = 1.0
TRANSFER_WAIT_S = 3.0
#: requests from followers the leader serves at once (more are answered "busy")
RPC_SERVING_MAX = 512
#: requests this node has sent to the leader and waits for
RPC_CALLS_MAX = 4096
RPC_FAILED = "failed: "
#: damaged records a log is cut at, one after another, before the node gives up
DAMAGE_REPAIRS_MAX = 64


class RpcUnavailable(Exception):
    """A call to the leader could not be made or answered: no leader, link down, the leader
    changed or stopped serving, or busy. ``served`` False: the leader certainly did not run
    it (a retry is safe); True: it may have (the link or the leader went while waiting)."""

    def __init__(self, text: str, *, served: bool) -> None:
        super().__init__(text)
        self.served = served


RpcHandler = Callable[[bytes], Awaitable[bytes]]


def session_host(session: int) -> int:
    """The number of the node hosting ``session`` (0 on a single node or a service session)."""
    if session >= SERVICE_SESSION_BASE:
        return 0
    return session >> SESSION_NODE_SHIFT


class Cluster:
    def __init__(self, node: Node, config: Config, peers: dict[str, tuple[str, int]]) -> None:
        self.node = node
        self.config = config
        self.peers = peers
        self.ids = tuple(sorted(peers))
        if len(self.ids) > SESSION_NODES_MAX:
            raise ValueError(f"at most {SESSION_NODES_MAX} nodes")
        self.me = config.node_id
        self.number = self.ids.index(self.me) + 1  # in session ids and entry headers
        self.numbers = {p: i + 1 for i, p in enumerate(self.ids)}
        self.incarnation = int.from_bytes(os.urandom(4), "little") or 1
        start = int.from_bytes(os.urandom(4), "little") & ((1 << (SESSION_CONNECTION_BITS - 1)) - 1)
        #: the first connection number of this process (see the module docstring)
        self.connection_base = (self.number << (SESSION_NODE_SHIFT - 16)) | (start + 1)
        self.core: RaftCore | None = None
        self.storage: LogStorage | None = None
        self._log: SegmentedLog | None = None
        self._snapshot_path: str | None = None
        self._saved_hs = HardState()
        self._inbox: list[Message] = []
        self._ticks = 0
        self._wakeup = trio.Event()
        # proposals for the next Ready (leader): entry datas and (origin peer or None, ticket)
        self._props: list[bytes] = []
        self._prop_origins: list[tuple[str | None, int]] = []
        # commands waiting for a leader (follower): ticket -> command bytes, oldest first
        self._outbox: dict[int, bytes] = {}
        self._inflight: dict[int, bytes] = {}  # forwarded, not applied yet
        # the term each in-flight ticket was proposed in (the leader proposes a forwarded
        # command only in the term the follower named), oldest first
        self._inflight_terms: dict[int, int] = {}
        #: the term of the last entry applied here (no-ops included)
        self.applied_term = 0
        self._leading = False
        self._deadlines: deque[tuple[float, int]] = deque()
        self._next_ticket = 1
        self._downed: set[int] = set()  # sessions a SESSION_DOWN was submitted for
        self.transport: PeerTransport | None = None
        self.listeners: list[trio.SocketListener] = []
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.term = 0
        self.caught_up = False
        self._role_changed = trio.Event()
        self._hs_lock = trio.Lock()  # one hard state save at a time (they share a temp file)
        #: set once a leader is known and everything it had committed is applied here
        self.ready = trio.Event()
        self._damaged_file = False
        self._rpc_handlers: dict[str, RpcHandler] = {}
        # call id -> (peer called, event, [reply]) for calls waiting for the leader
        self._rpc_calls: dict[int, tuple[str, trio.Event, list[Any]]] = {}
        self._rpc_next = 1
        self._rpc_serving = 0
        self._nursery: trio.Nursery | None = None
        self._stats = {
            "readies": 0,
            "entries_persisted": 0,
            "proposals": 0,
            "forwarded": 0,
            "resent": 0,
        }

    # -- paths ---------------------------------------------------------------------------------

    @property
    def hard_state_path(self) -> str:
        return os.path.join(self.config.data_dir, "hardstate")

    @property
    def damaged_path(self) -> str:
        """Present while this node's log is being repaired from its peers (see ``_open_log``)."""
        return os.path.join(self.config.data_dir, "log-damaged")

    # -- recovery ------------------------------------------------------------------------------

    def _open_log(self) -> SegmentedLog:
        """Open the log. A record failing its checks does not stop a cluster member: the good
        prefix is kept, the rest set aside (``SegmentedLog.set_aside_damage``), and the node
        starts marked damaged (the ``log-damaged`` file, until it holds a committed entry of a
        newer term): it neither votes nor campaigns, and its peers send it what it lost (rule
        10 of ``storage/raft/core.py``)."""
        cfg = self.config
        log_dir = self.node.log_dir
        for _ in range(DAMAGE_REPAIRS_MAX):
            try:
                return SegmentedLog.open(
                    log_dir,
                    segment_bytes_max=cfg.segment_bytes_max,
                    payload_bytes_max=cfg.entry_bytes_max + ENTRY_HEADER.size + 64,
                )
            except CorruptLogError as exc:
                if not os.path.exists(self.damaged_path):
                    with open(self.damaged_path, "w") as f:
                        f.write(f"{exc}\n")
                        f.flush()
                        os.fsync(f.fileno())
                    fd = os.open(cfg.data_dir, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                aside = SegmentedLog.set_aside_damage(log_dir, exc)
                log.error(
                    "log damaged: its good prefix is kept, the rest set aside, and the node "
                    "repairs from its peers (it does not vote until then)",
                    extra={
                        "path": exc.path,
                        "offset": exc.offset,
                        "reason": exc.reason,
                        "set_aside": aside,
                    },
                )
        raise LogError(f"the log in {log_dir} is still damaged after {DAMAGE_REPAIRS_MAX} repairs")

    def _note_repaired(self) -> None:
        core = self.core
        if core is not None and not core.log_damaged and os.path.exists(self.damaged_path):
            os.unlink(self.damaged_path)
            log.info("log repaired from the cluster", extra={"term": core.term})

    def recover(self) -> None:
        """Open log, hard state and newest snapshot; restore the machine from the snapshot.
        Committed entries after it are applied once the core knows they are committed."""
        node = self.node
        snap = load_latest_snapshot(node.snapshot_dir) if os.path.isdir(node.snapshot_dir) else None
        hs = load_hard_state(self.hard_state_path)
        log_store = self._open_log()
        try:
            meta = SnapshotMeta()
            if snap is not None:
                machine = Machine.restore(snap.data)
                machine.set_replicated()
                node.machine = machine
                node.applied_index = node.snapshot_index = snap.index
                meta = SnapshotMeta(snap.index, snap.term, len(snap.data))
                self._snapshot_path = snap.path
                stale = (
                    log_store.last_index < snap.index
                    or log_store.first_index > snap.index + 1
                    or (
                        log_store.first_index <= snap.index
                        and log_store.term_at(snap.index) != snap.term
                    )
                )
                if stale:
                    # A snapshot installed from the leader, the log reset cut short by a crash.
                    log_store.reset(snap.index + 1)
            self._log = log_store
            self._saved_hs = hs
            self.storage = LogStorage(log_store, hs, meta, self._read_snapshot)
            self._damaged_file = os.path.exists(self.damaged_path)
            self.core = RaftCore(self._raft_config(), self.storage, log_damaged=self._damaged_file)
        except BaseException:
            log_store.close()
            raise
        self.term = hs.term
        log.info(
            "cluster recovered",
            extra={
                "node": self.me,
                "term": hs.term,
                "vote": hs.vote,
                "commit": hs.commit,
                "snapshot_index": meta.index,
                "last_index": log_store.last_index,
            },
        )

    def _raft_config(self) -> RaftConfig:
        cfg = self.config
        return RaftConfig(
            id=self.me,
            peers=self.ids,
            election_ticks=cfg.cluster_election_ticks,
            heartbeat_ticks=1,
            snapshot_chunk_bytes_max=cfg.cluster_snapshot_chunk_bytes_max,
            seed=int.from_bytes(os.urandom(8), "little"),
            entry_bytes_max=cfg.entry_bytes_max + ENTRY_HEADER.size + 64,
            bytes_per_message_max=1 << 20,
            unstable_bytes_max=cfg.pending_bytes_max,
        )

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def _read_snapshot(self, index: int, offset: int, size_bytes_max: int) -> bytes:
        path = self._snapshot_path
        assert path is not None and self.storage is not None
        assert index == self.storage.snapshot.index, (index, self.storage.snapshot.index)
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, size_bytes_max, SNAPSHOT_HEADER_BYTES + offset)
        finally:
            os.close(fd)

    # -- submitting ----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.role == Role.LEADER

    def submit(self, cmd: list[Any]) -> int:
        """Queue a durable command; returns its ticket (``Node.cluster_done`` answers it)."""
        ticket = self._next_ticket
        self._next_ticket += 1
        data = encode_command(cmd)
        self._deadlines.append(
            (trio.current_time() + self.config.cluster_propose_timeout_ms / 1000, ticket)
        )
        if self.role == Role.LEADER:
            self._props.append(self._entry(self.number, self.incarnation, ticket, data))
            self._prop_origins.append((None, ticket))
            self._inflight[ticket] = data
            self._inflight_terms[ticket] = self.term
        else:
            self._outbox[ticket] = data
        self._kick()
        return ticket

    def _entry(self, origin: int, incarnation: int, ticket: int, cmd_bytes: bytes) -> bytes:
        # encode_entry(time_ms, cmd) without decoding cmd: a msgpack array of two
        time_ms = self.node.clock.now_ms()
        return b"".join(
            (
                ENTRY_HEADER.pack(ENTRY_VERSION, origin, incarnation, ticket),
                b"\x92",
                msgpack.packb(time_ms),
                cmd_bytes,
            )
        )

    def forget(self, ticket: int) -> None:
        """The ticket was answered (applied or timed out)."""
        self._outbox.pop(ticket, None)
        self._inflight.pop(ticket, None)
        self._inflight_terms.pop(ticket, None)

    def note_applied_term(self, term: int) -> None:
        """Called after applying entries up to one of ``term``. A command proposed in an older
        term and not applied by now was never committed, and never will be: every entry after
        one of ``term`` has a term at least ``term`` (log matching), and the leader proposes a
        forwarded command only in the term it was forwarded in. So it is sent again, to the
        current leader, at once: no duplicate, and a publisher whose follower had forwarded to
        a dead leader gets its confirm as soon as the new leader commits, not at the propose
        timeout."""
        if term <= self.applied_term:
            return
        self.applied_term = term
        lost = [t for t, sent in self._inflight_terms.items() if sent < term]
        if lost:
            for ticket in lost:
                del self._inflight_terms[ticket]
                data = self._inflight.pop(ticket, None)
                if data is not None:
                    self._outbox[ticket] = data
            self._outbox = dict(sorted(self._outbox.items()))
            self._stats["resent"] += len(lost)
            log.info("resending commands of an earlier term", extra={"commands": len(lost)})
            self._kick()
        self._note_leading()

    @property
    def leading(self) -> bool:
        """Leader with every entry of its own term's start applied: the node whose state is
        current, which runs the cluster's background work (``Node.leading``)."""
        return self.role == Role.LEADER and self.applied_term == self.term

    def _note_leading(self) -> None:
        leading = self.leading
        if leading != self._leading:
            self._leading = leading
            self.node.leading_changed()

    def _kick(self) -> None:
        self._wakeup.set()

    # -- transport callbacks -------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        self._inbox.append(msg)
        self._kick()

    def _on_unreachable(self, peer: str) -> None:
        if self.core is not None:
            self.core.report_unreachable(peer)
        for called, event, answer in self._rpc_calls.values():
            if called == peer and not answer:
                answer.append((None, f"the link to {peer} went down"))
                event.set()

    def _on_frame(self, peer: str, kind: int, body: bytes) -> None:
        try:
            obj = msgpack.unpackb(body, raw=False)
        except Exception as exc:
            log.warning("bad cluster frame", extra={"peer": peer, "error": str(exc)})
            return
        if kind == KIND_FORWARD:
            incarnation, term, items = obj
            origin = self.numbers[peer]
            if self.role != Role.LEADER or term != self.term:
                # Proposing only in the term the follower forwarded in lets it tell, from the
                # terms it applies, a command that can no longer commit (note_applied_term).
                self._nack(peer, "not the leader", [t for t, _ in items])
                return
            for ticket, cmd_bytes in items:
                self._props.append(self._entry(origin, incarnation, ticket, cmd_bytes))
                self._prop_origins.append((peer, ticket))
            self._stats["forwarded"] += len(items)
            self._kick()
        elif kind == KIND_RPC:
            call_id, service, payload = obj
            handler = self._rpc_handlers.get(service)
            if handler is None or not self.leading or self._nursery is None:
                self._rpc_reply(peer, call_id, False, "not serving " + str(service))
            elif self._rpc_serving >= RPC_SERVING_MAX:
                self._rpc_reply(peer, call_id, False, "busy")
            else:
                self._rpc_serving += 1
                self._nursery.start_soon(self._serve_rpc, peer, call_id, handler, payload)
        elif kind == KIND_RPC_REPLY:
            call_id, ok, payload = obj
            call = self._rpc_calls.get(call_id)
            if call is not None and call[0] == peer:
                call[2].append((ok, payload))
                call[1].set()
        elif kind == KIND_FORWARD_NACK:
            _reason, tickets = obj
            for ticket in tickets:
                data = self._inflight.pop(ticket, None)
                self._inflight_terms.pop(ticket, None)
                if data is not None:
                    self._outbox[ticket] = data
            self._outbox = dict(sorted(self._outbox.items()))
            self._kick()

    # -- requests served by the leader -----------------------------------------------------------

    def serve_rpc(self, service: str, handler: RpcHandler) -> None:
        """Serve ``service`` requests of other nodes while this node is ``leading``."""
        self._rpc_handlers[service] = handler

    async def call_leader(self, service: str, payload: bytes, timeout_s: float) -> bytes:
        """Send a request to the leader's ``service`` handler and return its answer. Raises
        ``RpcUnavailable`` at once when no other node leads or the link is down, and as soon as
        the leader changes while waiting."""
        leader = self.leader
        if self.transport is None or leader is None or leader == self.me:
            raise RpcUnavailable("no leader", served=False)
        if len(self._rpc_calls) >= RPC_CALLS_MAX:
            raise RpcUnavailable(f"{RPC_CALLS_MAX} calls to the leader in flight", served=False)
        call_id = self._rpc_next
        self._rpc_next += 1
        event = trio.Event()
        answer: list[Any] = []
        self._rpc_calls[call_id] = (leader, event, answer)
        try:
            body = msgpack.packb([call_id, service, payload], use_bin_type=True)
            if not self.transport.send(leader, KIND_RPC, body):
                raise RpcUnavailable(f"no link to the leader {leader}", served=False)
            with trio.move_on_after(timeout_s):
                await event.wait()
            if not answer:
                raise RpcUnavailable(
                    f"no answer from the leader {leader} in {timeout_s} s", served=True
                )
            ok, result = answer[0]
            if ok is None:
                raise RpcUnavailable(result, served=True)
            if not ok:
                # refused before running (not leading, busy) or failed while running
                raise RpcUnavailable(
                    f"the leader {leader} did not serve it: {result}",
                    served=str(result).startswith(RPC_FAILED),
                )
            return bytes(result)
        finally:
            del self._rpc_calls[call_id]

    def _fail_rpc_calls(self) -> None:
        """The leader changed: calls to any other node get ``RpcUnavailable`` now."""
        for peer, event, answer in self._rpc_calls.values():
            if peer != self.leader and not answer:
                answer.append((None, f"the leader {peer} changed"))
                event.set()

    async def _serve_rpc(self, peer: str, call_id: int, handler: RpcHandler, payload: Any) -> None:
        try:
            try:
                result = await handler(bytes(payload))
            except Exception as exc:
                log.exception("request from a follower failed", extra={"peer": peer})
                self._rpc_reply(peer, call_id, False, f"{RPC_FAILED}{type(exc).__name__}: {exc}")
            else:
                self._rpc_reply(peer, call_id, True, result)
        finally:
            self._rpc_serving -= 1

    def _rpc_reply(self, peer: str, call_id: int, ok: bool, payload: bytes | str) -> None:
        assert self.transport is not None
        self.transport.send(
            peer, KIND_RPC_REPLY, msgpack.packb([call_id, ok, payload], use_bin_type=True)
        )

    def _nack(self, peer: str, reason: str, tickets: list[int]) -> None:
        assert self.transport is not None
        body = msgpack.packb([reason, tickets])
        self.transport.send(peer, KIND_FORWARD_NACK, body)

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        if not self.listeners:
            host = cfg.host
            port = cfg.cluster_port or self.peers[self.me][1]
            self.listeners = await trio.open_tcp_listeners(port, host=host)
        self.transport = PeerTransport(
            self.me,
            cfg.cluster_id,
            self.peers,
            on_message=self._on_message,
            on_frame=self._on_frame,
            on_unreachable=self._on_unreachable,
            limits=TransportLimits(
                frame_bytes_max=cfg.cluster_frame_bytes_max,
                send_queue_frames_max=cfg.cluster_send_queue_frames_max,
            ),
        )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.transport.serve, self.listeners)
            nursery.start_soon(self._tick_loop)
            nursery.start_soon(self._session_sweeper)
            task_status.started()
            await self._drive()

    async def _tick_loop(self) -> None:
        interval_s = self.config.cluster_tick_ms / 1000
        while True:
            await trio.sleep(interval_s)
            self._ticks += 1
            self._expire()
            self._kick()

    def _expire(self) -> None:
        now = trio.current_time()
        deadlines = self._deadlines
        node = self.node
        while deadlines and deadlines[0][0] <= now:
            _, ticket = deadlines.popleft()
            if node.cluster_pending(ticket):
                self.forget(ticket)
                why = (
                    "no leader" if self.leader is None else f"not committed (leader {self.leader})"
                )
                node.cluster_done(
                    ticket,
                    CoreError(
                        RESOURCE_ERROR,
                        f"RESOURCE_ERROR - cluster unavailable: {why} within "
                        f"cluster_propose_timeout_ms={self.config.cluster_propose_timeout_ms}",
                    ),
                )

    def _feed(self) -> None:
        core = self.core
        assert core is not None and self.transport is not None
        while self._ticks:
            self._ticks -= 1
            core.tick()
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                core.step(m)
        self._note_soft_state()
        if self._outbox:
            if self.role == Role.LEADER:
                for ticket, data in self._outbox.items():
                    self._props.append(self._entry(self.number, self.incarnation, ticket, data))
                    self._prop_origins.append((None, ticket))
                    self._inflight[ticket] = data
                    self._inflight_terms[ticket] = self.term
                self._outbox.clear()
            elif self.leader is not None and self.transport.connected(self.leader):
                items = list(self._outbox.items())[:FORWARD_BATCH_COMMANDS_MAX]
                body = msgpack.packb([self.incarnation, self.term, items], use_bin_type=True)
                if self.transport.send(self.leader, KIND_FORWARD, body):
                    for ticket, data in items:
                        del self._outbox[ticket]
                        self._inflight[ticket] = data
                        self._inflight_terms[ticket] = self.term
        if self._props:
            props, origins = self._props, self._prop_origins
            self._props, self._prop_origins = [], []
            res = core.propose(props)
            if isinstance(res, Proposed):
                self._stats["proposals"] += len(props)
            else:
                reason = "not the leader" if isinstance(res, NotLeader) else res.reason
                by_peer: dict[str, list[int]] = {}
                for peer, ticket in origins:
                    if peer is None:
                        held = self._inflight.pop(ticket, None)
                        self._inflight_terms.pop(ticket, None)
                        if held is not None:
                            self._outbox[ticket] = held
                    else:
                        by_peer.setdefault(peer, []).append(ticket)
                for peer, tickets in by_peer.items():
                    self._nack(peer, reason, tickets)

    def _note_soft_state(self) -> None:
        core = self.core
        assert core is not None
        if core.role != self.role or core.leader != self.leader or core.term != self.term:
            was_leader = self.role == Role.LEADER
            self.role, self.leader, self.term = core.role, core.leader, core.term
            log.info(
                "cluster role",
                extra={"role": core.role.name.lower(), "leader": core.leader, "term": core.term},
            )
            if was_leader and self.role != Role.LEADER:
                self._downed.clear()
            self._role_changed.set()
            self._note_leading()
            if self._rpc_calls:
                self._fail_rpc_calls()

    async def _drive(self) -> None:
        core = self.core
        assert core is not None
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._feed()
            while (rd := core.ready()) is not None:
                await self._handle_ready(rd)
                self._feed()

    async def _handle_ready(self, rd: Ready) -> None:
        core, storage, lg = self.core, self.storage, self._log
        assert core is not None and storage is not None and lg is not None
        assert self.transport is not None
        self._stats["readies"] += 1
        later: Sequence[Message] = rd.messages
        if rd.leader_term:
            # the leader's appends go out now, so followers write them while it does
            rest: list[Message] = []
            for m in rd.messages:
                if sendable_early(rd, m):
                    self.transport.send_message(m)
                else:
                    rest.append(m)
            later = rest
        if rd.snapshot is not None:
            await self._install_snapshot(rd.snapshot)
        committed = rd.committed
        if rd.entries:
            first = rd.entries[0].index
            if first <= lg.last_index:
                lg.truncate_suffix(first - 1)
            lg.append([(e.term, e.data) for e in rd.entries])
            self._stats["entries_persisted"] += len(rd.entries)
            if self.config.fsync != "never":
                if committed and rd.snapshot is None:
                    # The committed entries are on a majority's disks already (never this
                    # Ready's own): apply them, answering clients, while the new ones sync.
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(trio.to_thread.run_sync, self._sync_log)
                        await trio.lowlevel.checkpoint()  # the sync starts first
                        self._apply_committed(committed)
                    committed = ()
                else:
                    await trio.to_thread.run_sync(self._sync_log)
        hs = rd.hard_state
        if hs is not None:
            storage.hard_state = hs
            saved = self._saved_hs
            if hs.term != saved.term or hs.vote != saved.vote:
                # The commit index is only knowledge (the core re-learns it): it is saved along
                # with term and vote, not on every Ready.
                async with self._hs_lock:
                    await trio.to_thread.run_sync(save_hard_state, self.hard_state_path, hs)
                self._saved_hs = hs
        for m in later:
            self.transport.send_message(m)
        if committed:
            self._apply_committed(committed)
        core.advance(rd)
        self._note_soft_state()
        if (
            not self.ready.is_set()
            and core.leader is not None
            and self.node.applied_index >= core.committed
        ):
            self.ready.set()
            log.info("cluster ready", extra={"leader": core.leader, "term": core.term})
        node = self.node
        if node.applied_index - storage.snapshot.index >= self.config.snapshot_entries_interval:
            await self._take_snapshot()

    def _sync_log(self) -> None:
        """fsync the log (in a worker thread), timing it for the metrics."""
        assert self._log is not None
        started = time.perf_counter()
        self._log.sync()
        self.node.fsync_seconds.observe(time.perf_counter() - started)

    def _apply_committed(self, committed: tuple[Entry, ...]) -> None:
        core = self.core
        assert core is not None
        self.node.apply_cluster_entries(committed)
        if not core.log_damaged and self._damaged_file:
            self._damaged_file = False
            self._note_repaired()

    async def _install_snapshot(self, snap: Snapshot) -> None:
        storage, lg = self.storage, self._log
        assert storage is not None and lg is not None
        node = self.node
        path = await trio.to_thread.run_sync(
            write_snapshot, node.snapshot_dir, snap.index, snap.term, snap.data
        )
        await trio.to_thread.run_sync(lg.reset, snap.index + 1)
        self._snapshot_path = path
        storage.snapshot = SnapshotMeta(snap.index, snap.term, len(snap.data))
        machine = Machine.restore(snap.data)
        machine.set_replicated()
        node.install_machine(machine, snap.index)
        # Whether the snapshot holds a command in flight cannot be told: those are left to
        # the propose timeout, never sent again (that could apply them twice).
        self._inflight_terms.clear()
        self.note_applied_term(snap.term)
        log.info("snapshot installed", extra={"index": snap.index, "bytes": len(snap.data)})

    async def _take_snapshot(self) -> None:
        core, storage, lg = self.core, self.storage, self._log
        assert core is not None and storage is not None and lg is not None
        node = self.node
        index = node.applied_index
        term = core.term_at(index)
        if term is None:
            return
        data = node.machine.snapshot()
        try:
            path = await trio.to_thread.run_sync(
                write_snapshot, node.snapshot_dir, index, term, data
            )
            self._snapshot_path = path
            storage.snapshot = SnapshotMeta(index, term, len(data))
            core.report_compacted(index)
            await trio.to_thread.run_sync(lg.compact_prefix, index)
            node.snapshot_index = index
            log.info("snapshot written", extra={"index": index, "bytes": len(data)})
        except (OSError, LogError) as exc:
            log.error("snapshot failed", extra={"error": str(exc)})

    # -- sessions of dead nodes ----------------------------------------------------------------

    async def _session_sweeper(self) -> None:
        """Close sessions nobody hosts any more: the leader closes those of nodes unreachable
        for ``cluster_session_timeout_ms``; every node closes those of its own earlier
        incarnations once it has applied an entry of the current leader's term."""
        node = self.node
        timeout_s = self.config.cluster_session_timeout_ms / 1000
        while True:
            await trio.sleep(SESSION_SWEEP_INTERVAL_S)
            core = self.core
            if core is None or self.transport is None or self.leader is None:
                continue
            if not self.caught_up:
                term = core.term_at(node.applied_index) if node.applied_index else None
                self.caught_up = term == core.term
            dead: set[int] = set()
            if self.role == Role.LEADER:
                for peer in self.ids:
                    if peer != self.me and self.transport.down_for_s(peer) >= timeout_s:
                        dead.add(self.numbers[peer])
            for sid in list(node.machine.sessions):
                if sid in self._downed:
                    continue
                host = session_host(sid)
                if host == 0:
                    continue
                mine_stale = host == self.number and sid not in node.sessions and self.caught_up
                if host in dead or mine_stale:
                    self._downed.add(sid)
                    node.submit(C.cmd_session_down(sid))
            self._downed &= set(node.machine.sessions)

    # -- leadership transfer and status --------------------------------------------------------

    async def transfer_leadership(self) -> None:
        """On a graceful shutdown: hand leadership to the most caught-up connected peer."""
        core = self.core
        if core is None or self.transport is None or core.role != Role.LEADER:
            return
        best = None
        best_match = -1
        for peer in self.ids:
            if peer == self.me or not self.transport.connected(peer):
                continue
            match = core.progress(peer)[1]
            if match > best_match:
                best, best_match = peer, match
        if best is None:
            return
        core.transfer_leadership(best)
        self._kick()
        log.info("transferring leadership", extra={"to": best})
        with trio.move_on_after(TRANSFER_WAIT_S):
            while core.role == Role.LEADER:
                self._role_changed = trio.Event()
                await self._role_changed.wait()

    async def save_commit(self) -> None:
        core = self.core
        if core is None:
            return
        hs = core.hard_state()
        hs = HardState(hs.term, hs.vote, min(hs.commit, self.node.applied_index) or hs.commit)
        with trio.CancelScope(shield=True):
            async with self._hs_lock:
                await trio.to_thread.run_sync(save_hard_state, self.hard_state_path, hs)

    def status(self) -> dict[str, Any]:
        core = self.core
        assert core is not None
        out: dict[str, Any] = {
            "node": self.me,
            "role": core.role.name.lower(),
            "leader": core.leader,
            "term": core.term,
            "commit_index": core.committed,
            "applied_index": self.node.applied_index,
            "last_index": core.last_index,
            "snapshot_index": self.storage.snapshot.index if self.storage else 0,
            "lag": core.committed - self.node.applied_index,
            "peers": {},
        }
        for peer in self.ids:
            if peer == self.me:
                continue
            info: dict[str, Any] = {
                "address": f"{self.peers[peer][0]}:{self.peers[peer][1]}",
                "connected": self.transport.connected(peer) if self.transport else False,
            }
            if core.role == Role.LEADER:
                state, match, nxt, inflight = core.progress(peer)
                info.update(
                    state=state.name.lower(),
                    match=match,
                    next=nxt,
                    inflight=inflight,
                    lag=core.last_index - match,
                )
            out["peers"][peer] = info
        out["statistics"] = dict(self._stats)
        if self.transport is not None:
            out["transport"] = self.transport.statistics()
        return out

    def snapshots(self) -> list[tuple[int, int, str]]:
        return list_snapshots(self.node.snapshot_dir)


def decode_cluster_entry(data: bytes) -> tuple[int, int, int, int, list[Any]]:
    """``(origin, incarnation, ticket, time_ms, command)`` of a cluster entry; raises
    ``DecodeError`` for anything else."""
    if len(data) < ENTRY_HEADER.size:
        raise DecodeError("entry shorter than its header")
    version, origin, incarnation, ticket = ENTRY_HEADER.unpack_from(data)
    if version != ENTRY_VERSION:
        raise DecodeError(f"unknown entry version {version}")
    time_ms, cmd = decode_entry(data[ENTRY_HEADER.size :])
    return origin, incarnation, ticket, time_ms, cmd


def apply_entries(node: Node, entries: tuple[Entry, ...]) -> None:
    """Apply committed entries to ``node``'s machine in order; answer the node's own."""
    cluster = node.cluster
    assert cluster is not None
    me, inc = cluster.number, cluster.incarnation
    if entries:
        # entries of one batch: the last has the highest term; resending waits until after
        # the batch so a ticket applied in it is not sent again
        term = entries[-1].term
    for e in entries:
        if not e.data:
            node.applied_index = e.index  # a new leader's no-op
            continue
        try:
            origin, incarnation, ticket, time_ms, cmd = decode_cluster_entry(e.data)
        except DecodeError as exc:
            # Every replica skips the same entry, so they stay equal.
            log.error("undecodable entry skipped", extra={"index": e.index, "error": str(exc)})
            node.applied_index = e.index
            continue
        reply = node.apply_logged(Meta(e.index, e.term, time_ms), cmd)
        node.applied_index = e.index
        if origin == me and incarnation == inc:
            cluster.forget(ticket)
            node.cluster_done(ticket, reply)
    if entries:
        cluster.note_applied_term(term)
