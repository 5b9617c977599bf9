"""Amazon AppFlow (boto3's ``appflow`` client) over the core API: flows that move records from
a source connector to a destination connector through AppFlow's tasks, run on demand, on a
schedule or when messages arrive in a queue.

Storage (DESIGN.md section 3): every object is a small durable internal fanout exchange in the
replicated log, its metadata in the argument ``x-appflow``, so everything survives restarts
and a new leader sees what the old one wrote:

* flow ``<name>`` -> ``appflow-flow:<name>`` (definition, status, tags, the incremental
  watermark of the last successful run, the schedule's last firing);
* connector profile ``<name>`` -> ``appflow-profile:<name>`` (label, properties, credentials;
  credentials are never answered back, as AWS does);
* run ``<id>`` of a flow -> ``appflow-run:<flow>/<id>`` (AWS's ``ExecutionRecord``: status,
  records, bytes, errors, times), written when the run is queued, when it starts, every
  ``PROGRESS_INTERVAL_S`` while it runs and when it ends. ``RUNS_KEPT_MAX`` are kept per flow.

Work: ``run`` hosts, through ``Broker.run_while_leading`` (so a cluster does it once, on the
leader), the run driver (starts queued runs, at most ``RUNS_CONCURRENT_MAX`` at a time), the
scheduler of active scheduled flows and a watcher per active event-triggered flow. StartFlow
on any node queues a run record; the driver on the leader claims it (state ``running`` with
the claimant's token) and executes it.

Interrupted runs: when the driver starts (the node restarted, or leadership moved), every run
still ``running`` under another token was interrupted (kill -9, power loss, lost
leadership). Such a run is **marked failed**, not resumed: status ``Error`` with the message
"The run was interrupted ... before it finished", its counts as last recorded. What it had
written stays written, and nothing is lost: an SQS source's messages were deleted only after
the destination took them (the rest return when their lease ends), the incremental watermark
moves only when a run succeeds (so the next run pulls the interrupted range again: at least
once), and a directory destination's files are published only when the run succeeds.

Triggers: ``OnDemand`` flows are Active from creation and run on StartFlow. ``Scheduled``
flows (``rate(N unit)`` with or without the space, AppFlow style, or a six-field
``cron(...)``, parsed by ``events_schedule``) run, once activated by StartFlow, at the start
time (``scheduleStartTime``, else the activation) and every period after it, plus
``scheduleOffset`` seconds, until ``scheduleEndTime``; a firing missed while the node was down
by more than ``MISSED_FIRING_GRACE_MS`` is skipped, and a firing while a run of the flow is in
progress is skipped. ``timezone`` is a label (as AWS says). With ``dataPullMode``
``Incremental`` a run pulls records whose ``datetimeTypeFieldName`` is above the last
successful run's highest value (from ``firstExecutionFrom`` on the first run);
``flowErrorDeactivationThreshold`` consecutive failed runs suspend the flow. ``Event`` flows
read a ``polymq-sqs`` queue and, once activated, run whenever it has messages and no run of
the flow is in progress: an EventBridge rule starts such a flow through a queue target.
After each run an ``AppFlow End Flow Run Report`` event goes to the default event bus.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from broker.adapters import appflow_connectors as conn
from broker.adapters import appflow_tasks as tasks
from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError
from broker.adapters.events_schedule import Schedule, ScheduleError, parse_schedule
from broker.adapters.store import ExchangeStore
from broker.api import Broker, BrokerError

log = logging.getLogger("polymq.appflow")

VHOST = "/"
META = "x-appflow"
FLOW_PREFIX = "appflow-flow:"
PROFILE_PREFIX = "appflow-profile:"
RUN_PREFIX = "appflow-run:"

FLOWS_MAX = 1_000
PROFILES_MAX = 1_000
RUNS_KEPT_MAX = 100
RUNS_CONCURRENT_MAX = 8
TAGS_MAX = 50
DESCRIPTION_CHARS_MAX = 2_048
NAME_CHARS_MAX = 256
LIST_RESULTS_MAX = 100
PROGRESS_INTERVAL_S = 0.5
RECONCILE_INTERVAL_S = 1.0
WATCH_WAIT_S = 5.0
MISSED_FIRING_GRACE_MS = 60_000
SCHEDULE_OFFSET_S_MAX = 36_000
ERROR_THRESHOLD_MAX = 100
MESSAGE_CHARS_MAX = 2_048

FLOW_NAME_RE = re.compile(r"^[a-zA-Z0-9][\w!@#.-]+$")
PROFILE_NAME_RE = re.compile(r"^[\w/!@#+=.-]+$")
RATE_RE = re.compile(r"^rate\(\s*(\d+)\s*([A-Za-z]+)\s*\)$")
RATE_UNITS = {"minute": "minute", "hour": "hour", "day": "day"}
TRIGGER_TYPES = ("OnDemand", "Scheduled", "Event")
SOURCE_LABELS = ("polymq-sqs", "polymq-http", "polymq-sql")
DESTINATION_LABELS = ("polymq-sqs", "polymq-sns", "polymq-sql")
WRITE_OPERATIONS = ("INSERT", "UPSERT", "UPDATE")

CONNECTOR_DESCRIPTIONS = {
    "polymq-sqs": "An SQS queue of this broker (entityName: the queue name, URL or ARN)",
    "polymq-sns": "An SNS topic of this broker (entityName: the topic name or ARN)",
    "polymq-http": "An HTTP JSON API with pagination (profile property baseUrl)",
    "polymq-sql": "A database through SQLAlchemy, SQLite by default (profile property "
    "databaseUrl or database)",
}
REGISTERED_MS = 1_700_000_000_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ts(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, status=400)


def not_found(message: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", message, status=404)


def conflict(message: str) -> ServiceError:
    return ServiceError("ConflictException", message, status=409)


def quota(message: str) -> ServiceError:
    return ServiceError("ServiceQuotaExceededException", message, status=402)


def _name(params: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise validation(f"{key} is required.")
    if len(value) > NAME_CHARS_MAX or not pattern.match(value):
        raise validation(
            f"1 validation error detected: Value '{value[:64]}' at '{key}' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: {pattern.pattern}"
        )
    return value


def _tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise validation("tags must be a map of strings.")
    if len(raw) > TAGS_MAX:
        raise validation(f"A resource can have at most {TAGS_MAX} tags.")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.startswith("aws:"):
            raise validation(
                f"Tag key {str(key)[:64]!r} is not valid: 1 to 128 characters, not "
                "starting with 'aws:'."
            )
        text = "" if value is None else str(value)
        if len(text) > 256:
            raise validation(f"The value of tag {key} is over 256 characters.")
        out[key] = text
    return out


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    limit = params.get("maxResults")
    if limit is None:
        limit = LIST_RESULTS_MAX
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LIST_RESULTS_MAX:
        raise validation(f"maxResults must be between 1 and {LIST_RESULTS_MAX}.")
    start = 0
    token = params.get("nextToken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except ValueError:
            raise validation("The nextToken is not valid.") from None
        if start < 0:
            raise validation("The nextToken is not valid.")
    chunk = items[start : start + limit]
    nxt = None
    if start + limit < len(items):
        nxt = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return chunk, nxt


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS_MAX else text[: MESSAGE_CHARS_MAX - 3] + "..."


# -- schedules --------------------------------------------------------------------------------


def parse_flow_schedule(expression: str) -> Schedule:
    """An AppFlow schedule expression: ``rate(5minutes)``, ``rate(1 hour)``, ``cron(...)``;
    ``ScheduleError`` for anything else."""
    m = RATE_RE.match(expression.strip())
    if m is not None:
        value, unit = int(m.group(1)), m.group(2).lower().rstrip("s")
        if unit not in RATE_UNITS or value < 1:
            raise ScheduleError("bad rate")
        expression = f"rate({value} {unit}{'' if value == 1 else 's'})"
    return parse_schedule(expression)


def next_firing(schedule: Schedule, after_ms: int, start_ms: int) -> int | None:
    """The first firing strictly after ``after_ms``: a rate fires at ``start_ms`` and every
    period after it, a cron at its times from ``start_ms`` on."""
    if schedule.rate_ms:
        if after_ms < start_ms:
            return start_ms
        k = (after_ms - start_ms) // schedule.rate_ms + 1
        return start_ms + k * schedule.rate_ms
    return schedule.next_after(max(after_ms, start_ms - 1))


# -- the adapter ------------------------------------------------------------------------------


class AppflowAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="UnsupportedOperationException",
        internal="InternalServerException",
    )

    def __init__(
        self,
        broker: Broker,
        *,
        sqs: Any = None,
        sns: Any = None,
        events: Any = None,
        root_dir: str | Path = "./appflow",
        account_id: str = "000000000000",
        region: str = "us-east-1",
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.broker = broker
        self.store = ExchangeStore(broker, META, vhost=VHOST)
        self.sqs = sqs
        self.sns = sns
        self.events = events
        self.root = Path(root_dir)
        self.account_id = account_id
        self.region = region
        self.wall_ms = wall_ms or _now_ms
        self._lock = trio.Lock()
        self._kick = trio.Event()
        self._token = ""
        self._running: dict[str, trio.CancelScope] = {}  # execution id -> its scope
        self._cancelled: set[str] = set()
        self._busy: dict[str, str] = {}  # flow -> execution id in progress here
        self._done = trio.Event()  # set after each run (watchers, tests)
        self._limiter = trio.CapacityLimiter(RUNS_CONCURRENT_MAX)
        self._actions = {
            "CreateFlow": self.create_flow,
            "UpdateFlow": self.update_flow,
            "DeleteFlow": self.delete_flow,
            "DescribeFlow": self.describe_flow,
            "ListFlows": self.list_flows,
            "StartFlow": self.start_flow,
            "StopFlow": self.stop_flow,
            "CancelFlowExecutions": self.cancel_flow_executions,
            "DescribeFlowExecutionRecords": self.describe_flow_execution_records,
            "CreateConnectorProfile": self.create_connector_profile,
            "UpdateConnectorProfile": self.update_connector_profile,
            "DescribeConnectorProfiles": self.describe_connector_profiles,
            "DeleteConnectorProfile": self.delete_connector_profile,
            "DescribeConnectors": self.describe_connectors,
            "DescribeConnector": self.describe_connector,
            "ListConnectors": self.list_connectors,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    async def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._dispatch(action, params)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the driver, the scheduler and the watchers while this node leads."""
        task_status.started()
        await self.broker.run_while_leading(self._lead)

    async def _lead(self) -> None:
        token = uuid.uuid4().hex
        self._token = token
        await self._fail_interrupted(token)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._driver, nursery)
            nursery.start_soon(self._scheduler)
            nursery.start_soon(self._watchers)
            await trio.sleep_forever()

    def _wake(self) -> None:
        self._kick.set()
        self._kick = trio.Event()

    # -- storage -------------------------------------------------------------------------------

    def _flow(self, name: str) -> dict[str, Any]:
        meta = self.store.get(FLOW_PREFIX + name)
        if meta is None:
            raise not_found(f"Flow {name} does not exist.")
        return meta

    def _profile(self, name: str) -> dict[str, Any]:
        meta = self.store.get(PROFILE_PREFIX + name)
        if meta is None:
            raise not_found(f"Connector profile {name} does not exist.")
        return meta

    def _runs(self, flow: str) -> list[dict[str, Any]]:
        """The flow's run records, newest first."""
        runs = self.store.records(f"{RUN_PREFIX}{flow}/")
        runs.sort(key=lambda r: (r.get("started", 0), r.get("id", "")), reverse=True)
        return runs

    async def _put_run(self, run: dict[str, Any]) -> None:
        run["updated"] = self.wall_ms()
        await self.store.put(f"{RUN_PREFIX}{run['flow']}/{run['id']}", run)

    # -- ARNs ----------------------------------------------------------------------------------

    def flow_arn(self, name: str) -> str:
        return f"arn:aws:appflow:{self.region}:{self.account_id}:flow/{name}"

    def profile_arn(self, name: str) -> str:
        return f"arn:aws:appflow:{self.region}:{self.account_id}:connectorprofile/{name}"

    def connector_arn(self, label: str) -> str:
        return f"arn:aws:appflow:{self.region}:{self.account_id}:connector/{label}"

    # -- connector profiles --------------------------------------------------------------------

    def _check_profile(self, params: dict[str, Any], label: str) -> dict[str, Any]:
        config = params.get("connectorProfileConfig") or {}
        props = ((config.get("connectorProfileProperties") or {}).get("CustomConnector")) or {}
        profile_props = dict(props.get("profileProperties") or {})
        creds = (config.get("connectorProfileCredentials") or {}).get("CustomConnector")
        profile = {"properties": profile_props, "credentials": creds}
        if creds is not None:
            kind = creds.get("authenticationType")
            need = {"BASIC": "basic", "APIKEY": "apiKey", "OAUTH2": "oauth2", "CUSTOM": "custom"}
            if kind in need and not creds.get(need[kind]):
                raise validation(
                    f"authenticationType {kind} needs connectorProfileCredentials.CustomConnector."
                    f"{need[kind]}."
                )
        if label == "polymq-http":
            base = str(profile_props.get("baseUrl") or "")
            if not re.match(r"^https?://[^/\s]+", base):
                raise validation(
                    "A polymq-http profile needs profileProperties.baseUrl, an http:// or "
                    "https:// URL."
                )
        return profile

    async def _check_sql_profile(self, profile: dict[str, Any]) -> None:
        url = conn.sql_url(self.root, profile)
        try:
            await trio.to_thread.run_sync(conn.sql_check, url)
        except conn.ConnectorError as exc:
            status = 401 if exc.code == "ConnectorAuthenticationException" else 400
            raise ServiceError(exc.code, exc.message, status=status) from None

    async def create_connector_profile(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "connectorProfileName", PROFILE_NAME_RE)
        ctype = params.get("connectorType")
        if ctype != "CustomConnector":
            raise validation(
                f"polymq keeps connector profiles for CustomConnector connectors only "
                f"({', '.join(conn.CUSTOM_LABELS)}); {ctype} flows need no profile."
            )
        label = params.get("connectorLabel")
        if label not in conn.CUSTOM_LABELS:
            raise validation(
                f"connectorLabel {label!r} is not a connector of polymq: one of "
                f"{', '.join(conn.CUSTOM_LABELS)}."
            )
        profile = self._check_profile(params, label)
        if label == "polymq-sql":
            await self._check_sql_profile(profile)
        async with self._lock:
            if self.store.get(PROFILE_PREFIX + name) is not None:
                raise conflict(f"Connector profile {name} already exists.")
            if len(self.store.records(PROFILE_PREFIX)) >= PROFILES_MAX:
                raise quota(f"An account can have at most {PROFILES_MAX} connector profiles.")
            now = self.wall_ms()
            meta = {
                "name": name,
                "type": ctype,
                "label": label,
                "mode": params.get("connectionMode") or "Public",
                **profile,
                "created": now,
                "updated": now,
            }
            await self.store.put(PROFILE_PREFIX + name, meta)
        return {"connectorProfileArn": self.profile_arn(name)}

    async def update_connector_profile(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "connectorProfileName", PROFILE_NAME_RE)
        async with self._lock:
            meta = self._profile(name)
            profile = self._check_profile(params, meta["label"])
            if profile["credentials"] is None:
                profile["credentials"] = meta.get("credentials")
            if meta["label"] == "polymq-sql":
                await self._check_sql_profile(profile)
            meta.update(profile)
            meta["mode"] = params.get("connectionMode") or meta.get("mode")
            meta["updated"] = self.wall_ms()
            await self.store.put(PROFILE_PREFIX + name, meta)
        return {"connectorProfileArn": self.profile_arn(name)}

    def _profile_out(self, meta: dict[str, Any]) -> dict[str, Any]:
        creds = meta.get("credentials") or {}
        out: dict[str, Any] = {
            "connectorProfileArn": self.profile_arn(meta["name"]),
            "connectorProfileName": meta["name"],
            "connectorType": meta["type"],
            "connectorLabel": meta["label"],
            "connectionMode": meta.get("mode") or "Public",
            "connectorProfileProperties": {
                "CustomConnector": {"profileProperties": dict(meta.get("properties") or {})}
            },
            "createdAt": _ts(meta["created"]),
            "lastUpdatedAt": _ts(meta["updated"]),
        }
        if creds:
            out["credentialsArn"] = (
                f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:"
                f"appflow!{self.account_id}-{meta['name']}"
            )
        return out

    async def describe_connector_profiles(self, params: dict[str, Any]) -> dict[str, Any]:
        names = params.get("connectorProfileNames")
        ctype = params.get("connectorType")
        label = params.get("connectorLabel")
        metas = sorted(self.store.records(PROFILE_PREFIX), key=lambda m: m["name"])
        if names:
            wanted = set(names)
            metas = [m for m in metas if m["name"] in wanted]
        if ctype:
            metas = [m for m in metas if m["type"] == ctype]
        if label:
            metas = [m for m in metas if m["label"] == label]
        chunk, nxt = _page(metas, params)
        out: dict[str, Any] = {"connectorProfileDetails": [self._profile_out(m) for m in chunk]}
        if nxt:
            out["nextToken"] = nxt
        return out

    async def delete_connector_profile(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "connectorProfileName", PROFILE_NAME_RE)
        async with self._lock:
            self._profile(name)
            users = [
                f["name"] for f in self.store.records(FLOW_PREFIX) if name in self._profiles_of(f)
            ]
            if users and not params.get("forceDelete"):
                raise conflict(
                    f"Connector profile {name} is used by flow {sorted(users)[0]}; delete the "
                    "flow first or pass forceDelete."
                )
            await self.store.drop(PROFILE_PREFIX + name)
        return {}

    @staticmethod
    def _profiles_of(flow: dict[str, Any]) -> set[str]:
        names = {flow["source"].get("connectorProfileName")}
        names.update(d.get("connectorProfileName") for d in flow["destinations"])
        return {n for n in names if n}

    # -- connectors ----------------------------------------------------------------------------

    def _configuration(self, ctype: str, label: str | None = None) -> dict[str, Any]:
        trigger_all = ["OnDemand", "Scheduled", "Event"]
        base: dict[str, Any] = {
            "isPrivateLinkEnabled": False,
            "isPrivateLinkEndpointUrlRequired": False,
            "supportedSchedulingFrequencies": [],
            "connectorType": ctype,
            "connectorOwner": "polymq",
            "connectorVersion": "1.0",
            "supportedApiVersions": ["1.0"],
            "supportedOperators": sorted(tasks.OPERATORS),
            "registeredAt": _ts(REGISTERED_MS),
            "registeredBy": "polymq",
        }
        if ctype == "S3":
            base.update(
                canUseAsSource=True,
                canUseAsDestination=True,
                supportedDestinationConnectors=["S3", "EventBridge", "CustomConnector"],
                supportedTriggerTypes=["OnDemand", "Scheduled"],
                connectorDescription="CSV or JSON lines files in a directory under the "
                "AppFlow root (bucketName: the directory)",
                connectorName="S3",
            )
            return base
        if ctype == "EventBridge":
            base.update(
                canUseAsSource=False,
                canUseAsDestination=True,
                supportedDestinationConnectors=[],
                supportedTriggerTypes=[],
                connectorDescription="An event bus of this broker (object: its name or ARN)",
                connectorName="EventBridge",
            )
            return base
        assert label is not None
        source = label in SOURCE_LABELS
        triggers = trigger_all if label == "polymq-sqs" else ["OnDemand", "Scheduled"]
        base.update(
            canUseAsSource=source,
            canUseAsDestination=label in DESTINATION_LABELS,
            supportedDestinationConnectors=(
                ["S3", "EventBridge", "CustomConnector"] if source else []
            ),
            supportedTriggerTypes=triggers if source else [],
            connectorLabel=label,
            connectorDescription=CONNECTOR_DESCRIPTIONS[label],
            connectorName=label,
            connectorArn=self.connector_arn(label),
            connectorModes=[
                m
                for m, ok in (("SOURCE", source), ("DESTINATION", label in DESTINATION_LABELS))
                if ok
            ],
            authenticationConfig={
                "isBasicAuthSupported": label in ("polymq-http", "polymq-sql"),
                "isApiKeyAuthSupported": label == "polymq-http",
                "isOAuth2Supported": label == "polymq-http",
                "isCustomAuthSupported": label == "polymq-http",
            },
            supportedWriteOperations=(
                list(WRITE_OPERATIONS)
                if label == "polymq-sql"
                else ["INSERT"]
                if label in DESTINATION_LABELS
                else []
            ),
            connectorProvisioningType="LAMBDA",
            supportedDataTransferTypes=["RECORD"],
        )
        return base

    def _detail(self, label: str) -> dict[str, Any]:
        config = self._configuration("CustomConnector", label)
        return {
            "connectorDescription": config["connectorDescription"],
            "connectorName": label,
            "connectorOwner": "polymq",
            "connectorVersion": "1.0",
            "applicationType": "polymq",
            "connectorType": "CustomConnector",
            "connectorLabel": label,
            "registeredAt": _ts(REGISTERED_MS),
            "registeredBy": "polymq",
            "connectorProvisioningType": "LAMBDA",
            "connectorModes": config["connectorModes"],
            "supportedDataTransferTypes": ["RECORD"],
        }

    async def describe_connectors(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = params.get("connectorTypes") or ["S3", "EventBridge", "CustomConnector"]
        configs = {t: self._configuration(t) for t in ("S3", "EventBridge") if t in wanted}
        details = [self._detail(label) for label in conn.CUSTOM_LABELS]
        chunk, nxt = _page(details if "CustomConnector" in wanted else [], params)
        out: dict[str, Any] = {"connectorConfigurations": configs, "connectors": chunk}
        if nxt:
            out["nextToken"] = nxt
        return out

    async def describe_connector(self, params: dict[str, Any]) -> dict[str, Any]:
        ctype = params.get("connectorType")
        label = params.get("connectorLabel")
        if ctype in ("S3", "EventBridge"):
            return {"connectorConfiguration": self._configuration(ctype)}
        if ctype == "CustomConnector":
            if label not in conn.CUSTOM_LABELS:
                raise not_found(f"Connector {label} is not registered.")
            return {"connectorConfiguration": self._configuration(ctype, label)}
        raise not_found(f"polymq has no {ctype} connector.")

    async def list_connectors(self, params: dict[str, Any]) -> dict[str, Any]:
        chunk, nxt = _page([self._detail(label) for label in conn.CUSTOM_LABELS], params)
        out: dict[str, Any] = {"connectors": chunk}
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- flow definitions ----------------------------------------------------------------------

    def _custom_profile(self, side: dict[str, Any], what: str) -> dict[str, Any]:
        name = side.get("connectorProfileName")
        if not name:
            raise validation(f"A CustomConnector {what} needs a connectorProfileName.")
        return self._profile(str(name))

    def _check_source(self, source: dict[str, Any]) -> tuple[str, str | None]:
        """``(operator key, custom label or None)``."""
        ctype = source.get("connectorType")
        props = source.get("sourceConnectorProperties") or {}
        if ctype == "S3":
            s3 = props.get("S3")
            if not s3:
                raise validation("An S3 source needs sourceConnectorProperties.S3.")
            conn.check_bucket(str(s3["bucketName"]), str(s3.get("bucketPrefix") or ""), "source")
            kind = (s3.get("s3InputFormatConfig") or {}).get("s3InputFileType") or "CSV"
            if kind not in conn.FILE_TYPES:
                raise validation(f"s3InputFileType must be CSV or JSON, not {kind}.")
            return "S3", None
        if ctype == "CustomConnector":
            custom = props.get("CustomConnector")
            if not custom:
                raise validation(
                    "A CustomConnector source needs sourceConnectorProperties.CustomConnector."
                )
            profile = self._custom_profile(source, "source")
            label = profile["label"]
            if label not in SOURCE_LABELS:
                raise validation(
                    f"Connector {label} cannot be a source (sources: {', '.join(SOURCE_LABELS)})."
                )
            entity = str(custom["entityName"])
            if label == "polymq-sqs" and self.sqs is not None:
                name = conn._queue_name(entity)
                if self.broker.queue_counts(name, vhost=VHOST) is None:
                    raise validation(f"The source SQS queue {name} does not exist.")
            if label == "polymq-http":
                mode = (custom.get("customProperties") or {}).get("pagination") or "none"
                if mode not in conn.PAGINATIONS:
                    raise validation(
                        f"customProperties.pagination must be one of "
                        f"{', '.join(conn.PAGINATIONS)}, not {mode!r}."
                    )
                size = (custom.get("customProperties") or {}).get("pageSize")
                if size is not None and (not str(size).isdigit() or not 1 <= int(size) <= 10_000):
                    raise validation("customProperties.pageSize must be between 1 and 10000.")
            return "CustomConnector", label
        raise validation(
            f"Source connector type {ctype} is not available in polymq: use S3 (a local "
            f"directory) or CustomConnector ({', '.join(SOURCE_LABELS)})."
        )

    def _check_destination(self, dest: dict[str, Any]) -> str | None:
        ctype = dest.get("connectorType")
        props = dest.get("destinationConnectorProperties") or {}
        if ctype == "S3":
            s3 = props.get("S3")
            if not s3:
                raise validation("An S3 destination needs destinationConnectorProperties.S3.")
            conn.check_bucket(
                str(s3["bucketName"]), str(s3.get("bucketPrefix") or ""), "destination"
            )
            fmt = s3.get("s3OutputFormatConfig") or {}
            kind = fmt.get("fileType") or "JSON"
            if kind not in conn.FILE_TYPES:
                raise validation(f"fileType {kind} is not supported by polymq: use CSV or JSON.")
            size = (fmt.get("aggregationConfig") or {}).get("targetFileSize")
            if size is not None and not 1 <= int(size) <= conn.TARGET_FILE_MB_MAX:
                raise validation(
                    f"targetFileSize must be between 1 and {conn.TARGET_FILE_MB_MAX} (MB)."
                )
            return None
        if ctype == "EventBridge":
            eb = props.get("EventBridge")
            if not eb:
                raise validation(
                    "An EventBridge destination needs destinationConnectorProperties.EventBridge."
                )
            bus = str(eb["object"])
            name = bus.split("event-bus/", 1)[1] if bus.startswith("arn:") else bus
            if self.broker.exchange_info("events:" + name, vhost=VHOST) is None:
                raise validation(f"The destination event bus {name} does not exist.")
            return None
        if ctype == "CustomConnector":
            custom = props.get("CustomConnector")
            if not custom:
                raise validation(
                    "A CustomConnector destination needs "
                    "destinationConnectorProperties.CustomConnector."
                )
            profile = self._custom_profile(dest, "destination")
            label = str(profile["label"])
            if label not in DESTINATION_LABELS:
                raise validation(
                    f"Connector {label} cannot be a destination (destinations: "
                    f"{', '.join(DESTINATION_LABELS)})."
                )
            op = custom.get("writeOperationType") or "INSERT"
            allowed = WRITE_OPERATIONS if label == "polymq-sql" else ("INSERT",)
            if op not in allowed:
                raise validation(
                    f"writeOperationType {op} is not supported by {label}: use "
                    f"{' or '.join(allowed)}."
                )
            if op in ("UPSERT", "UPDATE") and not custom.get("idFieldNames"):
                raise validation(f"writeOperationType {op} needs idFieldNames.")
            entity = str(custom["entityName"])
            if label == "polymq-sqs":
                name = conn._queue_name(entity)
                if self.broker.queue_counts(name, vhost=VHOST) is None:
                    raise validation(f"The destination SQS queue {name} does not exist.")
            if label == "polymq-sns" and self.sns is not None:
                arn = entity if entity.startswith("arn:") else self.sns.topic_arn(entity)
                topic = arn.rsplit(":", 1)[-1]
                if self.broker.exchange_info("sns:" + topic, vhost=VHOST) is None:
                    raise validation(f"The destination SNS topic {topic} does not exist.")
            return label
        raise validation(
            f"Destination connector type {ctype} is not available in polymq: use S3 (a local "
            f"directory), EventBridge or CustomConnector ({', '.join(DESTINATION_LABELS)})."
        )

    def _check_trigger(self, trigger: dict[str, Any], source_label: str | None) -> dict[str, Any]:
        kind = trigger.get("triggerType")
        if kind not in TRIGGER_TYPES:
            raise validation(f"triggerType must be one of {', '.join(TRIGGER_TYPES)}.")
        out: dict[str, Any] = {"triggerType": kind}
        sched = (trigger.get("triggerProperties") or {}).get("Scheduled")
        if kind == "Scheduled":
            if not sched:
                raise validation(
                    "A Scheduled flow needs triggerProperties.Scheduled with a scheduleExpression."
                )
            expression = str(sched["scheduleExpression"])
            try:
                parse_flow_schedule(expression)
            except ScheduleError:
                raise validation(
                    f"scheduleExpression {expression[:64]!r} is not valid: use rate(N minutes), "
                    "rate(N hours), rate(N days) or a six-field cron(...)."
                ) from None
            mode = sched.get("dataPullMode") or "Complete"
            if mode not in ("Incremental", "Complete"):
                raise validation("dataPullMode must be Incremental or Complete.")
            offset = sched.get("scheduleOffset") or 0
            if not 0 <= int(offset) <= SCHEDULE_OFFSET_S_MAX:
                raise validation(f"scheduleOffset must be between 0 and {SCHEDULE_OFFSET_S_MAX}.")
            threshold = sched.get("flowErrorDeactivationThreshold")
            if threshold is not None and not 1 <= int(threshold) <= ERROR_THRESHOLD_MAX:
                raise validation(
                    f"flowErrorDeactivationThreshold must be between 1 and {ERROR_THRESHOLD_MAX}."
                )
            start, end = _ms(sched.get("scheduleStartTime")), _ms(sched.get("scheduleEndTime"))
            if start is not None and end is not None and end <= start:
                raise validation("scheduleEndTime must be after scheduleStartTime.")
            out["scheduled"] = {
                "scheduleExpression": expression,
                "dataPullMode": mode,
                "scheduleStartTime": start,
                "scheduleEndTime": end,
                "timezone": sched.get("timezone"),
                "scheduleOffset": int(offset),
                "firstExecutionFrom": _ms(sched.get("firstExecutionFrom")),
                "flowErrorDeactivationThreshold": threshold,
            }
        elif kind == "Event" and source_label != "polymq-sqs":
            raise validation(
                "An Event flow needs a source that emits events: a CustomConnector polymq-sqs "
                "queue (point an EventBridge rule at the queue to start the flow from events)."
            )
        return out

    async def _definition(self, params: dict[str, Any], name: str) -> dict[str, Any]:
        description = params.get("description")
        if description is not None and len(str(description)) > DESCRIPTION_CHARS_MAX:
            raise validation(f"description must be at most {DESCRIPTION_CHARS_MAX} characters.")
        source = dict(params["sourceFlowConfig"])
        op_key, source_label = self._check_source(source)
        dests = list(params["destinationFlowConfigList"])
        if len(dests) != 1:
            raise validation("A flow has exactly one destination (destinationFlowConfigList).")
        dest_label = self._check_destination(dests[0])
        trigger = self._check_trigger(params["triggerConfig"], source_label)
        try:
            pipeline = tasks.compile_tasks(params["tasks"], operator_key=op_key)
        except tasks.TaskError as exc:
            raise validation(f"Invalid tasks: {exc}.") from None
        incremental = (source.get("incrementalPullConfig") or {}).get("datetimeTypeFieldName")
        sched = trigger.get("scheduled") or {}
        if (
            sched.get("dataPullMode") == "Incremental"
            and not incremental
            and source_label != "polymq-sqs"
        ):
            raise validation(
                "An Incremental flow needs sourceFlowConfig.incrementalPullConfig."
                "datetimeTypeFieldName (the watermark field)."
            )
        if (
            incremental
            and pipeline.projection is not None
            and incremental not in pipeline.projection
        ):
            raise validation(
                f"The watermark field {incremental} must be one of the PROJECTION filter's fields."
            )
        if dest_label == "polymq-sql" and source_label == "polymq-sql":
            pass  # a table to a table is fine
        return {
            "description": description,
            "trigger": trigger,
            "source": source,
            "destinations": dests,
            "tasks": list(params["tasks"]),
            "kms": params.get("kmsArn"),
            "catalog": params.get("metadataCatalogConfig"),
        }

    async def create_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        tags = _tags(params.get("tags"))
        definition = await self._definition(params, name)
        async with self._lock:
            if self.store.get(FLOW_PREFIX + name) is not None:
                raise conflict(f"Flow {name} already exists.")
            if len(self.store.records(FLOW_PREFIX)) >= FLOWS_MAX:
                raise quota(f"An account can have at most {FLOWS_MAX} flows.")
            now = self.wall_ms()
            on_demand = definition["trigger"]["triggerType"] == "OnDemand"
            meta = {
                "name": name,
                **definition,
                "tags": tags,
                "status": "Active" if on_demand else "Draft",
                "status_message": None,
                "created": now,
                "updated": now,
                "watermark": None,
                "fired": None,
                "activated": now if on_demand else None,
                "failures": 0,
                "last": None,
                "version": 1,
            }
            await self.store.put(FLOW_PREFIX + name, meta)
        return {"flowArn": self.flow_arn(name), "flowStatus": meta["status"]}

    async def update_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        definition = await self._definition(params, name)
        async with self._lock:
            meta = self._flow(name)
            old_type = meta["trigger"]["triggerType"]
            new_type = definition["trigger"]["triggerType"]
            meta.update(definition)
            if new_type == "OnDemand":
                meta["status"] = "Active"
            elif new_type != old_type:
                meta["status"] = "Draft"
            if new_type == "Scheduled" and meta["status"] == "Active":
                meta["activated"] = self.wall_ms()
                meta["fired"] = None
            meta["updated"] = self.wall_ms()
            meta["version"] = int(meta.get("version") or 1) + 1
            await self.store.put(FLOW_PREFIX + name, meta)
        self._wake()
        return {"flowStatus": meta["status"]}

    async def delete_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        async with self._lock:
            self._flow(name)
            runs = self._runs(name)
            active = [r for r in runs if r["status"] == "InProgress"]
            if active and not params.get("forceDelete"):
                raise conflict(
                    f"Flow {name} has a run in progress ({active[0]['id']}); wait for it, cancel "
                    "it (CancelFlowExecutions) or pass forceDelete."
                )
            for run in active:
                self._cancel_local(run["id"])
            await self.store.drop(FLOW_PREFIX + name)
            for run in runs:
                await self.store.drop(f"{RUN_PREFIX}{name}/{run['id']}")
        self._wake()
        return {}

    def _last_out(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        last = meta.get("last")
        if not last:
            return None
        return {
            "mostRecentExecutionMessage": last.get("message") or "",
            "mostRecentExecutionTime": _ts(last.get("time")),
            "mostRecentExecutionStatus": last.get("status"),
        }

    @staticmethod
    def _trigger_out(trigger: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"triggerType": trigger["triggerType"]}
        sched = trigger.get("scheduled")
        if sched:
            props: dict[str, Any] = {}
            for key, value in sched.items():
                if value is None:
                    continue
                if key in ("scheduleStartTime", "scheduleEndTime", "firstExecutionFrom"):
                    props[key] = _ts(value)
                else:
                    props[key] = value
            out["triggerProperties"] = {"Scheduled": props}
        return out

    @staticmethod
    def _label_of(side: dict[str, Any], profiles: dict[str, str]) -> str | None:
        if side.get("connectorType") != "CustomConnector":
            return None
        return profiles.get(str(side.get("connectorProfileName")))

    async def describe_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        meta = self._flow(name)
        out: dict[str, Any] = {
            "flowArn": self.flow_arn(name),
            "flowName": name,
            "description": meta.get("description"),
            "kmsArn": meta.get("kms"),
            "flowStatus": meta["status"],
            "flowStatusMessage": meta.get("status_message"),
            "sourceFlowConfig": meta["source"],
            "destinationFlowConfigList": meta["destinations"],
            "lastRunExecutionDetails": self._last_out(meta),
            "triggerConfig": self._trigger_out(meta["trigger"]),
            "tasks": meta["tasks"],
            "createdAt": _ts(meta["created"]),
            "lastUpdatedAt": _ts(meta["updated"]),
            "createdBy": f"arn:aws:iam::{self.account_id}:root",
            "lastUpdatedBy": f"arn:aws:iam::{self.account_id}:root",
            "tags": dict(meta.get("tags") or {}),
            "metadataCatalogConfig": meta.get("catalog"),
            "schemaVersion": int(meta.get("version") or 1),
        }
        return out

    async def list_flows(self, params: dict[str, Any]) -> dict[str, Any]:
        metas = sorted(self.store.records(FLOW_PREFIX), key=lambda m: m["name"])
        chunk, nxt = _page(metas, params)
        profiles = {p["name"]: p["label"] for p in self.store.records(PROFILE_PREFIX)}
        flows = []
        for m in chunk:
            dest = m["destinations"][0]
            flows.append(
                {
                    "flowArn": self.flow_arn(m["name"]),
                    "description": m.get("description"),
                    "flowName": m["name"],
                    "flowStatus": m["status"],
                    "sourceConnectorType": m["source"]["connectorType"],
                    "sourceConnectorLabel": self._label_of(m["source"], profiles),
                    "destinationConnectorType": dest["connectorType"],
                    "destinationConnectorLabel": self._label_of(dest, profiles),
                    "triggerType": m["trigger"]["triggerType"],
                    "createdAt": _ts(m["created"]),
                    "lastUpdatedAt": _ts(m["updated"]),
                    "createdBy": f"arn:aws:iam::{self.account_id}:root",
                    "lastUpdatedBy": f"arn:aws:iam::{self.account_id}:root",
                    "tags": dict(m.get("tags") or {}),
                    "lastRunExecutionDetails": self._last_out(m),
                }
            )
        out: dict[str, Any] = {"flows": flows}
        if nxt:
            out["nextToken"] = nxt
        return out

    # -- starting and stopping -----------------------------------------------------------------

    async def _queue_run(self, meta: dict[str, Any], trigger: str) -> str:
        """A new run record in state ``queued``; the driver starts it."""
        name = meta["name"]
        runs = self._runs(name)
        while len(runs) >= RUNS_KEPT_MAX:
            old = runs.pop()
            if old["status"] == "InProgress":
                break
            await self.store.drop(f"{RUN_PREFIX}{name}/{old['id']}")
        now = self.wall_ms()
        run = {
            "flow": name,
            "id": conn.new_execution_id(),
            "status": "InProgress",
            "state": "queued",
            "owner": None,
            "trigger": trigger,
            "started": now,
            "records": 0,
            "bytes": 0,
            "written": 0,
            "bytes_written": 0,
            "filtered": 0,
            "dropped": 0,
            "errors": 0,
            "put_failures": 0,
            "message": None,
        }
        await self._put_run(run)
        self._wake()
        return str(run["id"])

    def _in_progress(self, name: str) -> dict[str, Any] | None:
        for run in self._runs(name):
            if run["status"] in ("InProgress", "CancelStarted"):
                return run
        return None

    async def start_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        async with self._lock:
            meta = self._flow(name)
            kind = meta["trigger"]["triggerType"]
            if kind == "OnDemand":
                running = self._in_progress(name)
                if running is not None:
                    raise conflict(
                        f"Flow {name} has a run in progress ({running['id']}); wait for it to "
                        "finish."
                    )
                eid = await self._queue_run(meta, "OnDemand")
                return {"flowArn": self.flow_arn(name), "flowStatus": "Active", "executionId": eid}
            if meta["status"] == "Active":
                raise conflict(f"Flow {name} is already active.")
            meta["status"] = "Active"
            meta["status_message"] = None
            meta["activated"] = self.wall_ms()
            meta["fired"] = None
            meta["failures"] = 0
            await self.store.put(FLOW_PREFIX + name, meta)
        self._wake()
        return {"flowArn": self.flow_arn(name), "flowStatus": "Active"}

    async def stop_flow(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        async with self._lock:
            meta = self._flow(name)
            if meta["trigger"]["triggerType"] == "OnDemand":
                raise ServiceError(
                    "UnsupportedOperationException",
                    f"Flow {name} runs on demand: StopFlow applies to scheduled and "
                    "event-triggered flows.",
                    status=400,
                )
            if meta["status"] != "Active":
                raise conflict(f"Flow {name} is not active (it is {meta['status']}).")
            meta["status"] = "Suspended"
            await self.store.put(FLOW_PREFIX + name, meta)
        self._wake()
        return {"flowArn": self.flow_arn(name), "flowStatus": "Suspended"}

    def _cancel_local(self, eid: str) -> bool:
        scope = self._running.get(eid)
        if scope is None:
            return False
        self._cancelled.add(eid)
        scope.cancel()
        return True

    async def cancel_flow_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        ids = params.get("executionIds")
        invalid: list[str] = []
        async with self._lock:
            self._flow(name)
            runs = {r["id"]: r for r in self._runs(name)}
            wanted = (
                list(ids) if ids else [i for i, r in runs.items() if r["status"] == "InProgress"]
            )
            for eid in wanted:
                run = runs.get(eid)
                if run is None or run["status"] != "InProgress":
                    invalid.append(eid)
                    continue
                if run["state"] == "queued":
                    run.update(
                        status="Canceled", state="done", message="Canceled before it started."
                    )
                    await self._put_run(run)
                elif not self._cancel_local(eid):
                    run["status"] = "CancelStarted"
                    await self._put_run(run)
        return {"invalidExecutions": invalid}

    async def describe_flow_execution_records(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "flowName", FLOW_NAME_RE)
        self._flow(name)
        chunk, nxt = _page(self._runs(name), params)
        out: dict[str, Any] = {"flowExecutions": [self._record_out(r) for r in chunk]}
        if nxt:
            out["nextToken"] = nxt
        return out

    @staticmethod
    def _record_out(run: dict[str, Any]) -> dict[str, Any]:
        failures = int(run.get("errors", 0)) + int(run.get("put_failures", 0))
        error_info: dict[str, Any] = {"putFailuresCount": failures}
        if run.get("message"):
            error_info["executionMessage"] = run["message"]
        out: dict[str, Any] = {
            "executionId": run["id"],
            "executionStatus": run["status"],
            "executionResult": {
                "errorInfo": error_info,
                "bytesProcessed": int(run.get("bytes", 0)),
                "bytesWritten": int(run.get("bytes_written", 0)),
                "recordsProcessed": int(run.get("records", 0)),
                "numParallelProcesses": 1,
                "maxPageSize": conn.BATCH_RECORDS,
            },
            "startedAt": _ts(run.get("started")),
            "lastUpdatedAt": _ts(run.get("updated")),
        }
        if run.get("pull_start") is not None:
            out["dataPullStartTime"] = _ts(run["pull_start"])
        if run.get("pull_end") is not None:
            out["dataPullEndTime"] = _ts(run["pull_end"])
        return out

    # -- tags ----------------------------------------------------------------------------------

    def _tag_target(self, params: dict[str, Any]) -> str:
        arn = str(params.get("resourceArn") or "")
        prefix = f"arn:aws:appflow:{self.region}:{self.account_id}:flow/"
        if not re.match(r"^arn:aws:appflow:[\w-]*:\d{12}:[\w/!@#+=.-]+$", arn):
            raise validation(f"resourceArn {arn[:128]!r} is not a valid AppFlow ARN.")
        if not arn.startswith(prefix):
            raise not_found(f"Resource {arn} does not exist (only flows take tags).")
        return arn[len(prefix) :]

    async def tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._tag_target(params)
        new = _tags(params.get("tags"))
        async with self._lock:
            meta = self._flow(name)
            tags = dict(meta.get("tags") or {})
            tags.update(new)
            if len(tags) > TAGS_MAX:
                raise validation(f"A resource can have at most {TAGS_MAX} tags.")
            meta["tags"] = tags
            await self.store.put(FLOW_PREFIX + name, meta)
        return {}

    async def untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._tag_target(params)
        keys = params.get("tagKeys") or []
        async with self._lock:
            meta = self._flow(name)
            meta["tags"] = {k: v for k, v in (meta.get("tags") or {}).items() if k not in keys}
            await self.store.put(FLOW_PREFIX + name, meta)
        return {}

    async def list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._tag_target(params)
        return {"tags": dict(self._flow(name).get("tags") or {})}

    # -- the driver: runs ----------------------------------------------------------------------

    async def _fail_interrupted(self, token: str) -> None:
        """Mark every run left ``running`` by an earlier leader or process as failed."""
        for run in self.store.records(RUN_PREFIX):
            if (
                run.get("status") in ("InProgress", "CancelStarted")
                and run.get("state") == "running"
            ):
                if run.get("owner") == token:
                    continue
                interrupted = run["status"] == "InProgress"
                run.update(
                    status="Error" if interrupted else "Canceled",
                    state="done",
                    message=_clip(
                        "The run was interrupted (the node stopped or lost leadership) before "
                        f"it finished, after {run.get('records', 0)} records; it is not resumed. "
                        "The next run starts from the last successful run's watermark."
                        if interrupted
                        else "Canceled."
                    ),
                )
                await self._finish_flow(run, False)
                await self._put_run(run)
                log.warning(
                    "appflow run interrupted", extra={"flow": run["flow"], "execution": run["id"]}
                )

    async def _driver(self, nursery: trio.Nursery) -> None:
        while True:
            kick = self._kick
            for run in self.store.records(RUN_PREFIX):
                if run.get("state") == "queued" and run["id"] not in self._running:
                    if self._busy.get(run["flow"]):
                        continue
                    run.update(state="running", owner=self._token)
                    self._running[run["id"]] = trio.CancelScope()
                    self._busy[run["flow"]] = run["id"]
                    await self._put_run(run)
                    nursery.start_soon(self._execute, run)
            with trio.move_on_after(RECONCILE_INTERVAL_S):
                await kick.wait()

    async def _execute(self, run: dict[str, Any]) -> None:
        eid = run["id"]
        scope = self._running[eid]
        try:
            async with self._limiter:
                with scope:
                    await self._execute_run(run)
                if scope.cancelled_caught and eid in self._cancelled:
                    with trio.CancelScope(shield=True):
                        run.update(
                            status="Canceled",
                            state="done",
                            message=_clip(f"Canceled after {run.get('records', 0)} records."),
                        )
                        await self._finish_flow(run, False)
                        await self._put_run(run)
        finally:
            self._running.pop(eid, None)
            self._cancelled.discard(eid)
            if self._busy.get(run["flow"]) == eid:
                del self._busy[run["flow"]]
            self._done.set()
            self._done = trio.Event()
            self._wake()

    def _context(self, meta: dict[str, Any], run: dict[str, Any]) -> conn.RunContext:
        source = meta["source"]
        pipeline = tasks.compile_tasks(meta["tasks"])
        sched = meta["trigger"].get("scheduled") or {}
        incremental = sched.get("dataPullMode") == "Incremental" and run["trigger"] == "Scheduled"
        field = (source.get("incrementalPullConfig") or {}).get("datetimeTypeFieldName")
        return conn.RunContext(
            flow=meta["name"],
            execution_id=run["id"],
            started_ms=run["started"],
            root=self.root,
            broker=self.broker,
            sqs=self.sqs,
            sns=self.sns,
            events=self.events,
            projection=pipeline.projection,
            watermark_field=field if incremental else None,
            watermark=conn.watermark_in(meta.get("watermark")) if incremental else None,
            first_from_ms=sched.get("firstExecutionFrom") if incremental else None,
        )

    def _source(self, meta: dict[str, Any], ctx: conn.RunContext) -> conn.Source:
        source = meta["source"]
        props = source["sourceConnectorProperties"]
        if source["connectorType"] == "S3":
            return conn.DirSource(ctx, props["S3"])
        custom = props["CustomConnector"]
        profile = self._profile(str(source.get("connectorProfileName")))
        label = profile["label"]
        entity = str(custom["entityName"])
        extra = dict(custom.get("customProperties") or {})
        if label == "polymq-sqs":
            return conn.SqsSource(ctx, entity)
        if label == "polymq-http":
            return conn.HttpSource(ctx, profile, entity, extra)
        return conn.SqlSource(ctx, conn.sql_url(self.root, profile), entity)

    def _destination(self, meta: dict[str, Any], ctx: conn.RunContext) -> conn.Destination:
        dest = meta["destinations"][0]
        props = dest["destinationConnectorProperties"]
        if dest["connectorType"] == "S3":
            fields = tasks.compile_tasks(meta["tasks"]).destination_fields()
            return conn.DirDestination(ctx, props["S3"], fields)
        if dest["connectorType"] == "EventBridge":
            return conn.EventsDestination(ctx, str(props["EventBridge"]["object"]))
        custom = props["CustomConnector"]
        profile = self._profile(str(dest.get("connectorProfileName")))
        label = profile["label"]
        entity = str(custom["entityName"])
        extra = dict(custom.get("customProperties") or {})
        if label == "polymq-sqs":
            return conn.SqsDestination(ctx, entity, extra)
        if label == "polymq-sns":
            return conn.SnsDestination(ctx, entity)
        return conn.SqlDestination(
            ctx,
            conn.sql_url(self.root, profile),
            entity,
            custom.get("writeOperationType") or "INSERT",
            list(custom.get("idFieldNames") or []),
        )

    @staticmethod
    def _fail_first(meta: dict[str, Any]) -> bool:
        props = meta["destinations"][0]["destinationConnectorProperties"]
        for value in props.values():
            if isinstance(value, dict):
                handling = value.get("errorHandlingConfig") or {}
                if handling.get("failOnFirstDestinationError"):
                    return True
        return False

    async def _execute_run(self, run: dict[str, Any]) -> None:
        name = run["flow"]
        meta = self.store.get(FLOW_PREFIX + name)
        if meta is None:
            return
        ok = False
        message: str | None = None
        source: conn.Source | None = None
        dest: conn.Destination | None = None
        samples: list[str] = []
        new_mark: Any = None
        try:
            try:
                ctx = self._context(meta, run)
                source = self._source(meta, ctx)
                dest = self._destination(meta, ctx)
                pipeline = tasks.compile_tasks(meta["tasks"])
            except (ServiceError, tasks.TaskError) as exc:
                raise conn.ConnectorError(str(exc), "ValidationException") from None
            if ctx.watermark_field is not None:
                if ctx.watermark is not None:
                    run["pull_start"] = _wm_ms(ctx.watermark)
                elif ctx.first_from_ms is not None:
                    run["pull_start"] = ctx.first_from_ms
                run["pull_end"] = run["started"]
            fail_first = self._fail_first(meta)
            filter_mark = ctx.watermark_field is not None and not source.pushes_down_watermark
            mark_key = _mark_key(ctx.watermark) if ctx.watermark is not None else None
            last_progress = trio.current_time()
            async with contextlib.aclosing(source.batches()) as batches:  # type: ignore[type-var]
                async for batch in batches:
                    records = batch.records
                    if filter_mark:
                        records, new_mark, skipped = _above_mark(
                            records,
                            ctx.watermark_field or "",
                            mark_key,
                            ctx.first_from_ms,
                            new_mark,
                        )
                        run["filtered"] += skipped
                    for err in batch.errors:
                        run["errors"] += 1
                        if len(samples) < tasks.ERROR_SAMPLES_MAX:
                            samples.append(err)
                    result = tasks.run(pipeline, records)
                    run["records"] += len(records) + len(batch.errors)
                    run["bytes"] += batch.bytes
                    run["filtered"] += result.filtered
                    run["dropped"] += result.dropped
                    run["errors"] += result.errors
                    samples.extend(result.error_samples[: tasks.ERROR_SAMPLES_MAX - len(samples)])
                    if result.terminated is not None:
                        if batch.nack is not None:
                            await batch.nack()
                        raise conn.ConnectorError(
                            f"Terminated by a Validate task: {result.terminated}",
                            "ValidationException",
                        )
                    written = await dest.write(result.records)
                    run["written"] += written.count
                    run["bytes_written"] += written.bytes
                    run["put_failures"] += written.failures
                    samples.extend(
                        written.failure_samples[: tasks.ERROR_SAMPLES_MAX - len(samples)]
                    )
                    if written.failures and fail_first:
                        if batch.nack is not None:
                            await batch.nack()
                        raise conn.ConnectorError(
                            "The destination refused a record and errorHandlingConfig."
                            f"failOnFirstDestinationError is set: {written.failure_samples[0]}"
                        )
                    if batch.ack is not None:
                        await batch.ack()
                    now = trio.current_time()
                    if now - last_progress >= PROGRESS_INTERVAL_S:
                        last_progress = now
                        await self._put_run(run)
            if source.pushes_down_watermark:
                new_mark = source.new_watermark
            ok = True
        except conn.ConnectorError as exc:
            message = f"{exc.code}: {exc.message}"
        except trio.Cancelled:
            raise
        except Exception as exc:  # a connector bug must not take the driver down
            log.exception("appflow run failed", extra={"flow": name, "execution": run["id"]})
            message = f"InternalServerException: {type(exc).__name__}: {exc}"
        finally:
            with trio.CancelScope(shield=True):
                if source is not None:
                    try:
                        await source.close(ok)
                    except Exception as exc:
                        log.warning("appflow source close failed", extra={"error": str(exc)})
                if dest is not None:
                    try:
                        await dest.finish(ok)
                    except Exception as exc:
                        ok = False
                        message = f"ConnectorServerException: cannot finish the destination: {exc}"
        summary = (
            f"Read {run['records']} records, wrote {run['written']}; {run['filtered']} filtered, "
            f"{run['dropped']} dropped by validation, {run['errors']} record errors, "
            f"{run['put_failures']} destination failures."
        )
        if samples:
            summary += " First errors: " + "; ".join(samples[:3])
        run["status"] = "Successful" if ok else "Error"
        run["state"] = "done"
        run["message"] = _clip(summary if message is None else f"{message} ({summary})")
        await self._finish_flow(run, ok, new_mark if ok else None)
        await self._put_run(run)

    async def _finish_flow(self, run: dict[str, Any], ok: bool, new_mark: Any = None) -> None:
        """Record the run on its flow: last run details, the watermark, the error streak. Called
        before the run's own record is written, so whoever sees the run finished sees it on its
        flow too."""
        run["updated"] = self.wall_ms()
        async with self._lock:
            meta = self.store.get(FLOW_PREFIX + run["flow"])
            if meta is None:
                return
            meta["last"] = {
                "status": run["status"],
                "message": run.get("message"),
                "time": run.get("updated"),
            }
            if ok and new_mark is not None:
                meta["watermark"] = conn.watermark_out(new_mark)
            meta["failures"] = 0 if ok else int(meta.get("failures") or 0) + 1
            threshold = ((meta["trigger"].get("scheduled") or {}) or {}).get(
                "flowErrorDeactivationThreshold"
            )
            if threshold and meta["failures"] >= int(threshold) and meta["status"] == "Active":
                meta["status"] = "Suspended"
                meta["status_message"] = (
                    f"Deactivated after {meta['failures']} consecutive failed runs."
                )
            await self.store.put(FLOW_PREFIX + run["flow"], meta)
        await self._report(run, meta)

    async def _report(self, run: dict[str, Any], meta: dict[str, Any]) -> None:
        """AppFlow's ``AppFlow End Flow Run Report`` event on the default bus."""
        if self.events is None or run["status"] == "InProgress":
            return
        from broker.adapters.events import BUS_PREFIX

        event = self.events.build_event(
            source="aws.appflow",
            detail_type="AppFlow End Flow Run Report",
            detail={
                "flow-name": run["flow"],
                "flow-arn": self.flow_arn(run["flow"]),
                "source": meta["source"]["connectorType"],
                "destination": meta["destinations"][0]["connectorType"],
                "source-object": "",
                "destination-object": "",
                "trigger-type": run.get("trigger"),
                "num-of-records-processed": str(run.get("records", 0)),
                "execution-id": run["id"],
                "num-of-records-filtered": str(run.get("filtered", 0)),
                "start-time": conn.jsonable(_ts(run.get("started"))),
                "end-time": conn.jsonable(_ts(run.get("updated"))),
                "num-of-mapped-fields": "",
                "status": "Execution Successful"
                if run["status"] == "Successful"
                else "Execution Failed",
                "error-message": run.get("message") if run["status"] != "Successful" else "",
            },
            resources=[self.flow_arn(run["flow"])],
            time_ms=self.wall_ms(),
        )
        try:
            await self.broker.publish(
                BUS_PREFIX + "default", [self.events.message(event, self.wall_ms())], vhost=VHOST
            )
        except BrokerError as exc:
            log.warning("appflow run report not published", extra={"error": exc.text})

    # -- the scheduler -------------------------------------------------------------------------

    def _due(self, meta: dict[str, Any], now: int) -> int | None:
        sched = meta["trigger"].get("scheduled") or {}
        try:
            schedule = parse_flow_schedule(sched["scheduleExpression"])
        except (ScheduleError, KeyError):
            return None
        start = sched.get("scheduleStartTime") or meta.get("activated") or now
        fired = meta.get("fired")
        after = fired if fired is not None else start - 1
        due = next_firing(schedule, after, start)
        if due is not None and due + MISSED_FIRING_GRACE_MS < now:
            due = next_firing(schedule, now - 1, start)  # missed while down: not made up
        end = sched.get("scheduleEndTime")
        if due is None or (end is not None and due > end):
            return None
        return due

    async def _scheduler(self) -> None:
        while True:
            kick = self._kick
            now = self.wall_ms()
            wait_s = RECONCILE_INTERVAL_S
            for meta in self.store.records(FLOW_PREFIX):
                if meta["status"] != "Active" or meta["trigger"]["triggerType"] != "Scheduled":
                    continue
                due = self._due(meta, now)
                if due is None:
                    continue
                offset_ms = int((meta["trigger"]["scheduled"] or {}).get("scheduleOffset") or 0)
                at = due + offset_ms * 1000
                if at > now:
                    wait_s = min(wait_s, (at - now) / 1000)
                    continue
                await self._fire(meta["name"], due)
            with trio.move_on_after(max(0.0, wait_s)):
                await kick.wait()

    async def _fire(self, name: str, due: int) -> None:
        async with self._lock:
            meta = self.store.get(FLOW_PREFIX + name)
            if meta is None or meta["status"] != "Active":
                return
            meta["fired"] = due
            await self.store.put(FLOW_PREFIX + name, meta)
            if self._in_progress(name) is not None:
                log.info("appflow firing skipped: a run is in progress", extra={"flow": name})
                return
            await self._queue_run(meta, "Scheduled")

    # -- event watchers ------------------------------------------------------------------------

    async def _watchers(self) -> None:
        scopes: dict[str, tuple[str, trio.CancelScope]] = {}
        async with trio.open_nursery() as nursery:
            while True:
                kick = self._kick
                wanted: dict[str, str] = {}
                for meta in self.store.records(FLOW_PREFIX):
                    if meta["status"] == "Active" and meta["trigger"]["triggerType"] == "Event":
                        entity = meta["source"]["sourceConnectorProperties"]["CustomConnector"][
                            "entityName"
                        ]
                        wanted[meta["name"]] = conn._queue_name(str(entity))
                for name, (queue, scope) in list(scopes.items()):
                    if wanted.get(name) != queue:
                        scope.cancel()
                        del scopes[name]
                for name, queue in wanted.items():
                    if name not in scopes:
                        scope = trio.CancelScope()
                        scopes[name] = (queue, scope)
                        nursery.start_soon(self._watch, name, queue, scope)
                with trio.move_on_after(RECONCILE_INTERVAL_S):
                    await kick.wait()

    async def _watch(self, name: str, queue: str, scope: trio.CancelScope) -> None:
        """Start a run of event flow ``name`` whenever ``queue`` has messages and no run of
        the flow is in progress."""
        with scope:
            while True:
                done = self._done
                if self._in_progress(name) is not None:
                    with trio.move_on_after(WATCH_WAIT_S):
                        await done.wait()
                    continue
                counts = self.broker.queue_counts(queue, vhost=VHOST)
                if counts is None:
                    await trio.sleep(WATCH_WAIT_S)
                    continue
                if counts[0] > 0:
                    async with self._lock:
                        meta = self.store.get(FLOW_PREFIX + name)
                        if meta is None or meta["status"] != "Active":
                            return
                        if self._in_progress(name) is None:
                            await self._queue_run(meta, "Event")
                    continue
                await self.broker.wait_ready(queue, vhost=VHOST, timeout_s=WATCH_WAIT_S)


# -- incremental pulls over sources that cannot filter ---------------------------------------


def _mark_key(value: Any) -> Any:
    """What watermark values compare by: numbers as they are, dates as epoch ms, other text as
    text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return tasks.to_epoch_ms(conn.jsonable(value))
    text = str(value)
    try:
        return tasks.to_epoch_ms(text)
    except tasks.RecordError:
        return text


def _wm_ms(value: Any) -> int | None:
    key = _mark_key(value)
    return int(key) if isinstance(key, int | float) else None


def _above_mark(
    records: list[dict[str, Any]],
    field: str,
    mark_key: Any,
    first_from_ms: int | None,
    best: Any,
) -> tuple[list[dict[str, Any]], Any, int]:
    """The records whose ``field`` is above the watermark (or at/after ``first_from_ms`` on a
    first run), the highest value seen so far, and how many were left out."""
    kept = []
    best_key = _mark_key(best) if best is not None else None
    skipped = 0
    for rec in records:
        value = rec.get(field)
        if tasks.is_null(value):
            skipped += 1
            continue
        key = _mark_key(value)
        try:
            if mark_key is not None:
                if not key > mark_key:
                    skipped += 1
                    continue
            elif first_from_ms is not None and isinstance(key, int | float) and key < first_from_ms:
                skipped += 1
                continue
            if best_key is None or key > best_key:
                best, best_key = value, key
        except TypeError:
            skipped += 1
            continue
        kept.append(rec)
    return kept, best, skipped
