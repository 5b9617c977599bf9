"""Step Functions on a real 3-node cluster: every node's AWS endpoint serves it (followers relay
to the leader, where the execution driver runs), and a Standard execution in a Wait state
survives kill -9 of the leader: the new leader rebuilds it from the replicated journal and
finishes it when the wait's absolute due time has passed.

Driven by boto3 against each node's own endpoint; every wait has a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.cluster.test_aws_cluster import AwsCluster
from tests.cluster.test_cluster import IDS, wait_for

ROLE = "arn:aws:iam::000000000000:role/polymq-sfn"
DONE_WAIT_S = 40.0


def sfn_client(cluster: AwsCluster, node_id: str) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=cluster.nodes[node_id].http_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(
            retries={"max_attempts": 8, "mode": "standard"},
            read_timeout=30,
            inject_host_prefix=False,
        ),
    )


@pytest.fixture
def aws_cluster(tmp_path: Path) -> Iterator[AwsCluster]:
    c = AwsCluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_wait_survives_a_leader_kill(aws_cluster: AwsCluster) -> None:
    leader = aws_cluster.wait_leader()
    follower, other = [i for i in IDS if i != leader]
    sfn = sfn_client(aws_cluster, follower)
    arn = sfn.create_state_machine(
        name="waiter",
        roleArn=ROLE,
        definition=json.dumps(
            {
                "StartAt": "Before",
                "States": {
                    "Before": {
                        "Type": "Pass",
                        "Result": 1,
                        "ResultPath": "$.before",
                        "Next": "Wait",
                    },
                    "Wait": {"Type": "Wait", "Seconds": 3, "Next": "After"},
                    "After": {"Type": "Pass", "Result": 2, "ResultPath": "$.after", "End": True},
                },
            }
        ),
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"id": 1}))[
        "executionArn"
    ]

    def entered_wait() -> bool:
        events = sfn.get_execution_history(executionArn=execution)["events"]
        return "WaitStateEntered" in [e["type"] for e in events]

    wait_for("the execution in its Wait state", entered_wait)
    aws_cluster.nodes[leader].kill9()
    aws_cluster.wait_leader(among=(follower, other))
    survivor = sfn_client(aws_cluster, other)

    def finished() -> dict[str, Any] | None:
        out: dict[str, Any] = survivor.describe_execution(executionArn=execution)
        return out if out["status"] != "RUNNING" else None

    out = wait_for("the end of the execution on the new leader", finished, DONE_WAIT_S)
    assert out["status"] == "SUCCEEDED", out
    assert json.loads(out["output"]) == {"id": 1, "before": 1, "after": 2}
    kinds = [e["type"] for e in survivor.get_execution_history(executionArn=execution)["events"]]
    assert kinds[-3:] == ["PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    assert kinds.count("WaitStateExited") == 1
