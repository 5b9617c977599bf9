"""Which user an AWS request acts as, and whether that user may make it.

With ``--aws-auth verify`` every access key maps to a user (``aws_access_keys =
"AKID:SECRET:USER,..."``; a key without a user acts as the default user). The AWS APIs live in
vhost ``/``, and each call is checked against the user's permissions there, as the AMQP
operation it stands for (broker/core/access.py):

=====================================================  ==========================================
call                                                   needs
=====================================================  ==========================================
SQS CreateQueue, DeleteQueue, SetQueueAttributes,      configure on the queue
TagQueue, UntagQueue, AddPermission, RemovePermission
SQS SendMessage, SendMessageBatch                      write on the queue
SQS ReceiveMessage, DeleteMessage(Batch),              read on the queue
ChangeMessageVisibility(Batch), PurgeQueue
SNS CreateTopic, DeleteTopic, SetTopicAttributes,      configure on the exchange ``sns:<topic>``
AddPermission, RemovePermission
SNS Subscribe, Unsubscribe (binds from the topic)      read on ``sns:<topic>``
SNS Publish, PublishBatch                              write on ``sns:<topic>``
EventBridge PutEvents                                  write on ``events:<bus>`` of each entry
EventBridge CreateEventBus, DeleteEventBus, PutRule,   configure on ``events:<bus>``
DeleteRule, EnableRule, DisableRule, PutTargets,
RemoveTargets
anything else (Get*, List*, Describe*, ...)            access to vhost ``/``
=====================================================  ==========================================

A refusal is AWS's: SQS ``AccessDenied`` (HTTP 403; ``AccessDeniedException`` as the JSON type,
``AccessDenied`` in the query protocol and in ``x-amzn-query-error``), SNS
``AuthorizationError`` (403), EventBridge ``AccessDeniedException`` (400), worded "User: arn ...
is not authorized to perform: sqs:SendMessage on resource: arn ...".
"""

from __future__ import annotations

from typing import Any

from broker.api import Broker
from protocols.aws.errors import AwsError

VHOST = "/"

SQS_ACTIONS: dict[str, str] = {
    "CreateQueue": Broker.CONFIGURE,
    "DeleteQueue": Broker.CONFIGURE,
    "SetQueueAttributes": Broker.CONFIGURE,
    "TagQueue": Broker.CONFIGURE,
    "UntagQueue": Broker.CONFIGURE,
    "AddPermission": Broker.CONFIGURE,
    "RemovePermission": Broker.CONFIGURE,
    "SendMessage": Broker.WRITE,
    "SendMessageBatch": Broker.WRITE,
    "ReceiveMessage": Broker.READ,
    "DeleteMessage": Broker.READ,
    "DeleteMessageBatch": Broker.READ,
    "ChangeMessageVisibility": Broker.READ,
    "ChangeMessageVisibilityBatch": Broker.READ,
    "PurgeQueue": Broker.READ,
}
SNS_ACTIONS: dict[str, str] = {
    "CreateTopic": Broker.CONFIGURE,
    "DeleteTopic": Broker.CONFIGURE,
    "SetTopicAttributes": Broker.CONFIGURE,
    "AddPermission": Broker.CONFIGURE,
    "RemovePermission": Broker.CONFIGURE,
    "Subscribe": Broker.READ,
    "Unsubscribe": Broker.READ,
    "Publish": Broker.WRITE,
    "PublishBatch": Broker.WRITE,
}
EVENTS_ACTIONS: dict[str, str] = {
    "PutEvents": Broker.WRITE,
    "CreateEventBus": Broker.CONFIGURE,
    "DeleteEventBus": Broker.CONFIGURE,
    "PutRule": Broker.CONFIGURE,
    "DeleteRule": Broker.CONFIGURE,
    "EnableRule": Broker.CONFIGURE,
    "DisableRule": Broker.CONFIGURE,
    "PutTargets": Broker.CONFIGURE,
    "RemoveTargets": Broker.CONFIGURE,
}


def _last(value: Any, sep: str) -> str:
    return value.rsplit(sep, 1)[-1] if isinstance(value, str) else ""


def _sqs_queue(params: dict[str, Any]) -> str:
    name = params.get("QueueName")
    if isinstance(name, str):
        return name
    return _last(params.get("QueueUrl"), "/")


def _sns_topic(action: str, params: dict[str, Any]) -> str:
    if action == "CreateTopic":
        return str(params.get("Name") or "")
    if action == "Unsubscribe":
        parts = str(params.get("SubscriptionArn") or "").split(":")
        return parts[5] if len(parts) > 6 else ""
    return _last(params.get("TopicArn"), ":")


def _buses(action: str, params: dict[str, Any]) -> list[str]:
    if action == "PutEvents":
        entries = params.get("Entries") or []
        names = {
            _last(e.get("EventBusName") or "default", "/") for e in entries if isinstance(e, dict)
        }
        return sorted(names) or ["default"]
    if action in ("CreateEventBus", "DeleteEventBus"):
        return [_last(params.get("Name") or "", "/")]
    return [_last(params.get("EventBusName") or "default", "/")]


class AwsAccess:
    """Access keys -> users, and the checks of the table above."""

    def __init__(
        self,
        broker: Broker,
        key_users: dict[str, str],
        *,
        default_user: str,
        account_id: str,
        region: str,
    ) -> None:
        self.broker = broker
        self.key_users = key_users
        self.default_user = default_user
        self.account_id = account_id
        self.region = region

    def user_of(self, access_key: str | None) -> str:
        if access_key is None:
            return self.default_user
        return self.key_users.get(access_key, self.default_user)

    def _denied(self, service: str, user: str, action: str, resource: str) -> AwsError:
        principal = f"arn:aws:iam::{self.account_id}:user/{user}"
        arn = f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"
        prefix = "SNS" if service == "sns" else service
        message = (
            f"User: {principal} is not authorized to perform: {prefix}:{action} on resource: {arn}"
        )
        if service == "sqs":
            return AwsError("AccessDenied", message, status=403)
        if service == "sns":
            return AwsError("AuthorizationError", message, status=403)
        return AwsError("AccessDeniedException", message, status=400)

    def denied(
        self, service: str, action: str, params: dict[str, Any], access_key: str | None
    ) -> AwsError | None:
        """The error refusing this call, or None when the user may make it."""
        user = self.user_of(access_key)
        b = self.broker
        if not b.vhost_exists(VHOST) or not b.allowed_vhost(user, VHOST):
            return self._denied(service, user, action, "*")
        if service == "sqs" and action in SQS_ACTIONS:
            queue = _sqs_queue(params)
            if not b.allowed(user, VHOST, "queue", queue, SQS_ACTIONS[action]):
                return self._denied(service, user, action, queue)
        elif service == "sns" and action in SNS_ACTIONS:
            topic = _sns_topic(action, params)
            if not b.allowed(user, VHOST, "exchange", "sns:" + topic, SNS_ACTIONS[action]):
                return self._denied(service, user, action, topic)
        elif service == "events" and action in EVENTS_ACTIONS:
            for bus in _buses(action, params):
                if not b.allowed(user, VHOST, "exchange", "events:" + bus, EVENTS_ACTIONS[action]):
                    return self._denied(service, user, action, f"event-bus/{bus}")
        return None
