"""Cluster benchmarks: replicated throughput, failover time and restart time, in one run.

Every node is a real ``python -m broker serve`` process (fsync always, free ports, a temporary
data root), started in a session of its own and killed with its whole process group at the end.
Readiness and timings come from the nodes' JSON log lines on stderr, read by a thread per node
as they arrive.

Parts (``--only 1,2,3``):
  1  persistent-confirm throughput, one node vs a 3-node cluster, same machine, same run: 256-byte
     persistent messages to a fresh durable queue, for ``--duration`` seconds per row. Rows: the
     raw publisher (``amqp_raw``, at most ``--window`` unconfirmed messages) and pika
     (``confirm_delivery``, one publish confirmed at a time), to the single node, to the leader
     and to a follower (whose publishes are forwarded to the leader). msgs/s confirmed, and the
     3-node/1-node ratio (goal >= 0.5x).
  2  failover: a raw publisher with confirms (paced at ``--failover-rate`` msg/s, window
     ``--window``) runs against a follower; the leader is killed with SIGKILL; the time from the
     kill to the first confirm of a message published after the kill (the publisher reconnects
     to the survivors on any error). Also the time until a survivor reports itself leader.
     ``--trials`` trials; between trials the killed node is restarted and must catch up (its
     applied index reaches the leader's commit index). Median, p90, max (goal <= 2 s median).
  3  restart of a single node holding ``--messages`` messages (256 B, persistent, one durable
     queue), killed with SIGKILL once every message is confirmed: time from process start to
     the ``recovered`` and ``started`` log events and to the first successful basic.get, with
     snapshots (``snapshot_entries_interval`` ``--snapshot-interval``) and without (an interval
     no log reaches, so recovery replays the whole log). Goal <= 10 s with snapshots.

    python bench/bench_cluster.py [--only 1,2,3] [--duration 10] [--trials 20]
                                  [--messages 1000000] [--window 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import amqp_raw as raw
from bench_amqp import Confirms, delete_queue, pika_params
from common import HOST, ROOT, free_ports

BODY_SIZE = 256
NODE_IDS = ("n1", "n2", "n3")
QUEUE = "bench-cluster"

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LEADER_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 120.0
FAILOVER_TIMEOUT_S = 20.0
STATUS_TIMEOUT_S = 1.0
POLL_S = 0.02

# the same for the single node and the cluster of part 1: only the topology differs
THROUGHPUT_CONFIG = ""
# part 2: the election settings of `polymq chaos`, frequent snapshots so that a restarted node
# may catch up through InstallSnapshot
FAILOVER_CONFIG = """\
cluster_tick_ms = 50
cluster_election_ticks = 10
cluster_propose_timeout_ms = 3000
cluster_session_timeout_ms = 2000
snapshot_entries_interval = 20000
"""
NO_SNAPSHOTS = 1 << 62


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} cores"


# -- nodes ------------------------------------------------------------------------------------


class Node:
    """One ``polymq serve`` process on fixed ports (kept across restarts), its JSON log lines
    timestamped on arrival and copied to ``<root>/<id>.log``."""

    def __init__(
        self,
        root: Path,
        node_id: str,
        config: str,
        peers: str = "",
        cluster_port: int = 0,
        fsync: str = "always",
    ) -> None:
        self.id = node_id
        self.data_dir = root / node_id
        self.log_path = root / f"{node_id}.log"
        self.config_path = root / f"{node_id}.toml"
        self.config_path.write_text(config)
        self.amqp_port, self.admin_port = free_ports(2)
        self.peers = peers
        self.cluster_port = cluster_port
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        assert not self.running(), f"{self.id} is already running"
        cmd = [sys.executable, "-m", "broker", "serve", "--config", str(self.config_path)]
        cmd += ["--node-id", self.id, "--data-dir", str(self.data_dir), "--host", HOST]
        cmd += ["--fsync", self.fsync, "--amqp-port", str(self.amqp_port)]
        cmd += ["--admin-port", str(self.admin_port)]
        if self.peers:
            cmd += ["--peers", self.peers, "--cluster-port", str(self.cluster_port)]
        for name in ("mqtt", "mqtt-ws", "stomp", "stomp-ws", "http"):
            cmd += [f"--{name}-port", "off"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMQ_")}
        with self._cond:
            self.events = []
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with open(self.log_path, "ab") as logf:
            for line in proc.stderr:
                now = time.monotonic()
                logf.write(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {"event": "text", "text": line.decode(errors="replace").rstrip()}
                if not isinstance(record, dict):
                    continue
                with self._cond:
                    self.events.append((now, record))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_event(
        self, name: str, timeout: float = START_TIMEOUT_S
    ) -> tuple[float, dict[str, Any]]:
        """The first ``name`` log event of the current process, with its arrival time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, record in self.events:
                    if record.get("event") == name:
                        return t, record
                if not self.running() and (self._reader is None or not self._reader.is_alive()):
                    raise RuntimeError(f"{self.id} exited before {name!r}: {self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.id}: no {name!r} within {timeout} s")
                self._cond.wait(min(left, 0.5))

    def log_tail(self, lines: int = 5) -> str:
        with self._cond:
            tail = self.events[-lines:]
        return " | ".join(json.dumps(r) for _, r in tail)

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def kill9(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.join(5)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        self.kill9()
        return self.proc.returncode

    def status(self) -> dict[str, Any] | None:
        if not self.running():
            return None
        try:
            url = f"http://{HOST}:{self.admin_port}/api/cluster"
            with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT_S) as resp:
                info: dict[str, Any] = json.load(resp)
                return info
        except (OSError, ValueError):
            return None


