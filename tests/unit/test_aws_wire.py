"""The AWS wire codecs against an independent witness, botocore itself: requests serialized by
botocore's JSON and query serializers must decode to the params that went in, and replies
encoded here must parse with botocore's parsers to the output that went in. Garbage never
raises anything but ``AwsError``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.model import OperationModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.aws import wire_json, wire_query
from protocols.aws.errors import AwsError
from protocols.aws.http import AwsHttpServer, AwsRequest
from protocols.aws.model import query_error_code, query_model, service_model
from protocols.aws.sigv4 import authorization_credential

SQS_NS = "http://queue.amazonaws.com/doc/2012-11-05/"


def json_op(name: str) -> OperationModel:
    return service_model("sqs").operation_model(name)


def query_op(name: str) -> OperationModel:
    return query_model("sqs").operation_model(name)


def via_json(name: str, params: dict[str, Any]) -> dict[str, Any]:
    op = json_op(name)
    request = create_serializer("json").serialize_to_request(params, op)
    return wire_json.decode_request(op, request["body"])


def query_body(name: str, params: dict[str, Any]) -> bytes:
    request = create_serializer("query").serialize_to_request(params, query_op(name))
    return urlencode(request["body"], doseq=True).encode()


def via_query(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return wire_query.decode_request(
        query_op(name), wire_query.parse_form(query_body(name, params))
    )


def parsed_json(name: str, output: dict[str, Any]) -> dict[str, Any]:
    op = json_op(name)
    body = wire_json.encode_response(op, output)
    parsed = create_parser("json").parse(
        {"body": body, "headers": {}, "status_code": 200}, op.output_shape
    )
    parsed.pop("ResponseMetadata", None)
    return dict(parsed)


def parsed_query(name: str, output: dict[str, Any]) -> dict[str, Any]:
    op = query_op(name)
    body = wire_query.encode_response(op, output, "req-1", SQS_NS)
    parsed = create_parser("query").parse(
        {"body": body, "headers": {}, "status_code": 200}, op.output_shape
    )
    assert parsed.pop("ResponseMetadata")["RequestId"] == "req-1"
    return dict(parsed)


QUEUE = "http://localhost:4566/000000000000/q1"

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("SendMessage", {"QueueUrl": QUEUE, "MessageBody": "hello"}),
    (
        "SendMessage",
        {
            "QueueUrl": QUEUE,
            "MessageBody": '<a & b> "é" \u4e2d',
            "DelaySeconds": 5,
            "MessageAttributes": {
                "s": {"DataType": "String", "StringValue": "v"},
                "n": {"DataType": "Number.int", "StringValue": "12"},
                "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10"},
            },
            "MessageSystemAttributes": {
                "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}
            },
            "MessageDeduplicationId": "d1",
            "MessageGroupId": "g1",
        },
    ),
    (
        "SendMessageBatch",
        {
            "QueueUrl": QUEUE,
            "Entries": [
                {
                    "Id": "1",
                    "MessageBody": "one",
                    "MessageAttributes": {
                        "list": {
                            "DataType": "String",
                            "StringListValues": ["x", "y"],
                            "BinaryListValues": [b"\x01", b"\x02\x03"],
                        },
                        "bin": {"DataType": "Binary", "BinaryValue": b"bytes"},
                    },
                },
                {"Id": "2", "MessageBody": "two", "DelaySeconds": 0},
            ],
        },
    ),
    (
        "ReceiveMessage",
        {
            "QueueUrl": QUEUE,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["a", "b.*"],
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 0,
            "VisibilityTimeout": 30,
        },
    ),
    ("GetQueueAttributes", {"QueueUrl": QUEUE, "AttributeNames": ["VisibilityTimeout", "All"]}),
    ("GetQueueAttributes", {"QueueUrl": QUEUE, "AttributeNames": []}),
    (
        "CreateQueue",
        {
            "QueueName": "q1.fifo",
            "Attributes": {"FifoQueue": "true", "VisibilityTimeout": "60"},
            "tags": {"team": "a b", "env": "dev"},
        },
    ),
    ("SetQueueAttributes", {"QueueUrl": QUEUE, "Attributes": {"Policy": '{"a": [1, "<x>"]}'}}),
    ("TagQueue", {"QueueUrl": QUEUE, "Tags": {"k1": "v1", "k2": ""}}),
    ("UntagQueue", {"QueueUrl": QUEUE, "TagKeys": ["k1", "k2"]}),
    ("ListQueues", {"QueueNamePrefix": "q", "MaxResults": 5, "NextToken": "t"}),
    ("ListQueues", {}),
    (
        "DeleteMessageBatch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "a", "ReceiptHandle": "r+/=="}]},
    ),
    (
        "ChangeMessageVisibilityBatch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "a", "ReceiptHandle": "r", "VisibilityTimeout": 9}]},
    ),
    (
        "AddPermission",
        {
            "QueueUrl": QUEUE,
            "Label": "l",
            "AWSAccountIds": ["111122223333"],
            "Actions": ["SendMessage", "ReceiveMessage"],
        },
    ),
]


@pytest.mark.parametrize(("name", "params"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_round_trip_json(name: str, params: dict[str, Any]) -> None:
    assert via_json(name, params) == params


@pytest.mark.parametrize(("name", "params"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_round_trip_query(name: str, params: dict[str, Any]) -> None:
    assert via_query(name, params) == params


def test_query_wire_names_are_the_legacy_sqs_ones() -> None:
    """What the SQS query API documents: AttributeName.N, MessageAttribute.N.Name/Value.*,
    Attribute.N.Name/Value, Tag.N.Key/Value, SendMessageBatchRequestEntry.N.*."""
    form = wire_query.parse_form(query_body(*REQUESTS[2]))
    assert form["SendMessageBatchRequestEntry.1.MessageAttribute.1.Name"] == "list"
    assert form["SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringListValue.1"] == "x"
    assert form["SendMessageBatchRequestEntry.1.MessageAttribute.2.Value.BinaryValue"] == "Ynl0ZXM="
    form = wire_query.parse_form(query_body(*REQUESTS[6]))
    assert form["Attribute.1.Name"] == "FifoQueue" and form["Attribute.1.Value"] == "true"
    assert form["Tag.1.Key"] == "team" and form["Tag.1.Value"] == "a b"
    form = wire_query.parse_form(query_body(*REQUESTS[3]))
    assert form["AttributeName.1"] == "All"
    assert form["MessageAttributeName.2"] == "b.*"


def test_query_hand_written_form_as_old_sdks_send_it() -> None:
    form = wire_query.parse_form(
        "Action=SendMessage&Version=2012-11-05&QueueUrl="
        + QUEUE.replace(":", "%3A")
        + "&MessageBody=hi%20there&MessageAttribute.1.Name=a&MessageAttribute.1.Value.DataType="
        "String&MessageAttribute.1.Value.StringValue=x%2By&NewParameterFromTheFuture=1"
    )
    params = wire_query.decode_request(query_op("SendMessage"), form)
    assert params == {
        "QueueUrl": QUEUE,
        "MessageBody": "hi there",
        "MessageAttributes": {"a": {"DataType": "String", "StringValue": "x+y"}},
    }


def test_receive_message_system_attribute_names_share_the_attribute_name_wire_name() -> None:
    params = via_query(
        "ReceiveMessage", {"QueueUrl": QUEUE, "MessageSystemAttributeNames": ["SenderId"]}
    )
    assert params["AttributeNames"] == ["SenderId"]
    assert via_json("ReceiveMessage", {"QueueUrl": QUEUE, "MessageSystemAttributeNames": ["All"]})


OUTPUTS: list[tuple[str, dict[str, Any]]] = [
    ("SendMessage", {"MessageId": "m-1", "MD5OfMessageBody": "abc", "SequenceNumber": "1"}),
    (
        "ReceiveMessage",
        {
            "Messages": [
                {
                    "MessageId": "m-1",
                    "ReceiptHandle": "rh+/=",
                    "MD5OfBody": "0" * 32,
                    "Body": "line1\r\nline2\t<&>'\"",
                    "Attributes": {"SenderId": "AIDA", "SentTimestamp": "1700000000000"},
                    "MD5OfMessageAttributes": "1" * 32,
                    "MessageAttributes": {
                        "s": {"DataType": "String", "StringValue": "ü"},
                        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
                    },
                },
                {"MessageId": "m-2", "ReceiptHandle": "rh2", "MD5OfBody": "x", "Body": "b"},
            ]
        },
    ),
    ("ReceiveMessage", {}),
    ("GetQueueAttributes", {"Attributes": {"VisibilityTimeout": "30", "QueueArn": "arn:x"}}),
    ("ListQueues", {"QueueUrls": [QUEUE, QUEUE + "2"], "NextToken": "n"}),
    ("ListQueueTags", {"Tags": {"a": "1", "b": "<2>"}}),
    ("CreateQueue", {"QueueUrl": QUEUE}),
    ("GetQueueUrl", {"QueueUrl": QUEUE}),
    (
        "SendMessageBatch",
        {
            "Successful": [{"Id": "1", "MessageId": "m", "MD5OfMessageBody": "d"}],
            "Failed": [
                {"Id": "2", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "x"},
                {"Id": "3", "SenderFault": False, "Code": "InternalError"},
            ],
        },
    ),
    ("ListDeadLetterSourceQueues", {"queueUrls": [QUEUE]}),
    (
        "ListMessageMoveTasks",
        {"Results": [{"TaskHandle": "t", "Status": "RUNNING", "StartedTimestamp": 17}]},
    ),
]


@pytest.mark.parametrize(("name", "output"), OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_response_round_trip_json(name: str, output: dict[str, Any]) -> None:
    assert parsed_json(name, output) == output


@pytest.mark.parametrize(("name", "output"), OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_response_round_trip_query(name: str, output: dict[str, Any]) -> None:
    assert parsed_query(name, output) == output


def test_response_drops_unknown_members_and_none() -> None:
    assert parsed_json("GetQueueUrl", {"QueueUrl": QUEUE, "Extra": 1, "Other": None}) == {
        "QueueUrl": QUEUE
    }
    assert parsed_query("SendMessage", {"MessageId": "m", "SequenceNumber": None}) == {
        "MessageId": "m"
    }


def test_timestamps_encode_as_epoch_and_iso() -> None:
    from botocore.model import ShapeResolver

    shape = ShapeResolver({"T": {"type": "timestamp"}}).get_shape_by_name("T")
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC)
    assert wire_query.encode_scalar(when, shape) == "2024-01-02T03:04:05.250Z"
    assert wire_query.decode_scalar("2024-01-02T03:04:05.250Z", shape, "T") == when
    assert wire_query.decode_scalar("1704164645.25", shape, "T") == when


# -- errors --------------------------------------------------------------------------------------


class Raiser:
    name = "sqs"
    model_name = "sqs"
    json_target_prefix = "AmazonSQS"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.seen: list[AwsRequest] = []

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        self.seen.append(req)
        raise self.error


async def json_call(server: AwsHttpServer, action: str, body: bytes) -> dict[str, Any]:
    headers = {"x-amz-target": f"AmazonSQS.{action}", "host": "localhost:4566"}
    reply = await server.dispatch("POST", "/", headers, body, "rid-1")
    known = action in service_model("sqs").operation_names
    parsed = create_parser("json").parse(
        {"body": reply.body, "headers": dict(reply.headers), "status_code": reply.status},
        json_op(action).output_shape if known else None,
    )
    parsed["status"] = reply.status
    return dict(parsed)


async def query_call(server: AwsHttpServer, body: str) -> dict[str, Any]:
    headers = {"content-type": "application/x-www-form-urlencoded", "host": "localhost:4566"}
    reply = await server.dispatch("POST", "/", headers, body.encode(), "rid-2")
    assert reply.content_type == "text/xml"
    parsed = create_parser("query").parse(
        {"body": reply.body, "headers": dict(reply.headers), "status_code": reply.status}, None
    )
    parsed["status"] = reply.status
    return dict(parsed)


async def test_json_error_document_is_what_botocore_expects_of_sqs() -> None:
    server = AwsHttpServer(
        [Raiser(AwsError("QueueDoesNotExist", "The specified queue does not exist."))]
    )
    body = json.dumps({"QueueName": "nope"}).encode()
    parsed = await json_call(server, "GetQueueUrl", body)
    assert parsed["status"] == 400
    assert parsed["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert parsed["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    assert parsed["Error"]["Type"] == "Sender"
    assert parsed["Error"]["Message"] == "The specified queue does not exist."
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-1"


async def test_query_error_document() -> None:
    server = AwsHttpServer([Raiser(AwsError("QueueDoesNotExist", "gone <&>"))])
    parsed = await query_call(server, "Action=GetQueueUrl&QueueName=nope")
    assert parsed["status"] == 400
    assert parsed["Error"] == {
        "Type": "Sender",
        "Code": "AWS.SimpleQueueService.NonExistentQueue",
        "Message": "gone <&>",
        "Detail": None,
    }
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-2"


async def test_common_codes_and_receiver_faults() -> None:
    server = AwsHttpServer(
        [Raiser(AwsError("ServiceUnavailable", "busy", status=503, sender_fault=False))]
    )
    parsed = await json_call(server, "ListQueues", b"{}")
    assert (parsed["status"], parsed["Error"]["Code"], parsed["Error"]["Type"]) == (
        503,
        "ServiceUnavailable",
        "Receiver",
    )
    parsed = await query_call(server, "Action=ListQueues")
    assert (parsed["status"], parsed["Error"]["Code"]) == (503, "ServiceUnavailable")


def test_query_error_codes_from_the_model() -> None:
    assert query_error_code("sqs", "QueueDoesNotExist") == "AWS.SimpleQueueService.NonExistentQueue"
    assert query_error_code("sqs", "QueueNameExists") == "QueueAlreadyExists"
    assert query_error_code("sqs", "ReceiptHandleIsInvalid") == "ReceiptHandleIsInvalid"
    assert query_error_code("sqs", "InvalidParameterValue") == "InvalidParameterValue"
    assert query_error_code("sns", "NotFound") == "NotFound"


async def test_missing_and_invalid_parameters() -> None:
    server = AwsHttpServer([Raiser(AssertionError("handler must not be called"))])
    parsed = await json_call(server, "SendMessage", json.dumps({"QueueUrl": QUEUE}).encode())
    assert parsed["Error"]["Code"] == "MissingParameter"
    assert parsed["Error"]["Message"] == "The request must contain the parameter MessageBody."
    parsed = await query_call(server, f"Action=SendMessage&QueueUrl={QUEUE}")
    assert parsed["Error"]["Code"] == "MissingParameter"
    assert parsed["Error"]["Message"] == "The request must contain the parameter MessageBody."
    body = json.dumps({"QueueUrl": QUEUE, "MaxNumberOfMessages": "ten"}).encode()
    parsed = await json_call(server, "ReceiveMessage", body)
    assert parsed["Error"]["Code"] == "InvalidParameterValue"
    parsed = await query_call(
        server, f"Action=ReceiveMessage&QueueUrl={QUEUE}&MaxNumberOfMessages=x"
    )
    assert parsed["Error"]["Code"] == "InvalidParameterValue"
    assert "MaxNumberOfMessages" in parsed["Error"]["Message"]
    parsed = await query_call(
        server, f"Action=SendMessageBatch&QueueUrl={QUEUE}&SendMessageBatchRequestEntry.1.Id=a"
    )
    assert parsed["Error"]["Message"] == (
        "The request must contain the parameter SendMessageBatchRequestEntry.1.MessageBody."
    )


async def test_unknown_actions() -> None:
    server = AwsHttpServer([Raiser(AssertionError("handler must not be called"))])
    parsed = await json_call(server, "Frobnicate", b"{}")
    assert (parsed["status"], parsed["Error"]["Code"]) == (400, "UnknownOperationException")
    parsed = await query_call(server, "Action=Frobnicate")
    assert (parsed["status"], parsed["Error"]["Code"]) == (400, "InvalidAction")
    parsed = await query_call(server, "QueueName=x")
    assert (parsed["status"], parsed["Error"]["Code"]) == (400, "MissingAction")


async def test_query_service_from_credential_scope_and_path() -> None:
    service = Raiser(AwsError("InvalidAddress", "x", status=404))
    server = AwsHttpServer([service])
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "authorization": "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-3/sqs/aws4_request, "
        "SignedHeaders=host, Signature=00",
        "host": "h:1",
    }
    reply = await server.dispatch(
        "POST", "/000000000000/q1?Action=PurgeQueue", headers, b"QueueUrl=u", "r"
    )
    assert reply.status == 404
    req = service.seen[0]
    assert (req.service, req.action, req.protocol, req.region, req.access_key) == (
        "sqs",
        "PurgeQueue",
        "query",
        "eu-west-3",
        "AKID",
    )
    assert (req.path, req.host, req.params) == ("/000000000000/q1", "h:1", {"QueueUrl": "u"})
    cred = authorization_credential(headers)
    assert cred is not None and cred.service == "sqs"


# -- property tests ------------------------------------------------------------------------------

# The characters SQS accepts in a message (and XML 1.0 can carry).
sqs_text = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_characters=[chr(c) for c in range(0x20) if c not in (0x9, 0xA, 0xD)]
        + ["\ufffe", "\uffff"],
    ),
    max_size=40,
)
attr_name = st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=12)
attr_value = st.one_of(
    st.builds(lambda s: {"DataType": "String", "StringValue": s}, sqs_text),
    st.builds(lambda b: {"DataType": "Binary", "BinaryValue": b}, st.binary(max_size=20)),
    st.builds(
        lambda ss, bs: {"DataType": "String", "StringListValues": ss, "BinaryListValues": bs},
        st.lists(sqs_text, min_size=1, max_size=3),
        st.lists(st.binary(max_size=5), min_size=1, max_size=3),
    ),
)
entry = st.fixed_dictionaries(
    {"Id": attr_name, "MessageBody": sqs_text},
    optional={
        "DelaySeconds": st.integers(0, 900),
        "MessageAttributes": st.dictionaries(attr_name, attr_value, min_size=1, max_size=3),
        "MessageGroupId": sqs_text,
    },
)
batch = st.builds(
    lambda entries: {"QueueUrl": QUEUE, "Entries": entries},
    st.lists(entry, min_size=1, max_size=4),
)


@settings(max_examples=150)
@given(batch)
def test_send_message_batch_round_trips_both_codecs(params: dict[str, Any]) -> None:
    assert via_json("SendMessageBatch", params) == params
    assert via_query("SendMessageBatch", params) == params


message = st.fixed_dictionaries(
    {"MessageId": attr_name, "ReceiptHandle": sqs_text, "Body": sqs_text},
    optional={
        # An empty flattened map has no XML form at all, so the property starts at one entry.
        "Attributes": st.dictionaries(
            st.sampled_from(["SenderId", "SentTimestamp", "ApproximateReceiveCount"]),
            sqs_text,
            min_size=1,
        ),
        "MessageAttributes": st.dictionaries(attr_name, attr_value, min_size=1, max_size=3),
    },
)


@settings(max_examples=150)
@given(st.lists(message, min_size=1, max_size=4))
def test_receive_message_output_round_trips_both_codecs(messages: list[dict[str, Any]]) -> None:
    output = {"Messages": messages}
    assert parsed_json("ReceiveMessage", output) == output
    assert parsed_query("ReceiveMessage", output) == output


def _only_aws_errors(call: Any) -> None:
    try:
        call()
    except AwsError:
        pass


OPS = ["SendMessage", "SendMessageBatch", "ReceiveMessage", "CreateQueue", "TagQueue"]


@settings(max_examples=300)
@given(st.sampled_from(OPS), st.binary(max_size=200))
def test_garbage_json_bodies_raise_only_aws_errors(name: str, body: bytes) -> None:
    _only_aws_errors(lambda: wire_json.decode_request(json_op(name), body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    st.sampled_from(OPS),
    st.dictionaries(
        st.sampled_from(
            [
                "QueueUrl",
                "MessageBody",
                "Entries",
                "MessageAttributes",
                "Attributes",
                "tags",
                "Tags",
                "DelaySeconds",
                "MaxNumberOfMessages",
                "QueueName",
                "AttributeNames",
            ]
        ),
        json_values,
    ),
)
def test_wrongly_typed_json_raises_only_aws_errors(name: str, doc: dict[str, Any]) -> None:
    _only_aws_errors(lambda: wire_json.decode_request(json_op(name), json.dumps(doc).encode()))


form_keys = st.lists(
    st.sampled_from(
        [
            "QueueUrl",
            "MessageBody",
            "Attribute",
            "MessageAttribute",
            "Value",
            "Name",
            "1",
            "2",
            "0",
            "StringValue",
            "BinaryValue",
            "DataType",
            "Tag",
            "Key",
            "AttributeName",
            "entry",
            "SendMessageBatchRequestEntry",
            "Id",
            "DelaySeconds",
            "x",
            "",
        ]
    ),
    min_size=1,
    max_size=5,
).map(".".join)


@settings(max_examples=300)
@given(st.sampled_from(OPS), st.dictionaries(form_keys, st.text(max_size=6), max_size=8))
def test_garbage_forms_raise_only_aws_errors(name: str, form: dict[str, str]) -> None:
    _only_aws_errors(lambda: wire_query.decode_request(query_op(name), form))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_garbage_form_bytes_raise_only_aws_errors(data: bytes) -> None:
    def call() -> None:
        wire_query.decode_request(query_op("SendMessageBatch"), wire_query.parse_form(data))

    _only_aws_errors(call)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"null", b"\xff\xfe", b'{"QueueUrl": 1}', b"[" * 100000, b'"x"', b"1e999"],
)
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(AwsError) as info:
        wire_json.decode_request(json_op("SendMessage"), body)
    assert info.value.code in ("SerializationException", "InvalidParameterValue")


def test_invalid_utf8_form() -> None:
    with pytest.raises(AwsError) as info:
        wire_query.parse_form(b"Action=SendMessage&MessageBody=%ff%fe")
    assert info.value.code == "MalformedQueryString"
