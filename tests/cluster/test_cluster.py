"""A real 3-node cluster: ``polymq serve --peers ...`` processes on free ports, driven by pika.

Covers: election, persistent publishes with confirms on the leader and on a follower, delivery
to a consumer on a third node, kill -9 of the leader (a new leader, nothing confirmed lost,
clients of survivors carry on), a restarted node catching up through InstallSnapshot after
compaction, a minority node's clients getting errors quickly, and leadership transfer on a
graceful shutdown. Every wait has a deadline; readiness comes from the processes' JSON logs.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.polymq_process import PolymqProcess

T = TypeVar("T")
IDS = ("n1", "n2", "n3")
WAIT_S = 20.0
POLL_S = 0.05
CONFIG = """
cluster_tick_ms = 50
cluster_election_ticks = 10
cluster_propose_timeout_ms = 3000
cluster_session_timeout_ms = 2000
snapshot_entries_interval = 100
segment_bytes_max = 8192
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


class Cluster:
    def __init__(self, root: Path) -> None:
        ports = _free_ports(len(IDS))
        peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in zip(IDS, ports, strict=True))
        conf = root / "cluster.toml"
        conf.write_text(CONFIG)
        self.nodes = {
            i: PolymqProcess(
                root / i,
                extra_args=("--config", str(conf), "--node-id", i, "--peers", peers),
            )
            for i in IDS
        }

    def start(self, ids: tuple[str, ...] = IDS) -> None:
        with ThreadPoolExecutor(len(ids)) as pool:
            for fut in [pool.submit(self.nodes[i].start) for i in ids]:
                fut.result()

    def status(self, node_id: str) -> dict[str, Any] | None:
        node = self.nodes[node_id]
        if node.proc is None or node.proc.poll() is not None:
            return None
        try:
            url = f"http://127.0.0.1:{node.admin_port}/api/cluster"
            with urllib.request.urlopen(url, timeout=2) as resp:
                info: dict[str, Any] = json.load(resp)
                return info
        except OSError:
            return None

    def leader(self, among: tuple[str, ...] = IDS) -> str | None:
        for i in among:
            st = self.status(i)
            if st is not None and st["role"] == "leader":
                return i
        return None

    def wait_leader(self, among: tuple[str, ...] = IDS, timeout: float = WAIT_S) -> str:
        return wait_for("a leader", lambda: self.leader(among), timeout)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill9()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _channel(node: PolymqProcess) -> tuple[pika.BlockingConnection, BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(node.url + "?blocked_connection_timeout=30"))
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def _publish(node: PolymqProcess, queue: str, bodies: list[bytes]) -> None:
    conn, ch = _channel(node)
    try:
        for body in bodies:
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def _drain(node: PolymqProcess, queue: str, want: int, *, ack: bool) -> list[bytes]:
    """Consume until ``want`` messages arrived (or the deadline passes)."""
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    got: list[bytes] = []
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=500)
        deadline = time.monotonic() + WAIT_S
        for method, _props, body in ch.consume(queue, inactivity_timeout=0.5):
            if method is not None:
                got.append(body)
                if ack:
                    ch.basic_ack(method.delivery_tag)
            if len(got) >= want or time.monotonic() > deadline:
                break
        ch.cancel()
    finally:
        conn.close()
    return got


def _declare(node: PolymqProcess, queue: str) -> None:
    conn, ch = _channel(node)
    ch.queue_declare(queue, durable=True)
    conn.close()


