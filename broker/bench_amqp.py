"""AMQP 0-9-1 clients of ``polymq bench``: the handshake and control methods through pamqp, the
publish and deliver paths as pre-built frames and a struct scanner."""

from __future__ import annotations

import functools
import secrets
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import trio
from pamqp import commands, frame
from pamqp import exceptions as pamqp_exceptions

from broker.bench import (
    BenchError,
    Settings,
    Stats,
    StreamConnection,
    StreamDriver,
    produce,
    split_url,
)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE
FRAME_BYTES_MAX = 131072
#: deliveries a consumer acknowledges with one basic.ack (multiple)
ACK_EVERY = 64
_HEAD = struct.Struct(">BHI")
_CM = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_BODY_SIZE = struct.Struct(">HHQ")
BASIC_DELIVER, BASIC_ACK, BASIC_NACK = (60, 60), (60, 80), (60, 120)
CONNECTION_CLOSE, CHANNEL_CLOSE = (10, 50), (20, 40)


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


class AmqpConnection(StreamConnection[tuple[int, int, memoryview]]):
    """One connection with channel 1 open."""

    protocol = "AMQP"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.host, self.port, parts = split_url(
            url, ("amqp",), "an AMQP URL is amqp://user:pass@host:port/vhost", 5672
        )
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.frame_max = FRAME_BYTES_MAX

    async def open(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(PROTOCOL_HEADER)
        await self.expect(commands.Connection.Start)
        await self.send(
            commands.Connection.StartOk(
                client_properties={"product": "polymq bench"},
                mechanism="PLAIN",
                response=f"\0{self.user}\0{self.password}",
                locale="en_US",
            )
        )
        tune = await self.expect(commands.Connection.Tune)
        self.frame_max = min(FRAME_BYTES_MAX, tune.frame_max or FRAME_BYTES_MAX)
        await self.send(
            commands.Connection.TuneOk(channel_max=1, frame_max=self.frame_max, heartbeat=0)
        )
        await self.send(commands.Connection.Open(virtual_host=self.vhost))
        await self.expect(commands.Connection.OpenOk)
        await self.send(commands.Channel.Open(), channel=1)
        await self.expect(commands.Channel.OpenOk)

    async def send(self, method: Any, channel: int = 0) -> None:
        assert self.stream is not None
        await self.stream.send_all(frame.marshal(method, channel))

    def take(self) -> tuple[int, int, memoryview] | None:
        """``(type, channel, payload)`` of the next whole frame, or None."""
        buf = self.buf
        if len(buf) < 7:
            return None
        kind, channel, size = _HEAD.unpack_from(buf)
        end = 7 + size
        if len(buf) < end + 1:
            return None
        if buf[end] != FRAME_END:
            raise BenchError("bad AMQP frame end")
        payload = memoryview(bytes(buf[7:end]))
        del buf[: end + 1]
        return kind, channel, payload

    async def next_method(self) -> memoryview:
        """The payload of the next method frame (other frames are skipped)."""
        while True:
            kind, _channel, payload = await self.next()
            if kind == 1:
                return payload

    async def expect(self, cls: type) -> Any:
        """The next method frame, which must be a ``cls`` (a close raises)."""
        method = _decode_method(await self.next_method())
        if isinstance(method, cls):
            return method
        _check_close(method)
        raise BenchError(f"expected {cls.__name__}, got {type(method).__name__}")

    async def goodbye(self) -> None:
        await self.send(
            commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
        )
        await self.expect(commands.Connection.CloseOk)


def _decode_method(payload: memoryview) -> Any:
    raw = bytes(payload)
    try:
        _, _, value = frame.unmarshal(_HEAD.pack(1, 0, len(raw)) + raw + bytes([FRAME_END]))
    except pamqp_exceptions.UnmarshalingException as exc:
        raise BenchError(f"undecodable AMQP method: {exc}") from None
    return value


def _check_close(method: Any) -> None:
    if isinstance(method, (commands.Connection.Close, commands.Channel.Close)):
        raise BenchError(f"the broker closed: {method.reply_code} {method.reply_text}")


class AmqpDriver(StreamDriver):
    def __init__(self, settings: Settings, stats: Stats) -> None:
        super().__init__(settings, stats)
        self.queue = settings.queue or f"polymq-bench-{secrets.token_hex(4)}"
        self._declared = False

    def connection(self, role: str) -> AmqpConnection:
        return AmqpConnection(self.settings.url)

    async def setup(self) -> None:
        conn: AmqpConnection = await self.connect("setup")
        try:
            await conn.send(
                commands.Queue.Declare(queue=self.queue, durable=self.settings.persistent), 1
            )
            await conn.expect(commands.Queue.DeclareOk)
            self._declared = True
        finally:
            await conn.close()

    async def teardown(self) -> None:
        if not self._declared or self.settings.queue:
            return
        conn: AmqpConnection = await self.connect("teardown")
        try:
            await conn.send(commands.Queue.Delete(queue=self.queue), 1)
            await conn.expect(commands.Queue.DeleteOk)
        finally:
            await conn.close()

    # -- producer ------------------------------------------------------------------------------

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: AmqpConnection = await self.connect(f"p{index}")
        try:
            if s.confirm:
                await conn.send(commands.Confirm.Select(), 1)
                await conn.expect(commands.Confirm.SelectOk)
            if s.size > conn.frame_max - 8:
                raise BenchError(f"--size above the frame size {conn.frame_max - 8}")
            args = b"\x00\x00" + _shortstr("") + _shortstr(self.queue) + b"\x00"
            method = _frame(1, _CM.pack(60, 40) + args)
            flags, props = (0x1000, b"\x02") if s.persistent else (0, b"")
            header = _frame(2, _BODY_SIZE.pack(60, 0, s.size) + struct.pack(">H", flags) + props)
            prefix = method + header + _HEAD.pack(3, 1, s.size)
            inflight = trio.Semaphore(s.inflight_max) if s.confirm else None

            async def encode(seq: int, n: int) -> bytearray:
                out = bytearray()
                for k in range(n):
                    if inflight is not None:
                        await inflight.acquire()
                    out += prefix
                    out += stats.stamp(index, seq + k, s.size)
                    out.append(FRAME_END)
                return out

            assert conn.stream is not None
            listen = functools.partial(self._confirms, conn)
            await produce(s, stats, conn.stream, stop, inflight, s.inflight_max, listen, encode)
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    async def _confirms(self, conn: AmqpConnection, inflight: trio.Semaphore) -> None:
        stats = self.stats
        confirmed_tag = 0
        while True:
            payload = await conn.next_method()
            cm = _CM.unpack_from(payload)
            if cm in (BASIC_ACK, BASIC_NACK):
                tag = _U64.unpack_from(payload, 4)[0]
                multiple = payload[12] & 1
                n = tag - confirmed_tag if multiple else 1
                confirmed_tag = max(confirmed_tag, tag)
                if cm == BASIC_ACK:
                    stats.confirmed += n
                else:
                    stats.nacked += n
                for _ in range(n):
                    inflight.release()
                continue
            _check_close(_decode_method(payload))

    # -- consumer ------------------------------------------------------------------------------

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: AmqpConnection = await self.connect(f"c{index}")
        try:
            await conn.send(commands.Basic.Qos(prefetch_count=min(s.prefetch, 65535)), 1)
            await conn.expect(commands.Basic.QosOk)
            await conn.send(commands.Basic.Consume(queue=self.queue), 1)
            await conn.expect(commands.Basic.ConsumeOk)
            ready()
            assert conn.stream is not None
            body = bytearray()
            body_size = -1
            last_tag = acked_tag = 0
            while True:
                got = conn.take()
                if got is None:
                    if last_tag > acked_tag:
                        await conn.stream.send_all(_ack(last_tag))
                        acked_tag = last_tag
                    await conn.fill()
                    continue
                kind, _ch, payload = got
                if kind == 1:
                    cm = _CM.unpack_from(payload)
                    if cm == BASIC_DELIVER:
                        pos = 4 + 1 + payload[4]  # consumer tag
                        last_tag = _U64.unpack_from(payload, pos)[0]
                        body_size = -1
                        body.clear()
                        continue
                    _check_close(_decode_method(payload))
                elif kind == 2:
                    body_size = _U64.unpack_from(payload, 4)[0]
                    if body_size == 0:
                        stats.received(b"")
                elif kind == 3:
                    body += payload
                    if len(body) >= body_size >= 0:
                        stats.received(body)
                        body.clear()
                        if last_tag - acked_tag >= ACK_EVERY:
                            await conn.stream.send_all(_ack(last_tag))
                            acked_tag = last_tag
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()


def _frame(kind: int, payload: bytes, channel: int = 1) -> bytes:
    return _HEAD.pack(kind, channel, len(payload)) + payload + bytes([FRAME_END])


def _ack(tag: int) -> bytes:
    return _frame(1, _CM.pack(60, 80) + _U64.pack(tag) + b"\x01")