class Cluster:
    def __init__(self, root: Path, config: str, size: int) -> None:
        ids = NODE_IDS[:size]
        ports = free_ports(size)
        peers = ",".join(f"{i}={HOST}:{p}" for i, p in zip(ids, ports, strict=True))
        root.mkdir(parents=True, exist_ok=True)
        self.nodes = {
            i: Node(root, i, config, peers if size > 1 else "", p)
            for i, p in zip(ids, ports, strict=True)
        }

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_event("started")

    def leader(self) -> str | None:
        for nid, node in self.nodes.items():
            st = node.status()
            if st is not None and st.get("role") in ("leader", "single"):
                return nid
        return None

    def wait_leader(self, timeout: float = LEADER_TIMEOUT_S) -> str:
        return str(_wait_for("a leader", self.leader, timeout))

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill9()


def _wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


@contextlib.contextmanager
def running_cluster(root: Path, config: str, size: int) -> Iterator[Cluster]:
    cluster = Cluster(root, config, size)
    try:
        cluster.start()
        cluster.wait_leader()
        yield cluster
    finally:
        cluster.kill_all()


def _declare(port: int, queue: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = raw.RawConnection(HOST, port, timeout=5)
            try:
                conn.channel_open(1)
                conn.queue_declare(1, queue, durable=True)
                return
            finally:
                conn.close()
        except (OSError, raw.BrokerClosed, raw.Stalled):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- publishers -------------------------------------------------------------------------------


def _no_deliver(tag: int, view: memoryview) -> None:
    raise raw.BrokerClosed("unexpected delivery to the publisher")


def publish_raw(
    port: int,
    queue: str,
    *,
    seconds: float | None,
    count: int | None,
    window: int,
    batch: int,
    timeout: float,
) -> dict[str, Any]:
    """Persistent publishes with at most ``window`` unconfirmed, for ``seconds`` or until
    ``count`` were sent; then wait for the last confirms. msgs/s confirmed, first publish to
    last confirm."""
    conn = raw.RawConnection(HOST, port, timeout=timeout)
    confirms = Confirms()
    sent = 0
    try:
        conn.channel_open(1)
        conn.confirm_select(1)
        block, _ = raw.publish_block(1, "", queue, bytes(BODY_SIZE), 2)
        chunk = block * batch

        def drain(wait: float | None) -> None:
            if conn.recv_some(wait):
                used, _ = raw.scan(conn.buf, _no_deliver, confirms.ack, confirms.nack)
                del conn.buf[:used]

        t0 = time.monotonic_ns()
        deadline = t0 + int(seconds * 1e9) if seconds is not None else None
        while True:
            if deadline is not None and time.monotonic_ns() >= deadline:
                break
            if count is not None and sent >= count:
                break
            n = batch if count is None else min(batch, count - sent)
            if sent - confirms.settled + n > window:
                drain(None)  # window full (Stalled after the timeout)
                continue
            conn.send(chunk if n == batch else block * n)
            sent += n
            drain(0)
        while confirms.settled < sent:
            drain(None)
        span = (confirms.last_ns - t0) / 1e9
        return {
            "sent": sent,
            "confirmed": confirms.settled - confirms.nacked,
            "nacked": confirms.nacked,
            "rate": (confirms.settled - confirms.nacked) / span if span > 0 else 0.0,
        }
    finally:
        conn.close()


def publish_pika(port: int, queue: str, seconds: float, timeout: float) -> dict[str, Any]:
    """pika BlockingConnection, confirm_delivery: every publish waits for its confirm."""
    import pika

    conn = pika.BlockingConnection(pika_params(port, timeout))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2)
        body = bytes(BODY_SIZE)
        n = nacked = 0
        t0 = time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            try:
                ch.basic_publish("", queue, body, props)
                n += 1
            except pika.exceptions.NackError:
                nacked += 1
        span = time.monotonic() - t0
        return {"sent": n + nacked, "confirmed": n, "nacked": nacked, "rate": n / span}
    finally:
        with contextlib.suppress(Exception):
            conn.close()


