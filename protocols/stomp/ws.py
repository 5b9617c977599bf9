"""STOMP over WebSocket: one connection on the ``stomp_ws`` listener (RabbitMQ Web STOMP's
port 15674 by default), served like a TCP STOMP connection by the same ``StompConnection``.

The upgrade is shared with MQTT over WebSocket (``protocols/_websocket.py``): the request is parsed
with h11 (headers bounded by ``HANDSHAKE_BYTES_MAX``, else 431), frames by wsproto's sans-IO
``Connection``, bytes a client sends right behind its upgrade request are kept, and any request
path is accepted (clients use ``/ws`` or ``/stomp``).

Handshake answers:

- The highest of ``v12.stomp``, ``v11.stomp``, ``v10.stomp`` the client offers is selected, else
  ``stomp``. The subprotocol does not bind the STOMP version: CONNECT's ``accept-version`` does.
- Offering none of them, or no ``Sec-WebSocket-Protocol`` at all: the upgrade is accepted without
  a ``Sec-WebSocket-Protocol`` header, as RabbitMQ's Web STOMP does (a client that insisted on a
  subprotocol then fails the connection itself, RFC 6455 section 4.1).
- Not a WebSocket upgrade, or a ``Sec-WebSocket-Version`` other than 13: 426; a request that is
  not ``GET``, is HTTP/1.0, or lacks a valid ``Sec-WebSocket-Key``: 400. Each is logged.
- No upgrade request within the CONNECT timeout: the connection is closed.

After the upgrade: text and binary messages alike are a byte stream into the connection's
``codec.Decoder`` (STOMP over WebSocket clients send text; a message may hold several frames or
part of one, and an EOL alone is a heart-beat). Each chunk of output is one text message when it
is valid UTF-8, else one binary message; heart-beats go out as a text message holding an EOL. A
message over the STOMP frame limit (``stomp_frame_bytes_max``) closes with 1009, a malformed
WebSocket frame with wsproto's code (1002/1007). Pings get pongs; a client's close is answered.
When the STOMP side ends (DISCONNECT, or an ERROR frame: a bad frame, a deleted queue) its last
frames are sent, then a close 1000, and the client's close is awaited for ``close_timeout_s``.
CONNECT timeout, heart-beats (counted on data messages) and the output bound are those of
``io.py``.
"""

from __future__ import annotations

import logging

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from broker.api import Broker
from protocols._server import ConnStream, ResourceAlarms, Wire
from protocols._websocket import Handshake, HandshakeRefused, Upgrade, refusal_response
from protocols.stomp import codec
from protocols.stomp.io import IOLimits, _heartbeats, process_bytes
from protocols.stomp.processor import CLOSED, StompConnection, StompSettings

log = logging.getLogger("polymq.stomp")

#: Preferred first: a client offering several gets the highest STOMP version; one offering none
#: is accepted without a subprotocol, as RabbitMQ's Web STOMP does.
HANDSHAKE = Handshake("STOMP", ("v12.stomp", "v11.stomp", "v10.stomp", "stomp"), None)


class _WSWire(Wire):
    def __init__(self, stream: ConnStream, ws: Connection) -> None:
        super().__init__(stream)
        self.ws = ws
        self.frames: list[bytes] = []  # encoded WebSocket frames waiting for the writer, in order
        self.frames_carry_output = False  # they hold STOMP output: on_output_flushed after
        self.recv_scope: trio.CancelScope | None = None


async def handle(
    stream: ConnStream,
    broker: Broker,
    settings: StompSettings,
    limits: IOLimits,
    decoder_limits: dict[str, int] | None = None,
    alarms: ResourceAlarms | None = None,
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
                "stomp websocket handshake refused",
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
    conn = StompConnection(broker, settings, peer=(peer[0], peer[1]), wake_writer=wire.wake_writer)
    if decoder_limits:
        conn.decoder = codec.Decoder(**decoder_limits)
    message_bytes_max = conn.decoder.frame_bytes_max
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, wire, conn)
            nursery.start_soon(_heartbeats, wire, conn, limits)
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
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


def _frame_output(wire: _WSWire, conn: StompConnection) -> None:
    """Move the connection's pending output into one message (dropped once closing): text when
    it is valid UTF-8, else binary."""
    data = conn.take_output()
    if data and wire.ws.state is ConnectionState.OPEN:
        try:
            message: TextMessage | BytesMessage = TextMessage(data=data.decode("utf-8"))
        except UnicodeDecodeError:
            message = BytesMessage(data=data)
        wire.frames.append(wire.ws.send(message))
        wire.frames_carry_output = True


def _close(wire: _WSWire, conn: StompConnection, code: int, reason: str) -> None:
    """Queue a close frame behind whatever STOMP output is pending."""
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
    wire: _WSWire, conn: StompConnection, limits: IOLimits, message_bytes_max: int, first: bytes
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
            if conn.state == CLOSED:  # ended elsewhere (a deleted queue) while reading
                return
            if not data:
                ws.receive_data(None)
                conn.close_reason = conn.close_reason or "connection closed by the client"
                return
        ws.receive_data(data)
        data = b""
        chunks: list[bytes] = []
        close: tuple[int, str] | None = None
        for event in ws.events():
            if isinstance(event, (BytesMessage, TextMessage)):
                chunk = event.data.encode("utf-8") if isinstance(event.data, str) else event.data
                message_bytes += len(chunk)
                if message_bytes > message_bytes_max:
                    close = (
                        CloseReason.MESSAGE_TOO_BIG,
                        f"message over {message_bytes_max} bytes",
                    )
                    break
                chunks.append(bytes(chunk))
                if event.message_finished:
                    message_bytes = 0
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    wire.frames.append(ws.send(event.response()))
                    wire.wake_writer()
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
            if not await process_bytes(conn, b"".join(chunks), wire):
                return  # the ERROR frame goes out ahead of the close frame
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


async def _writer(wire: _WSWire, conn: StompConnection) -> None:
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
            wire.last_send = trio.current_time()
            if carries_output:
                conn.on_output_flushed()
        wire.pending_bytes = 0
        if not conn.out and not wire.frames:
            wire.drained.set()
        if conn.state == CLOSED and not wire.done and wire.recv_scope is not None:
            # an ERROR decided outside the reader (a subscription's queue deleted): end the
            # reader, then close
            wire.recv_scope.cancel()
