"""AWS Step Functions (boto3's ``stepfunctions`` client) over the core API.

Mapping (DESIGN.md section 3): everything durable lives in the replicated log as core entities,
one small durable internal fanout exchange per object, its metadata in the argument ``x-sfn``:

* state machine ``<name>``  -> ``sfn-machine:<name>`` (definition, role, type, tags, revision);
* activity ``<name>``       -> ``sfn-activity:<name>``;
* Standard execution        -> ``sfn-exec:<machine>:<name>``: the definition it runs, its input,
  start time, seed, status and, once it ended, output or error. Declared by StartExecution and
  written again when the execution ends (or is redriven).
* the execution's **journal**: one binding per input of the interpreter
  (``broker/adapters/asl/interpreter.py``: a task result, a timer that came due, a heartbeat,
  an activity worker taking its task, StopExecution, RedriveExecution) from the execution's
  exchange to the shared internal exchange ``sfn-journal``, routing key the input's sequence
  number, the input in the argument ``x-sfn-j``. One small command per input, whatever the
  history's length; everything the interpreter does between inputs (Pass, Choice, data flow,
  whole Map iterations of Pass states) is recomputed from them. The interpreter is pure and
  deterministic (time and randomness come from its inputs and seed), so replaying the journal
  rebuilds the execution exactly, its history, its timers (absolute due times) and the task
  tokens callers hold included.

Who runs what: the execution driver (timers, task calls, activity hand-out, heartbeat and task
timeouts) runs through ``Broker.run_while_leading``, so a cluster runs it once, on the leader.
When a node starts leading it loads every RUNNING Standard execution from the log, replays its
journal and carries on: timers that came due meanwhile fire at once, task calls that were in
flight are made again (at-least-once, as AWS), activity tasks go back to their queue. An
input is journaled (committed) before the interpreter acts on it. StartExecution on a node
that does not lead only writes the execution; the leader finds it within
``RECONCILE_INTERVAL_S``.

Express executions run in memory on the leader, with no journal; StartSyncExecution waits for
them. Standard executions' status changes go to the default event bus as AWS's "Step Functions
Execution Status Change" events (source ``aws.states``); an EventBridge rule whose target is a
state machine starts an execution through ``start_from_event``.

Task resources: ``arn:aws:states:::sqs:sendMessage``, ``sns:publish``, ``events:putEvents``
(optimized, also ``.waitForTaskToken``); ``arn:aws:states:::aws-sdk:{sqs,sns,eventbridge}:*``
called on polymq's own adapters in process, their errors named ``Sqs.XxxException`` /
``Sns.`` / ``EventBridge.``; ``arn:aws:states:::http:invoke``; activities; Lambda functions
(bare ARN or ``arn:aws:states:::lambda:invoke``) mapped to HTTP endpoints by the
``sfn_lambda_endpoints`` setting (the payload is POSTed as JSON, the JSON reply is the result).
"""

from __future__ import annotations

import base64
import datetime as dt
import heapq
import json
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.adapters import http_client
from broker.adapters.asl.interpreter import (
    PAYLOAD_CHARS_MAX,
    Execution,
    Task,
    dumps,
)
from broker.adapters.asl.validate import (
    invalid_definition_message,
    parse_definition,
    variable_references,
)
from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError
from broker.adapters.store import ExchangeStore
from broker.api import Broker, BrokerError

log = logging.getLogger("polymq.stepfunctions")

VHOST = "/"
META = "x-sfn"
JOURNAL_ARG = "x-sfn-j"
MACHINE_PREFIX = "sfn-machine:"
ACTIVITY_PREFIX = "sfn-activity:"
EXEC_PREFIX = "sfn-exec:"
JOURNAL_EXCHANGE = "sfn-journal"

# limits (AWS's where it has one)
NAME_CHARS_MAX = 80
TAGS_MAX = 50
LIST_RESULTS_MAX = 1000
LIST_RESULTS_DEFAULT = 100
HISTORY_RESULTS_MAX = 1000
HISTORY_RESULTS_DEFAULT = 100
INPUT_CHARS_MAX = PAYLOAD_CHARS_MAX
TASK_OUTPUT_CHARS_MAX = PAYLOAD_CHARS_MAX
ERROR_CHARS_MAX = 256
CAUSE_CHARS_MAX = 32_768
TOKEN_CHARS_MAX = 1024
#: finished executions kept per state machine (the oldest are deleted past it)
EXECUTIONS_KEPT_MAX = 1000
#: journal inputs one execution may have
JOURNAL_INPUTS_MAX = 50_000
#: long poll of GetActivityTask (AWS: 60 s)
ACTIVITY_POLL_S = 60.0
#: tasks waiting for a worker, per activity
ACTIVITY_BACKLOG_MAX = 10_000
#: StartSyncExecution waits at most this long (AWS: an Express execution lasts 5 minutes)
SYNC_EXECUTION_S_MAX = 300.0
EXPRESS_DURATION_S_MAX = 300
#: Express executions running at once on the node
EXPRESS_RUNNING_MAX = 10_000
#: a redrive is allowed this long after the execution started (AWS: 14 days)
REDRIVE_WINDOW_MS = 14 * 86_400_000
RECONCILE_INTERVAL_S = 1.0
TIMER_SLEEP_S_MAX = 1.0
#: histories of ended executions rebuilt by replay and kept for paging
HISTORY_CACHE_MAX = 64
HTTP_TASK_TIMEOUT_S = 60.0
HTTP_TASK_RESPONSE_BYTES_MAX = 256 * 1024

NAME_BAD_RE = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
STATUS_EVENT_DETAIL_TYPE = "Step Functions Execution Status Change"
FINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _secs(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _err(code: str, message: str) -> ServiceError:
    return ServiceError(code, message, status=400)


def invalid_arn(arn: Any, why: str = "Invalid ARN prefix") -> ServiceError:
    return _err("InvalidArn", f"Invalid Arn: '{why}: {arn}'")


def _check_name(name: Any, what: str = "name") -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= NAME_CHARS_MAX
        or NAME_BAD_RE.search(name)
    ):
        raise _err("InvalidName", f"Invalid Name: '{name}'")
    return name


