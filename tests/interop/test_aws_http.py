"""The AWS HTTP endpoint driven by real boto3/botocore clients over real sockets: the JSON
protocol boto3 speaks to SQS today, the query protocol older SDKs speak (a botocore client whose
SQS model is switched to ``query``), keep-alive, concurrency, limits, errors as boto3 reports
them, and SigV4 verification. The SQS service here is a small in-memory test double of the
HTTP layer's service interface, not polymq's SQS."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import trio
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from protocols.aws.errors import AwsError
from protocols.aws.http import AwsHttpServer, AwsRequest, HttpLimits
from protocols.aws.model import query_service_description
from protocols.aws.sigv4 import SigV4Verifier

ACCOUNT = "000000000000"
WAIT_S = 20


@dataclass
class FakeSqs:
    """Just enough SQS in memory to exercise the HTTP layer."""

    name: str = "sqs"
    model_name: str = "sqs"
    json_target_prefix: str = "AmazonSQS"
    queues: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    seen: list[AwsRequest] = field(default_factory=list)

    def _queue(self, url: str) -> list[dict[str, Any]]:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if name not in self.queues:
            raise AwsError("QueueDoesNotExist", "The specified queue does not exist.")
        return self.queues[name]

    async def handle(self, req: AwsRequest) -> dict[str, Any]:
        self.seen.append(req)
        p = req.params
        action = req.action
        if action == "CreateQueue":
            if p["QueueName"] == "crash":
                raise RuntimeError("handler bug")
            self.queues.setdefault(p["QueueName"], [])
            self.tags.setdefault(p["QueueName"], {}).update(p.get("tags", {}))
            return {"QueueUrl": f"http://{req.host}/{ACCOUNT}/{p['QueueName']}"}
        if action == "GetQueueUrl":
            self._queue(p["QueueName"])
            return {"QueueUrl": f"http://{req.host}/{ACCOUNT}/{p['QueueName']}"}
        if action == "ListQueues":
            prefix = p.get("QueueNamePrefix", "")
            urls = [f"http://{req.host}/{ACCOUNT}/{n}" for n in self.queues if n.startswith(prefix)]
            return {"QueueUrls": urls}
        if action == "SendMessage":
            return self._send(self._queue(p["QueueUrl"]), p)
        if action == "SendMessageBatch":
            queue = self._queue(p["QueueUrl"])
            ok = []
            for entry in p["Entries"]:
                ok.append({"Id": entry["Id"], **self._send(queue, entry)})
            return {"Successful": ok, "Failed": []}
        if action == "ReceiveMessage":
            queue = self._queue(p["QueueUrl"])
            count = p.get("MaxNumberOfMessages", 1)
            taken, queue[:] = queue[:count], queue[count:]
            return {"Messages": taken}
        if action == "GetQueueAttributes":
            queue = self._queue(p["QueueUrl"])
            return {"Attributes": {"ApproximateNumberOfMessages": str(len(queue))}}
        if action == "TagQueue":
            self._queue(p["QueueUrl"])
            self.tags[p["QueueUrl"].rsplit("/", 1)[-1]].update(p["Tags"])
            return {}
        if action == "ListQueueTags":
            self._queue(p["QueueUrl"])
            return {"Tags": self.tags[p["QueueUrl"].rsplit("/", 1)[-1]]}
        if action == "PurgeQueue":
            self._queue(p["QueueUrl"]).clear()
            return {}
        if action == "DeleteQueue":
            self._queue(p["QueueUrl"])
            del self.queues[p["QueueUrl"].rsplit("/", 1)[-1]]
            return {}
        raise AwsError("UnsupportedOperation", f"{action} is not in this test double.")

    def _send(self, queue: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
        body = p["MessageBody"]
        md5 = hashlib.md5(body.encode()).hexdigest()
        message = {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": uuid.uuid4().hex,
            "MD5OfBody": md5,
            "Body": body,
            "Attributes": {"SenderId": "AIDA", "SentTimestamp": "1700000000000"},
        }
        if p.get("MessageAttributes"):
            message["MessageAttributes"] = p["MessageAttributes"]
        queue.append(message)
        return {"MessageId": message["MessageId"], "MD5OfMessageBody": md5}


@dataclass
class Endpoint:
    server: AwsHttpServer
    service: FakeSqs
    port: int
    models: Path
    clients: list[BaseClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(
        self, *, protocol: str = "json", key: str = "AKIDTEST", secret: str = "secret"
    ) -> BaseClient:
        session = botocore.session.get_session()
        if protocol == "query":
            session.get_component("data_loader").search_paths.insert(0, str(self.models))
        client = session.create_client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=WAIT_S,
            ),
        )
        self.clients.append(client)
        return client


def write_query_model(root: Path) -> Path:
    models = root / "models"
    target = models / "sqs" / "2012-11-05"
    target.mkdir(parents=True)
    description = query_service_description("sqs", protocol="query")
    (target / "service-2.json").write_text(json.dumps(description))
    return models


@pytest.fixture
def make_endpoint(nursery: trio.Nursery, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    endpoints: list[Endpoint] = []
    models = write_query_model(tmp_path)

    async def start(
        limits: HttpLimits | None = None, auth: SigV4Verifier | None = None
    ) -> Endpoint:
        service = FakeSqs()
        server = AwsHttpServer([service], limits or HttpLimits(), auth=auth)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(server.serve, listeners)
        endpoint = Endpoint(server, service, listeners[0].socket.getsockname()[1], models)
        endpoints.append(endpoint)
        return endpoint

    yield start
    for endpoint in endpoints:
        for client in endpoint.clients:
            client.close()


@pytest.fixture
async def endpoint(make_endpoint: Callable[..., Any]) -> AsyncIterator[Endpoint]:
    yield await make_endpoint(HttpLimits(request_bytes_max=256 << 10))


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with trio.fail_after(WAIT_S):
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def client_error(fn: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        await call(fn, **kwargs)
    return dict(info.value.response)


# -- boto3 / botocore --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["json", "query"])
async def test_sqs_calls_round_trip(endpoint: Endpoint, protocol: str) -> None:
    sqs = endpoint.client(protocol=protocol)
    url = (await call(sqs.create_queue, QueueName="q1", tags={"team": "x"}))["QueueUrl"]
    assert url == f"http://127.0.0.1:{endpoint.port}/{ACCOUNT}/q1"
    body = '<hello> & "world" é \u4e2d\r\n'
    attributes = {
        "s": {"DataType": "String", "StringValue": "v<&>"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    sent = await call(
        sqs.send_message, QueueUrl=url, MessageBody=body, MessageAttributes=attributes
    )
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    batch = await call(
        sqs.send_message_batch,
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)],
    )
    assert [e["Id"] for e in batch["Successful"]] == ["0", "1", "2"]
    assert batch.get("Failed", []) == []  # an empty flattened list has no XML form
    got = await call(
        sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=2, MessageAttributeNames=["All"]
    )
    first = got["Messages"][0]
    assert first["Body"] == body
    assert first["MessageAttributes"] == attributes
    assert first["Attributes"]["SenderId"] == "AIDA"
    assert got["Messages"][1]["Body"] == "m0"
    attrs = await call(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])
    assert attrs["Attributes"] == {"ApproximateNumberOfMessages": "2"}
    await call(sqs.tag_queue, QueueUrl=url, Tags={"env": "dev"})
    assert (await call(sqs.list_queue_tags, QueueUrl=url))["Tags"] == {"team": "x", "env": "dev"}
    assert (await call(sqs.list_queues))["QueueUrls"] == [url]
    assert {r.protocol for r in endpoint.service.seen} == {protocol}
    assert all(
        r.access_key == "AKIDTEST" and r.region == "us-east-1" for r in endpoint.service.seen
    )


@pytest.mark.parametrize("protocol", ["json", "query"])
async def test_error_codes_as_boto3_reports_them(endpoint: Endpoint, protocol: str) -> None:
    sqs = endpoint.client(protocol=protocol)
    response = await client_error(sqs.get_queue_url, QueueName="missing")
    assert response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert response["Error"]["Message"] == "The specified queue does not exist."
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if protocol == "json":
        assert response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        await call(sqs.get_queue_url, QueueName="missing")
    response = await client_error(sqs.purge_queue, QueueUrl="http://x/0/q")
    assert response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


@pytest.mark.parametrize("protocol", ["json", "query"])
async def test_handler_crash_is_500_and_the_connection_stays_usable(
    endpoint: Endpoint, protocol: str
) -> None:
    sqs = endpoint.client(protocol=protocol)
    response = await client_error(sqs.create_queue, QueueName="crash")
    assert response["Error"]["Code"] == "InternalFailure"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert (await call(sqs.create_queue, QueueName="fine"))["QueueUrl"].endswith("/fine")
    assert endpoint.server.limiter.accepted == 1


@pytest.mark.parametrize("protocol", ["json", "query"])
async def test_keep_alive_many_calls_on_one_connection(endpoint: Endpoint, protocol: str) -> None:
    sqs = endpoint.client(protocol=protocol)
    url = (await call(sqs.create_queue, QueueName="ka"))["QueueUrl"]

    def many() -> None:
        for i in range(100):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))

    await call(many)
    assert len(endpoint.service.queues["ka"]) == 100
    assert endpoint.server.limiter.accepted == 1
    assert endpoint.server.requests == 101


async def test_concurrent_clients(endpoint: Endpoint) -> None:
    setup = endpoint.client()
    url = (await call(setup.create_queue, QueueName="cc"))["QueueUrl"]
    clients = [endpoint.client(protocol="json" if i % 2 else "query") for i in range(8)]

    async def worker(i: int) -> None:
        for j in range(20):
            await call(clients[i].send_message, QueueUrl=url, MessageBody=f"{i}-{j}")

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(worker, i)
    bodies = {m["Body"] for m in endpoint.service.queues["cc"]}
    assert bodies == {f"{i}-{j}" for i in range(8) for j in range(20)}
    assert endpoint.server.limiter.accepted == 9
    assert endpoint.server.limiter.open <= 9


@pytest.mark.parametrize("protocol", ["json", "query"])
async def test_oversize_body_is_413(make_endpoint: Callable[..., Any], protocol: str) -> None:
    endpoint = await make_endpoint(HttpLimits(request_bytes_max=32 << 10))
    sqs = endpoint.client(protocol=protocol)
    url = (await call(sqs.create_queue, QueueName="big"))["QueueUrl"]
    response = await client_error(sqs.send_message, QueueUrl=url, MessageBody="x" * (64 << 10))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert response["Error"]["Code"] == "RequestEntityTooLarge"
    assert endpoint.service.queues["big"] == []
    await call(sqs.send_message, QueueUrl=url, MessageBody="small")
    assert len(endpoint.service.queues["big"]) == 1


async def test_sigv4_verify_mode(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint(auth=SigV4Verifier({"AKIDGOOD": "good-secret"}))
    for protocol in ("json", "query"):
        good = endpoint.client(protocol=protocol, key="AKIDGOOD", secret="good-secret")
        assert (await call(good.create_queue, QueueName="auth"))["QueueUrl"]
        bad = endpoint.client(protocol=protocol, key="AKIDGOOD", secret="wrong")
        response = await client_error(bad.list_queues)
        assert response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
        unknown = endpoint.client(protocol=protocol, key="AKIDWHO", secret="good-secret")
        response = await client_error(unknown.list_queues)
        assert response["Error"]["Code"] == "InvalidClientTokenId"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert {r.access_key for r in endpoint.service.seen} == {"AKIDGOOD"}


async def test_dev_mode_accepts_any_credentials_and_unsigned(endpoint: Endpoint) -> None:
    sqs = endpoint.client(key="ANYTHING", secret="whatever")
    assert (await call(sqs.list_queues)).get("QueueUrls") in (None, [])
    status, _, body = (await raw(endpoint, _post("/", "Action=ListQueues")))[0]
    assert status == 200 and b"<ListQueuesResponse" in body


# -- raw HTTP ----------------------------------------------------------------------------------


def _post(
    path: str, body: str | bytes, headers: dict[str, str] | None = None, *, chunked: bool = False
) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    head = {"Host": "127.0.0.1", "Content-Type": "application/x-www-form-urlencoded"}
    head.update(headers or {})
    if chunked:
        head["Transfer-Encoding"] = "chunked"
        half = len(data) // 2
        parts = [data[:half], data[half:]]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    else:
        head["Content-Length"] = str(len(data))
        payload = data
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + payload


def _parse(buffer: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    replies = []
    while b"\r\n\r\n" in buffer:
        head, rest = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        replies.append((status, headers, rest[:length]))
        buffer = rest[length:]
    return replies, buffer


async def raw(
    endpoint: Endpoint, data: bytes, *, replies: int = 1, then: bytes = b""
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data`` on a fresh connection and read ``replies`` responses (100 Continue
    included, after which ``then`` is sent)."""
    with trio.fail_after(WAIT_S):
        stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
        async with stream:
            await stream.send_all(data)
            got: list[tuple[int, dict[str, str], bytes]] = []
            buffer = b""
            while len(got) < replies:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
                parsed, buffer = _parse(buffer)
                for reply in parsed:
                    got.append(reply)
                    if reply[0] == 100 and then:
                        await stream.send_all(then)
            return got