def test_replication_failover_and_consumers_on_other_nodes(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    followers = [i for i in IDS if i != leader]
    nodes = cluster.nodes
    _declare(nodes[leader], "jobs")
    on_leader = [b"L%d" % i for i in range(200)]
    on_follower = [b"F%d" % i for i in range(200)]
    _publish(nodes[leader], "jobs", on_leader)
    _publish(nodes[followers[0]], "jobs", on_follower)
    # a consumer on the other follower receives every confirmed message (not acked: they go
    # back to the queue when it disconnects)
    seen = _drain(nodes[followers[1]], "jobs", 400, ack=False)
    assert sorted(seen) == sorted(on_leader + on_follower)

    t0 = time.monotonic()
    nodes[leader].kill9()
    survivors = tuple(followers)
    # a client of a survivor carries on: its publish is confirmed once a new leader is up
    first_confirm = None
    after = [b"A%d" % i for i in range(50)]
    deadline = time.monotonic() + WAIT_S
    while first_confirm is None:
        try:
            _publish(nodes[survivors[0]], "jobs", after[:1])
            first_confirm = time.monotonic() - t0
        except pika.exceptions.AMQPError:
            assert time.monotonic() < deadline, "no confirm after the leader died"
    new_leader = cluster.wait_leader(survivors)
    assert new_leader in survivors
    assert first_confirm < 10.0, first_confirm
    _publish(nodes[new_leader], "jobs", after[1:])
    got = _drain(nodes[survivors[1]], "jobs", 450, ack=True)
    assert set(got) == set(on_leader + on_follower + after)


def test_restarted_node_catches_up_through_a_snapshot(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lagging = next(i for i in IDS if i != leader)
    nodes = cluster.nodes
    _declare(nodes[leader], "snap")
    nodes[lagging].kill9()
    bodies = [b"m%d" % i + b"x" * 200 for i in range(400)]
    _publish(nodes[leader], "snap", bodies)
    st = cluster.status(leader)
    assert st is not None and st["snapshot_index"] > 0
    nodes[lagging].start()

    def caught_up() -> bool:
        a, b = cluster.status(lagging), cluster.status(leader)
        return bool(a and b and a["applied_index"] >= b["commit_index"] - 1)

    wait_for("the restarted node to catch up", caught_up)
    assert any(r.get("event") == "snapshot installed" for r in nodes[lagging].lines)
    got = _drain(nodes[lagging], "snap", 400, ack=True)
    assert sorted(got) == sorted(bodies)


def test_minority_clients_get_errors_quickly(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    nodes = cluster.nodes
    _declare(nodes[leader], "minority")
    alone = next(i for i in IDS if i != leader)
    for i in IDS:
        if i != alone:
            nodes[i].kill9()
    t0 = time.monotonic()
    with pytest.raises(pika.exceptions.AMQPError):
        _publish(nodes[alone], "minority", [b"lost?"])
    assert time.monotonic() - t0 < 8.0


def test_graceful_shutdown_transfers_leadership(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    others = tuple(i for i in IDS if i != leader)
    t0 = time.monotonic()
    cluster.nodes[leader].stop()
    assert any(r.get("event") == "transferring leadership" for r in cluster.nodes[leader].lines)
    assert cluster.nodes[leader].proc is not None
    assert cluster.nodes[leader].proc.returncode == 0
    new = cluster.wait_leader(others, timeout=5)
    assert new in others
    assert time.monotonic() - t0 < 5


def _damage_log(data_dir: Path) -> Path:
    """Flip one byte inside a complete record of the node's newest sizeable log segment."""
    segments = sorted(p for p in (data_dir / "log").glob("*.log") if p.stat().st_size > 1024)
    assert segments, f"no log segment to damage in {data_dir}"
    seg = segments[-1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    return seg


def test_node_with_a_damaged_log_repairs_from_its_peers(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    damaged, other = [i for i in IDS if i != leader]
    nodes = cluster.nodes
    _declare(nodes[leader], "repair")
    first = [b"r%d" % i + b"x" * 100 for i in range(300)]
    _publish(nodes[leader], "repair", first)
    wait_for(
        "the follower to apply everything",
        lambda: (
            (s := cluster.status(damaged)) is not None
            and (t := cluster.status(leader)) is not None
            and s["applied_index"] >= t["commit_index"]
        ),
    )
    nodes[damaged].kill9()
    _damage_log(nodes[damaged].data_dir)
    nodes[damaged].start()  # starts: the good prefix kept, the rest set aside
    assert any(r.get("event", "").startswith("log damaged") for r in nodes[damaged].lines)
    assert (nodes[damaged].data_dir / "log-damaged").exists()
    assert list((nodes[damaged].data_dir / "log").glob("damaged-*/*.log"))
    second = [b"s%d" % i for i in range(50)]
    _publish(nodes[damaged], "repair", second)  # a damaged node still serves its clients

    # It does not vote until it holds a committed entry of a newer term: a new term comes
    # from the other two (the old leader restarted, then an election).
    nodes[leader].kill9()
    nodes[leader].start()
    wait_for(
        "the damaged node to be repaired",
        lambda: any(
            r.get("event") == "log repaired from the cluster" for r in nodes[damaged].lines
        ),
        timeout=30,
    )
    assert not (nodes[damaged].data_dir / "log-damaged").exists()
    # now it counts towards a majority again: without the third node, the repaired node and
    # the restarted one elect a leader and keep every confirmed message
    nodes[other].kill9()
    cluster.wait_leader(among=(leader, damaged), timeout=30)
    got = _drain(nodes[damaged], "repair", 350, ack=True)
    assert sorted(got) == sorted(first + second)


def test_transient_message_dead_lettered_into_a_durable_queue_reaches_every_replica(
    cluster: Cluster,
) -> None:
    leader = cluster.wait_leader()
    a, b = [i for i in IDS if i != leader]
    nodes = cluster.nodes
    _declare(nodes[leader], "dead-letters")
    conn = pika.BlockingConnection(pika.URLParameters(nodes[a].url))
    try:
        ch = conn.channel()
        # a queue of node a only (non-durable), dead-lettering into the durable queue
        ch.queue_declare(
            "scratch",
            durable=False,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead-letters"},
        )
        ch.basic_publish("", "scratch", b"doomed", pika.BasicProperties(delivery_mode=1))
        method, _props, body = wait_for("the transient message", lambda: _get(ch, "scratch"))
        assert body == b"doomed"
        ch.basic_reject(method.delivery_tag, requeue=False)
    finally:
        conn.close()
    # the dead-lettered copy went through the log: a consumer on another node gets it
    conn = pika.BlockingConnection(pika.URLParameters(nodes[b].url))
    try:
        ch = conn.channel()
        method, props, body = wait_for(
            "the dead letter on another node", lambda: _get(ch, "dead-letters")
        )
        assert body == b"doomed"
        death = props.headers["x-death"][0]
        assert death["queue"] == "scratch" and death["reason"] == "rejected"
        ch.basic_ack(method.delivery_tag)
    finally:
        conn.close()

    # and every replica agrees the durable queue is empty again
    def all_empty() -> bool:
        for i in IDS:
            c = pika.BlockingConnection(pika.URLParameters(nodes[i].url))
            try:
                if c.channel().queue_declare("dead-letters", passive=True).method.message_count:
                    return False
            finally:
                c.close()
        return True

    wait_for("the dead letter acked on every replica", all_empty)


def _get(ch: BlockingChannel, queue: str) -> Any:
    method, props, body = ch.basic_get(queue)
    return None if method is None else (method, props, body)
