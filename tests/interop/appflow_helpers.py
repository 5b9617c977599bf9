"""boto3 clients, fixtures and builders for the AppFlow interop suites (``test_appflow_*.py``).

The broker under test is a polymq process of the suite's own (AppFlow's local connectors read
and write files under its ``appflow_root_dir``, which the test owns), serving the AWS APIs and
AMQP. A test module takes the fixtures by assignment::

    appflow_broker, appflow, sqs, root = (
        appflow_helpers.appflow_broker, appflow_helpers.appflow, appflow_helpers.sqs,
        appflow_helpers.root,
    )

Clients make exactly one attempt per call; every wait (``wait_run``) is bounded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.events_helpers import client
from tests.polymq_process import SQS_LISTENERS, PolymqProcess

WAIT_S = 20.0


def name(prefix: str) -> str:
    return f"pmq-{prefix}-{uuid.uuid4().hex[:8]}"


def start_broker(tmp: Path) -> tuple[PolymqProcess, Path]:
    """A polymq process whose AppFlow root is ``tmp/root``."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    conf = tmp / "polymq.toml"
    conf.write_text(f"appflow_root_dir = {json.dumps(str(root))}\n")
    broker = PolymqProcess(
        tmp / "data", extra_args=("--config", str(conf)), listeners=SQS_LISTENERS
    )
    broker.start()
    return broker, root


@pytest.fixture(scope="module")
def appflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolymqProcess, Path]]:
    broker, root = start_broker(tmp_path_factory.mktemp("polymq-appflow"))
    try:
        yield broker, root
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def appflow_broker(appflow_env: tuple[PolymqProcess, Path]) -> PolymqProcess:
    return appflow_env[0]


@pytest.fixture(scope="module")
def root(appflow_env: tuple[PolymqProcess, Path]) -> Path:
    return appflow_env[1]


@pytest.fixture(scope="module")
def appflow(appflow_broker: PolymqProcess) -> Any:
    return client("appflow", appflow_broker.http_url)


@pytest.fixture(scope="module")
def sqs(appflow_broker: PolymqProcess) -> Any:
    return client("sqs", appflow_broker.http_url)


# -- builders -----------------------------------------------------------------------------------


def custom_profile(
    appflow: Any,
    label: str,
    props: dict[str, str] | None = None,
    credentials: dict[str, Any] | None = None,
) -> str:
    """A new connector profile for one of polymq's custom connectors; its name."""
    profile = name(label.split("-")[1])
    config: dict[str, Any] = {
        "connectorProfileProperties": {"CustomConnector": {"profileProperties": props or {}}}
    }
    if credentials is not None:
        config["connectorProfileCredentials"] = {"CustomConnector": credentials}
    appflow.create_connector_profile(
        connectorProfileName=profile,
        connectorType="CustomConnector",
        connectorLabel=label,
        connectionMode="Public",
        connectorProfileConfig=config,
    )
    return profile


def s3_source(bucket: str, file_type: str = "CSV", prefix: str = "") -> dict[str, Any]:
    props: dict[str, Any] = {
        "bucketName": bucket,
        "s3InputFormatConfig": {"s3InputFileType": file_type},
    }
    if prefix:
        props["bucketPrefix"] = prefix
    return {"connectorType": "S3", "sourceConnectorProperties": {"S3": props}}


def s3_destination(
    bucket: str,
    file_type: str = "JSON",
    aggregation: str = "SingleFile",
    prefix_config: dict[str, str] | None = None,
) -> dict[str, Any]:
    fmt: dict[str, Any] = {
        "fileType": file_type,
        "aggregationConfig": {"aggregationType": aggregation},
    }
    if prefix_config:
        fmt["prefixConfig"] = prefix_config
    return {
        "connectorType": "S3",
        "destinationConnectorProperties": {
            "S3": {"bucketName": bucket, "s3OutputFormatConfig": fmt}
        },
    }


def custom_source(
    profile: str, entity: str, custom: dict[str, str] | None = None, watermark: str | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {"entityName": entity}
    if custom:
        props["customProperties"] = custom
    out: dict[str, Any] = {
        "connectorType": "CustomConnector",
        "connectorProfileName": profile,
        "sourceConnectorProperties": {"CustomConnector": props},
    }
    if watermark:
        out["incrementalPullConfig"] = {"datetimeTypeFieldName": watermark}
    return out


def custom_destination(
    profile: str, entity: str, op: str | None = None, ids: list[str] | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {"entityName": entity}
    if op:
        props["writeOperationType"] = op
    if ids:
        props["idFieldNames"] = ids
    return {
        "connectorType": "CustomConnector",
        "connectorProfileName": profile,
        "destinationConnectorProperties": {"CustomConnector": props},
    }


def task(
    kind: str,
    fields: list[str],
    op: str = "NO_OP",
    dest: str | None = None,
    key: str = "S3",
    **props: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {"taskType": kind, "sourceFields": fields, "connectorOperator": {key: op}}
    if dest is not None:
        out["destinationField"] = dest
    if props:
        out["taskProperties"] = props
    return out


def on_demand() -> dict[str, Any]:
    return {"triggerType": "OnDemand"}


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# -- waits --------------------------------------------------------------------------------------


def wait_run(
    appflow: Any,
    flow: str,
    execution_id: str | None = None,
    *,
    count: int = 1,
    timeout: float = WAIT_S,
) -> dict[str, Any]:
    """The execution record of ``execution_id`` (or the newest, once the flow has ``count``
    runs) once it is no longer InProgress."""
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = appflow.describe_flow_execution_records(flowName=flow)["flowExecutions"]
        found = [r for r in runs if execution_id is None or r["executionId"] == execution_id]
        if (
            found
            and len(runs) >= count
            and found[0]["executionStatus"]
            not in (
                "InProgress",
                "CancelStarted",
            )
        ):
            return dict(found[0])
        time.sleep(0.05)
    raise AssertionError(f"flow {flow}: no finished run within {timeout} s: {runs}")


def run_now(appflow: Any, flow: str) -> dict[str, Any]:
    """StartFlow an on-demand flow and wait for its run to finish."""
    eid = appflow.start_flow(flowName=flow)["executionId"]
    return wait_run(appflow, flow, eid)


def error_of(exc: Any) -> tuple[str, str]:
    err = exc.response["Error"]
    return err["Code"], err["Message"]
