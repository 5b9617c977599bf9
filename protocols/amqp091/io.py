"""trio glue for one AMQP connection: read chunks, decode, process, write one joined buffer.

Per received chunk the decoder yields every complete event and the processor handles them as a
batch; output accumulates in the processor and a single writer task sends it. Reading pauses
while the unsent output passes ``outbuf_bytes_max`` (a slow consumer slows its own publishers,
not the node). Heartbeats: sent every half interval when nothing else was sent; a peer silent for
two intervals is disconnected, as RabbitMQ does.

Resource alarms: while one is raised, a received chunk that holds a basic.publish is not
processed; the connection gets connection.blocked (when the client advertised the capability),
is not read, and its heartbeats are not checked until every alarm clears; then
connection.unblocked and the chunk is processed. Connections that do not publish go on.
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
from protocols.amqp091 import codec
from protocols.amqp091.processor import CLOSED, CLOSING, AMQPConnection, AMQPSettings

log = logging.getLogger("polymq.amqp")


@dataclass(frozen=True, slots=True)
class IOLimits:
    read_bytes_max: int = 256 << 10
    outbuf_bytes_max: int = 16 << 20
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    discard_after_error_s: float = 1.0
    discard_after_error_bytes_max: int = 4 << 20


async def handle(
    stream: ConnStream,
    broker: Broker,
    settings: AMQPSettings,
    limits: IOLimits,
    alarms: ResourceAlarms | None = None,
) -> None:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return
    wire = Wire(stream)
    conn = AMQPConnection(broker, settings, peer=(peer[0], peer[1]), wake_writer=wire.wake_writer)
    decoder = conn.decoder
    # -- protocol header -----------------------------------------------------------------------
    with trio.move_on_after(limits.handshake_timeout_s):
        while True:
            data = await stream.receive_some(limits.read_bytes_max)
            if not data:
                return
            decoder.feed(data)
            try:
                if decoder.header_received():
                    break
            except codec.BadProtocolHeader:
                with trio.move_on_after(limits.close_timeout_s):
                    await stream.send_all(codec.PROTOCOL_HEADER)
                return
    if not decoder.header_received():
        return
    conn.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_loop, wire, conn)
            nursery.start_soon(_heartbeats, wire, conn)
            await _reader(wire, conn, limits, alarms)
            wire.done = True
            await drain(wire, conn, limits.close_timeout_s)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the peer went away or missed its heartbeats
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


async def _reader(
    wire: Wire, conn: AMQPConnection, limits: IOLimits, alarms: ResourceAlarms | None
) -> None:
    stream = wire.stream
    decoder = conn.decoder
    closing_deadline: float | None = None
    first = True
    while conn.state != CLOSED:
        if first:
            # bytes that arrived together with the protocol header
            first = False
            data = b""
        else:
            if wire.pending_bytes > limits.outbuf_bytes_max:
                wire.drained = trio.Event()
                await wire.drained.wait()
            if conn.state == CLOSING:
                if closing_deadline is None:
                    closing_deadline = trio.current_time() + limits.close_timeout_s
                with trio.move_on_at(closing_deadline) as scope:
                    data = await stream.receive_some(limits.read_bytes_max)
                if scope.cancelled_caught:
                    return
            else:
                data = await stream.receive_some(limits.read_bytes_max)
            if not data:
                return
            wire.last_recv = trio.current_time()
            decoder.feed(data)
        try:
            events = decoder.events()
        except codec.AMQPError as exc:
            # The frame boundary may be lost: say why, flush, and close without waiting for a
            # close-ok that could not be read.
            await conn.handle_events(exc.events)
            conn.connection_error(exc.code, exc.reply_text, exc.class_id, exc.method_id)
            await flush_then_discard(
                wire,
                conn,
                close_timeout_s=limits.close_timeout_s,
                discard_s=limits.discard_after_error_s,
                read_bytes_max=limits.read_bytes_max,
            )
            return
        if events:
            if alarms is not None and alarms.raised() and _publishes(events):
                await _blocked(wire, conn, alarms)
            await conn.handle_events(events)
        wire.pending_bytes = sum(map(len, conn.out))


def _publishes(events: list[Any]) -> bool:
    publish = codec.Publish
    return any(type(ev) is publish for ev in events)


async def _blocked(wire: Wire, conn: AMQPConnection, alarms: ResourceAlarms) -> None:
    conn.block(" & ".join(f"low on {name}" for name in sorted(alarms.raised())))
    try:
        await hold_publisher(alarms, "amqp", wire)
    finally:
        conn.unblock()


async def _heartbeats(wire: Wire, conn: AMQPConnection) -> None:
    while conn.heartbeat_s <= 0:
        if conn.state in (CLOSING, CLOSED):
            return
        await trio.sleep(0.5)
        if conn.heartbeat_s <= 0 and conn.state not in (0, 1, 2):
            return  # negotiated off
    interval = conn.heartbeat_s
    while True:
        await trio.sleep(interval / 2)
        now = trio.current_time()
        if now - wire.last_recv > 2 * interval:
            log.info(
                "missed heartbeats from client, closing",
                extra={"peer": conn.statistics()["peer"], "timeout_s": interval},
            )
            await trio.aclose_forcefully(wire.stream)
            return
        if now - wire.last_send >= interval / 2:
            conn.out.append(codec.encode_heartbeat())
            wire.wake_writer()
