"""``polymq chaos``: a 3-node cluster of real processes under faults, checked like RabbitMQ's
Jepsen test of quorum queues.

The checker starts ``python -m broker serve`` three times (free ports, fsync always, a temporary
or given data root) and puts a fault-injecting TCP proxy (``LinkProxy``) in front of every
cluster link: node ``a`` dials node ``b`` through its own proxy port for the directed link
``(a, b)``, so cutting the pair ``{a, b}`` stops both of the connections between them (a
dialled connection carries frames one way, see ``storage/raft/transport.py``). A cut either
resets the pair's connections and refuses new ones (``reset``), or holds every byte, new
connections included, until it heals (``stall``, as a network that silently drops packets until
TCP retransmits them).

Publishers (pika, publisher confirms) send unique integers as persistent messages to one durable
queue through every node; consumers (manual acks) on every node record what they receive. Both
reconnect to the next node on any error. Meanwhile a fault loop picks, from a seeded generator,
one fault every ``--faults-every`` seconds: ``kill`` (kill -9, restart later), ``pause``
(SIGSTOP, SIGCONT later), ``partition-leader`` (the leader cut off from the others),
``partition-random`` (random halves) and ``bridge`` (one pair cut, both still reach the third).
Kinds are drawn from a shuffled deck, so every kind happens once before any repeats. Unless
``--nasty``, a fault heals before the next one starts: a majority is always up and connected;
with it, faults last up to 2.5 intervals and overlap, so a majority may be gone for a while.

At the end every fault is healed, the whole cluster is killed with SIGKILL and restarted (a
confirmed message must survive a crash of every node at once), and the queue is drained from all
nodes. The tally: confirmed, delivered (distinct), lost (confirmed, never delivered), duplicated
(delivered more than once: allowed, at-least-once), unexpected (delivered, never published).
Exit code 1 when lost or unexpected is not zero, and the data root is then kept for its logs.
The fault choices come from ``--seed``; their timing, and so the interleaving with the clients,
is real time and does not replay exactly.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.from_thread

__all__ = ["FAULT_KINDS", "LinkProxy", "add_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

NODE_IDS = ("n1", "n2", "n3")
HOST = "127.0.0.1"
QUEUE = "polymq-chaos"
FAULT_KINDS = ("kill", "pause", "partition-leader", "partition-random", "bridge")
PARTITION_MODES = ("reset", "stall")

# node configuration: fast elections and timeouts, frequent snapshots so that restarted nodes
# also catch up through InstallSnapshot
NODE_CONFIG = """\
cluster_tick_ms = 50
cluster_election_ticks = 10
cluster_propose_timeout_ms = 3000
cluster_session_timeout_ms = 2000
snapshot_entries_interval = 2000
segment_bytes_max = 1048576
amqp_heartbeat_s = 2
"""

CLIENT_HEARTBEAT_S = 2
CLIENT_CONNECT_TIMEOUT_S = 3.0
CLIENT_RETRY_DELAY_S = 0.2
CONSUMER_PREFETCH = 100
CONSUMER_IDLE_POLL_S = 0.5
NODE_START_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 10.0
STATUS_TIMEOUT_S = 0.5
LEADER_TIMEOUT_S = 30.0
SETUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0
DRAIN_IDLE_S = 3.0
WORKER_JOIN_TIMEOUT_S = 15.0
POLL_S = 0.1
FAULT_HOLD_S_MIN = 1.0
FAULT_HOLD_FRACTION = (0.4, 0.8)  # of --faults-every: healed before the next fault
NASTY_HOLD_FRACTION = (0.5, 2.5)  # --nasty: faults overlap
PROXY_START_TIMEOUT_S = 10.0
PROXY_CONNECT_TIMEOUT_S = 3.0
PROXY_READ_BYTES_MAX = 1 << 16
LOG_TAIL_BYTES_MAX = 4000
SAMPLE_VALUES_MAX = 50


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the fault-injecting proxy ---------------------------------------------------------------


Pair = frozenset[str]


class LinkProxy:
    """A TCP proxy per directed link ``(src, dst)``, on trio in a thread of its own.

    ``cut(pairs, mode)`` partitions each pair ``{a, b}`` (both directed links, both directions
    of every connection); ``restore(pairs)`` and ``heal()`` undo it. In ``reset`` mode the
    pair's connections are closed and new ones are closed at once; in ``stall`` mode nothing is
    forwarded (and no new connection reaches its upstream) until the pair heals, when the held
    bytes flow again.
    """

    def __init__(self, routes: dict[tuple[str, str], tuple[str, int]], host: str = HOST) -> None:
        self.routes = dict(routes)
        self.host = host
        self.ports: dict[tuple[str, str], int] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self._cut: dict[Pair, str] = {}
        self._changed: trio.Event | None = None
        self._conns: dict[Pair, set[trio.CancelScope]] = collections.defaultdict(set)
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # sync API (any thread but the proxy's own)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(PROXY_START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the link proxy did not start: {self._error}")

    def close(self) -> None:
        if self._token is not None and self._thread is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop, trio_token=self._token)
            except trio.RunFinishedError:
                pass
            self._thread.join(PROXY_START_TIMEOUT_S)

    def cut(self, pairs: Iterable[Pair], mode: str) -> None:
        assert mode in PARTITION_MODES, mode
        self._call(self._do_cut, list(pairs), mode)

    def restore(self, pairs: Iterable[Pair]) -> None:
        self._call(self._do_restore, list(pairs))

    def heal(self) -> None:
        self._call(self._do_restore, list(self._cut))

    def is_cut(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._cut

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._token is not None, "proxy not started"
        trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    # trio side

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._changed = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            for link, upstream in self.routes.items():
                listeners = await trio.open_tcp_listeners(0, host=self.host)
                self.ports[link] = listeners[0].socket.getsockname()[1]

                async def handler(
                    stream: trio.SocketStream,
                    link: tuple[str, str] = link,
                    upstream: tuple[str, int] = upstream,
                ) -> None:
                    await self._handle(link, upstream, stream)

                nursery.start_soon(trio.serve_listeners, handler, listeners)
            self._ready.set()

    def _stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = trio.Event()

    def _do_cut(self, pairs: list[Pair], mode: str) -> None:
        for pair in pairs:
            self._cut[pair] = mode
            if mode == "reset":
                for scope in list(self._conns[pair]):
                    scope.cancel()
                    self.stats["connections reset"] += 1
        self._notify()

    def _do_restore(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            self._cut.pop(pair, None)
        self._notify()

    async def _wait_open(self, pair: Pair) -> None:
        while pair in self._cut:
            assert self._changed is not None
            await self._changed.wait()

    async def _handle(
        self, link: tuple[str, str], upstream: tuple[str, int], client: trio.SocketStream
    ) -> None:
        pair = frozenset(link)
        async with client:
            if self._cut.get(pair) == "reset":
                self.stats["connections refused"] += 1
                return
            await self._wait_open(pair)
            try:
                with trio.fail_after(PROXY_CONNECT_TIMEOUT_S):
                    up = await trio.open_tcp_stream(*upstream)
            except (OSError, trio.TooSlowError):
                self.stats["upstream unreachable"] += 1
                return
            async with up:
                with trio.CancelScope() as scope:
                    self._conns[pair].add(scope)
                    self.stats["connections"] += 1
                    if self._cut.get(pair) == "reset":  # cut while connecting upstream
                        scope.cancel()
                        self.stats["connections reset"] += 1
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._pump, pair, client, up, scope)
                            nursery.start_soon(self._pump, pair, up, client, scope)
                    finally:
                        self._conns[pair].discard(scope)

    async def _pump(
        self,
        pair: Pair,
        src: trio.SocketStream,
        dst: trio.SocketStream,
        scope: trio.CancelScope,
    ) -> None:
        try:
            while True:
                data = await src.receive_some(PROXY_READ_BYTES_MAX)
                if not data:
                    break
                await self._wait_open(pair)
                await dst.send_all(data)
                self.stats["bytes"] += len(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


# -- nodes ------------------------------------------------------------------------------------


@dataclass
class NodeProcess:
    id: str
    data_dir: str
    log_path: str
    amqp_port: int
    admin_port: int
    cluster_port: int
    peers: str
    config_path: str
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    log_offset: int = 0  # where the log of the current process starts

    def start(self) -> None:
        assert not self.running(), f"{self.id} is already running"
        cmd = [sys.executable, "-m", "broker", "serve", "--config", self.config_path]
        cmd += ["--node-id", self.id, "--data-dir", self.data_dir, "--host", HOST]
        cmd += ["--peers", self.peers, "--cluster-port", str(self.cluster_port)]
        cmd += ["--fsync", "always", "--amqp-port", str(self.amqp_port)]
        cmd += ["--admin-port", str(self.admin_port)]
        for name in ("mqtt", "mqtt-ws", "stomp", "stomp-ws", "http"):
            cmd += [f"--{name}-port", "off"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMQ_")}
        try:
            self.log_offset = os.path.getsize(self.log_path)
        except OSError:
            self.log_offset = 0
        with open(self.log_path, "ab") as logf:
            # a session of its own: Ctrl-C on the terminal reaches the checker, not the nodes,
            # and the whole group can be killed at the end
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env=env,
                start_new_session=True,
            )
        self.paused = False
        self.starts += 1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, signum: int) -> None:
        if self.running():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(NODE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.paused = False

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def status(self) -> dict[str, Any] | None:
        if not self.running() or self.paused:
            return None
        try:
            url = f"http://{HOST}:{self.admin_port}/api/cluster"
            with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT_S) as resp:
                info: dict[str, Any] = json.load(resp)
                return info
        except (OSError, ValueError):
            return None

    def wait_serving(self, timeout_s: float = NODE_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.status() is None:
            if not self.running():
                raise RuntimeError(f"{self.id} exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.id} did not answer within {timeout_s} s")
            time.sleep(POLL_S)

    def wait_recovered(self, timeout_s: float = NODE_START_TIMEOUT_S) -> None:
        """Until the process has recovered its data and runs its cluster links (its log says
        ``waiting for the cluster``); it serves clients only once it also reaches a majority."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self.log_offset)
                    if b'"event":"waiting for the cluster"' in f.read():
                        return
            except OSError:
                pass
            if not self.running():
                raise RuntimeError(f"{self.id} exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.id} did not recover within {timeout_s} s")
            time.sleep(POLL_S)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_TAIL_BYTES_MAX))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# -- what the clients saw ---------------------------------------------------------------------


