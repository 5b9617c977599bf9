"""STOMP 1.2 clients of ``polymq bench``: SEND to ``/queue/<name>`` (with a receipt per
message under ``--confirm``), SUBSCRIBE with ``ack:client`` and cumulative ACKs, over trio."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import trio

from broker.bench import BenchError, Pacer, Settings, Stats

READ_BYTES_MAX = 256 << 10
#: messages a consumer acknowledges with one cumulative ACK
ACK_EVERY = 64
#: a frame's headers may not exceed this
HEADER_BYTES_MAX = 64 << 10


def frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items())]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class StompConnection:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("stomp", "tcp"):
            raise BenchError(f"a STOMP URL is stomp://user:pass@host:port, not {url}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 61613
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

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
        command, headers, body = await self.next_frame()
        if command != "CONNECTED":
            raise BenchError(f"STOMP CONNECT refused: {headers.get('message', command)}")

    async def fill(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(READ_BYTES_MAX)
        if not data:
            raise BenchError("the broker closed the STOMP connection")
        self.buf += data

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

    async def next_frame(self) -> tuple[str, dict[str, str], bytes]:
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
                await self.stream.send_all(frame("DISCONNECT", {}))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.stream.aclose()
            self.stream = None


class StompDriver:
    def __init__(self, settings: Settings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats
        self.destination = "/queue/" + (settings.queue or f"polymq-bench-{secrets.token_hex(4)}")

    async def setup(self) -> None:
        conn = StompConnection(self.settings.url)
        await conn.open()
        await conn.close()

    async def teardown(self) -> None:
        pass

    async def producer(self, index: int, stop: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn = StompConnection(s.url)
        await conn.open()
        try:
            head = f"SEND\ndestination:{self.destination}\ncontent-length:{s.size}\n"
            if s.persistent:
                head += "persistent:true\n"
            inflight = trio.Semaphore(s.inflight_max) if s.confirm else None
            pacer = Pacer(s.rate_per_producer)
            batch = 1 if s.rate else 32
            seq = 0
            assert conn.stream is not None
            async with trio.open_nursery() as nursery:
                if inflight is not None:
                    nursery.start_soon(self._receipts, conn, inflight)
                while not stop.is_set():
                    out = bytearray()
                    for _ in range(batch):
                        receipt = ""
                        if inflight is not None:
                            await inflight.acquire()
                            receipt = f"receipt:{seq}\n"
                        out += (head + receipt + "\n").encode()
                        out += stats.stamp(index, seq, s.size)
                        out += b"\x00"
                        seq += 1
                    await conn.stream.send_all(out)
                    stats.sent += batch
                    if inflight is None:
                        stats.confirmed += batch
                    await pacer.wait()
                if inflight is not None:
                    with trio.move_on_after(s.drain_timeout_s):
                        for _ in range(s.inflight_max):  # every receipt arrived
                            await inflight.acquire()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    async def _receipts(self, conn: StompConnection, inflight: trio.Semaphore) -> None:
        while True:
            command, headers, _ = await conn.next_frame()
            if command == "RECEIPT":
                self.stats.confirmed += 1
                inflight.release()
            elif command == "ERROR":
                raise BenchError(f"STOMP ERROR: {headers.get('message', '')}")

    async def consumer(self, index: int, ready: Callable[[], None], done: trio.Event) -> None:
        s, stats = self.settings, self.stats
        conn = StompConnection(s.url)
        await conn.open()
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
            command, headers, _ = await conn.next_frame()
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
