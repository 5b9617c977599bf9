"""Amazon SNS over the core API.

Mapping (DESIGN.md section 3):

* A topic is a durable core exchange of type ``x-rules`` named ``sns:<TopicName>`` in vhost
  ``/``. Its SNS attributes, tags and FIFO flag live in the exchange argument ``x-sns``.
* A subscription is a binding from the topic exchange, its routing key the subscription id
  (the last part of the subscription ARN), with the arguments ``x-pattern-dialect`` ``sns``,
  ``x-pattern-scope`` (FilterPolicyScope), ``x-pattern`` (the FilterPolicy, absent = every
  message), ``x-transform`` (``{"kind": "sns", "raw": RawMessageDelivery, "protocol": ...}``:
  the core builds AWS's notification envelope, or passes the raw message) and
  ``x-sns-subscription`` (protocol, endpoint, owner, attributes, confirmation state). A change
  of attributes replaces the binding. An SQS subscription binds the SQS queue itself; an
  http/https subscription binds a durable delivery queue ``sns-delivery:<subscription id>``
  that a worker of this adapter consumes and POSTs to the endpoint, retrying per the
  DeliveryPolicy and moving what it gives up on to the RedrivePolicy's SQS queue. While an
  http/https subscription waits for its confirmation its binding carries ``x-disabled``.
* Publish is one persistent PUBLISH to the topic exchange: it returns once the message is on
  disk in every subscribed queue. The message properties carry ``message_id``, ``timestamp``,
  ``headers`` (message attributes, for AMQP, MQTT and STOMP consumers bound to the exchange)
  and ``sns`` (what the filter policies and the envelope need); the body is the message text.

Kept per node, not in the log: the FIFO topic's own 5-minute deduplication cache (the FIFO
queues behind it deduplicate durably as well) and the http/https delivery workers' retry state
(a message being retried stays unacknowledged in its delivery queue, so a restart starts its
retries over).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import re
import secrets
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import trio

from broker.adapters import http_client
from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError
from broker.adapters.http_client import HttpError
from broker.api import COMPLETE, D_BODY, D_ID, D_PROPS, Broker, BrokerError

log = logging.getLogger("polymq.sns")

VHOST = "/"
EXCHANGE_PREFIX = "sns:"
DELIVERY_QUEUE_PREFIX = "sns-delivery:"
RULES = "x-rules"

TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
FIFO_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,251}\.fifo$")
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]*$")
ATTR_NAME_CHAR_RE = re.compile(r"[^A-Za-z0-9_.-]")
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
SUBJECT_RE = re.compile(r"^[\x20-\x7e]+$")

MESSAGE_BYTES_MAX = 262_144
SUBJECT_CHARS_MAX = 99
BATCH_ENTRIES_MAX = 10
BATCH_ID_CHARS_MAX = 80
ATTR_NAME_BYTES_MAX = 255
TAGS_MAX = 50
TAG_KEY_CHARS_MAX = 128
TAG_VALUE_CHARS_MAX = 256
LIST_PAGE_MAX = 100
DEDUP_WINDOW_S = 300.0
DEDUP_ENTRIES_MAX = 100_000
GROUP_ID_CHARS_MAX = 128
FILTER_POLICY_BYTES_MAX = 256 * 1024
TOKEN_BYTES = 64

# http/https delivery
HTTP_PREFETCH = 16
HTTP_TIMEOUT_S = 15.0
HTTP_RESPONSE_BYTES_MAX = 64 << 10
CONFIRMATION_ATTEMPTS = 3
CONFIRMATION_RETRY_S = 1.0
RETRIES_MAX = 100
DELAY_TARGET_MAX_S = 3600
USER_AGENT = "Amazon Simple Notification Service Agent"
DEFAULT_CONTENT_TYPE = "text/plain; charset=UTF-8"

PROTOCOLS_ALL = (
    "http",
    "https",
    "email",
    "email-json",
    "sms",
    "sqs",
    "application",
    "lambda",
    "firehose",
)
PROTOCOLS_SERVED = ("sqs", "http", "https")
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")

TOPIC_SETTABLE = (
    "Policy",
    "DisplayName",
    "DeliveryPolicy",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
    "ContentBasedDeduplication",
    "FifoTopic",
    "ArchivePolicy",
    "FifoThroughputScope",
    "DataProtectionPolicy",
    *(
        f"{kind}{what}"
        for kind in ("Application", "Firehose", "HTTP", "Lambda", "SQS")
        for what in (
            "SuccessFeedbackRoleArn",
            "SuccessFeedbackSampleRate",
            "FailureFeedbackRoleArn",
        )
    ),
)
SUBSCRIPTION_SETTABLE = (
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
)
FILTER_SCOPES = ("MessageAttributes", "MessageBody")

DEFAULT_HEALTHY_RETRY_POLICY: dict[str, Any] = {
    "minDelayTarget": 20,
    "maxDelayTarget": 20,
    "numRetries": 3,
    "numMaxDelayRetries": 0,
    "numNoDelayRetries": 0,
    "numMinDelayRetries": 0,
    "backoffFunction": "linear",
}
RETRY_POLICY_INTS = (
    "minDelayTarget",
    "maxDelayTarget",
    "numRetries",
    "numMaxDelayRetries",
    "numNoDelayRetries",
    "numMinDelayRetries",
)


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def iso_ms(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``, as SNS stamps its messages."""
    stamp = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def invalid(reason: str) -> ServiceError:
    return ServiceError("InvalidParameter", f"Invalid parameter: {reason}")


def value_invalid(message: str) -> ServiceError:
    return ServiceError("ParameterValueInvalid", message)


def not_found(what: str = "Topic") -> ServiceError:
    return ServiceError("NotFound", f"{what} does not exist", status=404)


def retry_delays(policy: dict[str, Any]) -> list[float]:
    """The waits (seconds) before each retry of a healthyRetryPolicy, in AWS's four phases:
    immediate retries, retries at minDelayTarget, the backoff phase from minDelayTarget to
    maxDelayTarget (shaped by backoffFunction), and retries at maxDelayTarget."""
    lo = float(policy["minDelayTarget"])
    hi = float(policy["maxDelayTarget"])
    total = int(policy["numRetries"])
    no_delay = min(int(policy["numNoDelayRetries"]), total)
    at_min = min(int(policy["numMinDelayRetries"]), total - no_delay)
    at_max = min(int(policy["numMaxDelayRetries"]), total - no_delay - at_min)
    backoff = total - no_delay - at_min - at_max
    kind = policy.get("backoffFunction", "linear")
    out = [0.0] * no_delay + [lo] * at_min
    for i in range(backoff):
        f = (i + 1) / backoff
        if kind == "arithmetic":
            out.append(lo + (hi - lo) * f * f)
        elif kind in ("geometric", "exponential") and lo > 0:
            out.append(lo * math.pow(hi / lo, f))
        else:
            out.append(lo + (hi - lo) * f)
    out += [hi] * at_max
    return out


@dataclass
class Context:
    """What the adapter needs to know of a request besides its parameters."""

    host: str = "localhost:4566"
    access_key: str | None = None
    region: str = "us-east-1"


@dataclass
class Subscription:
    """One subscription, as its binding describes it."""

    id: str
    topic: str  # topic name
    dest: str  # the bound queue
    arguments: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.arguments.get("x-sns-subscription")
        return meta if isinstance(meta, dict) else {}

    @property
    def protocol(self) -> str:
        return str(self.meta.get("protocol", "sqs"))

    @property
    def endpoint(self) -> str:
        return str(self.meta.get("endpoint", ""))

    @property
    def attributes(self) -> dict[str, str]:
        attrs = self.meta.get("attributes")
        return dict(attrs) if isinstance(attrs, dict) else {}

    @property
    def pending(self) -> bool:
        return bool(self.meta.get("pending"))


@dataclass
class HttpTarget:
    """What a delivery worker needs of an http/https subscription."""

    sub_id: str
    topic: str
    topic_arn: str
    subscription_arn: str
    endpoint: str
    raw: bool
    retry: dict[str, Any]
    content_type: str
    dlq: str | None


@dataclass
class _Worker:
    send: trio.MemorySendChannel[Any]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