@dataclass
class History:
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempted: set[int] = field(default_factory=set)
    confirmed: dict[int, tuple[str, float]] = field(default_factory=dict)  # value -> node, time
    nacked: int = 0
    delivered: collections.Counter[int] = field(default_factory=collections.Counter)
    redelivered_flag: int = 0
    garbage: list[bytes] = field(default_factory=list)
    client_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    _next: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_value(self) -> int:
        with self.lock:
            value = next(self._next)
            self.attempted.add(value)
            return value

    def deliver(self, body: bytes, redelivered: bool) -> None:
        with self.lock:
            try:
                self.delivered[int(body)] += 1
            except ValueError:
                self.garbage.append(body[:64])
            if redelivered:
                self.redelivered_flag += 1

    def error(self, who: str, exc: BaseException) -> None:
        with self.lock:
            self.client_errors[f"{who}: {type(exc).__name__}"] += 1


def _connect(port: int) -> Any:
    import pika

    params = pika.ConnectionParameters(
        host=HOST,
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=CLIENT_HEARTBEAT_S,
        socket_timeout=CLIENT_CONNECT_TIMEOUT_S,
        stack_timeout=CLIENT_CONNECT_TIMEOUT_S * 2,
        blocked_connection_timeout=CLIENT_CONNECT_TIMEOUT_S * 2,
        connection_attempts=1,
    )
    return pika.BlockingConnection(params)


