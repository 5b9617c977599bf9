"""Access keys acting as users on the AWS endpoint (``--aws-auth verify``), with boto3 against a
real polymq process: calls the user may not make get AWS's refusal (SQS ``AccessDenied`` 403 in
the JSON and the query protocol, SNS ``AuthorizationError``, EventBridge
``AccessDeniedException``), and change nothing: a witness queue keeps its messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import urlencode

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from broker.cli_users import AdminClient
from tests.polymq_process import PolymqProcess

REGION = "us-east-1"
KEYS = {
    "AKIAADMIN": "admin-secret",  # no user: the default user (guest)
    "AKIAREADER": "reader-secret",
    "AKIASTRANGER": "stranger-secret",
}
KEY_USERS = {"AKIAREADER": "reader", "AKIASTRANGER": "stranger"}
WITNESS_BODIES = ["w0", "w1"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    keys = ",".join(
        f"{k}:{s}:{KEY_USERS[k]}" if k in KEY_USERS else f"{k}:{s}" for k, s in KEYS.items()
    )
    broker = PolymqProcess(
        tmp_path_factory.mktemp("polymq-users-aws") / "data",
        listeners=("http",),
        extra_args=("--aws-auth", "verify", "--aws-access-keys", keys),
    )
    broker.start()
    try:
        admin = AdminClient(f"http://127.0.0.1:{broker.admin_port}", "guest", "guest")
        admin.call("PUT", "/api/users/reader", {"password": "x", "tags": ""})
        admin.call(
            "PUT",
            "/api/permissions/%2F/reader",
            {"configure": "^reader-", "write": "^reader-", "read": ".*"},
        )
        admin.call("PUT", "/api/users/stranger", {"password": "x", "tags": ""})  # no vhost
        yield broker
    finally:
        broker.stop()


def client(node: PolymqProcess, service: str, key: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=node.http_url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=KEYS[key],
        config=BotoConfig(retries={"max_attempts": 1}),
    )


@pytest.fixture(autouse=True)
def witness(node: PolymqProcess) -> Iterator[None]:
    sqs = client(node, "sqs", "AKIAADMIN")
    url = sqs.create_queue(QueueName=f"witness-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for body in WITNESS_BODIES:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    yield
    got = []
    for _ in range(10):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        got += [m["Body"] for m in msgs]
        if len(got) >= len(WITNESS_BODIES):
            break
    assert sorted(got) == WITNESS_BODIES
    sqs.delete_queue(QueueUrl=url)


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def test_sqs_actions_map_to_queue_permissions(node: PolymqProcess) -> None:
    admin = client(node, "sqs", "AKIAADMIN")
    theirs = admin.create_queue(QueueName=f"theirs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    admin.send_message(QueueUrl=theirs, MessageBody="kept")
    reader = client(node, "sqs", "AKIAREADER")
    with pytest.raises(ClientError) as info:
        reader.send_message(QueueUrl=theirs, MessageBody="refused")
    code, status, message = error_of(info)
    assert (code, status) == ("AccessDenied", 403)
    assert message.startswith(
        "User: arn:aws:iam::000000000000:user/reader is not authorized to perform:"
        " sqs:SendMessage on resource: arn:aws:sqs:us-east-1:000000000000:theirs-"
    )
    with pytest.raises(ClientError) as info:
        reader.create_queue(QueueName="not-readers")
    assert error_of(info)[:2] == ("AccessDenied", 403)
    with pytest.raises(ClientError) as info:
        reader.delete_queue(QueueUrl=theirs)
    assert error_of(info)[:2] == ("AccessDenied", 403)
    # read is granted on every queue: receive works
    got = reader.receive_message(QueueUrl=theirs, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["kept"]
    reader.delete_message(QueueUrl=theirs, ReceiptHandle=got[0]["ReceiptHandle"])
    # its own queues: configure and write
    own = reader.create_queue(QueueName=f"reader-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    reader.send_message(QueueUrl=own, MessageBody="mine")
    reader.delete_queue(QueueUrl=own)
    admin.delete_queue(QueueUrl=theirs)


def test_sqs_query_protocol_access_denied_is_403_xml(node: PolymqProcess) -> None:
    admin = client(node, "sqs", "AKIAADMIN")
    url = admin.create_queue(QueueName=f"theirs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = urlencode(
        {"Action": "SendMessage", "Version": "2012-11-05", "QueueUrl": url, "MessageBody": "x"}
    )
    req = botocore.awsrequest.AWSRequest(
        "POST",
        node.http_url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    creds = botocore.credentials.Credentials("AKIAREADER", KEYS["AKIAREADER"])
    botocore.auth.SigV4Auth(creds, "sqs", REGION).add_auth(req)
    prepared = req.prepare()
    raw = urlrequest.Request(
        prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST"
    )
    with pytest.raises(urlerror.HTTPError) as info:
        urlrequest.urlopen(raw, timeout=10)
    assert info.value.code == 403
    xml = info.value.read().decode()
    assert "<Code>AccessDenied</Code>" in xml and "<Type>Sender</Type>" in xml
    assert (
        admin.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "0"
    )
    admin.delete_queue(QueueUrl=url)


def test_sqs_json_access_denied_carries_the_query_code(node: PolymqProcess) -> None:
    admin = client(node, "sqs", "AKIAADMIN")
    url = admin.create_queue(QueueName=f"theirs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    reader = client(node, "sqs", "AKIAREADER")
    with pytest.raises(ClientError) as info:
        reader.send_message(QueueUrl=url, MessageBody="x")
    headers = info.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-query-error"] == "AccessDenied;Sender"
    admin.delete_queue(QueueUrl=url)


def test_a_key_whose_user_has_no_vhost_is_refused_everything(node: PolymqProcess) -> None:
    stranger = client(node, "sqs", "AKIASTRANGER")
    with pytest.raises(ClientError) as info:
        stranger.list_queues()
    assert error_of(info)[:2] == ("AccessDenied", 403)


def test_sns_publish_without_write_is_authorization_error(node: PolymqProcess) -> None:
    admin = client(node, "sns", "AKIAADMIN")
    arn = admin.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    reader = client(node, "sns", "AKIAREADER")
    with pytest.raises(ClientError) as info:
        reader.publish(TopicArn=arn, Message="refused")
    code, status, message = error_of(info)
    assert (code, status) == ("AuthorizationError", 403)
    assert "is not authorized to perform: SNS:Publish" in message
    with pytest.raises(ClientError) as info:
        reader.delete_topic(TopicArn=arn)
    assert error_of(info)[0] == "AuthorizationError"
    admin.publish(TopicArn=arn, Message="fine")
    admin.delete_topic(TopicArn=arn)


def test_eventbridge_put_events_without_write_is_access_denied(node: PolymqProcess) -> None:
    reader = client(node, "events", "AKIAREADER")
    with pytest.raises(ClientError) as info:
        reader.put_events(
            Entries=[
                {"Source": "app", "DetailType": "t", "Detail": "{}", "EventBusName": "default"}
            ]
        )
    code, status, message = error_of(info)
    assert (code, status) == ("AccessDeniedException", 400)
    assert (
        "events:PutEvents on resource: arn:aws:events:us-east-1:000000000000:event-bus/default"
        in (message)
    )
    admin = client(node, "events", "AKIAADMIN")
    out = admin.put_events(
        Entries=[{"Source": "app", "DetailType": "t", "Detail": "{}", "EventBusName": "default"}]
    )
    assert out["FailedEntryCount"] == 0
