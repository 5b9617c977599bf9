"""MQTT 3.1.1 clients of ``polymq bench``: CONNECT, SUBSCRIBE, PUBLISH at QoS 0 or 1 with
PUBACKs, over trio. Several consumers share one subscription (``$share/<group>/<topic>``), so
each message is consumed once."""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import trio

from broker.bench import BenchError, Pacer, Settings, Stats

READ_BYTES_MAX = 256 << 10
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


class MqttConnection:
    def __init__(self, url: str, client_id: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise BenchError(f"an MQTT URL is mqtt://[user:pass@]host:port, not {url}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password or "")
        self.client_id = client_id
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def open(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        flags = 0x02  # clean session
        payload = _str(self.client_id)
        if self.user is not None:
            flags |= 0xC0
            payload += _str(self.user) + _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + _U16.pack(KEEPALIVE_S) + payload
        await self.stream.send_all(packet(CONNECT << 4, body))
        kind, _flags, data = await self.next_packet()
        if kind != CONNACK or len(data) < 2:
            raise BenchError("no CONNACK")
        if data[1]:
            raise BenchError(f"CONNACK refused the connection: return code {data[1]}")

    async def fill(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(READ_BYTES_MAX)
        if not data:
            raise BenchError("the broker closed the MQTT connection")
        self.buf += data

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

    async def next_packet(self) -> tuple[int, int, bytes]:
        while True:
            got = self.take()
            if got is not None:
                return got
            await self.fill()

    async def close(self) -> None:
        if self.stream is None:
            return
        try:
            with trio.move_on_after(2):
                await self.stream.send_all(packet(DISCONNECT << 4, b""))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.stream.aclose()
            self.stream = None


class MqttDriver:
    def __init__(self, settings: Settings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats
        self.run_id = secrets.token_hex(4)
        self.topic = settings.queue or f"polymq-bench/{self.run_id}"

    async def setup(self) -> None:
        conn = MqttConnection(self.settings.url, f"polymq-bench-{self.run_id}-check")
        await conn.open()
        await conn.close()

    async def teardown(self) -> None:
        pass

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn = MqttConnection(s.url, f"polymq-bench-{self.run_id}-p{index}")
        await conn.open()
        try:
            topic = _str(self.topic)
            qos = s.qos
            inflight = trio.Semaphore(min(s.inflight_max, PACKET_ID_MAX)) if qos else None
            pacer = Pacer(s.rate_per_producer)
            batch = 1 if s.rate else 32
            seq = 0
            packet_id = 0
            assert conn.stream is not None
            async with trio.open_nursery() as nursery:
                if inflight is not None:
                    nursery.start_soon(self._pubacks, conn, inflight)
                while not stop.is_set():
                    out = bytearray()
                    for _ in range(batch):
                        payload = stats.stamp(index, seq, s.size)
                        seq += 1
                        if inflight is None:
                            out += packet(PUBLISH << 4, topic + payload)
                            continue
                        await inflight.acquire()
                        packet_id = packet_id % PACKET_ID_MAX + 1
                        out += packet(PUBLISH << 4 | 0x02, topic + _U16.pack(packet_id) + payload)
                    await conn.stream.send_all(out)
                    stats.sent += batch
                    if inflight is None:
                        stats.confirmed += batch
                    await pacer.wait()
                if inflight is not None:
                    with trio.move_on_after(s.drain_timeout_s):
                        for _ in range(min(s.inflight_max, PACKET_ID_MAX)):  # all acked
                            await inflight.acquire()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    async def _pubacks(self, conn: MqttConnection, inflight: trio.Semaphore) -> None:
        while True:
            kind, _flags, _body = await conn.next_packet()
            if kind == PUBACK:
                self.stats.confirmed += 1
                inflight.release()

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn = MqttConnection(s.url, f"polymq-bench-{self.run_id}-c{index}")
        await conn.open()
        try:
            topic = self.topic
            if s.consumers > 1:
                topic = f"$share/polymq-bench-{self.run_id}/{topic}"
            assert conn.stream is not None
            await conn.stream.send_all(
                packet(SUBSCRIBE << 4 | 0x02, _U16.pack(1) + _str(topic) + bytes([s.qos]))
            )
            kind, _flags, body = await conn.next_packet()
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
