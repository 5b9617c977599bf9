"""The admin port: the management API and page (``broker.admin.api``), Prometheus metrics,
health, and users/vhosts/permissions (``broker.admin.users``).

Served with h11 over trio. Requests are bounded (``http_request_bytes_max``), connections are
bounded (``http_connections_max``: past it new connections get 503 and are closed), and every
connection has an idle timeout.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from broker import __version__
from broker.admin import users as admin_users
from broker.admin.api import ManagementApi
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
        self.api = ManagementApi(node)

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
            # Read the request body within the limit (POST publish and get take one).
            body_bytes = 0
            chunks: list[bytes] = []
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
                    chunks.append(bytes(nxt.data))
                    if body_bytes > self.request_bytes_max:
                        await self._send(
                            stream, conn, 413, "text/plain", b"request too large", True
                        )
                        return
                    continue
                break
            peer = getattr(getattr(stream, "socket", None), "getpeername", lambda: None)()
            mine = await admin_users.route(self.node, event, b"".join(chunks), peer)
            status, ctype, body = (
                mine if mine is not None else await self._route(event, b"".join(chunks))
            )
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

    async def _route(self, request: h11.Request, payload: bytes = b"") -> tuple[int, str, bytes]:
        method = request.method.decode("ascii", "replace")
        path = urlsplit(request.target.decode("ascii", "replace")).path
        status, ctype, body = await self.api.handle(method, path, payload)
        if method == "HEAD":
            body = b""
        return status, ctype, body