def _close_quietly(conn: Any) -> None:
    if conn is None:
        return
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass


def _publisher(
    index: int, ports: list[tuple[str, int]], history: History, stop: threading.Event
) -> None:
    import pika

    props = pika.BasicProperties(delivery_mode=2)
    for turn in itertools.count(index):
        if stop.is_set():
            return
        node, port = ports[turn % len(ports)]
        conn = None
        try:
            conn = _connect(port)
            ch = conn.channel()
            ch.confirm_delivery()
            while not stop.is_set():
                value = history.next_value()
                try:
                    ch.basic_publish("", QUEUE, str(value).encode(), props)
                except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                    with history.lock:
                        history.nacked += 1
                    continue
                with history.lock:
                    history.confirmed[value] = (node, time.time())
        except Exception as exc:
            history.error("publisher", exc)
        finally:
            _close_quietly(conn)
        stop.wait(CLIENT_RETRY_DELAY_S)


def _consumer(
    index: int,
    ports: list[tuple[str, int]],
    history: History,
    stop: threading.Event,
    last_delivery: list[float],
) -> None:
    for turn in itertools.count(index):
        if stop.is_set():
            return
        _node, port = ports[turn % len(ports)]
        conn = None
        try:
            conn = _connect(port)
            ch = conn.channel()
            ch.basic_qos(prefetch_count=CONSUMER_PREFETCH)
            for method, _props, body in ch.consume(QUEUE, inactivity_timeout=CONSUMER_IDLE_POLL_S):
                if stop.is_set():
                    break
                if method is None:
                    continue
                history.deliver(body, bool(method.redelivered))
                last_delivery[0] = time.monotonic()
                ch.basic_ack(method.delivery_tag)
        except Exception as exc:
            history.error("consumer", exc)
        finally:
            _close_quietly(conn)
        stop.wait(CLIENT_RETRY_DELAY_S)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    target: str
    heal_at: float
    pairs: list[Pair] = field(default_factory=list)
    mode: str = ""


