"""The EventBridge schema registry (boto3's ``schemas`` client) over the core API.

Mapping (DESIGN.md section 3): everything lives in the replicated log as core entities, one
small durable internal fanout exchange per object, its metadata in the argument ``x-schemas``:

* registry ``name`` -> ``schemas-registry:<name>`` (description, tags, resource policy, times).
  ``discovered-schemas`` is declared when the adapter starts; ``aws.events`` is built in
  (read-only, not stored: its schemas are generated from sample AWS events at start).
* schema ``<registry>/<name>`` -> ``schemas-schema:<registry>/<name>`` (description, tags, type,
  the list of kept versions with their type and date, code bindings put), and each version's
  content in ``schemas-version:<registry>/<name>/<version>``: a new version is one small
  command, however many versions the schema has. At most ``VERSIONS_KEPT_MAX`` versions are
  kept (the oldest go), each at most ``CONTENT_CHARS_MAX`` characters.
* discoverer ``<id>`` -> ``schemas-discoverer:<id>`` (source bus, state, description, tags,
  cross-account flag). While STARTED, the discoverer is fed by a transient queue
  ``schemas-discovery:<id>`` of this node (not durable, not exclusive, never logged) bound to
  the bus exchange ``events:<bus>`` without a pattern (every event, at most
  ``DISCOVERY_SAMPLES_PER_S`` a second: a sampled binding of the core), capped at
  ``DISCOVERY_BACKLOG_MAX`` messages and ``DISCOVERY_BACKLOG_BYTES_MAX`` bytes (the oldest
  dropped: discovery samples). The binding is transient too, so it never makes a PutEvents
  logged: a publish is logged exactly when it reaches a durable target, as without a
  discoverer, and the discovery copy is an in-memory enqueue. The queue and binding are
  declared again when the adapter starts (and every ``RECONCILE_INTERVAL_S``); events put
  while the node is down, or dropped from a full queue, are not sampled. A worker task of this
  adapter drains the queue in batches (no acks), infers a schema per (source, detail-type)
  (``schemas_infer``), merges it with what was seen before and writes a new version of
  ``<source>@<DetailType>`` in ``discovered-schemas`` only when the merged schema changed (the
  versions are durable; discovery goes on from the latest one after a restart).
* account-wide resource policy (PutResourcePolicy without a registry) -> ``schemas-account``.

Code bindings (``schemas_codegen``) are generated on request from the version's content; only
the fact that one was put (language, version, dates) is stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio

from broker.adapters import schemas_codegen as codegen
from broker.adapters import schemas_infer as infer
from broker.adapters.errors import Dispatcher, ServiceCodes, ServiceError
from broker.adapters.store import ExchangeStore
from broker.api import SERVICE_SESSION_BASE, Broker, BrokerError

log = logging.getLogger("polymq.schemas")

VHOST = "/"
#: The service session discovery workers hold events in.
SCHEMAS_SESSION = SERVICE_SESSION_BASE + 12
META = "x-schemas"
REGISTRY_PREFIX = "schemas-registry:"
SCHEMA_PREFIX = "schemas-schema:"
VERSION_PREFIX = "schemas-version:"
DISCOVERER_PREFIX = "schemas-discoverer:"
DISCOVERY_QUEUE_PREFIX = "schemas-discovery:"
ACCOUNT_HOLDER = "schemas-account"
BUS_PREFIX = "events:"
DISCOVERER_ARG = "x-schemas-discoverer"

AWS_REGISTRY = "aws.events"
DISCOVERED_REGISTRY = "discovered-schemas"
TYPES = ("OpenApi3", "JSONSchemaDraft4")

# limits
REGISTRIES_MAX = 100
SCHEMAS_PER_REGISTRY_MAX = 1_000
VERSIONS_KEPT_MAX = 100
CONTENT_CHARS_MAX = 100_000
DISCOVERERS_MAX = 100
TAGS_MAX = 50
DESCRIPTION_CHARS_MAX = 256
POLICY_CHARS_MAX = 20_480
LIST_LIMIT_MAX = 100
DISCOVER_EVENTS_MAX = 10
#: events taken from a discoverer's queue per read (at most one read per interval)
DISCOVERY_BATCH = 50
#: the worker reads at most this often, so a busy bus costs a few reads a second whatever its
#: rate (beyond ``DISCOVERY_BATCH`` per read the queue's bound drops the oldest)
DISCOVERY_INTERVAL_S = 0.5
#: events of one (source, detail-type) inferred per read; the rest of the read is skipped
#: unparsed, so inference costs at most this many events per type per interval
DISCOVERY_SAMPLE_PER_TYPE = 10
#: events a discoverer's queue receives per second at most (the core's sampled binding,
#: ``x-sample-per-s``): a busy bus costs the node a counter per event beyond these, not a copy
DISCOVERY_SAMPLES_PER_S = 2 * DISCOVERY_BATCH
DISCOVERY_IDLE_WAIT_S = 5.0
DISCOVERY_BACKLOG_MAX = 1_000
DISCOVERY_BACKLOG_BYTES_MAX = 32 * 1024 * 1024
#: the feed of a discoverer: this node's memory only, bounded, the oldest dropped when full
DISCOVERY_QUEUE_ARGS: dict[str, Any] = {
    "x-max-length": DISCOVERY_BACKLOG_MAX,
    "x-max-length-bytes": DISCOVERY_BACKLOG_BYTES_MAX,
    "x-overflow": "drop-head",
}
DISCOVERY_EVENT_BYTES_MAX = 256 * 1024
DISCOVERY_CACHE_MAX = 1_000
RECONCILE_INTERVAL_S = 5.0

REGISTRY_NAME_RE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
SCHEMA_NAME_RE = re.compile(r"^[\.\-_A-Za-z0-9@]{1,385}$")
BUS_ARN_RE = re.compile(
    r"^arn:aws[\w-]*:events:[\w-]*:\d{12}:event-bus/([/\.\-_A-Za-z0-9]{1,256})$"
)

#: Sample AWS events the built-in ``aws.events`` registry's schemas are inferred from.
AWS_SAMPLE_EVENTS: list[dict[str, Any]] = [
    {
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/my-schedule"],
        "detail": {},
    },
    {
        "source": "aws.ec2",
        "detail-type": "EC2 Instance State-change Notification",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0"],
        "detail": {"instance-id": "i-1234567890abcdef0", "state": "running"},
    },
    {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "resources": ["arn:aws:s3:::example-bucket"],
        "detail": {
            "version": "0",
            "bucket": {"name": "example-bucket"},
            "object": {
                "key": "example-key",
                "size": 5,
                "etag": "b1946ac92492d2347c6235b4d2611184",
                "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    },
    {
        "source": "aws.s3",
        "detail-type": "Object Deleted",
        "resources": ["arn:aws:s3:::example-bucket"],
        "detail": {
            "version": "0",
            "bucket": {"name": "example-bucket"},
            "object": {"key": "example-key", "sequencer": "617f0837b476e463"},
            "request-id": "0BH729840619AG5K",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "DeleteObject",
            "deletion-type": "Delete Marker Created",
        },
    },
    {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "resources": ["arn:aws:states:us-east-1:123456789012:execution:machine:run"],
        "detail": {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:machine:run",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:machine",
            "name": "run",
            "status": "FAILED",
            "startDate": 1551225271984,
            "stopDate": 1551225271984,
            "input": "{}",
            "output": "{}",
        },
    },
    {
        "source": "aws.codepipeline",
        "detail-type": "CodePipeline Pipeline Execution State Change",
        "resources": ["arn:aws:codepipeline:us-east-1:123456789012:pipeline"],
        "detail": {
            "pipeline": "pipeline",
            "execution-id": "01234567-0123-0123-0123-012345678901",
            "state": "STARTED",
            "version": 1.0,
        },
    },
]
#: When the built-in schemas say they were created (2019-12-01, the registry's launch).
AWS_SCHEMAS_CREATED_MS = 1_575_158_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def bad_request(message: str) -> ServiceError:
    return ServiceError("BadRequestException", message, status=400)


def not_found(message: str) -> ServiceError:
    return ServiceError("NotFoundException", message, status=404)


def conflict(message: str) -> ServiceError:
    return ServiceError("ConflictException", message, status=409)


def forbidden(message: str) -> ServiceError:
    return ServiceError("ForbiddenException", message, status=403)


def _str(params: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise bad_request(f"{name} is required.")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
    return value


def _need(params: dict[str, Any], name: str) -> str:
    value = _str(params, name)
    assert value is not None
    return value


def _description(params: dict[str, Any]) -> str | None:
    value = _str(params, "Description", required=False)
    if value is not None and len(value) > DESCRIPTION_CHARS_MAX:
        raise bad_request(f"Description must be at most {DESCRIPTION_CHARS_MAX} characters.")
    return value


def _tags_in(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("Tags must be a map of strings.")
    if len(raw) > TAGS_MAX:
        raise bad_request(f"A resource can have at most {TAGS_MAX} tags.")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 128:
            raise bad_request("Tag keys must be 1 to 128 characters.")
        out[k] = "" if v is None else str(v)
    return out


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    limit = params.get("Limit")
    if limit is None:
        limit = LIST_LIMIT_MAX
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise bad_request("Limit must be a positive integer.")
    limit = min(limit, LIST_LIMIT_MAX)
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except ValueError:
            raise bad_request("The NextToken provided is not valid.") from None
        if start < 0:
            raise bad_request("The NextToken provided is not valid.")
    chunk = items[start : start + limit]
    nxt = None
    if start + limit < len(items):
        nxt = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return chunk, nxt


def _with_token(out: dict[str, Any], nxt: str | None) -> dict[str, Any]:
    if nxt is not None:
        out["NextToken"] = nxt
    return out


class SchemasAdapter(Dispatcher):
    codes = ServiceCodes(
        unsupported="BadRequestException",
        internal="InternalServerErrorException",
        busy="ServiceUnavailableException",
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
        self.store = ExchangeStore(broker, META, vhost=VHOST)
        self.account_id = account_id
        self.region = region
        self.wall_ms = wall_ms or _now_ms
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._workers: set[str] = set()
        #: discovered schema name -> merged inline tree of every event seen (a cache of what
        #: the latest version says; rebuilt from it on a miss)
        self._trees: dict[str, infer.Tree] = {}
        self._aws_schemas = self._build_aws_schemas()
        #: bumps after each batch a discovery worker finished (tests and benchmarks wait on it)
        self.discovered_batches = 0
        self._actions = {
            "CreateRegistry": self.create_registry,
            "DescribeRegistry": self.describe_registry,
            "UpdateRegistry": self.update_registry,
            "DeleteRegistry": self.delete_registry,
            "ListRegistries": self.list_registries,
            "CreateSchema": self.create_schema,
            "DescribeSchema": self.describe_schema,
            "UpdateSchema": self.update_schema,
            "DeleteSchema": self.delete_schema,
            "DeleteSchemaVersion": self.delete_schema_version,
            "ListSchemas": self.list_schemas,
            "ListSchemaVersions": self.list_schema_versions,
            "SearchSchemas": self.search_schemas,
            "ExportSchema": self.export_schema,
            "GetDiscoveredSchema": self.get_discovered_schema,
            "CreateDiscoverer": self.create_discoverer,
            "DescribeDiscoverer": self.describe_discoverer,
            "UpdateDiscoverer": self.update_discoverer,
            "DeleteDiscoverer": self.delete_discoverer,
            "ListDiscoverers": self.list_discoverers,
            "StartDiscoverer": self.start_discoverer,
            "StopDiscoverer": self.stop_discoverer,
            "PutCodeBinding": self.put_code_binding,
            "DescribeCodeBinding": self.describe_code_binding,
            "GetCodeBindingSource": self.get_code_binding_source,
            "PutResourcePolicy": self.put_resource_policy,
            "GetResourcePolicy": self.get_resource_policy,
            "DeleteResourcePolicy": self.delete_resource_policy,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Declare ``discovered-schemas``, then run a discovery worker per started discoverer
        until cancelled (again, from the replicated state, each time this node leads a
        cluster)."""
        self._workers = set()
        self._trees = {}
        await self._ensure_discovered_registry()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with self._lock:
                await self._reconcile()
            nursery.start_soon(self._reconcile_loop)
            task_status.started()
            await trio.sleep_forever()

    async def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._dispatch(action, params)

    async def _ensure_discovered_registry(self) -> None:
        name = REGISTRY_PREFIX + DISCOVERED_REGISTRY
        if self.broker.exchange_info(name, vhost=VHOST) is None:
            now = self.wall_ms()
            meta = {"name": DISCOVERED_REGISTRY, "tags": {}, "created": now, "modified": now}
            try:
                await self.store.declare(name, meta)
            except BrokerError as exc:
                # another node of the cluster declared it first
                if exc.code != 406 or self.broker.exchange_info(name, vhost=VHOST) is None:
                    raise

    # -- ARNs -------------------------------------------------------------------------------------

    def _arn(self, resource: str) -> str:
        return f"arn:aws:schemas:{self.region}:{self.account_id}:{resource}"

    def registry_arn(self, registry: str) -> str:
        if registry == AWS_REGISTRY:
            return f"arn:aws:schemas:{self.region}::registry/{registry}"
        return self._arn(f"registry/{registry}")

    def schema_arn(self, registry: str, schema: str) -> str:
        if registry == AWS_REGISTRY:
            return f"arn:aws:schemas:{self.region}::schema/{registry}/{schema}"
        return self._arn(f"schema/{registry}/{schema}")

    def discoverer_arn(self, did: str) -> str:
        return self._arn(f"discoverer/{did}")

    # -- the built-in aws.events registry ---------------------------------------------------------

    @staticmethod
    def _build_aws_schemas() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for sample in AWS_SAMPLE_EVENTS:
            event = {
                "version": "0",
                "id": "7bf73129-1428-4cd3-a780-95db273d1602",
                "detail-type": sample["detail-type"],
                "source": sample["source"],
                "account": "123456789012",
                "time": "2019-12-01T00:00:00Z",
                "region": "us-east-1",
                "resources": sample["resources"],
                "detail": sample["detail"],
            }
            name = infer.discovered_name(sample["source"], sample["detail-type"])
            doc = infer.discover([event])
            out[name] = {
                "registry": AWS_REGISTRY,
                "name": name,
                "type": "OpenApi3",
                "description": f"Schema for event type {sample['detail-type']}, published by "
                f"AWS service {sample['source']}",
                "tags": {},
                "created": AWS_SCHEMAS_CREATED_MS,
                "modified": AWS_SCHEMAS_CREATED_MS,
                "versions": [["1", AWS_SCHEMAS_CREATED_MS, "OpenApi3"]],
                "latest": 1,
                "bindings": {},
                "content": {"1": json.dumps(doc, indent=2)},
            }
        return out

    # -- registries -------------------------------------------------------------------------------

    def _registry_name(self, params: dict[str, Any], name: str = "RegistryName") -> str:
        registry = _need(params, name)
        return registry

    def _registry(self, registry: str) -> dict[str, Any]:
        if registry == AWS_REGISTRY:
            return {"name": AWS_REGISTRY, "tags": {}, "scope": "AWS"}
        meta = self.store.get(REGISTRY_PREFIX + registry)
        if meta is None:
            raise not_found(f"Registry {registry} does not exist.")
        return meta

    def _writable_registry(self, registry: str) -> dict[str, Any]:
        if registry == AWS_REGISTRY:
            raise forbidden(f"Registry {AWS_REGISTRY} is managed by AWS and cannot be changed.")
        return self._registry(registry)

    def _registry_out(self, meta: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "RegistryArn": self.registry_arn(meta["name"]),
            "RegistryName": meta["name"],
            "Tags": dict(meta.get("tags") or {}),
        }
        if meta.get("description") is not None:
            out["Description"] = meta["description"]
        return out

    async def create_registry(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        if not REGISTRY_NAME_RE.match(registry):
            raise bad_request(
                f"Invalid RegistryName {registry}: 1 to 64 letters, digits, '.', '-' or '_'."
            )
        description = _description(params)
        tags = _tags_in(params.get("Tags"))
        async with self._lock:
            if registry == AWS_REGISTRY or self.store.get(REGISTRY_PREFIX + registry) is not None:
                raise conflict(f"Registry {registry} already exists.")
            if len(self.store.items(REGISTRY_PREFIX)) >= REGISTRIES_MAX:
                raise bad_request(f"An account can have at most {REGISTRIES_MAX} registries.")
            now = self.wall_ms()
            meta: dict[str, Any] = {
                "name": registry,
                "description": description,
                "tags": tags,
                "created": now,
                "modified": now,
            }
            await self.store.declare(REGISTRY_PREFIX + registry, meta)
        return self._registry_out(meta)

    async def describe_registry(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._registry_out(self._registry(self._registry_name(params)))

    async def update_registry(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        description = _description(params)
        async with self._lock:
            meta = self._writable_registry(registry)
            if "Description" in params:
                meta["description"] = description
            meta["modified"] = self.wall_ms()
            await self.store.put(REGISTRY_PREFIX + registry, meta)
        return self._registry_out(meta)

    async def delete_registry(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        async with self._lock:
            self._writable_registry(registry)
            for name, meta in self.store.items(f"{SCHEMA_PREFIX}{registry}/"):
                await self._drop_schema(registry, name, meta)
            await self.store.drop(REGISTRY_PREFIX + registry)
        return {}

    async def list_registries(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = _str(params, "RegistryNamePrefix", required=False) or ""
        scope = _str(params, "Scope", required=False)
        if scope is not None and scope not in ("LOCAL", "AWS"):
            raise bad_request("Scope must be LOCAL or AWS.")
        metas: list[dict[str, Any]] = []
        if scope != "LOCAL":
            metas.append(self._registry(AWS_REGISTRY))
        if scope != "AWS":
            metas.extend(self.store.records(REGISTRY_PREFIX))
        metas = sorted((m for m in metas if m["name"].startswith(prefix)), key=lambda m: m["name"])
        chunk, nxt = _page(metas, params)
        return _with_token(
            {"Registries": [self._registry_out(m) for m in chunk]},
            nxt,
        )

    # -- schemas: storage -------------------------------------------------------------------------

    @staticmethod
    def _schema_holder(registry: str, schema: str) -> str:
        return f"{SCHEMA_PREFIX}{registry}/{schema}"

    @staticmethod
    def _version_holder(registry: str, schema: str, version: str) -> str:
        return f"{VERSION_PREFIX}{registry}/{schema}/{version}"

    def _schema_meta(self, registry: str, schema: str) -> dict[str, Any] | None:
        if registry == AWS_REGISTRY:
            return self._aws_schemas.get(schema)
        return self.store.get(self._schema_holder(registry, schema))

    def _schema(self, registry: str, schema: str) -> dict[str, Any]:
        self._registry(registry)
        meta = self._schema_meta(registry, schema)
        if meta is None:
            raise not_found(f"Schema {schema} does not exist in registry {registry}.")
        return meta

    def _version_of(self, meta: dict[str, Any], version: str | None) -> list[Any]:
        """``[version, created ms, type]`` of a kept version (None: the latest)."""
        versions: list[list[Any]] = meta.get("versions") or []
        if version is None:
            if not versions:
                raise not_found(f"Schema {meta['name']} has no versions.")
            return versions[-1]
        for row in versions:
            if row[0] == version:
                return row
        raise not_found(f"Version {version} of schema {meta['name']} does not exist.")

    def _content(self, meta: dict[str, Any], version: str) -> str:
        if meta["registry"] == AWS_REGISTRY:
            return str(meta["content"][version])
        held = self.store.get(self._version_holder(meta["registry"], meta["name"], version))
        if held is None:
            raise not_found(f"Version {version} of schema {meta['name']} does not exist.")
        return str(held["content"])

    async def _add_version(
        self, meta: dict[str, Any], kind: str, content: str, now: int
    ) -> dict[str, Any]:
        """Store ``content`` as the schema's next version; the schema's new metadata."""
        registry, schema = meta["registry"], meta["name"]
        version = str(int(meta.get("latest") or 0) + 1)
        await self.store.put(
            self._version_holder(registry, schema, version),
            {"content": content, "type": kind, "created": now},
        )
        versions = [list(v) for v in meta.get("versions") or []]
        versions.append([version, now, kind])
        meta = dict(meta)
        meta["latest"] = int(version)
        meta["type"] = kind
        meta["modified"] = now
        while len(versions) > VERSIONS_KEPT_MAX:
            old = versions.pop(0)
            await self.store.drop(self._version_holder(registry, schema, old[0]))
        meta["versions"] = versions
        await self.store.put(self._schema_holder(registry, schema), meta)
        return meta

    async def _drop_schema(self, registry: str, schema: str, meta: dict[str, Any]) -> None:
        for row in meta.get("versions") or []:
            await self.store.drop(self._version_holder(registry, schema, row[0]))
        await self.store.drop(self._schema_holder(registry, schema))
        if registry == DISCOVERED_REGISTRY:
            self._trees.pop(schema, None)

    def _schema_out(self, meta: dict[str, Any], row: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "LastModified": _ts(int(meta["modified"])),
            "SchemaArn": self.schema_arn(meta["registry"], meta["name"]),
            "SchemaName": meta["name"],
            "SchemaVersion": row[0],
            "Tags": dict(meta.get("tags") or {}),
            "Type": row[2],
            "VersionCreatedDate": _ts(int(row[1])),
        }
        if meta.get("description") is not None:
            out["Description"] = meta["description"]
        return out

    @staticmethod
    def _checked_content(params: dict[str, Any], kind: str) -> str:
        content = _need(params, "Content")
        if len(content) > CONTENT_CHARS_MAX:
            raise bad_request(f"Content must be at most {CONTENT_CHARS_MAX} characters.")
        why = infer.check_content(kind, content)
        if why is not None:
            raise bad_request(why)
        return content

    @staticmethod
    def _type(params: dict[str, Any], required: bool = True) -> str | None:
        kind = _str(params, "Type", required=required)
        if kind is not None and kind not in TYPES:
            raise bad_request(f"Invalid Type {kind}: must be one of {', '.join(TYPES)}.")
        return kind

    # -- schemas: API -----------------------------------------------------------------------------

    async def create_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        schema = _need(params, "SchemaName")
        if not SCHEMA_NAME_RE.match(schema):
            raise bad_request(
                f"Invalid SchemaName {schema}: 1 to 385 letters, digits, '.', '-', '_' or '@'."
            )
        kind = self._type(params)
        assert kind is not None
        content = self._checked_content(params, kind)
        description = _description(params)
        tags = _tags_in(params.get("Tags"))
        async with self._lock:
            self._writable_registry(registry)
            if self._schema_meta(registry, schema) is not None:
                raise conflict(f"Schema {schema} already exists in registry {registry}.")
            if len(self.store.items(f"{SCHEMA_PREFIX}{registry}/")) >= SCHEMAS_PER_REGISTRY_MAX:
                raise bad_request(
                    f"A registry can hold at most {SCHEMAS_PER_REGISTRY_MAX} schemas."
                )
            now = self.wall_ms()
            meta: dict[str, Any] = {
                "registry": registry,
                "name": schema,
                "description": description,
                "tags": tags,
                "created": now,
                "bindings": {},
            }
            meta = await self._add_version(meta, kind, content, now)
        return self._schema_out(meta, meta["versions"][-1])

    async def describe_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        meta = self._schema(self._registry_name(params), _need(params, "SchemaName"))
        row = self._version_of(meta, _str(params, "SchemaVersion", required=False))
        out = self._schema_out(meta, row)
        out["Content"] = self._content(meta, row[0])
        return out

    async def update_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        schema = _need(params, "SchemaName")
        kind = self._type(params, required=False)
        description = _description(params)
        async with self._lock:
            self._writable_registry(registry)
            meta = self._schema(registry, schema)
            latest = self._version_of(meta, None)
            now = self.wall_ms()
            if "Description" in params:
                meta["description"] = description
            if params.get("Content") is not None:
                kind = kind or str(latest[2])
                content = self._checked_content(params, kind)
                if content != self._content(meta, latest[0]) or kind != latest[2]:
                    meta = await self._add_version(meta, kind, content, now)
                    return self._schema_out(meta, meta["versions"][-1])
            elif kind is not None and kind != latest[2]:
                raise bad_request("Content is required to change the Type of a schema.")
            meta["modified"] = now
            await self.store.put(self._schema_holder(registry, schema), meta)
        return self._schema_out(meta, meta["versions"][-1])

    async def delete_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        schema = _need(params, "SchemaName")
        async with self._lock:
            self._writable_registry(registry)
            meta = self._schema(registry, schema)
            await self._drop_schema(registry, schema, meta)
        return {}

    async def delete_schema_version(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        schema = _need(params, "SchemaName")
        version = _need(params, "SchemaVersion")
        async with self._lock:
            self._writable_registry(registry)
            meta = self._schema(registry, schema)
            self._version_of(meta, version)
            versions = [v for v in meta.get("versions") or [] if v[0] != version]
            if not versions:
                await self._drop_schema(registry, schema, meta)
                return {}
            await self.store.drop(self._version_holder(registry, schema, version))
            meta["versions"] = versions
            meta["bindings"] = {
                k: b for k, b in (meta.get("bindings") or {}).items() if b["version"] != version
            }
            meta["modified"] = self.wall_ms()
            await self.store.put(self._schema_holder(registry, schema), meta)
            if registry == DISCOVERED_REGISTRY:
                self._trees.pop(schema, None)
        return {}

    def _schemas_of(self, registry: str) -> list[dict[str, Any]]:
        self._registry(registry)
        if registry == AWS_REGISTRY:
            return [self._aws_schemas[k] for k in sorted(self._aws_schemas)]
        metas = self.store.records(f"{SCHEMA_PREFIX}{registry}/")
        return sorted(metas, key=lambda m: str(m["name"]))

    async def list_schemas(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        prefix = _str(params, "SchemaNamePrefix", required=False) or ""
        metas = [m for m in self._schemas_of(registry) if str(m["name"]).startswith(prefix)]
        chunk, nxt = _page(metas, params)
        return _with_token(
            {
                "Schemas": [
                    {
                        "LastModified": _ts(int(m["modified"])),
                        "SchemaArn": self.schema_arn(registry, m["name"]),
                        "SchemaName": m["name"],
                        "Tags": dict(m.get("tags") or {}),
                        "VersionCount": len(m.get("versions") or []),
                    }
                    for m in chunk
                ]
            },
            nxt,
        )

    async def list_schema_versions(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        meta = self._schema(registry, _need(params, "SchemaName"))
        rows = list(meta.get("versions") or [])
        chunk, nxt = _page(rows, params)
        arn = self.schema_arn(registry, meta["name"])
        return _with_token(
            {
                "SchemaVersions": [
                    {
                        "SchemaArn": arn,
                        "SchemaName": meta["name"],
                        "SchemaVersion": r[0],
                        "Type": r[2],
                    }
                    for r in chunk
                ]
            },
            nxt,
        )

    async def search_schemas(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        keywords = _need(params, "Keywords").lower().split()
        found = []
        for m in self._schemas_of(registry):
            text = f"{m['name']} {m.get('description') or ''}".lower()
            if all(k in text for k in keywords):
                found.append(m)
        chunk, nxt = _page(found, params)
        return _with_token(
            {
                "Schemas": [
                    {
                        "RegistryName": registry,
                        "SchemaArn": self.schema_arn(registry, m["name"]),
                        "SchemaName": m["name"],
                        "SchemaVersions": [
                            {"CreatedDate": _ts(int(r[1])), "SchemaVersion": r[0], "Type": r[2]}
                            for r in reversed(m.get("versions") or [])
                        ],
                    }
                    for m in chunk
                ]
            },
            nxt,
        )

    async def export_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry_name(params)
        meta = self._schema(registry, _need(params, "SchemaName"))
        kind = self._type(params)
        if kind != "JSONSchemaDraft4":
            raise bad_request("ExportSchema exports to JSONSchemaDraft4 only.")
        row = self._version_of(meta, _str(params, "SchemaVersion", required=False))
        doc = json.loads(self._content(meta, row[0]))
        if row[2] == "OpenApi3":
            doc = infer.to_draft4(doc)
        return {
            "Content": json.dumps(doc),
            "SchemaArn": self.schema_arn(registry, meta["name"]),
            "SchemaName": meta["name"],
            "SchemaVersion": row[0],
            "Type": "JSONSchemaDraft4",
        }

    async def get_discovered_schema(self, params: dict[str, Any]) -> dict[str, Any]:
        kind = self._type(params)
        raw = params.get("Events")
        if not isinstance(raw, list) or not 1 <= len(raw) <= DISCOVER_EVENTS_MAX:
            raise bad_request(f"Events must list 1 to {DISCOVER_EVENTS_MAX} events.")
        events = []
        for i, text in enumerate(raw):
            if not isinstance(text, str) or len(text) > DISCOVERY_EVENT_BYTES_MAX:
                raise bad_request(f"Events[{i}] must be a JSON string of at most 256 KB.")
            try:
                event = json.loads(text)
            except ValueError:
                raise bad_request(f"Events[{i}] is not valid JSON.") from None
            if not isinstance(event, dict):
                raise bad_request(f"Events[{i}] must be a JSON object.")
            events.append(event)
        doc = infer.discover(events)
        if kind == "JSONSchemaDraft4":
            doc = infer.to_draft4(doc)
        return {"Content": json.dumps(doc)}

    # -- code bindings ----------------------------------------------------------------------------

    @staticmethod
    def _language(params: dict[str, Any]) -> str:
        language = _need(params, "Language")
        if language in codegen.LANGUAGES_NOT_GENERATED:
            raise bad_request(
                f"Language {language} is not supported by polymq; use one of "
                f"{', '.join(codegen.LANGUAGES)}."
            )
        if language not in codegen.LANGUAGES:
            raise bad_request(
                f"Invalid Language {language}: must be one of "
                f"{', '.join(codegen.LANGUAGES + codegen.LANGUAGES_NOT_GENERATED)}."
            )
        return language

    def _binding_of(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any], str, str]:
        language = self._language(params)
        registry = self._registry_name(params)
        meta = self._schema(registry, _need(params, "SchemaName"))
        row = self._version_of(meta, _str(params, "SchemaVersion", required=False))
        return meta, row, language, f"{language}@{row[0]}"

    async def put_code_binding(self, params: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            meta, row, _language, key = self._binding_of(params)
            bindings = dict(meta.get("bindings") or {})
            if key in bindings:
                return self._binding_out(bindings[key], "CREATE_COMPLETE")
            now = self.wall_ms()
            binding = {"version": row[0], "created": now}
            if meta["registry"] == AWS_REGISTRY:
                self._aws_schemas[meta["name"]]["bindings"][key] = binding
            else:
                bindings[key] = binding
                meta["bindings"] = bindings
                await self.store.put(self._schema_holder(meta["registry"], meta["name"]), meta)
        return self._binding_out(binding, "CREATE_IN_PROGRESS")

    @staticmethod
    def _binding_out(binding: dict[str, Any], status: str) -> dict[str, Any]:
        return {
            "CreationDate": _ts(int(binding["created"])),
            "LastModified": _ts(int(binding["created"])),
            "SchemaVersion": binding["version"],
            "Status": status,
        }

    def _put_binding(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any], str]:
        meta, row, language, key = self._binding_of(params)
        binding = (meta.get("bindings") or {}).get(key)
        if binding is None:
            raise not_found(
                f"No {language} code binding for version {row[0]} of schema {meta['name']}: "
                "put one first."
            )
        return meta, row, language

    async def describe_code_binding(self, params: dict[str, Any]) -> dict[str, Any]:
        meta, row, language = self._put_binding(params)
        return self._binding_out(meta["bindings"][f"{language}@{row[0]}"], "CREATE_COMPLETE")

    async def get_code_binding_source(self, params: dict[str, Any]) -> dict[str, Any]:
        meta, row, language = self._put_binding(params)
        doc = json.loads(self._content(meta, row[0]))
        if row[2] == "JSONSchemaDraft4":
            doc = infer.from_draft4(doc, meta["name"])
        body = codegen.source_zip(language, doc, meta["registry"], meta["name"])
        return {"Body": body}

    # -- resource policies ------------------------------------------------------------------------

    def _policy_holder(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        registry = _str(params, "RegistryName", required=False)
        if registry is None:
            return ACCOUNT_HOLDER, self.store.get(ACCOUNT_HOLDER) or {}
        return REGISTRY_PREFIX + registry, self._writable_registry(registry)

    async def put_resource_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        policy = params.get("Policy")
        if isinstance(policy, dict | list):
            policy = json.dumps(policy)
        if not isinstance(policy, str) or not policy:
            raise bad_request("Policy is required.")
        if len(policy) > POLICY_CHARS_MAX:
            raise bad_request(f"Policy must be at most {POLICY_CHARS_MAX} characters.")
        try:
            parsed = json.loads(policy)
        except ValueError:
            raise bad_request("Policy is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise bad_request("Policy must be a JSON object.")
        revision = _str(params, "RevisionId", required=False)
        async with self._lock:
            holder, meta = self._policy_holder(params)
            current = meta.get("policy")
            if revision is not None and (current is None or current["revision"] != revision):
                raise ServiceError(
                    "PreconditionFailedException",
                    "The RevisionId does not match the policy's current revision.",
                    status=412,
                )
            meta["policy"] = {"policy": policy, "revision": uuid.uuid4().hex}
            await self.store.put(holder, meta)
        return {"Policy": policy, "RevisionId": meta["policy"]["revision"]}

    async def get_resource_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        _holder, meta = self._policy_holder(params)
        policy = meta.get("policy")
        if policy is None:
            raise not_found("Resource policy does not exist.")
        return {"Policy": policy["policy"], "RevisionId": policy["revision"]}

    async def delete_resource_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            holder, meta = self._policy_holder(params)
            if meta.get("policy") is None:
                raise not_found("Resource policy does not exist.")
            meta["policy"] = None
            await self.store.put(holder, meta)
        return {}

    # -- tags -------------------------------------------------------------------------------------

    def _tag_holder(self, arn: str) -> tuple[str, dict[str, Any]]:
        prefix = f"arn:aws:schemas:{self.region}:{self.account_id}:"
        missing = not_found(f"Resource {arn} does not exist.")
        if not arn.startswith(prefix):
            raise missing
        kind, _, rest = arn[len(prefix) :].partition("/")
        holder = ""
        if kind == "registry":
            holder = REGISTRY_PREFIX + rest
        elif kind == "schema" and "/" in rest:
            holder = SCHEMA_PREFIX + rest
        elif kind == "discoverer":
            holder = DISCOVERER_PREFIX + rest
        meta = self.store.get(holder) if holder else None
        if meta is None:
            raise missing
        return holder, meta

    async def tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _need(params, "ResourceArn")
        tags = _tags_in(params.get("Tags"))
        if "Tags" not in params:
            raise bad_request("Tags is required.")
        async with self._lock:
            holder, meta = self._tag_holder(arn)
            merged = dict(meta.get("tags") or {})
            merged.update(tags)
            if len(merged) > TAGS_MAX:
                raise bad_request(f"A resource can have at most {TAGS_MAX} tags.")
            meta["tags"] = merged
            await self.store.put(holder, meta)
        return {}

    async def untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = _need(params, "ResourceArn")
        keys = params.get("TagKeys")
        if not isinstance(keys, list):
            raise bad_request("TagKeys is required.")
        async with self._lock:
            holder, meta = self._tag_holder(arn)
            meta["tags"] = {k: v for k, v in (meta.get("tags") or {}).items() if k not in set(keys)}
            await self.store.put(holder, meta)
        return {}

    async def list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        _holder, meta = self._tag_holder(_need(params, "ResourceArn"))
        return {"Tags": dict(meta.get("tags") or {})}

    # -- discoverers ------------------------------------------------------------------------------

    @staticmethod
    def discoverer_id(bus: str) -> str:
        return "events-event-bus-" + re.sub(r"[^\.\-_A-Za-z0-9]", "-", bus)

    def _discoverer(self, did: str) -> dict[str, Any]:
        meta = self.store.get(DISCOVERER_PREFIX + did)
        if meta is None:
            raise not_found(f"Discoverer {did} does not exist.")
        return meta

    def _discoverer_out(self, meta: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "DiscovererArn": self.discoverer_arn(meta["id"]),
            "DiscovererId": meta["id"],
            "SourceArn": meta["source"],
            "State": meta["state"],
            "CrossAccount": bool(meta.get("cross_account", True)),
            "Tags": dict(meta.get("tags") or {}),
        }
        if full and meta.get("description") is not None:
            out["Description"] = meta["description"]
        return out

    def _binding_spec(self, meta: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
        return (
            BUS_PREFIX + meta["bus"],
            DISCOVERY_QUEUE_PREFIX + meta["id"],
            f"schemas/{meta['id']}",
            {DISCOVERER_ARG: meta["id"], "x-sample-per-s": DISCOVERY_SAMPLES_PER_S},
        )

    async def _attach(self, meta: dict[str, Any]) -> None:
        """Declare the discoverer's transient queue and bind it to its bus (when the bus
        exists), start its worker."""
        bus, queue, rk, args = self._binding_spec(meta)
        if self.broker.exchange_info(bus, vhost=VHOST) is None:
            return
        info = self.broker.queue_info(queue, vhost=VHOST)
        if info is not None and (info["durable"] or info["exclusive"]):
            # a durable feed left by an earlier release: replaced by the transient one
            await self.broker.delete_queue(queue, vhost=VHOST)
        await self.broker.declare_queue(
            queue, vhost=VHOST, durable=False, arguments=DISCOVERY_QUEUE_ARGS
        )
        bound = any(
            b["destination"] == queue and b["routing_key"] == rk
            for b in self.broker.bindings_from(bus, vhost=VHOST)
        )
        if not bound:
            await self.broker.bind(bus, queue, rk, vhost=VHOST, arguments=args)
        self._start_worker(queue)

    async def _detach(self, meta: dict[str, Any]) -> None:
        try:
            await self.broker.delete_queue(DISCOVERY_QUEUE_PREFIX + meta["id"], vhost=VHOST)
        except BrokerError as exc:
            if exc.code != 404:
                raise

    async def _reconcile(self) -> None:
        """Started discoverers have their queue, binding and worker (a bus created again gets
        its binding back); queues of discoverers that are gone or stopped go."""
        wanted: set[str] = set()
        for did, meta in self.store.items(DISCOVERER_PREFIX):
            if meta.get("state") == "STARTED":
                wanted.add(DISCOVERY_QUEUE_PREFIX + did)
                await self._attach(meta)
        for q in self.broker.list_queues(vhost=VHOST):
            name = q["name"]
            if name.startswith(DISCOVERY_QUEUE_PREFIX) and name not in wanted:
                await self.broker.delete_queue(name, vhost=VHOST)

    async def _reconcile_loop(self) -> None:
        while True:
            await trio.sleep(RECONCILE_INTERVAL_S)
            try:
                async with self._lock:
                    await self._reconcile()
            except BrokerError as exc:
                log.warning("schemas reconcile failed", extra={"error": exc.text})

    async def create_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        source = _need(params, "SourceArn")
        match = BUS_ARN_RE.match(source)
        if match is None:
            raise bad_request(f"SourceArn {source} is not the ARN of an event bus.")
        bus = match.group(1)
        if self.broker.exchange_info(BUS_PREFIX + bus, vhost=VHOST) is None:
            raise bad_request(f"Event bus {bus} does not exist.")
        description = _description(params)
        tags = _tags_in(params.get("Tags"))
        cross = params.get("CrossAccount")
        did = self.discoverer_id(bus)
        async with self._lock:
            if self.store.get(DISCOVERER_PREFIX + did) is not None:
                raise conflict(f"Discoverer {did} already exists for event bus {bus}.")
            if len(self.store.items(DISCOVERER_PREFIX)) >= DISCOVERERS_MAX:
                raise bad_request(f"An account can have at most {DISCOVERERS_MAX} discoverers.")
            now = self.wall_ms()
            meta = {
                "id": did,
                "source": source,
                "bus": bus,
                "description": description,
                "state": "STARTED",
                "cross_account": True if cross is None else bool(cross),
                "tags": tags,
                "created": now,
            }
            await self.store.declare(DISCOVERER_PREFIX + did, meta)
            await self._attach(meta)
        return self._discoverer_out(meta)

    async def describe_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._discoverer_out(self._discoverer(_need(params, "DiscovererId")))

    async def update_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        did = _need(params, "DiscovererId")
        description = _description(params)
        async with self._lock:
            meta = self._discoverer(did)
            if "Description" in params:
                meta["description"] = description
            if params.get("CrossAccount") is not None:
                meta["cross_account"] = bool(params["CrossAccount"])
            await self.store.put(DISCOVERER_PREFIX + did, meta)
        return self._discoverer_out(meta)

    async def delete_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        did = _need(params, "DiscovererId")
        async with self._lock:
            meta = self._discoverer(did)
            await self._detach(meta)
            await self.store.drop(DISCOVERER_PREFIX + did)
        return {}

    async def list_discoverers(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = _str(params, "DiscovererIdPrefix", required=False) or ""
        source_prefix = _str(params, "SourceArnPrefix", required=False) or ""
        metas = [
            m
            for did, m in sorted(self.store.items(DISCOVERER_PREFIX))
            if did.startswith(prefix) and str(m["source"]).startswith(source_prefix)
        ]
        chunk, nxt = _page(metas, params)
        return _with_token(
            {"Discoverers": [self._discoverer_out(m, full=False) for m in chunk]}, nxt
        )

    async def _set_state(self, params: dict[str, Any], state: str) -> dict[str, Any]:
        did = _need(params, "DiscovererId")
        async with self._lock:
            meta = self._discoverer(did)
            if meta["state"] != state:
                meta["state"] = state
                await self.store.put(DISCOVERER_PREFIX + did, meta)
                if state == "STARTED":
                    await self._attach(meta)
                else:
                    await self._detach(meta)
        return {"DiscovererId": did, "State": state}

    async def start_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, "STARTED")

    async def stop_discoverer(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, "STOPPED")

    # -- discovery --------------------------------------------------------------------------------

    def _start_worker(self, queue: str) -> None:
        if self._nursery is None or queue in self._workers:
            return
        self._workers.add(queue)
        self._nursery.start_soon(self._worker, queue)

    async def _worker(self, queue: str) -> None:
        try:
            while True:
                counts = self.broker.queue_counts(queue, vhost=VHOST)
                if counts is None:
                    return
                got: list[Any] = []
                if counts[0]:
                    # no_ack: the copies leave the queue as they are read, nothing to settle
                    got, _ = await self.broker.get(
                        SCHEMAS_SESSION, queue, vhost=VHOST, max_n=DISCOVERY_BATCH, no_ack=True
                    )
                if not got:
                    await self.broker.wait_ready(
                        queue, vhost=VHOST, timeout_s=DISCOVERY_IDLE_WAIT_S
                    )
                    continue
                events = _sample([g[6] for g in got])
                await self.learn(events)
                self.discovered_batches += 1
                await trio.sleep(DISCOVERY_INTERVAL_S)
        except BrokerError as exc:
            if exc.code != 404:
                log.warning(
                    "schemas discovery worker stopped", extra={"queue": queue, "error": exc.text}
                )
        finally:
            self._workers.discard(queue)

    def _tree(self, schema: str) -> infer.Tree | None:
        tree = self._trees.get(schema)
        if tree is not None:
            return tree
        meta = self._schema_meta(DISCOVERED_REGISTRY, schema)
        if meta is None or not meta.get("versions"):
            return None
        row = meta["versions"][-1]
        if row[2] != "OpenApi3":
            return None
        try:
            return infer.tree_of(json.loads(self._content(meta, row[0])))
        except (ValueError, ServiceError):
            return None

    async def learn(self, events: list[Any]) -> list[str]:
        """Merge ``events`` into the discovered schemas; the names of those that got a new
        version."""
        groups: dict[tuple[str, str], infer.Tree] = {}
        counts: dict[tuple[str, str], int] = {}
        for event in events:
            keys = infer.event_keys(event)
            if keys is None:
                continue
            n = counts[keys] = counts.get(keys, 0) + 1
            if n > DISCOVERY_SAMPLE_PER_TYPE:
                continue
            groups[keys] = infer.merge(groups.get(keys), infer.infer(event))
        changed: list[str] = []
        for (source, detail_type), seen in groups.items():
            name = infer.discovered_name(source, detail_type)
            old = self._tree(name)
            tree = infer.merge(old, seen)
            if len(self._trees) >= DISCOVERY_CACHE_MAX:
                self._trees.clear()
            self._trees[name] = tree
            if old is not None and _canon(old) == _canon(tree):
                continue
            doc = infer.document(
                tree, source=source, detail_type=detail_type, title=infer.pascal(detail_type)
            )
            content = json.dumps(doc, indent=2)
            if len(content) > CONTENT_CHARS_MAX:
                log.warning("discovered schema too large", extra={"schema": name})
                continue
            if await self._write_discovered(name, content):
                changed.append(name)
        return changed

    async def _write_discovered(self, name: str, content: str) -> bool:
        async with self._lock:
            await self._ensure_discovered_registry()
            now = self.wall_ms()
            meta = self._schema_meta(DISCOVERED_REGISTRY, name)
            if meta is None:
                if len(self.store.items(f"{SCHEMA_PREFIX}{DISCOVERED_REGISTRY}/")) >= (
                    SCHEMAS_PER_REGISTRY_MAX
                ):
                    return False
                meta = {
                    "registry": DISCOVERED_REGISTRY,
                    "name": name,
                    "description": None,
                    "tags": {},
                    "created": now,
                    "bindings": {},
                }
            elif meta.get("versions"):
                latest = meta["versions"][-1]
                if latest[2] == "OpenApi3" and self._content(meta, latest[0]) == content:
                    return False
            await self._add_version(meta, "OpenApi3", content, now)
        return True


def _sample(bodies: list[bytes]) -> list[Any]:
    """The parsed events of one read that are inferred: at most ``DISCOVERY_SAMPLE_PER_TYPE``
    per (source, detail-type), told from the top of the body without parsing the others."""
    counts: dict[tuple[str, str] | None, int] = {}
    events: list[Any] = []
    for body in bodies:
        if len(body) > DISCOVERY_EVENT_BYTES_MAX:
            continue
        keys = infer.body_keys(body)
        n = counts[keys] = counts.get(keys, 0) + 1
        if n > DISCOVERY_SAMPLE_PER_TYPE:
            continue
        try:
            events.append(json.loads(body))
        except ValueError:
            continue
    return events


def _canon(tree: infer.Tree) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))
