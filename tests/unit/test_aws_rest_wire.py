"""The REST-JSON codec and routing against an independent witness, botocore itself: every
operation of the Schema Registry model (``schemas``), serialized by botocore's
``RestJSONSerializer`` and sent the way botocore sends it, must route to that operation and
decode to the params that went in; replies encoded here must parse with botocore's
``RestJSONParser`` to the output that went in, with the modelled status and error codes. Other
rest-json models (Lambda's headers, payload and status code members, MediaStore Data's greedy
labels) check what schemas does not use. Garbage never raises anything but ``AwsError`` and never
reaches a handler as a crash."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.awsrequest import HeadersDict, prepare_request_dict
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.aws import wire_rest
from protocols.aws.errors import AwsError
from protocols.aws.http import AwsHttpServer, AwsRequest, _Reply
from protocols.aws.model import service_model

SCHEMAS = service_model("schemas")
WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
# What a label may hold: botocore percent-encodes all of it, "/" included.
AWKWARD = "a b/c:d%e?f#g&h=i+j~k é"


def scope(service: str) -> dict[str, str]:
    return {
        "authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/{service}/"
        "aws4_request, SignedHeaders=host, Signature=00",
        "host": "localhost:4566",
    }


def sample(shape: Shape, name: str, *, label: bool = False, depth: int = 0) -> Any:
    """A deterministic value for ``shape``: every member filled, labels awkward."""
    kind = shape.type_name
    if kind == "structure":
        if shape.is_document_type:
            return {"doc": [1, "x"]}
        return {
            member_name: sample(member, member_name, depth=depth + 1)
            for member_name, member in shape.members.items()
            if depth < 3
        }
    if kind == "list":
        return [sample(shape.member, name, depth=depth + 1) for _ in range(2)]
    if kind == "map":
        return {"k1": sample(shape.value, name, depth=depth + 1), "k 2": sample(shape.value, name)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        text = f"{AWKWARD}-{name}" if label else f"v-{name} é"
        text = text.ljust(shape.metadata.get("min", 0), "x")
        return text[: shape.metadata.get("max", len(text))]
    if kind in ("integer", "long"):
        return max(shape.metadata.get("min", 42), min(42, shape.metadata.get("max", 42)))
    if kind == "boolean":
        return True
    if kind in ("float", "double"):
        return 1.5
    if kind == "blob":
        return b"\x00\xffbin"
    if kind == "timestamp":
        return WHEN
    raise AssertionError(kind)


def sample_input(op: OperationModel) -> dict[str, Any]:
    shape = op.input_shape
    if shape is None:
        return {}
    return {
        name: sample(member, name, label=member.serialization.get("location") == "uri")
        for name, member in shape.members.items()
    }


def sample_output(op: OperationModel) -> dict[str, Any]:
    shape = op.output_shape
    if shape is None:
        return {}
    return {
        name: sample(member, name)
        for name, member in shape.members.items()
        if member.serialization.get("location") != "statusCode"
    }


def wire(
    op: OperationModel, params: dict[str, Any], *, validate: bool = True
) -> tuple[str, str, dict[str, str], bytes]:
    """What botocore puts on the wire for ``params``: method, path?query, headers, body."""
    request = create_serializer("rest-json", include_validation=validate).serialize_to_request(
        params, op
    )
    prepare_request_dict(request, endpoint_url="http://localhost:4566")
    url = urlsplit(request["url"])
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {str(k).lower(): str(v) for k, v in request["headers"].items()}
    body = request["body"]
    return request["method"], target, headers, body if isinstance(body, bytes) else body.encode()


def via_router(
    model: ServiceModel, op: OperationModel, params: dict[str, Any], *, validate: bool = True
) -> dict[str, Any]:
    method, target, headers, body = wire(op, params, validate=validate)
    path, _, query = target.partition("?")
    found = wire_rest.RestRouter(model).match(method, path, query)
    assert found is not None, target
    assert found.operation.name == op.name
    return wire_rest.decode_request(found.operation, found.labels, query, headers, body)


def parsed(op: OperationModel, reply: wire_rest.RestReply | _Reply) -> dict[str, Any]:
    headers = HeadersDict(dict(reply.headers))
    headers["content-type"] = reply.content_type
    result = create_parser("rest-json").parse(
        {"body": reply.body, "headers": headers, "status_code": reply.status}, op.output_shape
    )
    return dict(result)


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMAS.operation_names)
def test_every_schemas_request_routes_and_decodes_to_its_params(name: str) -> None:
    op = SCHEMAS.operation_model(name)
    params = sample_input(op)
    assert via_router(SCHEMAS, op, params) == params


def test_all_31_schemas_operations_are_routed() -> None:
    router = wire_rest.RestRouter(SCHEMAS)
    assert len(SCHEMAS.operation_names) == 31
    assert {route.operation.name for route in router.routes} == set(SCHEMAS.operation_names)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ListRegistries", {}),
        ("ListRegistries", {"Limit": 0, "Scope": "LOCAL"}),
        ("CreateDiscoverer", {"SourceArn": "arn:aws:events:us-east-1:1:event-bus/default"}),
        ("CreateRegistry", {"RegistryName": "r"}),
        ("CreateRegistry", {"RegistryName": "..", "Description": ""}),
        ("UntagResource", {"ResourceArn": "arn:x", "TagKeys": ["a,b", "", "a"]}),
        ("DescribeSchema", {"RegistryName": "r", "SchemaName": "search"}),
        ("SearchSchemas", {"RegistryName": "name", "Keywords": "k"}),
        ("PutResourcePolicy", {"Policy": json.dumps({"Version": "2012-10-17"})}),
        ("GetDiscoveredSchema", {"Events": ['{"a": 1}'], "Type": "OpenApi3"}),
    ],
)
def test_schemas_request_edge_cases(name: str, params: dict[str, Any]) -> None:
    op = SCHEMAS.operation_model(name)
    assert via_router(SCHEMAS, op, params) == params


def test_an_empty_query_list_is_absent() -> None:
    # An empty list has no query form, so a required one is then missing.
    op = SCHEMAS.operation_model("UntagResource")
    with pytest.raises(AwsError) as info:
        via_router(SCHEMAS, op, {"ResourceArn": "arn:x", "TagKeys": []})
    assert "Value null at 'TagKeys'" in info.value.message


def test_lambda_headers_query_and_blob_payload() -> None:
    model = service_model("lambda")
    op = model.operation_model("Invoke")
    params = {
        "FunctionName": "arn:aws:lambda:us-east-1:1:function:f",
        "InvocationType": "RequestResponse",
        "LogType": "Tail",
        "ClientContext": "e30=",
        "Payload": b'{"x": 1}\x00\xff',
        "Qualifier": "$LATEST",
    }
    assert via_router(model, op, params) == params
    op = model.operation_model("ListFunctions")
    params = {"MasterRegion": "ALL", "FunctionVersion": "ALL", "MaxItems": 10}
    assert via_router(model, op, params) == params


def test_greedy_labels_of_mediastore_data() -> None:
    model = service_model("mediastore-data")
    for name in ("PutObject", "GetObject", "DeleteObject", "DescribeObject"):
        op = model.operation_model(name)
        params: dict[str, Any] = {"Path": "folder/sub folder/ü.mp4"}
        if name == "PutObject":
            params.update(Body=b"\x00data", ContentType="video/mp4", StorageClass="TEMPORAL")
        assert via_router(model, op, params) == params
    op = model.operation_model("ListItems")
    assert via_router(model, op, {"Path": "a/b", "MaxResults": 3}) == {
        "Path": "a/b",
        "MaxResults": 3,
    }


# -- routing -------------------------------------------------------------------------------------


def synthetic(prefix: str, operations: dict[str, tuple[str, str]]) -> ServiceModel:
    """A rest-json model whose operations are ``name: (method, requestUri)``, each with a
    string member per label."""
    shapes: dict[str, Any] = {"S": {"type": "string"}}
    ops: dict[str, Any] = {}
    for name, (method, uri) in operations.items():
        members = {}
        for label in [part[1:-1].rstrip("+") for part in uri.split("/") if part.startswith("{")]:
            members[label] = {"shape": "S", "location": "uri", "locationName": label}
        shapes[f"{name}Request"] = {
            "type": "structure",
            "required": list(members),
            "members": members,
        }
        ops[name] = {
            "name": name,
            "http": {"method": method, "requestUri": uri},
            "input": {"shape": f"{name}Request"},
        }
    description = {
        "version": "2.0",
        "metadata": {
            "apiVersion": "2020-01-01",
            "endpointPrefix": prefix,
            "protocol": "rest-json",
            "signingName": prefix,
            "serviceId": prefix,
        },
        "operations": ops,
        "shapes": shapes,
    }
    return ServiceModel(description, service_name=prefix)


ROUTES = synthetic(
    "things",
    {
        "GetThing": ("GET", "/things/{id}"),
        "GetSpecial": ("GET", "/things/special"),
        "GetVersions": ("GET", "/things/{id}?versions"),
        "GetV2": ("GET", "/things/{id}?format=v2"),
        "GetFile": ("GET", "/files/{key+}"),
        "GetFileMeta": ("GET", "/files/{key+}/meta"),
        "GetInFolder": ("GET", "/files/{folder}/{name}"),
        "PutThing": ("PUT", "/things/{id}"),
    },
)


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/things/t1", ("GetThing", {"id": "t1"})),
        ("GET", "/things/special", ("GetSpecial", {})),
        ("GET", "/things/specia%6C", ("GetSpecial", {})),
        ("GET", "/things/a%2Fb", ("GetThing", {"id": "a/b"})),
        ("GET", "/things/t1?versions", ("GetVersions", {"id": "t1"})),
        ("GET", "/things/t1?versions=&x=1", ("GetVersions", {"id": "t1"})),
        ("GET", "/things/t1?format=v2", ("GetV2", {"id": "t1"})),
        ("GET", "/things/t1?format=v3", ("GetThing", {"id": "t1"})),
        ("PUT", "/things/t1", ("PutThing", {"id": "t1"})),
        ("GET", "/files/a", ("GetFile", {"key": "a"})),
        ("GET", "/files/a/b/c", ("GetFile", {"key": "a/b/c"})),
        ("GET", "/files/a/b", ("GetInFolder", {"folder": "a", "name": "b"})),
        ("GET", "/files/a/b/meta", ("GetFileMeta", {"key": "a/b"})),
        ("GET", "/files/a/meta", ("GetInFolder", {"folder": "a", "name": "meta"})),
        ("GET", "/files/x%2Fy/meta", ("GetInFolder", {"folder": "x/y", "name": "meta"})),
        ("GET", "/files/../../etc", ("GetFile", {"key": "../../etc"})),
        ("GET", "/things/..%2F..", ("GetThing", {"id": "../.."})),
        ("GET", "/things/", None),
        ("GET", "/things//", None),
        ("GET", "/things", None),
        ("GET", "/files/", None),
        ("DELETE", "/things/t1", None),
        ("GET", "/things/%ff", None),
        ("GET", "things/t1", None),
        ("GET", "/things/t1/", None),
    ],
)
def test_routing_picks_the_most_specific_match(
    method: str, target: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    path, _, query = target.partition("?")
    found = wire_rest.RestRouter(ROUTES).match(method, path, query)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.operation.name, found.labels) == expected


class Recorder:
    """A rest-json service that records its requests and answers with sample output."""

    protocol = "rest-json"

    def __init__(self, name: str = "schemas", model: str = "schemas") -> None:
        self.name = name
        self.model_name = model
        self.seen: list[AwsRequest] = []
        self.error: Exception | None = None

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        self.seen.append(req)
        if self.error is not None:
            raise self.error
        return sample_output(service_model(self.model_name).operation_model(req.action))


class Sqs:
    name = "sqs"
    model_name = "sqs"
    json_target_prefix = "AmazonSQS"

    def __init__(self) -> None:
        self.seen: list[AwsRequest] = []

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        self.seen.append(req)
        return {"QueueUrl": "http://h/0/q"} if req.action == "GetQueueUrl" else {}


async def send(
    server: AwsHttpServer,
    op: OperationModel,
    params: dict[str, Any],
    *,
    service: str | None = "schemas",
) -> _Reply:
    method, target, headers, body = wire(op, params)
    if service is not None:
        headers.update(scope(service))
    return await server.dispatch(method, target, headers, body, "rid-1")


@pytest.mark.parametrize("name", SCHEMAS.operation_names)
async def test_every_schemas_operation_through_the_server(name: str) -> None:
    service = Recorder()
    server = AwsHttpServer([Sqs(), service])
    op = SCHEMAS.operation_model(name)
    params = sample_input(op)
    reply = await send(server, op, params)
    req = service.seen[-1]
    assert (req.service, req.action, req.protocol, req.params) == (
        "schemas",
        name,
        "rest-json",
        params,
    )
    assert (req.access_key, req.region) == ("AKID", "us-east-1")
    assert reply.status == op.http.get("responseCode", 200)
    expected = sample_output(op)
    if op.has_streaming_output:
        # The client reads a streamed payload as it is: the raw bytes.
        assert reply.body == expected["Body"]
        assert reply.content_type == "application/octet-stream"
        return
    result = parsed(op, reply)
    assert result.pop("ResponseMetadata")["RequestId"] == "rid-1"
    if reply.status == 204:
        assert reply.body == b""
        assert result == {}
    else:
        assert result == expected


async def test_unsigned_requests_route_by_path_too() -> None:
    service = Recorder()
    server = AwsHttpServer([Sqs(), service])
    op = SCHEMAS.operation_model("DescribeRegistry")
    reply = await send(server, op, {"RegistryName": "r1"}, service=None)
    assert reply.status == 200
    assert service.seen[-1].params == {"RegistryName": "r1"}


# -- replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMAS.operation_names)
def test_every_schemas_reply_parses_with_botocore(name: str) -> None:
    op = SCHEMAS.operation_model(name)
    output = sample_output(op)
    reply = wire_rest.encode_response(op, output)
    assert reply.status == op.http.get("responseCode", 200)
    if op.has_streaming_output:
        assert reply.body == output["Body"]
        return
    result = parsed(op, reply)
    result.pop("ResponseMetadata")
    assert result == (output if reply.status != 204 else {})


def test_reply_headers_status_code_and_payload_members() -> None:
    op = service_model("lambda").operation_model("Invoke")
    output = {
        "StatusCode": 202,
        "FunctionError": "Unhandled",
        "LogResult": "bG9n",
        "ExecutedVersion": "$LATEST",
        "Payload": b'{"ok": true}',
    }
    reply = wire_rest.encode_response(op, output)
    assert reply.status == 202
    assert reply.body == b'{"ok": true}'
    result = parsed(op, reply)
    result.pop("ResponseMetadata")
    assert result == {**output, "Payload": '{"ok": true}'}
    op = service_model("mediastore-data").operation_model("DescribeObject")
    reply = wire_rest.encode_response(
        op, {"ETag": "e", "ContentType": "video/mp4", "LastModified": WHEN, "CacheControl": "x"}
    )
    assert reply.content_type == "video/mp4"
    assert ("Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT") in reply.headers
    result = parsed(op, reply)
    assert (result["ETag"], result["LastModified"], result["ContentType"]) == (
        "e",
        WHEN,
        "video/mp4",
    )


def test_reply_drops_unknown_members_and_none() -> None:
    op = SCHEMAS.operation_model("DescribeRegistry")
    reply = wire_rest.encode_response(op, {"RegistryName": "r", "Description": None, "Bogus": 1})
    assert json.loads(reply.body) == {"RegistryName": "r"}
    assert wire_rest.encode_response(op, {}).body == b"{}"


def test_timestamps_in_the_body_follow_the_timestamp_format() -> None:
    # Schemas' timestamps are ``timestampFormat: iso8601``; the rest-json default is epoch.
    op = SCHEMAS.operation_model("DescribeSchema")
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC)
    reply = wire_rest.encode_response(op, {"LastModified": when, "VersionCreatedDate": WHEN})
    assert json.loads(reply.body) == {
        "LastModified": "2024-01-02T03:04:05.250Z",
        "VersionCreatedDate": "2024-01-02T03:04:05Z",
    }
    assert parsed(op, reply)["LastModified"] == when
    flow = service_model("appflow").operation_model("DescribeFlow")
    shape = flow.output_shape.members["createdAt"]
    assert "timestampFormat" not in shape.serialization
    reply = wire_rest.encode_response(flow, {"createdAt": when, "lastUpdatedAt": WHEN})
    assert json.loads(reply.body) == {"createdAt": 1704164645.25, "lastUpdatedAt": 1704164645}
    assert parsed(flow, reply)["createdAt"] == when


# -- errors --------------------------------------------------------------------------------------


def error_of(op: OperationModel | None, reply: _Reply) -> dict[str, Any]:
    headers = HeadersDict(dict(reply.headers))
    response = {"body": reply.body, "headers": headers, "status_code": reply.status}
    result = create_parser("rest-json").parse(response, op.output_shape if op else None)
    result["status"] = reply.status
    return dict(result)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AwsError("NotFoundException", "Registry r1 does not exist."), 404),
        (AwsError("ConflictException", "Registry r1 already exists.", status=409), 409),
        (AwsError("ConflictException", "Registry r1 already exists."), 409),
        (AwsError("BadRequestException", "Invalid name."), 400),
        (AwsError("TooManyRequestsException", "Slow down.", status=429), 429),
        (AwsError("ThrottlingException", "Unmodelled.", status=429), 429),
    ],
)
async def test_errors_are_what_botocore_expects(error: AwsError, status: int) -> None:
    service = Recorder()
    service.error = error
    server = AwsHttpServer([service])
    op = SCHEMAS.operation_model("DescribeRegistry")
    reply = await send(server, op, {"RegistryName": "r1"})
    assert reply.content_type == "application/json"
    assert ("x-amzn-ErrorType", error.code) in reply.headers
    assert json.loads(reply.body) == {"Message": error.message, "Code": error.code}
    result = error_of(op, reply)
    assert result["status"] == status
    assert result["Error"]["Code"] == error.code
    assert result["Error"]["Message"] == error.message
    assert result["ResponseMetadata"]["RequestId"] == "rid-1"


async def test_error_members_follow_the_modelled_shape() -> None:
    # AppFlow's errors name their member "message".
    model = service_model("appflow")
    shape = model.shape_for("ValidationException")
    assert "message" in shape.members
    body = wire_rest.encode_error(model, "ValidationException", "bad")
    assert json.loads(body) == {"message": "bad", "Code": "ValidationException"}


async def test_handler_crash_is_500_internal_failure() -> None:
    service = Recorder()
    service.error = RuntimeError("bug")
    server = AwsHttpServer([service])
    reply = await send(server, SCHEMAS.operation_model("ListRegistries"), {})
    result = error_of(None, reply)
    assert (result["status"], result["Error"]["Code"]) == (500, "InternalFailure")


async def test_unknown_paths() -> None:
    service = Recorder()
    server = AwsHttpServer([Sqs(), service])
    reply = await server.dispatch("GET", "/v1/nothing", scope("schemas"), b"", "r")
    result = error_of(None, reply)
    assert (result["status"], result["Error"]["Code"]) == (404, "UnknownOperationException")
    reply = await server.dispatch("PATCH", "/v1/registries", scope("schemas"), b"", "r")
    assert error_of(None, reply)["status"] == 404
    # Unsigned and unknown to every rest-json service: the query protocol's answer, as before.
    reply = await server.dispatch("GET", "/v1/nothing?x=1", {"host": "h"}, b"", "r")
    assert (reply.status, reply.content_type) == (400, "text/xml")
    assert b"MissingAction" in reply.body
    reply = await server.dispatch("GET", "/", {"host": "h"}, b"", "r")
    assert json.loads(reply.body)["services"] == ["sqs", "schemas"]
    assert service.seen == []


async def test_json_and_query_requests_are_never_taken_by_rest_routes() -> None:
    sqs = Sqs()
    # A rest-json service with routes on POST / and GET /: the other protocols still win.
    greedy = synthetic("greedy", {"Root": ("POST", "/"), "Get": ("GET", "/{path+}")})
    service = Recorder("greedy", "schemas")
    server = AwsHttpServer([sqs, service])
    server._rest[0] = (service, wire_rest.RestRouter(greedy))
    headers = {"x-amz-target": "AmazonSQS.GetQueueUrl", "host": "h"}
    reply = await server.dispatch("POST", "/", headers, b'{"QueueName": "q"}', "r")
    assert reply.status == 200 and sqs.seen[-1].protocol == "json"
    form = {"content-type": "application/x-www-form-urlencoded", "host": "h"}
    reply = await server.dispatch("POST", "/", form, b"Action=GetQueueUrl&QueueName=q", "r")
    assert reply.status == 200 and sqs.seen[-1].protocol == "query"
    reply = await server.dispatch("GET", "/0/q?Action=GetQueueUrl&QueueName=q", {}, b"", "r")
    assert reply.status == 200 and sqs.seen[-1].protocol == "query"
    signed = {**form, **scope("sqs")}
    reply = await server.dispatch("POST", "/", signed, b"Action=GetQueueUrl&QueueName=q", "r")
    assert reply.status == 200 and sqs.seen[-1].protocol == "query"
    assert service.seen == []


async def test_credential_scope_picks_between_rest_json_services() -> None:
    first = Recorder("schemas", "schemas")
    second = Recorder("other", "schemas")
    server = AwsHttpServer([first, second])
    other = synthetic("other", {"ListRegistries": ("GET", "/v1/registries")})
    server._rest[1] = (second, wire_rest.RestRouter(other))
    server._by_scope["other"] = second
    await server.dispatch("GET", "/v1/registries", scope("other"), b"", "r")
    await server.dispatch("GET", "/v1/registries", scope("schemas"), b"", "r")
    await server.dispatch("GET", "/v1/registries", {}, b"", "r")
    assert [r.service for r in first.seen] == ["schemas", "schemas"]
    assert [r.service for r in second.seen] == ["other"]
    reply = await server.dispatch("GET", "/v1/discoverers", scope("other"), b"", "r")
    assert reply.status == 404


# -- validation ----------------------------------------------------------------------------------


async def rest_call(
    server: AwsHttpServer, method: str, target: str, body: bytes = b"", **headers: str
) -> dict[str, Any]:
    reply = await server.dispatch(method, target, {**scope("schemas"), **headers}, body, "r")
    return error_of(None, reply)


async def test_missing_required_members() -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    result = await rest_call(server, "POST", "/v1/discoverers", b'{"Description": "d"}')
    assert result["status"] == 400
    assert result["Error"]["Code"] == "BadRequestException"
    assert result["Error"]["Message"] == (
        "1 validation error detected: Value null at 'SourceArn' failed to satisfy constraint: "
        "Member must not be null"
    )
    result = await rest_call(server, "GET", "/v1/registries/name/r/schemas/search")
    assert "Value null at 'Keywords'" in result["Error"]["Message"]
    result = await rest_call(server, "DELETE", "/tags/arn")
    assert "Value null at 'TagKeys'" in result["Error"]["Message"]
    assert service.seen == []


def test_generic_validation_exception_when_the_operation_models_none() -> None:
    op = service_model("lambda").operation_model("GetFunction")
    assert wire_rest.validation_error(op) == "ValidationException"
    assert wire_rest.validation_error(service_model("appflow").operation_model("ListFlows")) == (
        "ValidationException"
    )
    with pytest.raises(AwsError) as info:
        wire_rest.decode_request(op, {}, "", {}, b"")
    assert (info.value.code, info.value.status) == ("ValidationException", 400)
    assert info.value.message == (
        "1 validation error detected: Value null at 'FunctionName' failed to satisfy "
        "constraint: Member must not be null"
    )


@pytest.mark.parametrize(
    ("method", "target", "body", "needle"),
    [
        ("GET", "/v1/registries?limit=ten", b"", "'ten' at 'Limit'"),
        ("GET", "/v1/registries?limit=99999999999", b"", "Member must fit in a integer"),
        ("GET", "/v1/registries?limit=1.5", b"", "Member must be an integer"),
        ("POST", "/v1/discoverers", b'{"SourceArn": "a", "CrossAccount": "yes"}', "boolean"),
        ("POST", "/v1/discoverers", b'{"SourceArn": 5}', "Member must be a string"),
        ("POST", "/v1/discoverers", b'{"SourceArn": "a", "tags": ["x"]}', "must be a map"),
        ("POST", "/v1/discoverers", b'{"SourceArn": "a", "tags": {"k": 1}}', "'Tags.k'"),
        ("POST", "/v1/discoverers", b"[1, 2]", "must be a JSON object"),
        ("POST", "/v1/discoverers", b"{nope", "not a valid JSON document"),
        ("POST", "/v1/discoverers", b'"\xff"', "not a valid JSON document"),
        ("POST", "/v1/discover", b'{"Type": "OpenApi3", "Events": "x"}', "must be a list"),
        ("GET", "/v1/registries?limit=%ff", b"", "valid UTF-8"),
        ("GET", "/v1/registries?" + "a=1&" * 1001, b"", "at most 1000 parameters"),
    ],
)
async def test_wrong_types_and_bad_documents_are_400(
    method: str, target: str, body: bytes, needle: str
) -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    result = await rest_call(server, method, target, body)
    assert (result["status"], result["Error"]["Code"]) == (400, "BadRequestException")
    assert needle in result["Error"]["Message"]
    assert service.seen == []


async def test_unknown_body_members_are_ignored() -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    body = b'{"SourceArn": "a", "Surprise": {"x": 1}, "CrossAccount": null}'
    result = await rest_call(server, "POST", "/v1/discoverers", body)
    assert result["status"] == 201
    assert service.seen[0].params == {"SourceArn": "a"}


async def test_labels_are_decoded_strings_not_paths() -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    await rest_call(server, "GET", "/v1/registries/name/..%2F..%2Fetc%2Fpasswd")
    await rest_call(server, "GET", "/v1/registries/name/..")
    result = await rest_call(server, "GET", "/v1/registries/name/../../../etc/passwd")
    assert result["status"] == 404
    assert [r.params["RegistryName"] for r in service.seen] == ["../../etc/passwd", ".."]


async def test_huge_query_strings_are_bounded() -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    value = "x" * 200_000
    result = await rest_call(server, "GET", f"/v1/registries?registryNamePrefix={value}")
    assert result["status"] == 200
    assert service.seen[0].params["RegistryNamePrefix"] == value
    result = await rest_call(server, "GET", "/v1/registries?" + "&".join(["limit=1"] * 5000))
    assert result["status"] == 400


# -- property tests ------------------------------------------------------------------------------

segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@settings(max_examples=150)
@given(
    registry=segment,
    schema=segment,
    version=st.one_of(st.none(), segment),
    limit=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
)
def test_labels_and_query_round_trip(
    registry: str, schema: str, version: str | None, limit: int | None
) -> None:
    op = SCHEMAS.operation_model("DescribeSchema")
    params: dict[str, Any] = {"RegistryName": registry, "SchemaName": schema}
    if version is not None:
        params["SchemaVersion"] = version
    assert via_router(SCHEMAS, op, params, validate=False) == params
    op = SCHEMAS.operation_model("ListSchemaVersions")
    params = {"RegistryName": registry, "SchemaName": schema}
    if limit is not None:
        params["Limit"] = limit
    assert via_router(SCHEMAS, op, params, validate=False) == params


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200)
@given(
    name=st.sampled_from(SCHEMAS.operation_names),
    document=st.dictionaries(
        st.sampled_from(["SourceArn", "Description", "CrossAccount", "tags", "Events", "Type"])
        | st.text(max_size=8),
        json_value,
        max_size=5,
    ),
    query=st.lists(
        st.tuples(
            st.sampled_from(["limit", "scope", "tagKeys", "schemaVersion", "type", "x"]),
            st.text(max_size=8),
        ),
        max_size=4,
    ),
)
def test_wrongly_typed_requests_raise_only_aws_errors(
    name: str, document: dict[str, Any], query: list[tuple[str, str]]
) -> None:
    op = SCHEMAS.operation_model(name)
    labels = {"registryName": "r", "schemaName": "s", "discovererId": "d", "language": "x"}
    labels.update({"schemaVersion": "1", "resource-arn": "arn"})
    raw_query = "&".join(f"{k}={v}" for k, v in query)
    body = json.dumps(document).encode()
    try:
        wire_rest.decode_request(op, labels, raw_query, {}, body)
    except AwsError as err:
        assert err.status == 400
        assert err.code == "BadRequestException"


@settings(max_examples=200)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
    path=st.lists(
        st.sampled_from(["v1", "registries", "name", "schemas", "tags", "..", "", "%2F", "%ff"])
        | st.text(max_size=6),
        max_size=7,
    ),
    query=st.text(max_size=40),
    body=st.binary(max_size=64),
)
async def test_garbage_requests_get_protocol_errors(
    method: str, path: list[str], query: str, body: bytes
) -> None:
    service = Recorder()
    server = AwsHttpServer([service])
    target = "/" + "/".join(path) + (f"?{query}" if query else "")
    reply = await server.dispatch(method, target, scope("schemas"), body, "r")
    assert reply.status < 500
    if reply.status >= 400:
        assert dict(reply.headers)["x-amzn-ErrorType"]
        assert json.loads(reply.body)["Code"]
