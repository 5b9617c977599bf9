"""AppFlow's API over boto3 against a real polymq node: every operation, and the errors a
client gets for invalid definitions (ValidationException with a message saying what is
wrong), missing resources (ResourceNotFoundException), conflicts (ConflictException) and
operations that do not apply (UnsupportedOperationException)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.interop import appflow_helpers as H

appflow_env, appflow_broker, appflow, sqs, root = (
    H.appflow_env,
    H.appflow_broker,
    H.appflow,
    H.sqs,
    H.root,
)

CSV_TASKS = [
    H.task("Filter", ["id", "amount"], "PROJECTION"),
    H.task("Map", ["id"]),
    H.task("Map", ["amount"], DESTINATION_DATA_TYPE="integer"),
]


def csv_flow(appflow: Any, flow: str, bucket: str, out_bucket: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "flowName": flow,
        "triggerConfig": H.on_demand(),
        "sourceFlowConfig": H.s3_source(bucket),
        "destinationFlowConfigList": [H.s3_destination(out_bucket)],
        "tasks": CSV_TASKS,
    }
    args.update(kw)
    return dict(appflow.create_flow(**args))


def expect(exc: pytest.ExceptionInfo[ClientError], code: str, *fragments: str) -> None:
    got_code, message = H.error_of(exc.value)
    assert got_code == code, (got_code, message)
    for fragment in fragments:
        assert fragment in message, message


def test_flow_lifecycle(appflow: Any, root: Path) -> None:
    flow = H.name("life")
    H.write_csv(root / "life-in" / "a.csv", ["id", "amount"], [[1, 10], [2, 20]])
    created = csv_flow(appflow, flow, "life-in", "life-out", description="first", tags={"t": "1"})
    assert created["flowStatus"] == "Active"
    assert created["flowArn"].endswith(f":flow/{flow}")
    described = appflow.describe_flow(flowName=flow)
    assert (described["flowName"], described["description"]) == (flow, "first")
    assert described["tasks"][2]["taskProperties"] == {"DESTINATION_DATA_TYPE": "integer"}
    assert described["sourceFlowConfig"]["sourceConnectorProperties"]["S3"]["bucketName"] == (
        "life-in"
    )
    assert described["tags"] == {"t": "1"} and "lastRunExecutionDetails" not in described

    run = H.run_now(appflow, flow)
    assert run["executionStatus"] == "Successful", run
    assert run["executionResult"]["recordsProcessed"] == 2
    described = appflow.describe_flow(flowName=flow)
    assert described["lastRunExecutionDetails"]["mostRecentExecutionStatus"] == "Successful"

    updated = appflow.update_flow(
        flowName=flow,
        description="second",
        triggerConfig=H.on_demand(),
        sourceFlowConfig=H.s3_source("life-in"),
        destinationFlowConfigList=[H.s3_destination("life-out", "CSV")],
        tasks=CSV_TASKS,
    )
    assert updated["flowStatus"] == "Active"
    described = appflow.describe_flow(flowName=flow)
    assert described["description"] == "second" and described["schemaVersion"] == 2
    fmt = described["destinationFlowConfigList"][0]["destinationConnectorProperties"]["S3"]
    assert fmt["s3OutputFormatConfig"]["fileType"] == "CSV"

    names = [f["flowName"] for f in appflow.list_flows()["flows"]]
    assert flow in names
    appflow.delete_flow(flowName=flow)
    with pytest.raises(ClientError) as exc:
        appflow.describe_flow(flowName=flow)
    expect(exc, "ResourceNotFoundException", flow)
    with pytest.raises(ClientError) as exc:
        appflow.delete_flow(flowName=flow)
    expect(exc, "ResourceNotFoundException")


def test_list_flows_pages(appflow: Any, root: Path) -> None:
    flows = [H.name("page") for _ in range(3)]
    for flow in flows:
        csv_flow(appflow, flow, "page-in", "page-out")
    seen: list[str] = []
    token = None
    while True:
        kw: dict[str, Any] = {"maxResults": 2}
        if token:
            kw["nextToken"] = token
        page = appflow.list_flows(**kw)
        assert len(page["flows"]) <= 2
        seen += [f["flowName"] for f in page["flows"]]
        token = page.get("nextToken")
        if not token:
            break
    assert set(flows) <= set(seen) and len(seen) == len(set(seen))
    listed = {f["flowName"]: f for f in appflow.list_flows()["flows"]}
    row = listed[flows[0]]
    assert (row["sourceConnectorType"], row["destinationConnectorType"]) == ("S3", "S3")
    assert row["triggerType"] == "OnDemand"
    with pytest.raises(ClientError) as exc:
        appflow.list_flows(nextToken="!!!")
    expect(exc, "ValidationException", "nextToken")
    for flow in flows:
        appflow.delete_flow(flowName=flow)


def test_start_and_stop(appflow: Any, root: Path) -> None:
    on_demand = H.name("od")
    csv_flow(appflow, on_demand, "ss-in", "ss-out")
    with pytest.raises(ClientError) as exc:
        appflow.stop_flow(flowName=on_demand)
    expect(exc, "UnsupportedOperationException", "on demand")

    scheduled = H.name("sched")
    created = csv_flow(
        appflow,
        scheduled,
        "ss-in",
        "ss-out",
        triggerConfig={
            "triggerType": "Scheduled",
            "triggerProperties": {
                "Scheduled": {
                    "scheduleExpression": "rate(1days)",
                    "scheduleStartTime": 4_000_000_000,  # far ahead: no run in this test
                }
            },
        },
    )
    assert created["flowStatus"] == "Draft"
    with pytest.raises(ClientError) as exc:
        appflow.stop_flow(flowName=scheduled)
    expect(exc, "ConflictException", "not active")
    started = appflow.start_flow(flowName=scheduled)
    assert started["flowStatus"] == "Active" and "executionId" not in started
    with pytest.raises(ClientError) as exc:
        appflow.start_flow(flowName=scheduled)
    expect(exc, "ConflictException", "already active")
    described = appflow.describe_flow(flowName=scheduled)
    props = described["triggerConfig"]["triggerProperties"]["Scheduled"]
    assert props["scheduleExpression"] == "rate(1days)"
    assert int(props["scheduleStartTime"].timestamp()) == 4_000_000_000
    assert appflow.stop_flow(flowName=scheduled)["flowStatus"] == "Suspended"
    assert appflow.describe_flow(flowName=scheduled)["flowStatus"] == "Suspended"
    with pytest.raises(ClientError) as exc:
        appflow.start_flow(flowName=H.name("missing"))
    expect(exc, "ResourceNotFoundException")
    assert appflow.describe_flow_execution_records(flowName=scheduled)["flowExecutions"] == []
    for flow in (on_demand, scheduled):
        appflow.delete_flow(flowName=flow)


def test_execution_records_and_cancel(appflow: Any, root: Path) -> None:
    flow = H.name("recs")
    H.write_csv(root / "recs-in" / "a.csv", ["id", "amount"], [[1, 1]])
    csv_flow(appflow, flow, "recs-in", "recs-out")
    ids = [H.run_now(appflow, flow)["executionId"] for _ in range(3)]
    page = appflow.describe_flow_execution_records(flowName=flow, maxResults=2)
    assert [r["executionId"] for r in page["flowExecutions"]] == ids[::-1][:2]
    rest = appflow.describe_flow_execution_records(flowName=flow, nextToken=page["nextToken"])
    assert [r["executionId"] for r in rest["flowExecutions"]] == [ids[0]]
    record = rest["flowExecutions"][0]
    assert record["executionResult"]["errorInfo"]["putFailuresCount"] == 0
    assert record["startedAt"] <= record["lastUpdatedAt"]
    cancelled = appflow.cancel_flow_executions(flowName=flow, executionIds=[ids[0], "nope"])
    assert sorted(cancelled["invalidExecutions"]) == sorted([ids[0], "nope"])
    with pytest.raises(ClientError) as exc:
        appflow.describe_flow_execution_records(flowName=H.name("missing"))
    expect(exc, "ResourceNotFoundException")
    appflow.delete_flow(flowName=flow)


def test_connector_profiles(appflow: Any, sqs: Any, root: Path) -> None:
    profile = H.custom_profile(appflow, "polymq-sqs")
    with pytest.raises(ClientError) as exc:
        appflow.create_connector_profile(
            connectorProfileName=profile,
            connectorType="CustomConnector",
            connectorLabel="polymq-sqs",
            connectionMode="Public",
            connectorProfileConfig={"connectorProfileProperties": {}},
        )
    expect(exc, "ConflictException", profile)
    http = H.custom_profile(
        appflow,
        "polymq-http",
        {"baseUrl": "http://127.0.0.1:9/api"},
        {"authenticationType": "APIKEY", "apiKey": {"apiKey": "s3cret"}},
    )
    sql = H.custom_profile(appflow, "polymq-sql", {"database": "profiles.sqlite"})
    details = {
        d["connectorProfileName"]: d
        for d in appflow.describe_connector_profiles(connectorProfileNames=[profile, http, sql])[
            "connectorProfileDetails"
        ]
    }
    assert set(details) == {profile, http, sql}
    assert details[http]["connectorLabel"] == "polymq-http"
    props = details[http]["connectorProfileProperties"]["CustomConnector"]["profileProperties"]
    assert props == {"baseUrl": "http://127.0.0.1:9/api"}
    assert "credentialsArn" in details[http] and "s3cret" not in str(details[http])
    by_label = appflow.describe_connector_profiles(connectorLabel="polymq-sql")
    assert sql in [d["connectorProfileName"] for d in by_label["connectorProfileDetails"]]

    appflow.update_connector_profile(
        connectorProfileName=http,
        connectionMode="Public",
        connectorProfileConfig={
            "connectorProfileProperties": {
                "CustomConnector": {"profileProperties": {"baseUrl": "http://127.0.0.1:9/v2"}}
            }
        },
    )
    detail = appflow.describe_connector_profiles(connectorProfileNames=[http])[
        "connectorProfileDetails"
    ][0]
    assert detail["connectorProfileProperties"]["CustomConnector"]["profileProperties"] == {
        "baseUrl": "http://127.0.0.1:9/v2"
    }

    # a profile in use is kept unless forced
    queue = H.name("q")
    sqs.create_queue(QueueName=queue)
    flow = H.name("uses")
    csv_flow(
        appflow,
        flow,
        "prof-in",
        "prof-out",
        destinationFlowConfigList=[H.custom_destination(profile, queue)],
    )
    with pytest.raises(ClientError) as exc:
        appflow.delete_connector_profile(connectorProfileName=profile)
    expect(exc, "ConflictException", flow)
    appflow.delete_connector_profile(connectorProfileName=profile, forceDelete=True)
    for name in (http, sql):
        appflow.delete_connector_profile(connectorProfileName=name)
    with pytest.raises(ClientError) as exc:
        appflow.delete_connector_profile(connectorProfileName=sql)
    expect(exc, "ResourceNotFoundException")
    run = H.run_now(appflow, flow)  # its profile is gone: the run says so
    assert run["executionStatus"] == "Error"
    assert "Connector profile" in run["executionResult"]["errorInfo"]["executionMessage"]
    appflow.delete_flow(flowName=flow)


@pytest.mark.parametrize(
    ("label", "props", "code", "fragment"),
    [
        ("salesforce", {}, "ValidationException", "connectorLabel 'salesforce'"),
        ("polymq-http", {}, "ValidationException", "baseUrl"),
        (
            "polymq-sql",
            {"databaseUrl": "sqlite:////etc/passwd.db"},
            "ValidationException",
            "not under the AppFlow root",
        ),
        ("polymq-sql", {"databaseUrl": "no such url"}, "ValidationException", "SQLAlchemy URL"),
        (
            "polymq-sql",
            {"database": "no-such-dir/x.sqlite"},
            "ConnectorAuthenticationException",
            "cannot connect",
        ),
    ],
)
def test_connector_profile_refused(
    appflow: Any, label: str, props: dict[str, str], code: str, fragment: str
) -> None:
    with pytest.raises(ClientError) as exc:
        appflow.create_connector_profile(
            connectorProfileName=H.name("bad"),
            connectorType="CustomConnector",
            connectorLabel=label,
            connectionMode="Public",
            connectorProfileConfig={
                "connectorProfileProperties": {"CustomConnector": {"profileProperties": props}}
            },
        )
    expect(exc, code, fragment)


def test_profile_for_builtin_types_refused(appflow: Any) -> None:
    with pytest.raises(ClientError) as exc:
        appflow.create_connector_profile(
            connectorProfileName=H.name("s3"),
            connectorType="S3",
            connectionMode="Public",
            connectorProfileConfig={"connectorProfileProperties": {}},
        )
    expect(exc, "ValidationException", "need no profile")


def test_connectors(appflow: Any) -> None:
    described = appflow.describe_connectors(connectorTypes=["S3", "EventBridge", "CustomConnector"])
    configs = described["connectorConfigurations"]
    assert configs["S3"]["canUseAsSource"] and configs["S3"]["canUseAsDestination"]
    assert not configs["EventBridge"]["canUseAsSource"]
    labels = {c["connectorLabel"] for c in described["connectors"]}
    assert labels == {"polymq-sqs", "polymq-sns", "polymq-http", "polymq-sql"}
    sqs_conf = appflow.describe_connector(
        connectorType="CustomConnector", connectorLabel="polymq-sqs"
    )
    conf = sqs_conf["connectorConfiguration"]
    assert conf["canUseAsSource"] and conf["canUseAsDestination"]
    assert "Event" in conf["supportedTriggerTypes"]
    sns_conf = appflow.describe_connector(
        connectorType="CustomConnector", connectorLabel="polymq-sns"
    )
    assert not sns_conf["connectorConfiguration"]["canUseAsSource"]
    with pytest.raises(ClientError) as exc:
        appflow.describe_connector(connectorType="CustomConnector", connectorLabel="nope")
    expect(exc, "ResourceNotFoundException", "nope")
    with pytest.raises(ClientError) as exc:
        appflow.describe_connector(connectorType="Salesforce")
    expect(exc, "ResourceNotFoundException", "Salesforce")
    listed = appflow.list_connectors(maxResults=2)
    assert len(listed["connectors"]) == 2 and listed["nextToken"]


def test_tags(appflow: Any) -> None:
    flow = H.name("tags")
    arn = csv_flow(appflow, flow, "tag-in", "tag-out", tags={"a": "1"})["flowArn"]
    appflow.tag_resource(resourceArn=arn, tags={"b": "2", "c": "3"})
    assert appflow.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2", "c": "3"}
    appflow.untag_resource(resourceArn=arn, tagKeys=["a", "c"])
    assert appflow.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}
    with pytest.raises(ClientError) as exc:
        appflow.list_tags_for_resource(resourceArn="not-an-arn")
    expect(exc, "ValidationException", "not a valid AppFlow ARN")
    with pytest.raises(ClientError) as exc:
        appflow.tag_resource(resourceArn=arn.replace(flow, H.name("gone")), tags={"x": "y"})
    expect(exc, "ResourceNotFoundException")
    with pytest.raises(ClientError) as exc:
        appflow.tag_resource(resourceArn=arn, tags={"aws:x": "y"})
    expect(exc, "ValidationException", "aws:")
    appflow.delete_flow(flowName=flow)


def sched(expression: str, **more: Any) -> dict[str, Any]:
    return {
        "triggerType": "Scheduled",
        "triggerProperties": {"Scheduled": {"scheduleExpression": expression, **more}},
    }


@pytest.mark.parametrize(
    ("override", "code", "fragment"),
    [
        ({"flowName": "-bad name"}, "ValidationException", "flowName"),
        (
            {"tasks": [H.task("Filter", ["id"], "PROJECTION"), H.task("Map", ["amount"])]},
            "ValidationException",
            "reads field 'amount', which no PROJECTION filter pulls",
        ),
        (
            {"tasks": [H.task("Map", ["id"], "NO_OP", key="Salesforce")]},
            "ValidationException",
            "source connector is S3",
        ),
        (
            {
                "tasks": [
                    H.task("Filter", ["amount"], "GREATER_THAN", DATA_TYPE="integer", VALUE="lots"),
                    H.task("Map_all", []),
                ]
            },
            "ValidationException",
            "VALUE",
        ),
        (
            {
                "sourceFlowConfig": {
                    "connectorType": "Salesforce",
                    "sourceConnectorProperties": {"Salesforce": {"object": "Account"}},
                }
            },
            "ValidationException",
            "Source connector type Salesforce is not available",
        ),
        ({"sourceFlowConfig": H.s3_source("Bad_Bucket!")}, "ValidationException", "bucketName"),
        (
            {"sourceFlowConfig": H.s3_source("in-bucket", prefix="../etc")},
            "ValidationException",
            "'..'",
        ),
        (
            {"destinationFlowConfigList": [H.s3_destination("out-bucket", "PARQUET")]},
            "ValidationException",
            "PARQUET is not supported",
        ),
        (
            {"destinationFlowConfigList": [H.s3_destination("a-out"), H.s3_destination("b-out")]},
            "ValidationException",
            "exactly one destination",
        ),
        ({"triggerConfig": sched("every 5 minutes")}, "ValidationException", "scheduleExpression"),
        ({"triggerConfig": sched("rate(0minutes)")}, "ValidationException", "scheduleExpression"),
        (
            {"triggerConfig": sched("cron(0 12 * * * *)")},
            "ValidationException",
            "scheduleExpression",
        ),
        (
            {"triggerConfig": sched("rate(1hours)", dataPullMode="Incremental")},
            "ValidationException",
            "datetimeTypeFieldName",
        ),
        (
            {"triggerConfig": sched("rate(1hours)", scheduleOffset=99999)},
            "ValidationException",
            "scheduleOffset",
        ),
        (
            {"triggerConfig": {"triggerType": "Event"}},
            "ValidationException",
            "An Event flow needs a source that emits events",
        ),
        (
            {"destinationFlowConfigList": [H.custom_destination("no-such-profile", "q")]},
            "ResourceNotFoundException",
            "no-such-profile",
        ),
        (
            {
                "destinationFlowConfigList": [
                    {
                        "connectorType": "EventBridge",
                        "destinationConnectorProperties": {
                            "EventBridge": {"object": "no-such-bus"}
                        },
                    }
                ]
            },
            "ValidationException",
            "event bus no-such-bus does not exist",
        ),
    ],
)
def test_invalid_flow_definitions(
    appflow: Any, override: dict[str, Any], code: str, fragment: str
) -> None:
    args: dict[str, Any] = {
        "flowName": H.name("bad"),
        "triggerConfig": H.on_demand(),
        "sourceFlowConfig": H.s3_source("in-bucket"),
        "destinationFlowConfigList": [H.s3_destination("out-bucket")],
        "tasks": CSV_TASKS,
    }
    args.update(override)
    with pytest.raises(ClientError) as exc:
        appflow.create_flow(**args)
    expect(exc, code, fragment)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404)


def test_custom_connector_rules(appflow: Any, sqs: Any) -> None:
    sns_profile = H.custom_profile(appflow, "polymq-sns")
    sql_profile = H.custom_profile(appflow, "polymq-sql", {"database": "rules.sqlite"})
    base: dict[str, Any] = {
        "triggerConfig": H.on_demand(),
        "sourceFlowConfig": H.s3_source("in-bucket"),
        "tasks": CSV_TASKS,
    }
    cases = [
        (
            {
                "sourceFlowConfig": H.custom_source(sns_profile, "topic"),
                "destinationFlowConfigList": [H.s3_destination("out-bucket")],
            },
            "polymq-sns cannot be a source",
        ),
        (
            {"destinationFlowConfigList": [H.custom_destination(sql_profile, "t", "UPSERT")]},
            "UPSERT needs idFieldNames",
        ),
        (
            {"destinationFlowConfigList": [H.custom_destination(sql_profile, "t", "DELETE")]},
            "DELETE is not supported",
        ),
        (
            {"destinationFlowConfigList": [H.custom_destination(sns_profile, "no-topic")]},
            "SNS topic no-topic does not exist",
        ),
        (
            {
                "sourceFlowConfig": H.custom_source(sql_profile, "t"),
                "destinationFlowConfigList": [H.s3_destination("out-bucket")],
            },
            "source connector is CustomConnector",
        ),
    ]
    for override, fragment in cases:
        args = {**base, "flowName": H.name("cc"), **override}
        with pytest.raises(ClientError) as exc:
            appflow.create_flow(**args)
        expect(exc, "ValidationException", fragment)
    for profile in (sns_profile, sql_profile):
        appflow.delete_connector_profile(connectorProfileName=profile)


def test_duplicate_flow_is_a_conflict(appflow: Any) -> None:
    flow = H.name("dup")
    csv_flow(appflow, flow, "dup-in", "dup-out")
    with pytest.raises(ClientError) as exc:
        csv_flow(appflow, flow, "dup-in", "dup-out")
    expect(exc, "ConflictException", "already exists")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    appflow.delete_flow(flowName=flow)