# -- part 1: throughput -----------------------------------------------------------------------


def part_throughput(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    kinds = ("raw", "pika")

    def run(kind: str, target: str, port: int, row: int) -> dict[str, Any]:
        queue = f"{QUEUE}-{row}"
        _declare(port, queue, 30)
        _say(f"part 1: {kind} -> {target}, {args.duration} s")
        try:
            if kind == "raw":
                res = publish_raw(
                    port,
                    queue,
                    seconds=args.duration,
                    count=None,
                    window=args.window,
                    batch=args.batch,
                    timeout=args.timeout,
                )
            else:
                res = publish_pika(port, queue, args.duration, args.timeout)
        except Exception as exc:
            res = {"error": f"{type(exc).__name__}: {exc}"}
        delete_queue(port, queue, 30)
        return res

    with running_cluster(root / "single", THROUGHPUT_CONFIG, 1) as single:
        port = single.nodes["n1"].amqp_port
        for i, kind in enumerate(kinds):
            rows.append({"kind": kind, "target": "single node"} | run(kind, "single", port, i))
    base = {r["kind"]: r.get("rate") for r in rows}
    with running_cluster(root / "cluster", THROUGHPUT_CONFIG, 3) as cluster:
        leader = cluster.wait_leader()
        follower = next(i for i in cluster.nodes if i != leader)
        targets = [("3 nodes, leader", leader), ("3 nodes, follower", follower)]
        for j, (label, nid) in enumerate(targets):
            port = cluster.nodes[nid].amqp_port
            for i, kind in enumerate(kinds):
                res = run(kind, label, port, 10 * (j + 1) + i)
                if res.get("rate") and base.get(kind):
                    res["ratio"] = res["rate"] / base[kind]
                rows.append({"kind": kind, "target": label} | res)
        if cluster.leader() != leader:
            _say(f"part 1: the leader changed during the run ({leader} -> {cluster.leader()})")
    return rows


# -- part 2: failover -------------------------------------------------------------------------


class ConfirmProbe(threading.Thread):
    """A paced raw publisher with confirms that reconnects to the next port on any error, and
    notes the first confirm of a message published after ``mark``."""

    def __init__(self, ports: list[int], queue: str, rate: float, window: int) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.queue = queue
        self.rate = rate
        self.window = window
        self.stop = threading.Event()
        self.mark: float | None = None  # time.monotonic() of the kill
        self.first_after: float | None = None
        self.confirmed = 0
        self.nacked = 0
        self.errors: list[str] = []
        self.reconnects = 0

    def run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            port = self.ports[turn % len(self.ports)]
            try:
                self._session(port)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:120])
                turn += 1
                self.reconnects += 1
                self.stop.wait(0.05)

    def _session(self, port: int) -> None:
        conn = raw.RawConnection(HOST, port, timeout=5)
        try:
            conn.channel_open(1)
            conn.confirm_select(1)
            block, _ = raw.publish_block(1, "", self.queue, bytes(BODY_SIZE), 2)
            sent_at: list[float] = []
            confirms = Confirms()
            seen = 0

            def on_ack(tag: int, multiple: bool) -> None:
                confirms.ack(tag, multiple)
                self._note(sent_at[tag - 1])

            def on_nack(tag: int, multiple: bool) -> None:
                confirms.nack(tag, multiple)

            per_tick = 10
            interval = per_tick / self.rate
            due = time.monotonic()
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= due and len(sent_at) - confirms.settled + per_tick <= self.window:
                    conn.send(block * per_tick)
                    sent_at.extend([time.monotonic()] * per_tick)
                    due = max(due + interval, now)
                wait = max(0.0, min(due - time.monotonic(), 0.05))
                if conn.recv_some(wait) or conn.buf:
                    used, _ = raw.scan(conn.buf, _no_deliver, on_ack, on_nack)
                    del conn.buf[:used]
                    self.confirmed += confirms.settled - confirms.nacked - seen
                    seen = confirms.settled - confirms.nacked
                    self.nacked = max(self.nacked, confirms.nacked)
        finally:
            conn.close()

    def _note(self, sent: float) -> None:
        if self.first_after is None and self.mark is not None and sent > self.mark:
            self.first_after = time.monotonic()


