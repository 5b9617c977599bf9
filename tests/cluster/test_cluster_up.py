"""``polymq cluster up`` as a user runs it: three nodes on free ports with every front end and
the AWS endpoint, ``polymq cluster status`` naming one leader, a message published with pika on
one node and read with boto3's SQS on another, and Ctrl-C (SIGINT) stopping every node."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pika

from tests.cluster.test_cluster import wait_for
from tests.polymq_process import ROOT, server_env

STOP_TIMEOUT_S = 30.0


def _state(root: Path) -> list[dict[str, Any]] | None:
    try:
        nodes: list[dict[str, Any]] = json.loads((root / "cluster.json").read_text())["nodes"]
        return nodes
    except (OSError, ValueError, KeyError):
        return None


def _status(root: Path) -> list[dict[str, Any]] | None:
    out = subprocess.run(
        [sys.executable, "-m", "broker", "cluster", "status", "--data-root", str(root), "--json"],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        return None
    answers: list[dict[str, Any]] = json.loads(out.stdout)
    return answers


def test_cluster_up_status_and_ctrl_c(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "cluster", "up", "-n", "3", "--data-root", str(root)],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        nodes = wait_for("the dev cluster's state file", lambda: _state(root))
        assert [n["id"] for n in nodes] == ["n1", "n2", "n3"]

        def one_leader() -> list[dict[str, Any]] | None:
            answers = _status(root)
            if not answers or len(answers) != 3:
                return None
            leaders = {a.get("leader") for a in answers}
            roles = sorted(a.get("role") for a in answers)
            return (
                answers
                if roles == ["follower", "follower", "leader"] and len(leaders) == 1
                else None
            )

        wait_for("one leader in cluster status", one_leader, timeout=60)
        first, second = nodes[0]["ports"], nodes[1]["ports"]
        conn = pika.BlockingConnection(
            pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{first['amqp']}/")
        )
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare("from-amqp", durable=True)
            ch.basic_publish("", "from-amqp", b"hello", pika.BasicProperties(delivery_mode=2))
        finally:
            conn.close()
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{second['http']}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        url = sqs.get_queue_url(QueueName="from-amqp")["QueueUrl"]
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
        assert [m["Body"] for m in got] == ["hello"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "polymq dev cluster: 3 nodes" in out and "aws http://127.0.0.1:" in out
    # every node stopped cleanly (SIGTERM from cluster up: its log's last event)
    for node in nodes:
        events = [
            json.loads(line).get("event")
            for line in Path(node["log"]).read_text().splitlines()
            if line.startswith("{")
        ]
        assert "stopped" in events, (node["id"], events[-5:])
