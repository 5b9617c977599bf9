"""The AWS endpoint's REST-JSON protocol driven by a real botocore ``schemas`` client over real
sockets: operations routed by method and path, labels with characters that need encoding,
query-string members, 201/204 response codes, modelled exceptions raised as their classes,
server-side validation, SigV4 over encoded paths, the body limit, and a JSON-protocol service on
the same endpoint. The Schema Registry here is a small in-memory test double of the HTTP layer's
service interface, not polymq's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import pytest
import trio
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from protocols.aws.errors import AwsError
from protocols.aws.http import AwsHttpServer, AwsRequest, HttpLimits
from protocols.aws.sigv4 import SigV4Verifier

ACCOUNT = "000000000000"
WAIT_S = 20
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)


@dataclass
class FakeSchemas:
    """Just enough of the Schema Registry in memory to exercise the HTTP layer."""

    name: str = "schemas"
    model_name: str = "schemas"
    protocol: str = "rest-json"
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    seen: list[AwsRequest] = field(default_factory=list)

    def _arn(self, req: AwsRequest, name: str) -> str:
        return f"arn:aws:schemas:{req.region}:{ACCOUNT}:registry/{name}"

    def _registry(self, name: str) -> dict[str, Any]:
        if name not in self.registries:
            raise AwsError("NotFoundException", f"Registry {name} does not exist.", status=404)
        return self.registries[name]

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        self.seen.append(req)
        p = req.params
        action = req.action
        if action == "CreateRegistry":
            name = p["RegistryName"]
            if name in self.registries:
                raise AwsError("ConflictException", f"Registry {name} already exists.", status=409)
            self.registries[name] = {
                "RegistryName": name,
                "RegistryArn": self._arn(req, name),
                "Description": p.get("Description"),
                "schemas": {},
            }
            self.tags[self._arn(req, name)] = dict(p.get("Tags", {}))
            return self._describe(req, name)
        if action == "DescribeRegistry":
            return self._describe(req, p["RegistryName"])
        if action == "ListRegistries":
            prefix = p.get("RegistryNamePrefix", "")
            names = sorted(n for n in self.registries if n.startswith(prefix))
            start = int(p.get("NextToken", "0"))
            limit = p.get("Limit", 100)
            page = names[start : start + limit]
            out: dict[str, Any] = {
                "Registries": [{"RegistryName": n, "RegistryArn": self._arn(req, n)} for n in page]
            }
            if start + limit < len(names):
                out["NextToken"] = str(start + limit)
            return out
        if action == "DeleteRegistry":
            self._registry(p["RegistryName"])
            del self.registries[p["RegistryName"]]
            return {}
        if action == "CreateSchema":
            registry = self._registry(p["RegistryName"])
            registry["schemas"][p["SchemaName"]] = p
            return {
                "SchemaName": p["SchemaName"],
                "SchemaVersion": "1",
                "Type": p["Type"],
                "LastModified": WHEN,
                "VersionCreatedDate": WHEN,
            }
        if action == "DescribeSchema":
            schema = self._registry(p["RegistryName"])["schemas"].get(p["SchemaName"])
            if schema is None:
                raise AwsError("NotFoundException", "Schema does not exist.", status=404)
            return {
                "SchemaName": p["SchemaName"],
                "Content": schema["Content"],
                "SchemaVersion": p.get("SchemaVersion", "1"),
                "LastModified": WHEN,
            }
        if action == "TagResource":
            self.tags.setdefault(p["ResourceArn"], {}).update(p["Tags"])
            return {}
        if action == "UntagResource":
            for key in p["TagKeys"]:
                self.tags.get(p["ResourceArn"], {}).pop(key, None)
            return {}
        if action == "ListTagsForResource":
            if p["ResourceArn"] not in self.tags:
                raise AwsError("NotFoundException", "No such resource.", status=404)
            return {"Tags": self.tags[p["ResourceArn"]]}
        if action == "GetCodeBindingSource":
            self._registry(p["RegistryName"])
            return {"Body": b"PK\x03\x04\x00\xff" + p["Language"].encode()}
        if action == "CreateDiscoverer":
            return {"DiscovererId": "d1", "SourceArn": p["SourceArn"], "State": "STARTED"}
        raise AwsError("ForbiddenException", f"{action} is not in this test double.", status=403)

    def _describe(self, req: AwsRequest, name: str) -> dict[str, Any]:
        registry = self._registry(name)
        return {
            "RegistryName": name,
            "RegistryArn": registry["RegistryArn"],
            "Description": registry["Description"],
            "Tags": self.tags.get(registry["RegistryArn"], {}),
        }


class TinySqs:
    name = "sqs"
    model_name = "sqs"
    json_target_prefix = "AmazonSQS"

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        return {"QueueUrls": [f"http://{req.host}/{ACCOUNT}/q"]}


@dataclass
class Endpoint:
    server: AwsHttpServer
    service: FakeSchemas
    port: int
    clients: list[BaseClient] = field(default_factory=list)

    def client(
        self,
        name: str = "schemas",
        *,
        key: str = "AKIDTEST",
        secret: str = "secret",
        validate: bool = True,
    ) -> BaseClient:
        client = botocore.session.get_session().create_client(
            name,
            region_name="eu-west-1",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=WAIT_S,
                parameter_validation=validate,
            ),
        )
        self.clients.append(client)
        return client


@pytest.fixture
def make_endpoint(nursery: trio.Nursery) -> Iterator[Callable[..., Any]]:
    endpoints: list[Endpoint] = []

    async def start(
        limits: HttpLimits | None = None, auth: SigV4Verifier | None = None
    ) -> Endpoint:
        service = FakeSchemas()
        server = AwsHttpServer([TinySqs(), service], limits or HttpLimits(), auth=auth)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(server.serve, listeners)
        endpoint = Endpoint(server, service, listeners[0].socket.getsockname()[1])
        endpoints.append(endpoint)
        return endpoint

    yield start
    for endpoint in endpoints:
        for client in endpoint.clients:
            client.close()


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with trio.fail_after(WAIT_S):
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def client_error(fn: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        await call(fn, **kwargs)
    return dict(info.value.response)


async def test_registry_calls_round_trip(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint()
    schemas = endpoint.client()
    name = "orders/v1 é:x"
    created = await call(
        schemas.create_registry, RegistryName=name, Description="d", Tags={"team": "x"}
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["RegistryName"] == name
    assert created["Tags"] == {"team": "x"}
    arn = created["RegistryArn"]
    assert arn == f"arn:aws:schemas:eu-west-1:{ACCOUNT}:registry/{name}"
    described = await call(schemas.describe_registry, RegistryName=name)
    assert (described["RegistryName"], described["Description"]) == (name, "d")
    for i in range(5):
        await call(schemas.create_registry, RegistryName=f"r{i}")
    page = await call(schemas.list_registries, RegistryNamePrefix="r", Limit=2)
    assert [r["RegistryName"] for r in page["Registries"]] == ["r0", "r1"]
    page = await call(schemas.list_registries, RegistryNamePrefix="r", NextToken=page["NextToken"])
    assert [r["RegistryName"] for r in page["Registries"]] == ["r2", "r3", "r4"]
    assert "NextToken" not in page
    req = endpoint.service.seen[-1]
    assert (req.action, req.protocol, req.region, req.access_key) == (
        "ListRegistries",
        "rest-json",
        "eu-west-1",
        "AKIDTEST",
    )
    assert req.params == {"RegistryNamePrefix": "r", "NextToken": "2"}
    deleted = await call(schemas.delete_registry, RegistryName="r0")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204


async def test_schemas_labels_tags_and_payloads(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint()
    schemas = endpoint.client()
    arn = (await call(schemas.create_registry, RegistryName="reg"))["RegistryArn"]
    created = await call(
        schemas.create_schema,
        RegistryName="reg",
        SchemaName="aws.events@Order Created/1",
        Type="OpenApi3",
        Content='{"openapi": "3.0.0"}',
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["LastModified"] == WHEN
    got = await call(
        schemas.describe_schema,
        RegistryName="reg",
        SchemaName="aws.events@Order Created/1",
        SchemaVersion="7",
    )
    assert (got["Content"], got["SchemaVersion"]) == ('{"openapi": "3.0.0"}', "7")
    await call(schemas.tag_resource, ResourceArn=arn, Tags={"a": "1", "b": "2", "c,d": "3"})
    await call(schemas.untag_resource, ResourceArn=arn, TagKeys=["a", "c,d"])
    assert endpoint.service.seen[-1].params == {"ResourceArn": arn, "TagKeys": ["a", "c,d"]}
    assert (await call(schemas.list_tags_for_resource, ResourceArn=arn))["Tags"] == {"b": "2"}
    source = await call(
        schemas.get_code_binding_source,
        RegistryName="reg",
        SchemaName="aws.events@Order Created/1",
        Language="Python36",
    )
    assert source["Body"].read() == b"PK\x03\x04\x00\xffPython36"


async def test_modelled_errors_raise_their_classes(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint()
    schemas = endpoint.client()
    with pytest.raises(schemas.exceptions.NotFoundException) as info:
        await call(schemas.describe_registry, RegistryName="missing")
    response = info.value.response
    assert response["Error"]["Code"] == "NotFoundException"
    assert response["Error"]["Message"] == "Registry missing does not exist."
    assert response["Code"] == "NotFoundException"  # the modelled member
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    await call(schemas.create_registry, RegistryName="twice")
    with pytest.raises(schemas.exceptions.ConflictException) as conflict:
        await call(schemas.create_registry, RegistryName="twice")
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    response = await client_error(schemas.list_discoverers)
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ForbiddenException",
        403,
    )


async def test_server_side_validation(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint()
    schemas = endpoint.client(validate=False)
    with pytest.raises(schemas.exceptions.BadRequestException) as info:
        await call(schemas.create_discoverer, Description="no source")
    assert info.value.response["Error"]["Message"] == (
        "1 validation error detected: Value null at 'SourceArn' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(schemas.exceptions.BadRequestException):
        await call(schemas.list_registries, Limit="lots")
    assert endpoint.service.seen == []
    created = await call(schemas.create_discoverer, SourceArn="arn:aws:events:x")
    assert created["DiscovererId"] == "d1"


async def test_sigv4_verify_mode_over_encoded_paths(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint(auth=SigV4Verifier({"AKIDGOOD": "good-secret"}))
    good = endpoint.client(key="AKIDGOOD", secret="good-secret")
    await call(good.create_registry, RegistryName="a b/c:d é")
    await call(good.describe_registry, RegistryName="a b/c:d é")
    await call(good.list_registries, RegistryNamePrefix="a b&c=d", Limit=5)
    bad = endpoint.client(key="AKIDGOOD", secret="wrong")
    response = await client_error(bad.describe_registry, RegistryName="a b/c:d é")
    assert response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert {r.access_key for r in endpoint.service.seen} == {"AKIDGOOD"}


async def test_oversize_body_is_413(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint(HttpLimits(request_bytes_max=16 << 10))
    schemas = endpoint.client()
    await call(schemas.create_registry, RegistryName="big")
    response = await client_error(
        schemas.create_schema,
        RegistryName="big",
        SchemaName="s",
        Type="OpenApi3",
        Content="x" * (64 << 10),
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert response["Error"]["Code"] == "RequestEntityTooLarge"
    assert (await call(schemas.describe_registry, RegistryName="big"))["RegistryName"] == "big"


async def test_json_service_on_the_same_endpoint(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint()
    sqs = endpoint.client("sqs")
    schemas = endpoint.client()
    for _ in range(3):
        assert (await call(sqs.list_queues))["QueueUrls"] == [
            f"http://127.0.0.1:{endpoint.port}/{ACCOUNT}/q"
        ]
        assert (await call(schemas.list_registries))["Registries"] == []
    assert {r.action for r in endpoint.service.seen} == {"ListRegistries"}