def _collect(into: list[int], tag: int, multiple: bool) -> None:
    into.append(tag)


def _fresh_confirm(ports: list[int], queue: str, stop: threading.Event, out: list[float]) -> None:
    """A new client after the kill: connect to a survivor, publish one message at a time, each
    bounded by 1 s, trying the next survivor on any error; note the time of the first ack."""
    turn = 0
    while not stop.is_set():
        port = ports[turn % len(ports)]
        turn += 1
        try:
            conn = raw.RawConnection(HOST, port, timeout=2)
            try:
                conn.channel_open(1)
                conn.confirm_select(1)
                block, _ = raw.publish_block(1, "", queue, bytes(BODY_SIZE), 2)
                acks: list[int] = []
                nacks: list[int] = []
                while not stop.is_set():
                    conn.send(block)
                    deadline = time.monotonic() + 1.0
                    before = len(nacks)
                    while not acks and len(nacks) == before:
                        left = deadline - time.monotonic()
                        if left <= 0 or not conn.recv_some(left):
                            raise raw.Stalled("no confirm within 1 s")
                        used, _ = raw.scan(
                            conn.buf,
                            _no_deliver,
                            functools.partial(_collect, acks),
                            functools.partial(_collect, nacks),
                        )
                        del conn.buf[:used]
                    if acks:
                        out.append(time.monotonic())
                        return
            finally:
                conn.close()
        except (OSError, raw.BrokerClosed, raw.Stalled):
            stop.wait(0.05)


def _caught_up(cluster: Cluster, nid: str) -> bool:
    leader = cluster.leader()
    if leader is None or leader == nid:
        return False
    lst, st = cluster.nodes[leader].status(), cluster.nodes[nid].status()
    if lst is None or st is None:
        return False
    return st.get("role") == "follower" and st["applied_index"] >= lst["commit_index"]


