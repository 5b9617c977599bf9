"""Step Functions through boto3 against a real polymq process: every API operation and its
errors, Standard and Express executions, histories, activities, callbacks through SQS, the
SQS/SNS/EventBridge/HTTP/Lambda task integrations, status-change events on the default bus and
an EventBridge rule starting an execution."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.interop import sfn_helpers
from tests.interop.sfn_helpers import (
    ACCOUNT,
    ROLE,
    expect_error,
    history,
    machine,
    name,
    run,
    start_polymq,
    wait_done,
    wait_until,
)
from tests.interop.sqs_helpers import REGION
from tests.polymq_process import PolymqProcess

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
LAMBDA_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:double"


class _Handler(BaseHTTPRequestHandler):
    """The stand-in for a Lambda function and an HTTP API: POST /double doubles ``n``,
    /fail answers a Lambda-style error, anything else echoes the request."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/double":
            self._reply(200, {"n": body["n"] * 2})
        elif self.path == "/fail":
            self._reply(500, {"errorType": "ValueError", "errorMessage": "bad n"})
        else:
            self._reply(200, {"path": self.path, "body": body, "h": self.headers.get("x-h")})

    do_PUT = do_POST  # noqa: N815

    def do_GET(self) -> None:  # noqa: N802
        status = 404 if self.path.startswith("/missing") else 200
        self._reply(status, {"path": self.path})

    def _reply(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sfn_broker(tmp_path_factory: pytest.TempPathFactory, web: str) -> Iterator[PolymqProcess]:
    endpoints = f"{LAMBDA_ARN}={web}/double,{LAMBDA_ARN}-fails={web}/fail"
    tmp = tmp_path_factory.mktemp("polymq-sfn-api")
    config = tmp / "polymq.toml"
    config.write_text(f"sfn_lambda_endpoints = {json.dumps(endpoints)}\n")
    broker = start_polymq(tmp, ("--config", str(config)))
    try:
        yield broker
    finally:
        broker.stop()


sfn, sqs, events, sns = sfn_helpers.sfn, sfn_helpers.sqs, sfn_helpers.events, sfn_helpers.sns


def new_queue(sqs: Any) -> tuple[str, str]:
    qname = name("q")
    url: str = sqs.create_queue(QueueName=qname)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{qname}"


def receive(sqs: Any, url: str, n: int = 1) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + sfn_helpers.WAIT_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} messages"
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in reply.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


# -- state machines ----------------------------------------------------------------------------


def test_state_machine_lifecycle(sfn: Any) -> None:
    sm_name = name("life")
    definition = json.dumps(PASS)
    created = sfn.create_state_machine(name=sm_name, definition=definition, roleArn=ROLE)
    arn = created["stateMachineArn"]
    assert arn == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{sm_name}"
    # the same request again is idempotent; a different one is refused
    again = sfn.create_state_machine(name=sm_name, definition=definition, roleArn=ROLE)
    assert again["stateMachineArn"] == arn
    expect_error(
        sfn.create_state_machine,
        "StateMachineAlreadyExists",
        name=sm_name,
        definition=json.dumps({**PASS, "Comment": "other"}),
        roleArn=ROLE,
    )
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert (described["name"], described["status"], described["type"]) == (
        sm_name,
        "ACTIVE",
        "STANDARD",
    )
    assert json.loads(described["definition"]) == PASS
    assert described["roleArn"] == ROLE
    listed = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    assert arn in listed
    updated = sfn.update_state_machine(
        stateMachineArn=arn, definition=json.dumps({**PASS, "Comment": "v2"})
    )
    assert updated["revisionId"] != described["revisionId"]
    assert sfn.describe_state_machine(stateMachineArn=arn)["description"] == "v2"
    expect_error(sfn.update_state_machine, "MissingRequiredParameter", stateMachineArn=arn)
    sfn.delete_state_machine(stateMachineArn=arn)
    expect_error(sfn.describe_state_machine, "StateMachineDoesNotExist", stateMachineArn=arn)


