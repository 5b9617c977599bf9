"""boto3 clients, fixtures and checks for the Step Functions interop suites
(``test_stepfunctions*.py``).

The endpoint under test is a polymq process of the suite's own serving the AWS APIs (Step
Functions shares the endpoint with SQS, SNS and EventBridge, which its tasks call in process).
A test module takes the fixtures by assignment::

    sfn_broker, sfn, sqs = sfn_helpers.sfn_broker, sfn_helpers.sfn, sfn_helpers.sqs

Clients make exactly one attempt per call. Every wait is bounded (``WAIT_S``) and polls the
API; nothing sleeps for readiness.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.interop.sqs_helpers import ACCESS_KEY, REGION, SECRET_KEY
from tests.polymq_process import PolymqProcess

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/polymq-sfn"
WAIT_S = 15.0
POLL_S = 0.05


def name(prefix: str) -> str:
    return f"pmq-{prefix}-{uuid.uuid4().hex[:10]}"


def client(service: str, endpoint: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    # GetActivityTask long-polls for 60 s: the read timeout must outlast it. StartSyncExecution
    # and TestState are modelled with the host prefix "sync-" (sync-states.REGION...), which a
    # local endpoint cannot take: the prefix is not injected.
    config = Config(
        retries={"max_attempts": 1, "mode": "standard"}, read_timeout=75, inject_host_prefix=False
    )
    return session.client(service, endpoint_url=endpoint, config=config)


def start_polymq(tmp: Path, extra_args: tuple[str, ...] = ()) -> PolymqProcess:
    broker = PolymqProcess(tmp / "data", extra_args=extra_args, listeners=("http",))
    broker.start()
    return broker


@pytest.fixture(scope="module")
def sfn_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    broker = start_polymq(tmp_path_factory.mktemp("polymq-sfn"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def sfn(sfn_broker: PolymqProcess) -> Any:
    return client("stepfunctions", sfn_broker.http_url)


@pytest.fixture(scope="module")
def sqs(sfn_broker: PolymqProcess) -> Any:
    return client("sqs", sfn_broker.http_url)


@pytest.fixture(scope="module")
def events(sfn_broker: PolymqProcess) -> Any:
    return client("events", sfn_broker.http_url)


@pytest.fixture(scope="module")
def sns(sfn_broker: PolymqProcess) -> Any:
    return client("sns", sfn_broker.http_url)


def machine(
    sfn: Any, definition: dict[str, Any], *, kind: str = "STANDARD", prefix: str = "sm"
) -> str:
    """A fresh state machine; its ARN."""
    arn: str = sfn.create_state_machine(
        name=name(prefix), definition=json.dumps(definition), roleArn=ROLE, type=kind
    )["stateMachineArn"]
    return arn


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(POLL_S)


def wait_done(sfn: Any, arn: str, timeout: float = WAIT_S) -> dict[str, Any]:
    """DescribeExecution once the execution has ended."""

    def done() -> dict[str, Any] | None:
        out: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        return out if out["status"] != "RUNNING" else None

    result: dict[str, Any] = wait_until(done, f"end of {arn}", timeout)
    return result


def run(sfn: Any, arn: str, value: Any = None, timeout: float = WAIT_S) -> dict[str, Any]:
    """Start an execution of ``arn`` with ``value`` and wait for its end."""
    kwargs = {} if value is None else {"input": json.dumps(value)}
    execution = sfn.start_execution(stateMachineArn=arn, **kwargs)["executionArn"]
    return wait_done(sfn, execution, timeout)


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


def expect_error(call: Any, code: str, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err: dict[str, Any] = info.value.response["Error"]
    assert err["Code"] == code, info.value.response
    return err
