"""Events reaching targets through boto3: patterns on nested ``detail`` fields and on fields
inside arrays of objects, every operator family, input transformers as the AWS User Guide's
"Input transform examples" show them, disabled rules, FIFO SQS targets, bus-to-bus and SNS
targets, and PutEvents' per-entry validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.interop import events_helpers
from tests.interop.events_helpers import (
    ACCOUNT,
    bus_arn,
    expect_error,
    name,
    new_queue,
    nothing,
    put,
    receive_bodies,
    rule_arn,
    rule_to_queue,
)

events_broker, events, sqs = (
    events_helpers.events_broker,
    events_helpers.events,
    events_helpers.sqs,
)


def src() -> str:
    return name("src").replace("-", ".")


def test_event_envelope(events: Any, sqs: Any) -> None:
    source = src()
    _, url = rule_to_queue(events, sqs, {"source": [source]})
    reply = put(
        events,
        {
            "Source": source,
            "DetailType": "order placed",
            "Detail": {"id": 7},
            "Resources": ["arn:aws:s3:::b"],
            "Time": "2024-05-01T10:20:30Z",
        },
    )
    body = json.loads(receive_bodies(sqs, url, 1)[0])
    assert body == {
        "version": "0",
        "id": reply["Entries"][0]["EventId"],
        "detail-type": "order placed",
        "source": source,
        "account": ACCOUNT,
        "time": "2024-05-01T10:20:30Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::b"],
        "detail": {"id": 7},
    }
    assert list(body) == [
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    ]


def test_nested_detail_and_arrays_of_objects(events: Any, sqs: Any) -> None:
    source = src()
    pattern = {
        "source": [source],
        "detail": {"order": {"customer": {"tier": ["gold"]}}, "items": {"sku": ["b"], "qty": [1]}},
    }
    _, url = rule_to_queue(events, sqs, pattern)
    match = {
        "order": {"customer": {"tier": "gold"}},
        "items": [{"sku": "a", "qty": 5}, {"sku": "b", "qty": 1}],
    }  # noqa: E501
    split = {
        "order": {"customer": {"tier": "gold"}},
        "items": [{"sku": "b", "qty": 5}, {"sku": "a", "qty": 1}],
    }  # noqa: E501
    silver = {"order": {"customer": {"tier": "silver"}}, "items": [{"sku": "b", "qty": 1}]}
    put(
        events,
        *({"Source": source, "DetailType": "t", "Detail": d} for d in (split, silver, match)),
    )
    got = [json.loads(b)["detail"] for b in receive_bodies(sqs, url, 1)]
    assert got == [match]
    nothing(sqs, url)


OPERATORS = [
    ("prefix", {"name": [{"prefix": "ab"}]}, {"name": "abc"}, {"name": "xab"}),
    ("suffix", {"name": [{"suffix": ".png"}]}, {"name": "a.png"}, {"name": "a.jpg"}),
    (
        "equals-ignore-case",
        {"name": [{"equals-ignore-case": "AbC"}]},
        {"name": "aBc"},
        {"name": "abd"},
    ),
    ("wildcard", {"name": [{"wildcard": "a*c"}]}, {"name": "abbbc"}, {"name": "abcd"}),
    ("anything-but", {"name": [{"anything-but": ["x", "y"]}]}, {"name": "z"}, {"name": "x"}),
    (
        "anything-but prefix",
        {"name": [{"anything-but": {"prefix": "tmp"}}]},
        {"name": "data"},
        {"name": "tmp1"},
    ),
    (
        "numeric range",
        {"n": [{"numeric": [">", 0, "<=", 5]}]},
        {"n": 5},
        {"n": 6},
    ),
    ("numeric equality", {"n": [{"numeric": ["=", 3.018e2]}]}, {"n": 301.8}, {"n": 301}),
    ("exists true", {"flag": [{"exists": True}]}, {"flag": "x"}, {"other": 1}),
    ("exists false", {"flag": [{"exists": False}]}, {"other": 1}, {"flag": "x"}),
    ("null", {"v": [None]}, {"v": None}, {"v": "null"}),
    ("empty string", {"v": [""]}, {"v": ""}, {"v": " "}),
    ("boolean", {"v": [True]}, {"v": True}, {"v": "true"}),
    ("cidr", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.7"}, {"ip": "10.0.1.7"}),
    ("$or", {"$or": [{"a": [1]}, {"b": [2]}]}, {"b": 2}, {"a": 2, "b": 1}),
]


@pytest.mark.parametrize(
    ("label", "detail_pattern", "yes", "no"), OPERATORS, ids=[o[0] for o in OPERATORS]
)
def test_operator(
    events: Any,
    sqs: Any,
    label: str,
    detail_pattern: dict[str, Any],
    yes: dict[str, Any],
    no: dict[str, Any],
) -> None:
    source = src()
    _, url = rule_to_queue(events, sqs, {"source": [source], "detail": detail_pattern})
    put(
        events,
        {"Source": source, "DetailType": "t", "Detail": {**no, "tag": "no"}},
        {"Source": source, "DetailType": "t", "Detail": {**yes, "tag": "yes"}},
    )
    got = [json.loads(b)["detail"]["tag"] for b in receive_bodies(sqs, url, 1)]
    assert got == ["yes"], label
    nothing(sqs, url, 0)


def test_disabled_rule_never_delivers(events: Any, sqs: Any) -> None:
    source = src()
    rule, url = rule_to_queue(events, sqs, {"source": [source]}, state="DISABLED")
    put(events, {"Source": source, "DetailType": "t", "Detail": {"n": 1}})
    nothing(sqs, url)
    events.enable_rule(Name=rule)
    put(events, {"Source": source, "DetailType": "t", "Detail": {"n": 2}})
    assert [json.loads(b)["detail"]["n"] for b in receive_bodies(sqs, url, 1)] == [2]
    events.disable_rule(Name=rule)
    put(events, {"Source": source, "DetailType": "t", "Detail": {"n": 3}})
    nothing(sqs, url)
    # PutRule rewrites the rule: it stays disabled when told so
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}), State="DISABLED")
    put(events, {"Source": source, "DetailType": "t", "Detail": {"n": 4}})
    nothing(sqs, url)


def test_put_rule_changes_pattern_of_targets(events: Any, sqs: Any) -> None:
    source = src()
    rule, url = rule_to_queue(events, sqs, {"source": [source], "detail-type": ["a"]})
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source], "detail-type": ["b"]}))
    put(
        events,
        {"Source": source, "DetailType": "a", "Detail": {}},
        {"Source": source, "DetailType": "b", "Detail": {}},
    )
    assert [json.loads(b)["detail-type"] for b in receive_bodies(sqs, url, 1)] == ["b"]
    nothing(sqs, url)


# The AWS User Guide's input transformation examples ("Input transform examples"): the event
# below, and for each example the InputPathsMap, the InputTemplate and the output it shows.
EC2_DETAIL = {"instance-id": "i-0123456789", "state": "RUNNING"}
EC2_PATHS = {"instance": "$.detail.instance-id", "state": "$.detail.state"}
TRANSFORMS = [
    (
        "simple string",
        '"instance <instance> is in <state>"',
        '"instance i-0123456789 is in RUNNING"',
    ),  # noqa: E501
    (
        "string with escaped quotes",
        '"instance \\"<instance>\\" is in <state>"',
        '"instance \\"i-0123456789\\" is in RUNNING"',
    ),
    (
        "simple JSON",
        '{"instance" : <instance>, "state": <state>}',
        '{"instance":"i-0123456789","state":"RUNNING"}',
    ),
    (
        "JSON with strings and variables",
        '{"instance" : "<instance>", "state": "<state>"}',
        '{"instance":"i-0123456789","state":"RUNNING"}',
    ),
    (
        "JSON with a mix of variables and static information",
        '{"instance" : <instance>, "state": [ 9, <state>, true ], "Transformed" : "Yes"}',
        '{"instance":"i-0123456789","state":[9,"RUNNING",true],"Transformed":"Yes"}',
    ),
]


@pytest.mark.parametrize(
    ("label", "template", "expected"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS]
)  # noqa: E501
def test_input_transformer_examples(
    events: Any, sqs: Any, label: str, template: str, expected: str
) -> None:
    source = src()
    _, url = rule_to_queue(
        events,
        sqs,
        {"source": [source]},
        target={"InputTransformer": {"InputPathsMap": EC2_PATHS, "InputTemplate": template}},
    )
    put(
        events,
        {
            "Source": source,
            "DetailType": "EC2 Instance State-change Notification",
            "Detail": EC2_DETAIL,
        },
    )  # noqa: E501
    assert receive_bodies(sqs, url, 1) == [expected], label


def test_input_transformer_json_values_and_reserved_variables(events: Any, sqs: Any) -> None:
    source = src()
    template = (
        '{"d": <detail>, "n": <n>, "tags": <tags>, "ruleArn": <aws.events.rule-arn>, '
        '"ruleName": <aws.events.rule-name>, "original": <aws.events.event.json>}'
    )
    rule, url = rule_to_queue(
        events,
        sqs,
        {"source": [source]},
        target={
            "InputTransformer": {
                "InputPathsMap": {"detail": "$.detail", "n": "$.detail.n", "tags": "$.detail.tags"},
                "InputTemplate": template,
            }
        },
    )
    detail = {"n": 1.5, "tags": ["a", "b"], "nested": {"x": None}}
    put(events, {"Source": source, "DetailType": "t", "Detail": detail})
    out = json.loads(receive_bodies(sqs, url, 1)[0])
    assert out["d"] == detail
    assert (out["n"], out["tags"]) == (1.5, ["a", "b"])
    assert (out["ruleArn"], out["ruleName"]) == (rule_arn(rule), rule)
    assert out["original"]["detail"] == detail and out["original"]["source"] == source


def test_input_path_and_constant_input(events: Any, sqs: Any) -> None:
    source = src()
    _, url_path = rule_to_queue(
        events, sqs, {"source": [source]}, target={"InputPath": "$.detail.order"}
    )
    _, url_const = rule_to_queue(
        events, sqs, {"source": [source]}, target={"Input": '{"constant": [1, 2]}'}
    )
    _, url_str = rule_to_queue(
        events, sqs, {"source": [source]}, target={"InputPath": "$.detail.order.id"}
    )
    put(events, {"Source": source, "DetailType": "t", "Detail": {"order": {"id": "o-1", "n": 2}}})
    assert receive_bodies(sqs, url_path, 1) == ['{"id":"o-1","n":2}']
    assert receive_bodies(sqs, url_const, 1) == ['{"constant": [1, 2]}']
    assert receive_bodies(sqs, url_str, 1) == ['"o-1"']


def test_fifo_target_with_group(events: Any, sqs: Any) -> None:
    source = src()
    rule = name("r")
    url, arn = new_queue(sqs, "fifo", fifo=True)
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(
        Rule=rule, Targets=[{"Id": "f", "Arn": arn, "SqsParameters": {"MessageGroupId": "g1"}}]
    )
    put(
        events,
        *({"Source": source, "DetailType": "t", "Detail": {"n": i}} for i in range(3)),
    )
    # one group: the next message is held until the one in flight is deleted
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    got = [json.loads(m["Body"])["detail"]["n"] for m in reply["Messages"]]
    assert got == [0, 1, 2]
    for m in reply["Messages"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_bus_to_bus(events: Any, sqs: Any) -> None:
    source = src()
    bus = name("bus")
    events.create_event_bus(Name=bus)
    _, url = rule_to_queue(events, sqs, {"source": [source]}, bus=bus)
    forward = name("fwd")
    events.put_rule(Name=forward, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=forward, Targets=[{"Id": "b", "Arn": bus_arn(bus)}])
    reply = put(events, {"Source": source, "DetailType": "t", "Detail": {"hop": 1}})
    body = json.loads(receive_bodies(sqs, url, 1)[0])
    assert (body["id"], body["detail"]) == (reply["Entries"][0]["EventId"], {"hop": 1})


def test_sns_target(events_broker: Any, events: Any, sqs: Any) -> None:
    sns = events_helpers.client("sns", events_broker.http_url)
    try:
        topic = sns.create_topic(Name=name("topic"))["TopicArn"]
    except Exception as exc:  # the endpoint serves no SNS
        pytest.skip(f"no SNS on this endpoint: {exc}")
    url, qarn = new_queue(sqs, "sns-sub")
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"}
    )
    source = src()
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "s", "Arn": topic}])
    reply = put(events, {"Source": source, "DetailType": "t", "Detail": {"via": "sns"}})
    body = json.loads(receive_bodies(sqs, url, 1)[0])
    assert (body["id"], body["detail"]) == (reply["Entries"][0]["EventId"], {"via": "sns"})


def test_put_events_entry_errors(events: Any) -> None:
    reply = events.put_events(
        Entries=[
            {"Source": "a.b", "DetailType": "t", "Detail": "{}"},
            {"DetailType": "t", "Detail": "{}"},
            {"Source": "a.b", "Detail": "{}"},
            {"Source": "a.b", "DetailType": "t"},
            {"Source": "a.b", "DetailType": "t", "Detail": "{not json"},
            {"Source": "a.b", "DetailType": "t", "Detail": "[1, 2]"},
            {"Source": "a.b", "DetailType": "t", "Detail": "{}", "EventBusName": "no-such-bus"},
        ]
    )
    assert reply["FailedEntryCount"] == 6
    assert "EventId" in reply["Entries"][0]
    assert reply["Entries"][1:] == [
        {
            "ErrorCode": "InvalidArgument",
            "ErrorMessage": "Parameter Source is not valid. Reason: Source is a required argument.",
        },
        {
            "ErrorCode": "InvalidArgument",
            "ErrorMessage": "Parameter DetailType is not valid. Reason: DetailType is a required "
            "argument.",
        },
        {
            "ErrorCode": "InvalidArgument",
            "ErrorMessage": "Parameter Detail is not valid. Reason: Detail is a required argument.",
        },
        {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."},
        {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."},
        {
            "ErrorCode": "ResourceNotFoundException",
            "ErrorMessage": "Event bus no-such-bus does not exist.",
        },
    ]


def test_put_events_limits(events: Any) -> None:
    entry = {"Source": "a.b", "DetailType": "t", "Detail": "{}"}
    expect_error(events.put_events, "ValidationException", Entries=[entry] * 11)
    big = {"Source": "a.b", "DetailType": "t", "Detail": json.dumps({"x": "y" * 200_000})}
    expect_error(
        events.put_events,
        "ValidationException",
        "Total size of the entries in the request is over the limit.",
        Entries=[big, big],
    )