async def test_pipelined_requests_are_answered_in_order(endpoint: Endpoint) -> None:
    endpoint.service.queues["p"] = []
    url = f"http://127.0.0.1/{ACCOUNT}/p"
    data = b"".join(
        _post("/", f"Action=SendMessage&QueueUrl={url}&MessageBody=m{i}") for i in range(5)
    ) + _post("/", "Action=ListQueues")
    got = await raw(endpoint, data, replies=6)
    assert [status for status, _, _ in got] == [200] * 6
    assert b"<ListQueuesResponse" in got[-1][2]
    assert [m["Body"] for m in endpoint.service.queues["p"]] == [f"m{i}" for i in range(5)]
    assert len({h["x-amzn-requestid"] for _, h, _ in got}) == 6


async def test_expect_100_continue_and_chunked_bodies(endpoint: Endpoint) -> None:
    body = json.dumps({"QueueName": "cont"})
    headers = {"X-Amz-Target": "AmazonSQS.CreateQueue", "Expect": "100-continue"}
    head = _post("/", "", {**headers, "Content-Type": "application/x-amz-json-1.0"})
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
    got = await raw(endpoint, head, replies=2, then=body.encode())
    assert [status for status, _, _ in got] == [100, 200]
    assert json.loads(got[1][2])["QueueUrl"].endswith("/cont")
    assert got[1][1]["content-type"] == "application/x-amz-json-1.0"
    chunked = _post("/", "Action=CreateQueue&QueueName=chunky", chunked=True)
    got = await raw(endpoint, chunked)
    assert got[0][0] == 200 and b"chunky" in got[0][2]