async def http_post(
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    timeout_s: float = HTTP_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` to ``url`` (http or https) and return the status code. Raises
    ``HttpError`` for anything that is not a response within ``timeout_s``."""
    resp = await http_client.request(
        "POST",
        url,
        headers=[("User-Agent", USER_AGENT), *headers],
        body=body,
        timeout_s=timeout_s,
        response_bytes_max=HTTP_RESPONSE_BYTES_MAX,
        ssl_context=ssl_context,
    )
    return resp.status


#: how long stopping waits for the delivery workers' session to close
SESSION_CLOSE_S = 5.0


class _Sink:
    """The delivery workers' session sink: deliveries go to the worker of their consumer tag."""

    def __init__(self, adapter: SnsAdapter) -> None:
        self.adapter = adapter

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        worker = self.adapter._workers.get(tag)
        if worker is None:
            return
        for d in deliveries:
            try:
                worker.send.send_nowait(d)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                return

    def cancelled(self, tag: str) -> None:
        worker = self.adapter._workers.get(tag)
        if worker is not None:
            worker.scope.cancel()


class SnsAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="InvalidAction",
        unsupported_message="The action {action} is not valid for this endpoint.",
        internal="InternalError",
        busy="Throttled",
        busy_status=429,
    )

    def __init__(
        self,
        broker: Broker,
        *,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        wall_ms: Callable[[], int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.broker = broker
        self.account_id = account_id
        self.region = region
        self.wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self.ssl_context = ssl_context
        self._lock = trio.Lock()
        self._dedup: OrderedDict[tuple[str, str], tuple[float, str, str]] = OrderedDict()
        self._seq = 0
        self._nursery: trio.Nursery | None = None
        self._session: int | None = None
        self._workers: dict[str, _Worker] = {}
        self._targets: dict[str, HttpTarget] = {}
        self._actions = {
            "CreateTopic": self.create_topic,
            "DeleteTopic": self.delete_topic,
            "ListTopics": self.list_topics,
            "GetTopicAttributes": self.get_topic_attributes,
            "SetTopicAttributes": self.set_topic_attributes,
            "AddPermission": self.add_permission,
            "RemovePermission": self.remove_permission,
            "Subscribe": self.subscribe,
            "Unsubscribe": self.unsubscribe,
            "ConfirmSubscription": self.confirm_subscription,
            "ListSubscriptions": self.list_subscriptions,
            "ListSubscriptionsByTopic": self.list_subscriptions_by_topic,
            "GetSubscriptionAttributes": self.get_subscription_attributes,
            "SetSubscriptionAttributes": self.set_subscription_attributes,
            "Publish": self.publish,
            "PublishBatch": self.publish_batch,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hosts the http/https delivery workers (one per subscription) and the confirmation
        requests; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._session = self.broker.open_session(_Sink(self))
            for topic in self._topic_names():
                for sub in self._subscriptions(topic):
                    if sub.protocol in ("http", "https"):
                        try:
                            await self._start_worker(sub)
                        except BrokerError as exc:
                            log.warning(
                                "sns delivery worker not started",
                                extra={"subscription": sub.id, "error": exc.text},
                            )
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._workers.clear()
                session, self._session = self._session, None
                # Its consumers go, so their unsettled deliveries return to the queues for
                # the next leader's workers (a cluster runs this only while leading).
                with trio.CancelScope(shield=True), trio.move_on_after(SESSION_CLOSE_S):
                    try:
                        await self.broker.close_session(session)
                    except BrokerError as exc:
                        log.warning("sns session not closed", extra={"error": exc.text})

    # -- dispatch ---------------------------------------------------------------------------------

    async def handle(self, action: str, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return await self._dispatch(action, params, ctx)

    # -- names and ARNs ---------------------------------------------------------------------------

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.region}:{self.account_id}:{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    @staticmethod
    def _exchange(topic: str) -> str:
        return EXCHANGE_PREFIX + topic

    @staticmethod
    def _arn_parts(value: Any, param: str) -> list[str]:
        if not isinstance(value, str) or not value:
            raise invalid(f"{param} Reason: no value for required parameter")
        parts = value.split(":")
        if len(parts) < 6:
            raise invalid(f"{param} Reason: An ARN must have at least 6 elements, not {len(parts)}")
        return parts

    def _topic_of_arn(self, value: Any, param: str = "TopicArn") -> str:
        """The topic name of a topic ARN; NotFound for a well-formed ARN of no topic here."""
        parts = self._arn_parts(value, param)
        if len(parts) != 6 or parts[2] != "sns":
            raise invalid(param)
        if parts[3] != self.region or parts[4] != self.account_id:
            raise not_found()
        return parts[5]

    def _topic_info(self, topic: str) -> dict[str, Any]:
        info = self.broker.exchange_info(self._exchange(topic), vhost=VHOST)
        if info is None or info.get("type") != RULES:
            raise not_found()
        return info

    def _existing_topic(self, value: Any, param: str = "TopicArn") -> tuple[str, dict[str, Any]]:
        topic = self._topic_of_arn(value, param)
        return topic, self._topic_info(topic)

    def _topic_names(self) -> list[str]:
        out = []
        for x in self.broker.list_exchanges(vhost=VHOST):
            name = x.get("name", "")
            if name.startswith(EXCHANGE_PREFIX) and x.get("type") == RULES:
                out.append(name[len(EXCHANGE_PREFIX) :])
        return sorted(out)

    def _queue_of_arn(self, value: str) -> str | None:
        parts = value.split(":")
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"] or not parts[5]:
            return None
        if parts[3] != self.region or parts[4] != self.account_id:
            return None
        return parts[5]

    def _queue_exists(self, name: str) -> bool:
        info = self.broker.queue_info(name, vhost=VHOST)
        return info is not None and bool(info.get("durable")) and not info.get("exclusive")

    @staticmethod
    def _meta(info: dict[str, Any]) -> dict[str, Any]:
        meta = (info.get("arguments") or {}).get("x-sns")
        return dict(meta) if isinstance(meta, dict) else {}

    @staticmethod
    def _is_fifo(info: dict[str, Any]) -> bool:
        meta = (info.get("arguments") or {}).get("x-sns")
        return isinstance(meta, dict) and bool(meta.get("fifo"))

    async def _store_meta(self, topic: str, meta: dict[str, Any]) -> None:
        await self.broker.set_exchange_arguments(
            self._exchange(topic), {"x-sns": meta}, vhost=VHOST
        )

    # -- subscriptions as bindings ----------------------------------------------------------------

    def _subscriptions(self, topic: str) -> list[Subscription]:
        out = []
        for b in self.broker.bindings_from(self._exchange(topic), vhost=VHOST):
            args = b.get("arguments") or {}
            if b.get("destination_type") != "queue" or "x-sns-subscription" not in args:
                continue
            out.append(Subscription(str(b["routing_key"]), topic, str(b["destination"]), args))
        out.sort(key=lambda s: (int(s.meta.get("created", 0)), s.id))
        return out

    def _find_subscription(self, value: Any, param: str = "SubscriptionArn") -> Subscription:
        parts = self._arn_parts(value, param)
        if len(parts) != 7 or parts[2] != "sns":
            raise invalid(f"{param} Reason: An ARN must have at least 7 elements, not {len(parts)}")
        if parts[3] != self.region or parts[4] != self.account_id:
            raise not_found("Subscription")
        for sub in self._subscriptions(parts[5]):
            if sub.id == parts[6]:
                return sub
        raise not_found("Subscription")

    def subscription_arn(self, topic: str, sub_id: str) -> str:
        return f"{self.topic_arn(topic)}:{sub_id}"

    def _binding_arguments(
        self, topic: str, sub_id: str, meta: dict[str, Any], fifo: bool
    ) -> dict[str, Any]:
        attrs = meta.get("attributes") or {}
        scope = attrs.get("FilterPolicyScope") or "MessageAttributes"
        host = meta.get("host") or "localhost:4566"
        arn = self.subscription_arn(topic, sub_id)
        args: dict[str, Any] = {
            "x-pattern-dialect": "sns",
            "x-pattern-scope": scope,
            "x-transform": {
                "kind": "sns",
                "raw": attrs.get("RawMessageDelivery") == "true",
                "protocol": meta.get("protocol", "sqs"),
                "subscription_arn": arn,
                "unsubscribe_url": (
                    f"http://{host}/?Action=Unsubscribe&SubscriptionArn={quote(arn, safe=':')}"
                ),
                "signing_cert_url": f"http://{host}/SimpleNotificationService-polymq.pem",
            },
            "x-sns-subscription": meta,
        }
        policy = attrs.get("FilterPolicy")
        if policy:
            parsed = json.loads(policy)
            if parsed:
                args["x-pattern"] = parsed
        if meta.get("pending"):
            args["x-disabled"] = True
        return args

    async def _bind(self, sub: Subscription, meta: dict[str, Any], fifo: bool, where: str) -> None:
        """Bind (or re-bind, with new arguments) a subscription; a pattern the core refuses is
        InvalidParameter. ``where`` prefixes the FilterPolicy reason (Subscribe words it
        ``Attributes Reason: ``)."""
        args = self._binding_arguments(sub.topic, sub.id, meta, fifo)
        try:
            await self.broker.bind(
                self._exchange(sub.topic), sub.dest, sub.id, vhost=VHOST, arguments=args
            )
        except BrokerError as exc:
            if exc.code == 406:
                text = exc.text
                for prefix in ("PRECONDITION_FAILED - ", "invalid rule binding: "):
                    if text.startswith(prefix):
                        text = text[len(prefix) :]
                head = "Invalid parameter: FilterPolicy: "
                if text.startswith(head):
                    raise invalid(f"{where}FilterPolicy: {text[len(head) :]}") from None
                if text.startswith("Invalid parameter: "):
                    raise ServiceError("InvalidParameter", text) from None
                raise invalid(f"{where}FilterPolicy: {text}") from None
            if exc.code == 404:
                raise invalid(f"Endpoint Reason: Queue does not exist: {sub.dest}") from None
            raise
        if sub.arguments and sub.arguments != args:
            await self.broker.unbind(
                self._exchange(sub.topic),
                sub.dest,
                sub.id,
                vhost=VHOST,
                arguments=sub.arguments,
            )
        sub.arguments = args

    # -- attributes -------------------------------------------------------------------------------

    def _default_policy(self, topic: str) -> str:
        return _compact(
            {
                "Version": "2008-10-17",
                "Id": "__default_policy_ID",
                "Statement": [
                    {
                        "Sid": "__default_statement_ID",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": [
                            "SNS:GetTopicAttributes",
                            "SNS:SetTopicAttributes",
                            "SNS:AddPermission",
                            "SNS:RemovePermission",
                            "SNS:DeleteTopic",
                            "SNS:Subscribe",
                            "SNS:ListSubscriptionsByTopic",
                            "SNS:Publish",
                        ],
                        "Resource": self.topic_arn(topic),
                        "Condition": {"StringEquals": {"AWS:SourceOwner": self.account_id}},
                    }
                ],
            }
        )

    @staticmethod
    def _effective_topic_delivery_policy(attrs: dict[str, str]) -> str:
        http: dict[str, Any] = {
            "defaultHealthyRetryPolicy": dict(DEFAULT_HEALTHY_RETRY_POLICY),
            "disableSubscriptionOverrides": False,
            "defaultRequestPolicy": {"headerContentType": DEFAULT_CONTENT_TYPE},
        }
        given = _json_or_none(attrs.get("DeliveryPolicy"))
        if isinstance(given, dict) and isinstance(given.get("http"), dict):
            for key, value in given["http"].items():
                if isinstance(value, dict) and isinstance(http.get(key), dict):
                    http[key] = {**http[key], **value}
                else:
                    http[key] = value
        return _compact({"http": http})

    def _check_delivery_policy(self, value: str, *, topic_level: bool, where: str) -> None:
        try:
            doc = json.loads(value)
        except ValueError as exc:
            raise invalid(f"{where}DeliveryPolicy: failed to parse JSON. {exc}") from None
        if not isinstance(doc, dict):
            raise invalid(f"{where}DeliveryPolicy: must be a JSON object")
        if topic_level:
            http = doc.get("http")
            if http is None:
                return
            if not isinstance(http, dict):
                raise invalid(f"{where}DeliveryPolicy: http must be a JSON object")
            policy = http.get("defaultHealthyRetryPolicy")
        else:
            policy = doc.get("healthyRetryPolicy")
        if policy is None:
            return
        if not isinstance(policy, dict):
            raise invalid(f"{where}DeliveryPolicy: healthyRetryPolicy must be a JSON object")
        merged = {**DEFAULT_HEALTHY_RETRY_POLICY, **policy}
        for key in RETRY_POLICY_INTS:
            v = merged[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise invalid(f"{where}DeliveryPolicy: {key} must be a non-negative integer")
        if merged["numRetries"] > RETRIES_MAX:
            raise invalid(f"{where}DeliveryPolicy: numRetries must be at most {RETRIES_MAX}")
        if not 1 <= merged["minDelayTarget"] <= merged["maxDelayTarget"] <= DELAY_TARGET_MAX_S:
            raise invalid(
                f"{where}DeliveryPolicy: minDelayTarget must be at least 1 and at most "
                f"maxDelayTarget, which must be at most {DELAY_TARGET_MAX_S}"
            )
        phases = (
            merged["numNoDelayRetries"]
            + merged["numMinDelayRetries"]
            + merged["numMaxDelayRetries"]
        )
        if phases > merged["numRetries"]:
            raise invalid(f"{where}DeliveryPolicy: the retry phases exceed numRetries")
        if merged["backoffFunction"] not in BACKOFF_FUNCTIONS:
            raise invalid(
                f"{where}DeliveryPolicy: backoffFunction must be one of "
                + ", ".join(BACKOFF_FUNCTIONS)
            )

    def _check_topic_attribute(self, key: str, value: str, fifo: bool, where: str) -> str:
        if key not in TOPIC_SETTABLE:
            raise invalid("AttributeName")
        if key in ("FifoTopic", "ContentBasedDeduplication"):
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise invalid(f"{where}{key}: Invalid value [{value}]. Must be true or false.")
            value = lowered
            if key == "ContentBasedDeduplication" and not fifo and value == "true":
                raise invalid(
                    f"{where}ContentBasedDeduplication Reason: Content-based deduplication can "
                    "only be set for FIFO topics"
                )
        elif key == "DeliveryPolicy" and value:
            self._check_delivery_policy(value, topic_level=True, where=where)
        elif key in ("Policy", "DataProtectionPolicy", "ArchivePolicy") and value:
            try:
                json.loads(value)
            except ValueError:
                raise invalid(f"{where}{key}: failed to parse JSON.") from None
        elif key == "DisplayName" and len(value) > 100:
            raise invalid("DisplayName Reason: must be at most 100 characters long")
        elif key == "SignatureVersion" and value not in ("1", "2"):
            raise invalid(f"{where}SignatureVersion: Invalid value [{value}]. Must be 1 or 2.")
        elif key == "FifoThroughputScope" and value not in ("Topic", "MessageGroup"):
            raise invalid(f"{where}FifoThroughputScope: Invalid value [{value}].")
        return value

    def _topic_attributes(self, topic: str, info: dict[str, Any]) -> dict[str, str]:
        meta = self._meta(info)
        stored: dict[str, str] = dict(meta.get("attributes") or {})
        confirmed = pending = 0
        for sub in self._subscriptions(topic):
            if sub.pending:
                pending += 1
            else:
                confirmed += 1
        out: dict[str, str] = {
            "Policy": stored.pop("Policy", "") or self._default_policy(topic),
            "Owner": self.account_id,
            "SubscriptionsPending": str(pending),
            "SubscriptionsConfirmed": str(confirmed),
            "SubscriptionsDeleted": "0",
            "DisplayName": stored.pop("DisplayName", ""),
            "TopicArn": self.topic_arn(topic),
            "EffectiveDeliveryPolicy": self._effective_topic_delivery_policy(stored),
        }
        if meta.get("fifo"):
            out["FifoTopic"] = "true"
            out["ContentBasedDeduplication"] = stored.pop("ContentBasedDeduplication", "false")
        stored.pop("FifoTopic", None)
        out.update({k: v for k, v in stored.items() if v != ""})
        return out

    # -- topics -----------------------------------------------------------------------------------

    async def create_topic(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        name = params.get("Name")
        if not isinstance(name, str):
            raise invalid("Topic Name")
        raw_attrs = params.get("Attributes") or {}
        if not isinstance(raw_attrs, dict):
            raise invalid("Attributes")
        fifo_attr = str(raw_attrs.get("FifoTopic", "false")).lower() == "true"
        if fifo_attr:
            if not FIFO_TOPIC_NAME_RE.match(name):
                raise invalid(
                    "Fifo Topic names must end with .fifo and must be made up of only uppercase "
                    "and lowercase ASCII letters, numbers, underscores, and hyphens, and must be "
                    "between 1 and 256 characters long."
                )
        elif not TOPIC_NAME_RE.match(name):
            raise invalid("Topic Name")
        attrs: dict[str, str] = {}
        for key, raw in raw_attrs.items():
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            attrs[key] = self._check_topic_attribute(key, value, fifo_attr, "Attributes Reason: ")
        attrs.pop("FifoTopic", None)
        tags = self._tags(params.get("Tags"))
        async with self._lock:
            info = self.broker.exchange_info(self._exchange(name), vhost=VHOST)
            if info is not None:
                if info.get("type") != RULES:
                    raise invalid("Topic Name")
                meta = self._meta(info)
                old = meta.get("attributes") or {}
                if any(old.get(k, _TOPIC_DEFAULTS.get(k)) != v for k, v in attrs.items()) or (
                    fifo_attr != bool(meta.get("fifo"))
                ):
                    raise invalid(
                        "Attributes Reason: Topic already exists with different attributes"
                    )
                old_tags = meta.get("tags") or {}
                if tags and any(old_tags.get(k) != v for k, v in tags.items()):
                    raise invalid("Tags Reason: Topic already exists with different tags")
                return {"TopicArn": self.topic_arn(name)}
            meta = {
                "attributes": attrs,
                "tags": tags,
                "fifo": fifo_attr,
                "created": self.wall_ms(),
            }
            await self.broker.declare_exchange(
                self._exchange(name),
                RULES,
                vhost=VHOST,
                durable=True,
                arguments={"x-sns": meta},
            )
        return {"TopicArn": self.topic_arn(name)}

    async def delete_topic(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic = self._topic_of_arn(params.get("TopicArn"))
        async with self._lock:
            if self.broker.exchange_info(self._exchange(topic), vhost=VHOST) is None:
                return {}
            for sub in self._subscriptions(topic):
                await self._drop_subscription(sub)
            try:
                await self.broker.delete_exchange(self._exchange(topic), vhost=VHOST)
            except BrokerError as exc:
                if exc.code != 404:
                    raise
        for key in [k for k in self._dedup if k[0] == topic]:
            del self._dedup[key]
        return {}

    @staticmethod
    def _page(items: list[str], token: Any) -> tuple[list[str], str | None]:
        if token:
            try:
                after = _unb64(str(token)).decode()
            except (ValueError, UnicodeDecodeError, binascii.Error):
                raise invalid("NextToken") from None
            items = [i for i in items if i > after]
        page = items[:LIST_PAGE_MAX]
        more = len(items) > LIST_PAGE_MAX
        return page, (_b64(page[-1].encode()) if more else None)

    async def list_topics(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        arns = sorted(self.topic_arn(n) for n in self._topic_names())
        page, token = self._page(arns, params.get("NextToken"))
        out: dict[str, Any] = {"Topics": [{"TopicArn": a} for a in page]}
        if token:
            out["NextToken"] = token
        return out

    async def get_topic_attributes(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic, info = self._existing_topic(params.get("TopicArn"))
        return {"Attributes": self._topic_attributes(topic, info)}

    async def set_topic_attributes(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        key = params.get("AttributeName")
        if not isinstance(key, str) or not key:
            raise invalid("AttributeName")
        raw = params.get("AttributeValue")
        value = "" if raw is None else str(raw)
        async with self._lock:
            topic, info = self._existing_topic(params.get("TopicArn"))
            fifo = self._is_fifo(info)
            if key == "FifoTopic":
                raise invalid("AttributeName Reason: FifoTopic can only be set on creation")
            value = self._check_topic_attribute(key, value, fifo, "")
            meta = self._meta(info)
            attrs = dict(meta.get("attributes") or {})
            if value == "" and key != "DisplayName":
                attrs.pop(key, None)
            else:
                attrs[key] = value
            meta["attributes"] = attrs
            await self._store_meta(topic, meta)
            if key == "DeliveryPolicy":
                for sub in self._subscriptions(topic):
                    if sub.id in self._targets:
                        self._targets[sub.id] = self._http_target(sub)
        return {}

    async def add_permission(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        label = params.get("Label")
        accounts = params.get("AWSAccountId") or []
        actions = params.get("ActionName") or []
        if not isinstance(label, str) or not label:
            raise invalid("Label")
        if not accounts:
            raise invalid("AWSAccountId")
        if not actions:
            raise invalid("ActionName")
        async with self._lock:
            topic, info = self._existing_topic(params.get("TopicArn"))
            meta = self._meta(info)
            attrs = dict(meta.get("attributes") or {})
            policy = json.loads(attrs.get("Policy") or self._default_policy(topic))
            statements = policy.setdefault("Statement", [])
            if any(s.get("Sid") == label for s in statements if isinstance(s, dict)):
                raise invalid("Statement already exists")
            if any(not isinstance(a, str) or a.startswith("sqs:") for a in actions):
                raise invalid("Policy statement action out of service scope!")
            principals = [f"arn:aws:iam::{a}:root" for a in accounts]
            statements.append(
                {
                    "Sid": label,
                    "Effect": "Allow",
                    "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
                    "Action": [f"SNS:{a}" for a in actions]
                    if len(actions) > 1
                    else f"SNS:{actions[0]}",
                    "Resource": self.topic_arn(topic),
                }
            )
            attrs["Policy"] = _compact(policy)
            meta["attributes"] = attrs
            await self._store_meta(topic, meta)
        return {}

    async def remove_permission(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        label = params.get("Label")
        if not isinstance(label, str) or not label:
            raise invalid("Label")
        async with self._lock:
            topic, info = self._existing_topic(params.get("TopicArn"))
            meta = self._meta(info)
            attrs = dict(meta.get("attributes") or {})
            policy = json.loads(attrs.get("Policy") or self._default_policy(topic))
            statements = policy.get("Statement") or []
            policy["Statement"] = [
                s for s in statements if not (isinstance(s, dict) and s.get("Sid") == label)
            ]
            attrs["Policy"] = _compact(policy)
            meta["attributes"] = attrs
            await self._store_meta(topic, meta)
        return {}

    # -- tags -------------------------------------------------------------------------------------

    @staticmethod
    def _tags(raw: Any) -> dict[str, str]:
        if not raw:
            return {}
        if not isinstance(raw, list):
            raise invalid("Tags")
        out: dict[str, str] = {}
        for tag in raw:
            if not isinstance(tag, dict):
                raise invalid("Tags")
            key, value = tag.get("Key"), tag.get("Value")
            if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_CHARS_MAX:
                raise invalid("Tags Reason: Tag keys must be between 1 and 128 characters")
            if not isinstance(value, str) or len(value) > TAG_VALUE_CHARS_MAX:
                raise invalid("Tags Reason: Tag values must be at most 256 characters")
            if key in out:
                raise invalid("Duplicated keys are not allowed.")
            out[key] = value
        if len(out) > TAGS_MAX:
            raise ServiceError(
                "TagLimitExceeded", "Could not complete request: tag quota of per resource exceeded"
            )
        return out

    def _tagged_topic(self, arn: Any) -> tuple[str, dict[str, Any]]:
        parts = arn.split(":") if isinstance(arn, str) else []
        if (
            len(parts) != 6
            or parts[2] != "sns"
            or parts[3] != self.region
            or parts[4] != self.account_id
            or self.broker.exchange_info(self._exchange(parts[5]), vhost=VHOST) is None
        ):
            raise ServiceError("ResourceNotFound", "Resource does not exist", status=404)
        return parts[5], self._topic_info(parts[5])

    async def tag_resource(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        new = self._tags(params.get("Tags"))
        async with self._lock:
            topic, info = self._tagged_topic(params.get("ResourceArn"))
            meta = self._meta(info)
            tags = dict(meta.get("tags") or {})
            tags.update(new)
            if len(tags) > TAGS_MAX:
                raise ServiceError(
                    "TagLimitExceeded",
                    "Could not complete request: tag quota of per resource exceeded",
                )
            meta["tags"] = tags
            await self._store_meta(topic, meta)
        return {}

    async def untag_resource(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        keys = params.get("TagKeys") or []
        async with self._lock:
            topic, info = self._tagged_topic(params.get("ResourceArn"))
            meta = self._meta(info)
            tags = {k: v for k, v in (meta.get("tags") or {}).items() if k not in keys}
            meta["tags"] = tags
            await self._store_meta(topic, meta)
        return {}

    async def list_tags_for_resource(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        _topic, info = self._tagged_topic(params.get("ResourceArn"))
        tags = self._meta(info).get("tags") or {}
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}

    # -- subscriptions ----------------------------------------------------------------------------

    def _check_subscription_attribute(
        self, key: str, value: str, protocol: str, fifo_topic: bool, where: str
    ) -> str:
        if key not in SUBSCRIPTION_SETTABLE:
            raise invalid(f"{where}Invalid attribute name: {key}" if where else "AttributeName")
        if key == "RawMessageDelivery":
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise invalid(
                    f"{where}RawMessageDelivery: Invalid value [{value}]. Must be true or false."
                )
            return lowered
        if key == "FilterPolicyScope":
            if value not in FILTER_SCOPES:
                raise invalid(
                    f"{where}FilterPolicyScope: Invalid value [{value}]. Please use either "
                    "MessageBody or MessageAttributes"
                )
        elif key == "FilterPolicy" and value:
            if len(value.encode()) > FILTER_POLICY_BYTES_MAX:
                raise invalid(f"{where}FilterPolicy: Filter policy is too complex")
            try:
                doc = json.loads(value)
            except ValueError as exc:
                raise invalid(f"{where}FilterPolicy: failed to parse JSON. {exc}") from None
            if not isinstance(doc, dict):
                raise invalid(f"{where}FilterPolicy: Filter policy must be a JSON object")
        elif key == "DeliveryPolicy" and value:
            if protocol not in ("http", "https"):
                raise invalid(f"{where}DeliveryPolicy: only http and https subscriptions have one")
            self._check_delivery_policy(value, topic_level=False, where=where)
        elif key == "RedrivePolicy" and value:
            try:
                doc = json.loads(value)
            except ValueError as exc:
                raise invalid(f"{where}RedrivePolicy: failed to parse JSON. {exc}") from None
            target = doc.get("deadLetterTargetArn") if isinstance(doc, dict) else None
            queue = self._queue_of_arn(target) if isinstance(target, str) else None
            if queue is None:
                raise invalid(f"{where}RedrivePolicy: deadLetterTargetArn is an invalid arn")
            if fifo_topic and protocol == "sqs" and not queue.endswith(".fifo"):
                raise invalid(
                    f"{where}RedrivePolicy: must use a FIFO queue as DLQ for a FIFO Subscription "
                    "to a FIFO Topic."
                )
        return value

    async def subscribe(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        protocol = params.get("Protocol")
        if not isinstance(protocol, str) or not protocol:
            raise invalid("Protocol Reason: no value for required parameter")
        endpoint = params.get("Endpoint")
        topic, info = self._existing_topic(params.get("TopicArn"))
        fifo = self._is_fifo(info)
        if protocol not in PROTOCOLS_ALL:
            raise invalid(f"Amazon SNS does not support this protocol string: {protocol}")
        if protocol not in PROTOCOLS_SERVED:
            raise invalid(
                f"Protocol Reason: {protocol} is not supported by this endpoint (polymq delivers "
                "to sqs, http and https)"
            )
        if not isinstance(endpoint, str) or not endpoint:
            raise invalid("Endpoint Reason: no value for required parameter")
        queue: str | None = None
        if protocol == "sqs":
            queue = self._queue_of_arn(endpoint)
            if queue is None:
                raise invalid("SQS endpoint ARN")
            if queue.endswith(".fifo") and not fifo:
                raise invalid(
                    "Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to "
                    "standard SNS topics"
                )
            if not self._queue_exists(queue):
                raise invalid(f"Endpoint Reason: Queue does not exist: {endpoint}")
        else:
            parts = urlsplit(endpoint)
            if parts.scheme != protocol or not parts.hostname:
                raise invalid("Endpoint must match the specified protocol")
            if fifo:
                raise invalid("Protocol Reason: FIFO topics deliver only to sqs subscriptions here")
        raw_attrs = params.get("Attributes") or {}
        if not isinstance(raw_attrs, dict):
            raise invalid("Attributes")
        attrs: dict[str, str] = {}
        for key, raw in raw_attrs.items():
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            attrs[key] = self._check_subscription_attribute(
                key, value, protocol, fifo, "Attributes Reason: "
            )
        async with self._lock:
            for sub in self._subscriptions(topic):
                if sub.protocol == protocol and sub.endpoint == endpoint:
                    current = sub.attributes
                    if any(current.get(k, _SUB_DEFAULTS.get(k, "")) != v for k, v in attrs.items()):
                        raise invalid(
                            "Attributes Reason: Subscription already exists with different "
                            "attributes"
                        )
                    return {"SubscriptionArn": self._shown_arn(sub, params)}
            sub_id = str(uuid.uuid4())
            pending = protocol != "sqs"
            meta: dict[str, Any] = {
                "protocol": protocol,
                "endpoint": endpoint,
                "owner": self.account_id,
                "principal": ctx.access_key or self.account_id,
                "attributes": attrs,
                "pending": pending,
                "authenticated": not pending,
                "created": self.wall_ms(),
                "host": ctx.host or "localhost:4566",
            }
            if pending:
                meta["token"] = secrets.token_hex(TOKEN_BYTES)
            dest = queue if queue is not None else DELIVERY_QUEUE_PREFIX + sub_id
            if queue is None:
                await self.broker.declare_queue(dest, vhost=VHOST, durable=True)
            sub = Subscription(sub_id, topic, dest, {})
            try:
                await self._bind(sub, meta, fifo, "Attributes Reason: ")
            except BaseException:
                if queue is None:
                    await self._delete_queue_quietly(dest)
                raise
        if pending:
            await self._start_worker(sub)
            self._send_confirmation(sub)
        return {"SubscriptionArn": self._shown_arn(sub, params)}

    def _shown_arn(self, sub: Subscription, params: dict[str, Any]) -> str:
        if sub.pending and not params.get("ReturnSubscriptionArn"):
            return "pending confirmation"
        return self.subscription_arn(sub.topic, sub.id)

    async def _delete_queue_quietly(self, name: str) -> None:
        try:
            await self.broker.delete_queue(name, vhost=VHOST)
        except BrokerError:
            pass

    async def _drop_subscription(self, sub: Subscription) -> None:
        try:
            await self.broker.unbind(
                self._exchange(sub.topic), sub.dest, sub.id, vhost=VHOST, arguments=sub.arguments
            )
        except BrokerError as exc:
            if exc.code != 404:
                raise
        if sub.protocol in ("http", "https"):
            await self._stop_worker(sub.id)
            await self._delete_queue_quietly(sub.dest)

    async def unsubscribe(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        async with self._lock:
            try:
                sub = self._find_subscription(params.get("SubscriptionArn"))
            except ServiceError as exc:
                if exc.code == "NotFound":
                    return {}  # AWS answers an unknown subscription with success
                raise
            await self._drop_subscription(sub)
        return {}

    async def confirm_subscription(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        arn = params.get("TopicArn")
        parts = arn.split(":") if isinstance(arn, str) else []
        if (
            len(parts) != 6
            or parts[2] != "sns"
            or parts[3] != self.region
            or parts[4] != self.account_id
        ):
            raise invalid("Topic")
        topic = parts[5]
        self._topic_info(topic)
        token = params.get("Token")
        if not isinstance(token, str) or not token:
            raise invalid("Token")
        async with self._lock:
            for sub in self._subscriptions(topic):
                if sub.meta.get("token") != token:
                    continue
                if sub.pending:
                    meta = dict(sub.meta)
                    meta["pending"] = False
                    meta["authenticated"] = ctx.access_key is not None
                    fifo = self._is_fifo(self._topic_info(topic))
                    await self._bind(sub, meta, fifo, "")
                    if sub.id in self._targets:
                        self._targets[sub.id] = self._http_target(sub)
                return {"SubscriptionArn": self.subscription_arn(topic, sub.id)}
        raise invalid("Token")

    def _subscription_entry(self, sub: Subscription) -> dict[str, str]:
        return {
            "SubscriptionArn": "PendingConfirmation"
            if sub.pending
            else self.subscription_arn(sub.topic, sub.id),
            "Owner": str(sub.meta.get("owner", self.account_id)),
            "Protocol": sub.protocol,
            "Endpoint": sub.endpoint,
            "TopicArn": self.topic_arn(sub.topic),
        }

    def _sub_page(
        self, subs: list[Subscription], token: Any
    ) -> tuple[list[Subscription], str | None]:
        keyed = {f"{s.topic}\x00{int(s.meta.get('created', 0)):020d}\x00{s.id}": s for s in subs}
        page, next_token = self._page(sorted(keyed), token)
        return [keyed[k] for k in page], next_token

    async def list_subscriptions(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        subs = [s for t in self._topic_names() for s in self._subscriptions(t)]
        page, token = self._sub_page(subs, params.get("NextToken"))
        out: dict[str, Any] = {"Subscriptions": [self._subscription_entry(s) for s in page]}
        if token:
            out["NextToken"] = token
        return out

    async def list_subscriptions_by_topic(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        topic, _info = self._existing_topic(params.get("TopicArn"))
        page, token = self._sub_page(self._subscriptions(topic), params.get("NextToken"))
        out: dict[str, Any] = {"Subscriptions": [self._subscription_entry(s) for s in page]}
        if token:
            out["NextToken"] = token
        return out

    def _effective_sub_delivery_policy(self, sub: Subscription) -> str:
        info = self.broker.exchange_info(self._exchange(sub.topic), vhost=VHOST) or {}
        topic_doc = json.loads(
            self._effective_topic_delivery_policy(self._meta(info).get("attributes") or {})
        )
        http = topic_doc["http"]
        own = _json_or_none(sub.attributes.get("DeliveryPolicy")) or {}
        retry = dict(http["defaultHealthyRetryPolicy"])
        if not http.get("disableSubscriptionOverrides") and isinstance(
            own.get("healthyRetryPolicy"), dict
        ):
            retry.update(own["healthyRetryPolicy"])
        request = dict(http.get("defaultRequestPolicy") or {})
        if isinstance(own.get("requestPolicy"), dict):
            request.update(own["requestPolicy"])
        return _compact(
            {
                "healthyRetryPolicy": retry,
                "sicklyRetryPolicy": own.get("sicklyRetryPolicy"),
                "throttlePolicy": own.get("throttlePolicy"),
                "requestPolicy": request,
                "guaranteed": bool(own.get("guaranteed", False)),
            }
        )

    async def get_subscription_attributes(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        sub = self._find_subscription(params.get("SubscriptionArn"))
        meta = sub.meta
        attrs = sub.attributes
        out: dict[str, str] = {
            "ConfirmationWasAuthenticated": "true" if meta.get("authenticated") else "false",
            "Endpoint": sub.endpoint,
            "Owner": str(meta.get("owner", self.account_id)),
            "PendingConfirmation": "true" if sub.pending else "false",
            "Protocol": sub.protocol,
            "RawMessageDelivery": attrs.pop("RawMessageDelivery", "false"),
            "SubscriptionArn": self.subscription_arn(sub.topic, sub.id),
            "SubscriptionPrincipal": f"arn:aws:iam::{self.account_id}:user/"
            + str(meta.get("principal") or self.account_id),
            "TopicArn": self.topic_arn(sub.topic),
        }
        if attrs.get("FilterPolicy"):
            out["FilterPolicyScope"] = attrs.pop("FilterPolicyScope", "MessageAttributes")
        else:
            attrs.pop("FilterPolicyScope", None)
        if sub.protocol in ("http", "https"):
            out["EffectiveDeliveryPolicy"] = self._effective_sub_delivery_policy(sub)
        out.update({k: v for k, v in attrs.items() if v != ""})
        return {"Attributes": out}

    async def set_subscription_attributes(
        self, params: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        key = params.get("AttributeName")
        if not isinstance(key, str) or not key:
            raise invalid("AttributeName")
        raw = params.get("AttributeValue")
        value = "" if raw is None else str(raw)
        async with self._lock:
            sub = self._find_subscription(params.get("SubscriptionArn"))
            info = self._topic_info(sub.topic)
            fifo = self._is_fifo(info)
            value = self._check_subscription_attribute(key, value, sub.protocol, fifo, "")
            attrs = sub.attributes
            if value == "":
                attrs.pop(key, None)
            else:
                attrs[key] = value
            meta = dict(sub.meta)
            meta["attributes"] = attrs
            await self._bind(sub, meta, fifo, "")
            if sub.id in self._targets:
                self._targets[sub.id] = self._http_target(sub)
        return {}

    # -- publishing -------------------------------------------------------------------------------

    def _message_attributes(self, raw: Any, where: str) -> dict[str, list[Any]]:
        if not raw:
            return {}
        if not isinstance(raw, dict):
            raise invalid("MessageAttributes")
        out: dict[str, list[Any]] = {}
        for name, value in raw.items():
            if len(name.encode()) > ATTR_NAME_BYTES_MAX:
                raise value_invalid("Length of message attribute name must be less than 256 bytes.")
            bad = ATTR_NAME_CHAR_RE.search(name)
            if bad:
                raise value_invalid(
                    f"Invalid non-alphanumeric character '#x{ord(bad.group()):X}' was found in "
                    "the message attribute name. Can only include alphanumeric characters, "
                    "hyphens, underscores, or dots."
                )
            if not name:
                raise value_invalid("The message attribute name must not be empty.")
            if name.startswith("."):
                raise value_invalid(
                    "Invalid message attribute name starting with character '.' was found."
                )
            if name.endswith("."):
                raise value_invalid(
                    "Invalid message attribute name ending with character '.' was found."
                )
            if ".." in name:
                raise value_invalid("Message attribute name can not have successive '.' character.")
            if name.lower().startswith(("aws.", "amazon.")):
                raise value_invalid(
                    f"The message attribute name '{name}' uses a reserved prefix (AWS. or Amazon.)."
                )
            if not isinstance(value, dict):
                raise value_invalid(f"The message attribute '{name}' must contain a value.")
            dtype = value.get("DataType")
            if not isinstance(dtype, str) or not dtype:
                raise ServiceError(
                    "ValidationError",
                    f"1 validation error detected: Value null at '{where}{name}.member.dataType' "
                    "failed to satisfy constraint: Member must not be null",
                )
            base = dtype.split(".", 1)[0]
            if base not in ("String", "Number", "Binary") or len(dtype) > 256:
                raise value_invalid(
                    f"The message attribute '{name}' has an invalid message attribute type, the "
                    "set of supported type prefixes is Binary, Number, and String."
                )
            if base == "Binary":
                data = value.get("BinaryValue")
                if data is None and value.get("StringValue") is not None:
                    raise value_invalid(
                        f"The message attribute '{name}' with type 'Binary' must use field "
                        "'Binary'."
                    )
                if isinstance(data, str):
                    try:
                        data = base64.b64decode(data, validate=True)
                    except (ValueError, binascii.Error):
                        raise value_invalid(
                            f"The message attribute '{name}' has an invalid binary value."
                        ) from None
                if not isinstance(data, bytes | bytearray) or not data:
                    raise value_invalid(
                        f"The message attribute '{name}' must contain non-empty message attribute "
                        "value for message attribute type 'Binary'."
                    )
                out[name] = [dtype, bytes(data)]
                continue
            text = value.get("StringValue")
            if text is None and value.get("BinaryValue") is not None:
                raise value_invalid(
                    f"The message attribute '{name}' with type '{base}' must use field 'String'."
                )
            if not isinstance(text, str) or text == "":
                raise value_invalid(
                    f"The message attribute '{name}' must contain non-empty message attribute "
                    f"value for message attribute type '{base}'."
                )
            if base == "Number" and not NUMBER_RE.match(text.strip()):
                raise value_invalid(f"Could not cast message attribute '{name}' value to number.")
            if dtype == "String.Array":
                try:
                    items = json.loads(text)
                except ValueError:
                    items = None
                if not isinstance(items, list) or any(isinstance(i, dict | list) for i in items):
                    raise value_invalid(
                        f"The message attribute '{name}' with type 'String.Array' must be a JSON "
                        "array of strings, numbers, true, false or null."
                    )
            out[name] = [dtype, text]
        return out

    def _next_seq(self) -> str:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return str(self._seq).zfill(20)

    def _dedup_hit(self, topic: str, dedup: str) -> tuple[str, str] | None:
        now = time.monotonic()
        table = self._dedup
        while table:
            first = next(iter(table))
            if table[first][0] > now:
                break
            del table[first]
        hit = table.get((topic, dedup))
        return (hit[1], hit[2]) if hit is not None else None

    def _remember_dedup(self, topic: str, dedup: str, message_id: str, seq: str) -> None:
        table = self._dedup
        while len(table) >= DEDUP_ENTRIES_MAX:
            table.popitem(last=False)
        table[(topic, dedup)] = (time.monotonic() + DEDUP_WINDOW_S, message_id, seq)

    def _build(
        self, entry: dict[str, Any], topic: str, info: dict[str, Any], where: str
    ) -> tuple[tuple[str, dict[str, Any], bytes], dict[str, Any], tuple[str, str] | None]:
        """Validate one message; ``(core message, reply fields, FIFO (topic, dedup) key)``."""
        message = entry.get("Message")
        if not isinstance(message, str) or message == "":
            raise invalid("Empty message")
        subject = entry.get("Subject")
        if subject is not None and (
            not isinstance(subject, str)
            or not subject
            or len(subject) > SUBJECT_CHARS_MAX
            or not SUBJECT_RE.match(subject)
        ):
            raise invalid("Subject")
        structure = entry.get("MessageStructure")
        messages: dict[str, str] | None = None
        if structure is not None:
            if structure != "json":
                raise invalid("MessageStructure")
            try:
                doc = json.loads(message)
            except ValueError:
                raise invalid("Message Structure - JSON message body failed to parse") from None
            if not isinstance(doc, dict):
                raise invalid("Message Structure - JSON message body failed to parse")
            if "default" not in doc:
                raise invalid("Message Structure - No default entry in JSON message body")
            messages = {}
            for k, v in doc.items():
                if not isinstance(v, str):
                    raise invalid(
                        "Message Structure - JSON message body failed to parse: every value "
                        "must be a string"
                    )
                messages[str(k)] = v
        attrs = self._message_attributes(entry.get("MessageAttributes"), where)
        size = len(message.encode())
        for name, (dtype, value) in attrs.items():
            size += len(name.encode()) + len(dtype.encode())
            size += len(value) if isinstance(value, bytes) else len(str(value).encode())
        if size > MESSAGE_BYTES_MAX:
            raise invalid("Message too long")
        fifo = self._is_fifo(info)
        group = entry.get("MessageGroupId")
        dedup = entry.get("MessageDeduplicationId")
        for pname, pvalue in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
            if pvalue is not None and (
                not isinstance(pvalue, str)
                or not 1 <= len(pvalue) <= GROUP_ID_CHARS_MAX
                or not all(33 <= ord(ch) <= 126 for ch in pvalue)
            ):
                raise invalid(
                    f"{pname} Reason: {pname} can only include alphanumeric and punctuation "
                    "characters. 1 to 128 in length."
                )
        seq: str | None = None
        key: tuple[str, str] | None = None
        if fifo:
            if group is None:
                raise invalid("The MessageGroupId parameter is required for FIFO topics")
            if dedup is None:
                stored = self._meta(info).get("attributes") or {}
                if stored.get("ContentBasedDeduplication") != "true":
                    raise invalid(
                        "The topic should either have ContentBasedDeduplication enabled or "
                        "MessageDeduplicationId provided explicitly"
                    )
                dedup = hashlib.sha256(message.encode()).hexdigest()
            seq = self._next_seq()
            key = (topic, dedup)
        elif dedup is not None:
            raise invalid(
                "MessageDeduplicationId Reason: The request includes MessageDeduplicationId "
                "parameter that is not valid for this topic type"
            )
        message_id = str(uuid.uuid4())
        now_ms = self.wall_ms()
        body_text = messages["default"] if messages is not None else message
        sns: dict[str, Any] = {
            "id": message_id,
            "topic": self.topic_arn(topic),
            "subject": subject,
            "message": body_text,
            "messages": messages,
            "ts": iso_ms(now_ms),
            "attrs": attrs,
            "seq": seq,
            "group": group,
            "dedup": dedup,
        }
        props: dict[str, Any] = {
            "delivery_mode": 2,
            "message_id": message_id,
            "timestamp": now_ms // 1000,
            "sns": sns,
            # SQS readers take SentTimestamp and SenderId from here, and message attributes
            # only from here (``a``, set by raw deliveries), never from the AMQP headers
            "sqs": {"t": now_ms, "s": self.account_id},
        }
        if attrs:
            props["headers"] = {k: v[1] for k, v in attrs.items()}
        reply: dict[str, Any] = {"MessageId": message_id}
        if seq is not None:
            reply["SequenceNumber"] = seq
        return ("", props, body_text.encode()), reply, key

    def _target_topic(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        topic_arn = params.get("TopicArn")
        target_arn = params.get("TargetArn")
        if params.get("PhoneNumber"):
            raise invalid("PhoneNumber Reason: SMS is not supported by this endpoint")
        if topic_arn and target_arn:
            raise invalid("TopicArn Reason: Only one of TopicArn or TargetArn may be specified")
        if topic_arn:
            return self._existing_topic(topic_arn, "TopicArn")
        if target_arn:
            parts = self._arn_parts(target_arn, "TargetArn")
            if parts[2] == "sns" and len(parts) == 6:
                return self._existing_topic(target_arn, "TargetArn")
            raise invalid("TargetArn Reason: No endpoint found for the target arn specified")
        raise invalid("TopicArn or TargetArn Reason: no value for required parameter")

    async def publish(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic, info = self._target_topic(params)
        message, reply, key = self._build(params, topic, info, "messageAttributes.")
        if key is not None:
            hit = self._dedup_hit(*key)
            if hit is not None:
                return {"MessageId": hit[0], "SequenceNumber": hit[1]}
        await self.broker.publish(self._exchange(topic), [message], vhost=VHOST)
        if key is not None:
            self._remember_dedup(key[0], key[1], reply["MessageId"], reply["SequenceNumber"])
        return reply

    async def publish_batch(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        topic, info = self._existing_topic(params.get("TopicArn"))
        entries = params.get("PublishBatchRequestEntries")
        if not entries:
            raise ServiceError(
                "EmptyBatchRequest", "The batch request doesn't contain any entries."
            )
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise invalid("PublishBatchRequestEntries")
        if len(entries) > BATCH_ENTRIES_MAX:
            raise ServiceError(
                "TooManyEntriesInBatchRequest",
                "The batch request contains more entries than permissible.",
            )
        seen: set[str] = set()
        for e in entries:
            eid = e.get("Id")
            if not isinstance(eid, str) or not eid:
                raise ServiceError(
                    "InvalidBatchEntryId",
                    "The Id of a batch entry in the batch request contains an impermissible "
                    f"character: {eid}",
                )
            if len(eid) > BATCH_ID_CHARS_MAX:
                raise ServiceError(
                    "InvalidBatchEntryId",
                    f"The Id of a batch entry in the batch request is too long: {eid}",
                )
            if not BATCH_ID_RE.match(eid):
                raise ServiceError(
                    "InvalidBatchEntryId",
                    "The Id of a batch entry in the batch request contains an impermissible "
                    f"character: {eid}",
                )
            if eid in seen:
                raise ServiceError(
                    "BatchEntryIdsNotDistinct",
                    "Two or more batch entries in the request have the same Id.",
                )
            seen.add(eid)
        total = sum(len(str(e.get("Message") or "").encode()) for e in entries)
        if total > MESSAGE_BYTES_MAX:
            raise ServiceError(
                "BatchRequestTooLong",
                "The length of all the messages put together is more than the limit.",
            )
        fifo = self._is_fifo(info)
        if fifo and any(e.get("MessageGroupId") is None for e in entries):
            raise invalid("The MessageGroupId parameter is required for FIFO topics")
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        batch: list[tuple[str, dict[str, Any], bytes]] = []
        replies: list[tuple[dict[str, Any], tuple[str, str] | None]] = []
        for i, e in enumerate(entries):
            try:
                message, reply, key = self._build(
                    e, topic, info, f"publishBatchRequestEntries.{i + 1}.member.messageAttributes."
                )
            except ServiceError as exc:
                if exc.code == "ValidationError":
                    raise
                failed.append(
                    {
                        "Id": e["Id"],
                        "Code": exc.code,
                        "Message": exc.message,
                        "SenderFault": exc.sender_fault,
                    }
                )
                continue
            reply["Id"] = e["Id"]
            if key is not None:
                hit = self._dedup_hit(*key)
                if hit is not None:
                    successful.append(
                        {"Id": e["Id"], "MessageId": hit[0], "SequenceNumber": hit[1]}
                    )
                    continue
            batch.append(message)
            replies.append((reply, key))
        if batch:
            await self.broker.publish(self._exchange(topic), batch, vhost=VHOST)
        for reply, key in replies:
            if key is not None:
                self._remember_dedup(key[0], key[1], reply["MessageId"], reply["SequenceNumber"])
            successful.append(reply)
        order = {e["Id"]: i for i, e in enumerate(entries)}
        successful.sort(key=lambda r: order[r["Id"]])
        return {"Successful": successful, "Failed": failed}

    # -- http/https delivery ----------------------------------------------------------------------

    def _http_target(self, sub: Subscription) -> HttpTarget:
        policy = json.loads(self._effective_sub_delivery_policy(sub))
        redrive = _json_or_none(sub.attributes.get("RedrivePolicy"))
        dlq = None
        if isinstance(redrive, dict) and isinstance(redrive.get("deadLetterTargetArn"), str):
            dlq = self._queue_of_arn(redrive["deadLetterTargetArn"])
        return HttpTarget(
            sub_id=sub.id,
            topic=sub.topic,
            topic_arn=self.topic_arn(sub.topic),
            subscription_arn=self.subscription_arn(sub.topic, sub.id),
            endpoint=sub.endpoint,
            raw=sub.attributes.get("RawMessageDelivery") == "true",
            retry={**DEFAULT_HEALTHY_RETRY_POLICY, **(policy.get("healthyRetryPolicy") or {})},
            content_type=str(
                (policy.get("requestPolicy") or {}).get("headerContentType") or DEFAULT_CONTENT_TYPE
            ),
            dlq=dlq,
        )

    async def _start_worker(self, sub: Subscription) -> None:
        if self._nursery is None or self._session is None or sub.id in self._workers:
            return
        send, recv = trio.open_memory_channel[Any](HTTP_PREFETCH * 2)
        worker = _Worker(send)
        self._workers[sub.id] = worker
        self._targets[sub.id] = self._http_target(sub)
        self._nursery.start_soon(self._work, sub.id, worker, recv)
        try:
            await self.broker.consume(
                self._session, sub.dest, tag=sub.id, vhost=VHOST, prefetch=HTTP_PREFETCH
            )
        except BrokerError:
            worker.scope.cancel()
            self._workers.pop(sub.id, None)
            self._targets.pop(sub.id, None)
            raise

    async def _stop_worker(self, sub_id: str) -> None:
        worker = self._workers.pop(sub_id, None)
        self._targets.pop(sub_id, None)
        if worker is None:
            return
        worker.scope.cancel()
        if self._session is not None:
            try:
                await self.broker.cancel(self._session, sub_id)
            except BrokerError:
                pass

    async def _work(
        self, sub_id: str, worker: _Worker, recv: trio.MemoryReceiveChannel[Any]
    ) -> None:
        with worker.scope:
            async with recv:
                async for delivery in recv:
                    target = self._targets.get(sub_id)
                    if target is None:
                        return
                    await self._deliver_http(target, delivery)

    async def _deliver_http(self, target: HttpTarget, delivery: Any) -> None:
        props = delivery[D_PROPS] or {}
        body = delivery[D_BODY]
        body = bytes(body) if not isinstance(body, bytes) else body
        message_id = props.get("message_id")
        if not message_id:
            try:
                message_id = json.loads(body).get("MessageId")
            except (ValueError, AttributeError):
                message_id = None
        headers = [
            ("content-type", target.content_type),
            ("x-amz-sns-message-type", "Notification"),
            ("x-amz-sns-message-id", str(message_id or "")),
            ("x-amz-sns-topic-arn", target.topic_arn),
            ("x-amz-sns-subscription-arn", target.subscription_arn),
        ]
        if target.raw:
            headers.append(("x-amz-sns-rawdelivery", "true"))
        delays = retry_delays(target.retry)
        attempt = 0
        while True:
            outcome = await self._post_once(target.endpoint, headers, body)
            if outcome == "ok":
                break
            if outcome == "retry" and attempt < len(delays):
                await trio.sleep(delays[attempt])
                attempt += 1
                if self._targets.get(target.sub_id) is None:
                    return
                continue
            await self._give_up(target, delivery, attempt + 1)
            break
        if self._session is not None:
            await self.broker.settle(self._session, [delivery[D_ID]], COMPLETE)

    async def _post_once(self, url: str, headers: list[tuple[str, str]], body: bytes) -> str:
        """``ok``, ``retry`` (5xx, 429, no response) or ``failed`` (other statuses)."""
        try:
            status = await http_post(url, headers, body, ssl_context=self.ssl_context)
        except HttpError as exc:
            log.info("sns http delivery failed", extra={"endpoint": url[:200], "error": str(exc)})
            return "retry"
        if 200 <= status < 300:
            return "ok"
        if status == 429 or status >= 500:
            return "retry"
        return "failed"

    async def _give_up(self, target: HttpTarget, delivery: Any, attempts: int) -> None:
        if target.dlq is not None and self._queue_exists(target.dlq):
            props = dict(delivery[D_PROPS] or {})
            props["delivery_mode"] = 2
            await self.broker.publish(
                "", [(target.dlq, props, bytes(delivery[D_BODY]))], vhost=VHOST
            )
            log.warning(
                "sns message moved to the dead-letter queue",
                extra={
                    "subscription": target.subscription_arn,
                    "dlq": target.dlq,
                    "attempts": attempts,
                },
            )
            return
        log.warning(
            "sns message dropped after its delivery retries",
            extra={"subscription": target.subscription_arn, "attempts": attempts},
        )

    def _send_confirmation(self, sub: Subscription) -> None:
        if self._nursery is None:
            return
        self._nursery.start_soon(self._confirm_request, sub)

    async def _confirm_request(self, sub: Subscription) -> None:
        meta = sub.meta
        topic_arn = self.topic_arn(sub.topic)
        host = meta.get("host") or "localhost:4566"
        token = str(meta.get("token", ""))
        message_id = str(uuid.uuid4())
        doc = {
            "Type": "SubscriptionConfirmation",
            "MessageId": message_id,
            "Token": token,
            "TopicArn": topic_arn,
            "Message": (
                f"You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the "
                "subscription, visit the SubscribeURL included in this message."
            ),
            "SubscribeURL": (
                f"http://{host}/?Action=ConfirmSubscription&TopicArn={quote(topic_arn, safe=':')}"
                f"&Token={token}"
            ),
            "Timestamp": iso_ms(self.wall_ms()),
            "SignatureVersion": "1",
            "Signature": base64.b64encode(
                hashlib.sha256(f"{message_id}{token}{topic_arn}".encode()).digest()
            ).decode(),
            "SigningCertURL": f"http://{host}/SimpleNotificationService-polymq.pem",
        }
        headers = [
            ("content-type", DEFAULT_CONTENT_TYPE),
            ("x-amz-sns-message-type", "SubscriptionConfirmation"),
            ("x-amz-sns-message-id", message_id),
            ("x-amz-sns-topic-arn", topic_arn),
        ]
        body = json.dumps(doc, indent=2).encode()
        for attempt in range(CONFIRMATION_ATTEMPTS):
            if await self._post_once(sub.endpoint, headers, body) == "ok":
                return
            if attempt + 1 < CONFIRMATION_ATTEMPTS:
                await trio.sleep(CONFIRMATION_RETRY_S)
        log.warning(
            "sns subscription confirmation not delivered",
            extra={"subscription": self.subscription_arn(sub.topic, sub.id)},
        )


_TOPIC_DEFAULTS = {"ContentBasedDeduplication": "false", "DisplayName": ""}
_SUB_DEFAULTS = {"RawMessageDelivery": "false", "FilterPolicyScope": "MessageAttributes"}


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
