"""A minimal MQTT 3.1.1 client over a plain socket, for benchmarks.

Only what the benchmarks need: CONNECT / CONNACK, SUBSCRIBE / SUBACK, pre-encoded QoS 0 and QoS 1
PUBLISH blocks, PUBACK both ways, PINGREQ / PINGRESP as an "everything before this was read"
barrier, DISCONNECT, and a struct parser for incoming PUBLISH and PUBACK packets. Every blocking
call is bounded by the socket timeout.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from common import open_socket

PROTOCOL_LEVEL = 4  # MQTT 3.1.1
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ_PACKET = b"\xc0\x00"
PINGRESP, DISCONNECT = 13, 14
DISCONNECT_PACKET = b"\xe0\x00"

_U16 = struct.Struct(">H")

CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class BrokerClosed(Exception):
    """The broker closed the connection or refused a request."""


class Stalled(Exception):
    """Nothing (or not the expected packet) arrived from the broker within the timeout."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _U16.pack(len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    keepalive: int = 0,
    clean: bool = True,
    user: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if user is not None:
        flags |= 0x80
        payload += mqtt_str(user)
        if password is not None:
            flags |= 0x40
            payload += mqtt_str(password)
    head = mqtt_str("MQTT") + bytes([PROTOCOL_LEVEL, flags]) + _U16.pack(keepalive)
    return packet(CONNECT << 4, head + payload)


def subscribe_packet(packet_id: int, topic: str, qos: int) -> bytes:
    return packet(SUBSCRIBE << 4 | 0x02, _U16.pack(packet_id) + mqtt_str(topic) + bytes([qos]))


def publish_packet(topic: str, payload: bytes) -> tuple[bytes, int]:
    """A QoS 0 PUBLISH and the offset of its payload inside it (to patch sequence numbers in)."""
    body = mqtt_str(topic) + payload
    pkt = packet(PUBLISH << 4, body)
    return pkt, len(pkt) - len(payload)


def publish_packet_qos1(topic: str, payload: bytes) -> tuple[bytes, int, int]:
    """A QoS 1 PUBLISH (packet identifier 0, to be patched in), the offset of its packet
    identifier and the offset of its payload."""
    body = mqtt_str(topic) + b"\x00\x00" + payload
    pkt = packet(PUBLISH << 4 | 0x02, body)
    payload_offset = len(pkt) - len(payload)
    return pkt, payload_offset - 2, payload_offset


def connack_error(data: bytes | bytearray) -> str | None:
    """None for a successful 4-byte CONNACK, otherwise why not."""
    if len(data) < 4 or data[0] != CONNACK << 4 or data[1] != 2:
        return f"not a CONNACK: {bytes(data[:8]).hex()}"
    if data[3]:
        return f"CONNACK return code {data[3]} ({CONNACK_CODES.get(data[3], '?')})"
    return None


def scan(
    buf: bytearray,
    on_publish: Callable[[bytearray, int], None] | None,
    acks: bytearray | None = None,
    on_puback: Callable[[int], None] | None = None,
) -> int:
    """Parse the complete packets at the start of ``buf``; return the bytes used.

    ``on_publish(buf, offset)`` gets each PUBLISH's payload offset. With ``acks``, QoS 1
    PUBLISH packets are accepted and their PUBACKs appended to it (for the caller to send);
    with ``on_puback``, PUBACK packets are accepted and their packet identifiers passed on.
    Anything else other than PINGRESP / SUBACK raises :class:`BrokerClosed`.
    """
    i = 0
    n = len(buf)
    while i + 2 <= n:
        head = buf[i]
        j = i + 1
        length = 0
        shift = 0
        while True:
            if j >= n:
                return i
            b = buf[j]
            j += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 21:
                raise BrokerClosed("malformed remaining length from the broker")
        end = j + length
        if end > n:
            return i
        kind = head >> 4
        if kind == PUBLISH and on_publish is not None:
            t = j + 2 + (buf[j] << 8 | buf[j + 1])
            qos = (head >> 1) & 3
            if qos == 0:
                on_publish(buf, t)
            elif qos == 1 and acks is not None:
                acks += bytes((PUBACK << 4, 2, buf[t], buf[t + 1]))
                on_publish(buf, t + 2)
            else:
                raise BrokerClosed(f"unexpected QoS {qos} PUBLISH")
        elif kind == PUBACK and on_puback is not None:
            on_puback(buf[j] << 8 | buf[j + 1])
        elif kind == DISCONNECT:
            raise BrokerClosed("DISCONNECT from the broker")
        elif kind not in (PINGRESP, SUBACK):
            raise BrokerClosed(f"unexpected packet type {kind} from the broker")
        i = end
    return i


class RawClient:
    """One socket, one buffer. ``timeout`` bounds every wait for the broker."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.sock = open_socket(host, port, timeout)
        self.buf = bytearray()
        self.sock.sendall(connect_packet(client_id, 0, True, user, password))
        self._fill(4, "CONNACK")
        problem = connack_error(self.buf)
        if problem:
            self.close()
            raise BrokerClosed(problem)
        del self.buf[:4]

    def _fill(self, n: int, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Stalled(f"no {what} within {self.timeout:.0f} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise Stalled(f"no {what} within {self.timeout:.0f} s") from None
            finally:
                self.sock.settimeout(self.timeout)
            if not data:
                raise BrokerClosed(f"socket closed by the broker while waiting for {what}")
            self.buf.extend(data)

    def subscribe(self, topic: str, qos: int = 0, packet_id: int = 1) -> None:
        self.sock.sendall(subscribe_packet(packet_id, topic, qos))
        self._fill(5, "SUBACK")
        if self.buf[0] != SUBACK << 4 or _U16.unpack_from(self.buf, 2)[0] != packet_id:
            raise BrokerClosed(f"expected SUBACK, got {bytes(self.buf[:8]).hex()}")
        if self.buf[4] == 0x80:
            raise BrokerClosed(f"subscription to {topic!r} refused (SUBACK 0x80)")
        del self.buf[:5]

    def send(self, data: bytes | bytearray) -> None:
        self.sock.sendall(data)

    def ping(self) -> None:
        """PINGREQ and wait for PINGRESP: the broker has read everything sent before."""
        self.sock.sendall(PINGREQ_PACKET)
        self._fill(2, "PINGRESP")
        if bytes(self.buf[:2]) != b"\xd0\x00":
            raise BrokerClosed(f"expected PINGRESP, got {bytes(self.buf[:8]).hex()}")
        del self.buf[:2]

    def close(self) -> None:
        try:
            self.sock.settimeout(2)
            self.sock.sendall(DISCONNECT_PACKET)
        except OSError:
            pass
        self.sock.close()
