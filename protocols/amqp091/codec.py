"""AMQP 0-9-1 frames to events and back, without I/O.

The decoder is fed raw bytes and returns events. Connection and channel control methods are
decoded by pamqp and surface as :class:`Method`; the three frames of a ``basic.publish``
(method, content header, body frames) are recognised with ``struct`` and slices and surface as
one assembled :class:`Publish`; ``basic.ack`` from a consumer surfaces as :class:`Ack` without
pamqp. Encoders return bytes ready for the socket; deliveries, get-oks, returns and publisher
confirms are built with ``struct`` directly.

Framing rules enforced by :meth:`Decoder.events`, with RabbitMQ's reply codes and texts
(``rabbit_reader``, ``rabbit_command_assembler``; payloads are printed as Erlang binaries, see
:func:`_erlang_binary`, "all octets" up to 16 and "first 16 octets" beyond):

* a frame whose payload exceeds ``frame_max - 8`` -> 501 "type T, all octets = <<>>:
  {frame_too_large,SIZE,MAX}" (detected from the 7-byte frame header, before the payload
  arrives);
* a frame-end octet other than 0xCE -> 501 "type T, all octets = <<...>>:
  {invalid_frame_end_marker,N}";
* an unknown frame type, a method frame shorter than 4 octets, a header frame shorter than
  12 octets, a heartbeat with a payload -> 501 "type T, all octets = <<...>>: unknown_frame";
* a heartbeat on a channel other than 0, a content header or body on channel 0 -> 505
  "type T, all octets = <<...>>" (RabbitMQ's choice; the spec says 501 for a heartbeat);
* a content header or body frame with no publish in progress on its channel -> 505 "expected
  method frame, got non method frame instead"; a method or body frame where a header is due,
  a method or header frame where a body is due, a header for another class -> 505 "expected
  content header/body ..." with basic.publish's ids;
* method arguments that do not decode -> 501 "cannot decode <<...>>" with the method's ids
  (short strings that are not UTF-8 included: RabbitMQ takes them as binaries, the broker
  keeps names as text);
* body frames that carry more octets than the header announced -> 501 FRAME_ERROR;
* a malformed property list -> 502 SYNTAX_ERROR;
* an unknown class/method id -> 540 NOT_IMPLEMENTED with those ids (RabbitMQ 3.10 drops
  the socket without a reason);
* ``basic.publish`` on channel 0 -> 503 COMMAND_INVALID.

Every one of these is fatal for the connection: the decoder cannot resynchronise after it,
and every later call of :meth:`Decoder.events` raises the same error again.

Properties are plain dicts (see :func:`decode_properties`) whose values msgpack can serialise.
Both directions keep a bounded cache, because every publisher sends the same property block
again and again: the decoder maps raw property bytes to a shared dict (the broker never
mutates a received dict), the encoder maps ``id(dict)`` to the encoded bytes and keeps the
dict referenced so its id cannot be reused while the entry lives.
"""

from __future__ import annotations

import decimal
import struct
from typing import Any, NamedTuple

from pamqp import base as pamqp_base
from pamqp import commands as pamqp_commands
from pamqp import frame as pamqp_frame

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096
"""The spec's minimum ``frame_max``; every peer must accept frames of this size."""
FRAME_OVERHEAD = 8
"""Octets around a frame payload: type, channel, size (7) and the frame-end octet (1)."""

REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES: dict[int, str] = {
    REPLY_SUCCESS: "OK",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

CLASS_BASIC = 60
# (class_id << 16) | method_id of the methods on the fast paths
_PUBLISH = (60 << 16) | 40
_ACK = (60 << 16) | 80
_METHOD_RETURN = (60 << 16) | 50
_METHOD_DELIVER = (60 << 16) | 60
_METHOD_GET_OK = (60 << 16) | 71
_METHOD_NACK = (60 << 16) | 120

PROPERTIES_CACHE_ENTRIES_MAX = 1024
TABLE_DEPTH_MAX = 64
"""Nesting limit for field tables and arrays in received properties (hostile-input guard)."""


class AMQPError(Exception):
    """A protocol error to report to the peer: connection-level (close the connection with
    connection.close) unless ``channel_level``.

    ``text`` is the detail; :attr:`reply_text` prefixes it with the code's name as RabbitMQ
    does ("FRAME_ERROR - ..."). When raised by :meth:`Decoder.events`, ``events`` holds the
    events decoded before the error in that call; handle them before closing.
    """

    def __init__(
        self,
        code: int,
        text: str,
        *,
        channel: int = 0,
        class_id: int = 0,
        method_id: int = 0,
        channel_level: bool = False,
    ) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text
        self.channel = channel
        self.class_id = class_id
        self.method_id = method_id
        self.channel_level = channel_level
        self.events: list[Event] = []

    @property
    def reply_text(self) -> str:
        """``NAME - text`` as it goes into connection.close / channel.close: at most 255
        octets; a longer text is cut to its first 252 octets and "..." as RabbitMQ does."""
        text = f"{REPLY_NAMES.get(self.code, str(self.code))} - {self.text}"
        raw = text.encode("utf-8")
        if len(raw) > 255:
            text = raw[:252].decode("utf-8", "ignore") + "..."
        return text

    def __str__(self) -> str:
        return f"{self.code} {self.reply_text}"


class BadProtocolHeader(Exception):
    """The first 8 bytes are not AMQP 0-9-1: reply PROTOCOL_HEADER and close the socket."""


# ---------------------------------------------------------------------------------------------
# Events


class Method(NamedTuple):
    """A control method on ``channel``, decoded by pamqp."""

    channel: int
    method: pamqp_base.Frame


class Publish(NamedTuple):
    """A ``basic.publish`` with its content header and body frames, assembled."""

    channel: int
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    props: dict[str, Any]
    body: bytes


class Ack(NamedTuple):
    """A ``basic.ack`` from a consumer."""

    channel: int
    delivery_tag: int
    multiple: bool


class Heartbeat(NamedTuple):
    """A heartbeat frame (always on channel 0)."""


class ContentTooLarge(NamedTuple):
    """A publish whose header announces more than ``message_bytes_max`` octets of body.

    The decoder skips its body frames. The processor closes the channel with 406
    PRECONDITION_FAILED ("message size N is larger than configured max size M").
    """

    channel: int
    class_id: int
    method_id: int
    size: int


Event = Method | Publish | Ack | Heartbeat | ContentTooLarge

_HEARTBEAT_EVENT = Heartbeat()
_new_tuple = tuple.__new__


# ---------------------------------------------------------------------------------------------
# Structs

_FRAME_HDR = struct.Struct(">BHI")
_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DECIMAL = struct.Struct(">Bi")
_CONTENT_HDR = struct.Struct(">HHQ")
_ACK_ARGS = struct.Struct(">QB")

_HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
_END = b"\xce"


# ---------------------------------------------------------------------------------------------
# Field tables


def _decode_value(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    kind = data[pos]
    pos += 1
    if kind == 0x53:  # 'S' long string
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        raw = data[pos : pos + n]
        if len(raw) != n:
            raise ValueError("truncated long string")
        try:
            return raw.decode("utf-8"), pos + n
        except UnicodeDecodeError:
            return raw, pos + n
    if kind == 0x49:  # 'I' int32
        return _I32.unpack_from(data, pos)[0], pos + 4
    if kind == 0x6C:  # 'l' int64
        return _I64.unpack_from(data, pos)[0], pos + 8
    if kind == 0x74:  # 't' boolean
        return data[pos] != 0, pos + 1
    if kind == 0x46:  # 'F' table
        return _decode_table(data, pos, depth + 1)
    if kind == 0x41:  # 'A' array
        return _decode_array(data, pos, depth + 1)
    if kind == 0x62:  # 'b' int8
        return _I8.unpack_from(data, pos)[0], pos + 1
    if kind == 0x42:  # 'B' uint8
        return data[pos], pos + 1
    if kind == 0x73:  # 's' int16
        return _I16.unpack_from(data, pos)[0], pos + 2
    if kind == 0x75:  # 'u' uint16
        return _U16.unpack_from(data, pos)[0], pos + 2
    if kind == 0x69:  # 'i' uint32
        return _U32.unpack_from(data, pos)[0], pos + 4
    if kind == 0x4C:  # 'L' int64: signed, as RabbitMQ and the errata read it
        return _I64.unpack_from(data, pos)[0], pos + 8
    if kind == 0x66:  # 'f' float32
        return _F32.unpack_from(data, pos)[0], pos + 4
    if kind == 0x64:  # 'd' float64
        return _F64.unpack_from(data, pos)[0], pos + 8
    if kind == 0x44:  # 'D' decimal: scale octet + int32, lossy as a float
        scale, raw_int = _DECIMAL.unpack_from(data, pos)
        return raw_int / (10**scale), pos + 5
    if kind == 0x54:  # 'T' timestamp, seconds
        return _U64.unpack_from(data, pos)[0], pos + 8
    if kind == 0x78:  # 'x' byte array
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        raw = data[pos : pos + n]
        if len(raw) != n:
            raise ValueError("truncated byte array")
        return raw, pos + n
    if kind in (0x56, 0x00):  # 'V' void (NUL seen in the wild)
        return None, pos
    raise ValueError(f"unknown field type {kind:#04x}")


def _decode_table(data: bytes, pos: int, depth: int) -> tuple[dict[str, Any], int]:
    if depth > TABLE_DEPTH_MAX:
        raise ValueError("field table nesting too deep")
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    end = pos + n
    if end > len(data):
        raise ValueError("field table longer than its container")
    out: dict[str, Any] = {}
    while pos < end:
        klen = data[pos]
        pos += 1
        key = data[pos : pos + klen].decode("utf-8")
        pos += klen
        if pos >= end:
            raise ValueError("field table entry without a value")
        out[key], pos = _decode_value(data, pos, depth)
    if pos != end:
        raise ValueError("field table entry overruns the table")
    return out, end


def _decode_array(data: bytes, pos: int, depth: int) -> tuple[list[Any], int]:
    if depth > TABLE_DEPTH_MAX:
        raise ValueError("field array nesting too deep")
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    end = pos + n
    if end > len(data):
        raise ValueError("field array longer than its container")
    out: list[Any] = []
    while pos < end:
        value, pos = _decode_value(data, pos, depth)
        out.append(value)
    if pos != end:
        raise ValueError("field array entry overruns the array")
    return out, end


def decode_table(data: bytes | memoryview) -> dict[str, Any]:
    """Decode an encoded field table (4-octet length included) to a plain dict.

    Values become str ('S'; bytes when not valid UTF-8), bytes ('x'), int (every integer
    type, and 'T' timestamps as seconds), float ('f', 'd', and 'D' decimals: a known lossy
    conversion), bool, None, list and dict. Raises ValueError on malformed input.
    """
    raw = bytes(data)
    try:
        table, end = _decode_table(raw, 0, 0)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed field table: {exc}") from exc
    if end != len(raw):
        raise ValueError("trailing bytes after field table")
    return table


def _encode_value(value: Any, out: list[bytes]) -> None:
    if isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"S" + _U32.pack(len(raw)))
        out.append(raw)
    elif isinstance(value, bool):
        out.append(b"t\x01" if value else b"t\x00")
    elif isinstance(value, int):
        if -0x80000000 <= value <= 0x7FFFFFFF:
            out.append(b"I" + _I32.pack(value))
        elif -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            out.append(b"l" + _I64.pack(value))
        else:
            raise ValueError(f"integer {value} does not fit a signed 64-bit field")
    elif isinstance(value, float):
        out.append(b"d" + _F64.pack(value))
    elif isinstance(value, dict):
        out.append(b"F")
        out.append(encode_table(value))
    elif isinstance(value, (list, tuple)):
        items: list[bytes] = []
        for item in value:
            _encode_value(item, items)
        raw = b"".join(items)
        out.append(b"A" + _U32.pack(len(raw)))
        out.append(raw)
    elif value is None:
        out.append(b"V")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out.append(b"x" + _U32.pack(len(raw)))
        out.append(raw)
    elif isinstance(value, decimal.Decimal):
        out.append(b"d" + _F64.pack(float(value)))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in a field table")


def encode_table(table: dict[str, Any]) -> bytes:
    """Encode a dict as a field table (4-octet length included).

    str -> 'S', bool -> 't', int -> 'I' when it fits 32 bits else 'l' (as RabbitMQ and pika),
    float -> 'd', bytes -> 'x', None -> 'V', list/tuple -> 'A', dict -> 'F'. Keys longer than
    255 UTF-8 octets raise ValueError.
    """
    out: list[bytes] = []
    for key, value in table.items():
        raw_key = key.encode("utf-8")
        if len(raw_key) > 255:
            raise ValueError(f"field table key longer than 255 octets: {key[:32]!r}...")
        out.append(_U8.pack(len(raw_key)) + raw_key)
        _encode_value(value, out)
    raw = b"".join(out)
    return _U32.pack(len(raw)) + raw


def _plain(value: Any) -> Any:
    """pamqp field values made msgpack-friendly (Decimal -> float, datetime -> int seconds,
    bytearray -> bytes)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    stamp = getattr(value, "timestamp", None)  # pamqp's aware UTC datetime for 'T'
    if callable(stamp):
        return int(stamp())
    if isinstance(value, bytearray):
        return bytes(value)
    return value


# ---------------------------------------------------------------------------------------------
# Properties

# (flag, key, kind): kind 0 shortstr, 1 octet, 2 table, 3 timestamp
_PROPERTY_FIELDS: tuple[tuple[int, str, int], ...] = (
    (0x8000, "content_type", 0),
    (0x4000, "content_encoding", 0),
    (0x2000, "headers", 2),
    (0x1000, "delivery_mode", 1),
    (0x0800, "priority", 1),
    (0x0400, "correlation_id", 0),
    (0x0200, "reply_to", 0),
    (0x0100, "expiration", 0),
    (0x0080, "message_id", 0),
    (0x0040, "timestamp", 3),
    (0x0020, "type", 0),
    (0x0010, "user_id", 0),
    (0x0008, "app_id", 0),
    (0x0004, "cluster_id", 0),
)

_decode_cache: dict[bytes, dict[str, Any]] = {}
_encode_cache: dict[int, tuple[dict[str, Any], bytes]] = {}


def _decode_properties_uncached(data: bytes) -> dict[str, Any]:
    (flags,) = _U16.unpack_from(data, 0)
    pos = 2
    if flags & 1:  # continuation flag words: no properties are defined there
        while True:
            (more,) = _U16.unpack_from(data, pos)
            pos += 2
            if not more & 1:
                break
    props: dict[str, Any] = {}
    for flag, key, kind in _PROPERTY_FIELDS:
        if not flags & flag:
            continue
        if kind == 0:
            n = data[pos]
            pos += 1
            raw = data[pos : pos + n]
            if len(raw) != n:
                raise ValueError(f"truncated {key}")
            props[key] = raw.decode("utf-8")
            pos += n
        elif kind == 1:
            props[key] = data[pos]
            pos += 1
        elif kind == 2:
            props[key], pos = _decode_table(data, pos, 0)
        else:
            props[key] = _U64.unpack_from(data, pos)[0]
            pos += 8
    if pos != len(data):
        raise ValueError("trailing bytes after the property list")
    return props


def decode_properties(data: bytes | memoryview) -> dict[str, Any]:
    """Decode a content header's property flags and list into a dict.

    Keys (only those present): content_type, content_encoding, headers (dict),
    delivery_mode (int), priority (int), correlation_id, reply_to, expiration (str),
    message_id, timestamp (int seconds), type, user_id, app_id, cluster_id. Header table
    values follow :func:`decode_table`; a 'D' decimal becomes a float (lossy) and a 'T'
    timestamp int seconds. The returned dict is shared through a cache: do not mutate it.
    Raises ValueError on malformed input.
    """
    raw = bytes(data)
    props = _decode_cache.get(raw)
    if props is not None:
        return props
    try:
        props = _decode_properties_uncached(raw)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed property list: {exc}") from exc
    if len(_decode_cache) >= PROPERTIES_CACHE_ENTRIES_MAX:
        del _decode_cache[next(iter(_decode_cache))]
    _decode_cache[raw] = props
    return props


def _short(value: str, key: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{key} longer than 255 octets")
    return _U8.pack(len(raw)) + raw


def _encode_properties_uncached(props: dict[str, Any]) -> bytes:
    flags = 0
    parts: list[bytes] = []
    for flag, key, kind in _PROPERTY_FIELDS:
        value = props.get(key)
        if value is None:
            continue
        flags |= flag
        if kind == 0:
            parts.append(_short(str(value), key))
        elif kind == 1:
            parts.append(_U8.pack(value))
        elif kind == 2:
            parts.append(encode_table(value))
        else:
            parts.append(_U64.pack(value))
    return _U16.pack(flags) + b"".join(parts)


def encode_properties(props: dict[str, Any]) -> bytes:
    """Encode a properties dict (keys as :func:`decode_properties`) as flags + list.

    Absent keys and ``None`` values are omitted; unknown keys are ignored. The result is
    cached by the dict's identity: a dict must not be mutated after it was encoded.
    """
    entry = _encode_cache.get(id(props))
    if entry is not None and entry[0] is props:
        return entry[1]
    raw = _encode_properties_uncached(props)
    if len(_encode_cache) >= PROPERTIES_CACHE_ENTRIES_MAX:
        del _encode_cache[next(iter(_encode_cache))]
    _encode_cache[id(props)] = (props, raw)
    return raw


# ---------------------------------------------------------------------------------------------
# Decoder


class _Content:
    """A publish on one channel waiting for its header (``props is None``) or body frames."""

    __slots__ = (
        "exchange",
        "routing_key",
        "mandatory",
        "immediate",
        "props",
        "remaining",
        "parts",
        "skip",
    )

    def __init__(self, exchange: str, routing_key: str, mandatory: bool, immediate: bool) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.immediate = immediate
        self.props: dict[str, Any] | None = None
        self.remaining = 0
        self.parts: list[bytes] = []
        self.skip = False


ERLANG_BINARY_OCTETS_MAX = 255
"""Octets :func:`_erlang_binary` prints before it elides the rest with "...". Every octet takes
at least one character, so a text cut here already runs past the 255-octet reply text, and the
elision never shows in what goes on the wire."""

# Erlang's ~p prints a binary as a string when every octet is printable: ASCII 32..126 and
# these escapes (latin-1 160..255 would print too, as raw octets that are not UTF-8; those
# binaries are printed as numbers here instead).
_ERLANG_ESCAPES = {
    0x22: '\\"',
    0x5C: "\\\\",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x08: "\\b",
    0x0C: "\\f",
    0x1B: "\\e",
}
_ERLANG_STRING = {i: chr(i) for i in range(0x20, 0x7F)} | _ERLANG_ESCAPES


def _erlang_binary(data: bytes, *, strings: bool = True) -> str:
    """``data`` as Erlang prints a binary: ``<<"abc">>`` when it is printable and ``strings``
    (``~p``), else ``<<0,20>>`` (always for ``~w``); ``<<>>`` when empty. At most
    :data:`ERLANG_BINARY_OCTETS_MAX` octets are shown, then "..." as Erlang's depth-limited
    ``~P`` does."""
    if not data:
        return "<<>>"
    shown = data[:ERLANG_BINARY_OCTETS_MAX]
    more = len(data) > len(shown)
    if strings:
        chars = _ERLANG_STRING
        if all(octet in chars for octet in shown):
            text = "".join([chars[octet] for octet in shown])
            return f'<<"{text}"...>>' if more else f'<<"{text}">>'
    numbers = ",".join(map(str, shown))
    return f"<<{numbers},...>>" if more else f"<<{numbers}>>"


def _octets(data: bytes) -> str:
    """RabbitMQ's payload snippet in frame errors: "all octets = <<...>>" for up to 16
    octets, else "first 16 octets = <<...>>"."""
    if len(data) <= 16:
        return f"all octets = {_erlang_binary(data)}"
    return f"first 16 octets = {_erlang_binary(data[:16])}"


def _unknown_frame(ftype: int, ch: int, payload: bytes) -> AMQPError:
    return AMQPError(FRAME_ERROR, f"type {ftype}, {_octets(payload)}: unknown_frame", channel=ch)


def _cannot_decode(ch: int, cm: int, args: bytes) -> AMQPError:
    """Method arguments that do not decode, as RabbitMQ reports them (``~w``: numbers)."""
    return AMQPError(
        FRAME_ERROR,
        f"cannot decode {_erlang_binary(args, strings=False)}",
        channel=ch,
        class_id=cm >> 16,
        method_id=cm & 0xFFFF,
    )


class Decoder:
    """Incremental AMQP 0-9-1 frame decoder for the server side of one connection.

    ``feed`` received bytes, call ``header_received`` until it returns True, then ``events``
    after every feed. ``frame_max`` limits the size of a whole frame (payload + 8 octets);
    the processor sets it to the value agreed in connection.tune-ok. ``message_bytes_max``
    limits a publish's announced body size (see :class:`ContentTooLarge`).

    Errors: :meth:`events` raises :class:`AMQPError` for a fatal error; the events decoded
    before it in the same call are attached as ``exc.events`` (never lost, never returned
    twice). The decoder is then failed: later calls raise the same error with no events.
    """

    def __init__(self, *, frame_max: int = 131072, message_bytes_max: int = 16 << 20) -> None:
        self.frame_max = frame_max
        self.message_bytes_max = message_bytes_max
        self._buf = b""
        self._pos = 0
        self._header_done = False
        self._content: dict[int, _Content] = {}
        self._error: AMQPError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held waiting for a complete frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if not data:
            return
        if self._pos >= len(self._buf):
            self._buf = bytes(data)
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def header_received(self) -> bool:
        """Consume the 8-octet protocol header once; False when more bytes are needed.

        Raises BadProtocolHeader as soon as the received prefix differs from
        PROTOCOL_HEADER (so a garbage first byte is rejected at once).
        """
        if self._header_done:
            return True
        have = self._buf[self._pos : self._pos + 8]
        if have != PROTOCOL_HEADER[: len(have)]:
            raise BadProtocolHeader(f"bad protocol header {have!r}")
        if len(have) < 8:
            return False
        self._pos += 8
        self._header_done = True
        return True

    def reset_channel(self, channel: int) -> None:
        """Forget a partly received content on ``channel`` (the channel was closed)."""
        self._content.pop(channel, None)

    def content_in_progress(self, channel: int) -> bool:
        """Whether a publish on ``channel`` still waits for its header or body frames."""
        return channel in self._content

    def events(self) -> list[Event]:
        """Every complete event in the buffer, in order (see the class docstring on errors)."""
        if self._error is not None:
            self._error.events = []
            raise self._error
        if not self._header_done:
            raise RuntimeError("events() before the protocol header was received")
        out: list[Event] = []
        try:
            self._parse(out)
        except AMQPError as exc:
            exc.events = out
            self._error = exc
            raise
        return out

    def _parse(self, out: list[Event]) -> None:
        buf = self._buf
        pos = self._pos
        n = len(buf)
        payload_max = self.frame_max - FRAME_OVERHEAD if self.frame_max > 0 else 0xFFFFFFFF
        unpack_hdr = _FRAME_HDR.unpack_from
        unpack_u32 = _U32.unpack_from
        contents = self._content
        append = out.append
        try:
            while n - pos >= 7:
                ftype, ch, size = unpack_hdr(buf, pos)
                if size > payload_max:
                    raise AMQPError(
                        FRAME_ERROR,
                        f"type {ftype}, all octets = <<>>: "
                        f"{{frame_too_large,{size},{payload_max}}}",
                        channel=ch,
                    )
                p = pos + 7
                end = p + size
                if end >= n:
                    break
                if buf[end] != FRAME_END:
                    raise AMQPError(
                        FRAME_ERROR,
                        f"type {ftype}, {_octets(buf[p:end])}: "
                        f"{{invalid_frame_end_marker,{buf[end]}}}",
                        channel=ch,
                    )
                if ftype == FRAME_METHOD:
                    if size < 4:
                        raise _unknown_frame(ftype, ch, buf[p:end])
                    cm = unpack_u32(buf, p)[0]
                    if ch in contents:
                        self._unexpected_method(ch, contents[ch], cm)
                    if cm == _PUBLISH:
                        q = p + 6  # class, method, ticket
                        ex = rk = b""
                        if q < end:
                            el = buf[q]
                            q += 1
                            ex = buf[q : q + el]
                            q += el
                        if q < end:
                            rl = buf[q]
                            q += 1
                            rk = buf[q : q + rl]
                            q += rl
                        if q + 1 != end:
                            raise _cannot_decode(ch, cm, buf[p + 4 : end])
                        bits = buf[q]
                        try:
                            exchange = ex.decode("utf-8")
                            routing_key = rk.decode("utf-8")
                        except UnicodeDecodeError:
                            raise _cannot_decode(ch, cm, buf[p + 4 : end]) from None
                        if ch == 0:
                            raise AMQPError(
                                COMMAND_INVALID,
                                "basic.publish on channel 0",
                                class_id=60,
                                method_id=40,
                            )
                        pos = end + 1
                        # Common case: header and the single body frame are already here.
                        if n - pos >= 7:
                            ftype2, ch2, size2 = unpack_hdr(buf, pos)
                            h = pos + 7
                            hend = h + size2
                            if (
                                ftype2 == FRAME_HEADER
                                and ch2 == ch
                                and 14 <= size2 <= payload_max
                                and hend < n
                                and buf[hend] == FRAME_END
                            ):
                                cls, weight, body_size = _CONTENT_HDR.unpack_from(buf, h)
                                if (
                                    cls == CLASS_BASIC
                                    and weight == 0
                                    and body_size <= self.message_bytes_max
                                ):
                                    raw = buf[h + 12 : hend]
                                    props = _decode_cache.get(raw)
                                    if props is None:
                                        props = self._props(raw, ch)
                                    if body_size == 0:
                                        pos = hend + 1
                                        append(
                                            _new_tuple(
                                                Publish,
                                                (
                                                    ch,
                                                    exchange,
                                                    routing_key,
                                                    bool(bits & 1),
                                                    bool(bits & 2),
                                                    props,
                                                    b"",
                                                ),
                                            )
                                        )
                                        continue
                                    b = hend + 1
                                    if n - b >= 7:
                                        ftype3, ch3, size3 = unpack_hdr(buf, b)
                                        bend = b + 7 + size3
                                        if (
                                            ftype3 == FRAME_BODY
                                            and ch3 == ch
                                            and size3 == body_size
                                            and size3 <= payload_max
                                            and bend < n
                                            and buf[bend] == FRAME_END
                                        ):
                                            pos = bend + 1
                                            append(
                                                _new_tuple(
                                                    Publish,
                                                    (
                                                        ch,
                                                        exchange,
                                                        routing_key,
                                                        bool(bits & 1),
                                                        bool(bits & 2),
                                                        props,
                                                        buf[b + 7 : bend],
                                                    ),
                                                )
                                            )
                                            continue
                        contents[ch] = _Content(
                            exchange, routing_key, bool(bits & 1), bool(bits & 2)
                        )
                        continue
                    if cm == _ACK:
                        if size != 13:
                            raise _cannot_decode(ch, cm, buf[p + 4 : end])
                        tag, bits = _ACK_ARGS.unpack_from(buf, p + 4)
                        append(_new_tuple(Ack, (ch, tag, bool(bits & 1))))
                    else:
                        append(Method(ch, self._method(cm, buf[p + 4 : end], ch)))
                elif ftype == FRAME_BODY:
                    content = contents.get(ch)
                    if content is None or content.props is None:
                        raise self._unexpected_content(ftype, ch, content, buf[p:end])
                    content.remaining -= size
                    if content.remaining < 0:
                        raise AMQPError(
                            FRAME_ERROR,
                            "content body frames exceed the body size announced in the header",
                            channel=ch,
                            class_id=60,
                            method_id=40,
                        )
                    if not content.skip:
                        content.parts.append(buf[p:end])
                    if content.remaining == 0:
                        del contents[ch]
                        if not content.skip:
                            parts = content.parts
                            body = parts[0] if len(parts) == 1 else b"".join(parts)
                            append(self._publish(ch, content, body))
                elif ftype == FRAME_HEADER:
                    if size < 12:
                        raise _unknown_frame(ftype, ch, buf[p:end])
                    content = contents.get(ch)
                    if content is None or content.props is not None:
                        raise self._unexpected_content(ftype, ch, content, buf[p:end])
                    cls, weight, body_size = _CONTENT_HDR.unpack_from(buf, p)
                    if cls != CLASS_BASIC:
                        raise AMQPError(
                            UNEXPECTED_FRAME,
                            f"expected content header for class 60, got one for class {cls} "
                            "instead",
                            channel=ch,
                            class_id=60,
                            method_id=40,
                        )
                    if weight != 0:
                        raise AMQPError(
                            UNEXPECTED_FRAME,
                            "expected content header for class 60, got non content header "
                            "frame instead",
                            channel=ch,
                            class_id=60,
                            method_id=40,
                        )
                    raw = buf[p + 12 : end]
                    props = _decode_cache.get(raw)
                    if props is None:
                        props = self._props(raw, ch)
                    content.props = props
                    content.remaining = body_size
                    if body_size > self.message_bytes_max:
                        content.skip = True
                        append(_new_tuple(ContentTooLarge, (ch, 60, 40, body_size)))
                    if body_size == 0:
                        del contents[ch]
                        if not content.skip:
                            append(self._publish(ch, content, b""))
                elif ftype == FRAME_HEARTBEAT:
                    if size:
                        raise _unknown_frame(ftype, ch, buf[p:end])
                    if ch:
                        raise AMQPError(UNEXPECTED_FRAME, "type 8, all octets = <<>>", channel=ch)
                    append(_HEARTBEAT_EVENT)
                else:
                    raise _unknown_frame(ftype, ch, buf[p:end])
                pos = end + 1
        finally:
            self._pos = pos
            if pos >= n:
                self._buf = b""
                self._pos = 0

    @staticmethod
    def _publish(ch: int, content: _Content, body: bytes) -> Publish:
        props = content.props
        assert props is not None
        return Publish(
            ch,
            content.exchange,
            content.routing_key,
            content.mandatory,
            content.immediate,
            props,
            body,
        )

    @staticmethod
    def _props(raw: bytes, ch: int) -> dict[str, Any]:
        try:
            return decode_properties(raw)
        except ValueError as exc:
            raise AMQPError(
                SYNTAX_ERROR,
                f"cannot decode content header properties: {exc}",
                channel=ch,
                class_id=60,
                method_id=40,
            ) from None

    @staticmethod
    def _unexpected_method(ch: int, content: _Content, cm: int) -> None:
        if content.props is None:
            text = "expected content header for class 60, got non content header frame instead"
        else:
            text = "expected content body, got non content body frame instead"
        raise AMQPError(UNEXPECTED_FRAME, text, channel=ch, class_id=60, method_id=40)

    @staticmethod
    def _unexpected_content(
        ftype: int, ch: int, content: _Content | None, payload: bytes
    ) -> AMQPError:
        if ch == 0:
            return AMQPError(UNEXPECTED_FRAME, f"type {ftype}, {_octets(payload)}")
        if content is None:
            text = "expected method frame, got non method frame instead"
            return AMQPError(UNEXPECTED_FRAME, text, channel=ch)
        if content.props is None:
            text = "expected content header for class 60, got non content header frame instead"
        else:
            text = "expected content body, got non content body frame instead"
        return AMQPError(UNEXPECTED_FRAME, text, channel=ch, class_id=60, method_id=40)

    @staticmethod
    def _method(cm: int, args: bytes, ch: int) -> pamqp_base.Frame:
        class_id, method_id = cm >> 16, cm & 0xFFFF
        cls = pamqp_commands.INDEX_MAPPING.get(cm)
        if cls is None:
            raise AMQPError(
                NOT_IMPLEMENTED,
                f"unknown method class {class_id} method {method_id}",
                channel=ch,
                class_id=class_id,
                method_id=method_id,
            )
        try:
            method: pamqp_base.Frame = cls()
            method.unmarshal(args)
            for attr in ("arguments", "client_properties"):
                value = getattr(method, attr, None)
                if value:
                    setattr(method, attr, _plain(value))
        except Exception:  # pamqp raises many types on malformed input
            raise _cannot_decode(ch, cm, args) from None
        return method


# ---------------------------------------------------------------------------------------------
# Encoders


def encode_method(channel: int, method: pamqp_base.Frame) -> bytes:
    """A method frame, marshalled by pamqp."""
    return pamqp_frame.marshal(method, channel)


def encode_heartbeat() -> bytes:
    """A heartbeat frame."""
    return _HEARTBEAT_FRAME


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8")
    n = len(raw)
    if n > 255:
        raise ValueError(f"short string longer than 255 octets: {value[:32]!r}...")
    return _SHORT_LEN[n] + raw


_SHORT_LEN = [bytes((i,)) for i in range(256)]
_DELIVER_HEAD = struct.Struct(">BHII")  # type, channel, size, class/method
_DELIVER_MID = struct.Struct(">QB")  # delivery tag, redelivered
_GET_OK_HEAD = struct.Struct(">BHIIQB")  # ..., class/method, delivery tag, redelivered
_RETURN_HEAD = struct.Struct(">BHIIH")  # ..., class/method, reply code
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # type, channel, size, class, weight, body size
_BODY_HEAD = struct.Struct(">BHI")
_CONFIRM = struct.Struct(">BHIIQBB")  # frame header, class/method, tag, bits, frame end


def encode_content(channel: int, props: dict[str, Any], body: bytes, frame_max: int) -> list[bytes]:
    """Content header + body frames, as pieces to join (body split by ``frame_max - 8``)."""
    raw_props = encode_properties(props)
    size = len(body)
    out = [
        _CONTENT_HEAD.pack(FRAME_HEADER, channel, 12 + len(raw_props), CLASS_BASIC, 0, size)
        + raw_props
        + _END
    ]
    chunk = frame_max - FRAME_OVERHEAD if frame_max > 0 else size
    if size <= chunk:
        if size:
            out.append(_BODY_HEAD.pack(FRAME_BODY, channel, size))
            out.append(body)
            out.append(_END)
        return out
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        out.append(_BODY_HEAD.pack(FRAME_BODY, channel, len(piece)))
        out.append(bytes(piece))
        out.append(_END)
    return out


def encode_deliver(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    props: dict[str, Any],
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.deliver + content header + body frames."""
    tag = _shortstr(consumer_tag)
    tail = _shortstr(exchange) + _shortstr(routing_key)
    size = 4 + len(tag) + 9 + len(tail)
    raw_props = encode_properties(props)
    body_size = len(body)
    parts = [
        _DELIVER_HEAD.pack(FRAME_METHOD, channel, size, _METHOD_DELIVER),
        tag,
        _DELIVER_MID.pack(delivery_tag, 1 if redelivered else 0),
        tail,
        _END,
        _CONTENT_HEAD.pack(FRAME_HEADER, channel, 12 + len(raw_props), CLASS_BASIC, 0, body_size),
        raw_props,
        _END,
    ]
    if 0 < body_size <= frame_max - FRAME_OVERHEAD or (frame_max <= 0 and body_size):
        parts.append(_BODY_HEAD.pack(FRAME_BODY, channel, body_size))
        parts.append(body)
        parts.append(_END)
        return b"".join(parts)
    if body_size:
        parts.extend(encode_content(channel, props, body, frame_max)[1:])
    return b"".join(parts)


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    props: dict[str, Any],
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.get-ok + content header + body frames."""
    tail = _shortstr(exchange) + _shortstr(routing_key) + _U32.pack(message_count)
    size = 4 + 9 + len(tail)
    head = _GET_OK_HEAD.pack(
        FRAME_METHOD, channel, size, _METHOD_GET_OK, delivery_tag, 1 if redelivered else 0
    )
    return b"".join([head, tail, _END, *encode_content(channel, props, body, frame_max)])


def encode_return(
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange: str,
    routing_key: str,
    props: dict[str, Any],
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.return + content header + body frames."""
    tail = _shortstr(reply_text) + _shortstr(exchange) + _shortstr(routing_key)
    size = 4 + 2 + len(tail)
    head = _RETURN_HEAD.pack(FRAME_METHOD, channel, size, _METHOD_RETURN, reply_code)
    return b"".join([head, tail, _END, *encode_content(channel, props, body, frame_max)])


def encode_confirm(channel: int, delivery_tag: int, multiple: bool, ack: bool) -> bytes:
    """Publisher confirm: basic.ack, or basic.nack with requeue=False."""
    return _CONFIRM.pack(
        FRAME_METHOD,
        channel,
        13,
        _ACK if ack else _METHOD_NACK,
        delivery_tag,
        1 if multiple else 0,
        FRAME_END,
    )
