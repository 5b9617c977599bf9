"""A minimal AMQP 0-9-1 client over a plain socket, for benchmarks.

Only what the benchmarks need: the PLAIN handshake, channel.open, queue.declare / delete,
basic.qos / consume, confirm.select, pre-encoded basic.publish blocks and a struct parser for
basic.deliver and publisher-confirm acks. Every blocking call is bounded by the socket timeout;
a connection.close or channel.close from the broker raises :class:`BrokerClosed`.
"""

from __future__ import annotations

import select
import struct
import time

from common import open_socket

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"
FRAME_MAX = 131072
EMPTY_TABLE = b"\x00\x00\x00\x00"

_FRAME_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_ACK_ARGS = struct.Struct(">QB")

# (class, method) ids used here
CONNECTION_START, CONNECTION_START_OK = (10, 10), (10, 11)
CONNECTION_TUNE, CONNECTION_TUNE_OK, CONNECTION_OPEN = (10, 30), (10, 31), (10, 40)
CONNECTION_OPEN_OK, CONNECTION_CLOSE, CONNECTION_CLOSE_OK = (10, 41), (10, 50), (10, 51)
CHANNEL_OPEN, CHANNEL_OPEN_OK, CHANNEL_CLOSE = (20, 10), (20, 11), (20, 40)
QUEUE_DECLARE, QUEUE_DECLARE_OK = (50, 10), (50, 11)
QUEUE_DELETE, QUEUE_DELETE_OK = (50, 40), (50, 41)
BASIC_QOS, BASIC_QOS_OK, BASIC_CONSUME, BASIC_CONSUME_OK = (60, 10), (60, 11), (60, 20), (60, 21)
BASIC_CANCEL, BASIC_PUBLISH, BASIC_RETURN, BASIC_DELIVER = (60, 30), (60, 40), (60, 50), (60, 60)
BASIC_ACK, BASIC_NACK = (60, 80), (60, 120)
CONFIRM_SELECT, CONFIRM_SELECT_OK = (85, 10), (85, 11)


class BrokerClosed(Exception):
    """The broker closed the connection or the channel (reply code and text in the message)."""


class Stalled(Exception):
    """Nothing arrived from the broker within the timeout."""


def shortstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def method_frame(channel: int, cm: tuple[int, int], args: bytes = b"") -> bytes:
    payload = _CLASS_METHOD.pack(*cm) + args
    return _FRAME_HEAD.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def publish_block(
    channel: int, exchange: str, routing_key: str, body: bytes, delivery_mode: int
) -> tuple[bytes, int]:
    """basic.publish + content header (delivery-mode only) + one body frame.

    Returns the bytes and the offset of the body inside them (to patch sequence numbers in).
    """
    method = method_frame(
        channel, BASIC_PUBLISH, b"\x00\x00" + shortstr(exchange) + shortstr(routing_key) + b"\x00"
    )
    # class 60, weight 0, body size, property flags (bit 12: delivery-mode), delivery-mode
    head = struct.pack(">HHQHB", 60, 0, len(body), 0x1000, delivery_mode)
    header = _FRAME_HEAD.pack(FRAME_HEADER, channel, len(head)) + head + FRAME_END
    body_frame_head = _FRAME_HEAD.pack(FRAME_BODY, channel, len(body))
    block = method + header + body_frame_head + body + FRAME_END
    return block, len(method) + len(header) + len(body_frame_head)


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return method_frame(channel, BASIC_ACK, _ACK_ARGS.pack(delivery_tag, 1 if multiple else 0))


def _close_reason(args: bytes | memoryview) -> str:
    code = struct.unpack_from(">H", args, 0)[0]
    n = args[2]
    text = bytes(args[3 : 3 + n]).decode(errors="replace")
    cls, meth = struct.unpack_from(">HH", args, 3 + n)
    return f"{code} {text} (class {cls}, method {meth})"


