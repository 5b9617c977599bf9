"""broker/core/transform.py: what each SNS subscription / EventBridge target receives.

Sources: EventBridge User Guide "Amazon EventBridge input transformation" (every row of its
"Input transform examples" table is a test below), the InputTransformer API reference, the
input transformer tutorial, the SNS Developer Guide "HTTP/HTTPS notification JSON format" and
"Verifying the signatures of Amazon SNS messages".
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.transform import TransformError, apply, signature, string_to_sign, validate

# The example Amazon EC2 event of the User Guide page.
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING"},
}
EC2_BODY = json.dumps(EC2_EVENT, indent=2).encode()
# The page's Input Path.
EC2_PATHS = {"timestamp": "$.time", "instance": "$.detail.instance-id", "state": "$.detail.state"}
RULE_ARN = "arn:aws:events:us-east-2:123456789012:rule/example"
PROPS: dict[str, Any] = {
    "delivery_mode": 2,
    "message_id": "m-1",
    "headers": {"h": [1, 2]},
    "eb": {"t": 1447277394000, "ingested": "2015-11-11T21:29:55Z"},
}


def transformer(template: str, paths: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    spec = {
        "kind": "input_transformer",
        "paths": EC2_PATHS if paths is None else paths,
        "template": template,
        "rule_arn": RULE_ARN,
        **extra,
    }
    validate(spec)
    return spec


def run(spec: dict[str, Any], body: bytes = EC2_BODY, props: dict[str, Any] | None = None) -> str:
    res = apply(spec, PROPS if props is None else props, body)
    assert res is not None
    return res[1].decode()


# ---------------------------------------------------------------------------------------------
# "Input transform examples" table, one test per row


def test_doc_simple_string() -> None:
    out = run(transformer('"instance <instance> is in <state>"'))
    assert out == '"instance i-0123456789 is in RUNNING"'


def test_doc_string_with_escaped_quotes() -> None:
    out = run(transformer('"instance \\"<instance>\\" is in <state>"'))
    assert out == '"instance \\"i-0123456789\\" is in RUNNING"'


def test_doc_simple_json() -> None:
    out = run(transformer('{\n  "instance" : <instance>,\n  "state": <state>\n}'))
    assert json.loads(out) == {"instance": "i-0123456789", "state": "RUNNING"}
    assert out == '{"instance":"i-0123456789","state":"RUNNING"}'  # "minified"


def test_doc_json_with_strings_and_variables() -> None:
    template = (
        '{\n "instance" : <instance>,\n "state": "<state>",\n'
        ' "instanceStatus": "instance \\"<instance>\\" is in <state>"\n}'
    )
    assert json.loads(run(transformer(template))) == {
        "instance": "i-0123456789",
        "state": "RUNNING",
        "instanceStatus": 'instance "i-0123456789" is in RUNNING',
    }


def test_doc_json_with_mix_of_variables_and_static_information() -> None:
    template = (
        '{\n  "instance" : <instance>,\n  "state": [ 9, <state>, true ],\n'
        '  "Transformed" : "Yes"\n}'
    )
    assert json.loads(run(transformer(template))) == {
        "instance": "i-0123456789",
        "state": [9, "RUNNING", True],
        "Transformed": "Yes",
    }


def test_doc_including_reserved_variables_in_json() -> None:
    template = (
        '{\n  "instance" : <instance>,\n  "state": <state>,\n  "ruleArn" : <aws.events.rule-arn>,'
        '\n  "ruleName" : <aws.events.rule-name>,\n  "originalEvent" : <aws.events.event>\n}'
    )
    out = json.loads(run(transformer(template)))
    assert out["instance"] == "i-0123456789"
    assert out["state"] == "RUNNING"
    assert out["ruleArn"] == RULE_ARN
    assert out["ruleName"] == "example"
    # The shape AWS delivers (detail-type as detailType, no detail, time = ingestion time).
    assert list(out["originalEvent"]) == [
        "id",
        "account",
        "detailType",
        "time",
        "source",
        "region",
        "resources",
        "version",
    ]
    assert out["originalEvent"]["detailType"] == EC2_EVENT["detail-type"]
    assert out["originalEvent"]["time"] == "2015-11-11T21:29:55Z"


def test_doc_including_reserved_variables_in_a_string() -> None:
    assert run(transformer('"<aws.events.rule-name> triggered"')) == '"example triggered"'


def test_doc_cloudwatch_log_group() -> None:
    # The page's Output column shows the log event as CloudWatch Logs renders it; the bytes
    # EventBridge hands over are the minified JSON.
    template = (
        '{\n  "timestamp" : <timestamp>,\n  "message": "instance \\"<instance>\\" is in <state>"\n}'
    )
    out = run(transformer(template))
    assert out == (
        '{"timestamp":"2015-11-11T21:29:54Z","message":"instance \\"i-0123456789\\" is in RUNNING"}'
    )


def test_doc_tutorial_sns_message() -> None:
    # Tutorial: Use input transformers to transform events in EventBridge.
    spec = transformer('"This event was of <detail-type> type."', {"detail-type": "$.detail-type"})
    body = json.dumps({"detail-type": "customerCreated", "detail": {}}).encode()
    assert run(spec, body) == '"This event was of customerCreated type."'


# API reference, InputTransformer: the three InputTemplate examples.
API_PATHS = {"instance": "$.detail.instance", "status": "$.detail.status"}
API_BODY = json.dumps({"id": "e", "detail": {"instance": "i-1", "status": "running"}}).encode()


def test_api_reference_plain_text_template() -> None:
    spec = transformer("<instance> is in state <status>", API_PATHS)
    assert run(spec, API_BODY) == "i-1 is in state running"


def test_api_reference_quote_marks_in_text_template() -> None:
    spec = transformer('<instance> is in state "<status>"', API_PATHS)
    assert run(spec, API_BODY) == 'i-1 is in state "running"'


def test_api_reference_json_with_variables_in_quotes_or_out() -> None:
    spec = transformer(
        '{"myInstance": <instance>,"myStatus": "<instance> is in state \\"<status>\\""}', API_PATHS
    )
    assert json.loads(run(spec, API_BODY)) == {
        "myInstance": "i-1",
        "myStatus": 'i-1 is in state "running"',
    }


# ---------------------------------------------------------------------------------------------
# value placement rules

VALUES_BODY = json.dumps(
    {
        "id": "ev-1",
        "time": "2024-01-01T00:00:00Z",
        "detail": {
            "s": "text",
            "q": 'say "hi"',
            "n": 12.50,
            "big": 123456789012345678901234567890,
            "b": False,
            "z": None,
            "o": {"k": "v", "n": 1},
            "a": ["x", 2],
            "list": [{"v": 1}, {"v": 2}],
        },
    }
).encode()
VALUE_PATHS = {
    "s": "$.detail.s",
    "q": "$.detail.q",
    "n": "$.detail.n",
    "big": "$.detail.big",
    "b": "$.detail.b",
    "z": "$.detail.z",
    "o": "$.detail.o",
    "a": "$.detail.a",
    "m": "$.detail.nothere",
    "first": "$.detail.list[0].v",
    "all": "$.detail.list[*].v",
}


@pytest.mark.parametrize(
    ("name", "bare", "quoted"),
    [
        ("s", '"text"', "text"),
        ("n", "12.5", "12.5"),
        ("big", "123456789012345678901234567890", "123456789012345678901234567890"),
        ("b", "false", "false"),
        ("z", "null", "null"),
        ("o", '{"k":"v","n":1}', "{k:v,n:1}"),
        ("a", '["x",2]', "[x,2]"),
        ("m", '""', ""),
        ("first", "1", "1"),
        ("all", "[1,2]", "[1,2]"),
    ],
)
def test_json_template_bare_vs_inside_string(name: str, bare: str, quoted: str) -> None:
    out = run(transformer(f'{{"bare": <{name}>, "in": "<{name}>"}}', VALUE_PATHS), VALUES_BODY)
    assert out == f'{{"bare":{bare},"in":"{quoted}"}}'


def test_number_tokens_are_kept_verbatim() -> None:
    body = b'{"detail": {"n": 1.0e5, "i": 10}}'
    spec = transformer('{"n": <n>, "i": <i>}', {"n": "$.detail.n", "i": "$.detail.i"})
    assert run(spec, body) == '{"n":1.0e5,"i":10}'


def test_string_values_are_not_escaped_inside_strings() -> None:
    # Common issues: "EventBridge doesn't escape values extracted by Input Path".
    out = run(transformer('{"in": "<q>"}', VALUE_PATHS), VALUES_BODY)
    assert out == '{"in": "say "hi""}'  # invalid JSON, delivered as it came out (not minified)
    out = run(transformer('{"bare": <q>}', VALUE_PATHS), VALUES_BODY)
    assert json.loads(out) == {"bare": 'say "hi"'}


def test_text_template_inserts_values_as_text() -> None:
    spec = transformer("<s> <n> <b> <z> <o> <a> [<m>]", VALUE_PATHS)
    assert run(spec, VALUES_BODY) == "text 12.5 false null {k:v,n:1} [x,2] []"


def test_missing_path_in_string_template_gives_nothing() -> None:
    # LocalStack's AWS-validated snapshot "custom-variables-not-match-all".
    paths = {"detail-type": "$.detail-type", "command": "$.detail.notinmessage"}
    spec = transformer('"Event of <detail-type> type, info extracted from detail <command>"', paths)
    out = run(spec, json.dumps({"detail-type": "t", "detail": {}}).encode())
    assert out == '"Event of t type, info extracted from detail "'


def test_missing_path_as_bare_json_value_is_empty_string() -> None:
    paths = {"detail-type": "$.detail-type", "command": "$.detail.notinmessage"}
    spec = transformer('{"detailType": <detail-type>,  "command": <command>}', paths)
    out = run(spec, json.dumps({"detail-type": "t", "detail": {}}).encode())
    assert json.loads(out) == {"detailType": "t", "command": ""}


def test_reserved_variables() -> None:
    spec = transformer(
        '"<aws.events.rule-arn>|<aws.events.rule-name>|<aws.events.event.ingestion-time>"',
        {},
        rule_name="named",
    )
    assert run(spec) == f'"{RULE_ARN}|named|2015-11-11T21:29:55Z"'
    # Without props["eb"], the ingestion time falls back to the event's time.
    assert run(spec, props={"delivery_mode": 2}) == f'"{RULE_ARN}|named|2015-11-11T21:29:54Z"'


def test_rule_name_defaults_to_the_arn_resource_name() -> None:
    spec = transformer('"<aws.events.rule-name>"', {}, rule_arn="arn:aws:events:r:1:rule/bus/r1")
    assert run(spec) == '"r1"'


def test_event_json_is_the_exact_payload() -> None:
    spec = transformer('{"e": <aws.events.event.json>}', {})
    assert json.loads(run(spec)) == {"e": EC2_EVENT}
    body = b'{"id":"x","detail":{"k":1}}'
    assert run(transformer("<aws.events.event.json>", {}), body) == body.decode()


def test_special_starting_characters_in_string_template() -> None:
    # LocalStack's AWS-validated parametrisation '"{[/Check with special starting characters"'.
    spec = transformer(
        '"{[/Check with special starting characters for event of <dt> type"',
        {"dt": "$.detail-type"},
    )
    assert run(spec) == (
        '"{[/Check with special starting characters for event of '
        'EC2 Instance State-change Notification type"'
    )


def test_non_json_body_gives_missing_values() -> None:
    spec = transformer('{"a": <s>, "b": "<s>"}', {"s": "$.s"})
    assert run(spec, b"\xff not json") == '{"a":"","b":""}'


# ---------------------------------------------------------------------------------------------
# event, input, input_path


def test_event_kind_delivers_the_body_unchanged() -> None:
    res = apply({"kind": "event"}, PROPS, EC2_BODY)
    assert res is not None
    assert res[1] == EC2_BODY
    assert res[2] is None


def test_constant_input_is_verbatim() -> None:
    spec = {"kind": "input", "input": '{ "a" : [1, 2] }'}
    validate(spec)
    assert run(spec) == '{ "a" : [1, 2] }'


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", EC2_EVENT),
        ("$.detail", EC2_EVENT["detail"]),
        ("$.detail.state", "RUNNING"),
        ("$.resources[0]", EC2_EVENT["resources"][0]),
        ("$['detail']['instance-id']", "i-0123456789"),
        ('$["detail"].state', "RUNNING"),
        ("$.detail.*", ["i-0123456789", "RUNNING"]),
        ("$.resources[*]", EC2_EVENT["resources"]),
    ],
)
def test_input_path(path: str, expected: Any) -> None:
    spec = {"kind": "input_path", "path": path}
    validate(spec)
    assert json.loads(run(spec)) == expected


def test_input_path_string_value_keeps_quotes() -> None:
    # LocalStack's AWS-validated snapshot test_put_events_with_input_path_max_level_depth.
    assert run({"kind": "input_path", "path": "$.detail.state"}) == '"RUNNING"'


@pytest.mark.parametrize("path", ["$.detail.nothere", "$.resources[5]", "$.detail.state.x"])
def test_input_path_selecting_nothing_skips_the_target(path: str) -> None:
    spec = {"kind": "input_path", "path": path}
    validate(spec)
    assert apply(spec, PROPS, EC2_BODY) is None


def test_input_path_selecting_null_delivers_null() -> None:
    assert run({"kind": "input_path", "path": "$.d"}, b'{"d": null}') == "null"


# ---------------------------------------------------------------------------------------------
# properties and publish options of the copies


def test_eventbridge_copy_properties() -> None:
    props = {
        "delivery_mode": 1,
        "message_id": "m-1",
        "headers": {"a": 1},
        "eb": {"t": 1700000000123, "ingested": "2023-11-14T22:13:20Z"},
        "sns": {"id": "x"},
        "sqs": {"t": 5, "s": "sender", "a": {"k": ["String", "v"]}, "g": "g", "d": "d"},
    }
    res = apply({"kind": "event"}, props, EC2_BODY)
    assert res is not None
    out = res[0]
    assert out == {
        "delivery_mode": 2,
        "message_id": "m-1",
        "headers": {"a": 1},
        "sqs": {"t": 5},
    }
    res2 = apply({"kind": "event"}, {"message_id": "m", "eb": {"t": 7}}, EC2_BODY)
    assert res2 is not None
    assert res2[0] == {"message_id": "m", "delivery_mode": 2, "sqs": {"t": 7}}


def test_fifo_target_group_and_event_id_dedup() -> None:
    spec = {"kind": "event", "group": "g1", "dedup": "event-id"}
    validate(spec)
    res = apply(spec, PROPS, EC2_BODY)
    assert res is not None
    assert res[2] == {"group": "g1", "dedup": EC2_EVENT["id"]}


def test_fifo_target_without_dedup_source_uses_content() -> None:
    spec = {"kind": "input", "input": '"x"', "group": "g1"}
    validate(spec)
    res = apply(spec, PROPS, EC2_BODY)
    assert res is not None
    assert res[2] == {"group": "g1", "dedup": hashlib.sha256(b'"x"').hexdigest()}


# ---------------------------------------------------------------------------------------------
# SNS

SUB = {
    "kind": "sns",
    "raw": False,
    "protocol": "sqs",
    "subscription_arn": "arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0",
    "unsubscribe_url": "https://sns.example/?Action=Unsubscribe&SubscriptionArn=x",
    "signing_cert_url": "https://sns.example/SimpleNotificationService-0.pem",
}


def sns_props(**sns: Any) -> dict[str, Any]:
    block = {
        "id": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "topic": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "subject": None,
        "message": "Hello world!",
        "messages": None,
        "ts": "2012-05-02T00:54:06.655Z",
        "attrs": {},
        "seq": None,
        "group": None,
        "dedup": None,
    }
    block.update(sns)
    return {"delivery_mode": 2, "message_id": "m-9", "sns": block, "sqs": {"t": 1, "s": "SNS"}}


def deliver(spec: dict[str, Any], props: dict[str, Any]) -> tuple[dict[str, Any], str, Any]:
    validate(spec)
    res = apply(spec, props, b"ignored")
    assert res is not None
    return res[0], res[1].decode(), res[2]


def test_sns_envelope_fields_and_order() -> None:
    props, body, opts = deliver(SUB, sns_props(subject="My First Message"))
    env = json.loads(body)
    assert list(env) == [
        "Type",
        "MessageId",
        "TopicArn",
        "Subject",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "UnsubscribeURL",
    ]
    assert env["Type"] == "Notification"
    assert env["Subject"] == "My First Message"
    assert env["Message"] == "Hello world!"
    assert env["SignatureVersion"] == "1"
    assert env["SigningCertURL"] == SUB["signing_cert_url"]
    assert env["UnsubscribeURL"] == SUB["unsubscribe_url"]
    assert len(base64.b64decode(env["Signature"])) == 256
    # Pretty-printed like the guide's examples.
    assert body.startswith('{\n  "Type" : "Notification",\n  "MessageId" : ')
    assert props == {"delivery_mode": 2, "message_id": "m-9", "sqs": {"t": 1, "s": "SNS"}}
    assert opts is None


def test_sns_subject_absent_when_not_given() -> None:
    _, body, _ = deliver(SUB, sns_props())
    assert "Subject" not in json.loads(body)


def test_sns_message_attributes_only_when_present() -> None:
    _, body, _ = deliver(SUB, sns_props())
    assert "MessageAttributes" not in json.loads(body)
    attrs = {
        "store": ["String", "example_corp"],
        "n": ["Number", "5"],
        "bin": ["Binary", b"\x00\x01"],
    }
    _, body, _ = deliver(SUB, sns_props(attrs=attrs))
    env = json.loads(body)
    assert list(env)[-1] == "MessageAttributes"
    assert env["MessageAttributes"] == {
        "store": {"Type": "String", "Value": "example_corp"},
        "n": {"Type": "Number", "Value": "5"},
        "bin": {"Type": "Binary", "Value": "AAE="},
    }


def test_sns_fifo_envelope() -> None:
    props, body, opts = deliver(
        SUB,
        sns_props(
            topic="arn:aws:sns:us-west-2:123456789012:MyTopic.fifo",
            seq="10000000000000003000",
            group="g",
            dedup="d-1",
        ),
    )
    env = json.loads(body)
    assert list(env) == [
        "Type",
        "MessageId",
        "SequenceNumber",
        "TopicArn",
        "Message",
        "Timestamp",
        "UnsubscribeURL",
    ]
    assert env["SequenceNumber"] == "10000000000000003000"
    assert opts == {"group": "g", "dedup": "d-1"}


def test_sns_fifo_content_based_dedup() -> None:
    _, _, opts = deliver(SUB, sns_props(topic="t.fifo", seq="1", group="g"))
    assert opts == {"group": "g", "dedup": hashlib.sha256(b"Hello world!").hexdigest()}


def test_sns_signature_is_over_the_documented_string_to_sign() -> None:
    fields = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
    }
    # The guide's example string to sign for a Notification.
    assert string_to_sign(fields) == (
        "Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        "Subject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n"
        "TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        "Type\nNotification\n"
    )
    _, body, _ = deliver(
        SUB,
        sns_props(
            id=fields["MessageId"],
            topic=fields["TopicArn"],
            subject=fields["Subject"],
            message=fields["Message"],
            ts=fields["Timestamp"],
        ),
    )
    assert json.loads(body)["Signature"] == signature(fields)
    other = dict(fields, Message="changed")
    assert signature(other) != signature(fields)


def test_sns_raw_delivery() -> None:
    attrs = {"store": ["String", "x"], "bin": ["Binary", b"\x01"]}
    spec = dict(SUB, raw=True)
    props, body, _ = deliver(spec, sns_props(attrs=attrs))
    assert body == "Hello world!"
    assert props["sqs"] == {"t": 1, "s": "SNS", "a": attrs}
    props, body, _ = deliver(spec, sns_props())
    assert "a" not in props["sqs"]


@pytest.mark.parametrize(
    ("protocol", "raw", "expected"),
    [("sqs", True, "for sqs"), ("http", True, "default text"), ("https", False, "default text")],
)
def test_sns_message_structure_json(protocol: str, raw: bool, expected: str) -> None:
    messages = {"default": "default text", "sqs": "for sqs", "email": "for email"}
    spec = dict(SUB, raw=raw, protocol=protocol)
    _, body, _ = deliver(spec, sns_props(message=json.dumps(messages), messages=messages))
    text = body if raw else json.loads(body)["Message"]
    assert text == expected


# ---------------------------------------------------------------------------------------------
# invalid specs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "nope"}, "Unknown transform kind"),
        ({"kind": "input", "input": "not json", "target_id": "t1"}, "Input for target t1 is not"),
        ({"kind": "input", "input": "NaN"}, "is not valid JSON text"),
        ({"kind": "input", "input": "x" * 8193}, "is not valid JSON text"),
        ({"kind": "input_path", "path": "detail", "target_id": "t1"}, "Invalid InputPath for t"),
        ({"kind": "input_path", "path": "$..detail"}, "Invalid InputPath"),
        ({"kind": "input_path", "path": "$.a[?(@.b)]"}, "Invalid InputPath"),
        ({"kind": "input_path", "path": "$." + "a" * 300}, "Invalid InputPath"),
        (
            {"kind": "input_transformer", "paths": {"a": "$['a']"}, "template": "<a>"},
            "invalid JSON path for a",
        ),
        (
            {"kind": "input_transformer", "paths": {"a": "a.b"}, "template": "<a>"},
            "invalid JSON path",
        ),
        (
            {
                "kind": "input_transformer",
                "paths": {f"k{i}": "$.a" for i in range(101)},
                "template": '"x"',
            },
            "Member must have length less than or equal to 100",
        ),
        (
            {"kind": "input_transformer", "paths": {"aws.events.rule-arn": "$.a"}, "template": "x"},
            "reserved variable name aws.events.rule-arn",
        ),
        (
            {"kind": "input_transformer", "paths": {"AWS.x": "$.a"}, "template": "x"},
            "reserved variable name",
        ),
        (
            {"kind": "input_transformer", "paths": {"a b": "$.a"}, "template": "x"},
            "regular expression pattern",
        ),
        (
            {
                "kind": "input_transformer",
                "paths": {"a": "$.a"},
                "template": '"<a> <notdefinedkey>"',
                "target_id": "t1",
            },
            "InputTemplate for target t1 contains invalid placeholder notdefinedkey.",
        ),
        ({"kind": "input_transformer", "paths": {}}, "InputTemplate is required"),
        ({"kind": "input_transformer", "template": ""}, "greater than or equal to 1"),
        ({"kind": "input_transformer", "template": "x" * 8193}, "less than or equal to 8192"),
        (
            {"kind": "input_transformer", "paths": {"k": "$.a"}, "template": "{<k>: 1}"},
            "as an object key",
        ),
        (
            {"kind": "input_transformer", "paths": {"k": "$.a"}, "template": '{"<k>" : 1}'},
            "as an object key",
        ),
        ({"kind": "event", "group": ""}, "Invalid MessageGroupId"),
        ({"kind": "event", "group": "g" * 101}, "less than or equal to 100"),
        ({"kind": "event", "dedup": "content"}, "deduplication"),
        ({"kind": "sns", "protocol": "smtp"}, "Protocol"),
        ({"kind": "sns", "protocol": "sqs", "raw": "true"}, "RawMessageDelivery"),
    ],
)
def test_invalid_specs(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(TransformError) as exc:
        validate(spec)
    assert message in str(exc.value)


def test_placeholder_followed_by_colon_is_fine_in_text_templates() -> None:
    spec = transformer("<state>: done", EC2_PATHS)
    assert run(spec) == "RUNNING: done"


def test_transform_error_is_a_value_error() -> None:
    assert issubclass(TransformError, ValueError)


# ---------------------------------------------------------------------------------------------
# determinism and purity

ALL_SPECS = [
    {"kind": "event", "group": "g", "dedup": "event-id"},
    {"kind": "input", "input": "[1]"},
    {"kind": "input_path", "path": "$.detail"},
    {
        "kind": "input_transformer",
        "paths": EC2_PATHS,
        "template": '{"i": <instance>, "e": <aws.events.event>}',
    },
    SUB,
    dict(SUB, raw=True),
]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_same_inputs_same_bytes_and_inputs_untouched(spec: dict[str, Any]) -> None:
    props = sns_props(attrs={"k": ["String", "v"]}, subject="s") if spec["kind"] == "sns" else {}
    props = {**copy.deepcopy(PROPS), **props}
    spec_before, props_before, body = copy.deepcopy(spec), copy.deepcopy(props), EC2_BODY
    first = apply(spec, props, body)
    second = apply(copy.deepcopy(spec), copy.deepcopy(props), bytes(body))
    assert first == second
    assert spec == spec_before
    assert props == props_before
    assert first is not None
    assert first[0] is not props
    first[0].get("headers", {})["new"] = 1
    assert props == props_before  # the copy shares nothing mutable with the input


# ---------------------------------------------------------------------------------------------
# hypothesis

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.text(alphabet="abc-_XY.<>\"' $[]*0", min_size=0, max_size=12)
garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=15,
)
spec_like = st.fixed_dictionaries(
    {"kind": st.sampled_from(["event", "input", "input_path", "input_transformer", "sns", "x"])},
    optional={
        "input": st.text(max_size=30) | garbage,
        "path": st.from_regex(r"\$(\.[a-z]{1,3}|\[[0-9]\]|\[\*\])*", fullmatch=True) | names,
        "paths": st.dictionaries(names, names | garbage, max_size=4) | garbage,
        "template": st.text(alphabet='<>{}[]"\\:, abs.-', max_size=40) | garbage,
        "group": garbage,
        "dedup": st.just("event-id") | garbage,
        "raw": garbage,
        "protocol": st.sampled_from(["sqs", "http", "https", "email"]) | garbage,
        "target_id": garbage,
        "rule_arn": garbage,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(spec_like, garbage))
def test_validate_raises_only_transform_error(spec: Any) -> None:
    try:
        validate(spec)
    except TransformError:
        pass


@settings(max_examples=400, deadline=None)
@given(spec_like, json_values, st.dictionaries(st.text(max_size=5), json_values, max_size=3))
def test_apply_on_valid_specs_never_raises(spec: dict[str, Any], event: Any, attrs: Any) -> None:
    try:
        validate(spec)
    except TransformError:
        return
    body = json.dumps(event).encode()
    props = {
        "delivery_mode": 2,
        "message_id": "m",
        "eb": {"t": 1, "ingested": "2024-01-01T00:00:00Z"},
        "sns": {
            "id": "i",
            "topic": "t",
            "subject": None,
            "message": "m",
            "messages": None,
            "ts": "2024-01-01T00:00:00.000Z",
            "attrs": {k: ["String", json.dumps(v)] for k, v in attrs.items()},
            "seq": None,
            "group": None,
            "dedup": None,
        },
    }
    before = copy.deepcopy(props)
    res = apply(spec, props, body)
    assert props == before
    assert res == apply(spec, copy.deepcopy(props), body)
    if res is not None:
        assert isinstance(res[1], bytes)
