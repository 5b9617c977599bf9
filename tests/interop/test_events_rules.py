"""EventBridge control plane through boto3: rules, targets, buses, permissions, tags, pattern
validation (AWS's InvalidEventPatternException texts) and TestEventPattern."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.interop import events_helpers
from tests.interop.events_helpers import (
    bus_arn,
    expect_error,
    name,
    new_queue,
    rule_arn,
)

events_broker, events, sqs = (
    events_helpers.events_broker,
    events_helpers.events,
    events_helpers.sqs,
)

PATTERN = {"source": ["my.app"]}


def test_put_describe_list_delete_rule(events: Any) -> None:
    rule = name("r")
    arn = events.put_rule(
        Name=rule, EventPattern=json.dumps(PATTERN), Description="d", RoleArn="arn:aws:iam::0:x"
    )["RuleArn"]
    assert arn == rule_arn(rule)
    got = events.describe_rule(Name=rule)
    assert {k: got[k] for k in got if k != "ResponseMetadata"} == {
        "Name": rule,
        "Arn": arn,
        "EventPattern": json.dumps(PATTERN),
        "State": "ENABLED",
        "Description": "d",
        "RoleArn": "arn:aws:iam::0:x",
        "EventBusName": "default",
        "CreatedBy": "000000000000",
    }
    events.disable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "DISABLED"
    events.enable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "ENABLED"
    listed = events.list_rules(NamePrefix=rule)["Rules"]
    assert [r["Name"] for r in listed] == [rule]
    events.delete_rule(Name=rule)
    expect_error(
        events.describe_rule,
        "ResourceNotFoundException",
        f"Rule {rule} does not exist on EventBus default.",
        Name=rule,
    )
    events.delete_rule(Name=rule)  # deleting what is gone is fine, as AWS


def test_list_rules_pages(events: Any) -> None:
    prefix = name("page")
    rules = [f"{prefix}-{i}" for i in range(5)]
    for rule in rules:
        events.put_rule(Name=rule, EventPattern=json.dumps(PATTERN))
    first = events.list_rules(NamePrefix=prefix, Limit=2)
    second = events.list_rules(NamePrefix=prefix, Limit=2, NextToken=first["NextToken"])
    third = events.list_rules(NamePrefix=prefix, Limit=2, NextToken=second["NextToken"])
    assert [r["Name"] for r in first["Rules"] + second["Rules"] + third["Rules"]] == rules
    assert "NextToken" not in third


def test_put_rule_needs_pattern_or_schedule(events: Any) -> None:
    expect_error(
        events.put_rule,
        "ValidationException",
        "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        Name=name("r"),
    )


@pytest.mark.parametrize(
    "expression",
    ["rate(0 minutes)", "rate(1 minutes)", "rate(5 minute)", "cron(0 12 * * * *)", "every 5m"],
)
def test_bad_schedule_expression(events: Any, expression: str) -> None:
    expect_error(
        events.put_rule,
        "ValidationException",
        "Parameter ScheduleExpression is not valid.",
        Name=name("r"),
        ScheduleExpression=expression,
    )


def test_schedule_only_on_default_bus(events: Any) -> None:
    bus = name("bus")
    events.create_event_bus(Name=bus)
    expect_error(
        events.put_rule,
        "ValidationException",
        "ScheduleExpression is supported only on the default event bus.",
        Name=name("r"),
        EventBusName=bus,
        ScheduleExpression="rate(5 minutes)",
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("{not json", "Invalid JSON"),
        ('{"source": [{"foo": "x"}]}', "Unrecognized match type foo"),
        ('{"detail": {"n": [{"numeric": [">", "x"]}]}}', None),
        ('{"source": "my.app"}', None),
        ('{"source": []}', None),
        ('{"detail": {"a": [{"prefix": 5}]}}', None),
        ('{"detail": {"a": [{"wildcard": "a**b"}]}}', None),
    ],
)
def test_invalid_patterns(events: Any, pattern: str, reason: str | None) -> None:
    err = expect_error(
        events.put_rule, "InvalidEventPatternException", Name=name("r"), EventPattern=pattern
    )
    message = err.response["Error"]["Message"]
    assert message.startswith("Event pattern is not valid. Reason: "), message
    if reason is not None:
        assert message == f"Event pattern is not valid. Reason: {reason}"


def test_test_event_pattern(events: Any) -> None:
    event = {
        "id": "e1",
        "account": "000000000000",
        "source": "my.app",
        "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1",
        "detail-type": "order",
        "resources": [],
        "detail": {"items": [{"sku": "a", "qty": 5}, {"sku": "b", "qty": 1}]},
    }

    def test(pattern: dict[str, Any]) -> bool:
        reply = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))
        return bool(reply["Result"])

    assert test({"source": ["my.app"]}) is True
    assert test({"source": ["other"]}) is False
    assert test({"detail": {"items": {"sku": ["b"], "qty": [1]}}}) is True
    assert test({"detail": {"items": {"sku": ["b"], "qty": [5]}}}) is False  # same element
    expect_error(
        events.test_event_pattern,
        "InvalidEventPatternException",
        "Event pattern is not valid. Reason: Invalid JSON",
        EventPattern="{",
        Event=json.dumps(event),
    )


def test_targets_list_remove_and_delete_guard(events: Any, sqs: Any) -> None:
    rule = name("r")
    _, arn1 = new_queue(sqs, "a")
    _, arn2 = new_queue(sqs, "b")
    events.put_rule(Name=rule, EventPattern=json.dumps(PATTERN))
    reply = events.put_targets(
        Rule=rule, Targets=[{"Id": "one", "Arn": arn1}, {"Id": "two", "Arn": arn2, "Input": "{}"}]
    )
    assert (reply["FailedEntryCount"], reply["FailedEntries"]) == (0, [])
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert targets == [{"Id": "one", "Arn": arn1}, {"Id": "two", "Arn": arn2, "Input": "{}"}]
    assert events.list_rule_names_by_target(TargetArn=arn2)["RuleNames"] == [rule]
    expect_error(
        events.delete_rule,
        "ValidationException",
        "Rule can't be deleted since it has targets.",
        Name=rule,
    )
    events.remove_targets(Rule=rule, Ids=["one", "two"])
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []
    events.delete_rule(Name=rule)


def test_too_many_targets(events: Any, sqs: Any) -> None:
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps(PATTERN))
    _, arn = new_queue(sqs, "many")
    targets = [{"Id": f"t{i}", "Arn": arn} for i in range(6)]
    expect_error(events.put_targets, "LimitExceededException", Rule=rule, Targets=targets)


def test_fifo_target_needs_group(events: Any, sqs: Any) -> None:
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps(PATTERN))
    _, arn = new_queue(sqs, "fifo", fifo=True)
    expect_error(
        events.put_targets,
        "ValidationException",
        "Parameter(s) SqsParameters must be specified for target: f.",
        Rule=rule,
        Targets=[{"Id": "f", "Arn": arn}],
    )


def test_invalid_input_template(events: Any, sqs: Any) -> None:
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps(PATTERN))
    _, arn = new_queue(sqs, "tpl")
    expect_error(
        events.put_targets,
        "ValidationException",
        "InputTemplate for target t contains invalid placeholder nope.",
        Rule=rule,
        Targets=[
            {
                "Id": "t",
                "Arn": arn,
                "InputTransformer": {"InputPathsMap": {}, "InputTemplate": '{"a": <nope>}'},
            }
        ],
    )


def test_rule_on_missing_bus(events: Any) -> None:
    expect_error(
        events.put_rule,
        "ResourceNotFoundException",
        "Event bus nope-bus does not exist.",
        Name=name("r"),
        EventBusName="nope-bus",
        EventPattern=json.dumps(PATTERN),
    )


def test_event_buses(events: Any) -> None:
    bus = name("bus")
    created = events.create_event_bus(
        Name=bus, Description="orders", Tags=[{"Key": "k", "Value": "v"}]
    )
    assert created["EventBusArn"] == bus_arn(bus)
    assert created["Description"] == "orders"
    expect_error(
        events.create_event_bus,
        "ResourceAlreadyExistsException",
        f"Event bus {bus} already exists.",
        Name=bus,
    )
    got = events.describe_event_bus(Name=bus)
    assert (got["Name"], got["Arn"], got["Description"]) == (bus, bus_arn(bus), "orders")
    assert "CreationTime" in got
    names = [b["Name"] for b in events.list_event_buses(NamePrefix=bus)["EventBuses"]]
    assert names == [bus]
    assert "default" in [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    events.update_event_bus(Name=bus, Description="orders v2")
    assert events.describe_event_bus(Name=bus)["Description"] == "orders v2"
    assert events.list_tags_for_resource(ResourceARN=bus_arn(bus))["Tags"] == [
        {"Key": "k", "Value": "v"}
    ]
    expect_error(
        events.delete_event_bus,
        "ValidationException",
        "Cannot delete event bus default.",
        Name="default",
    )
    rule = name("r")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(PATTERN))
    assert events.describe_rule(Name=rule, EventBusName=bus_arn(bus))["Arn"] == rule_arn(rule, bus)
    events.delete_event_bus(Name=bus)
    expect_error(
        events.describe_event_bus,
        "ResourceNotFoundException",
        f"Event bus {bus} does not exist.",
        Name=bus,
    )
    expect_error(
        events.create_event_bus,
        "ValidationException",
        "Event bus name must not contain '/'.",
        Name="a/b",
    )


def test_permissions(events: Any) -> None:
    bus = name("bus")
    events.create_event_bus(Name=bus)
    events.put_permission(
        EventBusName=bus, Action="events:PutEvents", Principal="111122223333", StatementId="s1"
    )
    policy = json.loads(events.describe_event_bus(Name=bus)["Policy"])
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "s1",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "events:PutEvents",
                "Resource": bus_arn(bus),
            }
        ],
    }
    events.remove_permission(EventBusName=bus, StatementId="s1")
    assert "Policy" not in events.describe_event_bus(Name=bus)
    expect_error(
        events.remove_permission,
        "ResourceNotFoundException",
        "Statement with the provided id does not exist.",
        EventBusName=bus,
        StatementId="s1",
    )


def test_rule_tags(events: Any) -> None:
    rule = name("r")
    arn = events.put_rule(
        Name=rule, EventPattern=json.dumps(PATTERN), Tags=[{"Key": "a", "Value": "1"}]
    )["RuleArn"]
    events.tag_resource(ResourceARN=arn, Tags=[{"Key": "b", "Value": "2"}])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]
    events.untag_resource(ResourceARN=arn, TagKeys=["a"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    expect_error(
        events.list_tags_for_resource,
        "ResourceNotFoundException",
        ResourceARN=rule_arn("no-such-rule"),
    )