async def test_oversize_with_expect_is_refused_before_the_body(endpoint: Endpoint) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: h\r\nX-Amz-Target: AmazonSQS.SendMessage\r\n"
        b"Content-Type: application/x-amz-json-1.0\r\nExpect: 100-continue\r\n"
        b"Content-Length: 999999999\r\n\r\n"
    )
    got = await raw(endpoint, data)
    status, headers, body = got[0]
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body)["__type"].endswith("#RequestEntityTooLarge")
    assert headers["x-amzn-query-error"] == "RequestEntityTooLarge;Sender"


async def test_malformed_json_and_unknown_operations(endpoint: Endpoint) -> None:
    json_head = {
        "X-Amz-Target": "AmazonSQS.SendMessage",
        "Content-Type": "application/x-amz-json-1.0",
    }
    got = await raw(endpoint, _post("/", b'{"QueueUrl": ', json_head))
    status, headers, body = got[0]
    assert status == 400 and json.loads(body)["__type"].endswith("#SerializationException")
    unknown = {**json_head, "X-Amz-Target": "AmazonSQS.Frobnicate"}
    status, headers, body = (await raw(endpoint, _post("/", b"{}", unknown)))[0]
    assert status == 400 and json.loads(body)["__type"].endswith("#UnknownOperationException")
    other = {**json_head, "X-Amz-Target": "DynamoDB_20120810.GetItem"}
    status, _, body = (await raw(endpoint, _post("/", b"{}", other)))[0]
    assert status == 400 and b"UnknownOperationException" in body
    status, headers, body = (await raw(endpoint, _post("/", "Action=Frobnicate")))[0]
    assert status == 400 and b"<Code>InvalidAction</Code>" in body
    assert headers["content-type"] == "text/xml"
    status, _, body = (await raw(endpoint, _post("/", b"Action=SendMessage&MessageBody=%ff")))[0]
    assert status == 400 and b"<Code>MalformedQueryString</Code>" in body


