"""MQTT over WebSocket (MQTT 3.1.1 and 5.0 section 6): one connection on the ``mqtt_ws``
listener, served by the same ``MQTTHub`` as the TCP listener.

The HTTP/1.1 upgrade request is parsed with h11 (headers bounded by ``HANDSHAKE_BYTES_MAX``,
else 431) and the frames by wsproto's sans-IO ``Connection``; bytes a client sends right behind
its upgrade request are kept. Any request path is accepted (clients use ``/mqtt`` or ``/ws``).

Handshake answers:

- ``mqtt`` is selected when the client offers it, else ``mqttv3.1`` (older clients offer only
  that; Mosquitto accepts both names).
- Offering neither, or no ``Sec-WebSocket-Protocol`` at all: 400 and the connection is closed, as
  RabbitMQ's Web MQTT does ([MQTT-6.0.0-3]: the client MUST offer ``mqtt``).
- Not a WebSocket upgrade, or a ``Sec-WebSocket-Version`` other than 13: 426; a request that is
  not ``GET``, is HTTP/1.0, or lacks a valid ``Sec-WebSocket-Key``: 400. Each is logged.
- No upgrade request within the CONNECT timeout: the connection is closed.

After the upgrade: binary messages are a byte stream into the same ``codec.Decoder`` as TCP (a
packet may span messages and a message may hold several packets, [MQTT-6.0.0-2]); each chunk of
output is one binary message. A text message closes with 1003 ([MQTT-6.0.0-1]), a message over
``mqtt_packet_bytes_max`` with 1009, a malformed frame with wsproto's code (1002/1007). Pings get
pongs; a client's close is answered; when the MQTT side ends (DISCONNECT, protocol error,
takeover, keepalive) its last packets are sent, then a close 1000, and the client's close is
awaited for ``close_timeout_s``. CONNECT timeout, keepalive (counted on binary data only) and
the output bound are those of ``io.py``.
"""

from __future__ import annotations

import logging

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from protocols._server import ConnStream, ResourceAlarms, Wire
from protocols._websocket import Handshake, HandshakeRefused, Upgrade, refusal_response
from protocols.mqtt.io import IOLimits, process_bytes, service
from protocols.mqtt.processor import CLOSED, MQTTConnection, MQTTHub

log = logging.getLogger("polymq.mqtt")

#: Preferred first: a client offering both gets "mqtt"; offering neither is refused
#: ([MQTT-6.0.0-3]: the client MUST offer ``mqtt``), as RabbitMQ's Web MQTT does.
HANDSHAKE = Handshake(
    "MQTT",
    ("mqtt", "mqttv3.1"),
    "the client must offer the WebSocket subprotocol 'mqtt' (or 'mqttv3.1')",
)


class _WSWire(Wire):
    def __init__(self, stream: ConnStream, ws: Connection) -> None:
        super().__init__(stream)
        self.ws = ws
        self.frames: list[bytes] = []  # encoded frames waiting for the writer, in order
        self.frames_carry_output = False  # they hold MQTT output: on_output_flushed after
        self.recv_scope: trio.CancelScope | None = None
        self.conn: MQTTConnection = None  # type: ignore[assignment]  # set right after
        self.started = self.last_recv
        self.timer_tick = -1  # the io timer's bucket (CONNECT timeout, keepalive)


async def handle(
    stream: ConnStream, hub: MQTTHub, limits: IOLimits, alarms: ResourceAlarms | None = None
) -> None:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return
    peer_text = f"{peer[0]}:{peer[1]}"
    upgrade: Upgrade | None = None
    with trio.move_on_after(limits.connect_timeout_s):
        try:
            upgrade = await HANDSHAKE.read_upgrade(stream)
        except HandshakeRefused as refused:
            log.info(
                "mqtt websocket handshake refused",
                extra={"peer": peer_text, "status": refused.status, "text": refused.text},
            )
            with trio.move_on_after(limits.close_timeout_s):
                await stream.send_all(refusal_response(refused))
            return
    if upgrade is None:
        return
    await stream.send_all(upgrade.response)
    ws = Connection(ConnectionType.SERVER)
    wire = _WSWire(stream, ws)
    wire.alarms = alarms
    conn = wire.conn = MQTTConnection(hub, peer=(peer[0], peer[1]), wake_writer=wire.wake_writer)
    message_bytes_max = hub.settings.packet_bytes_max
    svc = service(hub, limits)
    svc.watch(wire)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, wire, conn)
            await _reader(wire, conn, limits, message_bytes_max, upgrade.trailing)
            wire.done = True
            if ws.state is ConnectionState.OPEN:
                _close(wire, conn, CloseReason.NORMAL_CLOSURE, "")
            with trio.move_on_after(limits.close_timeout_s):
                await _flush(wire)
                if ws.state is ConnectionState.LOCAL_CLOSING:
                    await _await_close(wire, limits)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        svc.unwatch(wire)
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


