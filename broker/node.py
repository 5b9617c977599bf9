"""One broker node: recovery, the commit pipeline, the apply loop, timers and effects.

Data flow (DESIGN.md section 1):

* A command that ``Machine.needs_log`` says is durable is stamped with the node's clock, encoded
  and proposed to the commit log. It is applied after it is durable, in log order, and its
  caller is answered after the apply. The replicator behind that is the seam between the two
  modes: on a single node it is ``GroupCommitter`` (a proposal's ticket is its log index and
  the pipeline applies its own commands once their index is committed); in cluster mode it is
  ``broker.cluster.Cluster`` (a ticket is a request number, every replica applies every
  committed entry through ``apply_cluster_entries``, and the submitting node answers the
  pipeline entry whose ticket comes back).
* Every other command takes the transient path: applied at once when nothing is waiting in the
  pipeline, otherwise queued behind the pending durable commands so that the order in which a
  client's calls were made is the order in which they take effect.
* Effects (deliveries, server-side cancels) are handed to the session sinks synchronously, in
  batches, right after the apply that produced them.

Rules of the pipeline:

1. ``_pipeline`` holds, in submission order, every command not yet applied; an entry is
   ``[index, cmd, pending, time_ms, barrier]`` with ``index == 0`` for a transient command and
   ``index == UNDECIDED`` for one whose path is not known yet.
2. Whether a command is durable depends on the state (is the queue durable? does the session hold
   durable consumers?). It is decided at submission when the state it would be applied to is
   the current one, or differs only by pending publishes, settles and gets, which never change
   another command's path. Behind any other pending command (a declare, bind, consume, ...) or
   an undecided one, a command waits undecided and is decided when it reaches the head.
3. The head is applied when it is transient or its index is committed; nothing behind the head is
   applied before it. Log order therefore equals submission order.
4. ``applied_index`` is the index of the last applied durable entry; a snapshot covers exactly the
   durable entries up to it.
5. Cluster mode: a durable command is applied where the log puts it, which may be before a
   transient command submitted ahead of it is applied (that one waits in the pipeline behind
   an earlier durable command); the pipeline still answers every caller in submission order.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from broker.alarms import Alarms
from broker.config import Config, parse_peers
from broker.connections import ConnectionRegistry
from broker.core import commands as C
from broker.core.codec import decode_entry, encode_entry
from broker.core.machine import Machine, Meta
from broker.core.model import SESSION_CONNECTION_SHIFT, CoreError, connection_of
from broker.metrics import FsyncHistogram, QueueStats
from broker.runtime import Clock, SystemClock
from storage.commit import BacklogFull, GroupCommitter
from storage.log import LogError, SegmentedLog
from storage.raft.core import Entry
from storage.snapshot import load_latest_snapshot, write_snapshot

if TYPE_CHECKING:
    from broker.cluster import Cluster

log = logging.getLogger("polymq.node")

TERM_SINGLE_NODE = 1
UNDECIDED = -1
DONE = -2  # cluster mode: applied (or failed); the reply waits in the entry's time_ms slot
CLUSTER_DRAIN_S = 5.0
# Commands that never change which path a later command takes (see rule 2): paths depend on
# which entities exist and are durable, on bindings and consumers, and on message ids; these
# only move messages. (A GET among them keeps a queue reader, such as a schema discoverer's,
# from holding back the group commit of the publishes behind it.)
NON_BARRIERS = frozenset((C.PUBLISH, C.SETTLE, C.GET))


class SessionSink(Protocol):
    """Receives a session's effects. Both calls are synchronous and must not block."""

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None: ...

    def cancelled(self, tag: str) -> None: ...


