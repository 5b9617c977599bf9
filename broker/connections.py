"""The registry of open client connections, for the management API and ``/metrics``.

How it is filled:

* The shared accept loop (``protocols/_server.py``) calls ``opened(protocol, stream)`` when a
  connection is accepted and ``closed(record)`` when its handler returns; listeners with their
  own accept loop (the AWS HTTP endpoint) are wrapped with ``track(protocol, handler)``.
* ``opened`` makes the record the connection task's *current connection* (a context variable:
  every task the handler starts inherits it). ``Node.open_session`` calls ``session_opened``,
  which files the session, and its sink, under the current connection. That is how a record
  learns its channels, and, from the protocol's own connection object reached through a sink
  (its ``statistics()``), the user, vhost and client id, without the protocol layer importing
  anything of the broker.

Everything here is read at request or scrape time; nothing per message. A record costs one
small object per connection; the sessions it files are bounded by the protocol's channel limit.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import trio

from broker.core.model import SESSION_CONNECTION_SHIFT

#: the connection record of the task serving a connection (None elsewhere)
CURRENT: contextvars.ContextVar[ConnectionRecord | None] = contextvars.ContextVar(
    "polymq_connection", default=None
)

S = TypeVar("S")

CHANNEL_MASK = (1 << SESSION_CONNECTION_SHIFT) - 1
#: a record stops filing sessions past this many (the protocols' own channel limits are lower)
SESSIONS_PER_CONNECTION_MAX = 65536


class ConnectionRecord:
    """One open client connection."""

    __slots__ = ("connected_at_ms", "id", "local", "peer", "protocol", "sessions", "stream")

    def __init__(
        self,
        id: int,
        protocol: str,
        stream: Any,
        peer: tuple[str, int],
        local: tuple[str, int],
        connected_at_ms: int,
    ) -> None:
        self.id = id
        self.protocol = protocol
        self.stream = stream
        self.peer = peer
        self.local = local
        self.connected_at_ms = connected_at_ms
        #: session id -> sink, for the sessions opened while serving this connection
        self.sessions: dict[int, Any] = {}

    @property
    def name(self) -> str:
        """RabbitMQ's connection name: ``"peer_host:peer_port -> host:port"``."""
        return f"{self.peer[0]}:{self.peer[1]} -> {self.local[0]}:{self.local[1]}"


def _address(sock: Any, peer: bool) -> tuple[str, int]:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except (OSError, AttributeError):
        return ("", 0)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return (str(addr), 0)


class ConnectionRegistry:
    """Open connections by id; see the module docstring."""

    def __init__(self) -> None:
        self.records: dict[int, ConnectionRecord] = {}
        self._next_id = 1
        #: connections accepted and closed since start, per protocol
        self.opened_total: dict[str, int] = {}
        self.closed_total: dict[str, int] = {}

    # -- the accept loop's hooks -----------------------------------------------------------

    def opened(self, protocol: str, stream: Any) -> ConnectionRecord:
        sock = getattr(stream, "socket", None)
        record = ConnectionRecord(
            self._next_id,
            protocol,
            stream,
            _address(sock, True),
            _address(sock, False),
            int(time.time() * 1000),
        )
        self._next_id += 1
        self.records[record.id] = record
        self.opened_total[protocol] = self.opened_total.get(protocol, 0) + 1
        CURRENT.set(record)
        return record

    def closed(self, record: Any) -> None:
        if self.records.pop(record.id, None) is not None:
            self.closed_total[record.protocol] = self.closed_total.get(record.protocol, 0) + 1

    def track(
        self, protocol: str, handler: Callable[[S], Coroutine[Any, Any, None]]
    ) -> Callable[[S], Coroutine[Any, Any, None]]:
        """``handler`` with its connections registered (for accept loops of their own)."""

        async def tracked(stream: S) -> None:
            record = self.opened(protocol, stream)
            try:
                await handler(stream)
            finally:
                self.closed(record)

        return tracked

    # -- the node's hook -------------------------------------------------------------------

    @staticmethod
    def session_opened(session: int, sink: Any) -> None:
        """File ``session`` under the connection being served by the calling task, if any."""
        record = CURRENT.get()
        if record is not None and len(record.sessions) < SESSIONS_PER_CONNECTION_MAX:
            record.sessions[session] = sink

    # -- queries ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ConnectionRecord]:
        return iter(list(self.records.values()))

    def counts(self) -> dict[str, int]:
        """Open connections per protocol."""
        out: dict[str, int] = {}
        for record in self.records.values():
            out[record.protocol] = out.get(record.protocol, 0) + 1
        return out

    def find(self, name: str) -> ConnectionRecord | None:
        for record in self.records.values():
            if record.name == name or str(record.id) == name:
                return record
        return None

    def describe(
        self, record: ConnectionRecord, open_sessions: dict[int, Any], node_name: str
    ) -> dict[str, Any]:
        """RabbitMQ's connection object (the fields that apply). ``open_sessions`` is the
        node's table of open sessions: a filed session that is no longer there has closed."""
        live = {s: sink for s, sink in record.sessions.items() if s in open_sessions}
        if len(live) != len(record.sessions):
            record.sessions = live
        info: dict[str, Any] = {}
        for sink in live.values():
            owner = getattr(sink, "conn", sink)  # an AMQP channel's sink knows its connection
            stats = getattr(owner, "statistics", None)
            if callable(stats):
                try:
                    found = stats()
                except Exception:  # a protocol's statistics must not break the listing
                    continue
                if isinstance(found, dict):
                    info.update(found)
                    if "user" in found:
                        break
        channel_sessions = sum(1 for s in live if s & CHANNEL_MASK)
        # AMQP counts its channels; a protocol without channels has one per session, as
        # RabbitMQ shows one channel for an MQTT or STOMP connection
        channels = channel_sessions if record.protocol == "amqp" else len(live)
        out: dict[str, Any] = {
            "name": record.name,
            "node": node_name,
            "type": "network",
            "state": "running",
            "protocol": record.protocol,
            "peer_host": record.peer[0],
            "peer_port": record.peer[1],
            "host": record.local[0],
            "port": record.local[1],
            "user": str(info.get("user") or ""),
            "vhost": str(info.get("vhost") or "/"),
            "channels": channels,
            "connected_at": record.connected_at_ms,
        }
        for key in ("client_id", "version", "subscriptions"):
            if key in info:
                out[key] = info[key]
        return out

    @staticmethod
    async def close(record: ConnectionRecord) -> None:
        """Close the connection's socket: its reader sees the connection gone and the
        protocol releases its sessions as for any dropped client."""
        stream = record.stream
        if stream is not None:
            await trio.aclose_forcefully(stream)
