"""Amazon SQS over the core API.

Mapping (DESIGN.md section 3):

* An SQS queue is a durable core queue of the same name in vhost ``/``; AMQP, MQTT and STOMP
  clients see it as such (AMQP publishes into it through the default exchange). Its SQS
  attributes, tags and timestamps live in the queue argument ``x-sqs``; the ones the core acts
  on are mirrored into core arguments: MessageRetentionPeriod -> ``x-message-ttl``,
  DelaySeconds -> ``x-message-delay``, FifoQueue -> ``x-fifo`` (plus a five-minute
  ``x-deduplication-window``), RedrivePolicy -> ``x-dead-letter-exchange`` ``""`` +
  ``x-dead-letter-routing-key`` (the DLQ) + ``x-delivery-limit`` (maxReceiveCount - 1) +
  ``x-dead-letter-reasons`` ``["delivery_limit"]`` (expired messages are dropped, not moved).
* SendMessage publishes a persistent message to the default exchange: every SQS message goes
  through the log. The message's properties carry ``message_id``, ``timestamp`` and
  ``headers`` (message attributes: String and Number as strings, Binary as bytes) for the
  other protocols, and ``sqs`` with the typed attributes, system attributes, sent time, group
  and deduplication ids. A message published over AMQP reads back with its headers as
  message attributes (str -> String, int/float -> Number, bytes -> Binary).
* ReceiveMessage is a GET by one service session (its leases survive restarts) with the
  visibility timeout as the lease; DeleteMessage settles COMPLETE; ChangeMessageVisibility
  settles MODIFY with the new timeout. A receipt handle names the queue, the core message id
  and the receive count. Long polling waits on the node until the queue has ready messages.
* FIFO: MessageGroupId is the core message group (a group is held while one of its messages
  is in flight), MessageDeduplicationId (or the body's SHA-256 with content-based
  deduplication) the core deduplication id, prefixed by the group with
  DeduplicationScope=messageGroup; SequenceNumber is the core message id, 20 digits.

Kept per node, not in the log: the 60-second PurgeQueue guard, ReceiveRequestAttemptId
replays and message move tasks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError, invalid_value, missing
from broker.api import COMPLETE, MODIFY, SERVICE_SESSION_BASE, Broker, BrokerError

log = logging.getLogger("polymq.sqs")

VHOST = "/"
#: The service session every node's SQS receives hold their messages in.
SQS_SESSION = SERVICE_SESSION_BASE + 1

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
FIFO_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
ATTR_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
INVALID_BODY_RE = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

BATCH_ENTRIES_MAX = 10
MESSAGE_ATTRIBUTES_MAX = 10
TAGS_MAX = 50
DEDUP_WINDOW_MS = 300_000
PURGE_INTERVAL_S = 60.0
RECEIVE_ATTEMPT_TTL_S = 300.0
RECEIVE_ATTEMPTS_MAX = 10_000
MOVE_TASKS_MAX = 1_000
MOVE_RATE_MAX = 500
LIST_RESULTS_MAX = 1000

INT_ATTRIBUTES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400),
}
BOOL_ATTRIBUTES = ("FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled")
CHOICE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
FIFO_ONLY = ("ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")
SETTABLE = (
    *INT_ATTRIBUTES,
    *BOOL_ATTRIBUTES,
    *CHOICE_ATTRIBUTES,
    "Policy",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
)
DEFAULTS = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
    "SqsManagedSseEnabled": "true",
}
FIFO_DEFAULTS = {
    "FifoQueue": "true",
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}
COMPUTED = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
ALL_QUEUE_ATTRIBUTES = (*COMPUTED, *SETTABLE)
MESSAGE_SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
PERMISSION_ACTIONS = (
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
)


@dataclass(frozen=True)
class SqsSettings:
    account_id: str = "000000000000"
    region: str = "us-east-1"


@dataclass
class Context:
    """What the adapter needs to know of a request besides its parameters."""

    host: str = "localhost:4566"
    path: str = "/"
    access_key: str | None = None
    region: str = "us-east-1"


@dataclass
class MoveTask:
    handle: str
    source: str
    destination: str | None
    rate: int | None
    started_ms: int
    to_move: int
    moved: int = 0
    status: str = "RUNNING"
    failure: str | None = None
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def attributes_md5(attrs: dict[str, tuple[str, Any]]) -> str:
    """MD5 of message attributes as AWS documents it: per attribute in name order, the
    length-prefixed name, data type, a transport byte (1 string, 2 binary) and the
    length-prefixed value."""
    out = bytearray()
    for name in sorted(attrs):
        dtype, value = attrs[name]
        for part in (name.encode(), dtype.encode()):
            out += struct.pack(">I", len(part)) + part
        if dtype.startswith("Binary"):
            raw = bytes(value)
            out += b"\x02" + struct.pack(">I", len(raw)) + raw
        else:
            raw = str(value).encode()
            out += b"\x01" + struct.pack(">I", len(raw)) + raw
    return md5_hex(bytes(out))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _as_bool(name: str, value: str) -> bool:
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise ServiceError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")


def _int_param(
    params: dict[str, Any], name: str, lo: int, hi: int, default: int, *, bounds: bool = False
) -> int:
    """An integer parameter in ``[lo, hi]``; ``bounds`` words the error ">= lo and <= hi" as
    AWS does for some parameters (WaitTimeSeconds), else "between lo and hi"."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid_value(f"Value {value} for parameter {name} is invalid.")
    try:
        n = int(value)
    except ValueError:
        raise invalid_value(f"Value {value} for parameter {name} is invalid.") from None
    if not lo <= n <= hi:
        rule = f">= {lo} and <= {hi}" if bounds else f"between {lo} and {hi}"
        raise invalid_value(
            f"Value {value} for parameter {name} is invalid. Reason: Must be {rule}, if provided."
        )
    return n


