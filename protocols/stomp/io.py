"""trio glue for one STOMP connection: read chunks, decode, process, write one joined buffer.

The first frame must be CONNECT (or STOMP) within ``connect_timeout_s``. Heart-beats as
negotiated: an EOL is sent when nothing else was sent for the agreed interval, and a client
silent for twice its promised interval is disconnected. A malformed frame gets an ERROR frame,
which is flushed before the socket closes. Reading pauses while the unsent output passes
``outbuf_bytes_max``.

Resource alarms: while one is raised, received data holding a SEND is not processed and the
connection is not read (nor its heart-beats checked) until every alarm clears, as RabbitMQ's
STOMP blocks publishing connections; connections that only subscribe go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from broker.api import Broker
from protocols._server import (
    ConnStream,
    ResourceAlarms,
    Wire,
    drain,
    flush_then_discard,
    hold_publisher,
    write_loop,
)
from protocols.stomp import codec
from protocols.stomp.processor import CLOSED, CONNECTED, StompConnection, StompSettings

log = logging.getLogger("polymq.stomp")


@dataclass(frozen=True, slots=True)
class IOLimits:
    read_bytes_max: int = 256 << 10
    outbuf_bytes_max: int = 16 << 20
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    discard_after_error_s: float = 1.0


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
    wire = Wire(stream)
    wire.alarms = alarms
    conn = StompConnection(broker, settings, peer=(peer[0], peer[1]), wake_writer=wire.wake_writer)
    if decoder_limits:
        conn.decoder = codec.Decoder(**decoder_limits)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_loop, wire, conn)
            nursery.start_soon(_heartbeats, wire, conn, limits)
            await _reader(wire, conn, limits)
            wire.done = True
            await drain(wire, conn, limits.close_timeout_s)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


async def _reader(wire: Wire, conn: StompConnection, limits: IOLimits) -> None:
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
        if not await process_bytes(conn, data, wire):
            await flush_then_discard(
                wire,
                conn,
                close_timeout_s=limits.close_timeout_s,
                discard_s=limits.discard_after_error_s,
                read_bytes_max=limits.read_bytes_max,
            )
            return
        wire.pending_bytes = sum(map(len, conn.out))


async def process_bytes(conn: StompConnection, data: bytes, wire: Wire | None = None) -> bool:
    """Decode ``data`` (any slice of the byte stream) and act on its frames. False after a
    malformed frame: the frames before it were handled and an ERROR frame is queued. Frames
    that publish wait while a resource alarm of ``wire.alarms`` is raised."""
    decoder = conn.decoder
    decoder.feed(data)
    try:
        events = decoder.events()
    except codec.StompError as exc:
        await conn.handle_events(exc.events)
        message = exc.message
        if message == "unknown command":
            # RabbitMQ's words: before CONNECT nothing else is legal; after it, unknown
            message = "Illegal command" if conn.state != CONNECTED else "Bad command"
        conn.error(message, exc.detail, exc.receipt)
        return False
    if events:
        alarms = None if wire is None else wire.alarms
        if alarms is not None and alarms.raised() and _sends(events):
            await hold_publisher(alarms, "stomp", wire)
        await conn.handle_events(events)
    return True


def _sends(events: list[Any]) -> bool:
    frame = codec.Frame
    return any(type(ev) is frame and ev.command == "SEND" for ev in events)


async def _heartbeats(wire: Wire, conn: StompConnection, limits: IOLimits) -> None:
    with trio.move_on_after(limits.connect_timeout_s):
        while conn.state != CONNECTED:
            if conn.state == CLOSED:
                return
            await trio.sleep(0.05)
    if conn.state != CONNECTED:
        log.info("stomp connect timeout", extra={"peer": conn.statistics()["peer"]})
        await trio.aclose_forcefully(wire.stream)
        return
    send_s = conn.send_every_ms / 1000
    expect_s = conn.expect_every_ms / 1000
    if not send_s and not expect_s:
        return
    step = min(x for x in (send_s / 2, expect_s / 2) if x > 0)
    while conn.state == CONNECTED:
        await trio.sleep(step)
        now = trio.current_time()
        if expect_s and now - wire.last_recv > 2 * expect_s:
            log.info(
                "stomp heart-beat timeout",
                extra={"peer": conn.statistics()["peer"], "interval_ms": conn.expect_every_ms},
            )
            await trio.aclose_forcefully(wire.stream)
            return
        if send_s and now - wire.last_send >= send_s * 0.9 and not conn.out:
            conn.out.append(codec.HEARTBEAT)
            wire.wake_writer()
