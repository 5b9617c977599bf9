"""trio glue for one MQTT connection: read chunks, decode, process, write one joined buffer.

The first packet must be CONNECT within ``connect_timeout_s``. Keepalive: a client silent for
1.5 times its keepalive is disconnected ([MQTT-3.1.2-24]). Reading pauses while the unsent
output passes ``outbuf_bytes_max``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from protocols._server import Wire, drain, write_loop
from protocols.mqtt import codec
from protocols.mqtt.processor import (
    CLOSED,
    CONNECT_WAIT,
    CONNECTED,
    KEEP_ALIVE_TIMEOUT,
    MALFORMED_PACKET,
    MQTTConnection,
    MQTTHub,
)

log = logging.getLogger("polymq.mqtt")


@dataclass(frozen=True, slots=True)
class IOLimits:
    read_bytes_max: int = 256 << 10
    outbuf_bytes_max: int = 16 << 20
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 5.0


async def handle(stream: trio.SocketStream, hub: MQTTHub, limits: IOLimits) -> None:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return
    wire = Wire(stream)
    conn = MQTTConnection(hub, peer=(peer[0], peer[1]), wake_writer=wire.wake_writer)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_loop, wire, conn, lambda: conn.state == CLOSED)
            nursery.start_soon(_keepalive, wire, conn, limits)
            await _reader(wire, conn, limits)
            wire.done = True
            await drain(wire, conn, limits.close_timeout_s)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


async def _reader(wire: Wire, conn: MQTTConnection, limits: IOLimits) -> None:
    stream = wire.stream
    while conn.state != CLOSED:
        if wire.pending_bytes > limits.outbuf_bytes_max:
            wire.drained = trio.Event()
            await wire.drained.wait()
            if conn.state == CLOSED:
                return
        data = await stream.receive_some(limits.read_bytes_max)
        if not data:
            conn.close_reason = conn.close_reason or "connection closed by the client"
            return
        wire.last_recv = trio.current_time()
        if not await process_bytes(conn, data):
            return
        wire.pending_bytes = sum(map(len, conn.out))


async def process_bytes(conn: MQTTConnection, data: bytes) -> bool:
    """Decode ``data`` and process every packet it completes (shared with the WebSocket
    transport). False when a decoding error ended the connection; its answer is in
    ``conn.out``."""
    decoder = conn.decoder
    if conn.state == CONNECT_WAIT and decoder.buffered_bytes == 0 and data and data[0] >> 4 != 1:
        # [MQTT-3.1.0-1]: the first packet must be CONNECT; refuse garbage at its first byte
        conn.state = CLOSED
        conn.close_reason = "first packet is not CONNECT"
        return False
    decoder.feed(data)
    try:
        events = decoder.events()
    except codec.MQTTError as exc:
        await conn.handle_events(exc.events)
        if conn.state == CONNECTED:
            conn.protocol_error(exc.reason_code or MALFORMED_PACKET, exc.text)
        else:
            if exc.connack_code is not None and conn.state != CLOSED:
                level = decoder.version or 4
                code = exc.reason_code if level == 5 else exc.connack_code
                conn.send(codec.encode_connack(level, False, code))
            conn.state = CLOSED
            conn.close_reason = exc.text
        return False
    if events:
        await conn.handle_events(events)
    return True


async def _keepalive(wire: Wire, conn: MQTTConnection, limits: IOLimits) -> None:
    with trio.move_on_after(limits.connect_timeout_s):
        while conn.state != CONNECTED:
            if conn.state == CLOSED:
                return
            await trio.sleep(0.05)
    if conn.state != CONNECTED:
        log.info("mqtt connect timeout", extra={"peer": conn.statistics()["peer"]})
        await trio.aclose_forcefully(wire.stream)
        return
    if conn.keepalive_s <= 0:
        return
    limit = conn.keepalive_s * 1.5
    while conn.state == CONNECTED:
        await trio.sleep(max(0.05, limit - (trio.current_time() - wire.last_recv)))
        if trio.current_time() - wire.last_recv >= limit:
            log.info(
                "mqtt keepalive timeout",
                extra={"client_id": conn.client_id, "keepalive_s": conn.keepalive_s},
            )
            conn.protocol_error(KEEP_ALIVE_TIMEOUT, "keep alive timeout")
            conn.wake_writer()
            return
