"""SQS errors common to every action, with boto3 and with raw JSON requests: an unknown queue
URL answers QueueDoesNotExist on every action that takes one; a missing required parameter
answers MissingParameter; an unknown action and a malformed body are refused.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.httpsession
import pytest

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    ACCESS_KEY,
    ACCOUNT,
    NON_EXISTENT_QUEUE_MESSAGE,
    REGION,
    SECRET_KEY,
    TIMEOUT_S,
    expect_shape_error,
    queue_name,
)
from tests.polymq_process import SqsBroker

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures

HANDLE = "AQEBaZ+j5qUoOAoxlmrCQPkBm9njMWXqemmIG6shMHCO6fV20JrQYg/AiZ8JELwLwOu5U61W+aIX5Q=="
CALLS: dict[str, dict[str, Any]] = {
    "send_message": {"MessageBody": "x"},
    "send_message_batch": {"Entries": [{"Id": "a", "MessageBody": "x"}]},
    "receive_message": {},
    "delete_message": {"ReceiptHandle": HANDLE},
    "delete_message_batch": {"Entries": [{"Id": "a", "ReceiptHandle": HANDLE}]},
    "change_message_visibility": {"ReceiptHandle": HANDLE, "VisibilityTimeout": 5},
    "change_message_visibility_batch": {
        "Entries": [{"Id": "a", "ReceiptHandle": HANDLE, "VisibilityTimeout": 5}]
    },
    "get_queue_attributes": {"AttributeNames": ["All"]},
    "set_queue_attributes": {"Attributes": {"DelaySeconds": "1"}},
    "purge_queue": {},
    "delete_queue": {},
    "list_queue_tags": {},
    "tag_queue": {"Tags": {"a": "b"}},
    "untag_queue": {"TagKeys": ["a"]},
    "add_permission": {"Label": "l", "AWSAccountIds": [ACCOUNT], "Actions": ["SendMessage"]},
    "remove_permission": {"Label": "l"},
    "list_dead_letter_source_queues": {},
}


@pytest.mark.parametrize("method", sorted(CALLS))
def test_unknown_queue_url(sqs: Any, sqs_broker: SqsBroker, method: str) -> None:
    url = f"{sqs_broker.http_url}/{ACCOUNT}/{queue_name('never-created')}"
    expect_shape_error(
        getattr(sqs, method),
        "QueueDoesNotExist",
        message=NON_EXISTENT_QUEUE_MESSAGE,
        QueueUrl=url,
        **CALLS[method],
    )


def raw_json(broker: SqsBroker, target: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    """POST an AWS JSON 1.0 request as botocore would, but with any body and target."""
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=broker.http_url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{target}",
        },
    )
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.SigV4Auth(credentials, "sqs", REGION).add_auth(request)
    response = botocore.httpsession.URLLib3Session(timeout=TIMEOUT_S).send(request.prepare())
    headers = {k.lower(): v for k, v in response.headers.items()}
    return response.status_code, headers, json.loads(response.content or b"{}")


def test_missing_required_parameter(sqs_broker: SqsBroker) -> None:
    """boto3 validates required parameters before sending, so the request is written raw."""
    status, headers, body = raw_json(sqs_broker, "CreateQueue", b"{}")
    assert status == 400
    assert body["__type"].rsplit("#", 1)[-1] == "MissingRequiredParameterException"
    assert headers["x-amzn-query-error"] == "MissingParameter;Sender"
    assert body["message"] == "The request must contain the parameter QueueName."


def test_unknown_action(sqs_broker: SqsBroker) -> None:
    status, headers, body = raw_json(sqs_broker, "FlyToTheMoon", b"{}")
    assert status == 400
    assert body["__type"].rsplit("#", 1)[-1] == "UnknownOperationException"


def test_get_queue_url_then_send_with_raw_json(sqs: Any, sqs_broker: SqsBroker) -> None:
    """The wire shape of a JSON success: 200, application/x-amz-json-1.0, members by name."""
    name = queue_name("raw")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    status, headers, body = raw_json(
        sqs_broker, "GetQueueUrl", json.dumps({"QueueName": name}).encode()
    )
    assert (status, body) == (200, {"QueueUrl": url})
    assert headers["content-type"].startswith("application/x-amz-json-1.0")
    status, headers, body = raw_json(
        sqs_broker, "SendMessage", json.dumps({"QueueUrl": url, "MessageBody": "raw"}).encode()
    )
    assert status == 200
    assert body["MD5OfMessageBody"] == sqs_helpers.md5_hex("raw")
    assert set(body) == {"MD5OfMessageBody", "MessageId"}