def _steady(probe: ConfirmProbe) -> bool:
    return probe.confirmed >= 500


def part_failover(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    with running_cluster(root / "failover", FAILOVER_CONFIG, 3) as cluster:
        leader = cluster.wait_leader()
        _declare(cluster.nodes[leader].amqp_port, QUEUE, 30)
        for trial in range(args.trials):
            leader = cluster.wait_leader()
            for nid in cluster.nodes:
                if nid != leader:
                    _wait_for(f"{nid} caught up", functools.partial(_caught_up, cluster, nid), 60)
            term = (cluster.nodes[leader].status() or {}).get("term", 0)
            survivors = [i for i in cluster.nodes if i != leader]
            follower = survivors[trial % 2]
            others = [i for i in survivors if i != follower]
            ports = [cluster.nodes[i].amqp_port for i in [follower, *others]]
            probe = ConfirmProbe(ports, QUEUE, args.failover_rate, args.window)
            probe.start()
            fresh: threading.Thread | None = None
            rec: dict[str, Any] = {"trial": trial + 1, "killed": leader, "via": follower}
            try:
                _wait_for("steady confirms", functools.partial(_steady, probe), 30)
                before = probe.confirmed
                time.sleep(0.5)
                rec["rate_before"] = (probe.confirmed - before) / 0.5
                kill_at = time.monotonic()
                probe.mark = kill_at
                cluster.nodes[leader].kill9()
                fresh_at: list[float] = []
                fresh = threading.Thread(
                    target=_fresh_confirm,
                    args=(
                        [cluster.nodes[i].amqp_port for i in survivors],
                        QUEUE,
                        probe.stop,
                        fresh_at,
                    ),
                    daemon=True,
                )
                fresh.start()
                new_leader_at: float | None = None
                new_leader = None
                deadline = kill_at + FAILOVER_TIMEOUT_S
                while time.monotonic() < deadline:
                    if new_leader_at is None:
                        for nid in survivors:
                            st = cluster.nodes[nid].status()
                            if st and st.get("role") == "leader" and st.get("term", 0) > term:
                                new_leader_at, new_leader = time.monotonic(), nid
                    if new_leader_at and probe.first_after is not None and fresh_at:
                        break
                    time.sleep(POLL_S)
                first = probe.first_after
                rec["confirm_s"] = None if first is None else first - kill_at
                rec["leader_s"] = None if new_leader_at is None else new_leader_at - kill_at
                rec["new_leader"] = new_leader
                rec["fresh_s"] = fresh_at[0] - kill_at if fresh_at else None
            finally:
                probe.stop.set()
                probe.join(10)
                if fresh is not None:
                    fresh.join(10)
            rec["nacked"] = probe.nacked
            rec["reconnects"] = probe.reconnects
            rec["errors"] = probe.errors[:3]
            trials.append(rec)
            cs, ls = rec.get("confirm_s"), rec.get("leader_s")
            _say(
                f"part 2: trial {trial + 1}/{args.trials}: killed {leader}, new leader "
                f"{rec.get('new_leader')} after {_fmt_s(ls)}, first confirm after {_fmt_s(cs)}"
                f" (via {follower}, {probe.reconnects} reconnects, {probe.nacked} nacked), new "
                f"client {_fmt_s(rec.get('fresh_s'))}; {'; '.join(probe.errors[:2]) or 'no errors'}"
            )
            t0 = time.monotonic()
            cluster.nodes[leader].start()
            cluster.nodes[leader].wait_event("started", CATCH_UP_TIMEOUT_S)
            _wait_for(f"{leader} caught up", functools.partial(_caught_up, cluster, leader), 60)
            rec["rejoin_s"] = time.monotonic() - t0
    return trials


# -- part 3: restart --------------------------------------------------------------------------


def _first_get(port: int, queue: str, timeout: float) -> float:
    """Poll basic.get (no ack: the message goes back when the connection closes) until one
    message comes back; the time it did."""
    import pika

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = pika.BlockingConnection(pika_params(port, 5))
            try:
                method, _props, _body = conn.channel().basic_get(queue, auto_ack=False)
                if method is not None:
                    return time.monotonic()
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no basic.get answered with a message within {timeout} s")
        time.sleep(POLL_S)


def _dir_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total / 1e6


def part_restart(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    variants = [("snapshots", args.snapshot_interval), ("no snapshots", NO_SNAPSHOTS)]
    for label, interval in variants:
        if label == "no snapshots" and args.skip_no_snapshots:
            continue
        base = root / f"restart-{label.replace(' ', '-')}"
        config = f"snapshot_entries_interval = {interval}\n"
        cluster = Cluster(base, config, 1)
        node = cluster.nodes["n1"]
        rec: dict[str, Any] = {"variant": label, "interval": interval}
        try:
            node.start()
            node.wait_event("started")
            _declare(node.amqp_port, QUEUE, 30)
            _say(f"part 3 ({label}): publishing {args.messages:,} messages")
            t0 = time.monotonic()
            res = publish_raw(
                node.amqp_port,
                QUEUE,
                seconds=None,
                count=args.messages,
                window=args.window,
                batch=args.batch,
                timeout=args.timeout,
            )
            rec["fill_s"] = time.monotonic() - t0
            rec["confirmed"] = res["confirmed"]
            # let a snapshot in progress finish: the interval is about the log, not about luck
            time.sleep(1.0)
            snaps = [r["index"] for _, r in node.events if r.get("event") == "snapshot written"]
            rec["last_snapshot"] = max(snaps) if snaps else 0
            node.kill9()
            rec["data_mb"] = _dir_mb(node.data_dir)
            _say(f"part 3 ({label}): killed with {rec['data_mb']:.0f} MB on disk; restarting")
            node.start()
            start = node.started_at
            t_rec, recovered = node.wait_event("recovered", args.restart_timeout)
            t_started, _ = node.wait_event("started", args.restart_timeout)
            t_get = _first_get(node.amqp_port, QUEUE, args.restart_timeout)
            rec["recovered_s"] = t_rec - start
            rec["started_s"] = t_started - start
            rec["get_s"] = t_get - start
            rec["snapshot_index"] = recovered.get("snapshot_index")
            rec["replayed"] = recovered.get("replayed_entries")
            _say(
                f"part 3 ({label}): recovered {rec['recovered_s']:.2f} s, started "
                f"{rec['started_s']:.2f} s, first get {rec['get_s']:.2f} s"
            )
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
            _say(f"part 3 ({label}): {rec['error']}")
        finally:
            node.kill9()
            shutil.rmtree(node.data_dir, ignore_errors=True)
        rows.append(rec)
    return rows


# -- report -----------------------------------------------------------------------------------


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _pct(vals: list[float], q: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def print_throughput(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"1. persistent-confirm throughput ({args.duration:g} s per row, 256 B, fsync always)")
    print(f"{'row':<44} {'msgs/s':>10} {'confirmed':>10} {'nacked':>7} {'vs 1 node':>10}")
    print("-" * 85)
    labels = {"raw": f"raw, window {args.window}", "pika": "pika, one at a time"}
    for r in rows:
        name = f"{labels[r['kind']]} -> {r['target']}"
        if "error" in r:
            print(f"{name:<44} {'error':>10}  {r['error']}")
            continue
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        print(f"{name:<44} {r['rate']:>10,.0f} {r['confirmed']:>10,} {r['nacked']:>7} {ratio:>10}")
    print("goal: 3 nodes >= 0.5x one node")


def print_failover(trials: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        f"2. failover: kill -9 of the leader, publisher on a follower at {args.failover_rate:g}"
        f" msg/s (window {args.window}), {len(trials)} trials"
    )
    print(f"{'time from the kill to':<44} {'median':>8} {'p90':>8} {'max':>8} {'min':>8} {'ok':>6}")
    print("-" * 85)
    for key, label in (
        ("leader_s", "a survivor reports itself leader"),
        ("confirm_s", "first confirm of a message published after"),
        ("fresh_s", "first confirm to a client connecting after"),
        ("rejoin_s", "(restart of the killed node to caught up)"),
    ):
        vals = [t[key] for t in trials if t.get(key) is not None]
        if not vals:
            print(f"{label:<44} {'-':>8} {'-':>8} {'-':>8} {'-':>8} {0:>3}/{len(trials)}")
            continue
        print(
            f"{label:<44} {statistics.median(vals):>7.2f}s {_pct(vals, 0.9):>7.2f}s "
            f"{max(vals):>7.2f}s {min(vals):>7.2f}s {len(vals):>3}/{len(trials)}"
        )
    nacked = sum(t.get("nacked", 0) for t in trials)
    reconnects = sum(t.get("reconnects", 0) for t in trials)
    print(f"nacked {nacked}, reconnects {reconnects} over all trials; goal: median <= 2 s")


def print_restart(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"3. restart of a single node holding {args.messages:,} messages (256 B, persistent)")
    print(
        f"{'variant':<14} {'on disk':>8} {'snapshot@':>10} {'replayed':>9} {'recovered':>10} "
        f"{'started':>8} {'1st get':>8} {'fill':>8}"
    )
    print("-" * 85)
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<14} error: {r['error']}")
            continue
        print(
            f"{r['variant']:<14} {r['data_mb']:>6.0f}MB {r['snapshot_index']:>10,} "
            f"{r['replayed']:>9,} {r['recovered_s']:>9.2f}s {r['started_s']:>7.2f}s "
            f"{r['get_s']:>7.2f}s {r['fill_s']:>7.0f}s"
        )
    print("times from process start; goal: started <= 10 s (with snapshots)")
    if any(r.get("variant") == "snapshots" and not r.get("snapshot_index") for r in rows):
        print(
            "warning: the 'snapshots' run recovered without a snapshot (lower --snapshot-interval)"
        )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="1,2,3", help="comma-separated parts (1,2,3)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput row")
    ap.add_argument("--trials", type=int, default=20, help="failover trials")
    ap.add_argument("--messages", type=int, default=1_000_000, help="messages for the restart")
    ap.add_argument("--window", type=int, default=1000, help="unconfirmed messages (raw)")
    ap.add_argument("--batch", type=int, default=100, help="raw messages per sendall")
    ap.add_argument("--failover-rate", type=float, default=2000.0, help="msg/s during failover")
    ap.add_argument(
        "--snapshot-interval",
        type=int,
        default=1000,
        help="part 3, log entries (one entry carries a batch of publishes: 1,000,000 raw "
        "publishes make about 2,000 entries)",
    )
    ap.add_argument("--skip-no-snapshots", action="store_true", help="part 3 with snapshots only")
    ap.add_argument("--restart-timeout", type=float, default=300.0, help="part 3 bound, s")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after N s of silence")
    ap.add_argument("--keep", action="store_true", help="keep the data root (node logs)")
    args = ap.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    signal.signal(signal.SIGTERM, _interrupt)  # the finally blocks kill every node
    root = Path(tempfile.mkdtemp(prefix="polymq-bench-cluster-"))
    results: dict[str, Any] = {}
    _say(f"data root {root}; {_load()}")
    try:
        if "1" in parts:
            results["1"] = part_throughput(root, args)
        if "2" in parts:
            results["2"] = part_failover(root, args)
        if "3" in parts:
            results["3"] = part_restart(root, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        end_load = _load()
        if args.keep:
            print(f"data root: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if "1" in results:
        print_throughput(results["1"], args)
    if "2" in results:
        print_failover(results["2"], args)
    if "3" in results:
        print_restart(results["3"], args)
    print()
    print(f"python {sys.version.split()[0]}; at the end: {end_load}")


if __name__ == "__main__":
    main()