def _str_param(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise missing(name)
    if not isinstance(value, str):
        raise invalid_value(f"Value {value!r} for parameter {name} is invalid.")
    return value


class SqsAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="InvalidAction",
        unsupported_message="The action {action} is not valid for this web service.",
        internal="InternalFailure",
        busy="RequestThrottled",
        busy_status=403,
        not_found=lambda: SqsAdapter._no_queue(),
    )

    def __init__(
        self,
        broker: Broker,
        settings: SqsSettings | None = None,
        *,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or SqsSettings()
        self.wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._purged: dict[str, float] = {}
        self._attempts: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._moves: dict[str, MoveTask] = {}
        self._nursery: trio.Nursery | None = None
        self._actions = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "DeleteQueue": self.delete_queue,
            "PurgeQueue": self.purge_queue,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
            "ListDeadLetterSourceQueues": self.list_dead_letter_source_queues,
            "TagQueue": self.tag_queue,
            "UntagQueue": self.untag_queue,
            "ListQueueTags": self.list_queue_tags,
            "AddPermission": self.add_permission,
            "RemovePermission": self.remove_permission,
            "StartMessageMoveTask": self.start_message_move_task,
            "ListMessageMoveTasks": self.list_message_move_tasks,
            "CancelMessageMoveTask": self.cancel_message_move_task,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hosts the message move tasks; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def handle(self, action: str, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return await self._dispatch(action, params, ctx)

    # -- names, URLs, ARNs -----------------------------------------------------------------------

    def url(self, ctx: Context, name: str) -> str:
        return f"http://{ctx.host}/{self.settings.account_id}/{name}"

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.settings.region}:{self.settings.account_id}:{name}"

    def _name_of_arn(self, arn: str) -> str | None:
        parts = arn.split(":")
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"]:
            return None
        if parts[4] != self.settings.account_id:
            return None
        return parts[5]

    @staticmethod
    def _no_queue() -> ServiceError:
        return ServiceError("QueueDoesNotExist", "The specified queue does not exist.", status=400)

    def _queue_name(self, params: dict[str, Any], ctx: Context) -> str:
        url = params.get("QueueUrl")
        if not url:
            # the query protocol may address the queue by the request path
            path = ctx.path.split("?", 1)[0].strip("/")
            if path.count("/") == 1:
                url = path
            else:
                raise missing("QueueUrl")
        if not isinstance(url, str):
            raise invalid_value(f"Value {url!r} for parameter QueueUrl is invalid.")
        tail = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
        parts = tail.split("/")
        if len(parts) < 2:
            raise ServiceError(
                "InvalidAddress",
                "The address " + url + " is not valid for this endpoint.",
                status=404,
            )
        name = parts[-1]
        account = parts[-2]
        if account != self.settings.account_id or not self._valid_name(name):
            raise self._no_queue()
        return name

    def _info(self, name: str) -> dict[str, Any]:
        info = self.broker.queue_info(name, vhost=VHOST)
        if info is None or not info["durable"] or info["exclusive"]:
            raise self._no_queue()
        return info

    @staticmethod
    def _valid_name(name: str) -> bool:
        return bool(QUEUE_NAME_RE.match(name) or FIFO_NAME_RE.match(name))

    # -- attributes -------------------------------------------------------------------------------

    @staticmethod
    def _meta(info: dict[str, Any]) -> dict[str, Any]:
        meta = info["arguments"].get("x-sqs")
        return meta if isinstance(meta, dict) else {}

    def _attributes(self, info: dict[str, Any]) -> dict[str, str]:
        """The stored attributes of a queue, defaults filled in."""
        meta = self._meta(info)
        attrs = dict(DEFAULTS)
        if info["arguments"].get("x-fifo"):
            attrs.update(FIFO_DEFAULTS)
        attrs.update(meta.get("attributes", {}))
        if attrs.get("KmsMasterKeyId"):
            attrs["SqsManagedSseEnabled"] = "false"
            attrs.setdefault("KmsDataKeyReusePeriodSeconds", "300")
        return attrs

    def _check_attributes(
        self, name: str, attrs: Any, *, creating: bool, fifo: bool
    ) -> dict[str, str]:
        if attrs is None:
            return {}
        if not isinstance(attrs, dict):
            raise invalid_value("Attributes must be a map.")
        out: dict[str, str] = {}
        for key, raw in attrs.items():
            if key not in SETTABLE:
                raise ServiceError("InvalidAttributeName", f"Unknown Attribute {key}.")
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            if key in INT_ATTRIBUTES:
                lo, hi = INT_ATTRIBUTES[key]
                if not value.lstrip("-").isdigit() or not lo <= int(value) <= hi:
                    raise ServiceError(
                        "InvalidAttributeValue", f"Invalid value for the parameter {key}."
                    )
                value = str(int(value))
            elif key in BOOL_ATTRIBUTES:
                value = "true" if _as_bool(key, value) else "false"
            elif key in CHOICE_ATTRIBUTES:
                if value not in CHOICE_ATTRIBUTES[key]:
                    raise ServiceError(
                        "InvalidAttributeValue", f"Invalid value for the parameter {key}."
                    )
            elif key in ("Policy", "RedrivePolicy", "RedriveAllowPolicy") and value:
                try:
                    doc = json.loads(value)
                except ValueError:
                    raise ServiceError(
                        "InvalidAttributeValue", f"Invalid value for the parameter {key}."
                    ) from None
                if not isinstance(doc, dict):
                    raise ServiceError(
                        "InvalidAttributeValue", f"Invalid value for the parameter {key}."
                    )
                if key == "RedrivePolicy":
                    value = self._check_redrive(name, doc, fifo)
                elif key == "RedriveAllowPolicy":
                    value = self._check_redrive_allow(doc)
            if key in FIFO_ONLY and not fifo:
                raise ServiceError("InvalidAttributeName", f"Unknown Attribute {key}.")
            if key == "FifoQueue" and not creating:
                raise ServiceError(
                    "InvalidAttributeValue",
                    "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is "
                    "not supported.",
                )
            out[key] = value
        return out

    def _check_redrive(self, name: str, doc: dict[str, Any], fifo: bool) -> str:
        def bad(reason: str) -> ServiceError:
            return invalid_value(
                f"Value {json.dumps(doc)} for parameter RedrivePolicy is invalid. Reason: {reason}"
            )

        target = doc.get("deadLetterTargetArn")
        count = doc.get("maxReceiveCount")
        if not isinstance(target, str) or count is None:
            raise bad(
                "Redrive policy is not a valid JSON map of deadLetterTargetArn and maxReceiveCount."
            )
        try:
            n = int(count)
        except (TypeError, ValueError):
            raise bad(
                "Invalid value for maxReceiveCount: must be an integer from 1 to 1000."
            ) from None
        if not 1 <= n <= 1000:
            raise bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
        dlq = self._name_of_arn(target)
        dinfo = self.broker.queue_info(dlq, vhost=VHOST) if dlq else None
        if dlq is None or dinfo is None:
            raise bad("Dead letter target does not exist.")
        if dlq.endswith(".fifo") != fifo:
            raise bad(
                "Dead-letter target owner should be same as the source and the DLQ type must "
                "match the source queue type (FIFO or standard)."
            )
        allow = self._attributes(dinfo).get("RedriveAllowPolicy")
        if allow:
            policy = json.loads(allow)
            perm = policy.get("redrivePermission")
            if perm == "denyAll" or (
                perm == "byQueue" and self.arn(name) not in policy.get("sourceQueueArns", [])
            ):
                raise bad(
                    "Queue "
                    + self.arn(name)
                    + " is not allowed to use "
                    + target
                    + " as a dead-letter queue."
                )
        return json.dumps(
            {"deadLetterTargetArn": target, "maxReceiveCount": n}, separators=(",", ":")
        )

    @staticmethod
    def _check_redrive_allow(doc: dict[str, Any]) -> str:
        perm = doc.get("redrivePermission")
        if perm not in ("allowAll", "denyAll", "byQueue"):
            raise invalid_value(
                "Value for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission "
                "must be one of allowAll, denyAll, byQueue."
            )
        sources = doc.get("sourceQueueArns")
        if perm == "byQueue":
            if not isinstance(sources, list) or not 1 <= len(sources) <= 10:
                raise invalid_value(
                    "Value for parameter RedriveAllowPolicy is invalid. Reason: byQueue needs "
                    "1 to 10 sourceQueueArns."
                )
        elif sources:
            raise invalid_value(
                "Value for parameter RedriveAllowPolicy is invalid. Reason: sourceQueueArns "
                "is only allowed with redrivePermission byQueue."
            )
        return json.dumps(doc, separators=(",", ":"))

    def _core_arguments(
        self, meta: dict[str, Any], attrs: dict[str, str], fifo: bool
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-sqs": meta,
            "x-fifo": fifo,
            "x-message-ttl": int(attrs["MessageRetentionPeriod"]) * 1000,
            "x-message-delay": int(attrs["DelaySeconds"]) * 1000,
        }
        if fifo:
            args["x-deduplication-window"] = DEDUP_WINDOW_MS
        redrive = attrs.get("RedrivePolicy")
        if redrive:
            policy = json.loads(redrive)
            dlq = self._name_of_arn(policy["deadLetterTargetArn"]) or ""
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = dlq
            args["x-delivery-limit"] = int(policy["maxReceiveCount"]) - 1
            args["x-dead-letter-reasons"] = ["delivery_limit"]
        return args

    # -- queues -----------------------------------------------------------------------------------

    async def create_queue(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = params.get("QueueName")
        if name is None:
            raise missing("QueueName")
        if not isinstance(name, str):
            raise invalid_value(f"Value {name!r} for parameter QueueName is invalid.")
        raw_attrs = params.get("Attributes") or {}
        fifo_flag = raw_attrs.get("FifoQueue") if isinstance(raw_attrs, dict) else None
        fifo = fifo_flag is not None and _as_bool("FifoQueue", str(fifo_flag))
        if fifo:
            if not FIFO_NAME_RE.match(name):
                raise invalid_value(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, "
                    "or underscores, must end with .fifo suffix and be 1 to 80 in length."
                )
        elif not QUEUE_NAME_RE.match(name):
            raise invalid_value(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in "
                "length"
            )
        attrs = self._check_attributes(name, raw_attrs, creating=True, fifo=fifo)
        if not fifo:
            attrs.pop("FifoQueue", None)
        if "KmsMasterKeyId" in attrs and "SqsManagedSseEnabled" not in attrs:
            attrs["SqsManagedSseEnabled"] = "false"
        tags = params.get("tags") or params.get("Tags") or {}
        if not isinstance(tags, dict) or len(tags) > TAGS_MAX:
            raise invalid_value(f"Too many tags added for queue {name}.")
        existing = self.broker.queue_info(name, vhost=VHOST)
        if existing is not None:
            if not existing["durable"] or existing["exclusive"]:
                raise ServiceError(
                    "QueueNameExists", f"A queue named {name} exists and is not an SQS queue."
                )
            current = self._attributes(existing)
            for key, value in attrs.items():
                if current.get(key) != value:
                    raise ServiceError(
                        "QueueNameExists",
                        "A queue already exists with the same name and a different value for "
                        f"attribute {key}",
                    )
            return {"QueueUrl": self.url(ctx, name)}
        now_s = self.wall_ms() // 1000
        meta = {"attributes": attrs, "tags": dict(tags), "created": now_s, "modified": now_s}
        full = dict(DEFAULTS)
        if fifo:
            full.update(FIFO_DEFAULTS)
        full.update(attrs)
        await self.broker.declare_queue(
            name, vhost=VHOST, durable=True, arguments=self._core_arguments(meta, full, fifo)
        )
        return {"QueueUrl": self.url(ctx, name)}

    async def get_queue_url(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = _str_param(params, "QueueName")
        owner = params.get("QueueOwnerAWSAccountId")
        if owner not in (None, "", self.settings.account_id) or not self._valid_name(name):
            raise self._no_queue()
        self._info(name)
        return {"QueueUrl": self.url(ctx, name)}

    def _sqs_queue_names(self) -> list[str]:
        return sorted(
            q["name"]
            for q in self.broker.list_queues(vhost=VHOST)
            if q["durable"] and not q["exclusive"] and self._valid_name(q["name"])
        )

    @staticmethod
    def _page(names: list[str], params: dict[str, Any]) -> tuple[list[str], str | None]:
        max_results = params.get("MaxResults")
        token = params.get("NextToken")
        if token:
            try:
                after = _unb64(str(token)).decode()
            except (ValueError, UnicodeDecodeError, binascii.Error):
                raise invalid_value("Invalid NextToken value.") from None
            names = [n for n in names if n > after]
        if max_results is None:
            return names[:LIST_RESULTS_MAX], None
        n = _int_param(params, "MaxResults", 1, LIST_RESULTS_MAX, LIST_RESULTS_MAX)
        page = names[:n]
        more = len(names) > n
        return page, (_b64(page[-1].encode()) if more and page else None)

    async def list_queues(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        prefix = params.get("QueueNamePrefix") or ""
        names = [n for n in self._sqs_queue_names() if n.startswith(prefix)]
        page, token = self._page(names, params)
        out: dict[str, Any] = {}
        if page:
            out["QueueUrls"] = [self.url(ctx, n) for n in page]
        if token:
            out["NextToken"] = token
        return out

    async def delete_queue(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        self._info(name)
        await self.broker.delete_queue(name, vhost=VHOST)
        self._purged.pop(name, None)
        return {}

    async def purge_queue(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        self._info(name)
        now = trio.current_time()
        last = self._purged.get(name)
        if last is not None and now - last < PURGE_INTERVAL_S:
            raise ServiceError(
                "PurgeQueueInProgress",
                f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.",
                status=403,
            )
        self._purged[name] = now
        await self.broker.purge_queue(name, vhost=VHOST)
        return {}

    async def get_queue_attributes(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        wanted = params.get("AttributeNames") or []
        if not isinstance(wanted, list):
            raise invalid_value("AttributeNames must be a list.")
        attrs = self._attributes(info)
        counts = self.broker.queue_counts(name, vhost=VHOST) or (0, 0, 0)
        meta = self._meta(info)
        computed = {
            "ApproximateNumberOfMessages": str(counts[0]),
            "ApproximateNumberOfMessagesNotVisible": str(counts[1]),
            "ApproximateNumberOfMessagesDelayed": str(counts[2]),
            "CreatedTimestamp": str(meta.get("created", 0)),
            "LastModifiedTimestamp": str(meta.get("modified", 0)),
            "QueueArn": self.arn(name),
        }
        everything = {**computed, **attrs}
        names: list[str] = []
        for w in wanted:
            if w == "All":
                names.extend(everything)
            elif w in everything:
                names.append(w)
            elif w in ALL_QUEUE_ATTRIBUTES or w in FIFO_DEFAULTS:
                continue  # a valid attribute this queue does not have (not set, or FIFO-only)
            else:
                raise ServiceError("InvalidAttributeName", f"Unknown Attribute {w}.")
        out = {n: everything[n] for n in names}
        return {"Attributes": out} if out else {}

    async def set_queue_attributes(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        fifo = bool(info["arguments"].get("x-fifo"))
        raw = params.get("Attributes")
        if raw is None:
            raise missing("Attribute.1.Name")
        new = self._check_attributes(name, raw, creating=False, fifo=fifo)
        meta = dict(self._meta(info))
        stored = dict(meta.get("attributes", {}))
        for key, value in new.items():
            if (
                key in ("RedrivePolicy", "Policy", "RedriveAllowPolicy", "KmsMasterKeyId")
                and not value
            ):
                stored.pop(key, None)
            else:
                stored[key] = value
        meta["attributes"] = stored
        meta.setdefault("tags", {})
        meta.setdefault("created", self.wall_ms() // 1000)
        meta["modified"] = self.wall_ms() // 1000
        full = dict(DEFAULTS)
        if fifo:
            full.update(FIFO_DEFAULTS)
        full.update(stored)
        args = {
            k: v
            for k, v in info["arguments"].items()
            if not k.startswith("x-") or k == "x-max-priority"
        }
        args.update(self._core_arguments(meta, full, fifo))
        await self.broker.set_queue_arguments(name, args, vhost=VHOST)
        return {}

    async def _set_meta(self, name: str, info: dict[str, Any], meta: dict[str, Any]) -> None:
        args = dict(info["arguments"])
        args["x-sqs"] = meta
        await self.broker.set_queue_arguments(name, args, vhost=VHOST)

    async def list_dead_letter_source_queues(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        self._info(name)
        arn = self.arn(name)
        sources = []
        for qname in self._sqs_queue_names():
            qinfo = self.broker.queue_info(qname, vhost=VHOST)
            if qinfo is None:
                continue
            redrive = self._attributes(qinfo).get("RedrivePolicy")
            if redrive and json.loads(redrive).get("deadLetterTargetArn") == arn:
                sources.append(qname)
        page, token = self._page(sources, params)
        out: dict[str, Any] = {"queueUrls": [self.url(ctx, n) for n in page]}
        if token:
            out["NextToken"] = token
        return out

    # -- tags and permissions ---------------------------------------------------------------------

    async def tag_queue(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        tags = params.get("Tags")
        if not isinstance(tags, dict) or not tags:
            raise missing("Tags")
        meta = dict(self._meta(info))
        merged = {**meta.get("tags", {}), **{str(k): str(v) for k, v in tags.items()}}
        if len(merged) > TAGS_MAX:
            raise invalid_value(f"Too many tags added for queue {name}.")
        meta["tags"] = merged
        await self._set_meta(name, info, meta)
        return {}

    async def untag_queue(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        keys = params.get("TagKeys")
        if not isinstance(keys, list) or not keys:
            raise missing("TagKeys")
        meta = dict(self._meta(info))
        meta["tags"] = {k: v for k, v in meta.get("tags", {}).items() if k not in keys}
        await self._set_meta(name, info, meta)
        return {}

    async def list_queue_tags(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        tags = self._meta(self._info(name)).get("tags", {})
        return {"Tags": dict(tags)} if tags else {}

    async def add_permission(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        label = _str_param(params, "Label")
        accounts = params.get("AWSAccountIds")
        actions = params.get("Actions")
        if not isinstance(accounts, list) or not accounts:
            raise missing("AWSAccountIds")
        if not isinstance(actions, list) or not actions:
            raise missing("Actions")
        for a in actions:
            if a not in PERMISSION_ACTIONS:
                raise invalid_value(
                    f"Value SQS:{a} for parameter ActionName is invalid. Reason: Only the queue "
                    "owner is allowed to invoke this action."
                )
        attrs = self._attributes(info)
        policy = json.loads(attrs["Policy"]) if attrs.get("Policy") else None
        if policy is None:
            policy = {
                "Version": "2008-10-17",
                "Id": self.arn(name) + "/SQSDefaultPolicy",
                "Statement": [],
            }
        statements = policy.setdefault("Statement", [])
        if any(s.get("Sid") == label for s in statements):
            raise invalid_value(
                f"Value {label} for parameter Label is invalid. Reason: Already exists."
            )
        principals = [f"arn:aws:iam::{a}:root" for a in accounts]
        statements.append(
            {
                "Sid": label,
                "Effect": "Allow",
                "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
                "Action": [f"SQS:{a}" for a in actions][0]
                if len(actions) == 1
                else [f"SQS:{a}" for a in actions],
                "Resource": self.arn(name),
            }
        )
        await self._store_attribute(name, info, "Policy", json.dumps(policy, separators=(",", ":")))
        return {}

    async def remove_permission(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        label = _str_param(params, "Label")
        attrs = self._attributes(info)
        policy = json.loads(attrs["Policy"]) if attrs.get("Policy") else {"Statement": []}
        statements = policy.get("Statement", [])
        kept = [s for s in statements if s.get("Sid") != label]
        if len(kept) == len(statements):
            raise invalid_value(
                f"Value {label} for parameter Label is invalid. Reason: can't find label."
            )
        policy["Statement"] = kept
        value = json.dumps(policy, separators=(",", ":")) if kept else ""
        await self._store_attribute(name, info, "Policy", value)
        return {}

    async def _store_attribute(self, name: str, info: dict[str, Any], key: str, value: str) -> None:
        meta = dict(self._meta(info))
        stored = dict(meta.get("attributes", {}))
        if value:
            stored[key] = value
        else:
            stored.pop(key, None)
        meta["attributes"] = stored
        meta["modified"] = self.wall_ms() // 1000
        await self._set_meta(name, info, meta)

    # -- sending ----------------------------------------------------------------------------------

    @staticmethod
    def _message_attributes(
        raw: Any, what: str = "MessageAttributes"
    ) -> dict[str, tuple[str, Any]]:
        if not raw:
            return {}
        if not isinstance(raw, dict):
            raise invalid_value(f"{what} must be a map.")
        if len(raw) > MESSAGE_ATTRIBUTES_MAX:
            raise invalid_value(
                f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
                f"[{MESSAGE_ATTRIBUTES_MAX}]."
            )
        out: dict[str, tuple[str, Any]] = {}
        for name, value in raw.items():
            lowered = name.lower()
            if (
                not ATTR_NAME_RE.match(name)
                or lowered.startswith(("aws.", "amazon."))
                or ".." in name
                or name.startswith(".")
                or name.endswith(".")
            ):
                raise invalid_value(f"Message attribute name '{name}' is invalid.")
            if not isinstance(value, dict):
                raise invalid_value(f"The message attribute '{name}' must contain a value.")
            dtype = value.get("DataType")
            if not isinstance(dtype, str) or not dtype:
                raise invalid_value(
                    f"The message attribute '{name}' must contain a non-empty message "
                    "attribute type."
                )
            base = dtype.split(".", 1)[0]
            if base not in ("String", "Number", "Binary") or len(dtype) > 256:
                raise invalid_value(
                    f"The type of message attribute '{name}' is invalid. You must use only the "
                    "following supported type prefixes: Binary, Number, String."
                )
            if base == "Binary":
                data = value.get("BinaryValue")
                if isinstance(data, str):
                    try:
                        data = base64.b64decode(data, validate=True)
                    except (ValueError, binascii.Error):
                        raise invalid_value(
                            f"The message attribute '{name}' has an invalid binary value."
                        ) from None
                if not isinstance(data, bytes | bytearray) or not data:
                    raise invalid_value(
                        f"The message attribute '{name}' with type 'Binary' must use field "
                        "'Binary'."
                    )
                out[name] = (dtype, bytes(data))
                continue
            text = value.get("StringValue")
            if text == "":
                raise invalid_value(
                    f"Message (user) attribute '{name}' must contain a non-empty value of type "
                    f"'{base}'."
                )
            if not isinstance(text, str):
                raise invalid_value(
                    f"The message attribute '{name}' with type '{base}' must use field 'String'."
                )
            if INVALID_BODY_RE.search(text):
                raise ServiceError(
                    "InvalidMessageContents",
                    f"Invalid characters found in the message attribute '{name}'.",
                )
            if base == "Number" and not NUMBER_RE.match(text.strip()):
                raise invalid_value(
                    f"Can't cast the value of message (user) attribute '{name}' to a number."
                )
            out[name] = (dtype, text)
        return out

    @staticmethod
    def _attributes_size(attrs: dict[str, tuple[str, Any]]) -> int:
        size = 0
        for name, (dtype, value) in attrs.items():
            size += len(name.encode()) + len(dtype.encode())
            size += len(value) if isinstance(value, bytes) else len(str(value).encode())
        return size

    def _build(
        self,
        entry: dict[str, Any],
        name: str,
        attrs: dict[str, str],
        fifo: bool,
        ctx: Context,
        prefix: str = "",
    ) -> tuple[tuple[str, dict[str, Any], bytes, int, dict[str, Any]], dict[str, Any]]:
        """Validate one message; ``(core message, reply fields)``."""
        body = entry.get("MessageBody")
        if body is None or body == "":
            raise missing(prefix + "MessageBody")
        if not isinstance(body, str):
            raise invalid_value("The message body must be a string.")
        if INVALID_BODY_RE.search(body):
            raise ServiceError(
                "InvalidMessageContents",
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 "
                "to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            )
        raw_body = body.encode()
        user = self._message_attributes(entry.get("MessageAttributes"))
        system = (
            self._message_attributes(
                entry.get("MessageSystemAttributes"), "MessageSystemAttributes"
            )
            if entry.get("MessageSystemAttributes")
            else {}
        )
        for key in system:
            if key != "AWSTraceHeader":
                raise invalid_value(
                    f"Message system attribute name '{key}' is invalid. Only AWSTraceHeader is "
                    "supported."
                )
        limit = int(attrs["MaximumMessageSize"])
        size = len(raw_body) + self._attributes_size(user)
        if size > limit:
            raise invalid_value(
                f"One or more parameters are invalid. Reason: Message must be shorter than "
                f"{limit} bytes."
            )
        opts: dict[str, Any] = {}
        delay = entry.get("DelaySeconds")
        if delay is not None:
            if fifo:
                raise invalid_value(
                    f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request "
                    "include parameter that is not valid for this queue type."
                )
            opts["delay_ms"] = _int_param(entry, "DelaySeconds", 0, 900, 0) * 1000
        group = entry.get("MessageGroupId")
        dedup = entry.get("MessageDeduplicationId")
        for pname, pvalue in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
            if pvalue is not None and (
                not isinstance(pvalue, str)
                or not 1 <= len(pvalue) <= 128
                or not all(33 <= ord(ch) <= 126 for ch in pvalue)
            ):
                raise invalid_value(
                    f"Value {pvalue} for parameter {pname} is invalid. Reason: {pname} can only "
                    "include alphanumeric and punctuation characters. 1 to 128 in length."
                )
        if fifo:
            if group is None:
                raise missing(prefix + "MessageGroupId")
            if dedup is None:
                if attrs.get("ContentBasedDeduplication") != "true":
                    raise invalid_value(
                        "The queue should either have ContentBasedDeduplication enabled or "
                        "MessageDeduplicationId provided explicitly"
                    )
                dedup = hashlib.sha256(raw_body).hexdigest()
            opts["group"] = group
            scope = attrs.get("DeduplicationScope")
            opts["dedup"] = f"{group}\x00{dedup}" if scope == "messageGroup" else dedup
        elif dedup is not None:
            raise invalid_value(
                f"Value {dedup} for parameter MessageDeduplicationId is invalid. Reason: The "
                "request includes a parameter that is not valid for this queue type."
            )
        message_id = str(uuid.uuid4())
        sent_ms = self.wall_ms()
        headers: dict[str, Any] = {
            k: (v if isinstance(v, bytes) else str(v)) for k, (_, v) in user.items()
        }
        sqs: dict[str, Any] = {"t": sent_ms, "s": ctx.access_key or self.settings.account_id}
        if user:
            sqs["a"] = {k: [t, v] for k, (t, v) in user.items()}
        if system:
            sqs["y"] = {k: [t, v] for k, (t, v) in system.items()}
        if group is not None:
            sqs["g"] = group
        if fifo:
            sqs["d"] = dedup
        props: dict[str, Any] = {
            "delivery_mode": 2,
            "message_id": message_id,
            "timestamp": sent_ms // 1000,
            "sqs": sqs,
        }
        if headers:
            props["headers"] = headers
        reply: dict[str, Any] = {
            "MessageId": message_id,
            "MD5OfMessageBody": md5_hex(raw_body),
        }
        if user:
            reply["MD5OfMessageAttributes"] = attributes_md5(user)
        if system:
            reply["MD5OfMessageSystemAttributes"] = attributes_md5(system)
        return (name, props, raw_body, 0, opts), reply

    @staticmethod
    def _finish(reply: dict[str, Any], ids: tuple[Any, ...] | None, fifo: bool) -> dict[str, Any]:
        """A duplicate answers with the original's MessageId and SequenceNumber."""
        if ids is None:
            return reply
        mid, dup, original = ids
        if dup is not None and isinstance(original, str):
            reply["MessageId"] = original
        if fifo and mid is not None:
            reply["SequenceNumber"] = str(mid).zfill(20)
        return reply

    async def send_message(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        attrs = self._attributes(info)
        fifo = bool(info["arguments"].get("x-fifo"))
        message, reply = self._build(params, name, attrs, fifo, ctx)
        result = await self.broker.publish("", [message], vhost=VHOST)
        if not result.routed or result.routed[0] == 0:
            raise self._no_queue()
        if result.rejected:
            raise ServiceError("RequestThrottled", "The queue refused the message.", status=403)
        ids = result.ids.get(0) if result.ids else None
        return self._finish(reply, ids, fifo)

    @staticmethod
    def _entries(params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        entries = params.get("Entries")
        if not entries:
            raise ServiceError(
                "EmptyBatchRequest", f"There should be at least one {what} in the request."
            )
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise invalid_value("Entries must be a list of structures.")
        if len(entries) > BATCH_ENTRIES_MAX:
            raise ServiceError(
                "TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are {BATCH_ENTRIES_MAX}. You have sent "
                f"{len(entries)}.",
            )
        seen: set[str] = set()
        for e in entries:
            eid = e.get("Id")
            if not isinstance(eid, str) or not BATCH_ID_RE.match(eid):
                raise ServiceError(
                    "InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and "
                    "underscores. It can be at most 80 letters long.",
                )
            if eid in seen:
                raise ServiceError("BatchEntryIdsNotDistinct", f"Id {eid} repeated.")
            seen.add(eid)
        return entries

    @staticmethod
    def _failure(eid: str, exc: ServiceError) -> dict[str, Any]:
        return {
            "Id": eid,
            "SenderFault": exc.sender_fault,
            "Code": exc.code,
            "Message": exc.message,
        }

    async def send_message_batch(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        entries = self._entries(params, "SendMessageBatchRequestEntry")
        info = self._info(name)
        attrs = self._attributes(info)
        fifo = bool(info["arguments"].get("x-fifo"))
        limit = int(attrs["MaximumMessageSize"])
        total = sum(
            len(str(e.get("MessageBody", "")).encode())
            + self._attributes_size(self._safe_attrs(e.get("MessageAttributes")))
            for e in entries
        )
        if total > limit:
            raise ServiceError(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes.",
            )
        if fifo and any(e.get("MessageGroupId") is None for e in entries):
            raise invalid_value("The request must contain the parameter MessageGroupId.")
        failed: list[dict[str, Any]] = []
        good: list[
            tuple[str, tuple[str, dict[str, Any], bytes, int, dict[str, Any]], dict[str, Any]]
        ] = []
        for e in entries:
            try:
                message, reply = self._build(e, name, attrs, fifo, ctx)
            except ServiceError as exc:
                failed.append(self._failure(e["Id"], exc))
                continue
            good.append((e["Id"], message, reply))
        successful: list[dict[str, Any]] = []
        if good:
            result = await self.broker.publish("", [g[1] for g in good], vhost=VHOST)
            if result.routed and result.routed[0] == 0:
                raise self._no_queue()
            rejected = set(result.rejected)
            for pos, (eid, _, reply) in enumerate(good):
                if pos in rejected:
                    failed.append(
                        self._failure(
                            eid, ServiceError("RequestThrottled", "The queue refused the message.")
                        )
                    )
                    continue
                ids = result.ids.get(pos) if result.ids else None
                successful.append({"Id": eid, **self._finish(reply, ids, fifo)})
        return {"Successful": successful, "Failed": failed}

    def _safe_attrs(self, raw: Any) -> dict[str, tuple[str, Any]]:
        try:
            return self._message_attributes(raw)
        except ServiceError:
            return {}

    # -- receiving --------------------------------------------------------------------------------

    @staticmethod
    def _handle(name: str, mid: int, count: int) -> str:
        nonce = uuid.uuid4().hex[:12]
        return _b64(f"{mid}:{count}:{nonce}:{name}".encode())

    @staticmethod
    def _parse_handle(handle: Any, name: str) -> tuple[int, int]:
        def bad() -> ServiceError:
            return ServiceError(
                "ReceiptHandleIsInvalid",
                f'The input receipt handle "{handle}" is not a valid receipt handle.',
            )

        if not isinstance(handle, str) or not handle:
            raise missing("ReceiptHandle")
        try:
            mid_s, count_s, _nonce, qname = _unb64(handle).decode().split(":", 3)
            mid, count = int(mid_s), int(count_s)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise bad() from None
        if qname != name:
            raise bad()
        return mid, count

    async def receive_message(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        info = self._info(name)
        attrs = self._attributes(info)
        max_n = _int_param(params, "MaxNumberOfMessages", 1, 10, 1)
        visibility = _int_param(
            params, "VisibilityTimeout", 0, 43_200, int(attrs["VisibilityTimeout"])
        )
        wait_s = _int_param(
            params,
            "WaitTimeSeconds",
            0,
            20,
            int(attrs["ReceiveMessageWaitTimeSeconds"]),
            bounds=True,
        )
        attempt = params.get("ReceiveRequestAttemptId")
        fifo = bool(info["arguments"].get("x-fifo"))
        if attempt is not None and fifo:
            cached = self._attempt(name, str(attempt))
            if cached is not None:
                return cached
        deadline = trio.current_time() + wait_s
        while True:
            counts = self.broker.queue_counts(name, vhost=VHOST)
            if counts is None:
                raise self._no_queue()
            if counts[0]:
                got, _, times = await self.broker.get_detailed(
                    SQS_SESSION, name, vhost=VHOST, max_n=max_n, lease_ms=max(1, visibility * 1000)
                )
                if got:
                    out = self._messages(name, got, times, params, fifo)
                    if attempt is not None and fifo:
                        self._remember(name, str(attempt), out)
                    return out
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return {}
            await self.broker.wait_ready(name, vhost=VHOST, timeout_s=remaining)

    def _attempt(self, name: str, attempt: str) -> dict[str, Any] | None:
        now = trio.current_time()
        entry = self._attempts.get((name, attempt))
        if entry is None or now - entry[0] > RECEIVE_ATTEMPT_TTL_S:
            return None
        return entry[1]

    def _remember(self, name: str, attempt: str, out: dict[str, Any]) -> None:
        now = trio.current_time()
        if len(self._attempts) >= RECEIVE_ATTEMPTS_MAX:
            for key in [
                k for k, (t, _) in self._attempts.items() if now - t > RECEIVE_ATTEMPT_TTL_S
            ]:
                del self._attempts[key]
            while len(self._attempts) >= RECEIVE_ATTEMPTS_MAX:
                del self._attempts[next(iter(self._attempts))]
        self._attempts[(name, attempt)] = (now, out)

    @staticmethod
    def _wanted_system(params: dict[str, Any]) -> set[str]:
        names: list[Any] = []
        for key in ("AttributeNames", "MessageSystemAttributeNames"):
            value = params.get(key)
            if isinstance(value, list):
                names.extend(value)
        if "All" in names:
            return set(MESSAGE_SYSTEM_ATTRIBUTES)
        return {n for n in names if isinstance(n, str)}

    @staticmethod
    def _wanted_user(params: dict[str, Any]) -> Callable[[str], bool]:
        names = params.get("MessageAttributeNames") or []
        if not isinstance(names, list):
            names = []
        if "All" in names or ".*" in names:
            return lambda n: True
        exact = {n for n in names if isinstance(n, str) and not n.endswith(".*")}
        prefixes = tuple(n[:-1] for n in names if isinstance(n, str) and n.endswith(".*"))
        return lambda n: n in exact or (bool(prefixes) and n.startswith(prefixes))

    @staticmethod
    def _user_attributes(props: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        sqs = props.get("sqs")
        if isinstance(sqs, dict) and isinstance(sqs.get("a"), dict):
            return {k: (v[0], v[1]) for k, v in sqs["a"].items()}
        if isinstance(sqs, dict):
            return {}
        headers = props.get("headers")
        out: dict[str, tuple[str, Any]] = {}
        if isinstance(headers, dict):
            for k, v in headers.items():
                if not isinstance(k, str) or k.startswith("x-") or not ATTR_NAME_RE.match(k):
                    continue
                if isinstance(v, bool):
                    out[k] = ("String", "true" if v else "false")
                elif isinstance(v, int | float):
                    out[k] = ("Number", str(v))
                elif isinstance(v, bytes | bytearray):
                    if v:
                        out[k] = ("Binary", bytes(v))
                elif isinstance(v, str) and v:
                    out[k] = ("String", v)
                if len(out) >= MESSAGE_ATTRIBUTES_MAX:
                    break
        return out

    def _messages(
        self,
        name: str,
        got: list[Any],
        times: list[list[int | None]],
        params: dict[str, Any],
        fifo: bool,
    ) -> dict[str, Any]:
        system_wanted = self._wanted_system(params)
        user_wanted = self._wanted_user(params)
        out = []
        for (mid, _redelivered, count, _x, _rk, props, body), (first_at, at) in zip(
            got, times, strict=True
        ):
            props = props or {}
            raw_sqs = props.get("sqs")
            sqs: dict[str, Any] = raw_sqs if isinstance(raw_sqs, dict) else {}
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            message_id = props.get("message_id")
            if not isinstance(message_id, str):
                message_id = str(uuid.UUID(int=mid % (1 << 128)))
            msg: dict[str, Any] = {
                "MessageId": message_id,
                "ReceiptHandle": self._handle(name, mid, count),
                "MD5OfBody": md5_hex(text.encode()),
                "Body": text,
            }
            system: dict[str, str] = {
                "SenderId": str(sqs.get("s") or self.settings.account_id),
                "SentTimestamp": str(sqs.get("t") or at or 0),
                "ApproximateReceiveCount": str(count),
                "ApproximateFirstReceiveTimestamp": str(first_at or 0),
            }
            if fifo:
                system["SequenceNumber"] = str(mid).zfill(20)
                if sqs.get("d") is not None:
                    system["MessageDeduplicationId"] = str(sqs["d"])
            if sqs.get("g") is not None:
                system["MessageGroupId"] = str(sqs["g"])
            trace = (sqs.get("y") or {}).get("AWSTraceHeader")
            if trace:
                system["AWSTraceHeader"] = str(trace[1])
            source = self._dead_letter_source(props)
            if source:
                system["DeadLetterQueueSourceArn"] = self.arn(source)
            picked = {k: v for k, v in system.items() if k in system_wanted}
            if picked:
                msg["Attributes"] = picked
            user = {k: v for k, v in self._user_attributes(props).items() if user_wanted(k)}
            if user:
                msg["MD5OfMessageAttributes"] = attributes_md5(user)
                msg["MessageAttributes"] = {
                    k: (
                        {"DataType": t, "BinaryValue": v}
                        if t.startswith("Binary")
                        else {"DataType": t, "StringValue": v}
                    )
                    for k, (t, v) in user.items()
                }
            out.append(msg)
        return {"Messages": out}

    @staticmethod
    def _dead_letter_source(props: dict[str, Any]) -> str | None:
        headers = props.get("headers")
        if not isinstance(headers, dict):
            return None
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[-1], dict):
            queue = deaths[-1].get("queue")
            return queue if isinstance(queue, str) else None
        return None

    # -- settling ---------------------------------------------------------------------------------

    async def delete_message(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        self._info(name)
        mid, _ = self._parse_handle(params.get("ReceiptHandle"), name)
        if self.broker.held(SQS_SESSION, [mid]):
            await self._settle_quietly([mid], COMPLETE, 0)
        return {}

    async def _settle_quietly(self, ids: list[int], op: int, delay_ms: int) -> None:
        """Settle ids held a moment ago; one that went meanwhile (its lease ran out) is skipped."""
        try:
            await self.broker.settle(SQS_SESSION, ids, op, delay_ms=delay_ms)
        except BrokerError:
            for mid in self.broker.held(SQS_SESSION, ids):
                try:
                    await self.broker.settle(SQS_SESSION, [mid], op, delay_ms=delay_ms)
                except BrokerError:
                    continue

    async def delete_message_batch(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        entries = self._entries(params, "DeleteMessageBatchRequestEntry")
        self._info(name)
        failed: list[dict[str, Any]] = []
        ok: list[str] = []
        ids: list[int] = []
        for e in entries:
            try:
                mid, _ = self._parse_handle(e.get("ReceiptHandle"), name)
            except ServiceError as exc:
                failed.append(self._failure(e["Id"], exc))
                continue
            ok.append(e["Id"])
            if mid not in ids:
                ids.append(mid)
        held = self.broker.held(SQS_SESSION, ids)
        if held:
            await self._settle_quietly(held, COMPLETE, 0)
        return {"Successful": [{"Id": i} for i in ok], "Failed": failed}

    async def change_message_visibility(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        self._info(name)
        mid, _ = self._parse_handle(params.get("ReceiptHandle"), name)
        if params.get("VisibilityTimeout") is None:
            raise missing("VisibilityTimeout")
        timeout = _int_param(params, "VisibilityTimeout", 0, 43_200, 0)
        if not self.broker.held(SQS_SESSION, [mid]):
            raise ServiceError(
                "MessageNotInflight",
                f"Value {params.get('ReceiptHandle')} for parameter ReceiptHandle is invalid. "
                "Reason: Message does not exist or is not available for visibility timeout "
                "change.",
            )
        await self.broker.settle(SQS_SESSION, [mid], MODIFY, delay_ms=timeout * 1000)
        return {}

    async def change_message_visibility_batch(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        name = self._queue_name(params, ctx)
        entries = self._entries(params, "ChangeMessageVisibilityBatchRequestEntry")
        self._info(name)
        failed: list[dict[str, Any]] = []
        successful: list[dict[str, str]] = []
        for e in entries:
            try:
                await self.change_message_visibility(
                    {
                        "QueueUrl": params.get("QueueUrl"),
                        "ReceiptHandle": e.get("ReceiptHandle"),
                        "VisibilityTimeout": e.get("VisibilityTimeout", 0),
                    },
                    ctx,
                )
            except ServiceError as exc:
                failed.append(self._failure(e["Id"], exc))
                continue
            except BrokerError as exc:
                failed.append(self._failure(e["Id"], ServiceError("MessageNotInflight", exc.text)))
                continue
            successful.append({"Id": e["Id"]})
        return {"Successful": successful, "Failed": failed}

    # -- message move tasks -----------------------------------------------------------------------

    def _is_dead_letter_queue(self, name: str) -> bool:
        arn = self.arn(name)
        for qname in self._sqs_queue_names():
            qinfo = self.broker.queue_info(qname, vhost=VHOST)
            redrive = self._attributes(qinfo).get("RedrivePolicy") if qinfo else None
            if redrive and json.loads(redrive).get("deadLetterTargetArn") == arn:
                return True
        return False

    async def start_message_move_task(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        source_arn = _str_param(params, "SourceArn")
        source = self._name_of_arn(source_arn)
        if source is None or self.broker.queue_info(source, vhost=VHOST) is None:
            raise ServiceError(
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        if not self._is_dead_letter_queue(source):
            raise invalid_value("Source queue must be configured as a Dead Letter Queue.")
        destination: str | None = None
        dest_arn = params.get("DestinationArn")
        if dest_arn:
            destination = self._name_of_arn(str(dest_arn))
            if destination is None or self.broker.queue_info(destination, vhost=VHOST) is None:
                raise ServiceError(
                    "ResourceNotFoundException",
                    "The resource that you specified for the DestinationArn parameter doesn't "
                    "exist.",
                )
        rate = params.get("MaxNumberOfMessagesPerSecond")
        if rate is not None:
            rate = _int_param(params, "MaxNumberOfMessagesPerSecond", 1, MOVE_RATE_MAX, 1)
        if any(t.source == source and t.status == "RUNNING" for t in self._moves.values()):
            raise invalid_value(
                "There is already a task running. Only one active task is allowed for a source "
                "queue arn at a given time."
            )
        if self._nursery is None:
            raise ServiceError(
                "ServiceUnavailable",
                "Message move tasks are not running.",
                status=503,
                sender_fault=False,
            )
        if len(self._moves) >= MOVE_TASKS_MAX:
            for handle in [h for h, t in self._moves.items() if t.status != "RUNNING"]:
                del self._moves[handle]
        counts = self.broker.queue_counts(source, vhost=VHOST) or (0, 0, 0)
        handle = _b64(json.dumps({"taskId": uuid.uuid4().hex, "sourceArn": source_arn}).encode())
        task = MoveTask(handle, source, destination, rate, self.wall_ms(), counts[0])
        self._moves[handle] = task
        self._nursery.start_soon(self._move, task)
        return {"TaskHandle": handle}

    async def _move(self, task: MoveTask) -> None:
        interval = 1.0 / task.rate if task.rate else 0.0
        with task.cancel:
            try:
                while True:
                    got, _ = await self.broker.get(
                        SQS_SESSION,
                        task.source,
                        vhost=VHOST,
                        max_n=1 if task.rate else 10,
                        lease_ms=60_000,
                    )
                    if not got:
                        break
                    for mid, _r, _c, _x, rk, props, body in got:
                        target = task.destination or self._dead_letter_source(props or {}) or rk
                        clean = dict(props or {})
                        headers = clean.get("headers")
                        if isinstance(headers, dict) and "x-death" in headers:
                            headers = {k: v for k, v in headers.items() if k != "x-death"}
                            if headers:
                                clean["headers"] = headers
                            else:
                                clean.pop("headers")
                        result = await self.broker.publish("", [(target, clean, body)], vhost=VHOST)
                        if not result.routed or not result.routed[0]:
                            raise ServiceError(
                                "ResourceNotFoundException",
                                f"Destination queue {target} does not exist.",
                            )
                        await self.broker.settle(SQS_SESSION, [mid], COMPLETE)
                        task.moved += 1
                        if interval:
                            await trio.sleep(interval)
                task.status = "COMPLETED"
            except (BrokerError, ServiceError) as exc:
                task.status = "FAILED"
                task.failure = str(exc)
                log.warning("message move task failed", extra={"error": str(exc)})
        if task.cancel.cancelled_caught:
            task.status = "CANCELLED"

    async def list_message_move_tasks(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        source_arn = _str_param(params, "SourceArn")
        source = self._name_of_arn(source_arn)
        if source is None or self.broker.queue_info(source, vhost=VHOST) is None:
            raise ServiceError(
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        max_results = _int_param(params, "MaxResults", 1, 10, 1)
        tasks = [t for t in self._moves.values() if t.source == source]
        tasks.sort(key=lambda t: t.started_ms, reverse=True)
        results = []
        for t in tasks[:max_results]:
            row: dict[str, Any] = {
                "Status": t.status,
                "SourceArn": self.arn(t.source),
                "ApproximateNumberOfMessagesMoved": t.moved,
                "ApproximateNumberOfMessagesToMove": t.to_move,
                "StartedTimestamp": t.started_ms,
            }
            if t.status == "RUNNING":
                row["TaskHandle"] = t.handle
            if t.destination:
                row["DestinationArn"] = self.arn(t.destination)
            if t.rate:
                row["MaxNumberOfMessagesPerSecond"] = t.rate
            if t.failure:
                row["FailureReason"] = t.failure
            results.append(row)
        return {"Results": results}

    @staticmethod
    def _task_handle_ok(handle: str) -> bool:
        try:
            doc = json.loads(_unb64(handle))
        except (ValueError, binascii.Error):
            return False
        return isinstance(doc, dict) and "taskId" in doc

    async def cancel_message_move_task(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        handle = _str_param(params, "TaskHandle")
        task = self._moves.get(handle)
        if task is None and not self._task_handle_ok(handle):
            raise invalid_value("Value for parameter TaskHandle is invalid.")
        if task is None:
            raise ServiceError("ResourceNotFoundException", "Task does not exist.")
        if task.status != "RUNNING":
            raise invalid_value("Only active tasks can be cancelled.")
        task.cancel.cancel()
        task.status = "CANCELLING"
        return {"ApproximateNumberOfMessagesMoved": task.moved}
