"""STOMP 1.2 clients of ``polymq bench``: SEND to ``/queue/<name>`` (with a receipt per
message under ``--confirm``), SUBSCRIBE with ``ack:client`` and cumulative ACKs, over trio."""

from __future__ import annotations

import functools
import secrets
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

#: messages a consumer acknowledges with one cumulative ACK
ACK_EVERY = 64
#: a frame's headers may not exceed this
HEADER_BYTES_MAX = 64 << 10


def frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items())]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class StompConnection(StreamConnection[tuple[str, dict[str, str], bytes]]):
    protocol = "STOMP"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.host, self.port, parts = split_url(
            url, ("stomp", "tcp"), "a STOMP URL is stomp://user:pass@host:port", 61613
        )
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")

    async def open(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(
            frame(
                "CONNECT",
                {
                    "accept-version": "1.2",
                    "host": "/",
                    "login": self.user,
                    "passcode": self.password,
                    "heart-beat": "0,0",
                },
            )
        )
        command, headers, body = await self.next()
        if command != "CONNECTED":
            raise BenchError(f"STOMP CONNECT refused: {headers.get('message', command)}")

    def take(self) -> tuple[str, dict[str, str], bytes] | None:
        buf = self.buf
        while buf and buf[0] in (10, 13):  # heart-beats (EOLs) between frames
            del buf[:1]
        end = buf.find(b"\n\n")
        if end < 0:
            if len(buf) > HEADER_BYTES_MAX:
                raise BenchError("STOMP frame headers too long")
            return None
        head = bytes(buf[:end]).decode("utf-8", "replace").split("\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers.setdefault(key, value)
        start = end + 2
        length = headers.get("content-length")
        if length is not None:
            stop = start + int(length)
            if len(buf) < stop + 1:
                return None
        else:
            stop = buf.find(b"\x00", start)
            if stop < 0:
                return None
        body = bytes(buf[start:stop])
        del buf[: stop + 1]
        return head[0].strip(), headers, body

    async def goodbye(self) -> None:
        assert self.stream is not None
        await self.stream.send_all(frame("DISCONNECT", {}))


class StompDriver(StreamDriver):
    def __init__(self, settings: Settings, stats: Stats) -> None:
        super().__init__(settings, stats)
        self.destination = "/queue/" + (settings.queue or f"polymq-bench-{secrets.token_hex(4)}")

    def connection(self, role: str) -> StompConnection:
        return StompConnection(self.settings.url)

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: StompConnection = await self.connect(f"p{index}")
        try:
            head = f"SEND\ndestination:{self.destination}\ncontent-length:{s.size}\n"
            if s.persistent:
                head += "persistent:true\n"
            inflight = trio.Semaphore(s.inflight_max) if s.confirm else None

            async def encode(seq: int, n: int) -> bytearray:
                out = bytearray()
                for k in range(n):
                    receipt = ""
                    if inflight is not None:
                        await inflight.acquire()
                        receipt = f"receipt:{seq + k}\n"
                    out += (head + receipt + "\n").encode()
                    out += stats.stamp(index, seq + k, s.size)
                    out += b"\x00"
                return out

            assert conn.stream is not None
            listen = functools.partial(self._receipts, conn)
            await produce(s, stats, conn.stream, stop, inflight, s.inflight_max, listen, encode)
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    async def _receipts(self, conn: StompConnection, inflight: trio.Semaphore) -> None:
        while True:
            command, headers, _ = await conn.next()
            if command == "RECEIPT":
                self.stats.confirmed += 1
                inflight.release()
            elif command == "ERROR":
                raise BenchError(f"STOMP ERROR: {headers.get('message', '')}")

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn: StompConnection = await self.connect(f"c{index}")
        try:
            assert conn.stream is not None
            await conn.stream.send_all(
                frame(
                    "SUBSCRIBE",
                    {
                        "id": "0",
                        "destination": self.destination,
                        "ack": "client",
                        "prefetch-count": str(s.prefetch),
                        "receipt": "subscribed",
                    },
                )
            )
            command, headers, _ = await conn.next()
            if command != "RECEIPT":
                raise BenchError(f"SUBSCRIBE refused: {headers.get('message', command)}")
            ready()
            last_ack = ""
            pending = 0
            while True:
                got = conn.take()
                if got is None:
                    if pending:
                        await conn.stream.send_all(frame("ACK", {"id": last_ack}))
                        pending = 0
                    await conn.fill()
                    continue
                command, headers, body = got
                if command == "ERROR":
                    raise BenchError(f"STOMP ERROR: {headers.get('message', '')}")
                if command != "MESSAGE":
                    continue
                stats.received(body)
                last_ack = headers.get("ack", "")
                pending += 1
                if pending >= ACK_EVERY:
                    await conn.stream.send_all(frame("ACK", {"id": last_ack}))
                    pending = 0
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()
