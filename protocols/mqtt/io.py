"""trio glue for one MQTT connection: read chunks, decode, process, write one joined buffer.

One task per connection, the listener's: it reads a chunk, decodes and processes every packet
in it, and writes the output straight to the socket as far as the socket takes it without
waiting. Output made while that task waits for data (deliveries, acknowledgements the core
completes later, a takeover's DISCONNECT) is written by the hub's one flusher task once the
task that made it yields, so the output of one scheduling round leaves as one buffer per
connection. Only a socket that does not take everything gets a writer task, for as long as it
has output; reading goes on meanwhile and pauses while the unsent output passes
``outbuf_bytes_max``.

Deadlines: the first packet must be CONNECT within ``connect_timeout_s``, and a client silent
for 1.5 times its keepalive is disconnected ([MQTT-3.1.2-24]; MQTT 5 gets DISCONNECT 0x8D and
the will is published). One timer task per hub keeps both, with the connections in buckets of
``TIMER_TICK_S`` by deadline: no task, cancel scope or event per connection.

An idle connection thus holds one task and no trio synchronisation objects; this is why MQTT
does not use the shared ``protocols/_server.Wire`` and ``write_loop`` (two tasks and two
events per connection) that AMQP and STOMP use. A TLS connection (``mqtts``) reads through its
``TLSStream`` and writes through a writer task, since its bytes are encrypted on the way out.

Resource alarms: while one is raised, received data holding a PUBLISH is not processed and the
connection is not read (nor its keepalive counted) until every alarm clears, as RabbitMQ blocks
publishing connections; subscribers and their acknowledgements go on.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from protocols._server import ConnStream, ResourceAlarms, hold_publisher
from protocols._tls import TLSStream
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

TIMER_TICK_S = 0.25  # deadlines are kept to this resolution (a timeout is at most this late)
KEEPALIVE_GRACE = 1.5  # a client is disconnected after this many keepalive periods of silence


@dataclass(frozen=True, slots=True)
class IOLimits:
    read_bytes_max: int = 256 << 10
    outbuf_bytes_max: int = 16 << 20
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 5.0


class Watched(Protocol):
    """What the timer needs from a transport's connection (TCP ``Wire``, WebSocket wire)."""

    conn: MQTTConnection
    stream: ConnStream
    started: float  # trio time of accept
    last_recv: float  # trio time of the last MQTT data received
    timer_tick: int  # the bucket it is in, -1 for none


class IOService:
    """The trio side shared by the connections of one hub: the flusher task (output made
    outside a connection's own task) and the timer task (CONNECT timeout, keepalive)."""

    def __init__(self, nursery: trio.Nursery, limits: IOLimits) -> None:
        self.nursery = nursery
        self.limits = limits
        self.dirty: list[Wire] = []
        self.flusher = trio.lowlevel.ParkingLot()
        self.buckets: dict[int, set[Watched]] = {}  # deadline tick -> connections
        self.done_tick = math.floor(trio.current_time() / TIMER_TICK_S)

    # -- flusher -----------------------------------------------------------------------------

    async def flush_loop(self) -> None:
        while True:
            if self.dirty:
                await trio.lowlevel.checkpoint()
            else:
                await self.flusher.park()
            dirty, self.dirty = self.dirty, []
            for wire in dirty:
                wire.queued = False
                wire.flush()

    # -- deadlines ---------------------------------------------------------------------------

    def deadline(self, w: Watched) -> float | None:
        conn = w.conn
        if conn.state == CONNECT_WAIT:
            return w.started + self.limits.connect_timeout_s
        if conn.state == CONNECTED and conn.keepalive_s > 0:
            return w.last_recv + KEEPALIVE_GRACE * conn.keepalive_s
        return None

    def watch(self, w: Watched) -> None:
        """Put ``w`` in the bucket of its next deadline (in none once it has none)."""
        deadline = self.deadline(w)
        tick = (
            -1 if deadline is None else max(self.done_tick + 1, math.ceil(deadline / TIMER_TICK_S))
        )
        if tick == w.timer_tick:
            return
        self.unwatch(w)
        if tick >= 0:
            bucket = self.buckets.get(tick)
            if bucket is None:
                bucket = self.buckets[tick] = set()
            bucket.add(w)
            w.timer_tick = tick

    def unwatch(self, w: Watched) -> None:
        tick = w.timer_tick
        if tick < 0:
            return
        w.timer_tick = -1
        bucket = self.buckets.get(tick)
        if bucket is not None:
            bucket.discard(w)
            if not bucket:
                del self.buckets[tick]

    async def timer_loop(self) -> None:
        while True:
            await trio.sleep_until((self.done_tick + 1) * TIMER_TICK_S)
            now = trio.current_time()
            last = math.floor(now / TIMER_TICK_S)
            for tick in range(self.done_tick + 1, last + 1):
                self.done_tick = tick
                for w in self.buckets.pop(tick, ()):
                    w.timer_tick = -1
                    deadline = self.deadline(w)
                    if deadline is None:
                        continue
                    if deadline > now:  # data arrived since: the deadline moved on
                        self.watch(w)
                    else:
                        _expire(w)


