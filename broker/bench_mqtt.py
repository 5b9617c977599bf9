"""MQTT 3.1.1 clients of ``polymq bench``: CONNECT, SUBSCRIBE, PUBLISH at QoS 0 or 1 with
PUBACKs, over trio. Several consumers share one subscription (``$share/<group>/<topic>``), so
each message is consumed once."""

from __future__ import annotations

import functools
import secrets
import struct
from collections.abc import Callable
from urllib.parse import unquote

import trio

from broker.bench import (
    BenchError,
    Settings,
    Stats,
    StreamConnection,
    StreamDriver,
    produce,
    split_url,
)

KEEPALIVE_S = 60
PACKET_ID_MAX = 65535
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 4, 8, 9, 14
_U16 = struct.Struct(">H")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return _U16.pack(len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


class MqttConnection(StreamConnection[tuple[int, int, bytes]]):
    protocol = "MQTT"

    def __init__(self, url: str, client_id: str) -> None:
        super().__init__()
        self.host, self.port, parts = split_url(
            url, ("mqtt", "tcp"), "an MQTT URL is mqtt://[user:pass@]host:port", 1883
        )
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password or "")
        self.client_id = client_id

    async def open(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        flags = 0x02  # clean session
        payload = _str(self.client_id)
        if self.user is not None:
            flags |= 0xC0
            payload += _str(self.user) + _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + _U16.pack(KEEPALIVE_S) + payload
        await self.stream.send_all(packet(CONNECT << 4, body))
        kind, _flags, data = await self.next()
        if kind != CONNACK or len(data) < 2:
            raise BenchError("no CONNACK")
        if data[1]:
            raise BenchError(f"CONNACK refused the connection: return code {data[1]}")

    def take(self) -> tuple[int, int, bytes] | None:
        """``(type, flags, body)`` of the next whole packet, or None."""
        buf = self.buf
        n = len(buf)
        if n < 2:
            return None
        size = shift = 0
        pos = 1
        while True:
            if pos >= n:
                return None
            byte = buf[pos]
            size |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise BenchError("malformed MQTT remaining length")
        if n < pos + size:
            return None
        first = buf[0]
        body = bytes(buf[pos : pos + size])
        del buf[: pos + size]
        return first >> 4, first & 0x0F, body

    async def goodbye(self) -> None:
        assert self.stream is not None
        await self.stream.send_all(packet(DISCONNECT << 4, b""))


class MqttDriver(StreamDriver):
    def __init__(self, settings: Settings, stats: Stats) -> None:
        super().__init__(settings, stats)
        self.run_id = secrets.token_hex(4)
        self.topic = settings.queue or f"polymq-bench/{self.run_id}"

    def connection(self, role: str) -> MqttConnection:
        return MqttConnection(self.settings.url, f"polymq-bench-{self.run_id}-{role}")

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: MqttConnection = await self.connect(f"p{index}")
        try:
            topic = _str(self.topic)
            qos = s.qos
            permits = min(s.inflight_max, PACKET_ID_MAX)
            inflight = trio.Semaphore(permits) if qos else None
            packet_id = 0

            async def encode(seq: int, n: int) -> bytearray:
                nonlocal packet_id
                out = bytearray()
                for k in range(n):
                    payload = stats.stamp(index, seq + k, s.size)
                    if inflight is None:
                        out += packet(PUBLISH << 4, topic + payload)
                        continue
                    await inflight.acquire()
                    packet_id = packet_id % PACKET_ID_MAX + 1
                    out += packet(PUBLISH << 4 | 0x02, topic + _U16.pack(packet_id) + payload)
                return out

            assert conn.stream is not None
            listen = functools.partial(self._pubacks, conn)
            await produce(s, stats, conn.stream, stop, inflight, permits, listen, encode)
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    async def _pubacks(self, conn: MqttConnection, inflight: trio.Semaphore) -> None:
        while True:
            kind, _flags, _body = await conn.next()
            if kind == PUBACK:
                self.stats.confirmed += 1
                inflight.release()

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: MqttConnection = await self.connect(f"c{index}")
        try:
            topic = self.topic
            if s.consumers > 1:
                topic = f"$share/polymq-bench-{self.run_id}/{topic}"
            assert conn.stream is not None
            await conn.stream.send_all(
                packet(SUBSCRIBE << 4 | 0x02, _U16.pack(1) + _str(topic) + bytes([s.qos]))
            )
            kind, _flags, body = await conn.next()
            if kind != SUBACK or len(body) < 3 or body[2] == 0x80:
                raise BenchError(f"SUBSCRIBE {topic} refused")
            ready()
            acks = bytearray()
            while True:
                got = conn.take()
                if got is None:
                    if acks:
                        await conn.stream.send_all(acks)
                        acks = bytearray()
                    await conn.fill()
                    continue
                kind, flags, body = got
                if kind != PUBLISH:
                    continue
                tlen = _U16.unpack_from(body)[0]
                pos = 2 + tlen
                if flags & 0x06:
                    acks += packet(PUBACK << 4, body[pos : pos + 2])
                    pos += 2
                stats.received(memoryview(body)[pos:])
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()
