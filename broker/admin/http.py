"""A small read-only HTTP endpoint on the admin port: health, an overview of the node, the
queues/exchanges/bindings of a vhost, and Prometheus metrics.

Served with h11 over trio. Requests are bounded (``http_request_bytes_max``), connections are
bounded (``http_connections_max``: past it new connections get 503 and are closed), and every
connection has an idle timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
import trio

from broker import __version__
from broker.node import Node

log = logging.getLogger("polymq.admin")

IDLE_TIMEOUT_S = 30.0
READ_BYTES_MAX = 16 << 10


class AdminServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.connections = 0
        cfg = node.config
        self.request_bytes_max = cfg.http_request_bytes_max
        self.connections_max = cfg.http_connections_max
        self.routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/api/health": self._health,
            "/api/overview": self._overview,
            "/api/queues": self._queues,
            "/api/exchanges": self._exchanges,
            "/api/bindings": self._bindings,
            "/api/cluster": self._cluster,
            "/metrics": self._metrics,
        }

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.connections_max:
            with trio.move_on_after(1):
                await stream.send_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
                    b"connection: close\r\n\r\n"
                )
            await stream.aclose()
            return
        self.connections += 1
        try:
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.connections -= 1
            await stream.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.request_bytes_max)
        while True:
            event: Any
            with trio.move_on_after(IDLE_TIMEOUT_S) as idle:
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as exc:
                        status = exc.error_status_hint
                        await self._send(
                            stream, conn, status, "text/plain", str(exc).encode(), True
                        )
                        return
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(READ_BYTES_MAX)
                        conn.receive_data(data)
                        if not data:
                            return
                        continue
                    break
            if idle.cancelled_caught:
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            # Drain a request body within the limit; this endpoint does not take one.
            body_bytes = 0
            while True:
                nxt = conn.next_event()
                if nxt is h11.NEED_DATA:
                    data = await stream.receive_some(READ_BYTES_MAX)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(nxt, h11.Data):
                    body_bytes += len(nxt.data)
                    if body_bytes > self.request_bytes_max:
                        await self._send(
                            stream, conn, 413, "text/plain", b"request too large", True
                        )
                        return
                    continue
                break
            status, ctype, body = self._route(event)
            await self._send(stream, conn, status, ctype, body, False)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _send(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        ctype: str,
        body: bytes,
        close: bool,
    ) -> None:
        headers = [
            ("content-type", ctype),
            ("content-length", str(len(body))),
            ("server", f"polymq/{__version__}"),
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=status, headers=headers))
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return
        await stream.send_all(data)

    def _route(self, request: h11.Request) -> tuple[int, str, bytes]:
        method = request.method.decode("ascii", "replace")
        path = unquote(urlsplit(request.target.decode("ascii", "replace")).path)
        handler = self.routes.get(path.rstrip("/") or "/")
        if handler is None:
            return _json(404, {"error": "not_found", "reason": f"no such resource {path}"})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "method_not_allowed", "reason": f"{method} {path}"})
        return handler()

    # -- resources -----------------------------------------------------------------------------

    def _health(self) -> tuple[int, str, bytes]:
        return _json(200, {"status": "ok"})

    def _overview(self) -> tuple[int, str, bytes]:
        node = self.node
        return _json(
            200,
            {
                "product_name": "polymq",
                "product_version": __version__,
                "node": node.config.node_id,
                "listeners": node.listeners,
                "statistics": node.statistics(),
            },
        )

    def _queues(self) -> tuple[int, str, bytes]:
        return _json(200, self.node.machine.list_queues("/"))

    def _exchanges(self) -> tuple[int, str, bytes]:
        return _json(200, self.node.machine.list_exchanges("/"))

    def _bindings(self) -> tuple[int, str, bytes]:
        return _json(200, self.node.machine.list_bindings("/"))

    def _cluster(self) -> tuple[int, str, bytes]:
        cluster = self.node.cluster
        if cluster is None:
            # a single node is its own leader; "lag" is what is committed but not applied
            index = self.node.applied_index
            return _json(
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
        return _json(200, cluster.status())

    def _metrics(self) -> tuple[int, str, bytes]:
        node = self.node
        stats = node.statistics()
        lines = [
            "# HELP polymq_applied_index Index of the last applied log entry.",
            "# TYPE polymq_applied_index gauge",
            f"polymq_applied_index {stats['applied_index']}",
            "# HELP polymq_commands_total Commands submitted, by path.",
            "# TYPE polymq_commands_total counter",
            f'polymq_commands_total{{path="logged"}} {stats["commands_logged"]}',
            f'polymq_commands_total{{path="local"}} {stats["commands_local"]}',
            "# HELP polymq_sessions Open sessions.",
            "# TYPE polymq_sessions gauge",
            f"polymq_sessions {stats['sessions']}",
            "# HELP polymq_queue_messages_ready Messages ready for delivery.",
            "# TYPE polymq_queue_messages_ready gauge",
        ]
        queues = node.machine.list_queues("/")
        for q in queues:
            lines.append(
                f'polymq_queue_messages_ready{{vhost="/",queue="{_esc(q["name"])}"}} '
                f"{q['messages_ready']}"
            )
        lines.append("# HELP polymq_queue_messages_unacked Messages delivered and not settled.")
        lines.append("# TYPE polymq_queue_messages_unacked gauge")
        for q in queues:
            lines.append(
                f'polymq_queue_messages_unacked{{vhost="/",queue="{_esc(q["name"])}"}} '
                f"{q['messages_unacked']}"
            )
        commit = stats.get("commit") or {}
        for key in ("fsyncs", "batches", "records"):
            if key in commit:
                lines.append(f"# TYPE polymq_log_{key}_total counter")
                lines.append(f"polymq_log_{key}_total {commit[key]}")
        hub = node.mqtt_hub
        if hub is not None:
            lines += [
                "# HELP polymq_mqtt_connections Open MQTT sessions.",
                "# TYPE polymq_mqtt_connections gauge",
                f"polymq_mqtt_connections {len(hub.connections)}",
                "# HELP polymq_mqtt_session_overflow_total QoS 1/2 messages refused by a full"
                " session queue.",
                "# TYPE polymq_mqtt_session_overflow_total counter",
                f"polymq_mqtt_session_overflow_total {hub.session_overflows}",
                "# TYPE polymq_mqtt_messages_received_total counter",
                f"polymq_mqtt_messages_received_total {hub.messages_in}",
                "# TYPE polymq_mqtt_messages_sent_total counter",
                f"polymq_mqtt_messages_sent_total {hub.messages_out}",
            ]
        body = ("\n".join(lines) + "\n").encode()
        return 200, "text/plain; version=0.0.4", body


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value, default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