def test_state_machine_errors(sfn: Any) -> None:
    err = expect_error(
        sfn.create_state_machine,
        "InvalidDefinition",
        name=name("bad"),
        roleArn=ROLE,
        definition=json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}
        ),
    )
    assert err["Message"] == (
        "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: "
        "Nowhere at /States/A/Next'"
    )
    err = expect_error(
        sfn.create_state_machine,
        "InvalidDefinition",
        name=name("bad"),
        roleArn=ROLE,
        definition="{not json",
    )
    assert "INVALID_JSON_DESCRIPTION" in err["Message"]
    expect_error(
        sfn.create_state_machine,
        "InvalidName",
        name="has space",
        roleArn=ROLE,
        definition=json.dumps(PASS),
    )
    expect_error(
        sfn.create_state_machine,
        "InvalidArn",
        name=name("x"),
        roleArn="role",
        definition=json.dumps(PASS),
    )
    expect_error(
        sfn.describe_state_machine,
        "InvalidArn",
        stateMachineArn="arn:aws:sqs:us-east-1:000000000000:q",
    )
    expect_error(
        sfn.describe_state_machine,
        "StateMachineDoesNotExist",
        stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name('none')}",
    )
    expect_error(sfn.list_state_machines, "InvalidToken", nextToken="%%%")


def test_validate_state_machine_definition(sfn: Any) -> None:
    ok = sfn.validate_state_machine_definition(definition=json.dumps(PASS))
    assert (ok["result"], ok["diagnostics"]) == ("OK", [])
    bad = sfn.validate_state_machine_definition(
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": True}}})
    )
    assert bad["result"] == "FAIL"
    assert bad["diagnostics"][0]["code"] == "SCHEMA_VALIDATION_FAILED"
    assert bad["diagnostics"][0]["location"] == "/States/A"


def test_tags(sfn: Any) -> None:
    arn = machine(sfn, PASS)
    sfn.tag_resource(
        resourceArn=arn, tags=[{"key": "team", "value": "a"}, {"key": "env", "value": "dev"}]
    )
    sfn.untag_resource(resourceArn=arn, tagKeys=["env"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]
    expect_error(
        sfn.tag_resource,
        "TooManyTags",
        resourceArn=arn,
        tags=[{"key": f"k{i}", "value": "v"} for i in range(51)],
    )
    gone = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name('none')}"
    expect_error(sfn.list_tags_for_resource, "ResourceNotFound", resourceArn=gone)
    expect_error(sfn.list_tags_for_resource, "InvalidArn", resourceArn="nope")


# -- executions ----------------------------------------------------------------------------------


