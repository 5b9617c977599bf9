"""The management HTTP API, in the shapes of RabbitMQ's management plugin.

==============================================  ==================================================
resource                                        methods
==============================================  ==================================================
/api/overview                                   GET: message_stats, queue_totals, object_totals,
                                                node, cluster_name, listeners
/api/nodes, /api/nodes/{name}                   GET: every cluster member: role, term, commit
                                                index, lag, running; alarms of this node
/api/health, /api/health/checks/alarms          GET (RabbitMQ's health checks: 503 while an
                                                alarm is raised)
/api/queues[/{vhost}[/{name}]]                  GET: depth, consumers, message_stats with rates
/api/queues/{vhost}/{name}/get                  POST ``{"count", "ackmode", "encoding",
                                                "truncate"}``
/api/exchanges[/{vhost}[/{name}]]               GET
/api/exchanges/{vhost}/{name}/publish           POST ``{"properties", "routing_key",
                                                "payload", "payload_encoding"}``
/api/bindings[/{vhost}]                         GET
/api/connections[/{name}]                       GET; DELETE closes the connection
/api/cluster                                    GET: this node's Raft status
/metrics                                        GET: Prometheus text format (``broker.metrics``)
/, /static/{file}                               the management page
==============================================  ==================================================

Path segments are percent-decoded one by one, so the vhost ``/`` is written ``%2F`` and the
default exchange ``amq.default``, as in RabbitMQ. Errors are RabbitMQ's: 404 ``{"error":
"Object Not Found", "reason": "Not Found"}``, 400 ``{"error": "bad_request", "reason": ...}``,
405 for a method a resource does not take.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from broker import __version__
from broker.admin.rates import Rates
from broker.api import COMPLETE, DISCARD, REQUEUE, Broker, BrokerError
from broker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from broker.metrics import Metrics, queue_rows
from broker.node import Node

Reply = tuple[int, str, bytes]
Handler = Callable[..., Awaitable[Reply]]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: the files of the page, by URL path
STATIC_FILES = {"/": "index.html", "/static/app.js": "app.js", "/static/app.css": "app.css"}
#: POST .../get hands out at most this many messages per request
GET_COUNT_MAX = 1000
#: the session a POST .../get opens is closed within this, even when the request is cancelled
GET_CLOSE_TIMEOUT_S = 10.0
DEFAULT_EXCHANGE_ALIAS = "amq.default"
ACKMODES = {
    "ack_requeue_true": REQUEUE,
    "ack_requeue_false": COMPLETE,
    "reject_requeue_true": REQUEUE,
    "reject_requeue_false": DISCARD,
}
# AMQP basic properties a published message may carry, by JSON type
_STR_PROPS = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
_INT_PROPS = {"delivery_mode": (1, 2), "priority": (0, 255), "timestamp": (0, (1 << 63) - 1)}
# listener name -> the protocol RabbitMQ names it with in /api/overview
LISTENER_PROTOCOLS = {
    "amqp": "amqp",
    "mqtt": "mqtt",
    "mqtt_ws": "http/web-mqtt",
    "stomp": "stomp",
    "stomp_ws": "http/web-stomp",
    "http": "aws",
    "admin": "http",
    "cluster": "clustering",
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def _not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def _bad(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def json_reply(status: int, value: Any) -> Reply:
    return status, "application/json", json.dumps(value, default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def split_path(raw_path: str) -> list[str]:
    """``/api/queues/%2F/q`` -> ``["api", "queues", "/", "q"]``: split first, then decode."""
    from urllib.parse import unquote

    parts = raw_path.split("/")
    return [unquote(p) for p in parts[1:] if p != ""] if raw_path != "/" else []


class _NullSink:
    """The sink of the session a POST .../get uses: it never consumes."""

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:  # pragma: no cover
        pass

    def cancelled(self, tag: str) -> None:  # pragma: no cover
        pass


class ManagementApi:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.broker = Broker(node)
        self.metrics = Metrics(node)
        self.rates = Rates()
        # (method, path pattern) -> handler; "{}" matches one segment
        self.table: list[tuple[tuple[str, ...], tuple[str, ...], Handler]] = [
            (("GET",), ("api", "health"), self._health),
            (("GET",), ("api", "health", "checks", "alarms"), self._health_alarms),
            (("GET",), ("api", "overview"), self._overview),
            (("GET",), ("api", "cluster"), self._cluster),
            (("GET",), ("api", "nodes"), self._nodes),
            (("GET",), ("api", "nodes", "{}"), self._node),
            (("GET",), ("api", "queues"), self._queues),
            (("GET",), ("api", "queues", "{}"), self._queues),
            (("GET",), ("api", "queues", "{}", "{}"), self._queue),
            (("POST",), ("api", "queues", "{}", "{}", "get"), self._queue_get),
            (("GET",), ("api", "exchanges"), self._exchanges),
            (("GET",), ("api", "exchanges", "{}"), self._exchanges),
            (("GET",), ("api", "exchanges", "{}", "{}"), self._exchange),
            (("POST",), ("api", "exchanges", "{}", "{}", "publish"), self._publish),
            (("GET",), ("api", "bindings"), self._bindings),
            (("GET",), ("api", "bindings", "{}"), self._bindings),
            (("GET",), ("api", "connections"), self._connections),
            (("GET", "DELETE"), ("api", "connections", "{}"), self._connection),
            (("GET",), ("metrics",), self._metrics),
        ]

    # -- dispatch ------------------------------------------------------------------------------

    async def handle(self, method: str, raw_path: str, body: bytes) -> Reply:
        static = STATIC_FILES.get(raw_path)
        if static is not None and method in ("GET", "HEAD"):
            return _static(static)
        parts = split_path(raw_path)
        allowed: set[str] = set()
        for methods, pattern, handler in self.table:
            if len(pattern) != len(parts):
                continue
            args = []
            for want, got in zip(pattern, parts, strict=True):
                if want == "{}":
                    args.append(got)
                elif want != got:
                    break
            else:
                if method == "HEAD" and "GET" in methods:
                    method = "GET"
                if method not in methods:
                    allowed.update(methods)
                    continue
                try:
                    if method in ("POST", "DELETE"):
                        return await handler(method, body, *args)
                    return await handler(*args)
                except ApiError as exc:
                    return json_reply(exc.status, {"error": exc.error, "reason": exc.reason})
        if allowed:
            return json_reply(
                405, {"error": "Method Not Allowed", "reason": f"{method} {raw_path}"}
            )
        return json_reply(404, {"error": "Object Not Found", "reason": "Not Found"})

    # -- health ------------------------------------------------------------------------------

    async def _health(self) -> Reply:
        return json_reply(200, {"status": "ok"})

    async def _health_alarms(self) -> Reply:
        raised = self._alarms_raised()
        if not raised:
            return json_reply(200, {"status": "ok"})
        return json_reply(
            503,
            {
                "status": "failed",
                "reason": "resource alarm(s) in effect in the cluster",
                "alarms": [{"node": self.node.config.node_id, "resource": a} for a in raised],
            },
        )

    def _alarms_raised(self) -> list[str]:
        alarms = getattr(self.node, "alarms", None)
        return sorted(alarms.raised()) if alarms is not None else []

    # -- overview and nodes --------------------------------------------------------------------

    def _sample(self) -> dict[Any, dict[str, int]]:
        qstats = self.node.queue_stats
        out: dict[Any, dict[str, int]] = {}
        deliver = get = ack = 0
        for _vhost, q in queue_rows(self.node):
            c = qstats.get(q)
            row = {"publish": q.next_seq, "deliver": 0, "get": 0, "ack": 0}
            if c is not None:
                row["deliver"], row["get"], row["ack"] = c.delivered, c.got, c.acked
                deliver += c.delivered
                get += c.got
                ack += c.acked
            row["deliver_get"] = row["deliver"] + row["get"]
            out[q] = row
        out[None] = {
            "publish": qstats.published,
            "deliver": deliver,
            "get": get,
            "deliver_get": deliver + get,
            "ack": ack,
        }
        return out

    def _message_stats(self, key: Any, counters: dict[str, int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("publish", "deliver", "get", "deliver_get", "ack"):
            out[name] = counters.get(name, 0)
            out[f"{name}_details"] = {"rate": self.rates.rate(key, name)}
        return out

    async def _overview(self) -> Reply:
        node = self.node
        self.rates.sample(self._sample)
        now = self._sample()
        ready = unacked = queues = consumers = exchanges = 0
        for vh in node.machine.vhosts.values():
            exchanges += len(vh.exchanges)
            for q in vh.queues.values():
                queues += 1
                ready += q.ready_count
                unacked += len(q.unacked)
                consumers += len(q.consumers)
        conns = [
            node.connections.describe(r, node.sessions, node.config.node_id)
            for r in node.connections
        ]
        listeners = [
            {
                "node": node.config.node_id,
                "protocol": LISTENER_PROTOCOLS.get(str(ls["name"]), str(ls["name"])),
                "name": ls["name"],
                "ip_address": ls.get("host"),
                "port": ls.get("port"),
            }
            for ls in node.listeners
        ]
        if node.cluster is not None:
            port = node.config.cluster_port or node.cluster.peers[node.config.node_id][1]
            listeners.append(
                {
                    "node": node.config.node_id,
                    "protocol": "clustering",
                    "name": "cluster",
                    "ip_address": node.config.host,
                    "port": port,
                }
            )
        return json_reply(
            200,
            {
                "management_version": __version__,
                "rates_mode": "basic",
                "product_name": "polymq",
                "product_version": __version__,
                "cluster_name": node.config.cluster_id,
                "node": node.config.node_id,
                "message_stats": self._message_stats(None, now[None]),
                "queue_totals": {
                    "messages": ready + unacked,
                    "messages_ready": ready,
                    "messages_unacknowledged": unacked,
                },
                "object_totals": {
                    "connections": len(conns),
                    "channels": sum(c["channels"] for c in conns),
                    "exchanges": exchanges,
                    "queues": queues,
                    "consumers": consumers,
                },
                "connection_totals": node.connections.counts(),
                "listeners": listeners,
                "alarms": self._alarms_raised(),
                "statistics": node.statistics(),
            },
        )

    def _node_rows(self) -> list[dict[str, Any]]:
        node = self.node
        me = node.config.node_id
        local: dict[str, Any] = {
            "name": me,
            "type": "disc",
            "running": True,
            "applied_index": node.applied_index,
        }
        alarms = getattr(node, "alarms", None)
        if alarms is not None:
            stats = alarms.statistics()
            raised = set(stats.get("raised") or ())
            local.update(
                mem_used=stats.get("memory_bytes"),
                mem_limit=stats.get("memory_limit_bytes"),
                mem_alarm="memory" in raised,
                disk_free=stats.get("disk_free_bytes"),
                disk_free_limit=stats.get("disk_free_limit_bytes"),
                disk_free_alarm="disk" in raised,
            )
        cluster = node.cluster
        if cluster is None or cluster.core is None:
            index = node.applied_index
            local.update(
                role="single", leader=True, term=1, commit_index=index, lag=0, match_index=None
            )
            return [local]
        status = cluster.status()
        leader = status["leader"]
        local.update(
            role=status["role"],
            leader=leader == me,
            term=status["term"],
            commit_index=status["commit_index"],
            lag=status["lag"],
            match_index=status["last_index"],
        )
        rows = [local]
        for peer, info in status["peers"].items():
            running = bool(info.get("connected"))
            row: dict[str, Any] = {
                "name": peer,
                "type": "disc",
                "running": running,
                "address": info.get("address"),
                "role": "leader" if peer == leader else ("follower" if running else "unknown"),
                "leader": peer == leader,
                # what this node knows: the current term when the peer is reachable
                "term": status["term"] if running else None,
                "commit_index": status["commit_index"] if peer == leader else None,
                "match_index": info.get("match"),
                "lag": info.get("lag"),
            }
            rows.append(row)
        rows.sort(key=lambda r: str(r["name"]))
        return rows

    async def _nodes(self) -> Reply:
        return json_reply(200, self._node_rows())

    async def _node(self, name: str) -> Reply:
        for row in self._node_rows():
            if row["name"] == name:
                return json_reply(200, row)
        raise _not_found()

    async def _cluster(self) -> Reply:
        cluster = self.node.cluster
        if cluster is None:
            index = self.node.applied_index
            return json_reply(
                200,
                {
                    "node": self.node.config.node_id,
                    "role": "single",
                    "leader": self.node.config.node_id,
                    "term": 1,
                    "commit_index": index,
                    "applied_index": index,
                    "lag": 0,
                    "peers": {},
                },
            )
        return json_reply(200, cluster.status())

    # -- queues, exchanges, bindings ---------------------------------------------------------

    def _vhost(self, vhost: str) -> Any:
        vh = self.node.machine.vhosts.get(vhost)
        if vh is None:
            raise _not_found()
        return vh

    def _queue_row(self, q: Any, samples: dict[Any, dict[str, int]]) -> dict[str, Any]:
        info = self.node.machine.queue_info(q.vhost, q.name) or {}
        info.update(
            node=self.node.config.node_id,
            state="running",
            type="classic",
            messages_unacknowledged=info.get("messages_unacked", 0),
            message_bytes=info.get("bytes", 0),
            message_stats=self._message_stats(q, samples.get(q, {})),
        )
        return info

    async def _queues(self, vhost: str | None = None) -> Reply:
        if vhost is not None:
            self._vhost(vhost)
        self.rates.sample(self._sample)
        samples = self._sample()
        rows = [
            self._queue_row(q, samples)
            for vname, q in queue_rows(self.node)
            if vhost is None or vname == vhost
        ]
        return json_reply(200, rows)

    async def _queue(self, vhost: str, name: str) -> Reply:
        q = self._vhost(vhost).queues.get(name)
        if q is None:
            raise _not_found()
        self.rates.sample(self._sample)
        return json_reply(200, self._queue_row(q, self._sample()))

    async def _exchanges(self, vhost: str | None = None) -> Reply:
        machine = self.node.machine
        names = [vhost] if vhost is not None else sorted(machine.vhosts)
        if vhost is not None:
            self._vhost(vhost)
        rows: list[dict[str, Any]] = []
        for v in names:
            rows.extend(machine.list_exchanges(v))
        return json_reply(200, rows)

    async def _exchange(self, vhost: str, name: str) -> Reply:
        self._vhost(vhost)
        name = "" if name == DEFAULT_EXCHANGE_ALIAS else name
        row = self.node.machine.exchange_info(vhost, name)
        if row is None:
            raise _not_found()
        return json_reply(200, row)

    async def _bindings(self, vhost: str | None = None) -> Reply:
        machine = self.node.machine
        if vhost is not None:
            self._vhost(vhost)
        names = [vhost] if vhost is not None else sorted(machine.vhosts)
        rows: list[dict[str, Any]] = []
        for v in names:
            rows.extend(machine.list_bindings(v))
        return json_reply(200, rows)

    # -- connections -------------------------------------------------------------------------

    async def _connections(self) -> Reply:
        node = self.node
        rows = [
            node.connections.describe(r, node.sessions, node.config.node_id)
            for r in node.connections
        ]
        rows.sort(key=lambda r: (r["protocol"], r["connected_at"], r["name"]))
        return json_reply(200, rows)

    async def _connection(self, *args: Any) -> Reply:
        node = self.node
        if len(args) == 1:
            method, name = "GET", args[0]
        else:
            method, _body, name = args
        record = node.connections.find(name)
        if record is None:
            raise _not_found()
        if method == "DELETE":
            await node.connections.close(record)
            return 204, "application/json", b""
        return json_reply(
            200, node.connections.describe(record, node.sessions, node.config.node_id)
        )

    # -- publish and get ---------------------------------------------------------------------

    async def _publish(self, method: str, body: bytes, vhost: str, name: str) -> Reply:
        self._vhost(vhost)
        exchange = "" if name == DEFAULT_EXCHANGE_ALIAS else name
        if not self.node.machine.exchange_exists(vhost, exchange):
            raise _not_found()
        req = _json_body(body)
        for key in ("properties", "routing_key", "payload", "payload_encoding"):
            if key not in req:
                raise _bad(f"{key} is required")
        routing_key = req["routing_key"]
        if not isinstance(routing_key, str) or len(routing_key.encode()) > 255:
            raise _bad("routing_key must be a string of at most 255 bytes")
        payload = _decode_payload(req["payload"], req["payload_encoding"])
        props = _properties(req["properties"])
        try:
            result = await self.broker.publish(
                exchange, [(routing_key, props, payload)], vhost=vhost
            )
        except BrokerError as exc:
            raise _broker_error(exc) from None
        return json_reply(200, {"routed": bool(result.routed and result.routed[0])})

    async def _queue_get(self, method: str, body: bytes, vhost: str, name: str) -> Reply:
        self._vhost(vhost)
        if not self.node.machine.queue_exists(vhost, name):
            raise _not_found()
        req = _json_body(body)
        for key in ("count", "ackmode", "encoding"):
            if key not in req:
                raise _bad(f"{key} is required")
        count = req["count"]
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _bad("count must be a positive integer")
        count = min(count, GET_COUNT_MAX)
        ackmode = req["ackmode"]
        if ackmode not in ACKMODES:
            raise _bad(f"ackmode must be one of {', '.join(ACKMODES)}")
        encoding = req["encoding"]
        if encoding not in ("auto", "base64"):
            raise _bad("encoding must be auto or base64")
        truncate = req.get("truncate")
        if truncate is not None and (
            isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 0
        ):
            raise _bad("truncate must be a non-negative integer")
        broker = self.broker
        session = broker.open_session(_NullSink())
        try:
            deliveries, ready = await broker.get(session, name, vhost=vhost, max_n=count)
            ids = [d[0] for d in deliveries]
            if ids:
                await broker.settle(session, ids, ACKMODES[ackmode])
        except BrokerError as exc:
            raise _broker_error(exc) from None
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(GET_CLOSE_TIMEOUT_S):
                try:
                    await broker.close_session(session)
                except BrokerError:
                    pass
        out = []
        for i, d in enumerate(deliveries):
            _mid, redelivered, _count, exchange, routing_key, props, raw = d
            data = bytes(raw)
            size = len(data)
            if truncate is not None:
                data = data[:truncate]
            text, enc = _encode_payload(data, encoding)
            out.append(
                {
                    "payload_bytes": size,
                    "redelivered": bool(redelivered),
                    "exchange": exchange,
                    "routing_key": routing_key,
                    "message_count": ready + len(deliveries) - i - 1,
                    "properties": dict(props) if props else {},
                    "payload": text,
                    "payload_encoding": enc,
                }
            )
        return json_reply(200, out)

    # -- metrics -----------------------------------------------------------------------------

    async def _metrics(self) -> Reply:
        return 200, METRICS_CONTENT_TYPE, self.metrics.render()


def _static(name: str) -> Reply:
    path = STATIC_DIR / name
    try:
        data = path.read_bytes()
    except OSError:
        return json_reply(404, {"error": "Object Not Found", "reason": "Not Found"})
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += "; charset=utf-8"
    return 200, ctype, data


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _bad("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise _bad("the request body must be a JSON object")
    return value


def _decode_payload(payload: Any, encoding: Any) -> bytes:
    if not isinstance(payload, str):
        raise _bad("payload must be a string")
    if encoding == "string":
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("payload is not valid base64") from None
    raise _bad("payload_encoding must be string or base64")


def _encode_payload(data: bytes, encoding: str) -> tuple[str, str]:
    if encoding == "auto":
        try:
            return data.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def _properties(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("properties must be a JSON object")
    props: dict[str, Any] = {}
    for key, v in value.items():
        if key in _STR_PROPS:
            if not isinstance(v, str) or len(v.encode()) > 255:
                raise _bad(f"property {key} must be a string of at most 255 bytes")
            props[key] = v
        elif key in _INT_PROPS:
            lo, hi = _INT_PROPS[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise _bad(f"property {key} must be an integer {lo}-{hi}")
            props[key] = v
        elif key == "headers":
            if not isinstance(v, dict):
                raise _bad("property headers must be a JSON object")
            props[key] = v
        else:
            raise _bad(f"unknown property {key}")
    return props


def _broker_error(exc: BrokerError) -> ApiError:
    if exc.code == 404:
        return _not_found()
    if exc.code == 506:
        return ApiError(503, "service_unavailable", exc.text)
    return _bad(exc.text)
