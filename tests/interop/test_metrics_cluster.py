"""A real 3-node cluster seen through the management API and ``/metrics``: every member in
``/api/nodes`` with its role, the leader's view of each follower's lag, and the Raft gauges."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.test_cluster import IDS, Cluster, wait_for

HTTP_TIMEOUT_S = 5.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def fetch(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HTTP_TIMEOUT_S) as r:
        body: bytes = r.read()
        return body


def nodes(cluster: Cluster, node_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(fetch(cluster.nodes[node_id].admin_port, "/api/nodes"))
    return rows


def test_nodes_and_raft_metrics(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    node = cluster.nodes[leader]
    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        ch = conn.channel()
        ch.queue_declare("replicated", durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", "replicated", b"x", pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()

    # the leader knows every follower's match index once they have acknowledged the entries
    def caught_up() -> list[dict[str, Any]] | None:
        rows = nodes(cluster, leader)
        ok = all(r["running"] and r["lag"] == 0 for r in rows)
        return rows if ok else None

    rows = wait_for("followers caught up", caught_up)
    assert [r["name"] for r in rows] == sorted(IDS)
    by_name = {r["name"]: r for r in rows}
    assert by_name[leader]["role"] == "leader" and by_name[leader]["leader"] is True
    followers = [i for i in IDS if i != leader]
    for f in followers:
        assert by_name[f]["role"] == "follower" and by_name[f]["leader"] is False
        assert by_name[f]["match_index"] == by_name[leader]["match_index"]
    term = by_name[leader]["term"]
    assert term >= 1 and by_name[leader]["commit_index"] >= 2

    # a follower names the same leader
    seen = nodes(cluster, followers[0])
    assert [r["name"] for r in seen if r["leader"]] == [leader]
    assert next(r for r in seen if r["name"] == followers[0])["role"] == "follower"

    text = fetch(node.admin_port, "/metrics").decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("polymq_raft_term", frozenset())] == term
    assert samples[("polymq_raft_leader", frozenset())] == 1
    assert samples[("polymq_raft_commit_index", frozenset())] >= 2
    assert samples[("polymq_raft_applied_index", frozenset())] >= 2
    for f in followers:
        assert samples[("polymq_raft_follower_lag", frozenset({("peer", f)}))] == 0
        assert samples[("polymq_raft_peer_connected", frozenset({("peer", f)}))] == 1
    ov = json.loads(fetch(node.admin_port, "/api/overview"))
    assert any(ls["protocol"] == "clustering" for ls in ov["listeners"])