class BrokerError(Exception):
    """A refused call: ``code`` is the AMQP reply code (403, 404, 405, 406, 506, 530, ...)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


RESOURCE_ERROR = 506


class RecoveryError(Exception):
    """The data directory cannot be recovered; the message names the cause."""


class Pending:
    """The reply slot of one submitted command; awaitable once, or a callback."""

    __slots__ = ("_event", "callback", "done", "reply")

    def __init__(self, callback: Callable[[Any], None] | None = None) -> None:
        self.reply: Any = None
        self.done = False
        self.callback = callback
        self._event: trio.Event | None = None

    def resolve(self, reply: Any) -> None:
        self.reply = reply
        self.done = True
        if self._event is not None:
            self._event.set()
        if self.callback is not None:
            self.callback(reply)

    async def wait(self) -> Any:
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self.reply


def cluster_peers(config: Config) -> dict[str, tuple[str, int]] | None:
    """The members when ``config`` asks for cluster mode (more than one peer), else None."""
    if not config.peers:
        return None
    peers = parse_peers(config.peers)
    return peers if len(peers) > 1 else None


class Node:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.machine = Machine()
        self.sessions: dict[int, SessionSink] = {}
        self.listeners: list[dict[str, Any]] = []
        self.mqtt_hub: Any = None  # the MQTT listener's shared state, for statistics
        #: open client connections, per-queue message counters, fsync latencies (metrics)
        self.connections = ConnectionRegistry()
        self.queue_stats = QueueStats()
        self.fsync_seconds = FsyncHistogram()
        #: resource alarms (memory, disk): publishers are blocked while one is raised
        self.alarms = Alarms.from_config(config)
        self.applied_index = 0
        self.snapshot_index = 0
        self.recovered_entries = 0
        self._next_connection = 1
        self._pipeline: deque[list[Any]] = deque()
        self._barriers = 0  # pending entries that may change a later command's path
        self._proposed_time_ms = 0
        self._log: SegmentedLog | None = None
        self._committer: GroupCommitter | None = None
        #: cluster mode: the Raft replicator (None on a single node)
        self.cluster: Cluster | None = None
        self._tickets: dict[int, list[Any]] = {}  # cluster mode: ticket -> pipeline entry
        self._drained = trio.Event()
        self._tick_pending = False
        self._snapshot_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._stopping = trio.Event()
        self._stopped = trio.Event()
        self.commands_logged = 0
        self.commands_local = 0
        #: long-polling waiters: (vhost, queue) -> (event, ready/unacked counts when they began)
        self._ready_watch: dict[tuple[str, str], tuple[trio.Event, tuple[int, int, int]]] = {}
        self._leading_changed = trio.Event()

    # -- paths ---------------------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        return os.path.join(self.config.data_dir, "log")

    @property
    def snapshot_dir(self) -> str:
        return os.path.join(self.config.data_dir, "snapshots")

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> None:
        """Open the data directory and rebuild the state: newest snapshot, then the log after it.

        Raises ``RecoveryError`` (or the storage layer's ``LogError``) and changes nothing on
        disk when the directory is corrupt or unusable.
        """
        try:
            os.makedirs(self.config.data_dir, exist_ok=True)
        except OSError as exc:
            raise RecoveryError(
                f"data directory {self.config.data_dir} cannot be created: {exc.strerror or exc}"
            ) from None
        if not os.access(self.config.data_dir, os.W_OK | os.X_OK) or not os.path.isdir(
            self.config.data_dir
        ):
            raise RecoveryError(f"data directory {self.config.data_dir} is not writable")
        peers = cluster_peers(self.config)
        if peers is not None:
            self._recover_cluster(peers)
            return
        snap = load_latest_snapshot(self.snapshot_dir) if os.path.isdir(self.snapshot_dir) else None
        log_store = SegmentedLog.open(
            self.log_dir,
            segment_bytes_max=self.config.segment_bytes_max,
            payload_bytes_max=self.config.entry_bytes_max,
        )
        try:
            start = 1
            if snap is not None:
                try:
                    self.machine = Machine.restore(snap.data)
                except Exception as exc:
                    raise RecoveryError(
                        f"snapshot at index {snap.index} in {self.snapshot_dir} cannot be restored:"
                        f" {exc}"
                    ) from None
                self.snapshot_index = snap.index
                self.applied_index = snap.index
                start = snap.index + 1
            if log_store.last_index >= start and log_store.first_index > start:
                raise RecoveryError(
                    f"log in {self.log_dir} starts at index {log_store.first_index} but the"
                    f" newest snapshot ends at index {start - 1}: entries are missing"
                )
            index = max(start, log_store.first_index)
            last = log_store.last_index
            while index <= last:
                batch = log_store.entries(index, last + 1, bytes_max=8 << 20)
                for term, data in batch:
                    time_ms, cmd = decode_entry(data)
                    self.machine.apply(Meta(index, term, time_ms), cmd)
                    self.applied_index = index
                    index += 1
                self.recovered_entries += len(batch)
        except BaseException:
            log_store.close()
            raise
        self._log = log_store
        self._committer = GroupCommitter(
            log_store,
            fsync=self.config.fsync,  # type: ignore[arg-type]
            fsync_interval_ms=self.config.fsync_interval_ms,
            pending_bytes_max=self.config.pending_bytes_max,
            on_fsync=self.fsync_seconds.observe,
            term=TERM_SINGLE_NODE,
        )
        log.info(
            "recovered",
            extra={
                "data_dir": self.config.data_dir,
                "snapshot_index": self.snapshot_index,
                "replayed_entries": self.recovered_entries,
                "last_index": log_store.last_index,
            },
        )

    def _recover_cluster(self, peers: dict[str, tuple[str, int]]) -> None:
        from broker.cluster import Cluster

        self.machine.set_replicated()
        cluster = Cluster(self, self.config, peers)
        try:
            cluster.recover()
        except (ValueError, KeyError) as exc:
            raise RecoveryError(f"cluster state in {self.config.data_dir}: {exc}") from None
        self.cluster = cluster
        self._next_connection = cluster.connection_base

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        if self._committer is None and self.cluster is None:
            self.recover()
        if self.cluster is not None:
            await self._run_cluster(self.cluster, task_status)
            return
        committer = self._committer
        assert committer is not None and self._log is not None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(committer.run)
                nursery.start_soon(self._apply_loop)
                nursery.start_soon(self._tick_loop)
                # No session survives a restart: their unacked messages go back to the queues.
                await self.execute(C.cmd_sessions_reset())
                task_status.started(self)
                await self._stopping.wait()
                with trio.move_on_after(30):
                    await committer.flush()
                    await self._drain()
                nursery.cancel_scope.cancel()
        finally:
            self._log.close()
            self._stopped.set()
            log.info("stopped", extra={"applied_index": self.applied_index})

    async def _run_cluster(self, cluster: Cluster, task_status: trio.TaskStatus[Node]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(cluster.run)
                nursery.start_soon(self._tick_loop)
                # No SESSIONS_RESET: other nodes' sessions live on; this node's earlier
                # sessions are closed by the cluster once it has caught up. Clients are served
                # once a leader is known and this node has applied what it had committed.
                log.info("waiting for the cluster", extra={"peers": len(cluster.ids)})
                await cluster.ready.wait()
                task_status.started(self)
                await self._stopping.wait()
                with trio.move_on_after(CLUSTER_DRAIN_S):
                    while self._pipeline:
                        self._drained = trio.Event()
                        await self._drained.wait()
                await cluster.transfer_leadership()
                await cluster.save_commit()
                nursery.cancel_scope.cancel()
        finally:
            cluster.close()
            self._stopped.set()
            log.info("stopped", extra={"applied_index": self.applied_index})

    def stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _drain(self) -> None:
        assert self._committer is not None
        while self._pipeline:
            await self._committer.wait_commit_beyond(self.applied_index)
            self._apply_ready(self._committer.commit_index)

    # -- leadership ----------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this node runs the work that must run once per cluster (timers of the AWS
        APIs, delivery workers, executions): a single node always; in a cluster the leader,
        once it has applied the start of its term."""
        return self.cluster is None or self.cluster.leading

    def leading_changed(self) -> None:
        self._leading_changed.set()
        self._leading_changed = trio.Event()

    async def wait_leading(self, leading: bool = True) -> None:
        """Return once ``self.leading == leading``."""
        while self.leading != leading:
            await self._leading_changed.wait()

    # -- sessions ------------------------------------------------------------------------------

    def open_session(
        self, sink: SessionSink, *, connection: int | None = None, channel: int = 0
    ) -> int:
        """Register a session. Without ``connection`` a new connection is opened and its own
        session returned; with it, ``channel`` (1..65535) numbers a session of that connection
        (exclusive queues belong to the connection and every session of it may use them)."""
        if connection is None:
            session = self._next_connection << SESSION_CONNECTION_SHIFT
            self._next_connection += 1
        else:
            if not 0 < channel < 1 << SESSION_CONNECTION_SHIFT:
                raise ValueError(f"channel {channel} out of range")
            session = connection_of(connection) | channel
        self.sessions[session] = sink
        self.connections.session_opened(session, sink)
        return session

    def forget_session(self, session: int) -> None:
        self.sessions.pop(session, None)

    # -- submitting commands -------------------------------------------------------------------

    def submit(
        self, cmd: list[Any], pending: Pending | None = None, *, logged: bool | None = None
    ) -> Any:
        """Apply or propose ``cmd``. Returns the reply when it was applied at once; otherwise
        ``pending`` (if given) is resolved later and ``None`` is returned. ``logged`` is the
        caller's answer to ``Machine.needs_log(cmd)`` against the current state, when it has
        one (``split_publish`` gives it), saving the second routing."""
        if len(self._pipeline) >= self.config.pipeline_entries_max:
            raise BrokerError(
                RESOURCE_ERROR,
                f"RESOURCE_ERROR - node overloaded: {len(self._pipeline)} commands waiting"
                f" (pipeline_entries_max={self.config.pipeline_entries_max})",
            )
        barrier = cmd[0] not in NON_BARRIERS
        if self._barriers:
            self._pipeline.append([UNDECIDED, cmd, pending, 0, 1])
            self._barriers += 1
            return None
        if logged is None:
            logged = self.machine.needs_log(cmd)
        if logged:
            index = self._propose(cmd)
            entry = [index, cmd, pending, self._proposed_time_ms, barrier]
            self._pipeline.append(entry)
            self._barriers += barrier
            if self.cluster is not None:
                self._tickets[index] = entry
            return None
        self.commands_local += 1
        if self._pipeline:
            self._pipeline.append([0, cmd, pending, 0, barrier])
            self._barriers += barrier
            return None
        reply = self._apply(Meta(0, 0, self.clock.now_ms()), cmd)
        if pending is not None:
            pending.resolve(reply)
        return reply

    def _propose(self, cmd: list[Any]) -> int:
        if self.cluster is not None:
            ticket = self.cluster.submit(cmd)
            self._proposed_time_ms = 0
            self.commands_logged += 1
            return ticket
        assert self._committer is not None
        time_ms = self.clock.now_ms()
        try:
            index = self._committer.propose(encode_entry(time_ms, cmd))
        except BacklogFull as exc:
            raise BrokerError(RESOURCE_ERROR, f"RESOURCE_ERROR - node overloaded: {exc}") from None
        self._proposed_time_ms = time_ms
        self.commands_logged += 1
        return index

    async def execute(self, cmd: list[Any]) -> Any:
        pending = Pending()
        self.submit(cmd, pending)
        return await pending.wait()

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, meta: Meta, cmd: list[Any]) -> Any:
        op = cmd[0]
        settling = self.queue_stats.settling(self.machine, cmd) if op == C.SETTLE else None
        reply, effects = self.machine.apply(meta, cmd)
        if effects:
            self._run_effects(effects)
        if op == C.PUBLISH:
            if not isinstance(reply, CoreError):
                self.queue_stats.published += len(cmd[3])
        elif settling:
            self.queue_stats.settled(cmd, settling, reply)
        elif op == C.GET:
            self.queue_stats.got(self.machine, cmd, reply)
        if self._ready_watch:
            self._wake_ready()
        return reply

    def _wake_ready(self) -> None:
        counts = self.machine.queue_counts
        for key, (event, before) in list(self._ready_watch.items()):
            now = counts(key[0], key[1])
            if now is None or (now[0] and now != before):
                event.set()
                del self._ready_watch[key]

    async def wait_ready(self, vhost: str, queue: str, timeout_s: float) -> bool:
        """Wait until ``queue`` has ready messages that were not there before (or its counts
        change while it has some, which frees FIFO groups), or it goes; False on timeout."""
        key = (vhost, queue)
        entry = self._ready_watch.get(key)
        if entry is None:
            before = self.machine.queue_counts(vhost, queue)
            if before is None:
                return True
            entry = (trio.Event(), before)
            self._ready_watch[key] = entry
        with trio.move_on_after(timeout_s):
            await entry[0].wait()
            return True
        return False

    def _run_effects(self, effects: list[Any]) -> None:
        sessions = self.sessions
        delivered = self.queue_stats.delivered
        for effect in effects:
            kind = effect[0]
            if kind == "deliver":
                delivered(self.machine, effect[1], effect[2], len(effect[4]))
            elif kind == "republish":
                self._republish(effect)
                continue
            sink = sessions.get(effect[1])
            if sink is None:
                # The session went away; its SESSION_DOWN returns these messages to the queue.
                continue
            if kind == "deliver":
                sink.deliver(effect[2], effect[3], effect[4])
            elif kind == "cancelled":
                sink.cancelled(effect[2])

    def _republish(self, effect: Any) -> None:
        """Cluster mode: a transient message dead-lettered into durable queues is published to
        each of them through the log (default exchange), once the current apply is over."""
        _, vhost, queues, props, body = effect
        cmds = [C.cmd_publish(vhost, "", [[name, props, body, 0]]) for name in queues]

        async def publish() -> None:
            for cmd in cmds:
                try:
                    self.submit(cmd, Pending(), logged=True)
                except BrokerError as exc:
                    log.warning("dead-lettered message dropped", extra={"error": exc.text})

        if self._nursery is not None:
            self._nursery.start_soon(publish)

    # -- cluster mode --------------------------------------------------------------------------

    def apply_cluster_entries(self, entries: tuple[Entry, ...]) -> None:
        """Apply committed Raft entries (every replica applies every entry), answer this
        node's own, then move the pipeline on."""
        from broker.cluster import apply_entries

        apply_entries(self, entries)
        self._advance_cluster()

    def apply_logged(self, meta: Meta, cmd: list[Any]) -> Any:
        return self._apply(meta, cmd)

    def cluster_pending(self, ticket: int) -> bool:
        return ticket in self._tickets

    def cluster_done(self, ticket: int, reply: Any) -> None:
        """The entry of ``ticket`` was applied with ``reply`` (or failed with a CoreError)."""
        entry = self._tickets.pop(ticket, None)
        if entry is not None:
            entry[0] = DONE
            entry[3] = reply
            if self._pipeline and self._pipeline[0] is entry:
                self._advance_cluster()

    def install_machine(self, machine: Machine, index: int) -> None:
        """A snapshot from the leader replaced the state (transient state is lost with it)."""
        self.machine = machine
        self.applied_index = self.snapshot_index = index

    def _advance_cluster(self) -> None:
        pipeline = self._pipeline
        while pipeline:
            head = pipeline[0]
            index = head[0]
            if index == UNDECIDED:
                if self.machine.needs_log(head[1]):
                    try:
                        head[0] = self._propose(head[1])
                    except BrokerError as exc:
                        head[0] = DONE
                        head[3] = CoreError(exc.code, exc.text)
                        continue
                    self._tickets[head[0]] = head
                    break
                head[0] = index = 0
                self.commands_local += 1
            if index == DONE:
                pipeline.popleft()
                self._barriers -= head[4]
                if head[2] is not None:
                    head[2].resolve(head[3])
                continue
            if index > 0:
                break
            pipeline.popleft()
            self._barriers -= head[4]
            reply = self._apply(Meta(0, 0, self.clock.now_ms()), head[1])
            if head[2] is not None:
                head[2].resolve(reply)
        if not pipeline:
            self._drained.set()

    def _apply_ready(self, commit_index: int) -> None:
        pipeline = self._pipeline
        while pipeline:
            head = pipeline[0]
            index = head[0]
            if index == UNDECIDED:
                # Every entry before it has been applied: decide against the current state.
                if self.machine.needs_log(head[1]):
                    try:
                        head[0] = self._propose(head[1])
                    except BrokerError:
                        break  # the log's backlog is full: retried when commits free room
                    head[3] = self._proposed_time_ms
                    break
                head[0] = index = 0
                self.commands_local += 1
            if index:
                if index > commit_index:
                    break
                meta = Meta(index, TERM_SINGLE_NODE, head[3])
                self.applied_index = index
            else:
                meta = Meta(0, 0, self.clock.now_ms())
            pipeline.popleft()
            self._barriers -= head[4]
            reply = self._apply(meta, head[1])
            pending = head[2]
            if pending is not None:
                pending.resolve(reply)

    async def _apply_loop(self) -> None:
        committer = self._committer
        assert committer is not None
        seen = self.applied_index
        while True:
            seen = await committer.wait_commit_beyond(seen)
            self._apply_ready(seen)
            if (
                self.applied_index - self.snapshot_index >= self.config.snapshot_entries_interval
                and not self._snapshot_lock.locked()
                and self._nursery is not None
            ):
                self._nursery.start_soon(self._take_snapshot)

    async def _take_snapshot(self) -> None:
        """Write the durable state at ``applied_index`` and drop the log segments it covers."""
        async with self._snapshot_lock:
            await self._write_snapshot()

    async def _write_snapshot(self) -> None:
        try:
            index = self.applied_index
            data = self.machine.snapshot()
            await trio.to_thread.run_sync(
                write_snapshot, self.snapshot_dir, index, TERM_SINGLE_NODE, data
            )
            assert self._committer is not None
            await self._committer.compact_prefix(index)
            self.snapshot_index = index
            log.info("snapshot written", extra={"index": index, "bytes": len(data)})
        except (OSError, LogError) as exc:
            log.error("snapshot failed", extra={"error": str(exc)})

    async def snapshot_now(self) -> int:
        """Take a snapshot at the current applied index (management and tests)."""
        await self._take_snapshot()
        return self.snapshot_index

    # -- timers --------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        cap_s = self.config.tick_interval_ms_max / 1000.0
        cluster = self.cluster
        while True:
            deadline = self.machine.next_deadline()
            now = self.clock.now_ms()
            if (
                cluster is not None
                and deadline is not None
                and deadline <= now
                and not cluster.is_leader
                and self.machine.durable_due(now)
            ):
                # Durable expiry is the leader's TICK to propose (DESIGN.md section 1).
                await trio.sleep(cap_s)
                continue
            if deadline is not None and deadline <= now and not self._tick_pending:
                self._tick_pending = True
                pending = Pending(self._tick_done)
                self.submit(C.cmd_tick(), pending)
                deadline = self.machine.next_deadline()
            if deadline is None:
                wait_s = cap_s
            else:
                wait_s = min(cap_s, max(0.001, (deadline - now) / 1000.0))
            await trio.sleep(wait_s)

    def _tick_done(self, reply: Any) -> None:
        self._tick_pending = False

    # -- introspection -------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "applied_index": self.applied_index,
            "snapshot_index": self.snapshot_index,
            "sessions": len(self.sessions),
            "pipeline": len(self._pipeline),
            "commands_logged": self.commands_logged,
            "commands_local": self.commands_local,
        }
        if self._committer is not None:
            stats["commit"] = self._committer.statistics()
        if self.cluster is not None:
            stats["cluster"] = self.cluster.status()
        if self._log is not None:
            stats["log"] = self._log.statistics()
        return stats