class Chaos:
    def __init__(self, args: argparse.Namespace, root: str) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.history = History()
        self.faults: collections.Counter[str] = collections.Counter()
        self.fault_errors: list[str] = []
        self.events: list[str] = []
        self.nodes: dict[str, NodeProcess] = {}
        self.proxy: LinkProxy | None = None
        self.stop_clients = threading.Event()
        self.threads: list[threading.Thread] = []
        self.last_delivery = [time.monotonic()]
        self._deck: list[str] = []
        self.kinds: tuple[str, ...] = tuple(args.fault_kinds)

    def log(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.events.append(line)
        if not self.args.quiet:
            _say(text)

    # setup / teardown

    def setup(self) -> None:
        ports = _free_ports(3 * len(NODE_IDS))
        real = {nid: ports[3 * i + 2] for i, nid in enumerate(NODE_IDS)}
        routes = {(a, b): (HOST, real[b]) for a in NODE_IDS for b in NODE_IDS if a != b}
        self.proxy = LinkProxy(routes)
        self.proxy.start()
        conf = os.path.join(self.root, "chaos.toml")
        with open(conf, "w") as f:
            f.write(NODE_CONFIG)
        for i, nid in enumerate(NODE_IDS):
            # each node reaches every peer through the proxy port of that directed link
            peers = ",".join(
                f"{p}={HOST}:{real[p] if p == nid else self.proxy.ports[(nid, p)]}"
                for p in NODE_IDS
            )
            self.nodes[nid] = NodeProcess(
                id=nid,
                data_dir=os.path.join(self.root, nid),
                log_path=os.path.join(self.root, f"{nid}.log"),
                amqp_port=ports[3 * i],
                admin_port=ports[3 * i + 1],
                cluster_port=real[nid],
                peers=peers,
                config_path=conf,
            )
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_serving()
        leader = self.wait_leader()
        self.log(f"cluster up, leader {leader}; data root {self.root}")
        self._declare()

    def _declare(self) -> None:
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while True:
            for node in self.nodes.values():
                conn = None
                try:
                    conn = _connect(node.amqp_port)
                    conn.channel().queue_declare(QUEUE, durable=True)
                    return
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cannot declare {QUEUE}: {exc!r}") from None
                finally:
                    _close_quietly(conn)
            time.sleep(POLL_S)

    def teardown(self) -> None:
        self.stop_clients.set()
        for node in self.nodes.values():
            node.kill9()
        if self.proxy is not None:
            self.proxy.close()

    # cluster state

    def leader(self) -> str | None:
        for nid, node in self.nodes.items():
            st = node.status()
            if st is not None and st.get("role") == "leader":
                return nid
        return None

    def wait_leader(self, timeout_s: float = LEADER_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            leader = self.leader()
            if leader is not None:
                return leader
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader within {timeout_s} s")
            time.sleep(POLL_S)

    # clients

    def _ports(self) -> list[tuple[str, int]]:
        return [(nid, node.amqp_port) for nid, node in self.nodes.items()]

    def start_clients(self, publishers: int, consumers: int) -> None:
        self.stop_clients.clear()
        self.threads = []
        for i in range(publishers):
            t = threading.Thread(
                target=_publisher,
                args=(i, self._ports(), self.history, self.stop_clients),
                name=f"publisher-{i}",
                daemon=True,
            )
            self.threads.append(t)
        for i in range(consumers):
            t = threading.Thread(
                target=_consumer,
                args=(i, self._ports(), self.history, self.stop_clients, self.last_delivery),
                name=f"consumer-{i}",
                daemon=True,
            )
            self.threads.append(t)
        for t in self.threads:
            t.start()

    def stop_all_clients(self) -> None:
        self.stop_clients.set()
        deadline = time.monotonic() + WORKER_JOIN_TIMEOUT_S
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            self.log(f"clients still blocked after {WORKER_JOIN_TIMEOUT_S} s: {stuck}")

    # faults

    def _next_kind(self) -> str:
        if not self._deck:
            self._deck = list(self.kinds)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def _hold_s(self) -> float:
        lo, hi = NASTY_HOLD_FRACTION if self.args.nasty else FAULT_HOLD_FRACTION
        every_s = float(self.args.faults_every)
        return max(FAULT_HOLD_S_MIN, self.rng.uniform(lo, hi) * every_s)

    def _healthy(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.running() and not n.paused]

    def inject(self) -> Fault | None:
        kind = self._next_kind()
        leader = self.leader()
        healthy = self._healthy()
        if not healthy:
            return None
        heal_at = time.monotonic() + self._hold_s()
        proxy = self.proxy
        assert proxy is not None
        if kind in ("kill", "pause"):
            # the leader half of the time, since that is where failover happens
            use_leader = leader in healthy and self.rng.random() < 0.5
            target = leader if use_leader and leader is not None else self.rng.choice(healthy)
            node = self.nodes[target]
            if kind == "kill":
                node.kill9()
            else:
                node.pause()
            fault = Fault(kind, target, heal_at)
        else:
            ids = list(NODE_IDS)
            mode = self.rng.choice(PARTITION_MODES)
            if kind == "partition-leader":
                alone = leader if leader is not None else self.rng.choice(ids)
                pairs = [frozenset((alone, o)) for o in ids if o != alone]
                target = f"{alone} | {' '.join(o for o in ids if o != alone)}"
            elif kind == "partition-random":
                self.rng.shuffle(ids)
                cut_at = self.rng.randint(1, len(ids) - 1)
                left, right = sorted(ids[:cut_at]), sorted(ids[cut_at:])
                pairs = [frozenset((a, b)) for a in left for b in right]
                target = f"{' '.join(left)} | {' '.join(right)}"
            else:  # bridge
                a, b = sorted(self.rng.sample(ids, 2))
                pairs = [frozenset((a, b))]
                target = f"{a} x {b}"
            proxy.cut(pairs, mode)
            fault = Fault(kind, target, heal_at, pairs, mode)
        self.faults[kind] += 1
        where = f" (leader {leader})" if leader else " (no leader)"
        mode_text = f" [{fault.mode}]" if fault.mode else ""
        self.log(f"fault {kind}{mode_text} {fault.target}{where}")
        return fault

    def heal(self, fault: Fault, active: list[Fault]) -> None:
        proxy = self.proxy
        assert proxy is not None
        if fault.kind == "kill":
            node = self.nodes[fault.target]
            if not node.running():
                node.start()
                try:
                    node.wait_recovered()
                    if not self.args.nasty:
                        # a majority is reachable: the node must join it and catch up
                        node.wait_serving()
                except RuntimeError as exc:
                    self.fault_errors.append(str(exc))
                    self.log(f"restart of {node.id} failed: {exc}")
        elif fault.kind == "pause":
            self.nodes[fault.target].resume()
        else:
            # keep the pairs another active partition still cuts
            still = {p for f in active if f is not fault for p in f.pairs}
            proxy.restore([p for p in fault.pairs if p not in still])
        self.log(f"healed {fault.kind} {fault.target}")

    def run_faults(self, duration_s: float) -> None:
        end = time.monotonic() + duration_s
        next_at = time.monotonic() + self.args.faults_every
        active: list[Fault] = []
        while True:
            now = time.monotonic()
            for fault in [f for f in active if f.heal_at <= now or now >= end]:
                self.heal(fault, active)
                active.remove(fault)
            if now >= end:
                break
            if now >= next_at and (self.args.nasty or not active):
                injected = self.inject()
                if injected is not None:
                    active.append(injected)
                next_at = max(next_at + self.args.faults_every, time.monotonic())
            time.sleep(min(POLL_S, max(0.0, end - now)))

    # the end

    def heal_and_restart(self) -> None:
        assert self.proxy is not None
        self.proxy.heal()
        for node in self.nodes.values():
            node.resume()
        self.log("healed every fault; killing every node (SIGKILL) and restarting the cluster")
        for node in self.nodes.values():
            node.kill9()
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_serving()
        leader = self.wait_leader()
        self.log(f"cluster back, leader {leader}")

    def _ready_count(self) -> int | None:
        for node in self.nodes.values():
            conn = None
            try:
                conn = _connect(node.amqp_port)
                ok = conn.channel().queue_declare(QUEUE, durable=True, passive=True)
                return int(ok.method.message_count)
            except Exception:
                continue
            finally:
                _close_quietly(conn)
        return None

    def drain(self) -> bool:
        """Consume from every node until the queue is empty and nothing arrived for a while."""
        self.last_delivery[0] = time.monotonic()
        self.start_clients(0, len(self.nodes))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        drained = False
        try:
            while time.monotonic() < deadline:
                time.sleep(CONSUMER_IDLE_POLL_S)
                if time.monotonic() - self.last_delivery[0] < DRAIN_IDLE_S:
                    continue
                if self._ready_count() == 0:
                    drained = True
                    break
        finally:
            self.stop_all_clients()
        self.log("queue drained" if drained else f"queue not drained after {DRAIN_TIMEOUT_S} s")
        return drained

    def tally(self, run_s: float, drained: bool) -> dict[str, Any]:
        h = self.history
        with h.lock:
            confirmed = set(h.confirmed)
            delivered = set(h.delivered)
            lost = sorted(confirmed - delivered)
            unexpected = sorted(delivered - h.attempted)
            duplicated = sorted(v for v, n in h.delivered.items() if n > 1)
            unknown = h.attempted - confirmed
            out: dict[str, Any] = {
                "seed": self.args.seed,
                "duration_s": round(run_s, 1),
                "faults": dict(sorted(self.faults.items())),
                "faults_total": sum(self.faults.values()),
                "attempted": len(h.attempted),
                "confirmed": len(confirmed),
                "unknown": len(unknown),
                "nacked": h.nacked,
                "delivered": len(delivered),
                "deliveries": sum(h.delivered.values()),
                "redelivered_flag": h.redelivered_flag,
                "lost": len(lost),
                "duplicated": len(duplicated),
                "unexpected": len(unexpected) + len(h.garbage),
                "unknown_delivered": len(unknown & delivered),
                "drained": drained,
                "publish_rate_per_s": round(len(confirmed) / run_s, 1) if run_s else 0.0,
                "delivery_rate_per_s": round(sum(h.delivered.values()) / run_s, 1)
                if run_s
                else 0.0,
                "client_errors": dict(h.client_errors.most_common()),
                "fault_errors": self.fault_errors,
                "proxy": dict(self.proxy.stats) if self.proxy is not None else {},
                "lost_sample": [
                    {"value": v, "via": h.confirmed[v][0], "confirmed_at": h.confirmed[v][1]}
                    for v in lost[:SAMPLE_VALUES_MAX]
                ],
                "unexpected_sample": unexpected[:SAMPLE_VALUES_MAX]
                + [g.decode("utf-8", "replace") for g in h.garbage[:SAMPLE_VALUES_MAX]],
                "data_root": self.root,
            }
        return out


def _print_tally(t: dict[str, Any]) -> None:
    faults = ", ".join(f"{k} {v}" for k, v in t["faults"].items()) or "none"
    print(f"seed         {t['seed']}")
    print(f"duration     {t['duration_s']} s")
    print(f"faults       {t['faults_total']} ({faults})")
    print(f"attempted    {t['attempted']}")
    print(f"confirmed    {t['confirmed']}  ({t['publish_rate_per_s']}/s)")
    print(f"unknown      {t['unknown']}  (nacked or unconfirmed at an error; may be there)")
    print(f"  recovered  {t['unknown_delivered']}")
    print(f"delivered    {t['delivered']} distinct, {t['deliveries']} deliveries", end="")
    print(f"  ({t['delivery_rate_per_s']}/s)")
    print(f"lost         {t['lost']}")
    print(f"duplicated   {t['duplicated']}")
    print(f"unexpected   {t['unexpected']}")
    if not t["drained"]:
        print("warning      the queue did not drain before the deadline")
    for err in t["fault_errors"]:
        print(f"fault error  {err}")
    if t["lost_sample"]:
        print(f"lost values  {[x['value'] for x in t['lost_sample']]}")
    if t["unexpected_sample"]:
        print(f"unexpected   {t['unexpected_sample']}")


# -- command line -----------------------------------------------------------------------------


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"fault kinds are {', '.join(FAULT_KINDS)}")
    return kinds


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=None, help="fault choices (default: random)")
    parser.add_argument(
        "--faults-every", type=float, default=5.0, metavar="S", help="a fault every S seconds"
    )
    parser.add_argument(
        "--faults",
        dest="fault_kinds",
        type=_kinds,
        default=list(FAULT_KINDS),
        metavar="KIND,...",
        help=f"fault kinds (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--publishers", type=int, default=3, metavar="N")
    parser.add_argument("--consumers", type=int, default=3, metavar="N")
    parser.add_argument(
        "--data-root", metavar="DIR", help="node data and logs (default: a temporary directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data root afterwards")
    parser.add_argument(
        "--nasty", action="store_true", help="overlapping faults: a majority may be down"
    )
    parser.add_argument("--json", action="store_true", help="print the tally as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chaos",
        help="3-node cluster under kill -9, SIGSTOP and partitions; count lost messages",
    )
    _configure(parser)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    try:
        import pika  # noqa: F401
    except ImportError:
        print("polymq: error: polymq chaos needs pika (pip install pika)", file=sys.stderr)
        return EXIT_USAGE
    if args.duration <= 0 or args.faults_every <= 0 or args.publishers < 1 or args.consumers < 1:
        print(
            "polymq: error: --duration and --faults-every must be > 0, "
            "--publishers and --consumers >= 1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.data_root:
        root = os.path.abspath(args.data_root)
        if os.path.isdir(root) and os.listdir(root):
            print(f"polymq: error: data root {root} is not empty", file=sys.stderr)
            return EXIT_USAGE
        os.makedirs(root, exist_ok=True)
    else:
        root = tempfile.mkdtemp(prefix="polymq-chaos-")
    if threading.current_thread() is threading.main_thread():
        # both stop the run cleanly, even when started with SIGINT ignored (in the background)
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
    chaos = Chaos(args, root)
    keep = args.keep
    code = EXIT_FAILED
    try:
        chaos.log(f"seed {args.seed}, {args.duration} s, a fault every {args.faults_every} s")
        chaos.setup()
        started = time.monotonic()
        chaos.start_clients(args.publishers, args.consumers)
        chaos.run_faults(args.duration)
        run_s = time.monotonic() - started
        chaos.stop_all_clients()
        chaos.heal_and_restart()
        drained = chaos.drain()
        t = chaos.tally(run_s, drained)
        failed = t["lost"] > 0 or t["unexpected"] > 0
        code = EXIT_FAILED if failed or not drained else EXIT_OK
        keep = keep or code != EXIT_OK or bool(t["fault_errors"])
        with open(os.path.join(root, "chaos-result.json"), "w") as f:
            json.dump(t, f, indent=2)
        with open(os.path.join(root, "chaos-events.log"), "w") as f:
            f.write("\n".join(chaos.events) + "\n")
        if args.json:
            print(json.dumps(t))
        else:
            _print_tally(t)
    except KeyboardInterrupt:
        print("interrupted; stopping every node", file=sys.stderr)
        code = EXIT_INTERRUPTED
        keep = True
    except RuntimeError as exc:
        print(f"polymq: error: {exc}", file=sys.stderr)
        keep = True
        code = EXIT_FAILED
    finally:
        chaos.teardown()
        if keep:
            print(f"data root: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m broker.chaos", description=__doc__)
    _configure(_parser)
    sys.exit(main(_parser.parse_args()))
