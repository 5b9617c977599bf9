"""Standard executions survive ``kill -9`` of a single node: an execution in a Wait state goes
on after the restart and ends when its (absolute) due time has passed, with the history it
would have had; a callback task's token handed out before the crash still completes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.interop.sfn_helpers import (
    client,
    history,
    machine,
    name,
    start_polymq,
    wait_done,
    wait_until,
)


def test_execution_survives_kill9_mid_wait_and_callback(tmp_path: Path) -> None:
    broker = start_polymq(tmp_path)
    try:
        sfn, sqs = client("stepfunctions", broker.http_url), client("sqs", broker.http_url)
        url = sqs.create_queue(QueueName=name("cb"))["QueueUrl"]
        waiting = machine(
            sfn,
            {
                "StartAt": "Before",
                "States": {
                    "Before": {
                        "Type": "Pass",
                        "Result": {"step": 1},
                        "ResultPath": "$.before",
                        "Next": "Wait",
                    },
                    "Wait": {"Type": "Wait", "Seconds": 2, "Next": "After"},
                    "After": {
                        "Type": "Pass",
                        "Result": {"step": 2},
                        "ResultPath": "$.after",
                        "End": True,
                    },
                },
            },
        )
        asking = machine(
            sfn,
            {
                "StartAt": "Ask",
                "States": {
                    "Ask": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                        "Parameters": {"QueueUrl": url, "MessageBody.$": "$$.Task.Token"},
                        "End": True,
                    }
                },
            },
        )
        wait_arn = sfn.start_execution(stateMachineArn=waiting, input=json.dumps({"id": 9}))[
            "executionArn"
        ]
        ask_arn = sfn.start_execution(stateMachineArn=asking)["executionArn"]

        def token() -> Any:
            got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            return got[0]["Body"] if got else None

        task_token = wait_until(token, "the callback message")
        assert sfn.describe_execution(executionArn=wait_arn)["status"] == "RUNNING"
        broker.kill9()
        broker.restart()
        sfn = client("stepfunctions", broker.http_url)
        out = wait_done(sfn, wait_arn)
        assert out["status"] == "SUCCEEDED"
        assert json.loads(out["output"]) == {"id": 9, "before": {"step": 1}, "after": {"step": 2}}
        kinds = [e["type"] for e in history(sfn, wait_arn)]
        assert kinds == [
            "ExecutionStarted", "PassStateEntered", "PassStateExited", "WaitStateEntered",
            "WaitStateExited", "PassStateEntered", "PassStateExited", "ExecutionSucceeded",
        ]  # fmt: skip
        assert sfn.describe_execution(executionArn=ask_arn)["status"] == "RUNNING"
        sfn.send_task_success(taskToken=task_token, output=json.dumps({"ok": True}))
        done = wait_done(sfn, ask_arn)
        assert json.loads(done["output"]) == {"ok": True}
    finally:
        broker.stop()