def _expire(w: Watched) -> None:
    conn = w.conn
    if conn.state == CONNECT_WAIT:
        log.info("mqtt connect timeout", extra={"peer": conn.statistics()["peer"]})
        w.stream.socket.close()  # the reader wakes with ClosedResourceError
        return
    log.info(
        "mqtt keepalive timeout",
        extra={"client_id": conn.client_id, "keepalive_s": conn.keepalive_s},
    )
    conn.protocol_error(KEEP_ALIVE_TIMEOUT, "keep alive timeout")
    conn.wake_writer()  # the transport sends what is left, then closes


def service(hub: MQTTHub, limits: IOLimits) -> IOService:
    """The hub's IOService, started in the hub's nursery with its first connection."""
    svc: IOService | None = hub.io
    if svc is None:
        if hub.nursery is None:
            raise RuntimeError("the MQTT hub needs a nursery before it serves connections")
        svc = hub.io = IOService(hub.nursery, limits)
        hub.nursery.start_soon(svc.flush_loop)
        hub.nursery.start_soon(svc.timer_loop)
    return svc


class Wire:
    """One TCP connection's socket and output state (the processor's ``wake_writer`` is
    :meth:`wake`). ``writing`` is true while a writer task owns the socket's sending side;
    ``receiving`` while the reader waits for data, so an end decided elsewhere (takeover,
    keepalive) closes the socket once the output is out, which ends the reader."""

    __slots__ = (
        "stream",
        "svc",
        "conn",
        "started",
        "last_recv",
        "timer_tick",
        "queued",
        "receiving",
        "writing",
        "writer_bytes",
        "drained",
    )

    def __init__(self, stream: ConnStream, svc: IOService) -> None:
        self.stream = stream
        self.svc = svc
        self.conn: MQTTConnection = None  # type: ignore[assignment]  # set right after
        self.started = self.last_recv = trio.current_time()
        self.timer_tick = -1
        self.queued = False
        self.receiving = False
        self.writing = False
        self.writer_bytes = 0
        self.drained: trio.Event | None = None

    def wake(self) -> None:
        """Output is waiting: have the flusher write it once the current task yields."""
        if not self.queued:
            self.queued = True
            dirty = self.svc.dirty
            dirty.append(self)
            if len(dirty) == 1:
                self.svc.flusher.unpark_all()

    def pending_bytes(self) -> int:
        """Output not yet taken by the socket."""
        if not self.writing:
            return 0
        return self.writer_bytes + sum(map(len, self.conn.out))

    def flush(self) -> None:
        """Write the pending output as far as the socket takes it without waiting; a writer
        task sends the rest."""
        if self.writing:
            return  # the writer takes this output after what it is sending
        conn = self.conn
        data = conn.take_output()
        if data:
            sock = self.stream.socket
            fd = sock.fileno()
            if fd < 0:
                return  # closed
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone: the reader ends with ClosedResourceError
                sock.close()
                return
            if sent < len(data):
                self.writing = True
                self.writer_bytes = len(data) - sent
                self.svc.nursery.start_soon(self._write, memoryview(data)[sent:])
                return
            conn.on_output_flushed()
        if conn.state == CLOSED and self.receiving:
            self.stream.socket.close()

    async def _write(self, data: Any) -> None:
        conn = self.conn
        try:
            while data:
                await self.stream.send_all(data)
                conn.on_output_flushed()
                data = conn.take_output()
                self.writer_bytes = len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.stream.socket.close()
        except Exception:
            log.exception("mqtt writer failed", extra={"client_id": conn.client_id})
            self.stream.socket.close()
        finally:
            self.writing = False
            self.writer_bytes = 0
            if self.drained is not None:
                self.drained.set()
                self.drained = None
        if conn.state == CLOSED and self.receiving:
            self.stream.socket.close()

    async def wait_drained(self) -> None:
        """Until the writer task (if any) has sent everything."""
        if self.writing:
            if self.drained is None:
                self.drained = trio.Event()
            await self.drained.wait()

    async def drain(self, timeout_s: float) -> None:
        """Send what is left (at most ``timeout_s`` for what the socket does not take)."""
        self.flush()
        if self.writing:
            with trio.move_on_after(timeout_s):
                await self.wait_drained()