def _json_input(text: Any, code: str = "InvalidExecutionInput") -> Any:
    if text is None:
        return {}
    if not isinstance(text, str):
        raise _err(code, "Invalid State Machine Execution Input: the input must be a string")
    if len(text) > INPUT_CHARS_MAX:
        raise _err(code, f"The input is longer than {INPUT_CHARS_MAX} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _err(code, f"Invalid State Machine Execution Input: '{text[:64]}'") from None


def _tags_in(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in raw or []:
        key = tag.get("key") if isinstance(tag, dict) else None
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise ServiceError("ValidationException", "Tag keys must be 1 to 128 characters")
        out[key] = str(tag.get("value") or "")
    return out


def _tags_out(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _page(
    items: list[Any], params: dict[str, Any], *, default: int, most: int
) -> tuple[list[Any], str | None]:
    limit = params.get("maxResults") or default
    if not isinstance(limit, int) or limit < 0 or limit > most:
        raise ServiceError(
            "ValidationException",
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value less than or equal to {most}",
        )
    token = params.get("nextToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except ValueError:
            raise _err("InvalidToken", f"Invalid Token: '{token}'") from None
        if start < 0:
            raise _err("InvalidToken", f"Invalid Token: '{token}'")
    chunk = items[start : start + limit]
    nxt = None
    if start + limit < len(items):
        nxt = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return chunk, nxt


def _listing(key: str, items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    """A List* reply: a page of ``items`` under ``key``, and the token of the next page."""
    chunk, nxt = _page(items, params, default=LIST_RESULTS_DEFAULT, most=LIST_RESULTS_MAX)
    out: dict[str, Any] = {key: chunk}
    if nxt:
        out["nextToken"] = nxt
    return out


def _plain(value: Any) -> Any:
    """An adapter's reply as JSON values (timestamps as ISO text, blobs as base64)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class TaskFailure(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass
class _Run:
    """An execution the driver runs on this node."""

    arn: str
    key: str  # holder exchange ("" for Express)
    machine_arn: str
    meta: dict[str, Any]
    exe: Execution
    express: bool
    seq: int = 0
    lock: trio.Lock = field(default_factory=trio.Lock)
    armed: set[int] = field(default_factory=set)
    done: trio.Event = field(default_factory=trio.Event)
    finishing: bool = False


class StepFunctionsAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="UnsupportedOperation",
        internal="InternalFailure",
        busy="ServiceUnavailable",
    )

    def __init__(
        self,
        broker: Broker,
        *,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        sqs: Any = None,
        sns: Any = None,
        events: Any = None,
        lambda_endpoints: dict[str, str] | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.broker = broker
        self.store = ExchangeStore(broker, META, vhost=VHOST)
        self.account_id = account_id
        self.region = region
        self.sqs = sqs
        self.sns = sns
        self.events = events
        self.lambda_endpoints = dict(lambda_endpoints or {})
        self.wall_ms = wall_ms or _now_ms
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._live: dict[str, _Run] = {}
        self._heap: list[tuple[int, str, int]] = []
        self._wake = trio.Event()
        self._activity_tasks: dict[str, deque[tuple[str, int]]] = {}
        self._activity_ready: dict[str, trio.Event] = {}
        self._histories: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        #: inputs fed by the driver (benchmarks and tests read it)
        self.inputs_fed = 0
        self._actions = {
            "CreateStateMachine": self.create_state_machine,
            "UpdateStateMachine": self.update_state_machine,
            "DeleteStateMachine": self.delete_state_machine,
            "DescribeStateMachine": self.describe_state_machine,
            "DescribeStateMachineForExecution": self.describe_state_machine_for_execution,
            "ListStateMachines": self.list_state_machines,
            "StartExecution": self.start_execution,
            "StartSyncExecution": self.start_sync_execution,
            "StopExecution": self.stop_execution,
            "DescribeExecution": self.describe_execution,
            "ListExecutions": self.list_executions,
            "GetExecutionHistory": self.get_execution_history,
            "RedriveExecution": self.redrive_execution,
            "SendTaskSuccess": self.send_task_success,
            "SendTaskFailure": self.send_task_failure,
            "SendTaskHeartbeat": self.send_task_heartbeat,
            "CreateActivity": self.create_activity,
            "DeleteActivity": self.delete_activity,
            "DescribeActivity": self.describe_activity,
            "ListActivities": self.list_activities,
            "GetActivityTask": self.get_activity_task,
            "ValidateStateMachineDefinition": self.validate_state_machine_definition,
            "TestState": self.test_state,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; the execution driver runs while this node leads."""
        if self.events is not None:
            self.events.state_machine_target = self.start_from_event
        task_status.started()
        await self.broker.run_while_leading(self._drive)

    async def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._dispatch(action, params)

    # -- storage ----------------------------------------------------------------------------------

    def _journal(self, key: str) -> list[dict[str, Any]]:
        entries = []
        for b in self.broker.bindings_from(key, vhost=VHOST):
            entry = b["arguments"].get(JOURNAL_ARG)
            if isinstance(entry, dict):
                entries.append((b["routing_key"], entry))
        entries.sort(key=lambda item: item[0])
        return [dict(e) for _, e in entries]

    async def _ensure_journal_exchange(self) -> None:
        if self.broker.exchange_info(JOURNAL_EXCHANGE, vhost=VHOST) is None:
            try:
                await self.broker.declare_exchange(
                    JOURNAL_EXCHANGE, "fanout", vhost=VHOST, durable=True, internal=True
                )
            except BrokerError as exc:
                if exc.code != 406:
                    raise

    # -- ARNs -------------------------------------------------------------------------------------

    def _arn(self, resource: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:{resource}"

    def machine_arn(self, name: str) -> str:
        return self._arn(f"stateMachine:{name}")

    def activity_arn(self, name: str) -> str:
        return self._arn(f"activity:{name}")

    def execution_arn(self, machine: str, name: str) -> str:
        return self._arn(f"execution:{machine}:{name}")

    def _parse_arn(self, arn: Any, kinds: tuple[str, ...]) -> tuple[str, list[str]]:
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise invalid_arn(arn)
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "states" or parts[5] not in kinds:
            raise invalid_arn(arn, "Resource type not valid in this context")
        if parts[3] != self.region or parts[4] != self.account_id:
            raise invalid_arn(arn, "Resource not in this account and region")
        return parts[5], parts[6:]

    def _machine_name(self, arn: Any) -> str:
        _, rest = self._parse_arn(arn, ("stateMachine",))
        if len(rest) != 1:
            raise invalid_arn(arn, "Version and alias ARNs are not supported by polymq")
        return rest[0]

    def _exec_key(self, arn: Any) -> tuple[str, str, str]:
        """``(machine, name, holder)`` of a Standard execution ARN."""
        kind, rest = self._parse_arn(arn, ("execution", "express"))
        if kind == "express":
            raise _err(
                "ExecutionDoesNotExist",
                f"Execution Does Not Exist: '{arn}' (Express executions are not recorded)",
            )
        if len(rest) != 2:
            raise invalid_arn(arn, "Resource type not valid in this context")
        return rest[0], rest[1], f"{EXEC_PREFIX}{rest[0]}:{rest[1]}"

    def _need_machine(self, arn: Any) -> tuple[str, dict[str, Any]]:
        name = self._machine_name(arn)
        meta = self.store.get(MACHINE_PREFIX + name)
        if meta is None:
            raise _err("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return name, meta

    def _need_execution(self, arn: Any) -> tuple[str, dict[str, Any]]:
        _machine, _name, key = self._exec_key(arn)
        meta = self.store.get(key)
        if meta is None:
            raise _err("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return key, meta

    # -- state machines ---------------------------------------------------------------------------

    def _check_definition(self, text: Any) -> dict[str, Any]:
        if not isinstance(text, str):
            raise _err("InvalidDefinition", "Invalid State Machine Definition: 'definition'")
        doc, diagnostics = parse_definition(text)
        if diagnostics or doc is None:
            raise _err("InvalidDefinition", invalid_definition_message(diagnostics))
        return doc

    def _check_role(self, role: Any) -> str:
        if not isinstance(role, str) or not role.startswith("arn:") or ":iam:" not in role:
            raise invalid_arn(role)
        return role

    async def create_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _check_name(params.get("name"))
        self._check_definition(params.get("definition"))
        role = self._check_role(params.get("roleArn"))
        kind = params.get("type") or "STANDARD"
        tags = _tags_in(params.get("tags"))
        if len(tags) > TAGS_MAX:
            raise _err("TooManyTags", f"A resource can have at most {TAGS_MAX} tags")
        async with self._lock:
            existing = self.store.get(MACHINE_PREFIX + name)
            if existing is not None:
                if (
                    existing["definition"] == params["definition"]
                    and existing["roleArn"] == role
                    and existing["type"] == kind
                ):
                    return {
                        "stateMachineArn": self.machine_arn(name),
                        "creationDate": _secs(existing["created"]),
                    }
                raise _err(
                    "StateMachineAlreadyExists",
                    f"State Machine Already Exists: '{self.machine_arn(name)}'",
                )
            now = self.wall_ms()
            meta = {
                "name": name,
                "definition": params["definition"],
                "roleArn": role,
                "type": kind,
                "created": now,
                "updated": now,
                "revision": str(uuid.uuid4()),
                "tags": tags,
                "logging": params.get("loggingConfiguration") or {"level": "OFF"},
                "tracing": params.get("tracingConfiguration") or {"enabled": False},
            }
            await self.store.declare(MACHINE_PREFIX + name, meta)
        return {"stateMachineArn": self.machine_arn(name), "creationDate": _secs(now)}

    async def update_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("stateMachineArn")
        self._machine_name(arn)
        if not any(
            params.get(k) is not None
            for k in ("definition", "roleArn", "loggingConfiguration", "tracingConfiguration")
        ):
            raise _err(
                "MissingRequiredParameter",
                "Either the definition, the roleArn, the loggingConfiguration or the "
                "tracingConfiguration must be specified",
            )
        if params.get("definition") is not None:
            self._check_definition(params["definition"])
        if params.get("roleArn") is not None:
            self._check_role(params["roleArn"])
        async with self._lock:
            name, meta = self._need_machine(arn)
            if params.get("definition") is not None:
                meta["definition"] = params["definition"]
            if params.get("roleArn") is not None:
                meta["roleArn"] = params["roleArn"]
            if params.get("loggingConfiguration") is not None:
                meta["logging"] = params["loggingConfiguration"]
            if params.get("tracingConfiguration") is not None:
                meta["tracing"] = params["tracingConfiguration"]
            meta["updated"] = self.wall_ms()
            meta["revision"] = str(uuid.uuid4())
            await self.store.set(MACHINE_PREFIX + name, meta)
        return {"updateDate": _secs(meta["updated"]), "revisionId": meta["revision"]}

    async def delete_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._machine_name(params.get("stateMachineArn"))
        async with self._lock:
            await self.store.drop(MACHINE_PREFIX + name)
            # ended executions go with their machine; running ones end first (AWS lets them)
            prefix = f"{EXEC_PREFIX}{name}:"
            for key, meta in self.store.items(prefix):
                if meta.get("status") != "RUNNING":
                    await self.store.drop(prefix + key)
        return {}

    def _machine_out(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(meta["definition"])
        out = {
            "stateMachineArn": self.machine_arn(name),
            "name": name,
            "status": "ACTIVE",
            "definition": meta["definition"],
            "roleArn": meta["roleArn"],
            "type": meta["type"],
            "creationDate": _secs(meta["created"]),
            "loggingConfiguration": meta.get("logging") or {"level": "OFF"},
            "tracingConfiguration": meta.get("tracing") or {"enabled": False},
            "revisionId": meta.get("revision"),
        }
        refs = variable_references(doc)
        if refs:
            out["variableReferences"] = refs
        if doc.get("Comment"):
            out["description"] = str(doc["Comment"])[:256]
        return out

    async def describe_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        name, meta = self._need_machine(params.get("stateMachineArn"))
        return self._machine_out(name, meta)

    async def describe_state_machine_for_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        _key, meta = self._need_execution(params.get("executionArn"))
        machine = str(meta["machine"])
        return {
            "stateMachineArn": self.machine_arn(machine),
            "name": machine,
            "definition": meta["definition"],
            "roleArn": meta.get("roleArn", ""),
            "updateDate": _secs(meta["start"]),
            "revisionId": meta.get("revision"),
            "loggingConfiguration": {"level": "OFF"},
            "tracingConfiguration": {"enabled": False},
        }

    async def list_state_machines(self, params: dict[str, Any]) -> dict[str, Any]:
        items = [
            {
                "stateMachineArn": self.machine_arn(meta["name"]),
                "name": meta["name"],
                "type": meta["type"],
                "creationDate": _secs(meta["created"]),
            }
            for meta in self.store.records(MACHINE_PREFIX)
        ]
        return _listing("stateMachines", items, params)

    # -- executions -------------------------------------------------------------------------------

    def _token_prefix(self, arn: str) -> str:
        return base64.urlsafe_b64encode(arn.encode()).decode().rstrip("=") + "."

    def _parse_token(self, token: Any) -> tuple[str, int]:
        if not isinstance(token, str) or not 1 <= len(token) <= TOKEN_CHARS_MAX:
            raise _err("InvalidToken", "Invalid Token: the task token is not valid")
        head, _, rest = token.partition(".")
        task_text, _, _nonce = rest.partition(".")
        try:
            arn = base64.urlsafe_b64decode((head + "=" * (-len(head) % 4)).encode()).decode()
            task_id = int(task_text)
        except (ValueError, UnicodeDecodeError):
            raise _err("InvalidToken", "Invalid Token: the task token is not valid") from None
        if not arn.startswith("arn:aws:states:"):
            raise _err("InvalidToken", "Invalid Token: the task token is not valid")
        return arn, task_id

    def _new_execution(self, meta: dict[str, Any], arn: str) -> Execution:
        definition = json.loads(meta["definition"])
        return Execution(
            definition,
            execution_arn=arn,
            name=meta["name"],
            state_machine_arn=self.machine_arn(meta["machine"]),
            state_machine_name=meta["machine"],
            role_arn=meta.get("roleArn", ""),
            seed=meta["seed"],
            token_prefix=self._token_prefix(arn),
        )

    async def start_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        machine, mmeta = self._need_machine(params.get("stateMachineArn"))
        name = params.get("name") or str(uuid.uuid4())
        _check_name(name)
        text = params.get("input")
        value = _json_input(text)
        if mmeta["type"] == "EXPRESS":
            run = await self._start_express(machine, mmeta, name, value)
            return {"executionArn": run.arn, "startDate": _secs(run.exe.start_ms)}
        arn = self.execution_arn(machine, name)
        key = f"{EXEC_PREFIX}{machine}:{name}"
        async with self._lock:
            existing = self.store.get(key)
            if existing is not None:
                if existing.get("status") == "RUNNING" and existing.get("input") == (
                    text if text is not None else "{}"
                ):
                    return {"executionArn": arn, "startDate": _secs(existing["start"])}
                raise _err("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
            now = self.wall_ms()
            meta = {
                "arn": arn,
                "machine": machine,
                "name": name,
                "definition": mmeta["definition"],
                "roleArn": mmeta["roleArn"],
                "revision": mmeta.get("revision"),
                "input": text if text is not None else "{}",
                "start": now,
                "status": "RUNNING",
                "seed": str(uuid.uuid4()),
                "redriveCount": 0,
            }
            await self._ensure_journal_exchange()
            await self.store.declare(key, meta)
            await self._prune(machine)
        await self._status_event(meta)
        if self._nursery is not None and arn not in self._live:
            await self._resume(key, meta)
        return {"executionArn": arn, "startDate": _secs(now)}

    async def _prune(self, machine: str) -> None:
        prefix = f"{EXEC_PREFIX}{machine}:"
        ended = [
            (meta.get("stop") or 0, key)
            for key, meta in self.store.items(prefix)
            if meta.get("status") in FINAL
        ]
        if len(ended) >= EXECUTIONS_KEPT_MAX:
            ended.sort()
            for _stop, key in ended[: len(ended) - EXECUTIONS_KEPT_MAX + 1]:
                await self.store.drop(prefix + key)

    async def _start_express(
        self, machine: str, mmeta: dict[str, Any], name: str, value: Any
    ) -> _Run:
        if self._nursery is None:
            raise ServiceError(
                "ServiceUnavailable",
                "Express executions run on the cluster's leader; this node is not leading",
                status=503,
                sender_fault=False,
            )
        if sum(1 for r in self._live.values() if r.express) >= EXPRESS_RUNNING_MAX:
            raise _err("ExecutionLimitExceeded", "Too many Express executions are running")
        arn = self._arn(f"express:{machine}:{name}:{uuid.uuid4()}")
        meta = {
            "arn": arn,
            "machine": machine,
            "name": name,
            "definition": mmeta["definition"],
            "roleArn": mmeta["roleArn"],
            "seed": str(uuid.uuid4()),
            "start": self.wall_ms(),
        }
        exe = self._new_execution(meta, arn)
        run = _Run(arn, "", self.machine_arn(machine), meta, exe, express=True)
        self._live[arn] = run
        await self._input(run, {"k": "start", "t": meta["start"], "input": value}, journal=False)
        if not run.done.is_set():
            timer_id = -1
            heapq.heappush(
                self._heap, (meta["start"] + EXPRESS_DURATION_S_MAX * 1000, arn, timer_id)
            )
            self._wake.set()
        return run

    async def start_sync_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        machine, mmeta = self._need_machine(params.get("stateMachineArn"))
        if mmeta["type"] != "EXPRESS":
            raise _err(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine",
            )
        name = params.get("name") or str(uuid.uuid4())
        _check_name(name)
        text = params.get("input")
        value = _json_input(text)
        run = await self._start_express(machine, mmeta, name, value)
        with trio.move_on_after(SYNC_EXECUTION_S_MAX):
            await run.done.wait()
        exe = run.exe
        status = exe.status if exe.status in FINAL else "TIMED_OUT"
        out: dict[str, Any] = {
            "executionArn": run.arn,
            "stateMachineArn": run.machine_arn,
            "name": name,
            "startDate": _secs(exe.start_ms),
            "stopDate": _secs(exe.stop_ms or self.wall_ms()),
            "status": "FAILED" if status == "ABORTED" else status,
            "input": text if text is not None else "{}",
            "inputDetails": {"included": True},
            "billingDetails": {
                "billedMemoryUsedInMB": 64,
                "billedDurationInMilliseconds": max(
                    100, ((exe.stop_ms or exe.start_ms) - exe.start_ms + 99) // 100 * 100
                ),
            },
        }
        if params.get("includedData") == "METADATA_ONLY":
            out.pop("input")
            out["inputDetails"] = {"included": False}
        if exe.status == "SUCCEEDED":
            out["output"] = dumps(exe.output)
            out["outputDetails"] = {"included": params.get("includedData") != "METADATA_ONLY"}
            if params.get("includedData") == "METADATA_ONLY":
                out.pop("output")
        else:
            out["error"] = exe.error or "States.Timeout"
            out["cause"] = exe.cause or ""
        return out

    def _exec_out(self, meta: dict[str, Any], *, metadata_only: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executionArn": meta["arn"],
            "stateMachineArn": self.machine_arn(meta["machine"]),
            "name": meta["name"],
            "status": meta["status"],
            "startDate": _secs(meta["start"]),
            "redriveCount": meta.get("redriveCount", 0),
        }
        if not metadata_only:
            out["input"] = meta["input"]
        out["inputDetails"] = {"included": not metadata_only}
        if meta.get("stop") is not None and meta["status"] != "RUNNING":
            out["stopDate"] = _secs(meta["stop"])
        if meta["status"] == "SUCCEEDED":
            if not metadata_only:
                out["output"] = meta.get("output")
            out["outputDetails"] = {"included": not metadata_only}
        if meta.get("error") is not None:
            out["error"] = meta["error"]
        if meta.get("cause") is not None:
            out["cause"] = meta["cause"]
        if meta.get("redriveDate") is not None:
            out["redriveDate"] = _secs(meta["redriveDate"])
        if meta["status"] in ("FAILED", "ABORTED", "TIMED_OUT"):
            ok, why = self._redrivable(meta)
            out["redriveStatus"] = "REDRIVABLE" if ok else "NOT_REDRIVABLE"
            if not ok:
                out["redriveStatusReason"] = why
        else:
            out["redriveStatus"] = "NOT_REDRIVABLE"
            out["redriveStatusReason"] = (
                "Execution is RUNNING and cannot be redriven"
                if meta["status"] == "RUNNING"
                else "Execution is SUCCEEDED and cannot be redriven"
            )
        return out

    async def describe_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        _key, meta = self._need_execution(params.get("executionArn"))
        return self._exec_out(meta, metadata_only=params.get("includedData") == "METADATA_ONLY")

    async def list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mapRunArn"):
            raise _err("ResourceNotFound", "Map runs (distributed Map) are not supported by polymq")
        arn = params.get("stateMachineArn")
        if arn is None:
            raise ServiceError(
                "ValidationException", "Must provide a StateMachine ARN or MapRun ARN"
            )
        machine, mmeta = self._need_machine(arn)
        if mmeta["type"] == "EXPRESS":
            raise _err(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine",
            )
        status = params.get("statusFilter")
        redrive = params.get("redriveFilter")
        rows = []
        for meta in self.store.records(f"{EXEC_PREFIX}{machine}:"):
            if status and meta["status"] != status:
                continue
            redriven = meta.get("redriveCount", 0) > 0
            if redrive == "REDRIVEN" and not redriven or redrive == "NOT_REDRIVEN" and redriven:
                continue
            rows.append(meta)
        rows.sort(key=lambda m: (m["start"], m["name"]), reverse=True)
        items = []
        for meta in rows:
            item = {
                "executionArn": meta["arn"],
                "stateMachineArn": self.machine_arn(machine),
                "name": meta["name"],
                "status": meta["status"],
                "startDate": _secs(meta["start"]),
                "redriveCount": meta.get("redriveCount", 0),
            }
            if meta.get("stop") is not None and meta["status"] != "RUNNING":
                item["stopDate"] = _secs(meta["stop"])
            if meta.get("redriveDate") is not None:
                item["redriveDate"] = _secs(meta["redriveDate"])
            items.append(item)
        return _listing("executions", items, params)

    def _replay(self, key: str, meta: dict[str, Any]) -> Execution:
        exe = self._new_execution(meta, meta["arn"])
        exe.feed({"k": "start", "t": meta["start"], "input": json.loads(meta["input"])})
        for inp in self._journal(key):
            exe.feed(inp)
        return exe

    def _history(self, key: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
        run = self._live.get(meta["arn"])
        if run is not None:
            return run.exe.events
        stamp = f"{meta['arn']}#{meta['status']}#{meta.get('redriveCount', 0)}"
        cached = self._histories.get(stamp)
        if cached is not None:
            self._histories.move_to_end(stamp)
            return cached
        events = self._replay(key, meta).events
        self._histories[stamp] = events
        while len(self._histories) > HISTORY_CACHE_MAX:
            self._histories.popitem(last=False)
        return events

    async def get_execution_history(self, params: dict[str, Any]) -> dict[str, Any]:
        key, meta = self._need_execution(params.get("executionArn"))
        events = list(self._history(key, meta))
        if params.get("reverseOrder"):
            events.reverse()
        chunk, nxt = _page(
            events, params, default=HISTORY_RESULTS_DEFAULT, most=HISTORY_RESULTS_MAX
        )
        include = params.get("includeExecutionData", True) is not False
        out_events = []
        for event in chunk:
            item = dict(event)
            item["timestamp"] = event["timestamp"] / 1000.0
            if not include:
                for k, v in list(item.items()):
                    if isinstance(v, dict):
                        item[k] = {
                            dk: dv
                            for dk, dv in v.items()
                            if dk
                            not in (
                                "input",
                                "output",
                                "parameters",
                                "inputDetails",
                                "outputDetails",
                            )
                        }
            out_events.append(item)
        out: dict[str, Any] = {"events": out_events}
        if nxt:
            out["nextToken"] = nxt
        return out

    async def stop_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("executionArn")
        key, meta = self._need_execution(arn)
        error = params.get("error")
        cause = params.get("cause")
        if error is not None and len(error) > ERROR_CHARS_MAX:
            raise ServiceError("ValidationException", f"error is longer than {ERROR_CHARS_MAX}")
        if cause is not None and len(cause) > CAUSE_CHARS_MAX:
            raise ServiceError("ValidationException", f"cause is longer than {CAUSE_CHARS_MAX}")
        if meta["status"] != "RUNNING":
            return {"stopDate": _secs(meta.get("stop") or self.wall_ms())}
        run = self._live_run(str(arn))
        now = self.wall_ms()
        await self._input(run, {"k": "stop", "t": now, "error": error, "cause": cause})
        await run.done.wait()
        return {"stopDate": _secs(run.exe.stop_ms or now)}

    def _live_run(self, arn: str) -> _Run:
        run = self._live.get(arn)
        if run is None:
            raise ServiceError(
                "ServiceUnavailable",
                "The execution is run by the cluster's leader; send this request to it",
                status=503,
                sender_fault=False,
            )
        return run

    def _redrivable(self, meta: dict[str, Any]) -> tuple[bool, str]:
        if meta["status"] not in ("FAILED", "ABORTED", "TIMED_OUT"):
            return False, f"Execution is {meta['status']} and cannot be redriven"
        if self.wall_ms() - int(meta["start"]) > REDRIVE_WINDOW_MS:
            return False, "Execution started more than 14 days ago and cannot be redriven"
        if not meta.get("redrivable", True):
            return False, "Execution failed before it entered a state and cannot be redriven"
        return True, ""

    async def redrive_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("executionArn")
        key, meta = self._need_execution(arn)
        ok, why = self._redrivable(meta)
        if not ok:
            raise _err("ExecutionNotRedrivable", f"Execution Not Redrivable: {why}")
        if self._nursery is None:
            self._live_run(str(arn))
        async with self._lock:
            meta = self.store.get(key) or meta
            if meta["status"] == "RUNNING" or meta["arn"] in self._live:
                raise _err("ExecutionNotRedrivable", "Execution Not Redrivable: it is running")
            exe = self._replay(key, meta)
            run = _Run(meta["arn"], key, self.machine_arn(meta["machine"]), meta, exe, False)
            run.seq = exe.inputs_fed - 1
            self._live[run.arn] = run
        now = self.wall_ms()
        meta = dict(meta)
        meta.update(
            status="RUNNING",
            redriveCount=int(meta.get("redriveCount", 0)) + 1,
            redriveDate=now,
            stop=None,
            output=None,
            error=None,
            cause=None,
        )
        run.meta = meta
        await self.store.set(key, meta)
        await self._input(run, {"k": "redrive", "t": now})
        await self._status_event(meta)
        return {"redriveDate": _secs(now)}

    # -- callbacks --------------------------------------------------------------------------------

    async def _task_for_token(self, token: Any) -> tuple[_Run, Task]:
        arn, task_id = self._parse_token(token)
        run = self._live.get(arn)
        if run is None:
            try:
                _key, meta = self._need_execution(arn)
            except ServiceError:
                raise _err(
                    "TaskDoesNotExist", "Task Does Not Exist: the task token names no task"
                ) from None
            if meta["status"] == "RUNNING":
                self._live_run(arn)
            raise _err("TaskTimedOut", "Task Timed Out: the task has ended")
        task = run.exe.tasks.get(task_id)
        if task is None or task.token != token:
            if task_id < run.exe._ids and task is None:
                raise _err("TaskTimedOut", "Task Timed Out: the task has ended")
            raise _err("TaskDoesNotExist", "Task Does Not Exist: the task token names no task")
        return run, task

    async def send_task_success(self, params: dict[str, Any]) -> dict[str, Any]:
        output = params.get("output")
        if not isinstance(output, str) or len(output) > TASK_OUTPUT_CHARS_MAX:
            raise _err("InvalidOutput", "Invalid Output: the output must be at most 256 KiB")
        try:
            value = json.loads(output)
        except (ValueError, RecursionError):
            raise _err("InvalidOutput", f"Invalid Output: '{output[:64]}'") from None
        run, task = await self._task_for_token(params.get("taskToken"))
        await self._input(run, {"k": "ok", "t": self.wall_ms(), "task": task.id, "output": value})
        return {}

    async def send_task_failure(self, params: dict[str, Any]) -> dict[str, Any]:
        error = params.get("error") or ""
        cause = params.get("cause") or ""
        if len(error) > ERROR_CHARS_MAX or len(cause) > CAUSE_CHARS_MAX:
            raise ServiceError("ValidationException", "error or cause is too long")
        run, task = await self._task_for_token(params.get("taskToken"))
        await self._input(
            run,
            {"k": "fail", "t": self.wall_ms(), "task": task.id, "error": error, "cause": cause},
        )
        return {}

    async def send_task_heartbeat(self, params: dict[str, Any]) -> dict[str, Any]:
        run, task = await self._task_for_token(params.get("taskToken"))
        if task.heartbeat_s is not None:
            await self._input(run, {"k": "hb", "t": self.wall_ms(), "task": task.id})
        return {}

    # -- activities -------------------------------------------------------------------------------

    def _activity_name(self, arn: Any) -> str:
        _, rest = self._parse_arn(arn, ("activity",))
        if len(rest) != 1:
            raise invalid_arn(arn, "Resource type not valid in this context")
        return rest[0]

    async def create_activity(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _check_name(params.get("name"))
        tags = _tags_in(params.get("tags"))
        if len(tags) > TAGS_MAX:
            raise _err("TooManyTags", f"A resource can have at most {TAGS_MAX} tags")
        async with self._lock:
            existing = self.store.get(ACTIVITY_PREFIX + name)
            if existing is not None:
                return {
                    "activityArn": self.activity_arn(name),
                    "creationDate": _secs(existing["created"]),
                }
            now = self.wall_ms()
            await self.store.declare(
                ACTIVITY_PREFIX + name, {"name": name, "created": now, "tags": tags}
            )
        return {"activityArn": self.activity_arn(name), "creationDate": _secs(now)}

    async def delete_activity(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._activity_name(params.get("activityArn"))
        await self.store.drop(ACTIVITY_PREFIX + name)
        return {}

    async def describe_activity(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("activityArn")
        name = self._activity_name(arn)
        meta = self.store.get(ACTIVITY_PREFIX + name)
        if meta is None:
            raise _err("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        return {
            "activityArn": self.activity_arn(name),
            "name": name,
            "creationDate": _secs(meta["created"]),
        }

    async def list_activities(self, params: dict[str, Any]) -> dict[str, Any]:
        items = [
            {
                "activityArn": self.activity_arn(m["name"]),
                "name": m["name"],
                "creationDate": _secs(m["created"]),
            }
            for m in self.store.records(ACTIVITY_PREFIX)
        ]
        return _listing("activities", items, params)

    async def get_activity_task(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("activityArn")
        name = self._activity_name(arn)
        if self.store.get(ACTIVITY_PREFIX + name) is None:
            raise _err("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        if self._nursery is None:
            raise ServiceError(
                "ServiceUnavailable",
                "Activity tasks are handed out by the cluster's leader; poll it",
                status=503,
                sender_fault=False,
            )
        worker = params.get("workerName")
        with trio.move_on_after(ACTIVITY_POLL_S):
            while True:
                queue = self._activity_tasks.get(str(arn))
                while queue:
                    run_arn, task_id = queue.popleft()
                    run = self._live.get(run_arn)
                    task = run.exe.tasks.get(task_id) if run is not None else None
                    if run is None or task is None or task.started:
                        continue
                    await self._input(
                        run,
                        {"k": "started", "t": self.wall_ms(), "task": task_id, "worker": worker},
                    )
                    if run.exe.tasks.get(task_id) is task:
                        return {"taskToken": task.token, "input": dumps(task.payload)}
                ready = self._activity_ready.setdefault(str(arn), trio.Event())
                await ready.wait()
        return {}

    def _offer_activity(self, run: _Run, task: Task) -> None:
        queue = self._activity_tasks.setdefault(task.resource, deque())
        if len(queue) >= ACTIVITY_BACKLOG_MAX:
            queue.popleft()
        queue.append((run.arn, task.id))
        ready = self._activity_ready.pop(task.resource, None)
        if ready is not None:
            ready.set()

    # -- validation and TestState -----------------------------------------------------------------

    async def validate_state_machine_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("definition")
        if not isinstance(text, str):
            raise ServiceError("ValidationException", "definition must be a string")
        limit = params.get("maxResults") or 100
        _doc, diagnostics = parse_definition(text)
        severity = params.get("severity") or "ERROR"
        shown = [d for d in diagnostics if severity == "WARNING" or d.severity == "ERROR"]
        out = {
            "result": "FAIL" if any(d.severity == "ERROR" for d in diagnostics) else "OK",
            "diagnostics": [
                {
                    "severity": d.severity,
                    "code": d.code,
                    "message": d.message,
                    "location": d.location,
                }
                for d in shown[:limit]
            ],
            "truncated": len(shown) > limit,
        }
        return out

    async def test_state(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("definition")
        try:
            doc = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise _err(
                "InvalidDefinition",
                "Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: "
                "the definition is not a JSON object at /'",
            )
        if "States" in doc:
            name = params.get("stateName") or doc.get("StartAt")
            states = doc.get("States") or {}
            if name not in states:
                raise ServiceError(
                    "ValidationException", f"stateName '{name}' is not a state of the definition"
                )
            state = states[name]
            ql = doc.get("QueryLanguage")
        else:
            name = params.get("stateName") or "TestState"
            state = doc
            ql = None
        if not isinstance(state, dict):
            raise _err(
                "InvalidDefinition",
                "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: "
                "The value must be an object at /'",
            )
        targets = {state.get("Next"), state.get("Default")}
        targets |= {r.get("Next") for r in state.get("Choices") or [] if isinstance(r, dict)}
        targets |= {c.get("Next") for c in state.get("Catch") or [] if isinstance(c, dict)}
        wrapper: dict[str, Any] = {"StartAt": name, "States": {name: state}}
        if ql:
            wrapper["QueryLanguage"] = ql
        for target in targets:
            if isinstance(target, str) and target != name:
                wrapper["States"][target] = {"Type": "Succeed"}
        _doc, diagnostics = parse_definition(json.dumps(wrapper))
        diagnostics = [d for d in diagnostics if d.code != "UNREACHABLE_STATE"]
        if diagnostics:
            raise _err("InvalidDefinition", invalid_definition_message(diagnostics))
        value = _json_input(params.get("input"))
        variables = _json_input(params.get("variables")) if params.get("variables") else {}
        context = _json_input(params.get("context")) if params.get("context") else {}
        arn = self._arn("execution:TestStateMachine:test")
        exe = Execution(
            wrapper,
            execution_arn=arn,
            name="test",
            state_machine_arn=self.machine_arn("TestStateMachine"),
            state_machine_name="TestStateMachine",
            role_arn=params.get("roleArn") or "",
            seed=str(uuid.uuid4()),
            token_prefix=self._token_prefix(arn),
            single_state=name,
            variables=variables if isinstance(variables, dict) else {},
            context=context if isinstance(context, dict) else {},
        )
        now = self.wall_ms()
        exe.feed({"k": "start", "t": now, "input": value})
        mock = params.get("mock") or {}
        rounds = 0
        while exe.status == "RUNNING" and exe.dispatch and rounds < 1000:
            rounds += 1
            task_id = exe.dispatch.pop(0)
            task = exe.tasks.get(task_id)
            if task is None:
                continue
            if mock.get("result") is not None:
                result = _json_input(mock["result"], "ValidationException")
                exe.feed({"k": "ok", "t": self.wall_ms(), "task": task_id, "output": result})
                continue
            if mock.get("errorOutput") is not None:
                eo = mock["errorOutput"]
                exe.feed(
                    {
                        "k": "fail",
                        "t": self.wall_ms(),
                        "task": task_id,
                        "error": eo.get("error", ""),
                        "cause": eo.get("cause", ""),
                    }
                )
                continue
            if task.callback or task.kind == "activity":
                raise ServiceError(
                    "ValidationException",
                    "TestState cannot wait for a task token or an activity worker; give a mock",
                )
            try:
                result = await self._invoke(task)
                exe.feed({"k": "ok", "t": self.wall_ms(), "task": task_id, "output": result})
            except TaskFailure as failure:
                exe.feed(
                    {
                        "k": "fail",
                        "t": self.wall_ms(),
                        "task": task_id,
                        "error": failure.error,
                        "cause": failure.cause,
                    }
                )
        level = params.get("inspectionLevel") or "INFO"
        status = exe.test_status or ("SUCCEEDED" if exe.status == "SUCCEEDED" else "FAILED")
        out: dict[str, Any] = {"status": status}
        if status in ("SUCCEEDED", "CAUGHT_ERROR"):
            out["output"] = dumps(exe.output)
            if exe.next_state is not None:
                out["nextState"] = exe.next_state
        if status in ("FAILED", "RETRIABLE", "CAUGHT_ERROR"):
            out["error"] = exe.error
            out["cause"] = exe.cause
        inspection = dict(exe.inspection)
        if level == "INFO":
            inspection = {
                k: v for k, v in inspection.items() if k in ("input", "variables", "errorDetails")
            }
        if inspection:
            out["inspectionData"] = inspection
        return out

    # -- tags -------------------------------------------------------------------------------------

    def _tag_holder(self, arn: Any) -> str:
        kind, rest = self._parse_arn(arn, ("stateMachine", "activity"))
        if len(rest) != 1:
            raise invalid_arn(arn, "Resource type not valid in this context")
        prefix = MACHINE_PREFIX if kind == "stateMachine" else ACTIVITY_PREFIX
        holder = prefix + rest[0]
        if self.store.get(holder) is None:
            raise _err("ResourceNotFound", f"Resource not found: '{arn}'")
        return holder

    async def tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        holder = self._tag_holder(params.get("resourceArn"))
        tags = _tags_in(params.get("tags"))
        async with self._lock:
            meta = self.store.get(holder) or {}
            merged = {**(meta.get("tags") or {}), **tags}
            if len(merged) > TAGS_MAX:
                raise _err("TooManyTags", f"A resource can have at most {TAGS_MAX} tags")
            meta["tags"] = merged
            await self.store.set(holder, meta)
        return {}

    async def untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        holder = self._tag_holder(params.get("resourceArn"))
        async with self._lock:
            meta = self.store.get(holder) or {}
            tags = dict(meta.get("tags") or {})
            for key in params.get("tagKeys") or []:
                tags.pop(key, None)
            meta["tags"] = tags
            await self.store.set(holder, meta)
        return {}

    async def list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        holder = self._tag_holder(params.get("resourceArn"))
        meta = self.store.get(holder) or {}
        return {"tags": _tags_out(meta.get("tags") or {})}

    # -- EventBridge ------------------------------------------------------------------------------

    async def start_from_event(self, arn: str, body: bytes) -> None:
        """An EventBridge rule's state machine target: start an execution with the (already
        transformed) event as its input. Raises ``ServiceError`` to have the delivery retried."""
        await self.start_execution({"stateMachineArn": arn, "input": body.decode("utf-8")})

    async def _status_event(self, meta: dict[str, Any]) -> None:
        events = self.events
        if events is None:
            return
        detail = {
            "executionArn": meta["arn"],
            "stateMachineArn": self.machine_arn(meta["machine"]),
            "name": meta["name"],
            "status": meta["status"],
            "startDate": meta["start"],
            "stopDate": meta.get("stop") if meta["status"] != "RUNNING" else None,
            "input": meta["input"],
            "inputDetails": {"included": True},
            "output": meta.get("output") if meta["status"] == "SUCCEEDED" else None,
            "outputDetails": {"included": True} if meta["status"] == "SUCCEEDED" else None,
            "error": meta.get("error"),
            "cause": meta.get("cause"),
            "redriveCount": meta.get("redriveCount", 0),
            "redriveDate": meta.get("redriveDate"),
            "redriveStatus": "NOT_REDRIVABLE"
            if meta["status"] in ("RUNNING", "SUCCEEDED")
            else "REDRIVABLE",
            "redriveStatusReason": (
                f"Execution is {meta['status']} and cannot be redriven"
                if meta["status"] in ("RUNNING", "SUCCEEDED")
                else ""
            ),
        }
        now = self.wall_ms()
        event = events.build_event(
            source="aws.states",
            detail_type=STATUS_EVENT_DETAIL_TYPE,
            detail=detail,
            resources=[meta["arn"]],
            time_ms=now,
        )
        try:
            await self.broker.publish("events:default", [events.message(event, now)], vhost=VHOST)
        except BrokerError as exc:
            log.warning("execution status event not published", extra={"error": exc.text})

    # -- the driver -------------------------------------------------------------------------------

    async def _drive(self) -> None:
        """Runs while this node leads: resume every RUNNING Standard execution, then fire
        timers and pick up executions started through other nodes."""
        self._live = {}
        self._heap = []
        self._activity_tasks = {}
        self._activity_ready = {}
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._ensure_journal_exchange()
                await self._reconcile()
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._reconcile_loop)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for run in self._live.values():
                run.done.set()
            self._live = {}
            for ready in self._activity_ready.values():
                ready.set()

    async def _reconcile(self) -> None:
        for key, meta in self.store.items(EXEC_PREFIX):
            if meta.get("status") == "RUNNING" and meta["arn"] not in self._live:
                await self._resume(EXEC_PREFIX + key, meta)

    async def _reconcile_loop(self) -> None:
        while True:
            await trio.sleep(RECONCILE_INTERVAL_S)
            await self._reconcile()

    async def _resume(self, key: str, meta: dict[str, Any]) -> None:
        """Rebuild a Standard execution from its record and journal, and carry on."""
        if meta["arn"] in self._live:
            return
        exe = self._new_execution(meta, meta["arn"])
        run = _Run(meta["arn"], key, self.machine_arn(meta["machine"]), meta, exe, express=False)
        self._live[run.arn] = run
        async with run.lock:
            exe.feed({"k": "start", "t": meta["start"], "input": json.loads(meta["input"])})
            journal = self._journal(key)
            for inp in journal:
                exe.feed(inp)
            run.seq = len(journal)
            # every task that was in flight is called again (at-least-once)
            exe.dispatch = sorted(exe.tasks)
            await self._after(run)

    async def _input(self, run: _Run, inp: dict[str, Any], *, journal: bool = True) -> None:
        async with run.lock:
            exe = run.exe
            if run.finishing and inp["k"] != "redrive":
                return
            if (
                inp["k"] not in ("start", "stop", "redrive", "timer")
                and int(inp["task"]) not in exe.tasks
            ):
                return
            if inp["k"] == "timer" and int(inp["timer"]) not in exe.timers:
                return
            if journal and not run.express and inp["k"] != "start":
                if run.seq >= JOURNAL_INPUTS_MAX:
                    inp = {
                        "k": "stop",
                        "t": inp["t"],
                        "error": "States.Runtime",
                        "cause": f"The execution has more than {JOURNAL_INPUTS_MAX} inputs",
                    }
                await self.broker.bind(
                    run.key,
                    JOURNAL_EXCHANGE,
                    f"{run.seq:09d}",
                    vhost=VHOST,
                    dest_kind="exchange",
                    arguments={JOURNAL_ARG: inp},
                )
                run.seq += 1
            exe.feed(inp)
            self.inputs_fed += 1
            await self._after(run)

    async def _after(self, run: _Run) -> None:
        """Act on what the execution asks for after an input (the run's lock is held)."""
        exe = run.exe
        nursery = self._nursery
        if exe.status == "RUNNING" and nursery is not None:
            for task_id in exe.dispatch:
                task = exe.tasks.get(task_id)
                if task is None:
                    continue
                if task.kind == "activity":
                    self._offer_activity(run, task)
                else:
                    nursery.start_soon(self._perform, run, task)
            exe.dispatch.clear()
            pushed = False
            for timer in exe.timers.values():
                if timer.id not in run.armed:
                    run.armed.add(timer.id)
                    heapq.heappush(self._heap, (timer.due_ms, run.arn, timer.id))
                    pushed = True
            if pushed:
                self._wake.set()
            return
        if exe.status in FINAL and not run.finishing:
            run.finishing = True
            if not run.express:
                meta = dict(run.meta)
                meta.update(
                    status=exe.status,
                    stop=exe.stop_ms,
                    output=dumps(exe.output) if exe.status == "SUCCEEDED" else None,
                    error=exe.error,
                    cause=exe.cause,
                    redrivable=exe.redrivable,
                )
                meta = {k: v for k, v in meta.items() if v is not None}
                run.meta = meta
                try:
                    if self.broker.exchange_info(run.key, vhost=VHOST) is not None:
                        await self.store.set(run.key, meta)
                except BrokerError as exc:
                    log.warning("execution end not recorded", extra={"error": exc.text})
                    run.done.set()
                    return
                await self._status_event(meta)
                if self.store.get(MACHINE_PREFIX + str(meta["machine"])) is None:
                    await self.store.drop(run.key)
            self._live.pop(run.arn, None)
            run.done.set()

    async def _timer_loop(self) -> None:
        while True:
            now = self.wall_ms()
            while self._heap and self._heap[0][0] <= now:
                _due, arn, timer_id = heapq.heappop(self._heap)
                run = self._live.get(arn)
                if run is None:
                    continue
                if timer_id == -1:  # an Express execution ran out of time
                    if run.exe.status == "RUNNING":
                        assert self._nursery is not None
                        self._nursery.start_soon(
                            self._input,
                            run,
                            {
                                "k": "stop",
                                "t": now,
                                "error": "States.Timeout",
                                "cause": "The Express execution ran for more than 5 minutes",
                            },
                        )
                    continue
                if timer_id in run.exe.timers:
                    assert self._nursery is not None
                    self._nursery.start_soon(
                        self._input, run, {"k": "timer", "t": now, "timer": timer_id}
                    )
            wait_s = TIMER_SLEEP_S_MAX
            if self._heap:
                wait_s = min(wait_s, max(0.0, (self._heap[0][0] - now) / 1000.0))
            self._wake = trio.Event()
            with trio.move_on_after(wait_s):
                await self._wake.wait()

    # -- task calls -------------------------------------------------------------------------------

    async def _perform(self, run: _Run, task: Task) -> None:
        try:
            result = await self._invoke(task)
        except TaskFailure as failure:
            await self._input(
                run,
                {
                    "k": "fail",
                    "t": self.wall_ms(),
                    "task": task.id,
                    "error": failure.error[:ERROR_CHARS_MAX],
                    "cause": failure.cause[:CAUSE_CHARS_MAX],
                },
            )
            return
        except BrokerError as exc:
            if exc.code in (503, 506):
                return  # no quorum: the next leader calls the task again
            await self._input(
                run,
                {
                    "k": "fail",
                    "t": self.wall_ms(),
                    "task": task.id,
                    "error": "States.TaskFailed",
                    "cause": exc.text,
                },
            )
            return
        kind = "sub" if task.callback else "ok"
        await self._input(run, {"k": kind, "t": self.wall_ms(), "task": task.id, "output": result})

    async def _invoke(self, task: Task) -> Any:
        if task.kind == "lambda":
            return await self._lambda(task.resource, task.payload, wrapped=False)
        service, action = task.resource_type, task.action
        base = (
            action[: -len(".waitForTaskToken")] if action.endswith(".waitForTaskToken") else action
        )
        if base.endswith(".sync") or base.endswith(".sync:2"):
            raise TaskFailure(
                "States.Runtime", f"The .sync integration pattern is not supported for {service}"
            )
        payload = task.payload if isinstance(task.payload, dict) else {}
        if service == "sqs" and base == "sendMessage":
            params = dict(payload)
            if "MessageBody" in params and not isinstance(params["MessageBody"], str):
                params["MessageBody"] = dumps(params["MessageBody"])
            return await self._sqs("SendMessage", params, "SQS")
        if service == "sns" and base == "publish":
            params = dict(payload)
            if "Message" in params and not isinstance(params["Message"], str):
                params["Message"] = dumps(params["Message"])
            return await self._sns("Publish", params, "SNS")
        if service == "events" and base == "putEvents":
            entries = []
            for entry in payload.get("Entries") or []:
                entry = dict(entry)
                if "Detail" in entry and not isinstance(entry["Detail"], str):
                    entry["Detail"] = dumps(entry["Detail"])
                entries.append(entry)
            result = await self._events("PutEvents", {"Entries": entries}, "EventBridge")
            if result.get("FailedEntryCount"):
                raise TaskFailure("EventBridge.FailedEntry", dumps(result))
            return result
        if service == "lambda" and base == "invoke":
            return await self._lambda(
                str(payload.get("FunctionName", "")), payload.get("Payload"), wrapped=True
            )
        if service == "http" and base == "invoke":
            return await self._http(payload)
        if service.startswith("aws-sdk:"):
            sdk = service[len("aws-sdk:") :]
            op = base[:1].upper() + base[1:]
            if sdk == "sqs":
                return await self._sqs(op, payload, "Sqs")
            if sdk == "sns":
                return await self._sns(op, payload, "Sns")
            if sdk == "eventbridge":
                return await self._events(op, payload, "EventBridge")
        raise TaskFailure(
            "States.Runtime", f"The resource '{task.resource}' is not supported by polymq"
        )

    @staticmethod
    def _sdk_error(prefix: str, exc: ServiceError) -> TaskFailure:
        code = exc.code if exc.code.endswith("Exception") else exc.code + "Exception"
        return TaskFailure(f"{prefix}.{code}", exc.message)

    async def _sqs(self, op: str, params: dict[str, Any], prefix: str) -> Any:
        from broker.adapters.sqs import Context

        return await self._call(self.sqs, "SQS", prefix, op, params, Context(region=self.region))

    async def _sns(self, op: str, params: dict[str, Any], prefix: str) -> Any:
        from broker.adapters.sns import Context

        return await self._call(self.sns, "SNS", prefix, op, params, Context(region=self.region))

    async def _events(self, op: str, params: dict[str, Any], prefix: str) -> Any:
        return await self._call(self.events, "EventBridge", prefix, op, params)

    async def _call(self, adapter: Any, label: str, prefix: str, op: str, *args: Any) -> Any:
        """``op`` of another service's adapter (None: not served here); its refusals become
        ``<prefix>.<Code>Exception`` task failures."""
        if adapter is None:
            raise TaskFailure(f"{prefix}.ServiceUnavailableException", f"{label} is not served")
        try:
            return _plain(await adapter.handle(op, *args))
        except ServiceError as exc:
            raise self._sdk_error(prefix, exc) from None

    @staticmethod
    async def _request(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes, failure: str
    ) -> tuple[http_client.HttpResponse, str]:
        """A task's HTTP request and its body as text; a request that fails is task failure
        ``failure``."""
        try:
            resp = await http_client.request(
                method,
                url,
                headers=headers,
                body=body,
                timeout_s=HTTP_TASK_TIMEOUT_S,
                response_bytes_max=HTTP_TASK_RESPONSE_BYTES_MAX,
            )
        except http_client.HttpError as exc:
            raise TaskFailure(failure, str(exc)) from None
        return resp, resp.body.decode("utf-8", "replace")

    def _lambda_url(self, function: str) -> str | None:
        if function in self.lambda_endpoints:
            return self.lambda_endpoints[function]
        for arn, url in self.lambda_endpoints.items():
            name = arn.split(":function:", 1)[1]
            if function in (name, name.split(":")[0]) or arn.startswith(function + ":"):
                return url
        return None

    async def _lambda(self, function: str, payload: Any, *, wrapped: bool) -> Any:
        url = self._lambda_url(function)
        if url is None:
            raise TaskFailure(
                "Lambda.ResourceNotFoundException",
                f"Function not found: {function} (no sfn_lambda_endpoints entry names it)",
            )
        body = dumps(payload if payload is not None else {}).encode()
        resp, text = await self._request(
            "POST", url, [("Content-Type", "application/json")], body, "Lambda.ServiceException"
        )
        try:
            value = json.loads(text) if text.strip() else None
        except ValueError:
            value = text
        if resp.status >= 300:
            if isinstance(value, dict) and value.get("errorType"):
                raise TaskFailure(str(value["errorType"]), dumps(value))
            raise TaskFailure("Lambda.ServiceException", f"HTTP {resp.status}: {text[:1000]}")
        if isinstance(value, dict) and "errorType" in value and "errorMessage" in value:
            raise TaskFailure(str(value["errorType"]), dumps(value))
        if wrapped:
            return {
                "ExecutedVersion": "$LATEST",
                "Payload": value,
                "StatusCode": 200,
                "SdkHttpMetadata": {"HttpStatusCode": 200},
            }
        return value

    async def _http(self, payload: dict[str, Any]) -> Any:
        url = payload.get("ApiEndpoint")
        method = str(payload.get("Method") or "GET").upper()
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TaskFailure("States.Runtime", "ApiEndpoint must be an http(s) URL")
        query = payload.get("QueryParameters") or {}
        if query:
            from urllib.parse import urlencode

            url += ("&" if "?" in url else "?") + urlencode({k: str(v) for k, v in query.items()})
        headers = [(str(k), str(v)) for k, v in (payload.get("Headers") or {}).items()]
        body = b""
        if "RequestBody" in payload:
            raw = payload["RequestBody"]
            encoding = (
                payload.get("Transform", {}).get("RequestBodyEncoding")
                if isinstance(payload.get("Transform"), dict)
                else None
            )
            if encoding == "URL_ENCODED" and isinstance(raw, dict):
                from urllib.parse import urlencode

                body = urlencode({k: str(v) for k, v in raw.items()}).encode()
                headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            else:
                body = (raw if isinstance(raw, str) else dumps(raw)).encode()
                if not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("Content-Type", "application/json"))
        resp, text = await self._request(method, url, headers, body, "States.Http.Socket")
        response_body: Any = text
        if "json" in resp.headers.get("content-type", "") and text.strip():
            try:
                response_body = json.loads(text)
            except ValueError:
                response_body = text
        out = {
            "StatusCode": resp.status,
            "StatusText": _REASONS.get(resp.status, ""),
            "Headers": {k: [v] for k, v in resp.headers.items()},
            "ResponseBody": response_body,
        }
        if resp.status >= 300:
            raise TaskFailure(f"States.Http.StatusCode.{resp.status}", dumps(out))
        return out


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