def test_execution_describe_list_history(sfn: Any) -> None:
    arn = machine(
        sfn,
        {
            "StartAt": "A",
            "States": {
                "A": {
                    "Type": "Pass",
                    "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"},
                    "ResultPath": "$.calc",
                    "Next": "M",
                },
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "End": True}},
                    },
                    "ResultPath": "$.mapped",
                    "Next": "W",
                },
                "W": {"Type": "Wait", "Seconds": 1, "End": True},
            },
        },
    )
    start = sfn.start_execution(
        stateMachineArn=arn, name="run-1", input=json.dumps({"n": 2, "items": [1, 2]})
    )
    exec_arn = start["executionArn"]
    assert exec_arn.endswith(":execution:" + arn.split(":")[-1] + ":run-1")
    # same name and input while running: the same execution; other input: refused
    assert (
        sfn.start_execution(
            stateMachineArn=arn, name="run-1", input=json.dumps({"n": 2, "items": [1, 2]})
        )["executionArn"]
        == exec_arn
    )
    expect_error(
        sfn.start_execution, "ExecutionAlreadyExists", stateMachineArn=arn, name="run-1", input="{}"
    )
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
    assert [e["executionArn"] for e in running] == [exec_arn]
    out = wait_done(sfn, exec_arn)
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"]) == {
        "n": 2,
        "items": [1, 2],
        "calc": {"doubled": 4},
        "mapped": [1, 2],
    }
    assert out["stopDate"] >= out["startDate"]
    events = history(sfn, exec_arn)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"
    for kind in (
        "PassStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "MapIterationSucceeded",
        "WaitStateEntered",
        "WaitStateExited",
    ):
        assert kind in kinds
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[1]["previousEventId"] == 1
    reverse = sfn.get_execution_history(executionArn=exec_arn, reverseOrder=True, maxResults=2)
    assert [e["type"] for e in reverse["events"]] == ["ExecutionSucceeded", "WaitStateExited"]
    assert "nextToken" in reverse
    lean = sfn.get_execution_history(executionArn=exec_arn, includeExecutionData=False)["events"]
    assert "input" not in lean[0]["executionStartedEventDetails"]
    assert (
        sfn.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"][0][
            "executionArn"
        ]
        == exec_arn
    )
    described = sfn.describe_state_machine_for_execution(executionArn=exec_arn)
    assert described["stateMachineArn"] == arn


def test_execution_errors(sfn: Any) -> None:
    arn = machine(sfn, PASS)
    expect_error(sfn.start_execution, "InvalidExecutionInput", stateMachineArn=arn, input="{nope")
    expect_error(sfn.start_execution, "InvalidName", stateMachineArn=arn, name="a/b")
    missing = arn.replace(":stateMachine:", ":execution:") + ":nobody"
    expect_error(sfn.describe_execution, "ExecutionDoesNotExist", executionArn=missing)
    expect_error(sfn.get_execution_history, "ExecutionDoesNotExist", executionArn=missing)
    expect_error(sfn.stop_execution, "ExecutionDoesNotExist", executionArn=missing)
    expect_error(
        sfn.describe_execution,
        "InvalidArn",
        executionArn="arn:aws:states:us-east-1:000000000000:activity:x",
    )
    expect_error(sfn.start_sync_execution, "StateMachineTypeNotSupported", stateMachineArn=arn)
    expect_error(
        sfn.list_executions,
        "StateMachineDoesNotExist",
        stateMachineArn=arn.replace(arn.split(":")[-1], name("none")),
    )


def test_failed_execution_and_redrive(sfn: Any, sqs: Any) -> None:
    qname = name("later")
    arn = machine(
        sfn,
        {
            "StartAt": "Send",
            "States": {
                "Send": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sqs:getQueueUrl",
                    "Parameters": {"QueueName": qname},
                    "End": True,
                }
            },
        },
    )
    out = run(sfn, arn)
    assert (out["status"], out["error"]) == ("FAILED", "Sqs.QueueDoesNotExistException")
    assert out["redriveStatus"] == "REDRIVABLE"
    sqs.create_queue(QueueName=qname)
    sfn.redrive_execution(executionArn=out["executionArn"])
    again = wait_done(sfn, out["executionArn"])
    assert again["status"] == "SUCCEEDED" and again["redriveCount"] == 1
    assert json.loads(again["output"])["QueueUrl"].endswith("/" + qname)
    assert "ExecutionRedriven" in [e["type"] for e in history(sfn, out["executionArn"])]
    expect_error(sfn.redrive_execution, "ExecutionNotRedrivable", executionArn=out["executionArn"])


def test_stop_execution(sfn: Any) -> None:
    arn = machine(
        sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
    )
    exec_arn = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    stopped = sfn.stop_execution(executionArn=exec_arn, error="Manual", cause="test")
    assert stopped["stopDate"]
    out = sfn.describe_execution(executionArn=exec_arn)
    assert (out["status"], out["error"], out["cause"]) == ("ABORTED", "Manual", "test")
    assert [e["type"] for e in history(sfn, exec_arn)][-1] == "ExecutionAborted"