class RawConnection:
    """One socket, one buffer. ``timeout`` bounds every wait for the broker."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.sock = open_socket(host, port, timeout)
        self.buf = bytearray()
        self.sock.sendall(PROTOCOL_HEADER)
        self.wait_method(0, CONNECTION_START)
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send(
            method_frame(
                0,
                CONNECTION_START_OK,
                EMPTY_TABLE + shortstr("PLAIN") + longstr(response) + shortstr("en_US"),
            )
        )
        tune = self.wait_method(0, CONNECTION_TUNE)
        channel_max, frame_max, _heartbeat = struct.unpack_from(">HIH", tune, 0)
        self.frame_max = min(frame_max or FRAME_MAX, FRAME_MAX)
        # heartbeat 0: disabled, both brokers accept it from the client
        self.send(
            method_frame(0, CONNECTION_TUNE_OK, struct.pack(">HIH", channel_max, self.frame_max, 0))
        )
        self.send(method_frame(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + b"\x00"))
        self.wait_method(0, CONNECTION_OPEN_OK)

    # -- raw I/O ---------------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise Stalled(f"broker did not read for {self.timeout:.0f} s (sendall)") from exc

    def recv_some(self, timeout: float | None = None) -> int:
        """Append what arrives within ``timeout`` (default: the connection timeout)."""
        wait = self.timeout if timeout is None else timeout
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready:
            if timeout is None:
                raise Stalled(f"nothing from the broker for {self.timeout:.0f} s")
            return 0
        data = self.sock.recv(1 << 18)
        if not data:
            raise BrokerClosed("socket closed by the broker")
        self.buf += data
        return len(data)

    def next_frame(self) -> tuple[int, int, bytes] | None:
        """Pop one complete frame from the buffer, or None."""
        buf = self.buf
        if len(buf) < 7:
            return None
        ftype, channel, size = _FRAME_HEAD.unpack_from(buf, 0)
        if len(buf) < size + 8:
            return None
        payload = bytes(buf[7 : 7 + size])
        if buf[7 + size] != 0xCE:
            raise BrokerClosed(f"bad frame end after frame type {ftype}")
        del buf[: size + 8]
        return ftype, channel, payload

    def wait_method(self, channel: int, cm: tuple[int, int], timeout: float | None = None) -> bytes:
        """Wait for one method; heartbeats are skipped, anything else unexpected raises."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.next_frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.recv_some(left):
                    raise Stalled(f"no {cm} from the broker within the timeout")
                continue
            ftype, ch, payload = frame
            if ftype == FRAME_HEARTBEAT:
                continue
            if ftype != FRAME_METHOD:
                raise BrokerClosed(f"unexpected frame type {ftype} while waiting for {cm}")
            got = _CLASS_METHOD.unpack_from(payload, 0)
            if got == CONNECTION_CLOSE:
                self.send(method_frame(0, CONNECTION_CLOSE_OK))
                raise BrokerClosed("connection.close " + _close_reason(payload[4:]))
            if got == CHANNEL_CLOSE:
                raise BrokerClosed(f"channel.close on {ch}: " + _close_reason(payload[4:]))
            if got == cm and ch == channel:
                return payload[4:]
            raise BrokerClosed(f"unexpected method {got} on channel {ch} while waiting for {cm}")

    # -- methods ---------------------------------------------------------------------------------

    def channel_open(self, channel: int = 1) -> None:
        self.send(method_frame(channel, CHANNEL_OPEN, shortstr("")))
        self.wait_method(channel, CHANNEL_OPEN_OK)

    def queue_declare(self, channel: int, queue: str, durable: bool) -> None:
        bits = 0b10 if durable else 0
        self.send(
            method_frame(
                channel,
                QUEUE_DECLARE,
                b"\x00\x00" + shortstr(queue) + bytes([bits]) + EMPTY_TABLE,
            )
        )
        self.wait_method(channel, QUEUE_DECLARE_OK)

    def queue_delete(self, channel: int, queue: str) -> int:
        self.send(method_frame(channel, QUEUE_DELETE, b"\x00\x00" + shortstr(queue) + b"\x00"))
        return struct.unpack_from(">I", self.wait_method(channel, QUEUE_DELETE_OK), 0)[0]

    def basic_qos(self, channel: int, prefetch: int) -> None:
        self.send(method_frame(channel, BASIC_QOS, struct.pack(">IHB", 0, prefetch, 0)))
        self.wait_method(channel, BASIC_QOS_OK)

    def basic_consume(self, channel: int, queue: str, no_ack: bool = False) -> bytes:
        bits = 0b10 if no_ack else 0
        self.send(
            method_frame(
                channel,
                BASIC_CONSUME,
                b"\x00\x00" + shortstr(queue) + shortstr("") + bytes([bits]) + EMPTY_TABLE,
            )
        )
        args = self.wait_method(channel, BASIC_CONSUME_OK)
        return bytes(args[1 : 1 + args[0]])

    def confirm_select(self, channel: int) -> None:
        self.send(method_frame(channel, CONFIRM_SELECT, b"\x00"))
        self.wait_method(channel, CONFIRM_SELECT_OK)

    def close(self, timeout: float = 5.0) -> None:
        """connection.close, then wait (bounded) for close-ok; frames in between are dropped."""
        try:
            self.send(
                method_frame(
                    0, CONNECTION_CLOSE, struct.pack(">H", 200) + shortstr("bye") + b"\0\0\0\0"
                )
            )
            deadline = time.monotonic() + timeout
            self.buf.clear()
            while time.monotonic() < deadline:
                frame = self.next_frame()
                if frame is None:
                    if not self.recv_some(max(0.0, deadline - time.monotonic())):
                        break
                    continue
                ftype, _, payload = frame
                if ftype == FRAME_METHOD and _CLASS_METHOD.unpack_from(payload, 0) in (
                    CONNECTION_CLOSE_OK,
                    CONNECTION_CLOSE,
                ):
                    break
        except (OSError, BrokerClosed, Stalled):
            pass
        finally:
            self.sock.close()


