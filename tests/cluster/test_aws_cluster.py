"""The AWS endpoint on a real 3-node cluster: every node serves SQS, SNS and EventBridge, the
requests a follower reads are relayed to the leader, and after kill -9 of the leader the
services start again on the new one from the replicated state.

Driven by boto3 against each node's own endpoint; readiness from the processes' JSON logs;
every wait has a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.cluster.test_cluster import CONFIG, IDS, Cluster, _free_ports, wait_for
from tests.polymq_process import PolymqProcess

RECEIVE_WAIT_S = 1


class AwsCluster(Cluster):
    def __init__(self, root: Path) -> None:
        ports = _free_ports(len(IDS))
        peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in zip(IDS, ports, strict=True))
        conf = root / "cluster.toml"
        conf.write_text(CONFIG)
        self.nodes = {
            i: PolymqProcess(
                root / i,
                extra_args=("--config", str(conf), "--node-id", i, "--peers", peers),
                listeners=("amqp", "http"),
            )
            for i in IDS
        }

    def client(self, node_id: str, service: str) -> Any:
        node = self.nodes[node_id]
        return boto3.client(
            service,
            endpoint_url=node.http_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=BotoConfig(retries={"max_attempts": 8, "mode": "standard"}, read_timeout=30),
        )


@pytest.fixture
def aws_cluster(tmp_path: Path) -> Iterator[AwsCluster]:
    c = AwsCluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _receive_all(sqs: Any, url: str, want: int, timeout: float = 30.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < want and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=RECEIVE_WAIT_S
        ).get("Messages", [])
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_sqs_through_every_node_and_across_a_leader_kill(aws_cluster: AwsCluster) -> None:
    leader = aws_cluster.wait_leader()
    a, b = [i for i in IDS if i != leader]
    sqs_a = aws_cluster.client(a, "sqs")
    url = sqs_a.create_queue(QueueName="orders")["QueueUrl"]
    # every node knows the queue, whichever node created it
    for i in IDS:
        assert aws_cluster.client(i, "sqs").get_queue_url(QueueName="orders")["QueueUrl"]
    sqs_b = aws_cluster.client(b, "sqs")
    sent = [f"m{i}" for i in range(30)]
    for i in range(0, 30, 10):
        out = sqs_b.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(k), "MessageBody": sent[k]} for k in range(i, i + 10)],
        )
        assert len(out["Successful"]) == 10 and not out.get("Failed")
    first = _receive_all(aws_cluster.client(leader, "sqs"), url, 10)
    assert len(first) == 10

    aws_cluster.nodes[leader].kill9()
    new_leader = aws_cluster.wait_leader(among=(a, b))
    # the confirmed messages not yet deleted are all there, through either survivor
    rest = _receive_all(sqs_a, url, 20)
    assert sorted(first + rest) == sorted(sent)
    # and the survivors carry on
    sqs_b.send_message(QueueUrl=url, MessageBody="after")
    assert _receive_all(aws_cluster.client(new_leader, "sqs"), url, 1) == ["after"]


def test_event_rules_run_on_the_new_leader(aws_cluster: AwsCluster) -> None:
    leader = aws_cluster.wait_leader()
    a, b = [i for i in IDS if i != leader]
    sqs = aws_cluster.client(a, "sqs")
    url = sqs.create_queue(QueueName="events-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events_b = aws_cluster.client(b, "events")
    events_b.put_rule(Name="orders", EventPattern=json.dumps({"source": ["shop"]}))
    events_b.put_targets(Rule="orders", Targets=[{"Id": "q", "Arn": arn}])
    sns = aws_cluster.client(a, "sns")
    topic = sns.create_topic(Name="fanout")["TopicArn"]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )

    def put(client: Any, n: int) -> None:
        out = client.put_events(
            Entries=[
                {"Source": "shop", "DetailType": "order", "Detail": json.dumps({"n": n})},
                {"Source": "other", "DetailType": "order", "Detail": json.dumps({"n": -n})},
            ]
        )
        assert out["FailedEntryCount"] == 0

    put(aws_cluster.client(leader, "events"), 1)
    put(aws_cluster.client(a, "events"), 2)
    sns.publish(TopicArn=topic, Message="via-sns")
    got = _receive_all(sqs, url, 3)
    assert sorted(_details(got)) == [1, 2] and "via-sns" in got

    aws_cluster.nodes[leader].kill9()
    aws_cluster.wait_leader(among=(a, b))
    put(events_b, 3)
    aws_cluster.client(b, "sns").publish(TopicArn=topic, Message="via-sns-2")
    got = _receive_all(sqs, url, 2)
    assert _details(got) == [3] and "via-sns-2" in got and len(got) == 2


def _details(bodies: list[str]) -> list[int]:
    """The ``detail.n`` of the EventBridge events among ``bodies`` (SNS raw bodies skipped)."""
    return [json.loads(b)["detail"]["n"] for b in bodies if b.startswith("{")]


def test_requests_to_a_minority_node_fail_with_503(aws_cluster: AwsCluster) -> None:
    leader = aws_cluster.wait_leader()
    a, b = [i for i in IDS if i != leader]
    with ThreadPoolExecutor(2) as pool:
        for fut in [pool.submit(aws_cluster.nodes[i].kill9) for i in (leader, b)]:
            fut.result()
    node = aws_cluster.nodes[a]
    client = boto3.client(
        "sqs",
        endpoint_url=node.http_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"max_attempts": 1}, read_timeout=30),
    )
    started = time.monotonic()
    with pytest.raises(client.exceptions.ClientError) as info:
        client.list_queues()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert info.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert time.monotonic() - started < 25  # bounded by the route's wait, not a hang
    wait_for("the node to stay up", lambda: node.proc is not None and node.proc.poll() is None)
