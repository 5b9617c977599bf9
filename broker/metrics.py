"""Counters the node keeps for the management API and ``/metrics``, and the Prometheus
collector that reads them, with the rest of the node's state, at scrape time.

What is counted where (nothing is updated per scrape, nothing on the hot path but an integer
add or a dict lookup):

* messages *published* into a queue: the queue's own enqueue sequence (``Queue.next_seq``, kept
  by the state machine and in snapshots), read at scrape time: no counting at all;
* messages *delivered* to consumers: per ``deliver`` effect, where the node hands a batch to a
  session (``Node._run_effects``): one add per batch;
* messages *got* (``basic.get``, SQS ``ReceiveMessage``): per GET command, from its reply;
* messages *acknowledged*, and *dead-lettered* because a consumer rejected them: per SETTLE
  command, from the message ids it settles (one lookup per id in the session's unacked table,
  the same table the machine is about to pop them from).

The counters of a queue live in a ``QueueCounters`` keyed by the queue object itself, so a queue
deleted and declared again starts from zero, as in RabbitMQ. Entries of deleted queues are
dropped when the table doubles.

The collector (``NodeCollector``) builds every metric family from the current state when
Prometheus scrapes; the text is rendered by ``prometheus_client``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from broker.core import commands as C
from broker.core.model import CoreError

if TYPE_CHECKING:
    from broker.node import Node

#: the content type of the Prometheus text format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: fsync latency buckets, seconds (upper bounds; +Inf is implied)
FSYNC_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
#: the queue counter table is pruned of deleted queues when it grows past this many entries
QUEUE_STATS_PRUNE_ENTRIES_MIN = 1024


class QueueCounters:
    __slots__ = ("acked", "dead_lettered", "delivered", "got", "rejected")

    def __init__(self) -> None:
        self.delivered = 0
        self.got = 0
        self.acked = 0
        self.rejected = 0
        self.dead_lettered = 0


class QueueStats:
    """Message counters per queue (see the module docstring), plus node totals."""

    def __init__(self) -> None:
        self.by_queue: dict[Any, QueueCounters] = {}
        self._prune_at = QUEUE_STATS_PRUNE_ENTRIES_MIN
        #: messages published to exchanges on this node (each message once, however routed)
        self.published = 0

    def counters(self, queue: Any) -> QueueCounters:
        found = self.by_queue.get(queue)
        if found is None:
            if len(self.by_queue) >= self._prune_at:
                self.by_queue = {q: c for q, c in self.by_queue.items() if not q.deleted}
                self._prune_at = max(QUEUE_STATS_PRUNE_ENTRIES_MIN, 2 * len(self.by_queue))
            found = self.by_queue[queue] = QueueCounters()
        return found

    def get(self, queue: Any) -> QueueCounters | None:
        return self.by_queue.get(queue)

    # -- the node's hooks ------------------------------------------------------------------

    def delivered(self, machine: Any, session: int, tag: str, n: int) -> None:
        """A ``deliver`` effect of ``n`` messages to consumer ``tag`` of ``session``."""
        s = machine.sessions.get(session)
        c = s.consumers.get(tag) if s is not None else None
        if c is not None:
            self.counters(c.queue).delivered += n

    def settling(self, machine: Any, cmd: list[Any]) -> dict[Any, int] | None:
        """Before a SETTLE is applied: how many of its messages each queue holds. Settles of
        ids the session no longer holds are not counted (the machine ignores them too)."""
        op = cmd[2]
        if op != C.SETTLE_COMPLETE and op != C.SETTLE_DISCARD:
            return None
        s = machine.sessions.get(cmd[1])
        if s is None:
            return None
        get = s.unacked.get
        per_queue: dict[Any, int] = {}
        last = None
        n = 0
        for mid in cmd[3]:
            m = get(mid)
            if m is None:
                continue
            q = m.queue
            if q is not last:
                if last is not None:
                    per_queue[last] = per_queue.get(last, 0) + n
                last = q
                n = 0
            n += 1
        if last is not None:
            per_queue[last] = per_queue.get(last, 0) + n
        return per_queue

    def settled(self, cmd: list[Any], per_queue: dict[Any, int], reply: Any) -> None:
        """After the SETTLE: count it unless the machine refused it (then nothing changed)."""
        if isinstance(reply, CoreError):
            return
        if cmd[2] == C.SETTLE_COMPLETE:
            for q, n in per_queue.items():
                self.counters(q).acked += n
            return
        for q, n in per_queue.items():
            counters = self.counters(q)
            counters.rejected += n
            if q.dlx is not None and (q.dl_reasons is None or "rejected" in q.dl_reasons):
                counters.dead_lettered += n

    def got(self, machine: Any, cmd: list[Any], reply: Any) -> None:
        """After a GET: count the messages it handed out."""
        if isinstance(reply, CoreError) or not reply or not reply[0]:
            return
        vh = machine.vhosts.get(cmd[2])
        q = vh.queues.get(cmd[3]) if vh is not None else None
        if q is not None:
            self.counters(q).got += len(reply[0])


class FsyncHistogram:
    """fsync durations (seconds) in ``FSYNC_BUCKETS_S``; ``observe`` is the log's callback."""

    def __init__(self) -> None:
        self.counts = [0] * (len(FSYNC_BUCKETS_S) + 1)
        self.sum_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(FSYNC_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out = []
        total = 0
        for bound, n in zip((*FSYNC_BUCKETS_S, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


def queue_rows(node: Node) -> Iterator[tuple[str, Any]]:
    """``(vhost, queue object)`` of every queue, vhosts and names in order."""
    vhosts = node.machine.vhosts
    for vname in sorted(vhosts):
        queues = vhosts[vname].queues
        for qname in sorted(queues):
            yield vname, queues[qname]


class NodeCollector:
    """Reads the node's state at scrape time (a ``prometheus_client`` custom collector)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        stats = node.statistics()
        yield _gauge(
            "polymq_applied_index", "Index of the last applied log entry.", stats["applied_index"]
        )
        commands = CounterMetricFamily(
            "polymq_commands", "Commands submitted, by path.", labels=["path"]
        )
        commands.add_metric(["logged"], stats["commands_logged"])
        commands.add_metric(["local"], stats["commands_local"])
        yield commands
        yield _gauge("polymq_sessions", "Open sessions.", stats["sessions"])
        yield CounterMetricFamily(
            "polymq_messages_published",
            "Messages published to exchanges through this node.",
            value=node.queue_stats.published,
        )
        yield from self._queues()
        yield from self._connections()
        yield from self._log(stats)
        yield from self._raft()
        yield from self._alarms()
        yield from self._mqtt()

    def _queues(self) -> Iterator[Metric]:
        node = self.node
        labels = ["vhost", "queue"]
        ready = GaugeMetricFamily(
            "polymq_queue_messages_ready", "Messages ready for delivery.", labels=labels
        )
        unacked = GaugeMetricFamily(
            "polymq_queue_messages_unacked", "Messages delivered and not settled.", labels=labels
        )
        consumers = GaugeMetricFamily("polymq_queue_consumers", "Consumers.", labels=labels)
        published = CounterMetricFamily(
            "polymq_queue_messages_published",
            "Messages enqueued into the queue (published or dead-lettered into it).",
            labels=labels,
        )
        delivered = CounterMetricFamily(
            "polymq_queue_messages_delivered",
            "Messages delivered to consumers or fetched with a get.",
            labels=labels,
        )
        acked = CounterMetricFamily(
            "polymq_queue_messages_acknowledged", "Messages acknowledged.", labels=labels
        )
        dead = CounterMetricFamily(
            "polymq_queue_messages_dead_lettered",
            "Messages dead-lettered out of the queue, by reason (rejected by a consumer).",
            labels=[*labels, "reason"],
        )
        qstats = node.queue_stats
        for vhost, q in queue_rows(node):
            key = [vhost, q.name]
            ready.add_metric(key, q.ready_count)
            unacked.add_metric(key, len(q.unacked))
            consumers.add_metric(key, len(q.consumers))
            published.add_metric(key, q.next_seq)
            c = qstats.get(q)
            delivered.add_metric(key, (c.delivered + c.got) if c else 0)
            acked.add_metric(key, c.acked if c else 0)
            dead.add_metric([*key, "rejected"], c.dead_lettered if c else 0)
        yield from (ready, unacked, consumers, published, delivered, acked, dead)

    def _connections(self) -> Iterator[Metric]:
        registry = self.node.connections
        open_now = GaugeMetricFamily(
            "polymq_connections", "Open client connections, by protocol.", labels=["protocol"]
        )
        opened = CounterMetricFamily(
            "polymq_connections_opened",
            "Client connections accepted, by protocol.",
            labels=["protocol"],
        )
        counts = registry.counts()
        protocols = sorted(set(counts) | set(registry.opened_total) | {"amqp", "mqtt", "stomp"})
        for protocol in protocols:
            open_now.add_metric([protocol], counts.get(protocol, 0))
            opened.add_metric([protocol], registry.opened_total.get(protocol, 0))
        yield open_now
        yield opened

    def _log(self, stats: dict[str, Any]) -> Iterator[Metric]:
        commit = stats.get("commit") or {}
        for key, doc in (
            ("fsyncs", "Log fsyncs."),
            ("batches", "Group-commit batches written."),
            ("records", "Log records written."),
        ):
            if key in commit:
                yield CounterMetricFamily(f"polymq_log_{key}", doc, value=commit[key])
        hist = self.node.fsync_seconds
        family = HistogramMetricFamily(
            "polymq_fsync_duration_seconds", "Time one log fsync took.", labels=[]
        )
        family.add_metric([], hist.cumulative(), hist.sum_s)
        yield family

    def _raft(self) -> Iterator[Metric]:
        node = self.node
        cluster = node.cluster
        if cluster is None or cluster.core is None:
            return
        status = cluster.status()
        yield _gauge("polymq_raft_term", "Current Raft term.", status["term"])
        yield _gauge("polymq_raft_commit_index", "Raft commit index.", status["commit_index"])
        yield _gauge(
            "polymq_raft_applied_index", "Last Raft entry applied here.", status["applied_index"]
        )
        yield _gauge("polymq_raft_last_index", "Last Raft log index.", status["last_index"])
        yield _gauge(
            "polymq_raft_leader",
            "1 when this node is the Raft leader.",
            1 if status["role"] == "leader" else 0,
        )
        lag = GaugeMetricFamily(
            "polymq_raft_follower_lag",
            "Entries a follower's log is behind the leader's (reported by the leader).",
            labels=["peer"],
        )
        connected = GaugeMetricFamily(
            "polymq_raft_peer_connected", "1 while the link to a peer is up.", labels=["peer"]
        )
        for peer, info in sorted(status["peers"].items()):
            if "lag" in info:
                lag.add_metric([peer], info["lag"])
            connected.add_metric([peer], 1 if info.get("connected") else 0)
        yield lag
        yield connected

    def _alarms(self) -> Iterator[Metric]:
        alarms = getattr(self.node, "alarms", None)
        if alarms is None:
            return
        stats = alarms.statistics()
        raised = set(stats.get("raised") or ())
        family = GaugeMetricFamily(
            "polymq_resource_alarm",
            "1 while a resource alarm is raised (publishers are blocked).",
            labels=["alarm"],
        )
        for name in sorted(raised | {"memory", "disk"}):
            family.add_metric([name], 1 if name in raised else 0)
        yield family
        for key, doc in (
            ("memory_bytes", "Resident memory of the node process."),
            ("memory_limit_bytes", "Memory high watermark."),
            ("disk_free_bytes", "Free disk space of the data directory."),
            ("disk_free_limit_bytes", "Free disk space low watermark."),
        ):
            if isinstance(stats.get(key), int):
                yield _gauge(f"polymq_{key}", doc, stats[key])

    def _mqtt(self) -> Iterator[Metric]:
        hub = self.node.mqtt_hub
        if hub is None:
            return
        yield _gauge("polymq_mqtt_connections", "Open MQTT sessions.", len(hub.connections))
        yield CounterMetricFamily(
            "polymq_mqtt_session_overflow",
            "QoS 1/2 messages refused by a full session queue.",
            value=hub.session_overflows,
        )
        yield CounterMetricFamily(
            "polymq_mqtt_messages_received", "MQTT PUBLISH packets received.", value=hub.messages_in
        )
        yield CounterMetricFamily(
            "polymq_mqtt_messages_sent", "MQTT PUBLISH packets sent.", value=hub.messages_out
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """The node's Prometheus registry and its text rendering."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))

    def render(self) -> bytes:
        return generate_latest(self.registry)
