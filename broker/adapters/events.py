"""Amazon EventBridge over the core API.

Mapping (DESIGN.md section 3):

* An event bus is a durable core exchange of type ``x-rules`` named ``events:<bus>``; the
  default bus ``events:default`` is declared when the adapter starts. Bus metadata (description,
  policy, tags, times) is in the exchange argument ``x-events``. Account-wide metadata
  (connections, API destinations, archives, replays) is in ``x-events`` of ``events:default``.
* A rule's metadata (pattern, schedule, state, description, role, tags, targets) is the
  ``x-events`` argument of a durable internal fanout exchange of its own,
  ``events-rule:<bus>/<rule>``, with no bindings: one rule changes with one small command, so a
  bus holds thousands of rules without rewriting a large table on every change.
* Each target of a rule is one binding from the bus exchange, routing key
  ``<rule>/<target id>``, with ``x-pattern-dialect`` "eventbridge", ``x-pattern`` (the rule's
  pattern; a scheduled rule's bindings carry the internal pattern ``{"source": ["aws.events"],
  "detail-type": ["Scheduled Event"], "resources": [<rule ARN>]}``), ``x-disabled`` for a
  DISABLED rule (the core never matches it), ``x-transform`` (Input / InputPath /
  InputTransformer, FIFO group and deduplication by event id; see broker/core/transform.py)
  and ``x-events-target`` (rule and target names). The exact binding of every target is kept
  in the rule's metadata, so a change unbinds exactly what was bound; a reconcile pass (at
  start and every ``RECONCILE_INTERVAL_S``) binds what is missing (a target queue created
  after PutTargets, or deleted and created again) and drops bindings no rule owns.
* Targets: SQS queue -> binding to the queue; another bus -> binding to its exchange; API
  destination and SNS topic -> binding to a durable delivery queue
  ``events-delivery:<bus>/<rule>/<target>`` drained by a worker task of this adapter (HTTP
  with the connection's auth, RetryPolicy with backoff, DeadLetterConfig; for SNS, a publish
  to the topic with the SNS publish block); a Step Functions state machine -> the same kind
  of delivery queue, whose worker starts an execution through ``state_machine_target`` (the
  hook the Step Functions adapter sets). Other target types are stored and listed, not
  delivered.
* PutEvents publishes every entry of a bus in one persistent publish; the reply leaves after
  the publish took effect (on disk when a durable target matched).
* Scheduled rules: a timer per enabled scheduled rule on the node that serves the API (the
  leader once replication lands) publishes the "Scheduled Event" to the default bus; that
  publish is the replicated command.
* Archives: a durable queue ``events-archive:<name>`` bound to the bus with the archive's
  pattern (plus ``"replay-name": [{"exists": false}]``, so replays are not archived again);
  message TTL = retention. A replay leases the archived events, re-publishes the ones in its
  window with ``replay-name`` added, then returns them all (settle MODIFY, delay 0).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import trio

from broker.adapters import http_client
from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError
from broker.adapters.events_schedule import RuleTimers, ScheduleError, parse_schedule
from broker.api import COMPLETE, MODIFY, SERVICE_SESSION_BASE, Broker, BrokerError

log = logging.getLogger("polymq.events")

VHOST = "/"
#: The service session delivery workers and replays hold messages in.
EVENTS_SESSION = SERVICE_SESSION_BASE + 5
META = "x-events"
BUS_PREFIX = "events:"
RULE_PREFIX = "events-rule:"
DELIVERY_PREFIX = "events-delivery:"
ARCHIVE_PREFIX = "events-archive:"
REPLAY_PREFIX = "events-replay:"

# limits (AWS's where it has one)
BUSES_MAX = 100
RULES_PER_BUS_MAX = 10_000
TARGETS_PER_RULE_MAX = 5
PUT_TARGETS_MAX = 10
PUT_EVENTS_ENTRIES_MAX = 10
PUT_EVENTS_BYTES_MAX = 256 * 1024
EVENT_PATTERN_CHARS_MAX = 4096
TAGS_MAX = 50
CONNECTIONS_MAX = 100
API_DESTINATIONS_MAX = 300
ARCHIVES_MAX = 100
REPLAYS_KEPT_MAX = 100
REPLAY_EVENTS_MAX = 100_000
REPLAY_LEASE_MS = 600_000
REPLAY_BATCH = 100
LIST_LIMIT_MAX = 100
DELIVERY_BATCH = 10
DELIVERY_LEASE_MS = 60_000
DELIVERY_IDLE_WAIT_S = 5.0
RETRY_BACKOFF_BASE_MS = 1_000
RETRY_BACKOFF_MAX_MS = 60_000
DEFAULT_RETRY_ATTEMPTS = 185
DEFAULT_EVENT_AGE_S = 86_400
OAUTH_TOKEN_BYTES_MAX = 64 << 10
OAUTH_EXPIRY_DEFAULT_S = 3600
RECONCILE_INTERVAL_S = 5.0
ERROR_TEXT_CHARS_MAX = 256

NAME_RE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
BUS_NAME_RE = re.compile(r"^[/\.\-_A-Za-z0-9]{1,256}$")
TARGET_ID_RE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
RULE_STATES = ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
AUTH_TYPES = ("BASIC", "OAUTH_CLIENT_CREDENTIALS", "API_KEY")
HTTP_METHODS = ("POST", "GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE")
INVALID_PATTERN = "InvalidEventPatternException"


def _now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def _parse_iso(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _ts_ms(value: Any) -> int | None:
    """Milliseconds of a decoded timestamp parameter (datetime or seconds)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000)
    return None


def validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def not_found(message: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", message)


def _str(params: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise validation(f"Parameter {name} must be specified.")
        return None
    if not isinstance(value, str):
        raise validation(f"Parameter {name} is not valid.")
    return value


def _limit(params: dict[str, Any]) -> int:
    value = params.get("Limit")
    if value is None:
        return LIST_LIMIT_MAX
    if not isinstance(value, int) or not 1 <= value <= LIST_LIMIT_MAX:
        raise validation(
            f"1 validation error detected: Value '{value}' at 'limit' failed to satisfy "
            f"constraint: Member must have value less than or equal to {LIST_LIMIT_MAX}"
        )
    return value


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    limit = _limit(params)
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except ValueError:
            raise validation("The NextToken provided is not valid.") from None
    chunk = items[start : start + limit]
    nxt = None
    if start + limit < len(items):
        nxt = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return chunk, nxt


def _canonical(args: dict[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


def _tags_in(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise validation("Parameter Tags is not valid.")
    out: dict[str, str] = {}
    for tag in raw:
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str):
            raise validation("Parameter Tags is not valid.")
        out[tag["Key"]] = str(tag.get("Value", ""))
    return out


def _tags_out(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


@dataclass
class Replay:
    name: str
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    last_replayed_ms: int | None = None


class EventsAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="UnsupportedOperationException",
        internal="InternalException",
        busy="ThrottlingException",
        busy_status=400,
    )

    def __init__(
        self,
        broker: Broker,
        *,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.broker = broker
        self.account_id = account_id
        self.region = region
        self.wall_ms = wall_ms or _now_ms
        self.timers = RuleTimers(self.wall_ms)
        self._lock = trio.Lock()
        self._rule_names: dict[str, set[str]] = {}
        self._workers: set[str] = set()
        self._replays: dict[str, Replay] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # connection name -> (token, expiry)
        self._nursery: trio.Nursery | None = None
        #: starts an execution for a state machine target: (state machine ARN, event body);
        #: set by the Step Functions adapter, raises ServiceError to have the delivery retried
        self.state_machine_target: Callable[[str, bytes], Awaitable[None]] | None = None
        self._actions = {
            "PutEvents": self.put_events,
            "PutRule": self.put_rule,
            "DescribeRule": self.describe_rule,
            "DeleteRule": self.delete_rule,
            "EnableRule": self.enable_rule,
            "DisableRule": self.disable_rule,
            "ListRules": self.list_rules,
            "PutTargets": self.put_targets,
            "RemoveTargets": self.remove_targets,
            "ListTargetsByRule": self.list_targets_by_rule,
            "ListRuleNamesByTarget": self.list_rule_names_by_target,
            "TestEventPattern": self.test_event_pattern,
            "CreateEventBus": self.create_event_bus,
            "DeleteEventBus": self.delete_event_bus,
            "DescribeEventBus": self.describe_event_bus,
            "ListEventBuses": self.list_event_buses,
            "UpdateEventBus": self.update_event_bus,
            "PutPermission": self.put_permission,
            "RemovePermission": self.remove_permission,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
            "CreateConnection": self.create_connection,
            "DescribeConnection": self.describe_connection,
            "UpdateConnection": self.update_connection,
            "DeleteConnection": self.delete_connection,
            "ListConnections": self.list_connections,
            "DeauthorizeConnection": self.deauthorize_connection,
            "CreateApiDestination": self.create_api_destination,
            "DescribeApiDestination": self.describe_api_destination,
            "UpdateApiDestination": self.update_api_destination,
            "DeleteApiDestination": self.delete_api_destination,
            "ListApiDestinations": self.list_api_destinations,
            "CreateArchive": self.create_archive,
            "DescribeArchive": self.describe_archive,
            "UpdateArchive": self.update_archive,
            "DeleteArchive": self.delete_archive,
            "ListArchives": self.list_archives,
            "StartReplay": self.start_replay,
            "DescribeReplay": self.describe_replay,
            "CancelReplay": self.cancel_replay,
            "ListReplays": self.list_replays,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Declare the default bus, load the rules, then host the schedules, delivery workers
        and replays until cancelled. In a cluster it runs on the leader, and again from the
        replicated state each time this node becomes leader: nothing of an earlier run is kept."""
        self._workers = set()
        self._replays = {}
        self.timers = RuleTimers(self.wall_ms)
        await self._ensure_default_bus()
        self._load_rules()
        await self._fail_interrupted_replays()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with self._lock:
                await self._reconcile()
            for bus, names in self._rule_names.items():
                for name in names:
                    meta = self._rule_meta(bus, name)
                    if meta is not None:
                        self._arm(bus, meta)
            for q in self.broker.list_queues(vhost=VHOST):
                if q["name"].startswith(DELIVERY_PREFIX):
                    self._start_worker(q["name"])
            nursery.start_soon(self.timers.run, self._fire)
            nursery.start_soon(self._reconcile_loop)
            task_status.started()
            await trio.sleep_forever()

    async def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._dispatch(action, params)

    async def _ensure_default_bus(self) -> None:
        if self.broker.exchange_info(BUS_PREFIX + "default", vhost=VHOST) is None:
            now = self.wall_ms()
            try:
                await self.broker.declare_exchange(
                    BUS_PREFIX + "default",
                    "x-rules",
                    vhost=VHOST,
                    durable=True,
                    arguments={META: {"created": now, "modified": now}},
                )
            except BrokerError as exc:
                # another node of the cluster declared it first (with its own timestamps)
                if exc.code != 406 or self.broker.exchange_info(BUS_PREFIX + "default") is None:
                    raise

    # -- names and ARNs ---------------------------------------------------------------------------

    def _arn(self, resource: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account_id}:{resource}"

    def bus_arn(self, bus: str) -> str:
        return self._arn(f"event-bus/{bus}")

    def rule_arn(self, bus: str, rule: str) -> str:
        return self._arn(f"rule/{rule}" if bus == "default" else f"rule/{bus}/{rule}")

    def _bus_name(self, value: Any) -> str:
        if value is None or value == "":
            return "default"
        if not isinstance(value, str):
            raise validation("Parameter EventBusName is not valid.")
        if value.startswith("arn:"):
            parts = value.split(":", 5)
            if len(parts) != 6 or not parts[5].startswith("event-bus/"):
                raise validation(
                    f"Parameter {value} is not valid. Reason: Provided Arn is not in correct "
                    "format."
                )
            return parts[5][len("event-bus/") :]
        return value

    def _bus_info(self, bus: str) -> dict[str, Any]:
        info = self.broker.exchange_info(BUS_PREFIX + bus, vhost=VHOST)
        if info is None or info["type"] != "x-rules":
            raise not_found(f"Event bus {bus} does not exist.")
        return info

    @staticmethod
    def _meta_of(info: dict[str, Any] | None) -> dict[str, Any]:
        if info is None:
            return {}
        meta = info["arguments"].get(META)
        return dict(meta) if isinstance(meta, dict) else {}

    def _account_meta(self) -> dict[str, Any]:
        return self._meta_of(self.broker.exchange_info(BUS_PREFIX + "default", vhost=VHOST))

    async def _set_account_meta(self, meta: dict[str, Any]) -> None:
        info = self.broker.exchange_info(BUS_PREFIX + "default", vhost=VHOST)
        args = dict(info["arguments"]) if info else {}
        args[META] = meta
        await self.broker.set_exchange_arguments(BUS_PREFIX + "default", args, vhost=VHOST)

    async def _set_bus_meta(self, bus: str, meta: dict[str, Any]) -> None:
        info = self._bus_info(bus)
        args = dict(info["arguments"])
        args[META] = meta
        await self.broker.set_exchange_arguments(BUS_PREFIX + bus, args, vhost=VHOST)

    # -- rules: storage ---------------------------------------------------------------------------

    @staticmethod
    def _holder(bus: str, rule: str) -> str:
        return f"{RULE_PREFIX}{bus}/{rule}"

    def _load_rules(self) -> None:
        self._rule_names = {}
        for x in self.broker.list_exchanges(vhost=VHOST):
            name = x["name"]
            if name.startswith(BUS_PREFIX):
                self._rule_names.setdefault(name[len(BUS_PREFIX) :], set())
            elif name.startswith(RULE_PREFIX):
                bus, _, rule = name[len(RULE_PREFIX) :].rpartition("/")
                self._rule_names.setdefault(bus, set()).add(rule)

    def _rule_meta(self, bus: str, rule: str) -> dict[str, Any] | None:
        info = self.broker.exchange_info(self._holder(bus, rule), vhost=VHOST)
        meta = self._meta_of(info)
        return meta or None

    def _need_rule(self, bus: str, rule: str) -> dict[str, Any]:
        meta = self._rule_meta(bus, rule)
        if meta is None:
            raise not_found(f"Rule {rule} does not exist on EventBus {bus}.")
        return meta

    async def _store_rule(self, bus: str, meta: dict[str, Any]) -> None:
        name = self._holder(bus, meta["name"])
        if self.broker.exchange_info(name, vhost=VHOST) is None:
            await self.broker.declare_exchange(
                name, "fanout", vhost=VHOST, durable=True, internal=True, arguments={META: meta}
            )
        else:
            await self.broker.set_exchange_arguments(name, {META: meta}, vhost=VHOST)
        self._rule_names.setdefault(bus, set()).add(meta["name"])

    def _rules_of(self, bus: str) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._rule_names.get(bus, ())):
            meta = self._rule_meta(bus, name)
            if meta is not None:
                out.append(meta)
        return out

    # -- rules: bindings --------------------------------------------------------------------------

    def _scheduled_pattern(self, bus: str, rule: str) -> dict[str, Any]:
        return {
            "source": ["aws.events"],
            "detail-type": ["Scheduled Event"],
            "resources": [self.rule_arn(bus, rule)],
        }

    def _rule_pattern(self, bus: str, meta: dict[str, Any]) -> dict[str, Any]:
        pattern = json.loads(meta["pattern"]) if meta.get("pattern") else None
        if meta.get("schedule"):
            scheduled = self._scheduled_pattern(bus, meta["name"])
            if pattern is None:
                return scheduled
            return {"$or": [pattern, scheduled]}
        assert isinstance(pattern, dict)
        return pattern

    def _destination(self, bus: str, rule: str, target: dict[str, Any]) -> tuple[str, str] | None:
        """``(dest_kind, dest)`` a target's binding goes to; None for targets not delivered."""
        arn = str(target.get("Arn", ""))
        parts = arn.split(":", 5)
        if len(parts) != 6:
            return None
        service, resource = parts[2], parts[5]
        if service == "sqs":
            return "queue", resource
        if service == "events" and resource.startswith("event-bus/"):
            return "exchange", BUS_PREFIX + resource[len("event-bus/") :]
        if (service == "events" and resource.startswith("api-destination/")) or service == "sns":
            return "queue", f"{DELIVERY_PREFIX}{bus}/{rule}/{target['Id']}"
        if service == "states" and resource.startswith("stateMachine:"):
            # started by the hook the Step Functions adapter registers (state_machine_target)
            return "queue", f"{DELIVERY_PREFIX}{bus}/{rule}/{target['Id']}"
        return None

    def _transform(self, bus: str, rule: str, target: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any]
        if target.get("Input") is not None:
            spec = {"kind": "input", "input": target["Input"]}
        elif target.get("InputPath") is not None:
            spec = {"kind": "input_path", "path": target["InputPath"]}
        elif target.get("InputTransformer") is not None:
            it = target["InputTransformer"]
            spec = {
                "kind": "input_transformer",
                "paths": dict(it.get("InputPathsMap") or {}),
                "template": it.get("InputTemplate"),
            }
        else:
            spec = {"kind": "event"}
        spec["rule_arn"] = self.rule_arn(bus, rule)
        spec["rule_name"] = rule
        spec["target_id"] = target["Id"]
        group = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if group is not None:
            spec["group"] = group
            spec["dedup"] = "event-id"
        return spec

    def _binding(self, bus: str, meta: dict[str, Any], target: dict[str, Any]) -> list[Any] | None:
        """``[dest_kind, dest, routing_key, arguments]`` of a target's binding."""
        dest = self._destination(bus, meta["name"], target)
        if dest is None:
            return None
        args: dict[str, Any] = {
            "x-pattern-dialect": "eventbridge",
            "x-pattern": self._rule_pattern(bus, meta),
            "x-transform": self._transform(bus, meta["name"], target),
            "x-events-target": {"rule": meta["name"], "id": target["Id"]},
        }
        if meta.get("state") == "DISABLED":
            args["x-disabled"] = True
        return [dest[0], dest[1], f"{meta['name']}/{target['Id']}", args]

    async def _bind(self, bus: str, spec: list[Any]) -> bool:
        """Bind; False when the destination does not exist yet (bound by a later reconcile)."""
        kind, dest, rk, args = spec
        try:
            await self.broker.bind(
                BUS_PREFIX + bus, dest, rk, vhost=VHOST, dest_kind=kind, arguments=args
            )
        except BrokerError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    async def _unbind(self, bus: str, spec: list[Any]) -> None:
        kind, dest, rk, args = spec
        try:
            await self.broker.unbind(
                BUS_PREFIX + bus, dest, rk, vhost=VHOST, dest_kind=kind, arguments=args
            )
        except BrokerError as exc:
            if exc.code != 404:
                raise

    async def _validate_binding(self, args: dict[str, Any], code: str) -> None:
        """Check a pattern or transform as the core will; its refusal becomes ``code``."""
        why = self.broker.check_rule_binding(args)
        if why is not None:
            raise ServiceError(code, why)

    async def _check_pattern(self, text: str) -> None:
        if len(text) > EVENT_PATTERN_CHARS_MAX:
            raise validation(
                "1 validation error detected: Value at 'eventPattern' failed to satisfy "
                f"constraint: Member must have length less than or equal to "
                f"{EVENT_PATTERN_CHARS_MAX}"
            )
        try:
            pattern = json.loads(text)
        except ValueError:
            raise ServiceError(
                INVALID_PATTERN, "Event pattern is not valid. Reason: Invalid JSON"
            ) from None
        if not isinstance(pattern, dict):
            raise ServiceError(
                INVALID_PATTERN, "Event pattern is not valid. Reason: Filter is not an object"
            )
        await self._validate_binding(
            {"x-pattern-dialect": "eventbridge", "x-pattern": pattern}, INVALID_PATTERN
        )

    # -- rules: actions ---------------------------------------------------------------------------

    async def put_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        if not NAME_RE.match(name):
            raise validation(
                f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
            )
        bus = self._bus_name(params.get("EventBusName"))
        pattern = _str(params, "EventPattern", required=False)
        schedule = _str(params, "ScheduleExpression", required=False)
        state = params.get("State") or "ENABLED"
        if state not in RULE_STATES:
            raise validation(f"Parameter State is not valid. Value: {state}")
        if pattern is None and schedule is None:
            raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        self._bus_info(bus)
        if schedule is not None:
            if bus != "default":
                raise validation("ScheduleExpression is supported only on the default event bus.")
            try:
                parse_schedule(schedule)
            except ScheduleError:
                raise validation("Parameter ScheduleExpression is not valid.") from None
        if pattern is not None:
            await self._check_pattern(pattern)
        tags = _tags_in(params.get("Tags"))
        async with self._lock:
            old = self._rule_meta(bus, name)
            if old is None and len(self._rule_names.get(bus, ())) >= RULES_PER_BUS_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    f"The requested resource exceeds the maximum number allowed "
                    f"({RULES_PER_BUS_MAX} rules per event bus).",
                )
            now = self.wall_ms()
            meta: dict[str, Any] = dict(old) if old else {"name": name, "created": now}
            meta.update(
                pattern=pattern,
                schedule=schedule,
                state=state,
                description=params.get("Description"),
                role=params.get("RoleArn"),
                modified=now,
            )
            meta.setdefault("targets", [])
            meta.setdefault("bindings", {})
            merged = dict(meta.get("tags") or {})
            merged.update(tags)
            if len(merged) > TAGS_MAX:
                raise validation(f"A resource can have at most {TAGS_MAX} tags.")
            meta["tags"] = merged
            await self._rebind(bus, meta)
            self._arm(bus, meta)
        return {"RuleArn": self.rule_arn(bus, name)}

    async def _rebind(self, bus: str, meta: dict[str, Any]) -> None:
        """Store ``meta`` and make the bindings of its targets match it (new ones bound before
        the old ones go, so a change loses no event)."""
        old_bindings: dict[str, Any] = dict(meta.get("bindings") or {})
        new_bindings: dict[str, Any] = {}
        for target in meta["targets"]:
            spec = self._binding(bus, meta, target)
            if spec is not None:
                new_bindings[target["Id"]] = spec
        for tid, spec in new_bindings.items():
            old = old_bindings.get(tid)
            if old is None or _canonical(old[3]) != _canonical(spec[3]) or old[:3] != spec[:3]:
                await self._bind(bus, spec)
        meta["bindings"] = new_bindings
        await self._store_rule(bus, meta)
        for tid, spec in old_bindings.items():
            new = new_bindings.get(tid)
            if new is None or _canonical(new[3]) != _canonical(spec[3]) or new[:3] != spec[:3]:
                await self._unbind(bus, spec)

    def _arm(self, bus: str, meta: dict[str, Any]) -> None:
        key = (bus, meta["name"])
        if meta.get("schedule") and meta.get("state") != "DISABLED":
            try:
                schedule = parse_schedule(meta["schedule"])
            except ScheduleError:
                return
            self.timers.set(key, schedule, int(meta.get("created", 0)))
        else:
            self.timers.remove(key)

    def _rule_out(self, bus: str, meta: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Name": meta["name"],
            "Arn": self.rule_arn(bus, meta["name"]),
            "State": meta.get("state", "ENABLED"),
            "EventBusName": bus,
        }
        for key, out_key in (
            ("pattern", "EventPattern"),
            ("schedule", "ScheduleExpression"),
            ("description", "Description"),
            ("role", "RoleArn"),
        ):
            if meta.get(key) is not None:
                out[out_key] = meta[key]
        return out

    async def describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        out = self._rule_out(bus, self._need_rule(bus, name))
        out["CreatedBy"] = self.account_id
        return out

    async def delete_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        async with self._lock:
            meta = self._rule_meta(bus, name)
            if meta is None:
                return {}
            if meta.get("targets"):
                if not params.get("Force"):
                    raise validation("Rule can't be deleted since it has targets.")
                await self._drop_targets(bus, meta, [t["Id"] for t in meta["targets"]])
            await self._delete_rule_holder(bus, name)
        return {}

    async def _delete_rule_holder(self, bus: str, name: str) -> None:
        self.timers.remove((bus, name))
        try:
            await self.broker.delete_exchange(self._holder(bus, name), vhost=VHOST)
        except BrokerError as exc:
            if exc.code != 404:
                raise
        self._rule_names.get(bus, set()).discard(name)

    async def _set_state(self, params: dict[str, Any], state: str) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        async with self._lock:
            meta = self._need_rule(bus, name)
            if meta.get("state") != state:
                meta["state"] = state
                meta["modified"] = self.wall_ms()
                await self._rebind(bus, meta)
                self._arm(bus, meta)
        return {}

    async def enable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, "ENABLED")

    async def disable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, "DISABLED")

    async def list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        prefix = params.get("NamePrefix") or ""
        names = sorted(n for n in self._rule_names.get(bus, ()) if n.startswith(prefix))
        chunk, nxt = _page(names, params)
        rules = []
        for name in chunk:
            meta = self._rule_meta(bus, name)
            if meta is not None:
                rules.append(self._rule_out(bus, meta))
        out: dict[str, Any] = {"Rules": rules}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -- targets ----------------------------------------------------------------------------------

    def _check_target(self, target: dict[str, Any]) -> str | None:
        """Why a target is refused (a whole-request ValidationException), or None."""
        tid = target.get("Id")
        if not isinstance(tid, str) or not TARGET_ID_RE.match(tid):
            return f"Parameter Id is not valid. Value: {tid}"
        arn = target.get("Arn")
        if not isinstance(arn, str) or not re.match(r"^arn:[\w\-]+:[\w\-]+:", arn):
            return f"Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
        given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
        if len(given) > 1:
            return f"Only one of Input, InputPath, or InputTransformer must be provided for target {tid}."  # noqa: E501
        if target.get("Input") is not None:
            try:
                json.loads(target["Input"])
            except ValueError:
                return f"Input for target {tid} must be a valid JSON text."
        if ":sqs:" in arn and arn.endswith(".fifo") and not target.get("SqsParameters"):
            return f"Parameter(s) SqsParameters must be specified for target: {tid}."
        return None

    async def put_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = _str(params, "Rule")
        assert rule is not None
        bus = self._bus_name(params.get("EventBusName"))
        targets = params.get("Targets") or []
        if not isinstance(targets, list) or not targets:
            raise validation("Parameter Targets must be specified.")
        if len(targets) > PUT_TARGETS_MAX:
            raise validation(
                f"1 validation error detected: Value at 'targets' failed to satisfy constraint: "
                f"Member must have length less than or equal to {PUT_TARGETS_MAX}"
            )
        for target in targets:
            why = self._check_target(target)
            if why is not None:
                raise validation(why)
        self._bus_info(bus)
        async with self._lock:
            meta = self._need_rule(bus, rule)
            for target in targets:
                spec = self._transform(bus, rule, target)
                if spec["kind"] != "event" or "group" in spec:
                    await self._validate_binding({"x-transform": spec}, "ValidationException")
            current = {t["Id"]: t for t in meta.get("targets", [])}
            for target in targets:
                current[target["Id"]] = target
            if len(current) > TARGETS_PER_RULE_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                )
            for target in targets:
                dest = self._destination(bus, rule, target)
                if dest is not None and dest[1].startswith(DELIVERY_PREFIX):
                    await self.broker.declare_queue(dest[1], vhost=VHOST, durable=True)
            meta["targets"] = list(current.values())
            await self._rebind(bus, meta)
            for target in targets:
                dest = self._destination(bus, rule, target)
                if dest is not None and dest[1].startswith(DELIVERY_PREFIX):
                    self._start_worker(dest[1])
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def _drop_targets(self, bus: str, meta: dict[str, Any], ids: list[str]) -> None:
        delivery = []
        for target in meta.get("targets", []):
            if target["Id"] in ids:
                dest = self._destination(bus, meta["name"], target)
                if dest is not None and dest[1].startswith(DELIVERY_PREFIX):
                    delivery.append(dest[1])
        meta["targets"] = [t for t in meta.get("targets", []) if t["Id"] not in ids]
        await self._rebind(bus, meta)
        for name in delivery:
            try:
                await self.broker.delete_queue(name, vhost=VHOST)
            except BrokerError as exc:
                if exc.code != 404:
                    raise

    async def remove_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = _str(params, "Rule")
        assert rule is not None
        bus = self._bus_name(params.get("EventBusName"))
        ids = params.get("Ids") or []
        if not isinstance(ids, list) or not ids:
            raise validation("Parameter Ids must be specified.")
        self._bus_info(bus)
        async with self._lock:
            meta = self._need_rule(bus, rule)
            await self._drop_targets(bus, meta, [str(i) for i in ids])
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = _str(params, "Rule")
        assert rule is not None
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        meta = self._need_rule(bus, rule)
        chunk, nxt = _page(list(meta.get("targets", [])), params)
        out: dict[str, Any] = {"Targets": chunk}
        if nxt:
            out["NextToken"] = nxt
        return out

    async def list_rule_names_by_target(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _str(params, "TargetArn")
        bus = self._bus_name(params.get("EventBusName"))
        self._bus_info(bus)
        names = [
            m["name"]
            for m in self._rules_of(bus)
            if any(t.get("Arn") == arn for t in m.get("targets", []))
        ]
        chunk, nxt = _page(names, params)
        out: dict[str, Any] = {"RuleNames": chunk}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -- reconcile --------------------------------------------------------------------------------

    def _expected_bindings(self) -> dict[str, dict[str, list[Any]]]:
        """bus -> canonical key -> binding, from the rules' and archives' metadata."""
        out: dict[str, dict[str, list[Any]]] = {}
        for bus in self._rule_names:
            want: dict[str, list[Any]] = {}
            for meta in self._rules_of(bus):
                for spec in (meta.get("bindings") or {}).values():
                    want[self._binding_key(spec)] = spec
            out[bus] = want
        for archive in (self._account_meta().get("archives") or {}).values():
            spec = self._archive_binding(archive)
            out.setdefault(archive["bus"], {})[self._binding_key(spec)] = spec
        return out

    @staticmethod
    def _binding_key(spec: list[Any]) -> str:
        return _canonical({"k": spec[0], "d": spec[1], "r": spec[2], "a": spec[3]})

    async def _reconcile(self) -> None:
        """Bind what the metadata says and the core lacks (a destination that appeared), drop
        bus bindings to rule targets or archives that no metadata owns."""
        expected = self._expected_bindings()
        for bus, want in expected.items():
            if self.broker.exchange_info(BUS_PREFIX + bus, vhost=VHOST) is None:
                continue
            have: dict[str, list[Any]] = {}
            for b in self.broker.bindings_from(BUS_PREFIX + bus, vhost=VHOST):
                args = b["arguments"]
                if "x-events-target" in args or "x-events-archive" in args:
                    spec = [b["destination_type"], b["destination"], b["routing_key"], args]
                    have[self._binding_key(spec)] = spec
            for key, spec in want.items():
                if key not in have:
                    await self._bind(bus, spec)
            for key, spec in have.items():
                if key not in want:
                    await self._unbind(bus, spec)

    async def _reconcile_loop(self) -> None:
        while True:
            await trio.sleep(RECONCILE_INTERVAL_S)
            try:
                async with self._lock:
                    await self._reconcile()
            except BrokerError as exc:
                log.warning("events reconcile failed", extra={"error": exc.text})

    # -- PutEvents --------------------------------------------------------------------------------

    @staticmethod
    def _entry_size(entry: dict[str, Any]) -> int:
        size = 14 if entry.get("Time") is not None else 0
        for key in ("Source", "DetailType", "Detail"):
            value = entry.get(key)
            if isinstance(value, str):
                size += len(value.encode())
        for res in entry.get("Resources") or []:
            if isinstance(res, str):
                size += len(res.encode())
        return size

    def _entry_error(self, entry: dict[str, Any]) -> tuple[str, str] | None:
        for key in ("Source", "DetailType", "Detail"):
            if not entry.get(key):
                return (
                    "InvalidArgument",
                    f"Parameter {key} is not valid. Reason: {key} is a required argument.",
                )
        try:
            detail = json.loads(entry["Detail"])
        except (ValueError, TypeError):
            return "MalformedDetail", "Detail is malformed."
        if not isinstance(detail, dict):
            return "MalformedDetail", "Detail is malformed."
        if str(entry["Source"]).startswith("aws."):
            return "NotAuthorizedForSourceException", "Not authorized for the source."
        return None

    def build_event(
        self,
        *,
        source: str,
        detail_type: str,
        detail: Any,
        resources: list[str],
        time_ms: int,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "version": "0",
            "id": event_id or str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account_id,
            "time": iso(time_ms),
            "region": self.region,
            "resources": resources,
            "detail": detail,
        }

    @staticmethod
    def message(event: dict[str, Any], now_ms: int) -> tuple[str, dict[str, Any], bytes]:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        props = {
            "delivery_mode": 2,
            "message_id": event["id"],
            "timestamp": now_ms // 1000,
            "eb": {"t": now_ms, "ingested": iso(now_ms)},
        }
        return "", props, body

    async def put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = params.get("Entries") or []
        if not isinstance(entries, list) or not entries:
            raise validation("Parameter Entries must be specified.")
        if len(entries) > PUT_EVENTS_ENTRIES_MAX:
            raise validation(
                "1 validation error detected: Value '[PutEventsRequestEntry]' at 'entries' "
                f"failed to satisfy constraint: Member must have length less than or equal to "
                f"{PUT_EVENTS_ENTRIES_MAX}"
            )
        if sum(self._entry_size(e) for e in entries) > PUT_EVENTS_BYTES_MAX:
            raise validation("Total size of the entries in the request is over the limit.")
        now = self.wall_ms()
        results: list[dict[str, Any]] = []
        by_bus: dict[str, list[tuple[int, tuple[str, dict[str, Any], bytes]]]] = {}
        for pos, entry in enumerate(entries):
            err = self._entry_error(entry)
            bus = ""
            if err is None:
                try:
                    bus = self._bus_name(entry.get("EventBusName"))
                    self._bus_info(bus)
                except ServiceError as exc:
                    err = (exc.code, exc.message)
            if err is not None:
                results.append({"ErrorCode": err[0], "ErrorMessage": err[1]})
                continue
            when = _ts_ms(entry.get("Time"))
            resources = [str(r) for r in entry.get("Resources") or []]
            event = self.build_event(
                source=entry["Source"],
                detail_type=entry["DetailType"],
                detail=json.loads(entry["Detail"]),
                resources=resources,
                time_ms=now if when is None else when,
            )
            results.append({"EventId": event["id"]})
            by_bus.setdefault(bus, []).append((pos, self.message(event, now)))
        for bus, items in by_bus.items():
            try:
                await self.broker.publish(BUS_PREFIX + bus, [m for _, m in items], vhost=VHOST)
            except BrokerError as exc:
                for pos, _ in items:
                    results[pos] = {"ErrorCode": "InternalFailure", "ErrorMessage": exc.text}
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    # -- TestEventPattern -------------------------------------------------------------------------

    async def test_event_pattern(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern_text = _str(params, "EventPattern")
        event_text = _str(params, "Event")
        assert pattern_text is not None and event_text is not None
        await self._check_pattern(pattern_text)
        try:
            event = json.loads(event_text)
        except ValueError:
            raise validation("Parameter Event is not valid.") from None
        if not isinstance(event, dict):
            raise validation("Parameter Event is not valid.")
        for key in ("id", "account", "source", "time", "region", "detail-type"):
            if key not in event:
                raise validation(f"Parameter Event is not valid. Reason: {key} is missing.")
        try:
            result = self.broker.pattern_matches(json.loads(pattern_text), event)
        except ValueError as exc:
            raise ServiceError(INVALID_PATTERN, str(exc)) from None
        return {"Result": result}

    # -- event buses ------------------------------------------------------------------------------

    def _bus_names(self) -> list[str]:
        return sorted(
            x["name"][len(BUS_PREFIX) :]
            for x in self.broker.list_exchanges(vhost=VHOST)
            if x["name"].startswith(BUS_PREFIX) and x["type"] == "x-rules"
        )

    async def create_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        if not BUS_NAME_RE.match(name):
            raise validation(
                f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [/\\.\\-_A-Za-z0-9]+"
            )
        if "/" in name:
            raise validation("Event bus name must not contain '/'.")
        if params.get("EventSourceName"):
            raise validation("Partner event sources are not supported.")
        tags = _tags_in(params.get("Tags"))
        async with self._lock:
            if self.broker.exchange_info(BUS_PREFIX + name, vhost=VHOST) is not None:
                raise ServiceError(
                    "ResourceAlreadyExistsException", f"Event bus {name} already exists."
                )
            if len(self._bus_names()) >= BUSES_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                )
            now = self.wall_ms()
            meta: dict[str, Any] = {"created": now, "modified": now, "tags": tags}
            for key, meta_key in (
                ("Description", "description"),
                ("KmsKeyIdentifier", "kms"),
                ("DeadLetterConfig", "dlq"),
                ("LogConfig", "log"),
            ):
                if params.get(key) is not None:
                    meta[meta_key] = params[key]
            await self.broker.declare_exchange(
                BUS_PREFIX + name, "x-rules", vhost=VHOST, durable=True, arguments={META: meta}
            )
            self._rule_names.setdefault(name, set())
        out: dict[str, Any] = {"EventBusArn": self.bus_arn(name)}
        for key in ("Description", "KmsKeyIdentifier", "DeadLetterConfig", "LogConfig"):
            if params.get(key) is not None:
                out[key] = params[key]
        return out

    async def delete_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        if name == "default":
            raise validation("Cannot delete event bus default.")
        async with self._lock:
            if self.broker.exchange_info(BUS_PREFIX + name, vhost=VHOST) is None:
                return {}
            for meta in self._rules_of(name):
                await self._drop_targets(name, meta, [t["Id"] for t in meta.get("targets", [])])
                await self._delete_rule_holder(name, meta["name"])
            await self.broker.delete_exchange(BUS_PREFIX + name, vhost=VHOST)
            self._rule_names.pop(name, None)
        return {}

    def _bus_out(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"Name": name, "Arn": self.bus_arn(name)}
        for key, out_key in (
            ("description", "Description"),
            ("kms", "KmsKeyIdentifier"),
            ("dlq", "DeadLetterConfig"),
            ("log", "LogConfig"),
        ):
            if meta.get(key) is not None:
                out[out_key] = meta[key]
        if meta.get("policy"):
            out["Policy"] = json.dumps(meta["policy"])
        if meta.get("created"):
            out["CreationTime"] = meta["created"] / 1000
            out["LastModifiedTime"] = meta.get("modified", meta["created"]) / 1000
        return out

    async def describe_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus_name(params.get("Name"))
        return self._bus_out(bus, self._meta_of(self._bus_info(bus)))

    async def list_event_buses(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        names = [n for n in self._bus_names() if n.startswith(prefix)]
        chunk, nxt = _page(names, params)
        buses = []
        for name in chunk:
            info = self.broker.exchange_info(BUS_PREFIX + name, vhost=VHOST)
            out = self._bus_out(name, self._meta_of(info))
            out.pop("KmsKeyIdentifier", None)
            out.pop("DeadLetterConfig", None)
            out.pop("LogConfig", None)
            buses.append(out)
        result: dict[str, Any] = {"EventBuses": buses}
        if nxt:
            result["NextToken"] = nxt
        return result

    async def update_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus_name(params.get("Name"))
        async with self._lock:
            meta = self._meta_of(self._bus_info(bus))
            for key, meta_key in (
                ("Description", "description"),
                ("KmsKeyIdentifier", "kms"),
                ("DeadLetterConfig", "dlq"),
                ("LogConfig", "log"),
            ):
                if params.get(key) is not None:
                    meta[meta_key] = params[key]
            meta["modified"] = self.wall_ms()
            await self._set_bus_meta(bus, meta)
        out = self._bus_out(bus, meta)
        out.pop("Policy", None)
        out.pop("CreationTime", None)
        out.pop("LastModifiedTime", None)
        return out

    async def put_permission(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus_name(params.get("EventBusName"))
        async with self._lock:
            meta = self._meta_of(self._bus_info(bus))
            if params.get("Policy"):
                try:
                    meta["policy"] = json.loads(params["Policy"])
                except ValueError:
                    raise validation("This policy contains invalid Json") from None
            else:
                sid = _str(params, "StatementId")
                principal = _str(params, "Principal")
                action = params.get("Action") or "events:PutEvents"
                if action != "events:PutEvents":
                    raise validation("Provided value in parameter 'action' is not supported.")
                policy = meta.get("policy") or {"Version": "2012-10-17", "Statement": []}
                statements = [s for s in policy.get("Statement", []) if s.get("Sid") != sid]
                who: Any = "*" if principal == "*" else {"AWS": f"arn:aws:iam::{principal}:root"}
                statement: dict[str, Any] = {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": who,
                    "Action": action,
                    "Resource": self.bus_arn(bus),
                }
                if params.get("Condition"):
                    cond = params["Condition"]
                    statement["Condition"] = {
                        "StringEquals": {cond.get("Key", ""): cond.get("Value", "")}
                    }
                statements.append(statement)
                policy["Statement"] = statements
                meta["policy"] = policy
            meta["modified"] = self.wall_ms()
            await self._set_bus_meta(bus, meta)
        return {}

    async def remove_permission(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus_name(params.get("EventBusName"))
        async with self._lock:
            meta = self._meta_of(self._bus_info(bus))
            policy = meta.get("policy")
            if params.get("RemoveAllPermissions"):
                meta.pop("policy", None)
            else:
                sid = _str(params, "StatementId")
                statements = (policy or {}).get("Statement", [])
                if not policy or not any(s.get("Sid") == sid for s in statements):
                    raise not_found("Statement with the provided id does not exist.")
                policy["Statement"] = [s for s in statements if s.get("Sid") != sid]
                if not policy["Statement"]:
                    meta.pop("policy", None)
            await self._set_bus_meta(bus, meta)
        return {}

    # -- tags -------------------------------------------------------------------------------------

    def _tag_owner(self, arn: str) -> tuple[str, str, str | None]:
        """``("bus", bus, None)`` or ``("rule", bus, rule)`` for a taggable ARN."""
        prefix = self._arn("")
        if not arn.startswith(prefix):
            raise not_found(f"Resource {arn} does not exist.")
        resource = arn[len(prefix) :]
        if resource.startswith("event-bus/"):
            bus = resource[len("event-bus/") :]
            if self.broker.exchange_info(BUS_PREFIX + bus, vhost=VHOST) is None:
                raise not_found(f"Event bus {bus} does not exist.")
            return "bus", bus, None
        if resource.startswith("rule/"):
            rest = resource[len("rule/") :]
            bus, _, rule = rest.rpartition("/")
            bus = bus or "default"
            self._need_rule(bus, rule)
            return "rule", bus, rule
        raise not_found(f"Resource {arn} does not exist.")

    async def _update_tags(self, arn: str, change: Callable[[dict[str, str]], None]) -> None:
        async with self._lock:
            kind, bus, rule = self._tag_owner(arn)
            if kind == "bus":
                meta = self._meta_of(self._bus_info(bus))
                tags = dict(meta.get("tags") or {})
                change(tags)
                meta["tags"] = tags
                await self._set_bus_meta(bus, meta)
            else:
                assert rule is not None
                rmeta = self._need_rule(bus, rule)
                tags = dict(rmeta.get("tags") or {})
                change(tags)
                rmeta["tags"] = tags
                await self._store_rule(bus, rmeta)

    async def tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _str(params, "ResourceARN")
        assert arn is not None
        new = _tags_in(params.get("Tags"))

        def change(tags: dict[str, str]) -> None:
            tags.update(new)
            if len(tags) > TAGS_MAX:
                raise validation(f"A resource can have at most {TAGS_MAX} tags.")

        await self._update_tags(arn, change)
        return {}

    async def untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _str(params, "ResourceARN")
        assert arn is not None
        keys = [str(k) for k in params.get("TagKeys") or []]

        def change(tags: dict[str, str]) -> None:
            for key in keys:
                tags.pop(key, None)

        await self._update_tags(arn, change)
        return {}

    async def list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _str(params, "ResourceARN")
        assert arn is not None
        kind, bus, rule = self._tag_owner(arn)
        if kind == "bus":
            tags = self._meta_of(self._bus_info(bus)).get("tags") or {}
        else:
            assert rule is not None
            tags = self._need_rule(bus, rule).get("tags") or {}
        return {"Tags": _tags_out(tags)}

    # -- connections ------------------------------------------------------------------------------

    def _connection_arn(self, name: str, uid: str) -> str:
        return self._arn(f"connection/{name}/{uid}")

    @staticmethod
    def _check_auth(kind: Any, auth: Any) -> None:
        if kind not in AUTH_TYPES:
            raise validation(f"Parameter AuthorizationType is not valid. Value: {kind}")
        if not isinstance(auth, dict):
            raise validation("Parameter AuthParameters must be specified.")
        need = {
            "BASIC": "BasicAuthParameters",
            "API_KEY": "ApiKeyAuthParameters",
            "OAUTH_CLIENT_CREDENTIALS": "OAuthParameters",
        }[kind]
        if not isinstance(auth.get(need), dict):
            raise validation(f"Parameter(s) {need} must be specified for AuthorizationType {kind}.")

    async def create_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        if not NAME_RE.match(name):
            raise validation(f"Parameter Name is not valid. Value: {name}")
        kind = params.get("AuthorizationType")
        auth = params.get("AuthParameters")
        self._check_auth(kind, auth)
        async with self._lock:
            meta = self._account_meta()
            conns = dict(meta.get("connections") or {})
            if name in conns:
                raise ServiceError(
                    "ResourceAlreadyExistsException", f"Connection {name} already exists."
                )
            if len(conns) >= CONNECTIONS_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                )
            now = self.wall_ms()
            conn: dict[str, Any] = {
                "name": name,
                "uid": str(uuid.uuid4()),
                "kind": kind,
                "auth": auth,
                "description": params.get("Description"),
                "state": "AUTHORIZED",
                "created": now,
                "modified": now,
                "authorized": now,
            }
            conns[name] = conn
            meta["connections"] = conns
            await self._set_account_meta(meta)
        return {
            "ConnectionArn": self._connection_arn(name, conn["uid"]),
            "ConnectionState": "AUTHORIZED",
            "CreationTime": now / 1000,
            "LastModifiedTime": now / 1000,
        }

    def _connection(self, name: str) -> dict[str, Any]:
        conn = (self._account_meta().get("connections") or {}).get(name)
        if conn is None:
            raise not_found(f"Connection '{name}' does not exist.")
        return dict(conn)

    @staticmethod
    def _public_auth(kind: str, auth: dict[str, Any]) -> dict[str, Any]:
        """AuthParameters as Describe shows them: no secrets."""
        out: dict[str, Any] = {}
        if kind == "BASIC":
            out["BasicAuthParameters"] = {
                "Username": auth.get("BasicAuthParameters", {}).get("Username")
            }
        elif kind == "API_KEY":
            out["ApiKeyAuthParameters"] = {
                "ApiKeyName": auth.get("ApiKeyAuthParameters", {}).get("ApiKeyName")
            }
        else:
            oauth = dict(auth.get("OAuthParameters", {}))
            client = dict(oauth.get("ClientParameters") or {})
            client.pop("ClientSecret", None)
            oauth["ClientParameters"] = client
            out["OAuthParameters"] = oauth
        if auth.get("InvocationHttpParameters"):
            out["InvocationHttpParameters"] = auth["InvocationHttpParameters"]
        return out

    def _connection_out(self, conn: dict[str, Any], full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ConnectionArn": self._connection_arn(conn["name"], conn["uid"]),
            "Name": conn["name"],
            "ConnectionState": conn["state"],
            "AuthorizationType": conn["kind"],
            "CreationTime": conn["created"] / 1000,
            "LastModifiedTime": conn["modified"] / 1000,
            "LastAuthorizedTime": conn["authorized"] / 1000,
        }
        if full:
            out["AuthParameters"] = self._public_auth(conn["kind"], conn["auth"])
            out["SecretArn"] = (
                f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:"
                f"events!connection/{conn['name']}/{conn['uid']}"
            )
            if conn.get("description"):
                out["Description"] = conn["description"]
        return out

    async def describe_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        return self._connection_out(self._connection(name), True)

    async def update_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            conns = dict(meta.get("connections") or {})
            conn = conns.get(name)
            if conn is None:
                raise not_found(f"Connection '{name}' does not exist.")
            conn = dict(conn)
            if params.get("AuthorizationType"):
                conn["kind"] = params["AuthorizationType"]
            if params.get("AuthParameters"):
                merged = dict(conn["auth"])
                for key, value in params["AuthParameters"].items():
                    if isinstance(value, dict) and isinstance(merged.get(key), dict):
                        merged[key] = {**merged[key], **value}
                    else:
                        merged[key] = value
                conn["auth"] = merged
            self._check_auth(conn["kind"], conn["auth"])
            if params.get("Description") is not None:
                conn["description"] = params["Description"]
            now = self.wall_ms()
            conn["modified"] = now
            conn["state"] = "AUTHORIZED"
            conn["authorized"] = now
            conns[name] = conn
            meta["connections"] = conns
            await self._set_account_meta(meta)
            self._tokens.pop(name, None)
        return {
            "ConnectionArn": self._connection_arn(name, conn["uid"]),
            "ConnectionState": conn["state"],
            "CreationTime": conn["created"] / 1000,
            "LastModifiedTime": now / 1000,
            "LastAuthorizedTime": now / 1000,
        }

    async def deauthorize_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            conns = dict(meta.get("connections") or {})
            if name not in conns:
                raise not_found(f"Connection '{name}' does not exist.")
            conn = dict(conns[name])
            conn["state"] = "DEAUTHORIZED"
            conn["modified"] = self.wall_ms()
            conns[name] = conn
            meta["connections"] = conns
            await self._set_account_meta(meta)
            self._tokens.pop(name, None)
        out = self._connection_out(conn, False)
        for key in ("Name", "AuthorizationType"):
            out.pop(key, None)
        return out

    async def delete_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            conns = dict(meta.get("connections") or {})
            conn = conns.pop(name, None)
            if conn is None:
                raise not_found(f"Connection '{name}' does not exist.")
            meta["connections"] = conns
            await self._set_account_meta(meta)
            self._tokens.pop(name, None)
        out = self._connection_out(conn, False)
        out["ConnectionState"] = "DELETING"
        for key in ("Name", "AuthorizationType"):
            out.pop(key, None)
        return out

    async def list_connections(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        state = params.get("ConnectionState")
        conns = [
            c
            for n, c in sorted((self._account_meta().get("connections") or {}).items())
            if n.startswith(prefix) and (state is None or c["state"] == state)
        ]
        chunk, nxt = _page(conns, params)
        out: dict[str, Any] = {"Connections": [self._connection_out(c, False) for c in chunk]}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -- API destinations -------------------------------------------------------------------------

    def _destination_arn(self, name: str, uid: str) -> str:
        return self._arn(f"api-destination/{name}/{uid}")

    def _connection_by_arn(self, arn: str) -> dict[str, Any]:
        for conn in (self._account_meta().get("connections") or {}).values():
            if self._connection_arn(conn["name"], conn["uid"]) == arn:
                return dict(conn)
        name = arn.rsplit("/", 2)[-2] if "/" in arn else arn
        raise not_found(f"Connection '{name}' does not exist.")

    async def create_api_destination(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        conn_arn = _str(params, "ConnectionArn")
        endpoint = _str(params, "InvocationEndpoint")
        method = _str(params, "HttpMethod")
        assert name is not None and conn_arn is not None and endpoint is not None
        if not NAME_RE.match(name):
            raise validation(f"Parameter Name is not valid. Value: {name}")
        if method not in HTTP_METHODS:
            raise validation(f"Parameter HttpMethod is not valid. Value: {method}")
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise validation(f"Parameter InvocationEndpoint is not valid. Value: {endpoint}")
        rate = params.get("InvocationRateLimitPerSecond")
        async with self._lock:
            self._connection_by_arn(conn_arn)
            meta = self._account_meta()
            dests = dict(meta.get("destinations") or {})
            if name in dests:
                raise ServiceError(
                    "ResourceAlreadyExistsException", f"An api-destination '{name}' already exists."
                )
            if len(dests) >= API_DESTINATIONS_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                )
            now = self.wall_ms()
            dest: dict[str, Any] = {
                "name": name,
                "uid": str(uuid.uuid4()),
                "connection": conn_arn,
                "endpoint": endpoint,
                "method": method,
                "rate": rate,
                "description": params.get("Description"),
                "created": now,
                "modified": now,
            }
            dests[name] = dest
            meta["destinations"] = dests
            await self._set_account_meta(meta)
        return {
            "ApiDestinationArn": self._destination_arn(name, dest["uid"]),
            "ApiDestinationState": "ACTIVE",
            "CreationTime": now / 1000,
            "LastModifiedTime": now / 1000,
        }

    def _api_destination(self, name: str) -> dict[str, Any]:
        dest = (self._account_meta().get("destinations") or {}).get(name)
        if dest is None:
            raise not_found(f"An api-destination '{name}' does not exist.")
        return dict(dest)

    def _api_destination_out(self, dest: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ApiDestinationArn": self._destination_arn(dest["name"], dest["uid"]),
            "Name": dest["name"],
            "ApiDestinationState": "ACTIVE",
            "ConnectionArn": dest["connection"],
            "InvocationEndpoint": dest["endpoint"],
            "HttpMethod": dest["method"],
            "CreationTime": dest["created"] / 1000,
            "LastModifiedTime": dest["modified"] / 1000,
        }
        if dest.get("rate") is not None:
            out["InvocationRateLimitPerSecond"] = dest["rate"]
        if dest.get("description"):
            out["Description"] = dest["description"]
        return out

    async def describe_api_destination(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        return self._api_destination_out(self._api_destination(name))

    async def update_api_destination(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            dests = dict(meta.get("destinations") or {})
            if name not in dests:
                raise not_found(f"An api-destination '{name}' does not exist.")
            dest = dict(dests[name])
            if params.get("ConnectionArn"):
                self._connection_by_arn(params["ConnectionArn"])
                dest["connection"] = params["ConnectionArn"]
            for key, meta_key in (
                ("InvocationEndpoint", "endpoint"),
                ("HttpMethod", "method"),
                ("InvocationRateLimitPerSecond", "rate"),
                ("Description", "description"),
            ):
                if params.get(key) is not None:
                    dest[meta_key] = params[key]
            dest["modified"] = self.wall_ms()
            dests[name] = dest
            meta["destinations"] = dests
            await self._set_account_meta(meta)
        out = self._api_destination_out(dest)
        return {
            k: out[k]
            for k in (
                "ApiDestinationArn",
                "ApiDestinationState",
                "CreationTime",
                "LastModifiedTime",
            )
        }

    async def delete_api_destination(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "Name")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            dests = dict(meta.get("destinations") or {})
            if dests.pop(name, None) is None:
                raise not_found(f"An api-destination '{name}' does not exist.")
            meta["destinations"] = dests
            await self._set_account_meta(meta)
        return {}

    async def list_api_destinations(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        conn = params.get("ConnectionArn")
        dests = [
            d
            for n, d in sorted((self._account_meta().get("destinations") or {}).items())
            if n.startswith(prefix) and (conn is None or d["connection"] == conn)
        ]
        chunk, nxt = _page(dests, params)
        out: dict[str, Any] = {"ApiDestinations": [self._api_destination_out(d) for d in chunk]}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -- delivery workers (API destinations, SNS topics) ------------------------------------------

    def _start_worker(self, queue: str) -> None:
        if self._nursery is None or queue in self._workers:
            return
        self._workers.add(queue)
        self._nursery.start_soon(self._worker, queue)

    def _delivery_target(self, queue: str) -> tuple[str, str, dict[str, Any]] | None:
        bus, _, rest = queue[len(DELIVERY_PREFIX) :].partition("/")
        rule, _, tid = rest.rpartition("/")
        meta = self._rule_meta(bus, rule)
        if meta is None:
            return None
        for target in meta.get("targets", []):
            if target["Id"] == tid:
                return bus, rule, target
        return None

    async def _worker(self, queue: str) -> None:
        try:
            last_send = 0.0
            while True:
                counts = self.broker.queue_counts(queue, vhost=VHOST)
                if counts is None:
                    return
                got: list[Any] = []
                if counts[0]:
                    got, _ = await self.broker.get(
                        EVENTS_SESSION,
                        queue,
                        vhost=VHOST,
                        max_n=DELIVERY_BATCH,
                        lease_ms=DELIVERY_LEASE_MS,
                    )
                if not got:
                    await self.broker.wait_ready(queue, vhost=VHOST, timeout_s=DELIVERY_IDLE_WAIT_S)
                    continue
                found = self._delivery_target(queue)
                for mid, _r, count, _x, _rk, props, body in got:
                    if found is None:
                        await self._settle(mid, COMPLETE)
                        continue
                    bus, rule, target = found
                    rate = self._rate_of(target)
                    if rate:
                        wait = last_send + 1.0 / rate - trio.current_time()
                        if wait > 0:
                            await trio.sleep(wait)
                        last_send = trio.current_time()
                    await self._deliver_one(bus, rule, target, mid, count, props or {}, body)
        except BrokerError as exc:
            if exc.code != 404:
                log.warning(
                    "events delivery worker stopped", extra={"queue": queue, "error": exc.text}
                )
        finally:
            self._workers.discard(queue)

    def _rate_of(self, target: dict[str, Any]) -> float:
        arn = str(target.get("Arn", ""))
        if ":api-destination/" not in arn:
            return 0.0
        name = arn.split(":api-destination/", 1)[1].split("/", 1)[0]
        dest = (self._account_meta().get("destinations") or {}).get(name)
        rate = dest.get("rate") if dest else None
        return float(rate) if rate else 0.0

    async def _settle(self, mid: int, op: int, delay_ms: int = 0) -> None:
        try:
            await self.broker.settle(EVENTS_SESSION, [mid], op, delay_ms=delay_ms)
        except BrokerError as exc:
            log.warning("events settle failed", extra={"error": exc.text})

    async def _deliver_one(
        self,
        bus: str,
        rule: str,
        target: dict[str, Any],
        mid: int,
        count: int,
        props: dict[str, Any],
        body: bytes,
    ) -> None:
        arn = str(target.get("Arn", ""))
        outcome: tuple[bool, str, str] | None
        try:
            if ":states:" in arn and ":stateMachine:" in arn:
                if self.state_machine_target is None:
                    outcome = (True, "SDK_CLIENT_ERROR", "Step Functions is not served")
                else:
                    try:
                        await self.state_machine_target(arn, body)
                        outcome = None
                    except ServiceError as exc:
                        outcome = (exc.code != "StateMachineDoesNotExist", exc.code, exc.message)
            elif ":sns:" in arn:
                await self._forward_sns(arn, props, body)
                outcome = None
            else:
                outcome = await self._invoke_api(arn, target, body)
        except BrokerError as exc:
            outcome = (True, "SDK_CLIENT_ERROR", exc.text)
        if outcome is None:
            await self._settle(mid, COMPLETE)
            return
        retryable, code, text = outcome
        policy = target.get("RetryPolicy") or {}
        attempts = int(policy.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS))
        max_age_ms = int(policy.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE_S)) * 1000
        sent = (props.get("sqs") or {}).get("t") if isinstance(props.get("sqs"), dict) else None
        age = self.wall_ms() - int(sent) if isinstance(sent, int) else 0
        retries_done = count - 1
        if retryable and retries_done < attempts and age < max_age_ms:
            delay = min(RETRY_BACKOFF_BASE_MS * (2**retries_done), RETRY_BACKOFF_MAX_MS)
            await self._settle(mid, MODIFY, delay)
            return
        await self._dead_letter(bus, rule, target, body, code, text)
        await self._settle(mid, COMPLETE)

    async def _dead_letter(
        self, bus: str, rule: str, target: dict[str, Any], body: bytes, code: str, text: str
    ) -> None:
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not isinstance(dlq, str) or ":sqs:" not in dlq:
            log.warning(
                "events delivery failed, event dropped",
                extra={"rule": rule, "target": target.get("Id"), "error": text[:200]},
            )
            return
        queue = dlq.rsplit(":", 1)[-1]
        now = self.wall_ms()
        attrs = {
            "ERROR_CODE": ["String", code],
            "ERROR_MESSAGE": ["String", text[:ERROR_TEXT_CHARS_MAX] or code],
            "RULE_ARN": ["String", self.rule_arn(bus, rule)],
            "TARGET_ARN": ["String", str(target.get("Arn"))],
        }
        props = {
            "delivery_mode": 2,
            "message_id": str(uuid.uuid4()),
            "timestamp": now // 1000,
            "sqs": {"t": now, "a": attrs},
            "headers": {k: v[1] for k, v in attrs.items()},
        }
        result = await self.broker.publish("", [(queue, props, body)], vhost=VHOST)
        if not result.routed or not result.routed[0]:
            log.warning("events dead-letter queue missing", extra={"queue": queue})

    async def _forward_sns(self, arn: str, props: dict[str, Any], body: bytes) -> None:
        """Publish the event to an SNS topic as its message, with the SNS publish block the
        topic's subscriptions read."""
        topic = arn.rsplit(":", 1)[-1]
        now = self.wall_ms()
        message_id = str(uuid.uuid4())
        text = body.decode("utf-8", "replace")
        fifo = topic.endswith(".fifo")
        event_id = props.get("message_id")
        sns: dict[str, Any] = {
            "id": message_id,
            "topic": arn,
            "subject": None,
            "message": text,
            "messages": None,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1000))
            + f".{now % 1000:03d}Z",
            "attrs": {},
            "seq": f"{now:020d}" if fifo else None,
            "group": "events" if fifo else None,
            "dedup": str(event_id or message_id) if fifo else None,
        }
        out = {
            "delivery_mode": 2,
            "message_id": message_id,
            "timestamp": now // 1000,
            "sns": sns,
            "sqs": {"t": now, "s": self.account_id},
        }
        await self.broker.publish("sns:" + topic, [("", out, body)], vhost=VHOST)

    async def _auth_headers(self, conn: dict[str, Any]) -> list[tuple[str, str]]:
        kind, auth = conn["kind"], conn["auth"]
        if kind == "BASIC":
            basic = auth.get("BasicAuthParameters", {})
            raw = f"{basic.get('Username', '')}:{basic.get('Password', '')}".encode()
            return [("Authorization", "Basic " + base64.b64encode(raw).decode())]
        if kind == "API_KEY":
            key = auth.get("ApiKeyAuthParameters", {})
            return [(str(key.get("ApiKeyName", "")), str(key.get("ApiKeyValue", "")))]
        cached = self._tokens.get(conn["name"])
        if cached is not None and cached[1] > trio.current_time():
            return [("Authorization", "Bearer " + cached[0])]
        token, expires_in = await self._fetch_token(auth.get("OAuthParameters", {}))
        self._tokens[conn["name"]] = (token, trio.current_time() + max(1, expires_in - 10))
        return [("Authorization", "Bearer " + token)]

    @staticmethod
    def _http_params(
        params: dict[str, Any] | None,
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(headers, query, body) of an InvocationHttpParameters / OAuthHttpParameters."""
        params = params or {}

        def pairs(key: str) -> list[tuple[str, str]]:
            return [
                (str(p.get("Key", "")), str(p.get("Value", "")))
                for p in params.get(key) or []
                if isinstance(p, dict)
            ]

        return (
            pairs("HeaderParameters"),
            pairs("QueryStringParameters"),
            pairs("BodyParameters"),
        )

    async def _fetch_token(self, oauth: dict[str, Any]) -> tuple[str, int]:
        client = oauth.get("ClientParameters") or {}
        raw = f"{client.get('ClientID', '')}:{client.get('ClientSecret', '')}".encode()
        headers, query, body_pairs = self._http_params(oauth.get("OAuthHttpParameters"))
        headers = [("Authorization", "Basic " + base64.b64encode(raw).decode()), *headers]
        url = str(oauth.get("AuthorizationEndpoint", ""))
        if query:
            url = _with_query(url, query)
        method = str(oauth.get("HttpMethod") or "POST")
        body = b""
        if method != "GET":
            body = urlencode([("grant_type", "client_credentials"), *body_pairs]).encode()
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        resp = await http_client.request(
            method, url, headers=headers, body=body, response_bytes_max=OAUTH_TOKEN_BYTES_MAX
        )
        if resp.status // 100 != 2:
            raise http_client.HttpError(f"token endpoint answered {resp.status}")
        try:
            doc = json.loads(resp.body)
            token = str(doc["access_token"])
        except (ValueError, KeyError, TypeError):
            raise http_client.HttpError("token endpoint answered no access_token") from None
        expires = doc.get("expires_in", OAUTH_EXPIRY_DEFAULT_S)
        return token, int(expires) if isinstance(expires, int | float) else OAUTH_EXPIRY_DEFAULT_S

    async def _invoke_api(
        self, arn: str, target: dict[str, Any], body: bytes
    ) -> tuple[bool, str, str] | None:
        """POST one event; None on success, else ``(retryable, error code, message)``."""
        name = arn.split(":api-destination/", 1)[1].split("/", 1)[0]
        dest = (self._account_meta().get("destinations") or {}).get(name)
        if dest is None:
            return False, "RESOURCE_NOT_FOUND", f"An api-destination '{name}' does not exist."
        try:
            conn = self._connection_by_arn(dest["connection"])
        except ServiceError as exc:
            return False, "RESOURCE_NOT_FOUND", exc.message
        if conn["state"] == "DEAUTHORIZED":
            return False, "CONNECTION_DEAUTHORIZED", "The connection is deauthorized."
        http = target.get("HttpParameters") or {}
        url = str(dest["endpoint"])
        for value in http.get("PathParameterValues") or []:
            url = url.replace("*", quote(str(value), safe=""), 1)
        c_headers, c_query, _ = self._http_params(conn["auth"].get("InvocationHttpParameters"))
        query = c_query + [
            (str(k), str(v)) for k, v in (http.get("QueryStringParameters") or {}).items()
        ]  # noqa: E501
        if query:
            url = _with_query(url, query)
        headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("User-Agent", "Amazon/EventBridge/ApiDestinations"),
            *c_headers,
            *((str(k), str(v)) for k, v in (http.get("HeaderParameters") or {}).items()),
        ]
        try:
            headers += await self._auth_headers(conn)
            method = str(dest["method"])
            resp = await http_client.request(
                method, url, headers=headers, body=b"" if method in ("GET", "HEAD") else body
            )
        except http_client.HttpError as exc:
            return True, "SDK_CLIENT_ERROR", str(exc)
        if resp.status // 100 == 2:
            return None
        if resp.status == 401:
            self._tokens.pop(conn["name"], None)
        retryable = resp.status in (401, 407, 409, 429) or resp.status >= 500
        text = resp.body[:ERROR_TEXT_CHARS_MAX].decode("utf-8", "replace")
        return retryable, f"{resp.status}", text or f"HTTP {resp.status}"

    # -- schedules --------------------------------------------------------------------------------

    async def _fire(self, key: Hashable, due_ms: int) -> None:
        assert isinstance(key, tuple)
        bus, rule = key
        event = self.build_event(
            source="aws.events",
            detail_type="Scheduled Event",
            detail={},
            resources=[self.rule_arn(bus, rule)],
            time_ms=due_ms,
        )
        try:
            await self.broker.publish(
                BUS_PREFIX + bus, [self.message(event, self.wall_ms())], vhost=VHOST
            )
        except BrokerError as exc:
            log.warning("scheduled event not published", extra={"rule": rule, "error": exc.text})

    # -- archives ---------------------------------------------------------------------------------

    def _archive_arn(self, name: str) -> str:
        return self._arn(f"archive/{name}")

    def _archive_binding(self, archive: dict[str, Any]) -> list[Any]:
        pattern: dict[str, Any] = json.loads(archive["pattern"]) if archive.get("pattern") else {}
        pattern = dict(pattern)
        pattern["replay-name"] = [{"exists": False}]
        args = {
            "x-pattern-dialect": "eventbridge",
            "x-pattern": pattern,
            "x-events-archive": archive["name"],
        }
        return ["queue", ARCHIVE_PREFIX + archive["name"], f"archive/{archive['name']}", args]

    @staticmethod
    def _archive_queue_args(retention_days: int) -> dict[str, Any]:
        return {"x-message-ttl": retention_days * 86_400_000} if retention_days else {}

    async def create_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ArchiveName")
        source = _str(params, "EventSourceArn")
        assert name is not None and source is not None
        if not re.match(r"^[\.\-_A-Za-z0-9]{1,48}$", name):
            raise validation(f"Parameter ArchiveName is not valid. Value: {name}")
        bus = self._bus_of_arn(source)
        pattern = _str(params, "EventPattern", required=False)
        if pattern is not None:
            await self._check_pattern(pattern)
        retention = params.get("RetentionDays") or 0
        if not isinstance(retention, int) or retention < 0:
            raise validation("Parameter RetentionDays is not valid.")
        async with self._lock:
            meta = self._account_meta()
            archives = dict(meta.get("archives") or {})
            if name in archives:
                raise ServiceError(
                    "ResourceAlreadyExistsException", f"Archive {name} already exists."
                )
            if len(archives) >= ARCHIVES_MAX:
                raise ServiceError(
                    "LimitExceededException",
                    "The requested resource exceeds the maximum number allowed.",
                )
            now = self.wall_ms()
            archive = {
                "name": name,
                "bus": bus,
                "pattern": pattern,
                "retention": retention,
                "description": params.get("Description"),
                "created": now,
            }
            await self.broker.declare_queue(
                ARCHIVE_PREFIX + name,
                vhost=VHOST,
                durable=True,
                arguments=self._archive_queue_args(retention),
            )
            await self._bind(bus, self._archive_binding(archive))
            archives[name] = archive
            meta["archives"] = archives
            await self._set_account_meta(meta)
        return {
            "ArchiveArn": self._archive_arn(name),
            "State": "ENABLED",
            "CreationTime": now / 1000,
        }

    def _bus_of_arn(self, arn: str) -> str:
        prefix = self._arn("event-bus/")
        if not arn.startswith(prefix):
            raise validation(f"Parameter EventSourceArn is not valid. Value: {arn}")
        bus = arn[len(prefix) :]
        self._bus_info(bus)
        return bus

    def _archive(self, name: str) -> dict[str, Any]:
        archive = (self._account_meta().get("archives") or {}).get(name)
        if archive is None:
            raise not_found(f"Archive {name} does not exist.")
        return dict(archive)

    def _archive_out(self, archive: dict[str, Any], full: bool) -> dict[str, Any]:
        info = self.broker.queue_info(ARCHIVE_PREFIX + archive["name"], vhost=VHOST) or {}
        count = int(info.get("messages", 0)) + int(info.get("messages_delayed", 0))
        out: dict[str, Any] = {
            "ArchiveName": archive["name"],
            "EventSourceArn": self.bus_arn(archive["bus"]),
            "State": "ENABLED",
            "RetentionDays": archive.get("retention", 0),
            "SizeBytes": int(info.get("bytes", 0)),
            "EventCount": count,
            "CreationTime": archive["created"] / 1000,
        }
        if full:
            out["ArchiveArn"] = self._archive_arn(archive["name"])
            if archive.get("pattern"):
                out["EventPattern"] = archive["pattern"]
            if archive.get("description"):
                out["Description"] = archive["description"]
        return out

    async def describe_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ArchiveName")
        assert name is not None
        return self._archive_out(self._archive(name), True)

    async def update_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ArchiveName")
        assert name is not None
        pattern = _str(params, "EventPattern", required=False)
        if pattern is not None:
            await self._check_pattern(pattern)
        async with self._lock:
            meta = self._account_meta()
            archives = dict(meta.get("archives") or {})
            if name not in archives:
                raise not_found(f"Archive {name} does not exist.")
            archive = dict(archives[name])
            old_binding = self._archive_binding(archive)
            if pattern is not None:
                archive["pattern"] = pattern
            if params.get("Description") is not None:
                archive["description"] = params["Description"]
            if params.get("RetentionDays") is not None:
                archive["retention"] = int(params["RetentionDays"])
                await self.broker.set_queue_arguments(
                    ARCHIVE_PREFIX + name,
                    self._archive_queue_args(archive["retention"]),
                    vhost=VHOST,
                )
            new_binding = self._archive_binding(archive)
            if self._binding_key(new_binding) != self._binding_key(old_binding):
                await self._bind(archive["bus"], new_binding)
                await self._unbind(archive["bus"], old_binding)
            archives[name] = archive
            meta["archives"] = archives
            await self._set_account_meta(meta)
        return {
            "ArchiveArn": self._archive_arn(name),
            "State": "ENABLED",
            "CreationTime": archive["created"] / 1000,
        }

    async def delete_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ArchiveName")
        assert name is not None
        async with self._lock:
            meta = self._account_meta()
            archives = dict(meta.get("archives") or {})
            archive = archives.pop(name, None)
            if archive is None:
                raise not_found(f"Archive {name} does not exist.")
            await self._unbind(archive["bus"], self._archive_binding(archive))
            try:
                await self.broker.delete_queue(ARCHIVE_PREFIX + name, vhost=VHOST)
            except BrokerError as exc:
                if exc.code != 404:
                    raise
            meta["archives"] = archives
            await self._set_account_meta(meta)
        return {}

    async def list_archives(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        source = params.get("EventSourceArn")
        state = params.get("State")
        archives = [
            a
            for n, a in sorted((self._account_meta().get("archives") or {}).items())
            if n.startswith(prefix)
            and (source is None or self.bus_arn(a["bus"]) == source)
            and (state is None or state == "ENABLED")
        ]
        chunk, nxt = _page(archives, params)
        out: dict[str, Any] = {"Archives": [self._archive_out(a, False) for a in chunk]}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -- replays ----------------------------------------------------------------------------------

    def _replay_arn(self, name: str) -> str:
        return self._arn(f"replay/{name}")

    async def _save_replay(self, record: dict[str, Any]) -> None:
        meta = self._account_meta()
        replays = dict(meta.get("replays") or {})
        replays[record["name"]] = record
        if len(replays) > REPLAYS_KEPT_MAX:
            done = sorted(
                (r for r in replays.values() if r["state"] not in ("STARTING", "RUNNING")),
                key=lambda r: r["started"],
            )
            for old in done[: len(replays) - REPLAYS_KEPT_MAX]:
                replays.pop(old["name"], None)
        meta["replays"] = replays
        await self._set_account_meta(meta)

    async def _fail_interrupted_replays(self) -> None:
        replays = self._account_meta().get("replays") or {}
        for record in replays.values():
            if record["state"] in ("STARTING", "RUNNING", "CANCELLING"):
                record = dict(record)
                record["state"] = "FAILED"
                record["reason"] = "The replay was interrupted by a restart of the node."
                record["ended"] = self.wall_ms()
                await self._save_replay(record)

    async def start_replay(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ReplayName")
        source = _str(params, "EventSourceArn")
        assert name is not None and source is not None
        if not re.match(r"^[\.\-_A-Za-z0-9]{1,64}$", name):
            raise validation(f"Parameter ReplayName is not valid. Value: {name}")
        start = _ts_ms(params.get("EventStartTime"))
        end = _ts_ms(params.get("EventEndTime"))
        destination = params.get("Destination") or {}
        if start is None or end is None:
            raise validation("Parameter EventStartTime and EventEndTime must be specified.")
        if start >= end:
            raise validation(
                "Parameter EventEndTime is not valid. Reason: EventStartTime must be before "
                "EventEndTime."
            )
        if end > self.wall_ms():
            raise validation(
                "Parameter EventEndTime is not valid. Reason: EventEndTime cannot be in the future."
            )  # noqa: E501
        if not source.startswith(self._arn("archive/")):
            raise validation(f"Parameter EventSourceArn is not valid. Value: {source}")
        archive = self._archive(source[len(self._arn("archive/")) :])
        dest_bus = self._bus_of_arn(str(destination.get("Arn", "")))
        if dest_bus != archive["bus"]:
            raise validation(
                "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not "
                "permitted."
            )
        filters = [str(a) for a in destination.get("FilterArns") or []]
        for arn in filters:
            rule = arn.rsplit("/", 1)[-1]
            if not arn.startswith(self._arn("rule/")) or self._rule_meta(dest_bus, rule) is None:
                raise validation(f"Parameter FilterArns is not valid. Value: {arn}")
        if self._nursery is None:
            raise ServiceError("InternalException", "Replays are not running.", status=500)
        async with self._lock:
            replays = self._account_meta().get("replays") or {}
            if name in replays:
                raise ServiceError(
                    "ResourceAlreadyExistsException", f"Replay {name} already exists."
                )
            now = self.wall_ms()
            record = {
                "name": name,
                "archive": archive["name"],
                "bus": dest_bus,
                "filters": filters,
                "start": start,
                "end": end,
                "description": params.get("Description"),
                "state": "STARTING",
                "started": now,
            }
            await self._save_replay(record)
        replay = Replay(name)
        self._replays[name] = replay
        self._nursery.start_soon(self._run_replay, replay, record)
        return {
            "ReplayArn": self._replay_arn(name),
            "State": "STARTING",
            "ReplayStartTime": now / 1000,
        }

    async def _run_replay(self, replay: Replay, record: dict[str, Any]) -> None:
        record = dict(record)
        state, reason = "COMPLETED", None
        exchange = BUS_PREFIX + record["bus"]
        temp = None
        held: list[int] = []
        try:
            with replay.cancel:
                record["state"] = "RUNNING"
                async with self._lock:
                    await self._save_replay(record)
                if record["filters"]:
                    temp = REPLAY_PREFIX + record["name"]
                    await self._replay_exchange(temp, record)
                    exchange = temp
                await self._replay_events(replay, record, exchange, held)
            if replay.cancel.cancelled_caught:
                state = "CANCELLED"
        except (BrokerError, ServiceError) as exc:
            state, reason = "FAILED", str(exc)[:ERROR_TEXT_CHARS_MAX]
        finally:
            with trio.CancelScope(shield=True):
                for i in range(0, len(held), REPLAY_BATCH):
                    try:
                        await self.broker.settle(
                            EVENTS_SESSION, held[i : i + REPLAY_BATCH], MODIFY, delay_ms=0
                        )
                    except BrokerError as exc:
                        log.warning("replay could not return events", extra={"error": exc.text})
                if temp is not None:
                    try:
                        await self.broker.delete_exchange(temp, vhost=VHOST)
                    except BrokerError:
                        pass
                record["state"] = state
                if reason:
                    record["reason"] = reason
                record["ended"] = self.wall_ms()
                if replay.last_replayed_ms is not None:
                    record["last"] = replay.last_replayed_ms
                try:
                    async with self._lock:
                        await self._save_replay(record)
                except BrokerError as exc:
                    log.warning("replay state not saved", extra={"error": exc.text})
                self._replays.pop(record["name"], None)

    async def _replay_exchange(self, name: str, record: dict[str, Any]) -> None:
        """A durable rules exchange with copies of the bindings of the FilterArns rules."""
        await self.broker.declare_exchange(name, "x-rules", vhost=VHOST, durable=True)
        for arn in record["filters"]:
            meta = self._rule_meta(record["bus"], arn.rsplit("/", 1)[-1])
            for spec in ((meta or {}).get("bindings") or {}).values():
                kind, dest, rk, args = spec
                try:
                    await self.broker.bind(
                        name, dest, rk, vhost=VHOST, dest_kind=kind, arguments=args
                    )
                except BrokerError as exc:
                    if exc.code != 404:
                        raise

    async def _replay_events(
        self, replay: Replay, record: dict[str, Any], exchange: str, held: list[int]
    ) -> None:
        queue = ARCHIVE_PREFIX + record["archive"]
        while len(held) < REPLAY_EVENTS_MAX:
            got, _ = await self.broker.get(
                EVENTS_SESSION,
                queue,
                vhost=VHOST,
                max_n=min(REPLAY_BATCH, REPLAY_EVENTS_MAX - len(held)),
                lease_ms=REPLAY_LEASE_MS,
            )
            if not got:
                return
            out = []
            now = self.wall_ms()
            for mid, _r, _c, _x, _rk, props, body in got:
                held.append(mid)
                try:
                    event = json.loads(body)
                except ValueError:
                    continue
                when = _parse_iso(event.get("time")) if isinstance(event, dict) else None
                if when is None or not record["start"] <= when < record["end"]:
                    continue
                event["replay-name"] = record["name"]
                eb = (props or {}).get("eb")
                ingested = eb.get("ingested") if isinstance(eb, dict) else None
                msg_props = {
                    "delivery_mode": 2,
                    "message_id": event.get("id"),
                    "timestamp": now // 1000,
                    "eb": {"t": now, "ingested": ingested or iso(now)},
                }
                out.append(
                    (
                        "",
                        msg_props,
                        json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(),
                    )  # noqa: E501
                )
                replay.last_replayed_ms = when
            if out:
                await self.broker.publish(exchange, out, vhost=VHOST)

    def _replay_out(self, record: dict[str, Any], full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ReplayName": record["name"],
            "EventSourceArn": self._archive_arn(record["archive"]),
            "State": record["state"],
            "EventStartTime": record["start"] / 1000,
            "EventEndTime": record["end"] / 1000,
            "ReplayStartTime": record["started"] / 1000,
        }
        live = self._replays.get(record["name"])
        last = live.last_replayed_ms if live is not None else record.get("last")
        if last is not None:
            out["EventLastReplayedTime"] = last / 1000
        if record.get("ended") is not None:
            out["ReplayEndTime"] = record["ended"] / 1000
        if record.get("reason"):
            out["StateReason"] = record["reason"]
        if full:
            out["ReplayArn"] = self._replay_arn(record["name"])
            dest: dict[str, Any] = {"Arn": self.bus_arn(record["bus"])}
            if record.get("filters"):
                dest["FilterArns"] = record["filters"]
            out["Destination"] = dest
            if record.get("description"):
                out["Description"] = record["description"]
        return out

    def _replay(self, name: str) -> dict[str, Any]:
        record = (self._account_meta().get("replays") or {}).get(name)
        if record is None:
            raise not_found(f"Replay {name} does not exist.")
        return dict(record)

    async def describe_replay(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ReplayName")
        assert name is not None
        return self._replay_out(self._replay(name), True)

    async def cancel_replay(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _str(params, "ReplayName")
        assert name is not None
        record = self._replay(name)
        live = self._replays.get(name)
        if live is None or record["state"] not in ("STARTING", "RUNNING"):
            raise ServiceError(
                "IllegalStatusException",
                f"Replay {name} is not in a valid state for this operation.",  # noqa: E501
            )
        live.cancel.cancel()
        return {"ReplayArn": self._replay_arn(name), "State": "CANCELLING"}

    async def list_replays(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        state = params.get("State")
        source = params.get("EventSourceArn")
        records = [
            r
            for n, r in sorted((self._account_meta().get("replays") or {}).items())
            if n.startswith(prefix)
            and (state is None or r["state"] == state)
            and (source is None or self._archive_arn(r["archive"]) == source)
        ]
        chunk, nxt = _page(records, params)
        out: dict[str, Any] = {"Replays": [self._replay_out(r, False) for r in chunk]}
        if nxt:
            out["NextToken"] = nxt
        return out


def _with_query(url: str, pairs: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
