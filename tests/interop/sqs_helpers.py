"""boto3 clients, fixtures and checks for the SQS interop suites (``test_sqs_*.py``).

The endpoint under test is a polymq process serving the AWS APIs and AMQP (``open_sqs_broker``),
or ``POLYMQ_TEST_SQS_URL`` (a reference such as ``moto_server``; start it with
``MOTO_ACCOUNT_ID=000000000000`` so queue URLs and ARNs carry polymq's account). A test module
takes the fixtures ``sqs_broker``, ``sqs`` and ``sqs_polymq`` by assignment::

    sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs

(importing them by name would have ruff report every test argument as a redefinition, and
``pytest_plugins`` cannot take a module the tests also import).

``sqs`` is a boto3 client that makes exactly one attempt per call (no retries hide a failure)
and gives up after ``TIMEOUT_S``. Every test uses queue names of its own (``queue_name``).

Errors, as botocore reports them. Current botocore speaks AWS JSON 1.0 to SQS; SQS is
"awsQueryCompatible", so an error reply carries ``__type`` (the modelled shape, e.g.
``com.amazonaws.sqs#QueueDoesNotExist``) and the header ``x-amzn-query-error:
AWS.SimpleQueueService.NonExistentQueue;Sender``. botocore then reports
``Error.Code`` = the legacy query code (what the query/XML protocol puts in ``<Code>``),
``Error.QueryErrorCode`` = the shape name and ``Error.Type`` = ``Sender``, and raises the
modelled exception class. ``expect_error`` checks the code, the HTTP status and, where given,
the message, exactly as recorded from AWS; ``QUERY_CODE`` maps shape names to the query codes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.httpsession
import pytest
from botocore.exceptions import ClientError

from tests.polymq_process import PolymqProcess, SqsBroker, open_sqs_broker, own_sqs_polymq

REGION = "us-east-1"
ACCOUNT = "000000000000"
ACCESS_KEY = "polymq-test"
SECRET_KEY = "polymq-test-secret"
TIMEOUT_S = 30.0
WAIT_S = 10.0
API_VERSION = "2012-11-05"
QUERY_NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"

# modelled error shape -> the code AWS sends in x-amzn-query-error (and in query/XML <Code>)
QUERY_CODE = {
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "InvalidIdFormat": "InvalidIdFormat",
    "InvalidMessageContents": "InvalidMessageContents",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "OverLimit": "OverLimit",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "ResourceNotFoundException": "ResourceNotFoundException",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    # not modelled: common errors AWS reports with these codes
    "InvalidParameterValueException": "InvalidParameterValue",
    "MissingRequiredParameterException": "MissingParameter",
}

NON_EXISTENT_QUEUE_MESSAGE = "The specified queue does not exist."


# --- names -----------------------------------------------------------------------------------


def queue_name(prefix: str, fifo: bool = False) -> str:
    """A queue name no other test (or earlier run against a shared endpoint) has used: SQS
    names allow only ``[A-Za-z0-9_-]`` (80 at most), so no dots as in ``unique()``."""
    name = f"pmq-{prefix}-{uuid.uuid4().hex[:12]}"
    assert len(name) <= 75, name
    return name + ".fifo" if fifo else name


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def arn_of(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name_of(url)}"


# --- clients and fixtures --------------------------------------------------------------------


def client_config(**kw: Any) -> botocore.config.Config:
    return botocore.config.Config(
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=TIMEOUT_S,
        read_timeout=TIMEOUT_S,
        **kw,
    )


def make_client(
    endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, **config: Any
) -> Any:
    """A boto3 SQS client for ``endpoint``: one attempt per call, ``TIMEOUT_S`` timeouts."""
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
    )
    return session.client("sqs", endpoint_url=endpoint, config=client_config(**config))


@pytest.fixture(scope="module")
def sqs_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsBroker]:
    """The SQS endpoint under test, shared by a module's tests (every test names its queues)."""
    broker = open_sqs_broker(tmp_path_factory.mktemp("polymq-sqs"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def sqs(sqs_broker: SqsBroker) -> Any:
    """A boto3 SQS client for the endpoint under test (see ``make_client``)."""
    return make_client(sqs_broker.http_url)


@pytest.fixture
def sqs_polymq(tmp_path: Path) -> Iterator[PolymqProcess]:
    """A polymq process of the test's own, to kill and restart (skipped under the URL)."""
    broker = own_sqs_polymq(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


# --- errors ----------------------------------------------------------------------------------


def expect_error(
    call: Callable[..., Any],
    code: str,
    status: int = 400,
    message: str | None = None,
    **kwargs: Any,
) -> ClientError:
    """``call(**kwargs)`` fails with ``code`` (the query-compatible code botocore reports, see
    the module docstring) and ``status``; and with ``message`` exactly, when given."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response
    got = (err["Error"].get("Code"), err["ResponseMetadata"]["HTTPStatusCode"])
    assert got == (code, status), err
    if message is not None:
        assert err["Error"].get("Message") == message, err
    return info.value


def expect_shape_error(
    call: Callable[..., Any],
    shape: str,
    status: int = 400,
    message: str | None = None,
    **kwargs: Any,
) -> ClientError:
    """Like ``expect_error`` for a modelled error ``shape`` (e.g. ``QueueDoesNotExist``): the
    code is the shape's query code, and the exception raised is botocore's class for it."""
    e = expect_error(call, QUERY_CODE[shape], status, message, **kwargs)
    exc_class = getattr(call.__self__.exceptions, shape, None)
    if exc_class is not None:
        assert isinstance(e, exc_class), (type(e), shape)
    return e


# --- messages --------------------------------------------------------------------------------


def md5_hex(data: str | bytes) -> str:
    return hashlib.md5(data.encode() if isinstance(data, str) else data).hexdigest()


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """MD5OfMessageAttributes (and MD5OfMessageSystemAttributes) as the SQS Developer Guide
    documents it ("Calculating the MD5 message digest for message attributes"): for each
    attribute in ascending name order, the name, the data type and the value, each as a 4-byte
    big-endian length and the bytes (UTF-8 for text), with a transport byte before the value:
    1 for ``StringValue`` (String and Number types), 2 for ``BinaryValue``."""

    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    out = bytearray()
    for name in sorted(attributes):
        value = attributes[name]
        out += field(name.encode()) + field(value["DataType"].encode())
        if "StringValue" in value:
            out += b"\x01" + field(value["StringValue"].encode())
        else:
            binary = value["BinaryValue"]
            out += b"\x02" + field(binary if isinstance(binary, bytes) else binary.encode())
    return hashlib.md5(bytes(out)).hexdigest()


def new_queue(sqs: Any, prefix: str, fifo: bool = False, **attributes: str) -> str:
    """Create a queue with a fresh name and ``attributes``; return its URL."""
    attrs = dict(attributes)
    if fifo:
        attrs.setdefault("FifoQueue", "true")
    kwargs: dict[str, Any] = {"QueueName": queue_name(prefix, fifo)}
    if attrs:
        kwargs["Attributes"] = attrs
    url: str = sqs.create_queue(**kwargs)["QueueUrl"]
    return url


def receive(sqs: Any, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    """One ReceiveMessage call; the messages (an empty list when none came)."""
    kwargs.setdefault("WaitTimeSeconds", 0)
    messages: list[dict[str, Any]] = sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])
    return messages


def receive_n(sqs: Any, url: str, n: int, timeout: float = WAIT_S, **kwargs: Any) -> list[Any]:
    """Receive until ``n`` messages came (long polls of 1 s, at most ``timeout``); more than
    ``n`` fails the test."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} messages within {timeout} s"
        got += receive(
            sqs, url, MaxNumberOfMessages=min(10, n - len(got)), WaitTimeSeconds=1, **kwargs
        )
    assert len(got) == n, got
    return got


def queue_attrs(sqs: Any, url: str, *names: str) -> dict[str, str]:
    attrs: dict[str, str] = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=list(names) or ["All"]
    ).get("Attributes", {})
    return attrs


def wait_attr(
    sqs: Any, url: str, name: str, expected: str, timeout: float = WAIT_S
) -> dict[str, str]:
    """Poll GetQueueAttributes until ``name`` == ``expected`` (the Approximate* counters and
    move tasks are eventually consistent on AWS), at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        attrs = queue_attrs(sqs, url)
        if attrs.get(name) == expected or time.monotonic() > deadline:
            assert attrs.get(name) == expected, attrs
            return attrs
        time.sleep(0.1)


class Later(threading.Thread):
    """Run ``fn`` after ``delay`` seconds in a thread (a send that wakes a long poll)."""

    def __init__(self, delay: float, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.delay, self.fn = delay, fn
        self.error: BaseException | None = None
        self.sent_at = 0.0

    def run(self) -> None:
        time.sleep(self.delay)
        try:
            self.sent_at = time.monotonic()
            self.fn()
        except BaseException as exc:  # reported by join_checked
            self.error = exc

    def join_checked(self) -> None:
        self.join(TIMEOUT_S)
        assert not self.is_alive(), "the delayed call did not finish"
        if self.error is not None:
            raise self.error


# --- the query (form-encoded, XML) protocol ---------------------------------------------------


class QueryClient:
    """SQS over the query protocol, as the AWS CLI v1 and older SDKs spoke it: a SigV4-signed
    ``application/x-www-form-urlencoded`` POST of ``Action=...&Version=2012-11-05&...``, and an
    XML reply (``<XxxResponse><XxxResult>...`` or ``<ErrorResponse><Error><Code>``). Built from
    the API reference's parameter names, independent of botocore's JSON serializer."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
        self.session = botocore.httpsession.URLLib3Session(timeout=TIMEOUT_S)

    def call(self, action: str, params: Mapping[str, str], url: str | None = None) -> Any:
        """POST the action (to the queue URL when given, as the SDKs did); return (status,
        root element)."""
        body = urlencode({"Action": action, "Version": API_VERSION, **params})
        request = botocore.awsrequest.AWSRequest(
            method="POST",
            url=url or self.endpoint,
            data=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        botocore.auth.SigV4Auth(self.credentials, "sqs", REGION).add_auth(request)
        response = self.session.send(request.prepare())
        return response.status_code, ET.fromstring(response.content)


def xml_find(root: ET.Element, path: str) -> ET.Element | None:
    """``root.find`` with every step in the SQS namespace (``a/b`` -> ``{ns}a/{ns}b``); the
    error document puts no namespace on its children in some implementations, so both are
    tried."""
    qualified = "/".join(QUERY_NS + step for step in path.split("/"))
    found = root.find(qualified)
    return found if found is not None else root.find(path)


def xml_text(root: ET.Element, path: str) -> str | None:
    node = xml_find(root, path)
    return None if node is None else (node.text or "")


def xml_findall(root: ET.Element, path: str) -> list[ET.Element]:
    qualified = "/".join(QUERY_NS + step for step in path.split("/"))
    return root.findall(qualified) or root.findall(path)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def env_for_cli(endpoint: str) -> dict[str, str]:
    """The environment for ``aws`` subprocesses: dummy credentials, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POLYMQ_TEST_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    return env