def test_express_sync_and_async(sfn: Any) -> None:
    arn = machine(
        sfn,
        {
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {
                "A": {
                    "Type": "Pass",
                    "Output": {"sum": "{% $sum($states.input.xs) %}"},
                    "End": True,
                }
            },
        },
        kind="EXPRESS",
    )
    out = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"xs": [1, 2, 3]}))
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"sum": 6}
    assert ":express:" in out["executionArn"]
    assert out["billingDetails"]["billedDurationInMilliseconds"] >= 100
    failing = machine(
        sfn,
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}},
        kind="EXPRESS",
    )
    out = sfn.start_sync_execution(stateMachineArn=failing)
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", "E", "c")
    started = sfn.start_execution(stateMachineArn=arn, input="{}")
    assert ":express:" in started["executionArn"]
    expect_error(sfn.list_executions, "StateMachineTypeNotSupported", stateMachineArn=arn)


def test_test_state(sfn: Any) -> None:
    out = sfn.test_state(
        definition=json.dumps(
            {"Type": "Pass", "Parameters": {"v.$": "$.a"}, "ResultPath": "$.r", "Next": "Done"}
        ),
        roleArn=ROLE,
        input=json.dumps({"a": 1}),
        inspectionLevel="DEBUG",
    )
    assert (out["status"], out["nextState"]) == ("SUCCEEDED", "Done")
    assert json.loads(out["output"]) == {"a": 1, "r": {"v": 1}}
    assert json.loads(out["inspectionData"]["afterParameters"]) == {"v": 1}
    caught = sfn.test_state(
        definition=json.dumps(
            {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "End": True,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
            }
        ),
        roleArn=ROLE,
        input="{}",
        mock={"errorOutput": {"error": "Boom", "cause": "x"}},
    )
    assert (caught["status"], caught["error"], caught["nextState"]) == ("CAUGHT_ERROR", "Boom", "H")
    mocked = sfn.test_state(
        definition=json.dumps(
            {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "ResultSelector": {"id.$": "$.MessageId"},
                "End": True,
            }
        ),
        roleArn=ROLE,
        input="{}",
        mock={"result": json.dumps({"MessageId": "m-1"})},
    )
    assert json.loads(mocked["output"]) == {"id": "m-1"}
    expect_error(
        sfn.test_state, "InvalidDefinition", definition=json.dumps({"Type": "Nope"}), roleArn=ROLE
    )


# -- activities and callbacks ------------------------------------------------------------------


def test_activity_worker(sfn: Any) -> None:
    act_name = name("act")
    act = sfn.create_activity(name=act_name)["activityArn"]
    assert sfn.create_activity(name=act_name)["activityArn"] == act
    assert sfn.describe_activity(activityArn=act)["name"] == act_name
    assert act in [a["activityArn"] for a in sfn.list_activities()["activities"]]
    arn = machine(
        sfn,
        {
            "StartAt": "Work",
            "States": {
                "Work": {"Type": "Task", "Resource": act, "HeartbeatSeconds": 30, "End": True}
            },
        },
    )
    exec_arn = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"job": 7}))[
        "executionArn"
    ]
    task = sfn.get_activity_task(activityArn=act, workerName="w1")
    assert json.loads(task["input"]) == {"job": 7}
    sfn.send_task_heartbeat(taskToken=task["taskToken"])
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"done": 7}))
    out = wait_done(sfn, exec_arn)
    assert json.loads(out["output"]) == {"done": 7}
    kinds = [e["type"] for e in history(sfn, exec_arn)]
    assert kinds[2:5] == ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"]
    expect_error(sfn.send_task_success, "TaskTimedOut", taskToken=task["taskToken"], output="{}")
    expect_error(sfn.send_task_success, "InvalidToken", taskToken="garbage", output="{}")
    expect_error(sfn.send_task_success, "InvalidOutput", taskToken=task["taskToken"], output="{bad")
    # a failing worker
    exec_arn = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    task = sfn.get_activity_task(activityArn=act)
    sfn.send_task_failure(taskToken=task["taskToken"], error="WorkerError", cause="it broke")
    out = wait_done(sfn, exec_arn)
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", "WorkerError", "it broke")
    sfn.delete_activity(activityArn=act)
    expect_error(sfn.describe_activity, "ActivityDoesNotExist", activityArn=act)
    expect_error(sfn.get_activity_task, "ActivityDoesNotExist", activityArn=act)