async def test_bad_http_gets_400_and_only_that_connection_closes(endpoint: Endpoint) -> None:
    sqs = endpoint.client()
    await call(sqs.create_queue, QueueName="still")
    for garbage in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
        got = await raw(endpoint, garbage)
        assert got and got[0][0] == 400
    big_head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * (32 << 10) + b"\r\n\r\n"
    got = await raw(endpoint, big_head)
    assert got and got[0][0] == 431
    assert (await call(sqs.get_queue_url, QueueName="still"))["QueueUrl"]


async def test_health_and_connection_limit(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint(HttpLimits(connections_max=2))
    status, _, body = (await raw(endpoint, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))[0]
    assert status == 200 and json.loads(body)["status"] == "ok"
    with trio.fail_after(WAIT_S):
        held = [await trio.open_tcp_stream("127.0.0.1", endpoint.port) for _ in range(2)]
        try:
            # Both held connections are accounted for once one request on each was answered.
            for stream in held:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                assert b"200" in await stream.receive_some(4096)
            got = await raw(endpoint, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert got[0][0] == 503
            assert endpoint.server.limiter.refused == 1
        finally:
            for stream in held:
                await stream.aclose()


async def test_idle_connection_is_closed(make_endpoint: Callable[..., Any]) -> None:
    endpoint = await make_endpoint(HttpLimits(keepalive_idle_s=0.2, request_timeout_s=0.2))
    with trio.fail_after(WAIT_S):
        stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n")  # never finished
            assert await stream.receive_some(4096) == b""
