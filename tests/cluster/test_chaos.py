"""``polymq chaos``: the fault-injecting link proxy on its own, and a short checker run.

The short run is a real 3-node cluster under a seeded schedule whose first round holds every
fault kind (kill -9, SIGSTOP, three kinds of partition), so each is injected at least once; it
fails if a confirmed message is lost or something never published is delivered.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.chaos import FAULT_KINDS, Chaos, LinkProxy

ROOT = Path(__file__).resolve().parent.parent.parent
SOCKET_TIMEOUT_S = 5.0
SILENCE_S = 0.5
CHAOS_TIMEOUT_S = 110.0


class Upstream:
    """A listener that hands every accepted connection to the test."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(SOCKET_TIMEOUT_S)

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        conn.settimeout(SOCKET_TIMEOUT_S)
        return conn

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxied() -> Iterator[tuple[LinkProxy, Upstream]]:
    up = Upstream()
    proxy = LinkProxy({("a", "b"): ("127.0.0.1", up.port)})
    proxy.start()
    try:
        yield proxy, up
    finally:
        proxy.close()
        up.close()


def _dial(proxy: LinkProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.ports[("a", "b")]), SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def _silent(sock: socket.socket) -> bool:
    """True when nothing arrives on ``sock`` for SILENCE_S (and it is not closed)."""
    sock.settimeout(SILENCE_S)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(SOCKET_TIMEOUT_S)
    return False


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, "closed"
        got += chunk
    return got


def test_stall_partition_holds_bytes_both_ways_until_healed(
    proxied: tuple[LinkProxy, Upstream],
) -> None:
    proxy, up = proxied
    client = _dial(proxy)
    server = up.accept()
    try:
        client.sendall(b"ping")
        assert _recv_exactly(server, 4) == b"ping"
        server.sendall(b"pong")
        assert _recv_exactly(client, 4) == b"pong"

        proxy.cut([frozenset(("b", "a"))], "stall")
        assert proxy.is_cut("a", "b")
        client.sendall(b"to-b")
        server.sendall(b"to-a")
        assert _silent(server), "bytes crossed a partition towards the upstream"
        assert _silent(client), "bytes crossed a partition towards the dialler"

        proxy.heal()
        assert not proxy.is_cut("a", "b")
        assert _recv_exactly(server, 4) == b"to-b"
        assert _recv_exactly(client, 4) == b"to-a"
    finally:
        client.close()
        server.close()


def test_stall_partition_holds_new_connections(proxied: tuple[LinkProxy, Upstream]) -> None:
    proxy, up = proxied
    proxy.cut([frozenset(("a", "b"))], "stall")
    client = _dial(proxy)
    try:
        up.sock.settimeout(SILENCE_S)
        with pytest.raises(TimeoutError):
            up.accept()  # the proxy does not dial the upstream while the pair is cut
        up.sock.settimeout(SOCKET_TIMEOUT_S)
        proxy.heal()
        server = up.accept()
        client.sendall(b"late")
        assert _recv_exactly(server, 4) == b"late"
        server.close()
    finally:
        client.close()


def test_reset_partition_closes_connections_and_refuses_new_ones(
    proxied: tuple[LinkProxy, Upstream],
) -> None:
    proxy, up = proxied
    client = _dial(proxy)
    server = up.accept()
    try:
        proxy.cut([frozenset(("a", "b"))], "reset")
        assert _closed(client)
        assert _closed(server)
        refused = _dial(proxy)
        assert _closed(refused)
        refused.close()
        assert proxy.stats["connections reset"] == 1
        assert proxy.stats["connections refused"] == 1

        proxy.restore([frozenset(("a", "b"))])
        again = _dial(proxy)
        server2 = up.accept()
        again.sendall(b"back")
        assert _recv_exactly(server2, 4) == b"back"
        server2.sendall(b"ok")
        assert _recv_exactly(again, 2) == b"ok"
        again.close()
        server2.close()
    finally:
        client.close()
        server.close()


def test_a_cut_leaves_other_pairs_alone() -> None:
    up = Upstream()
    proxy = LinkProxy({("a", "b"): ("127.0.0.1", up.port), ("a", "c"): ("127.0.0.1", up.port)})
    proxy.start()
    try:
        proxy.cut([frozenset(("a", "b"))], "stall")
        sock = socket.create_connection(("127.0.0.1", proxy.ports[("a", "c")]), SOCKET_TIMEOUT_S)
        server = up.accept()
        sock.sendall(b"c")
        assert _recv_exactly(server, 1) == b"c"
        sock.close()
        server.close()
    finally:
        proxy.close()
        up.close()


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    # 22 s with a fault every 3 s: the first round of the deck holds every kind once
    cmd = [sys.executable, "-m", "broker.chaos", "--duration", "22", "--faults-every", "3"]
    cmd += ["--seed", "7", "--data-root", str(tmp_path / "chaos"), "--json", "--quiet"]
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=CHAOS_TIMEOUT_S, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stdout + out.stderr
    tally = json.loads(lines[-1])
    report = json.dumps(tally, indent=2) + "\n" + out.stderr[-3000:]
    assert tally["lost"] == 0, report
    assert tally["unexpected"] == 0, report
    assert tally["drained"], report
    assert tally["confirmed"] > 0 and tally["delivered"] > 0, report
    for kind in FAULT_KINDS:
        assert tally["faults"].get(kind, 0) > 0, (kind, report)
    assert not tally["fault_errors"], report
    assert out.returncode == 0, report


def test_proxy_threads_do_not_leak() -> None:
    before = threading.active_count()
    up = Upstream()
    proxy = LinkProxy({("a", "b"): ("127.0.0.1", up.port)})
    proxy.start()
    proxy.close()
    up.close()
    assert threading.active_count() == before


def test_tally_counts_lost_duplicated_and_unexpected() -> None:
    args = argparse.Namespace(seed=1, fault_kinds=list(FAULT_KINDS), quiet=True)
    chaos = Chaos(args, "/nonexistent")
    h = chaos.history
    for _ in range(5):
        h.next_value()  # 1..5 published
    h.confirmed = {1: ("n1", 0.0), 2: ("n2", 0.0), 3: ("n3", 0.0)}
    for body, redelivered in [(b"1", False), (b"1", True), (b"3", False), (b"4", False)]:
        h.deliver(body, redelivered)
    h.deliver(b"99", False)  # never published
    h.deliver(b"junk", False)
    t = chaos.tally(10.0, drained=True)
    assert t["confirmed"] == 3 and t["unknown"] == 2
    assert t["delivered"] == 4  # 1, 3, 4, 99
    assert t["lost"] == 1 and t["lost_sample"][0]["value"] == 2
    assert t["duplicated"] == 1
    assert t["unexpected"] == 2  # 99 and the body that is not a number
    assert t["unknown_delivered"] == 1  # 4
    assert t["redelivered_flag"] == 1