def test_callback_through_sqs(sfn: Any, sqs: Any) -> None:
    url, _qarn = new_queue(sqs)
    arn = machine(
        sfn,
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": url,
                        "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"},
                    },
                    "ResultPath": "$.answer",
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
            },
        },
    )
    exec_arn = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 42}))[
        "executionArn"
    ]
    [message] = receive(sqs, url)
    body = json.loads(message["Body"])
    assert body["order"] == 42
    assert sfn.describe_execution(executionArn=exec_arn)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=body["token"], output=json.dumps({"approved": True}))
    out = wait_done(sfn, exec_arn)
    assert json.loads(out["output"]) == {"order": 42, "answer": {"approved": True}}
    kinds = [e["type"] for e in history(sfn, exec_arn)]
    assert kinds.index("TaskSubmitted") < kinds.index("TaskSucceeded")
    expect_error(sfn.send_task_success, "TaskTimedOut", taskToken=body["token"], output="{}")


def test_callback_heartbeat_timeout(sfn: Any, sqs: Any) -> None:
    url, _ = new_queue(sqs)
    arn = machine(
        sfn,
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "HeartbeatSeconds": 1,
                    "Parameters": {"QueueUrl": url, "MessageBody.$": "$$.Task.Token"},
                    "End": True,
                }
            },
        },
    )
    exec_arn = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    out = wait_done(sfn, exec_arn)
    assert (out["status"], out["error"]) == ("FAILED", "States.HeartbeatTimeout")


# -- integrations --------------------------------------------------------------------------------


def test_sns_publish_and_sdk_calls(sfn: Any, sqs: Any, sns: Any) -> None:
    url, qarn = new_queue(sqs)
    topic = sns.create_topic(Name=name("t"))["TopicArn"]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"}
    )
    arn = machine(
        sfn,
        {
            "StartAt": "Publish",
            "States": {
                "Publish": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sns:publish",
                    "Parameters": {"TopicArn": topic, "Message": {"hello.$": "$.who"}},
                    "ResultPath": "$.pub",
                    "Next": "Count",
                },
                "Count": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sqs:getQueueAttributes",
                    "Parameters": {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
                    "ResultSelector": {"arn.$": "$.Attributes.QueueArn"},
                    "Next": "Missing",
                },
                "Missing": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sns:getTopicAttributes",
                    "Parameters": {"TopicArn": topic + "-nope"},
                    "Catch": [
                        {
                            "ErrorEquals": ["Sns.NotFoundException"],
                            "ResultPath": "$.err",
                            "Next": "Done",
                        }
                    ],
                    "End": True,
                },
                "Done": {"Type": "Pass", "End": True},
            },
        },
    )
    out = run(sfn, arn, {"who": "world"})
    assert out["status"] == "SUCCEEDED", out
    result = json.loads(out["output"])
    assert result["arn"] == qarn and result["err"]["Error"] == "Sns.NotFoundException"
    [message] = receive(sqs, url)
    assert json.loads(message["Body"]) == {"hello": "world"}


