"""boto3 clients, fixtures and checks for the SNS interop suites (``test_sns_*.py``).

The endpoint is the one of the SQS suites (``sqs_helpers``): a polymq process serving the AWS
APIs and AMQP, or ``POLYMQ_TEST_SQS_URL``. A test module takes the fixtures by assignment::

    sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns

SNS speaks the query protocol, so ``Error.Code`` is the query code AWS sends (``NotFound``,
``InvalidParameter``, ``ParameterValueInvalid``, ...); ``expect_error`` (from sqs_helpers)
checks code, status and message.

``HttpEndpoint`` is a small threaded HTTP server on 127.0.0.1 that records every request it
gets (SNS http subscriptions POST to it) and answers with the statuses it is told to.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    ACCESS_KEY,
    ACCOUNT,
    REGION,
    SECRET_KEY,
    WAIT_S,
    client_config,
    new_queue,
    receive,
)
from tests.polymq_process import SqsBroker

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the SQS suites' fixtures

NOTIFICATION_KEYS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "UnsubscribeURL",
]


def make_sns_client(
    endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
) -> Any:
    """A boto3 SNS client for ``endpoint``: one attempt per call, bounded timeouts."""
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
    )
    return session.client("sns", endpoint_url=endpoint, config=client_config())


@pytest.fixture(scope="module")
def sns(sqs_broker: SqsBroker) -> Any:
    return make_sns_client(sqs_broker.http_url)


# --- names -----------------------------------------------------------------------------------


def topic_name(prefix: str, fifo: bool = False) -> str:
    name = f"pmq-{prefix}-{uuid.uuid4().hex[:12]}"
    return name + ".fifo" if fifo else name


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"


def new_topic(sns: Any, prefix: str, fifo: bool = False, **attributes: str) -> str:
    attrs = dict(attributes)
    if fifo:
        attrs.setdefault("FifoTopic", "true")
    kwargs: dict[str, Any] = {"Name": topic_name(prefix, fifo)}
    if attrs:
        kwargs["Attributes"] = attrs
    arn: str = sns.create_topic(**kwargs)["TopicArn"]
    return arn


def subscribe_queue(
    sns: Any, sqs: Any, topic: str, prefix: str, fifo: bool = False, **attributes: str
) -> tuple[str, str]:
    """A new SQS queue subscribed to ``topic`` with ``attributes``; ``(queue url, sub arn)``."""
    url = new_queue(sqs, prefix, fifo=fifo)
    kwargs: dict[str, Any] = {
        "TopicArn": topic,
        "Protocol": "sqs",
        "Endpoint": sqs_helpers.arn_of(url),
        "ReturnSubscriptionArn": True,
    }
    if attributes:
        kwargs["Attributes"] = attributes
    arn: str = sns.subscribe(**kwargs)["SubscriptionArn"]
    return url, arn


# --- receiving -------------------------------------------------------------------------------


def drain(sqs: Any, url: str, settle_s: float = 1.0, **kwargs: Any) -> list[dict[str, Any]]:
    """Every message the queue delivers until ``settle_s`` passes without a new one (at most
    ``WAIT_S`` in all); each is deleted."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < settle_s:
        batch = receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=0, **kwargs)
        if batch:
            got += batch
            quiet_since = time.monotonic()
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        else:
            time.sleep(0.05)
    return got


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [m["Body"] for m in messages]


def notifications(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = WAIT_S, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)


# --- an HTTP endpoint for http subscriptions ----------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpEndpoint:
    """Records requests; answers each with the next of ``statuses`` (then ``default``)."""

    server: http.server.ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/sns"

    def by_type(self, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.headers.get("x-amz-sns-message-type") == kind]

    def wait(self, kind: str, n: int = 1, timeout: float = WAIT_S) -> list[Received]:
        return list(
            wait_for(
                lambda: (got := self.by_type(kind)) and len(got) >= n and got,
                f"{n} {kind} request(s)",
                timeout,
            )
        )


@pytest.fixture
def http_endpoint() -> Iterator[HttpEndpoint]:
    endpoint: HttpEndpoint

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with endpoint.lock:
                endpoint.requests.append(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                    )
                )
                status = endpoint.statuses.pop(0) if endpoint.statuses else endpoint.default
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    endpoint = HttpEndpoint(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
