"""The same SQS API over the query protocol (form-encoded ``Action=...``, XML replies), as the
AWS CLI v1 and older SDKs spoke it, and through the AWS CLI as a subprocess.

The query requests are written from the API reference's parameter names (``Attribute.N.Name``,
``MessageAttribute.N.Value.DataType``, ``AttributeName.N``, ...) and signed with botocore's
SigV4; the replies are parsed with ElementTree, so nothing here depends on botocore's JSON
serializer or on its query model.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.interop import sqs_helpers
from tests.interop.sqs_helpers import (
    ACCOUNT,
    QueryClient,
    arn_of,
    b64,
    env_for_cli,
    md5_hex,
    md5_of_attributes,
    queue_name,
    xml_findall,
    xml_text,
)
from tests.polymq_process import ROOT, SqsBroker

sqs_broker, sqs = sqs_helpers.sqs_broker, sqs_helpers.sqs  # the module's fixtures

CLI_TIMEOUT_S = 60


def test_query_protocol_round_trip(sqs_broker: SqsBroker, sqs: Any) -> None:
    q = QueryClient(sqs_broker.http_url)
    name = queue_name("query")
    status, root = q.call(
        "CreateQueue",
        {
            "QueueName": name,
            "Attribute.1.Name": "VisibilityTimeout",
            "Attribute.1.Value": "7",
            "Attribute.2.Name": "DelaySeconds",
            "Attribute.2.Value": "0",
        },
    )
    assert status == 200
    url = xml_text(root, "CreateQueueResult/QueueUrl")
    assert url == f"{sqs_broker.http_url}/{ACCOUNT}/{name}"
    assert xml_text(root, "ResponseMetadata/RequestId")

    attributes = {
        "color": {"DataType": "String", "StringValue": "blue"},
        "size": {"DataType": "Number", "StringValue": "3"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    status, root = q.call(
        "SendMessage",
        {
            "QueueUrl": url,
            "MessageBody": "over query",
            "MessageAttribute.1.Name": "color",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "blue",
            "MessageAttribute.2.Name": "size",
            "MessageAttribute.2.Value.DataType": "Number",
            "MessageAttribute.2.Value.StringValue": "3",
            "MessageAttribute.3.Name": "raw",
            "MessageAttribute.3.Value.DataType": "Binary",
            "MessageAttribute.3.Value.BinaryValue": b64(b"\x00\xff"),
        },
        url=url,
    )
    assert status == 200
    assert xml_text(root, "SendMessageResult/MD5OfMessageBody") == md5_hex("over query")
    assert xml_text(root, "SendMessageResult/MD5OfMessageAttributes") == md5_of_attributes(
        attributes
    )
    message_id = xml_text(root, "SendMessageResult/MessageId")

    status, root = q.call(
        "ReceiveMessage",
        {
            "QueueUrl": url,
            "WaitTimeSeconds": "5",
            "AttributeName.1": "All",
            "MessageAttributeName.1": "All",
        },
        url=url,
    )
    assert status == 200
    (message,) = xml_findall(root, "ReceiveMessageResult/Message")
    assert xml_text(message, "MessageId") == message_id
    assert xml_text(message, "Body") == "over query"
    assert xml_text(message, "MD5OfBody") == md5_hex("over query")
    assert xml_text(message, "MD5OfMessageAttributes") == md5_of_attributes(attributes)
    system = {xml_text(a, "Name"): xml_text(a, "Value") for a in xml_findall(message, "Attribute")}
    assert system["ApproximateReceiveCount"] == "1"
    assert set(system) >= {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"}
    got = {}
    for attr in xml_findall(message, "MessageAttribute"):
        value = {
            "DataType": xml_text(attr, "Value/DataType"),
            **(
                {"StringValue": xml_text(attr, "Value/StringValue")}
                if xml_text(attr, "Value/StringValue") is not None
                else {"BinaryValue": xml_text(attr, "Value/BinaryValue")}
            ),
        }
        got[xml_text(attr, "Name")] = value
    assert got == {
        "color": attributes["color"],
        "size": attributes["size"],
        "raw": {"DataType": "Binary", "BinaryValue": b64(b"\x00\xff")},
    }
    handle = xml_text(message, "ReceiptHandle")
    assert handle

    status, root = q.call(
        "GetQueueAttributes",
        {"QueueUrl": url, "AttributeName.1": "VisibilityTimeout", "AttributeName.2": "QueueArn"},
        url=url,
    )
    assert status == 200
    attrs = {
        xml_text(a, "Name"): xml_text(a, "Value")
        for a in xml_findall(root, "GetQueueAttributesResult/Attribute")
    }
    assert attrs == {"VisibilityTimeout": "7", "QueueArn": arn_of(url)}

    status, root = q.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": handle}, url=url)
    assert status == 200
    assert root.tag.endswith("DeleteMessageResponse")
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_query_protocol_error(sqs_broker: SqsBroker) -> None:
    q = QueryClient(sqs_broker.http_url)
    status, root = q.call("GetQueueUrl", {"QueueName": queue_name("absent")})
    assert status == 400
    assert root.tag.rsplit("}", 1)[-1] == "ErrorResponse"
    assert xml_text(root, "Error/Type") == "Sender"
    assert xml_text(root, "Error/Code") == "AWS.SimpleQueueService.NonExistentQueue"
    # the query API words it the old way (recorded from AWS)
    assert (
        xml_text(root, "Error/Message")
        == "The specified queue does not exist for this wsdl version."
    )
    assert xml_text(root, "RequestId")


# --- the AWS CLI -----------------------------------------------------------------------------


def aws(broker: SqsBroker, *args: str) -> Any:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "aws"), "--endpoint-url", broker.http_url]
        + ["--region", "us-east-1", "--output", "json", "sqs", *args],
        env=env_for_cli(broker.http_url),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli(sqs_broker: SqsBroker, sqs: Any) -> None:
    name = queue_name("cli")
    url = aws(sqs_broker, "create-queue", "--queue-name", name)["QueueUrl"]
    assert url == f"{sqs_broker.http_url}/{ACCOUNT}/{name}"
    sent = aws(
        sqs_broker,
        "send-message",
        "--queue-url",
        url,
        "--message-body",
        "from the cli",
        "--message-attributes",
        '{"k": {"DataType": "String", "StringValue": "v"}}',
    )
    assert sent["MD5OfMessageBody"] == md5_hex("from the cli")
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(
        {"k": {"DataType": "String", "StringValue": "v"}}
    )
    got = aws(
        sqs_broker,
        "receive-message",
        "--queue-url",
        url,
        "--wait-time-seconds",
        "5",
        "--message-attribute-names",
        "All",
    )
    (msg,) = got["Messages"]
    assert msg["Body"] == "from the cli"
    assert msg["MessageId"] == sent["MessageId"]
    assert msg["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    assert (
        aws(
            sqs_broker,
            "delete-message",
            "--queue-url",
            url,
            "--receipt-handle",
            msg["ReceiptHandle"],
        )
        is None
    )
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