class _TLSWire(Wire):
    """A TLS connection's wire: its output is encrypted by the SSL object on the way out, so it
    always goes through the writer task (never straight to the socket)."""

    __slots__ = ()

    def flush(self) -> None:
        if self.writing:
            return
        conn = self.conn
        data = conn.take_output()
        if data:
            self.writing = True
            self.writer_bytes = len(data)
            self.svc.nursery.start_soon(self._write, data)
            return
        if conn.state == CLOSED and self.receiving:
            self.stream.socket.close()


async def handle(
    stream: ConnStream, hub: MQTTHub, limits: IOLimits, alarms: ResourceAlarms | None = None
) -> None:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return
    svc = service(hub, limits)
    tls = stream if isinstance(stream, TLSStream) else None
    wire = Wire(stream, svc) if tls is None else _TLSWire(stream, svc)
    conn = wire.conn = MQTTConnection(hub, peer=(peer[0], peer[1]), wake_writer=wire.wake)
    svc.watch(wire)
    sock = stream.socket
    read_bytes_max = limits.read_bytes_max
    data: bytes | None
    try:
        while conn.state != CLOSED:
            if wire.writing and wire.pending_bytes() > limits.outbuf_bytes_max:
                await wire.wait_drained()
                continue
            if tls is not None:
                wire.receiving = True
                data = await tls.receive_some(read_bytes_max)
                wire.receiving = False
            else:
                data = _read(sock, read_bytes_max)
                if data is None:
                    wire.receiving = True
                    await trio.lowlevel.wait_readable(sock)
                    wire.receiving = False
                    data = _read(sock, read_bytes_max)
                    if data is None:
                        continue
                else:
                    await trio.lowlevel.checkpoint()  # read without waiting: let others run
            if not data:
                conn.close_reason = conn.close_reason or "connection closed by the client"
                break
            wire.last_recv = trio.current_time()
            state = conn.state
            ok = await process_bytes(conn, data, alarms, wire)
            if conn.state != state:
                svc.watch(wire)  # CONNECT done: the keepalive deadline replaces the CONNECT one
            wire.flush()
            if not ok:
                break
        await wire.drain(limits.close_timeout_s)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        wire.receiving = False
        svc.unwatch(wire)
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await conn.close()


def _read(sock: trio.socket.SocketType, read_bytes_max: int) -> bytes | None:
    """What the non-blocking socket has (b"" at its end), None when nothing yet.

    The reader reads straight from the socket and waits for readability only when it has
    nothing, so an idle connection waits in one coroutine frame instead of the five of
    ``SocketStream.receive_some``. The descriptor is looked up on every read: a socket closed
    elsewhere reports -1, and its old number may already belong to another connection."""
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError
    try:
        return os.read(fd, read_bytes_max)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc


async def process_bytes(
    conn: MQTTConnection,
    data: bytes,
    alarms: ResourceAlarms | None = None,
    watched: Watched | None = None,
) -> bool:
    """Decode ``data`` and process every packet it completes (shared with the WebSocket
    transport). False when a decoding error ended the connection; its answer is in
    ``conn.out``. Packets that publish wait while a resource alarm is raised."""
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
        if alarms is not None and alarms.raised() and _publishes(events):
            await _hold(conn, alarms, watched)
        await conn.handle_events(events)
    return True


def _publishes(events: list[Any]) -> bool:
    publish = codec.Publish
    return any(type(ev) is publish for ev in events)


async def _hold(conn: MQTTConnection, alarms: ResourceAlarms, watched: Watched | None) -> None:
    """Hold a publishing connection until the alarms clear; its keepalive does not run out
    meanwhile (the client's PINGREQs wait unread behind its PUBLISH)."""
    svc: IOService | None = conn.hub.io
    if watched is not None and svc is not None:
        svc.unwatch(watched)
    try:
        await hold_publisher(alarms, "mqtt")
    finally:
        if watched is not None:
            watched.last_recv = trio.current_time()
            if svc is not None:
                svc.watch(watched)