def test_events_put_events_task(sfn: Any, sqs: Any, events: Any) -> None:
    url, qarn = new_queue(sqs)
    source = name("src").replace("-", ".")
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": qarn}])
    arn = machine(
        sfn,
        {
            "StartAt": "Put",
            "States": {
                "Put": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::events:putEvents",
                    "Parameters": {
                        "Entries": [{"Source": source, "DetailType": "t", "Detail": {"n.$": "$.n"}}]
                    },
                    "End": True,
                }
            },
        },
    )
    out = run(sfn, arn, {"n": 5})
    assert json.loads(out["output"])["FailedEntryCount"] == 0
    [message] = receive(sqs, url)
    assert json.loads(message["Body"])["detail"] == {"n": 5}


def test_http_and_lambda_tasks(sfn: Any, web: str) -> None:
    arn = machine(
        sfn,
        {
            "StartAt": "Lambda",
            "States": {
                "Lambda": {"Type": "Task", "Resource": LAMBDA_ARN, "Next": "Invoke"},
                "Invoke": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "double", "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "Next": "Http",
                },
                "Http": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {
                        "ApiEndpoint": f"{web}/echo",
                        "Method": "POST",
                        "Headers": {"x-h": "1"},
                        "QueryParameters": {"q": "v"},
                        "RequestBody.$": "$",
                    },
                    "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"},
                    "Next": "Missing",
                },
                "Missing": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {"ApiEndpoint": f"{web}/missing", "Method": "GET"},
                    "Catch": [
                        {
                            "ErrorEquals": ["States.Http.StatusCode.404"],
                            "ResultPath": "$.e",
                            "Next": "Boom",
                        }
                    ],
                    "End": True,
                },
                "Boom": {"Type": "Task", "Resource": LAMBDA_ARN + "-fails", "End": True},
            },
        },
    )
    out = run(sfn, arn, {"n": 3})
    assert (out["status"], out["error"]) == ("FAILED", "ValueError")
    kinds = [e["type"] for e in history(sfn, out["executionArn"])]
    assert "LambdaFunctionScheduled" in kinds and "LambdaFunctionSucceeded" in kinds
    entered = [e for e in history(sfn, out["executionArn"]) if e["type"] == "TaskStateEntered"]
    boom_input = json.loads(entered[-1]["stateEnteredEventDetails"]["input"])
    assert boom_input["status"] == 200
    assert boom_input["body"] == {"path": "/echo?q=v", "body": {"n": 12}, "h": "1"}
    assert boom_input["e"]["Error"] == "States.Http.StatusCode.404"


# -- EventBridge -----------------------------------------------------------------------------------


def test_status_events_and_rule_starting_an_execution(sfn: Any, sqs: Any, events: Any) -> None:
    target = machine(
        sfn,
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$.detail", "End": True}}},
    )
    source = name("src").replace("-", ".")
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "sm", "Arn": target, "RoleArn": ROLE}])
    # status changes of the started execution, read from a queue
    url, qarn = new_queue(sqs)
    watch = name("w")
    events.put_rule(
        Name=watch,
        EventPattern=json.dumps(
            {
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": {"stateMachineArn": [target]},
            }
        ),
    )
    events.put_targets(Rule=watch, Targets=[{"Id": "q", "Arn": qarn}])
    events.put_events(
        Entries=[{"Source": source, "DetailType": "go", "Detail": json.dumps({"k": "v"})}]
    )

    def finished() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = sfn.list_executions(
            stateMachineArn=target, statusFilter="SUCCEEDED"
        )["executions"]
        return items

    [execution] = wait_until(finished, "an execution started by the rule")
    out = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(out["output"]) == {"k": "v"}
    bodies = [json.loads(m["Body"]) for m in receive(sqs, url, 2)]
    assert [b["detail"]["status"] for b in bodies] == ["RUNNING", "SUCCEEDED"]
    assert bodies[1]["detail-type"] == "Step Functions Execution Status Change"
    assert bodies[1]["resources"] == [execution["executionArn"]]
    assert json.loads(bodies[1]["detail"]["output"]) == {"k": "v"}