def _frame_output(wire: _WSWire, conn: MQTTConnection) -> None:
    """Move the connection's pending output into one binary message (dropped once closing)."""
    data = conn.take_output()
    if data and wire.ws.state is ConnectionState.OPEN:
        wire.frames.append(wire.ws.send(BytesMessage(data=data)))
        wire.frames_carry_output = True


def _close(wire: _WSWire, conn: MQTTConnection, code: int, reason: str) -> None:
    """Queue a close frame behind whatever MQTT output is pending."""
    _frame_output(wire, conn)
    wire.frames.append(wire.ws.send(CloseConnection(code=code, reason=reason)))
    wire.wake_writer()


async def _flush(wire: _WSWire) -> None:
    wire.drained = trio.Event()
    wire.wake_writer()
    await wire.drained.wait()


async def _await_close(wire: _WSWire, limits: IOLimits) -> None:
    """After our close frame: read until the client's close (or EOF), discarding data."""
    while wire.ws.state is ConnectionState.LOCAL_CLOSING:
        data = await wire.stream.receive_some(limits.read_bytes_max)
        if not data:
            return
        wire.ws.receive_data(data)
        for event in wire.ws.events():
            if isinstance(event, CloseConnection):
                return


async def _reader(
    wire: _WSWire, conn: MQTTConnection, limits: IOLimits, message_bytes_max: int, first: bytes
) -> None:
    stream = wire.stream
    ws = wire.ws
    message_bytes = 0
    data = first
    while conn.state != CLOSED:
        if wire.pending_bytes > limits.outbuf_bytes_max:
            wire.drained = trio.Event()
            await wire.drained.wait()
            if conn.state == CLOSED:
                return
        if not data:
            with trio.CancelScope() as wire.recv_scope:
                data = await stream.receive_some(limits.read_bytes_max)
            wire.recv_scope = None
            if conn.state == CLOSED:  # ended elsewhere (takeover, keepalive) while reading
                return
            if not data:
                ws.receive_data(None)
                conn.close_reason = conn.close_reason or "connection closed by the client"
                return
        ws.receive_data(data)
        data = b""
        chunks: list[bytes | bytearray] = []
        close: tuple[int, str] | None = None
        for event in ws.events():
            if isinstance(event, BytesMessage):
                message_bytes += len(event.data)
                if message_bytes > message_bytes_max:
                    close = (
                        CloseReason.MESSAGE_TOO_BIG,
                        f"message over {message_bytes_max} bytes",
                    )
                    break
                chunks.append(event.data)
                if event.message_finished:
                    message_bytes = 0
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    wire.frames.append(ws.send(event.response()))
                    wire.wake_writer()
            elif isinstance(event, TextMessage):
                close = (CloseReason.UNSUPPORTED_DATA, "MQTT travels in binary messages")
                break
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:  # the client's close: answer it
                    conn.close_reason = conn.close_reason or f"websocket closed ({event.code})"
                    close = (event.code, "")
                else:  # a frame wsproto could not parse: close with its code
                    close = (event.code, event.reason or "")
                break
            # a Pong needs nothing
        if chunks:
            wire.last_recv = trio.current_time()
            state = conn.state
            ok = await process_bytes(conn, b"".join(chunks), wire.alarms, wire)
            if conn.state != state:
                service(conn.hub, limits).watch(wire)  # the keepalive deadline replaces CONNECT's
            if not ok:
                return
            wire.pending_bytes = sum(map(len, conn.out))
        if close is not None:
            code, reason = close
            conn.close_reason = conn.close_reason or f"websocket close {code}: {reason}"
            if ws.state is ConnectionState.REMOTE_CLOSING:
                wire.frames.append(ws.send(CloseConnection(code=code)))
                wire.wake_writer()
            elif ws.state is ConnectionState.OPEN:
                _close(wire, conn, code, reason)
            return


async def _writer(wire: _WSWire, conn: MQTTConnection) -> None:
    stream = wire.stream
    while True:
        await wire.wake.wait()
        wire.wake = trio.Event()
        _frame_output(wire, conn)
        if wire.frames:
            data = wire.frames[0] if len(wire.frames) == 1 else b"".join(wire.frames)
            carries_output = wire.frames_carry_output
            wire.frames.clear()
            wire.frames_carry_output = False
            wire.pending_bytes = len(data)
            await stream.send_all(data)
            if carries_output:
                conn.on_output_flushed()
        wire.pending_bytes = 0
        if not conn.out and not wire.frames:
            wire.drained.set()
        if conn.state == CLOSED and not wire.done and wire.recv_scope is not None:
            # a takeover or keepalive timeout decided elsewhere: end the reader, then close
            wire.recv_scope.cancel()
