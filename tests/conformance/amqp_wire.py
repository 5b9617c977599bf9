"""A tiny AMQP 0-9-1 wire encoder/decoder for conformance tests, written from the spec
(amqp0-9-1.pdf section 4.2 and the XML class/method table), independent of
``protocols.amqp091`` on purpose: the broker is checked against a second reading of the spec.

Only what the tests need: frames, a handful of methods, field tables, content headers, and a
blocking socket client with a deadline on every read.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

# (class-id, method-id)
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_PUBLISH = (60, 40)
BASIC_GET = (60, 70)
BASIC_GET_OK = (60, 71)
BASIC_GET_EMPTY = (60, 72)
BASIC_ACK = (60, 80)


# --- encoding ----------------------------------------------------------------------------------


def shortstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    assert len(raw) < 256
    return struct.pack(">B", len(raw)) + raw


def longstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def field_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"t" + struct.pack(">B", value)
    if isinstance(value, int):
        return b"l" + struct.pack(">q", value)
    if isinstance(value, (str, bytes)):
        return b"S" + longstr(value)
    if isinstance(value, dict):
        return b"F" + table(value)
    raise TypeError(value)


def table_fields(values: dict[str, Any]) -> bytes:
    return b"".join(shortstr(k) + field_value(v) for k, v in values.items())


def table(values: dict[str, Any]) -> bytes:
    body = table_fields(values)
    return struct.pack(">I", len(body)) + body


def frame(kind: int, channel: int, payload: bytes, end: int = FRAME_END) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([end])


def method(channel: int, ids: tuple[int, int], args: bytes = b"") -> bytes:
    return frame(FRAME_METHOD, channel, struct.pack(">HH", *ids) + args)


def heartbeat() -> bytes:
    return frame(FRAME_HEARTBEAT, 0, b"")


def start_ok(
    user: str, password: str, mechanism: str = "PLAIN", auth_failure_close: bool = True
) -> bytes:
    if mechanism == "PLAIN":
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
    elif mechanism == "AMQPLAIN":  # a field table without its length prefix
        response = table_fields({"LOGIN": user, "PASSWORD": password})
    else:
        response = b""
    capabilities = {"consumer_cancel_notify": True}
    if auth_failure_close:  # ask for connection.close 403 instead of a bare socket close
        capabilities["authentication_failure_close"] = True
    props = table({"product": "conformance", "capabilities": capabilities})
    return method(
        0, CONNECTION_START_OK, props + shortstr(mechanism) + longstr(response) + shortstr("en_US")
    )


def tune_ok(channel_max: int, frame_max: int, heartbeat_s: int) -> bytes:
    return method(0, CONNECTION_TUNE_OK, struct.pack(">HIH", channel_max, frame_max, heartbeat_s))


def connection_open(vhost: str = "/") -> bytes:
    return method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + b"\x00")


def connection_close_ok() -> bytes:
    return method(0, CONNECTION_CLOSE_OK)


def channel_open(channel: int) -> bytes:
    return method(channel, CHANNEL_OPEN, shortstr(""))


def queue_declare(channel: int, name: str, passive: bool = False, durable: bool = False) -> bytes:
    bits = int(passive) | int(durable) << 1
    return method(
        channel, QUEUE_DECLARE, struct.pack(">H", 0) + shortstr(name) + bytes([bits]) + table({})
    )


def basic_publish(channel: int, exchange: str, routing_key: str, mandatory: bool = False) -> bytes:
    args = struct.pack(">H", 0) + shortstr(exchange) + shortstr(routing_key)
    return method(channel, BASIC_PUBLISH, args + bytes([int(mandatory)]))


def content_header(channel: int, body_size: int, delivery_mode: int | None = None) -> bytes:
    flags, props = 0, b""
    if delivery_mode is not None:
        flags |= 1 << 12
        props += bytes([delivery_mode])
    payload = struct.pack(">HHQH", 60, 0, body_size, flags) + props
    return frame(FRAME_HEADER, channel, payload)


def content_body(channel: int, body: bytes) -> bytes:
    return frame(FRAME_BODY, channel, body)


def basic_get(channel: int, queue: str, no_ack: bool = True) -> bytes:
    return method(channel, BASIC_GET, struct.pack(">H", 0) + shortstr(queue) + bytes([int(no_ack)]))


# --- decoding ----------------------------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n, "truncated"
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        (value,) = struct.unpack(fmt, self.take(size))
        return value

    def octet(self) -> int:
        return int(self.unpack(">B"))

    def short(self) -> int:
        return int(self.unpack(">H"))

    def long(self) -> int:
        return int(self.unpack(">I"))

    def shortstr(self) -> str:
        return self.take(self.octet()).decode()

    def longstr(self) -> bytes:
        return self.take(self.long())

    def table(self) -> dict[str, Any]:
        end = self.long() + self.pos
        out: dict[str, Any] = {}
        while self.pos < end:
            key = self.shortstr()
            out[key] = self.value()
        return out

    def value(self) -> Any:
        kind = self.take(1)
        simple = {b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"I": ">i", b"i": ">I"}
        simple |= {b"l": ">q", b"L": ">Q", b"f": ">f", b"d": ">d", b"T": ">Q"}
        if kind in simple:
            return self.unpack(simple[kind])
        if kind == b"t":
            return bool(self.octet())
        if kind == b"S":
            return self.longstr().decode("utf-8", "replace")
        if kind == b"x":
            return self.longstr()
        if kind == b"F":
            return self.table()
        if kind == b"A":
            end = self.long() + self.pos
            items = []
            while self.pos < end:
                items.append(self.value())
            return items
        if kind == b"D":
            scale = self.octet()
            return self.unpack(">i") / 10**scale
        if kind == b"V":
            return None
        raise AssertionError(f"unknown field type {kind!r}")


@dataclass
class Frame:
    kind: int
    channel: int
    payload: bytes

    @property
    def ids(self) -> tuple[int, int]:
        assert self.kind == FRAME_METHOD, self
        return struct.unpack(">HH", self.payload[:4])  # type: ignore[no-any-return]

    def args(self) -> Reader:
        reader = Reader(self.payload)
        reader.pos = 4
        return reader

    def close_reason(self) -> tuple[int, str, int, int]:
        """reply-code, reply-text, class-id, method-id of connection.close / channel.close."""
        assert self.ids in (CONNECTION_CLOSE, CHANNEL_CLOSE), self
        r = self.args()
        return r.short(), r.shortstr(), r.short(), r.short()


@dataclass
class Start:
    version: tuple[int, int]
    server_properties: dict[str, Any]
    mechanisms: list[str]
    locales: list[str]


@dataclass
class Tune:
    channel_max: int
    frame_max: int
    heartbeat: int


class Closed(Exception):
    """The broker closed the TCP connection."""


class RawClient:
    """A blocking socket that reads whole frames, each read bounded by a deadline."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"wanted {n} bytes, have {self.buf!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(self.buf)
            self.buf += chunk

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        self._fill(n, time.monotonic() + (timeout or self.timeout))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, timeout: float | None = None, skip_heartbeats: bool = True) -> Frame:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            self._fill(7, deadline)
            kind, channel, size = struct.unpack(">BHI", self.buf[:7])
            self._fill(7 + size + 1, deadline)
            payload, end = self.buf[7 : 7 + size], self.buf[7 + size]
            self.buf = self.buf[8 + size :]
            assert end == FRAME_END, f"bad frame-end {end:#x} from the broker"
            if kind == FRAME_HEARTBEAT and skip_heartbeats:
                assert channel == 0 and payload == b""
                continue
            return Frame(kind, channel, payload)

    def expect(self, ids: tuple[int, int], timeout: float | None = None) -> Frame:
        got = self.read_frame(timeout)
        assert got.kind == FRAME_METHOD and got.ids == ids, f"expected {ids}, got {got}" + (
            f" {got.close_reason()}" if got.ids in (CONNECTION_CLOSE, CHANNEL_CLOSE) else ""
        )
        return got

    def wait_eof(self, timeout: float | None = None) -> bytes:
        """Read until the broker closes the socket; returns whatever arrived first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            self._fill(len(self.buf) + (1 << 30), deadline)
        except Closed as closed:
            data: bytes = closed.args[0]
            self.buf = b""
            return data
        raise AssertionError("unreachable")

    # handshake ------------------------------------------------------------------------------

    def start(self) -> Start:
        self.send(PROTOCOL_HEADER)
        r = self.expect(CONNECTION_START).args()
        version = (r.octet(), r.octet())
        props = r.table()
        mechanisms = r.longstr().decode().split()
        locales = r.longstr().decode().split()
        return Start(version, props, mechanisms, locales)

    def login(self, user: str = "guest", password: str = "guest", mechanism: str = "PLAIN") -> Tune:
        self.start()
        self.send(start_ok(user, password, mechanism))
        r = self.expect(CONNECTION_TUNE).args()
        return Tune(r.short(), r.long(), r.short())

    def open(
        self,
        vhost: str = "/",
        heartbeat_s: int = 0,
        frame_max: int | None = None,
        channel_max: int | None = None,
    ) -> Tune:
        """The whole handshake up to connection.open-ok; returns the negotiated tune values."""
        tune = self.login()
        agreed = Tune(
            tune.channel_max if channel_max is None else channel_max,
            tune.frame_max if frame_max is None else frame_max,
            heartbeat_s,
        )
        self.send(tune_ok(agreed.channel_max, agreed.frame_max, agreed.heartbeat))
        self.send(connection_open(vhost))
        self.expect(CONNECTION_OPEN_OK)
        return agreed

    def expect_connection_close(self, timeout: float | None = None) -> tuple[int, str, int, int]:
        """The broker's connection.close; answers close-ok and checks the socket then closes."""
        reason = self.expect(CONNECTION_CLOSE, timeout).close_reason()
        self.send(connection_close_ok())
        self.wait_eof()
        return reason
