"""A tiny MQTT 3.1.1 / 5.0 wire encoder and decoder for conformance tests, written from the
OASIS standards (3.1.1 section 2 and 3; 5.0 sections 1.5, 2 and 3), independent of
``protocols.mqtt`` on purpose: the broker is checked against a second reading of the spec.

Only what the tests need: the fixed header with its variable byte integer, CONNECT, PUBLISH,
SUBSCRIBE, the acknowledgements, PINGREQ, DISCONNECT, 5.0 properties, and a blocking socket
client with a deadline on every read.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

V311, V5 = 4, 5

# control packet types (2.2.1 / 5.0 2.1.2)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# 5.0 property identifiers (2.2.2.2) and their types
PROPERTY_TYPES: dict[int, str] = {
    0x01: "byte",  # Payload Format Indicator
    0x02: "u32",  # Message Expiry Interval
    0x03: "utf8",  # Content Type
    0x08: "utf8",  # Response Topic
    0x09: "bin",  # Correlation Data
    0x0B: "varint",  # Subscription Identifier
    0x11: "u32",  # Session Expiry Interval
    0x12: "utf8",  # Assigned Client Identifier
    0x13: "u16",  # Server Keep Alive
    0x15: "utf8",  # Authentication Method
    0x16: "bin",  # Authentication Data
    0x17: "byte",  # Request Problem Information
    0x18: "u32",  # Will Delay Interval
    0x19: "byte",  # Request Response Information
    0x1A: "utf8",  # Response Information
    0x1C: "utf8",  # Server Reference
    0x1F: "utf8",  # Reason String
    0x21: "u16",  # Receive Maximum
    0x22: "u16",  # Topic Alias Maximum
    0x23: "u16",  # Topic Alias
    0x24: "byte",  # Maximum QoS
    0x25: "byte",  # Retain Available
    0x26: "pair",  # User Property
    0x27: "u32",  # Maximum Packet Size
    0x28: "byte",  # Wildcard Subscription Available
    0x29: "byte",  # Subscription Identifier Available
    0x2A: "byte",  # Shared Subscription Available
}
MAXIMUM_PACKET_SIZE = 0x27
SESSION_EXPIRY_INTERVAL = 0x11

# 5.0 reason codes (2.4)
RC_MALFORMED_PACKET = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_IDENTIFIER_NOT_VALID = 0x85
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_TOO_LARGE = 0x95


# --- encoding ----------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Variable Byte Integer (1.5.5 / 3.1.1 2.2.3): 7 bits a byte, high bit = more follows."""
    assert 0 <= value <= 268_435_455, value
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">H", len(raw)) + raw