def scan(buf: bytearray, on_deliver_body, on_ack, on_nack, tag: int = 0) -> tuple[int, int]:
    """Parse every complete frame in ``buf``; return the bytes consumed and the current tag.

    ``tag`` is the delivery tag of the last basic.deliver seen (its body may arrive in a later
    chunk than the method frame): pass back what the previous call returned.

    ``on_deliver_body(delivery_tag, body_memoryview)`` for each basic.deliver's body frame,
    ``on_ack(tag, multiple)`` / ``on_nack(tag, multiple)`` for publisher confirms. A
    connection.close, channel.close or basic.cancel from the broker raises BrokerClosed.
    """
    view = memoryview(buf)
    end = len(buf)
    pos = 0
    unpack_head = _FRAME_HEAD.unpack_from
    unpack_cm = _CLASS_METHOD.unpack_from
    unpack_u64 = _U64.unpack_from
    try:
        while end - pos >= 7:
            ftype, ch, size = unpack_head(buf, pos)
            nxt = pos + size + 8
            if nxt > end:
                break
            p = pos + 7
            if ftype == FRAME_BODY:
                on_deliver_body(tag, view[p : p + size])
            elif ftype == FRAME_METHOD:
                cm = unpack_cm(buf, p)
                if cm == BASIC_DELIVER:
                    clen = buf[p + 4]
                    tag = unpack_u64(buf, p + 5 + clen)[0]
                elif cm == BASIC_ACK:
                    t, multiple = _ACK_ARGS.unpack_from(buf, p + 4)
                    on_ack(t, bool(multiple & 1))
                elif cm == BASIC_NACK:
                    t, multiple = _ACK_ARGS.unpack_from(buf, p + 4)
                    on_nack(t, bool(multiple & 1))
                elif cm == CONNECTION_CLOSE:
                    raise BrokerClosed(
                        "connection.close " + _close_reason(bytes(buf[p + 4 : nxt - 1]))
                    )
                elif cm == CHANNEL_CLOSE:
                    raise BrokerClosed(
                        f"channel.close on {ch}: " + _close_reason(bytes(buf[p + 4 : nxt - 1]))
                    )
                elif cm == BASIC_CANCEL:
                    raise BrokerClosed("basic.cancel from the broker")
                elif cm == BASIC_RETURN:
                    code = struct.unpack_from(">H", buf, p + 4)[0]
                    text = bytes(buf[p + 7 : p + 7 + buf[p + 6]]).decode(errors="replace")
                    raise BrokerClosed(f"basic.return from the broker: {code} {text}")
            pos = nxt
    finally:
        view.release()
    return pos, tag
