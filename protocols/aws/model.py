"""botocore's service models, loaded once per service: the source of truth for every
operation, parameter, shape and error code that the AWS wire codecs handle.

SQS moved from the query protocol to AWS JSON 1.0 in 2024, and botocore's SQS model lost the
query protocol's serialization names on the way (``locationName``: ``AttributeName.1``,
``MessageAttribute.1.Name``, ``<Message>``, ...), the operations' ``resultWrapper`` and the
errors' legacy query codes (``error.code``: ``AWS.SimpleQueueService.NonExistentQueue``). Clients
that still speak the query protocol (older SDKs, the AWS CLI v1 of those years) send and expect
exactly those names, so :func:`query_model` lays them back over the current model. They are
taken from botocore's last query-protocol SQS model (2023-11) and, for what was added since,
from the AWS Smithy model's ``xmlName``/``awsQueryError`` traits.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

# -- SQS query-protocol traits -------------------------------------------------------------------

SQS_XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# list shape -> locationName of its member
_SQS_LIST_MEMBER_NAMES = {
    "AWSAccountIdList": "AWSAccountId",
    "ActionNameList": "ActionName",
    "AttributeNameList": "AttributeName",
    "BatchResultErrorEntryList": "BatchResultErrorEntry",
    "BinaryList": "BinaryListValue",
    "ChangeMessageVisibilityBatchRequestEntryList": "ChangeMessageVisibilityBatchRequestEntry",
    "ChangeMessageVisibilityBatchResultEntryList": "ChangeMessageVisibilityBatchResultEntry",
    "DeleteMessageBatchRequestEntryList": "DeleteMessageBatchRequestEntry",
    "DeleteMessageBatchResultEntryList": "DeleteMessageBatchResultEntry",
    "ListMessageMoveTasksResultEntryList": "ListMessageMoveTasksResultEntry",
    "MessageAttributeNameList": "MessageAttributeName",
    "MessageList": "Message",
    "QueueUrlList": "QueueUrl",
    "SendMessageBatchRequestEntryList": "SendMessageBatchRequestEntry",
    "SendMessageBatchResultEntryList": "SendMessageBatchResultEntry",
    "StringList": "StringListValue",
    "TagKeyList": "TagKey",
}
# map shape -> (locationName of the map itself or None, key name, value name)
_SQS_MAP_NAMES: dict[str, tuple[str | None, str, str]] = {
    "MessageBodyAttributeMap": (None, "Name", "Value"),
    "MessageBodySystemAttributeMap": (None, "Name", "Value"),
    "MessageSystemAttributeMap": ("Attribute", "Name", "Value"),
    "QueueAttributeMap": ("Attribute", "Name", "Value"),
    "TagMap": ("Tag", "Key", "Value"),
}
# structure shape -> {member: locationName}
_SQS_MEMBER_NAMES = {
    "CreateQueueRequest": {"Attributes": "Attribute", "tags": "Tag"},
    "GetQueueAttributesResult": {"Attributes": "Attribute"},
    "ListQueueTagsResult": {"Tags": "Tag"},
    "Message": {"Attributes": "Attribute", "MessageAttributes": "MessageAttribute"},
    "MessageAttributeValue": {
        "StringListValues": "StringListValue",
        "BinaryListValues": "BinaryListValue",
    },
    "MessageSystemAttributeValue": {
        "StringListValues": "StringListValue",
        "BinaryListValues": "BinaryListValue",
    },
    "ReceiveMessageRequest": {"MessageSystemAttributeNames": "AttributeName"},
    "SendMessageBatchRequestEntry": {
        "MessageAttributes": "MessageAttribute",
        "MessageSystemAttributes": "MessageSystemAttribute",
    },
    "SendMessageRequest": {
        "MessageAttributes": "MessageAttribute",
        "MessageSystemAttributes": "MessageSystemAttribute",
    },
    "SetQueueAttributesRequest": {"Attributes": "Attribute"},
}
# error shape -> (legacy query code, HTTP status)
_SQS_ERROR_CODES = {
    "BatchEntryIdsNotDistinct": ("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400),
    "BatchRequestTooLong": ("AWS.SimpleQueueService.BatchRequestTooLong", 400),
    "EmptyBatchRequest": ("AWS.SimpleQueueService.EmptyBatchRequest", 400),
    "InvalidAddress": ("InvalidAddress", 404),
    "InvalidBatchEntryId": ("AWS.SimpleQueueService.InvalidBatchEntryId", 400),
    "InvalidSecurity": ("InvalidSecurity", 403),
    "KmsAccessDenied": ("KMS.AccessDeniedException", 400),
    "KmsDisabled": ("KMS.DisabledException", 400),
    "KmsInvalidKeyUsage": ("KMS.InvalidKeyUsageException", 400),
    "KmsInvalidState": ("KMS.InvalidStateException", 400),
    "KmsNotFound": ("KMS.NotFoundException", 400),
    "KmsOptInRequired": ("KMS.OptInRequired", 403),
    "KmsThrottled": ("KMS.ThrottlingException", 400),
    "MessageNotInflight": ("AWS.SimpleQueueService.MessageNotInflight", 400),
    "OverLimit": ("OverLimit", 403),
    "PurgeQueueInProgress": ("AWS.SimpleQueueService.PurgeQueueInProgress", 403),
    "QueueDeletedRecently": ("AWS.SimpleQueueService.QueueDeletedRecently", 400),
    "QueueDoesNotExist": ("AWS.SimpleQueueService.NonExistentQueue", 400),
    "QueueNameExists": ("QueueAlreadyExists", 400),
    "ReceiptHandleIsInvalid": ("ReceiptHandleIsInvalid", 404),
    "RequestThrottled": ("RequestThrottled", 403),
    "ResourceNotFoundException": ("ResourceNotFoundException", 404),
    "TooManyEntriesInBatchRequest": ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400),
    "UnsupportedOperation": ("AWS.SimpleQueueService.UnsupportedOperation", 400),
}

# Smithy namespaces of the services' error types (``__type`` of the JSON protocols).
_ERROR_NAMESPACES = {"sqs": "com.amazonaws.sqs", "events": "com.amazonaws.events"}


def _overlay_sqs(description: dict[str, Any]) -> None:
    shapes = description["shapes"]
    description["metadata"]["xmlNamespace"] = SQS_XML_NAMESPACE
    for name, member_name in _SQS_LIST_MEMBER_NAMES.items():
        if name in shapes:
            shapes[name]["member"]["locationName"] = member_name
    for name, (location, key, value) in _SQS_MAP_NAMES.items():
        if name in shapes:
            if location is not None:
                shapes[name]["locationName"] = location
            shapes[name]["key"]["locationName"] = key
            shapes[name]["value"]["locationName"] = value
    for name, members in _SQS_MEMBER_NAMES.items():
        if name in shapes:
            for member, location in members.items():
                if member in shapes[name]["members"]:
                    shapes[name]["members"][member]["locationName"] = location
    for name, (code, status) in _SQS_ERROR_CODES.items():
        if name in shapes:
            shapes[name]["error"] = {"code": code, "httpStatusCode": status, "senderFault": True}
    for op in description["operations"].values():
        if "output" in op:
            op["output"].setdefault("resultWrapper", f"{op['name']}Result")


_OVERLAYS = {"sqs": _overlay_sqs}


@cache
def _raw_description(name: str) -> dict[str, Any]:
    loader = botocore.session.get_session().get_component("data_loader")
    description: dict[str, Any] = loader.load_service_model(name, "service-2")
    return description


@cache
def service_model(name: str) -> ServiceModel:
    """The botocore model of ``name`` ("sqs", "sns", "events", "stepfunctions"), as shipped."""
    return ServiceModel(_raw_description(name), service_name=name)


def query_service_description(name: str, *, protocol: str | None = None) -> dict[str, Any]:
    """A copy of the model description with the query protocol's serialization traits (see
    the module docstring); ``protocol`` also rewrites ``metadata.protocol(s)``, which is how a
    botocore client is made to speak the query protocol to SQS."""
    description = copy.deepcopy(_raw_description(name))
    overlay = _OVERLAYS.get(name)
    if overlay is not None:
        overlay(description)
    if protocol is not None:
        description["metadata"]["protocol"] = protocol
        description["metadata"]["protocols"] = [protocol]
    return description


@cache
def query_model(name: str) -> ServiceModel:
    """The model the query codec reads: the shipped one plus the query traits it lost."""
    return ServiceModel(query_service_description(name), service_name=name)


def operation(model: ServiceModel, action: str) -> OperationModel | None:
    if action not in model.operation_names:
        return None
    return model.operation_model(action)


def error_shape(model: ServiceModel, code: str) -> Shape | None:
    try:
        shape = model.shape_for(code)
    except Exception:
        return None
    if not shape.metadata.get("exception"):
        return None
    return shape


def query_error_code(service_name: str, code: str) -> str:
    """The code the query protocol (and ``x-amzn-query-error``) shows for ``code``: the error
    shape's ``error.code`` when the model has one, else ``code`` itself."""
    shape = error_shape(query_model(service_name), code)
    if shape is not None:
        legacy = shape.metadata.get("error", {}).get("code")
        if legacy:
            return str(legacy)
    return code


def error_namespace(model: ServiceModel) -> str:
    name = model.service_name
    return _ERROR_NAMESPACES.get(name, f"com.amazonaws.{model.endpoint_prefix}")


def json_content_type(model: ServiceModel) -> str:
    version = model.metadata.get("jsonVersion", "1.0")
    return f"application/x-amz-json-{version}"


def xml_namespace(model: ServiceModel) -> str:
    namespace = model.metadata.get("xmlNamespace")
    if namespace:
        return str(namespace)
    return f"https://{model.endpoint_prefix}.amazonaws.com/doc/{model.api_version}/"


def error_http_status(model: ServiceModel, code: str) -> int | None:
    """The HTTP status the model gives the error shape ``code`` (``httpStatusCode``), if any."""
    shape = error_shape(model, code)
    if shape is None:
        return None
    status = shape.metadata.get("error", {}).get("httpStatusCode")
    return int(status) if status else None