def binary(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def properties(values: list[tuple[int, Any]] | None) -> bytes:
    body = bytearray()
    for pid, value in values or []:
        kind = PROPERTY_TYPES[pid]
        body += varint(pid)
        if kind == "byte":
            body += struct.pack(">B", value)
        elif kind == "u16":
            body += struct.pack(">H", value)
        elif kind == "u32":
            body += struct.pack(">I", value)
        elif kind == "varint":
            body += varint(value)
        elif kind == "utf8":
            body += utf8(value)
        elif kind == "bin":
            body += binary(value)
        else:
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect(
    client_id: str | bytes = "",
    version: int = V311,
    clean: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: bytes | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    props: list[tuple[int, Any]] | None = None,
    protocol_name: bytes = b"MQTT",
) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    body = utf8(protocol_name) + struct.pack(">BBH", version, flags, keepalive)
    if version == V5:
        body += properties(props)
    body += utf8(client_id)
    if will is not None:
        if version == V5:
            body += properties(None)
        body += utf8(will[0]) + binary(will[1])
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += binary(password)
    return packet(CONNECT, body)


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    packet_id: int = 1,
    retain: bool = False,
    dup: bool = False,
    version: int = V311,
    props: list[tuple[int, Any]] | None = None,
) -> bytes:
    body = utf8(topic) + (struct.pack(">H", packet_id) if qos else b"")
    if version == V5:
        body += properties(props)
    flags = (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    return packet(PUBLISH, body + payload, flags)


def subscribe(packet_id: int, filters: list[tuple[str | bytes, int]], version: int = V311) -> bytes:
    body = struct.pack(">H", packet_id) + (properties(None) if version == V5 else b"")
    for topic_filter, options in filters:
        body += utf8(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, body, 0x02)


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP with reason Success (the short 5.0 form is valid)."""
    return packet(kind, struct.pack(">H", packet_id), 0x02 if kind == PUBREL else 0)


def pingreq() -> bytes:
    return packet(PINGREQ, b"")


def disconnect(reason: int | None = None, version: int = V311) -> bytes:
    if version == V5 and reason is not None:
        return packet(DISCONNECT, bytes([reason]) + properties(None))
    return packet(DISCONNECT, b"")


# --- decoding ----------------------------------------------------------------------------------


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        names = "? CONNECT CONNACK PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBSCRIBE SUBACK"
        names += " UNSUBSCRIBE UNSUBACK PINGREQ PINGRESP DISCONNECT AUTH"
        return names.split()[self.kind]


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(4):
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("variable byte integer longer than 4 bytes")


def read_properties(data: bytes, pos: int) -> tuple[dict[int, Any], int]:
    length, pos = read_varint(data, pos)
    end = pos + length
    out: dict[int, Any] = {}
    while pos < end:
        pid, pos = read_varint(data, pos)
        kind = PROPERTY_TYPES[pid]
        value: Any
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = struct.unpack_from(">H", data, pos)[0], pos + 2
        elif kind == "u32":
            value, pos = struct.unpack_from(">I", data, pos)[0], pos + 4
        elif kind == "varint":
            value, pos = read_varint(data, pos)
        elif kind in ("utf8", "bin"):
            n = struct.unpack_from(">H", data, pos)[0]
            value, pos = data[pos + 2 : pos + 2 + n], pos + 2 + n
            value = value.decode() if kind == "utf8" else value
        else:
            n = struct.unpack_from(">H", data, pos)[0]
            key = data[pos + 2 : pos + 2 + n].decode()
            pos += 2 + n
            n = struct.unpack_from(">H", data, pos)[0]
            value = (key, data[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
            out.setdefault(pid, []).append(value)
            continue
        out[pid] = value
    return out, end


@dataclass
class Connack:
    session_present: bool
    code: int
    props: dict[int, Any] = field(default_factory=dict)


def parse_connack(p: Packet, version: int) -> Connack:
    assert p.kind == CONNACK, p
    props = read_properties(p.body, 2)[0] if version == V5 and len(p.body) > 2 else {}
    return Connack(bool(p.body[0] & 1), p.body[1], props)


def disconnect_reason(p: Packet) -> int:
    """5.0 3.14.2.1: no variable header means 0x00 Normal disconnection."""
    assert p.kind == DISCONNECT, p
    return p.body[0] if p.body else 0


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


def parse_publish(p: Packet, version: int) -> Publish:
    assert p.kind == PUBLISH, p
    n = struct.unpack_from(">H", p.body, 0)[0]
    topic, pos = p.body[2 : 2 + n].decode(), 2 + n
    qos = (p.flags >> 1) & 3
    packet_id = None
    if qos:
        packet_id, pos = struct.unpack_from(">H", p.body, pos)[0], pos + 2
    if version == V5:
        pos = read_properties(p.body, pos)[1]
    return Publish(topic, p.body[pos:], qos, bool(p.flags & 1), bool(p.flags & 8), packet_id)


# --- a blocking client with deadlines ----------------------------------------------------------


class Closed(Exception):
    """The server closed the connection; ``packets`` are those read before the end."""

    def __init__(self, packets: list[Packet]) -> None:
        super().__init__(f"connection closed after {[p.name for p in packets]}")
        self.packets = packets


class RawClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send what the server still takes; False once it has closed or reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError:  # connection reset: the server closed without reading everything
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def read_packet(self, timeout: float | None = None) -> Packet:
        """The next packet; ``Closed`` if the connection ends first, ``TimeoutError`` if the
        deadline passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                try:
                    length, pos = read_varint(self.buf, 1)
                except IndexError:
                    length, pos = -1, 0
                if length >= 0 and len(self.buf) >= pos + length:
                    first = self.buf[0]
                    body, self.buf = self.buf[pos : pos + length], self.buf[pos + length :]
                    return Packet(first >> 4, first & 0x0F, body)
            if self.eof:
                raise Closed([])
            self._fill(deadline)

    def read_until_closed(self, timeout: float | None = None) -> list[Packet]:
        """Every packet until the server closes; ``TimeoutError`` if it stays open."""
        packets: list[Packet] = []
        while True:
            try:
                packets.append(self.read_packet(timeout))
            except Closed:
                return packets

    def handshake(self, version: int = V311, **kwargs: Any) -> Connack:
        self.send(connect(version=version, **kwargs))
        return parse_connack(self.read_packet(), version)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
