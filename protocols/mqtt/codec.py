"""MQTT 3.1, 3.1.1 and 5.0 packets to events and back, without I/O.

The decoder is fed raw bytes and returns packets (light NamedTuples). PUBLISH is recognised
in the decoder's main loop with integer arithmetic and slices: the topic goes through a bounded
cache of decoded, validated names, the payload is the slice of the received bytes and a
5.0 property block is decoded once per distinct byte string (a bounded cache too). Every other
packet goes through one generic decoder per type. Encoders return bytes ready for the socket;
``encode_publish`` keeps a bounded cache of encoded topics.

Normative statements are cited by their MQTT 5.0 numbers ("[MQTT-x.y.z-n]"); where the 3.1.1
number differs it is given with "3.1.1". The decoder enforces (reason code in brackets; for
3.1/3.1.1 the connection is simply closed unless ``connack_code`` says otherwise):

* remaining length: at most 4 bytes, a 5th continuation byte is malformed [0x81]; a packet
  (fixed header included) over ``packet_bytes_max`` is refused as soon as its fixed header is
  complete, before any of its body is buffered [0x95 Packet too large];
* packet type 0, and AUTH (15) before 5.0 [0x81]; fixed-header flags other than those of
  the packet type [MQTT-2.1.3-1] (3.1.1 [MQTT-2.2.2-2]) [0x81];
* a first packet that is not CONNECT [MQTT-3.1.0-1] [0x82]; an unknown protocol name
  [MQTT-3.1.2-1] (``connack_code`` None: just close) or level [MQTT-3.1.2-2]
  [0x84, ``connack_code`` 0x01]; the CONNECT reserved flag [MQTT-3.1.2-3] and Will flag
  combinations [MQTT-3.1.2-11..13] [0x81]; in 3.1.1 a password without a user name
  (3.1.1 [MQTT-3.1.2-22]) [0x81] and an empty client identifier with CleanSession 0
  (3.1.1 [MQTT-3.1.3-8]) [``connack_code`` 0x02];
* strings that are not well-formed UTF-8 [MQTT-1.5.4-1] or contain U+0000 [MQTT-1.5.4-2],
  fields that overrun the packet and bytes left after the last field [0x81];
* PUBLISH with QoS 3 [MQTT-3.3.1-4] or DUP set at QoS 0 [MQTT-3.3.1-2] [0x81]; a topic name
  with a wildcard [MQTT-3.3.2-2] or U+0000, or empty before 5.0 [0x90]; packet identifier 0
  where one is required [MQTT-2.2.1-3] [0x82];
* SUBSCRIBE / UNSUBSCRIBE without a topic [MQTT-3.8.3-2] [MQTT-3.10.3-2] [0x82]; subscription
  options with reserved bits [MQTT-3.8.3-5] (3.1.1 [MQTT-3-8.3-4]) or QoS 3 [0x81], Retain
  Handling 3 [0x82];
* 5.0 properties: an identifier unknown or not valid for the packet (section 2.2.2.2) [0x81];
  a property repeated where only one is allowed, or a value the spec calls a Protocol Error
  (0 for Receive Maximum, Maximum Packet Size, Topic Alias, Subscription Identifier; a flag
  byte other than 0/1; Maximum QoS other than 0/1) [0x82].

Checks that need session state stay with the processor: a second CONNECT [MQTT-3.1.0-2],
topic alias resolution and limits, Subscription Identifier in a PUBLISH from a client
[MQTT-3.3.4-6], topic filter syntax (a per-filter SUBACK reason, see
:func:`validate_topic_filter`), No Local on a shared subscription [MQTT-3.8.3-4], payload
format validation, client identifier policies.

Every error raised by :meth:`Decoder.events` is fatal: the decoder cannot resynchronise, and
later calls raise the same error again (with no events).

Properties are plain dicts with snake_case keys (see ``PROPERTIES``). Flag and byte
properties stay ints (0/1), ``user_property`` is a list of ``(name, value)`` pairs in
received order, ``subscription_identifier`` is a list of ints on PUBLISH and an int on
SUBSCRIBE. Decoded dicts (including the empty one every packet without properties shares)
come from a cache: never mutate them, copy first.

Topics map onto AMQP topic-exchange keys as RabbitMQ's MQTT plugin does (``rabbit_mqtt_util``:
``/`` -> ``.``, ``+`` -> ``*``, ``#`` unchanged), with one deliberate difference: RabbitMQ
leaves a ``.`` inside an MQTT topic level as is, so ``a.b/c`` and ``a/b/c`` both become
``a.b.c``; here ``.`` and ``/`` are swapped, so ``a.b/c`` becomes ``a/b.c`` and the round trip
is exact (see :func:`topic_to_routing_key`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5

PROTOCOLS: dict[int, str] = {MQTT_3_1: "MQIsdp", MQTT_3_1_1: "MQTT", MQTT_5: "MQTT"}
"""Protocol level -> protocol name in CONNECT."""

# Packet types (MQTT 5.0 section 2.1.2)
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES: dict[int, str] = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
    AUTH: "AUTH",
}

# MQTT 5.0 reason codes (section 2.4)
SUCCESS = 0x00
NORMAL_DISCONNECTION = 0x00
GRANTED_QOS_0 = 0x00
GRANTED_QOS_1 = 0x01
GRANTED_QOS_2 = 0x02
DISCONNECT_WITH_WILL_MESSAGE = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
CONTINUE_AUTHENTICATION = 0x18
RE_AUTHENTICATE = 0x19
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BANNED = 0x8A
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_IDENTIFIER_IN_USE = 0x91
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
MESSAGE_RATE_TOO_HIGH = 0x96
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
PAYLOAD_FORMAT_INVALID = 0x99
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
USE_ANOTHER_SERVER = 0x9C
SERVER_MOVED = 0x9D
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
CONNECTION_RATE_EXCEEDED = 0x9F
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

# MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3) and the SUBACK failure code
CONNACK_ACCEPTED = 0x00
CONNACK_UNACCEPTABLE_PROTOCOL_VERSION = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02
CONNACK_SERVER_UNAVAILABLE = 0x03
CONNACK_BAD_USER_NAME_OR_PASSWORD = 0x04
CONNACK_NOT_AUTHORIZED = 0x05
SUBACK_FAILURE = 0x80

CONNACK_V5_TO_V3: dict[int, int] = {
    SUCCESS: CONNACK_ACCEPTED,
    UNSUPPORTED_PROTOCOL_VERSION: CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
    CLIENT_IDENTIFIER_NOT_VALID: CONNACK_IDENTIFIER_REJECTED,
    SERVER_UNAVAILABLE: CONNACK_SERVER_UNAVAILABLE,
    SERVER_BUSY: CONNACK_SERVER_UNAVAILABLE,
    BAD_USER_NAME_OR_PASSWORD: CONNACK_BAD_USER_NAME_OR_PASSWORD,
    NOT_AUTHORIZED: CONNACK_NOT_AUTHORIZED,
    BANNED: CONNACK_NOT_AUTHORIZED,
}
"""The 3.1.1 CONNACK return code closest to a 5.0 CONNACK reason code (see
:func:`connack_code_v3`)."""

REMAINING_LENGTH_MAX = 268_435_455
"""Largest value a 4-byte Variable Byte Integer holds (section 1.5.5)."""
PACKET_BYTES_MAX_DEFAULT = 1 << 20
TOPIC_CACHE_ENTRIES_MAX = 4096
PROPERTIES_CACHE_ENTRIES_MAX = 1024
KEY_CACHE_ENTRIES_MAX = 4096


class MQTTError(Exception):
    """A protocol violation.

    ``reason_code`` is the MQTT 5 reason code to put in CONNACK (before the connection is
    accepted) or DISCONNECT (after); for 3.1/3.1.1 the connection is just closed, or a CONNACK
    with ``connack_code`` is sent first where 3.1.1 defines one. ``packet_type`` is the type
    of the offending packet (0 when unknown). When raised by :meth:`Decoder.events`,
    ``events`` holds the packets decoded before the error in that call: handle them before
    closing.
    """

    def __init__(
        self,
        reason_code: int,
        text: str,
        *,
        connack_code: int | None = None,
        packet_type: int = 0,
    ) -> None:
        super().__init__(reason_code, text)
        self.reason_code = reason_code
        self.text = text
        self.connack_code = connack_code
        self.packet_type = packet_type
        self.events: list[Packet] = []

    def __str__(self) -> str:
        where = PACKET_NAMES.get(self.packet_type)
        prefix = f"{where}: " if where else ""
        return f"{self.reason_code:#04x} {prefix}{self.text}"


def _malformed(text: str) -> MQTTError:
    return MQTTError(MALFORMED_PACKET, text)


def _protocol_error(text: str) -> MQTTError:
    return MQTTError(PROTOCOL_ERROR, text)


# ---------------------------------------------------------------------------------------------
# Packets


class Will(NamedTuple):
    """The Will Message of a CONNECT."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]


class Connect(NamedTuple):
    protocol_name: str
    protocol_level: int
    clean_start: bool
    keepalive: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None
    properties: dict[str, Any]


class ConnAck(NamedTuple):
    session_present: bool
    reason_code: int
    properties: dict[str, Any]


class Publish(NamedTuple):
    """A PUBLISH. ``payload`` is the slice of the received bytes; ``topic`` is "" when a 5.0
    client sends only a Topic Alias (the processor resolves aliases); ``packet_id`` is None
    at QoS 0."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: dict[str, Any]


class PubAck(NamedTuple):
    packet_id: int
    reason_code: int
    properties: dict[str, Any]


class PubRec(NamedTuple):
    packet_id: int
    reason_code: int
    properties: dict[str, Any]


class PubRel(NamedTuple):
    packet_id: int
    reason_code: int
    properties: dict[str, Any]


class PubComp(NamedTuple):
    packet_id: int
    reason_code: int
    properties: dict[str, Any]


class SubOptions(NamedTuple):
    """Subscription options (5.0 section 3.8.3.1); before 5.0 only ``qos`` is on the wire."""

    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


class Subscribe(NamedTuple):
    packet_id: int
    topics: list[tuple[str, SubOptions]]
    properties: dict[str, Any]


class SubAck(NamedTuple):
    packet_id: int
    reason_codes: list[int]
    properties: dict[str, Any]


class Unsubscribe(NamedTuple):
    packet_id: int
    topics: list[str]
    properties: dict[str, Any]


class UnsubAck(NamedTuple):
    packet_id: int
    reason_codes: list[int]
    properties: dict[str, Any]


class PingReq(NamedTuple):
    pass


class PingResp(NamedTuple):
    pass


class Disconnect(NamedTuple):
    reason_code: int
    properties: dict[str, Any]


class Auth(NamedTuple):
    reason_code: int
    properties: dict[str, Any]


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

_EMPTY: dict[str, Any] = {}
"""The properties of every packet that has none (shared: never mutate a decoded dict)."""
_PINGREQ = PingReq()
_PINGRESP = PingResp()
_new_tuple = tuple.__new__


# ---------------------------------------------------------------------------------------------
# Primitive types (section 1.5)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_B_U16 = struct.Struct(">BH")
_B_U32 = struct.Struct(">BI")


def encode_varint(value: int) -> bytes:
    """A Variable Byte Integer (1 to 4 bytes, section 1.5.5)."""
    if value < 0x80:
        if value < 0:
            raise ValueError(f"negative variable byte integer {value}")
        return bytes((value,))
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value > REMAINING_LENGTH_MAX:
        raise ValueError(f"variable byte integer {value} > {REMAINING_LENGTH_MAX}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """``(value, next position)`` of the Variable Byte Integer at ``pos``. Raises MQTTError
    0x81 after 4 bytes with the continuation bit, IndexError when ``data`` ends first."""
    value = 0
    shift = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _malformed("variable byte integer longer than 4 bytes")


def _text(raw: bytes) -> str:
    if b"\x00" in raw:
        raise _malformed("U+0000 in a UTF-8 string [MQTT-1.5.4-2]")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("string is not well-formed UTF-8 [MQTT-1.5.4-1]") from None


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(data, pos)
    pos += 2
    end = pos + n
    if end > len(data):
        raise _malformed("string overruns the packet")
    return _text(data[pos:end]), end


def _read_bin(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = _U16.unpack_from(data, pos)
    pos += 2
    end = pos + n
    if end > len(data):
        raise _malformed("binary data overruns the packet")
    return data[pos:end], end


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"string longer than 65535 bytes: {value[:32]!r}...")
    return _U16.pack(len(raw)) + raw


def _binary(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return _U16.pack(len(value)) + bytes(value)


# ---------------------------------------------------------------------------------------------
# Properties (MQTT 5.0 section 2.2.2)

_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
WILL_PROPERTIES = 0
"""Context for Will Properties in :data:`PROPERTIES` (packet type 0 is reserved)."""

_ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)
_ALL = (
    *(CONNECT, CONNACK, PUBLISH, *_ACKS, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK),
    *(DISCONNECT, AUTH, WILL_PROPERTIES),
)

PROPERTIES: dict[int, tuple[str, int, frozenset[int]]] = {
    0x01: ("payload_format_indicator", _BYTE, frozenset((PUBLISH, WILL_PROPERTIES))),
    0x02: ("message_expiry_interval", _FOUR, frozenset((PUBLISH, WILL_PROPERTIES))),
    0x03: ("content_type", _UTF8, frozenset((PUBLISH, WILL_PROPERTIES))),
    0x08: ("response_topic", _UTF8, frozenset((PUBLISH, WILL_PROPERTIES))),
    0x09: ("correlation_data", _BINARY, frozenset((PUBLISH, WILL_PROPERTIES))),
    0x0B: ("subscription_identifier", _VARINT, frozenset((PUBLISH, SUBSCRIBE))),
    0x11: ("session_expiry_interval", _FOUR, frozenset((CONNECT, CONNACK, DISCONNECT))),
    0x12: ("assigned_client_identifier", _UTF8, frozenset((CONNACK,))),
    0x13: ("server_keep_alive", _TWO, frozenset((CONNACK,))),
    0x15: ("authentication_method", _UTF8, frozenset((CONNECT, CONNACK, AUTH))),
    0x16: ("authentication_data", _BINARY, frozenset((CONNECT, CONNACK, AUTH))),
    0x17: ("request_problem_information", _BYTE, frozenset((CONNECT,))),
    0x18: ("will_delay_interval", _FOUR, frozenset((WILL_PROPERTIES,))),
    0x19: ("request_response_information", _BYTE, frozenset((CONNECT,))),
    0x1A: ("response_information", _UTF8, frozenset((CONNACK,))),
    0x1C: ("server_reference", _UTF8, frozenset((CONNACK, DISCONNECT))),
    0x1F: (
        "reason_string",
        _UTF8,
        frozenset((CONNACK, *_ACKS, SUBACK, UNSUBACK, DISCONNECT, AUTH)),
    ),
    0x21: ("receive_maximum", _TWO, frozenset((CONNECT, CONNACK))),
    0x22: ("topic_alias_maximum", _TWO, frozenset((CONNECT, CONNACK))),
    0x23: ("topic_alias", _TWO, frozenset((PUBLISH,))),
    0x24: ("maximum_qos", _BYTE, frozenset((CONNACK,))),
    0x25: ("retain_available", _BYTE, frozenset((CONNACK,))),
    0x26: ("user_property", _PAIR, frozenset(_ALL)),
    0x27: ("maximum_packet_size", _FOUR, frozenset((CONNECT, CONNACK))),
    0x28: ("wildcard_subscription_available", _BYTE, frozenset((CONNACK,))),
    0x29: ("subscription_identifier_available", _BYTE, frozenset((CONNACK,))),
    0x2A: ("shared_subscription_available", _BYTE, frozenset((CONNACK,))),
}
"""Property identifier -> (key, type, packet types it may appear in)."""

_PROPERTY_IDS: dict[str, tuple[int, int]] = {
    name: (ident, kind) for ident, (name, kind, _) in PROPERTIES.items()
}
_FLAG_PROPERTIES = frozenset(
    name for name, kind, _ in PROPERTIES.values() if kind == _BYTE
)  # every byte property is 0/1 (Maximum QoS included: a Protocol Error otherwise)
_NONZERO_PROPERTIES = frozenset(
    ("receive_maximum", "maximum_packet_size", "topic_alias", "subscription_identifier")
)

_props_cache: dict[tuple[int, bytes], dict[str, Any]] = {}


def _decode_properties_raw(raw: bytes, context: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    pos = 0
    n = len(raw)
    table = PROPERTIES
    while pos < n:
        ident = raw[pos]  # a one-byte Variable Byte Integer: every identifier is < 0x80
        pos += 1
        spec = table.get(ident)
        if spec is None:
            raise _malformed(f"unknown property identifier {ident:#04x}")
        name, kind, contexts = spec
        if context not in contexts:
            where = "Will Properties" if context == 0 else PACKET_NAMES[context]
            raise _malformed(f"property {name} is not valid in {where}")
        value: Any
        if kind == _BYTE:
            value = raw[pos]
            pos += 1
        elif kind == _TWO:
            (value,) = _U16.unpack_from(raw, pos)
            pos += 2
        elif kind == _FOUR:
            (value,) = _U32.unpack_from(raw, pos)
            pos += 4
        elif kind == _VARINT:
            value, pos = decode_varint(raw, pos)
        elif kind == _UTF8:
            value, pos = _read_str(raw, pos)
        elif kind == _BINARY:
            value, pos = _read_bin(raw, pos)
        else:
            key, pos = _read_str(raw, pos)
            val, pos = _read_str(raw, pos)
            pairs = props.get(name)
            if pairs is None:
                props[name] = [(key, val)]
            else:
                pairs.append((key, val))
            continue
        if name in _NONZERO_PROPERTIES and value == 0:
            raise _protocol_error(f"property {name} is 0")
        if name in _FLAG_PROPERTIES and value > 1:
            raise _protocol_error(f"property {name} is {value}, not 0 or 1")
        if context == PUBLISH and ident == 0x0B:
            ids = props.get(name)
            if ids is None:
                props[name] = [value]
            else:
                ids.append(value)
            continue
        if name in props:
            raise _protocol_error(f"property {name} included more than once")
        props[name] = value
    return props


def decode_properties(data: bytes, pos: int, end: int, context: int) -> tuple[dict[str, Any], int]:
    """Decode the property block (length included) at ``pos`` of ``data``, not reading past
    ``end``; ``context`` is the packet type (or :data:`WILL_PROPERTIES`). Returns the dict,
    shared through a bounded cache (never mutate it), and the position after the block."""
    if pos >= end:
        raise _malformed("property length missing")
    n = data[pos]
    if n == 0:
        return _EMPTY, pos + 1
    if n < 0x80:
        start = pos + 1
    else:
        n, start = decode_varint(data, pos)
    stop = start + n
    if stop > end:
        raise _malformed("properties overrun the packet")
    raw = data[start:stop]
    key = (context, raw)
    props = _props_cache.get(key)
    if props is None:
        try:
            props = _decode_properties_raw(raw, context)
        except (IndexError, struct.error):
            raise _malformed("property value overruns the property block") from None
        if len(_props_cache) >= PROPERTIES_CACHE_ENTRIES_MAX:
            del _props_cache[next(iter(_props_cache))]
        _props_cache[key] = props
    return props, stop


def encode_properties(props: dict[str, Any] | None) -> bytes:
    """The property block (Variable Byte Integer length first) for a 5.0 packet. Keys as in
    :data:`PROPERTIES`; ``subscription_identifier`` may be an int or a list of ints;
    ``user_property`` is a list of pairs."""
    if not props:
        return b"\x00"
    out: list[bytes] = []
    for name, value in props.items():
        spec = _PROPERTY_IDS.get(name)
        if spec is None:
            raise ValueError(f"unknown MQTT property {name!r}")
        ident, kind = spec
        if kind == _BYTE:
            out.append(bytes((ident, value)))
        elif kind == _TWO:
            out.append(_B_U16.pack(ident, value))
        elif kind == _FOUR:
            out.append(_B_U32.pack(ident, value))
        elif kind == _VARINT:
            for one in value if isinstance(value, (list, tuple)) else (value,):
                out.append(bytes((ident,)) + encode_varint(one))
        elif kind == _UTF8:
            out.append(bytes((ident,)) + _string(value))
        elif kind == _BINARY:
            out.append(bytes((ident,)) + _binary(value))
        else:
            for key, val in value:
                out.append(bytes((ident,)) + _string(key) + _string(val))
    raw = b"".join(out)
    return encode_varint(len(raw)) + raw


# ---------------------------------------------------------------------------------------------
# Decoder

# PUBLISH fixed-header flags -> (qos, retain, dup); None where invalid
_PUBLISH_FLAGS: list[tuple[int, bool, bool] | None] = []
for _flags in range(16):
    _qos = (_flags >> 1) & 3
    _dup = bool(_flags & 8)
    _PUBLISH_FLAGS.append(
        None if _qos == 3 or (_dup and _qos == 0) else (_qos, bool(_flags & 1), _dup)
    )
del _flags, _qos, _dup

# Required fixed-header flags of every other packet type [MQTT-2.1.3-1]
_FIXED_FLAGS = {t: 0 for t in PACKET_NAMES}
_FIXED_FLAGS.update({PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2})

_topic_cache: dict[bytes, str] = {}


def _topic_name(raw: bytes, version: int) -> str:
    """Decode and validate a PUBLISH topic name, through the bounded cache."""
    topic = _text(raw)
    if "+" in topic or "#" in topic:
        raise MQTTError(
            TOPIC_NAME_INVALID,
            f"wildcard in topic name {topic!r} [MQTT-3.3.2-2]",
            packet_type=PUBLISH,
        )
    if not topic and version < MQTT_5:
        raise MQTTError(TOPIC_NAME_INVALID, "empty topic name [MQTT-4.7.3-1]", packet_type=PUBLISH)
    if topic:  # "" (a 5.0 topic alias) stays out of the cache: it is one lookup anyway
        if len(_topic_cache) >= TOPIC_CACHE_ENTRIES_MAX:
            del _topic_cache[next(iter(_topic_cache))]
        _topic_cache[raw] = topic
    return topic


class Decoder:
    """Incremental MQTT packet decoder for one connection.

    ``feed`` received bytes, then call ``events`` for every complete packet. ``version`` is
    None until a CONNECT is decoded; while it is None the first packet must be CONNECT. It is
    set from the CONNECT's protocol level as soon as that level is read and known, so a
    malformed rest of CONNECT can still be answered in the client's own CONNACK format; a
    later CONNECT is decoded normally and leaves it alone (refusing it is the processor's
    job). Pass ``version`` to decode from the middle of a conversation (a client's view,
    tests). ``packet_bytes_max`` limits a whole packet, fixed header included; the
    processor may change it (for instance to the client's Maximum Packet Size).

    Errors: :meth:`events` raises :class:`MQTTError`; the packets decoded before it in the
    same call are attached as ``exc.events`` (never lost, never returned twice). The decoder
    is then failed: later calls raise the same error with no events.
    """

    def __init__(
        self, *, packet_bytes_max: int = PACKET_BYTES_MAX_DEFAULT, version: int | None = None
    ) -> None:
        self.packet_bytes_max = packet_bytes_max
        self.version = version
        self._buf = b""
        self._pos = 0
        self._error: MQTTError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held waiting for a complete packet."""
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

    def events(self) -> list[Packet]:
        """Every complete packet in the buffer, in order (see the class docstring on errors)."""
        if self._error is not None:
            self._error.events = []
            raise self._error
        out: list[Packet] = []
        try:
            self._parse(out)
        except MQTTError as exc:
            exc.events = out
            self._error = exc
            raise
        return out

    def _parse(self, out: list[Packet]) -> None:
        buf = self._buf
        pos = self._pos
        n = len(buf)
        limit = self.packet_bytes_max
        version = self.version
        fast = version is not None  # PUBLISH before CONNECT goes the slow way, to be refused
        v5 = version == MQTT_5
        topics = _topic_cache
        publish_flags = _PUBLISH_FLAGS
        new = _new_tuple
        publish = Publish
        empty = _EMPTY
        append = out.append
        try:
            while n - pos >= 2:
                b0 = buf[pos]
                rl = buf[pos + 1]
                p = pos + 2
                if rl >= 0x80:
                    if n - pos > 2 and buf[p] < 0x80:  # two bytes: packets of 128 B to 16 KB
                        rl = (rl & 0x7F) | (buf[p] << 7)
                        p += 1
                    else:
                        rl, p = self._remaining_length(buf, pos, n)
                        if p < 0:
                            break
                end = p + rl
                if end - pos > limit:
                    raise MQTTError(
                        PACKET_TOO_LARGE,
                        f"packet of {end - pos} bytes exceeds the maximum of {limit}",
                        packet_type=b0 >> 4,
                    )
                if end > n:
                    break
                if b0 & 0xF0 == 0x30 and fast:
                    flags = publish_flags[b0 & 0x0F]
                    if flags is None or rl < 2:
                        raise self._bad_publish(b0, "no topic name")
                    qos, retain, dup = flags
                    t = p + 2 + ((buf[p] << 8) | buf[p + 1])
                    if t > end:
                        raise self._bad_publish(b0, "topic name overruns the packet")
                    if qos:
                        q = t + 2
                        if q > end:
                            raise self._bad_publish(b0, "no packet identifier")
                        packet_id: int | None = (buf[t] << 8) | buf[t + 1]
                        if not packet_id:
                            raise MQTTError(
                                PROTOCOL_ERROR,
                                "packet identifier 0 [MQTT-2.2.1-3]",
                                packet_type=PUBLISH,
                            )
                    else:
                        q = t
                        packet_id = None
                    raw = buf[p + 2 : t]
                    topic = topics.get(raw)
                    if topic is None:
                        topic = self._topic(raw, version or 0)
                    if not v5:
                        props = empty
                    elif q < end and buf[q] == 0:
                        props = empty
                        q += 1
                    else:
                        props, q = self._properties(buf, q, end, PUBLISH)
                    append(new(publish, (topic, buf[q:end], qos, retain, dup, packet_id, props)))
                else:
                    append(self._packet(b0, buf[p:end]))
                    if not fast:
                        version = self.version
                        fast = version is not None
                        v5 = version == MQTT_5
                pos = end
        finally:
            self._pos = pos
            if pos >= n:
                self._buf = b""
                self._pos = 0

    @staticmethod
    def _remaining_length(buf: bytes, pos: int, n: int) -> tuple[int, int]:
        """(remaining length, body position), or (0, -1) when more bytes are needed."""
        value = 0
        shift = 0
        p = pos + 1
        for _ in range(4):
            if p >= n:
                return 0, -1
            byte = buf[p]
            p += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, p
            shift += 7
        raise MQTTError(
            MALFORMED_PACKET,
            "remaining length longer than 4 bytes",
            packet_type=buf[pos] >> 4,
        )

    @staticmethod
    def _bad_publish(b0: int, text: str) -> MQTTError:
        if (b0 >> 1) & 3 == 3:
            text = "QoS 3 [MQTT-3.3.1-4]"
        elif b0 & 0x0E == 0x08:
            text = "DUP set on a QoS 0 message [MQTT-3.3.1-2]"
        return MQTTError(MALFORMED_PACKET, text, packet_type=PUBLISH)

    @staticmethod
    def _topic(raw: bytes, version: int) -> str:
        try:
            return _topic_name(raw, version)
        except MQTTError as exc:
            exc.packet_type = PUBLISH
            raise

    @staticmethod
    def _properties(buf: bytes, pos: int, end: int, context: int) -> tuple[dict[str, Any], int]:
        try:
            return decode_properties(buf, pos, end, context)
        except (IndexError, struct.error):
            raise MQTTError(
                MALFORMED_PACKET, "property length overruns the packet", packet_type=context
            ) from None
        except MQTTError as exc:
            exc.packet_type = context
            raise

    def _packet(self, b0: int, body: bytes) -> Packet:
        ptype = b0 >> 4
        flags = b0 & 0x0F
        version = self.version
        if version is None and ptype != CONNECT:
            name = PACKET_NAMES.get(ptype, "reserved packet type 0")
            raise MQTTError(
                PROTOCOL_ERROR,
                f"first packet is {name}, not CONNECT [MQTT-3.1.0-1]",
                packet_type=ptype,
            )
        if ptype == 0 or (ptype == AUTH and version is not None and version < MQTT_5):
            raise MQTTError(MALFORMED_PACKET, f"reserved packet type {ptype}", packet_type=ptype)
        if flags != _FIXED_FLAGS[ptype]:
            raise MQTTError(
                MALFORMED_PACKET,
                f"fixed header flags {flags:#03x}, must be {_FIXED_FLAGS[ptype]:#03x} "
                "[MQTT-2.1.3-1]",
                packet_type=ptype,
            )
        try:
            if ptype == CONNECT:
                return self._connect(body)
            assert version is not None
            return _DECODERS[ptype](body, version)
        except (IndexError, struct.error):
            raise MQTTError(
                MALFORMED_PACKET, "field overruns the packet", packet_type=ptype
            ) from None
        except MQTTError as exc:
            exc.packet_type = ptype
            raise

    def _connect(self, body: bytes) -> Connect:
        name, pos = _read_str(body, 0)
        level = body[pos]
        pos += 1
        if name not in ("MQTT", "MQIsdp"):
            raise MQTTError(
                UNSUPPORTED_PROTOCOL_VERSION, f"unknown protocol name {name!r} [MQTT-3.1.2-1]"
            )
        if PROTOCOLS.get(level) != name:
            raise MQTTError(
                UNSUPPORTED_PROTOCOL_VERSION,
                f"unsupported protocol {name!r} level {level} [MQTT-3.1.2-2]",
                connack_code=CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
            )
        if self.version is None:
            self.version = level
        flags = body[pos]
        (keepalive,) = _U16.unpack_from(body, pos + 1)
        pos += 3
        if flags & 0x01:
            raise _malformed("reserved CONNECT flag set [MQTT-3.1.2-3]")
        will_flag = flags & 0x04
        will_qos = (flags >> 3) & 3
        will_retain = bool(flags & 0x20)
        if not will_flag and will_qos:
            raise _malformed("Will QoS without the Will flag [MQTT-3.1.2-11]")
        if will_qos == 3:
            raise _malformed("Will QoS 3 [MQTT-3.1.2-12]")
        if not will_flag and will_retain:
            raise _malformed("Will Retain without the Will flag [MQTT-3.1.2-13]")
        if level < MQTT_5 and flags & 0x40 and not flags & 0x80:
            raise _malformed("password without a user name (3.1.1 [MQTT-3.1.2-22])")
        n = len(body)
        props = _EMPTY
        if level == MQTT_5:
            props, pos = decode_properties(body, pos, n, CONNECT)
        client_id, pos = _read_str(body, pos)
        clean_start = bool(flags & 0x02)
        if not client_id and level < MQTT_5 and not clean_start:
            raise MQTTError(
                CLIENT_IDENTIFIER_NOT_VALID,
                "empty client identifier with CleanSession 0 (3.1.1 [MQTT-3.1.3-8])",
                connack_code=CONNACK_IDENTIFIER_REJECTED,
            )
        will = None
        if will_flag:
            will_props = _EMPTY
            if level == MQTT_5:
                will_props, pos = decode_properties(body, pos, n, WILL_PROPERTIES)
            will_topic, pos = _read_str(body, pos)
            will_payload, pos = _read_bin(body, pos)
            will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
        username = password = None
        if flags & 0x80:
            username, pos = _read_str(body, pos)
        if flags & 0x40:
            password, pos = _read_bin(body, pos)
        if pos != n:
            raise _malformed(f"{n - pos} bytes after the CONNECT payload")
        return Connect(
            name, level, clean_start, keepalive, client_id, will, username, password, props
        )


def _packet_id(body: bytes, pos: int = 0) -> int:
    packet_id: int = _U16.unpack_from(body, pos)[0]
    if packet_id == 0:
        raise _protocol_error("packet identifier 0 [MQTT-2.2.1-3]")
    return packet_id


def _end(body: bytes, pos: int) -> None:
    if pos != len(body):
        raise _malformed(f"{len(body) - pos} bytes after the last field")


def _decode_connack(body: bytes, version: int) -> ConnAck:
    flags, code = body[0], body[1]
    if flags & 0xFE:
        raise _malformed("reserved CONNACK acknowledge flags set")
    props = _EMPTY
    pos = 2
    if version == MQTT_5:
        props, pos = decode_properties(body, pos, len(body), CONNACK)
    _end(body, pos)
    return ConnAck(bool(flags & 1), code, props)


def _decode_ack(
    cls: type[PubAck] | type[PubRec] | type[PubRel] | type[PubComp], ptype: int
) -> Callable[[bytes, int], Packet]:
    def decode(body: bytes, version: int) -> PubAck | PubRec | PubRel | PubComp:
        packet_id = _packet_id(body)
        n = len(body)
        if version < MQTT_5 or n == 2:
            _end(body, 2)
            return cls(packet_id, SUCCESS, _EMPTY)
        code = body[2]
        props = _EMPTY
        pos = 3
        if n > 3:
            props, pos = decode_properties(body, pos, n, ptype)
        _end(body, pos)
        return cls(packet_id, code, props)

    return decode


def _decode_subscribe(body: bytes, version: int) -> Subscribe:
    packet_id = _packet_id(body)
    n = len(body)
    props = _EMPTY
    pos = 2
    if version == MQTT_5:
        props, pos = decode_properties(body, pos, n, SUBSCRIBE)
    topics: list[tuple[str, SubOptions]] = []
    while pos < n:
        topic, pos = _read_str(body, pos)
        opts = body[pos]
        pos += 1
        qos = opts & 3
        if qos == 3:
            raise _malformed(f"subscription QoS 3 for {topic!r}")
        if version == MQTT_5:
            if opts & 0xC0:
                raise _malformed("reserved subscription option bits set [MQTT-3.8.3-5]")
            handling = (opts >> 4) & 3
            if handling == 3:
                raise _protocol_error("Retain Handling 3")
            topics.append((topic, SubOptions(qos, bool(opts & 4), bool(opts & 8), handling)))
        else:
            if opts & 0xFC:
                raise _malformed("reserved requested-QoS bits set (3.1.1 [MQTT-3-8.3-4])")
            topics.append((topic, SubOptions(qos)))
    if not topics:
        raise _protocol_error("SUBSCRIBE without a topic filter [MQTT-3.8.3-2]")
    return Subscribe(packet_id, topics, props)


def _decode_unsubscribe(body: bytes, version: int) -> Unsubscribe:
    packet_id = _packet_id(body)
    n = len(body)
    props = _EMPTY
    pos = 2
    if version == MQTT_5:
        props, pos = decode_properties(body, pos, n, UNSUBSCRIBE)
    topics: list[str] = []
    while pos < n:
        topic, pos = _read_str(body, pos)
        topics.append(topic)
    if not topics:
        raise _protocol_error("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, topics, props)


def _decode_suback(body: bytes, version: int) -> SubAck:
    packet_id = _packet_id(body)
    props = _EMPTY
    pos = 2
    if version == MQTT_5:
        props, pos = decode_properties(body, pos, len(body), SUBACK)
    codes = list(body[pos:])
    if not codes:
        raise _protocol_error("SUBACK without a reason code")
    return SubAck(packet_id, codes, props)


def _decode_unsuback(body: bytes, version: int) -> UnsubAck:
    packet_id = _packet_id(body)
    if version < MQTT_5:
        _end(body, 2)
        return UnsubAck(packet_id, [], _EMPTY)
    props, pos = decode_properties(body, 2, len(body), UNSUBACK)
    codes = list(body[pos:])
    if not codes:
        raise _protocol_error("UNSUBACK without a reason code")
    return UnsubAck(packet_id, codes, props)


def _decode_ping(packet: PingReq | PingResp) -> Callable[[bytes, int], Packet]:
    def decode(body: bytes, version: int) -> PingReq | PingResp:
        _end(body, 0)
        return packet

    return decode


def _decode_reason(
    cls: type[Disconnect] | type[Auth], ptype: int
) -> Callable[[bytes, int], Packet]:
    def decode(body: bytes, version: int) -> Disconnect | Auth:
        n = len(body)
        if version < MQTT_5 or n == 0:
            _end(body, 0)
            return cls(SUCCESS, _EMPTY)
        props = _EMPTY
        pos = 1
        if n > 1:
            props, pos = decode_properties(body, pos, n, ptype)
        _end(body, pos)
        return cls(body[0], props)

    return decode


_DECODERS: dict[int, Callable[[bytes, int], Packet]] = {
    CONNACK: _decode_connack,
    PUBACK: _decode_ack(PubAck, PUBACK),
    PUBREC: _decode_ack(PubRec, PUBREC),
    PUBREL: _decode_ack(PubRel, PUBREL),
    PUBCOMP: _decode_ack(PubComp, PUBCOMP),
    SUBSCRIBE: _decode_subscribe,
    SUBACK: _decode_suback,
    UNSUBSCRIBE: _decode_unsubscribe,
    UNSUBACK: _decode_unsuback,
    PINGREQ: _decode_ping(_PINGREQ),
    PINGRESP: _decode_ping(_PINGRESP),
    DISCONNECT: _decode_reason(Disconnect, DISCONNECT),
    AUTH: _decode_reason(Auth, AUTH),
}


# ---------------------------------------------------------------------------------------------
# Encoders


def _fixed(b0: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((b0, n)) + body
    return bytes((b0,)) + encode_varint(n) + body


def connack_code_v3(reason_code: int) -> int:
    """The 3.1.1 CONNACK return code for a 5.0 reason code (0x03 Server unavailable for a
    code 3.1.1 has no equivalent of)."""
    return CONNACK_V5_TO_V3.get(reason_code, CONNACK_SERVER_UNAVAILABLE)


def encode_connack(
    version: int,
    session_present: bool,
    reason_code: int,
    properties: dict[str, Any] | None = None,
) -> bytes:
    """CONNACK. Before 5.0 ``reason_code`` is the 3.1.1 return code (0x00-0x05, see
    :func:`connack_code_v3`) and ``properties`` are not sent."""
    flags = 1 if session_present else 0
    if version < MQTT_5:
        return bytes((0x20, 2, flags, reason_code))
    return _fixed(0x20, bytes((flags, reason_code)) + encode_properties(properties))


_topic_bytes_cache: dict[str, bytes] = {}


def _topic_bytes(topic: str) -> bytes:
    raw = _string(topic)
    if len(_topic_bytes_cache) >= TOPIC_CACHE_ENTRIES_MAX:
        del _topic_bytes_cache[next(iter(_topic_bytes_cache))]
    _topic_bytes_cache[topic] = raw
    return raw


def encode_publish(
    version: int,
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: dict[str, Any] | None = None,
) -> bytes:
    """PUBLISH. ``packet_id`` is required at QoS 1 and 2 and ignored at QoS 0; ``topic`` may be
    "" in 5.0 when ``properties`` carry a Topic Alias."""
    head = _topic_bytes_cache.get(topic) or _topic_bytes(topic)
    b0 = 0x30 | (qos << 1)
    if retain:
        b0 |= 1
    if dup:
        b0 |= 8
    if qos:
        head += _U16.pack(packet_id)
    if version == MQTT_5:
        head += encode_properties(properties) if properties else b"\x00"
    n = len(head) + len(payload)
    if n < 0x80:
        return b"".join((bytes((b0, n)), head, payload))
    if n < 0x4000:
        return b"".join((bytes((b0, (n & 0x7F) | 0x80, n >> 7)), head, payload))
    return b"".join((bytes((b0,)), encode_varint(n), head, payload))


def _encode_ack(b0: int, version: int, packet_id: int, reason_code: int, properties: Any) -> bytes:
    if version < MQTT_5 or (reason_code == 0 and not properties):
        return bytes((b0, 2, packet_id >> 8, packet_id & 0xFF))
    if not properties:
        return bytes((b0, 3, packet_id >> 8, packet_id & 0xFF, reason_code))
    return _fixed(b0, _U16.pack(packet_id) + bytes((reason_code,)) + encode_properties(properties))


def encode_puback(
    version: int, packet_id: int, reason_code: int = 0, properties: dict[str, Any] | None = None
) -> bytes:
    """PUBACK; in 5.0 the 2-byte form when the reason is 0 and there are no properties."""
    return _encode_ack(0x40, version, packet_id, reason_code, properties)


def encode_pubrec(
    version: int, packet_id: int, reason_code: int = 0, properties: dict[str, Any] | None = None
) -> bytes:
    return _encode_ack(0x50, version, packet_id, reason_code, properties)


def encode_pubrel(
    version: int, packet_id: int, reason_code: int = 0, properties: dict[str, Any] | None = None
) -> bytes:
    return _encode_ack(0x62, version, packet_id, reason_code, properties)


def encode_pubcomp(
    version: int, packet_id: int, reason_code: int = 0, properties: dict[str, Any] | None = None
) -> bytes:
    return _encode_ack(0x70, version, packet_id, reason_code, properties)


def encode_suback(
    version: int,
    packet_id: int,
    reason_codes: list[int],
    properties: dict[str, Any] | None = None,
) -> bytes:
    """SUBACK. Before 5.0 every code of 0x80 or more is sent as 0x80 (Failure)."""
    if version < MQTT_5:
        codes = bytes(c if c < 0x80 else SUBACK_FAILURE for c in reason_codes)
        return _fixed(0x90, _U16.pack(packet_id) + codes)
    return _fixed(0x90, _U16.pack(packet_id) + encode_properties(properties) + bytes(reason_codes))


def encode_unsuback(
    version: int,
    packet_id: int,
    reason_codes: list[int],
    properties: dict[str, Any] | None = None,
) -> bytes:
    """UNSUBACK. Before 5.0 it has no payload: ``reason_codes`` are not sent."""
    if version < MQTT_5:
        return bytes((0xB0, 2, packet_id >> 8, packet_id & 0xFF))
    return _fixed(0xB0, _U16.pack(packet_id) + encode_properties(properties) + bytes(reason_codes))


def encode_pingreq() -> bytes:
    return b"\xc0\x00"


def encode_pingresp() -> bytes:
    return b"\xd0\x00"


def encode_disconnect(
    version: int, reason_code: int = 0, properties: dict[str, Any] | None = None
) -> bytes:
    """DISCONNECT (a server sends it only in 5.0; before 5.0 it has no reason code)."""
    if version < MQTT_5 or (reason_code == 0 and not properties):
        return b"\xe0\x00"
    if not properties:
        return bytes((0xE0, 1, reason_code))
    return _fixed(0xE0, bytes((reason_code,)) + encode_properties(properties))


def encode_auth(reason_code: int = 0, properties: dict[str, Any] | None = None) -> bytes:
    """AUTH (5.0 only)."""
    if reason_code == 0 and not properties:
        return b"\xf0\x00"
    return _fixed(0xF0, bytes((reason_code,)) + encode_properties(properties))


def encode_connect(
    version: int,
    client_id: str,
    *,
    clean_start: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
    properties: dict[str, Any] | None = None,
    protocol_name: str | None = None,
) -> bytes:
    """CONNECT (client side). ``protocol_name`` defaults to the name of ``version``."""
    name = PROTOCOLS.get(version, "MQTT") if protocol_name is None else protocol_name
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    parts = [_string(name), bytes((version, flags)), _U16.pack(keepalive)]
    if version == MQTT_5:
        parts.append(encode_properties(properties))
    parts.append(_string(client_id))
    if will is not None:
        if version == MQTT_5:
            parts.append(encode_properties(will.properties))
        parts.append(_string(will.topic))
        parts.append(_binary(will.payload))
    if username is not None:
        parts.append(_string(username))
    if password is not None:
        parts.append(_binary(password))
    return _fixed(0x10, b"".join(parts))


def encode_subscribe(
    version: int,
    packet_id: int,
    topics: list[tuple[str, SubOptions]] | list[tuple[str, int]],
    properties: dict[str, Any] | None = None,
) -> bytes:
    """SUBSCRIBE (client side); a topic's options may be a bare QoS."""
    parts = [_U16.pack(packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(properties))
    for topic, opts in topics:
        if isinstance(opts, int):
            opts = SubOptions(opts)
        byte = opts.qos
        if version == MQTT_5:
            byte |= (
                (4 if opts.no_local else 0)
                | (8 if opts.retain_as_published else 0)
                | (opts.retain_handling << 4)
            )
        parts.append(_string(topic) + bytes((byte,)))
    return _fixed(0x82, b"".join(parts))


def encode_unsubscribe(
    version: int, packet_id: int, topics: list[str], properties: dict[str, Any] | None = None
) -> bytes:
    """UNSUBSCRIBE (client side)."""
    parts = [_U16.pack(packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(properties))
    parts.extend(_string(topic) for topic in topics)
    return _fixed(0xA2, b"".join(parts))


def encode_packet(version: int, packet: Packet) -> bytes:
    """Any packet, through the encoder of its type (CONNECT uses its own protocol level)."""
    if isinstance(packet, Publish):
        return encode_publish(version, *packet)
    if isinstance(packet, Connect):
        return encode_connect(
            packet.protocol_level,
            packet.client_id,
            clean_start=packet.clean_start,
            keepalive=packet.keepalive,
            will=packet.will,
            username=packet.username,
            password=packet.password,
            properties=packet.properties,
            protocol_name=packet.protocol_name,
        )
    if isinstance(packet, ConnAck):
        return encode_connack(version, *packet)
    if isinstance(packet, PubAck):
        return encode_puback(version, *packet)
    if isinstance(packet, PubRec):
        return encode_pubrec(version, *packet)
    if isinstance(packet, PubRel):
        return encode_pubrel(version, *packet)
    if isinstance(packet, PubComp):
        return encode_pubcomp(version, *packet)
    if isinstance(packet, Subscribe):
        return encode_subscribe(version, *packet)
    if isinstance(packet, SubAck):
        return encode_suback(version, *packet)
    if isinstance(packet, Unsubscribe):
        return encode_unsubscribe(version, *packet)
    if isinstance(packet, UnsubAck):
        return encode_unsuback(version, *packet)
    if isinstance(packet, PingReq):
        return encode_pingreq()
    if isinstance(packet, PingResp):
        return encode_pingresp()
    if isinstance(packet, Disconnect):
        return encode_disconnect(version, *packet)
    if isinstance(packet, Auth):
        return encode_auth(*packet)
    raise TypeError(f"not an MQTT packet: {packet!r}")


# ---------------------------------------------------------------------------------------------
# Topic names and filters (section 4.7)

SHARE_PREFIX = "$share/"


def validate_topic_name(topic: str) -> None:
    """Raise MQTTError 0x90 Topic Name invalid for an empty name [MQTT-4.7.3-1], a wildcard
    [MQTT-3.3.2-2] or U+0000 [MQTT-4.7.3-2]."""
    if not topic:
        raise MQTTError(TOPIC_NAME_INVALID, "empty topic name [MQTT-4.7.3-1]")
    if "+" in topic or "#" in topic:
        raise MQTTError(TOPIC_NAME_INVALID, f"wildcard in topic name {topic!r} [MQTT-3.3.2-2]")
    if "\x00" in topic:
        raise MQTTError(TOPIC_NAME_INVALID, "U+0000 in topic name [MQTT-4.7.3-2]")


def parse_shared(topic_filter: str) -> tuple[str | None, str]:
    """``(share name, filter)`` of ``$share/{ShareName}/{filter}``; ``(None, topic_filter)``
    for a filter that is not shared. Raises MQTTError 0x8F when the share name is empty or
    holds ``+`` or ``#`` [MQTT-4.8.2-1] [MQTT-4.8.2-2] or no filter follows it."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group or "+" in group or "#" in group:
        raise MQTTError(
            TOPIC_FILTER_INVALID, f"invalid share name in {topic_filter!r} [MQTT-4.8.2-2]"
        )
    if not sep or not rest:
        raise MQTTError(
            TOPIC_FILTER_INVALID, f"no topic filter after the share name in {topic_filter!r}"
        )
    return group, rest


def validate_topic_filter(topic_filter: str) -> None:
    """Raise MQTTError 0x8F Topic Filter invalid for an empty filter [MQTT-4.7.3-1], U+0000
    [MQTT-4.7.3-2], ``#`` that is not alone in the last level [MQTT-4.7.1-1], ``+`` that is
    not alone in its level [MQTT-4.7.1-2], or a malformed ``$share/`` prefix."""
    _, inner = parse_shared(topic_filter)
    if not inner:
        raise MQTTError(TOPIC_FILTER_INVALID, "empty topic filter [MQTT-4.7.3-1]")
    if "\x00" in inner:
        raise MQTTError(TOPIC_FILTER_INVALID, "U+0000 in topic filter [MQTT-4.7.3-2]")
    if "+" not in inner and "#" not in inner:
        return
    levels = inner.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise MQTTError(
                TOPIC_FILTER_INVALID,
                f"'#' not alone in the last level of {topic_filter!r} [MQTT-4.7.1-1]",
            )
        if "+" in level and level != "+":
            raise MQTTError(
                TOPIC_FILTER_INVALID,
                f"'+' not alone in its level of {topic_filter!r} [MQTT-4.7.1-2]",
            )


def is_dollar_topic(topic: str) -> bool:
    """Whether the name starts with ``$``: such topics must not match a filter that starts
    with a wildcard [MQTT-4.7.2-1]."""
    return topic[:1] == "$"


# Topic <-> AMQP topic-exchange keys. RabbitMQ's MQTT plugin (rabbit_mqtt_util to_amqp/to_mqtt)
# maps "/" -> "." and "+" -> "*" and leaves "#"; a "." inside an MQTT level is kept as is
# there, which merges "a.b/c" with "a/b/c". Swapping "." and "/" keeps every dot-free topic
# exactly as RabbitMQ routes it and makes the mapping a bijection. A literal "*" level in an
# MQTT filter becomes an AMQP wildcard (the same gap as RabbitMQ's).
_TO_KEY = str.maketrans({"/": ".", ".": "/"})
_TO_BINDING = str.maketrans({"/": ".", ".": "/", "+": "*"})
_routing_keys: dict[str, str] = {}


def topic_to_routing_key(topic: str) -> str:
    """The AMQP routing key of an MQTT topic name: ``/`` <-> ``.`` swapped
    (``sensors/t1.5`` -> ``sensors.t1/5``). Cached (bounded): it runs once per publish."""
    key = _routing_keys.get(topic)
    if key is None:
        key = topic.translate(_TO_KEY)
        if len(_routing_keys) >= KEY_CACHE_ENTRIES_MAX:
            del _routing_keys[next(iter(_routing_keys))]
        _routing_keys[topic] = key
    return key


def filter_to_binding_key(topic_filter: str) -> str:
    """The AMQP binding key of an MQTT topic filter (no ``$share/`` prefix): ``/`` <-> ``.``
    swapped, ``+`` -> ``*``, ``#`` unchanged (``a/+/#`` -> ``a.*.#``)."""
    return topic_filter.translate(_TO_BINDING)


def routing_key_to_topic(key: str) -> str:
    """The MQTT topic name of an AMQP routing key: the inverse of
    :func:`topic_to_routing_key` (``.`` <-> ``/`` swapped)."""
    return key.translate(_TO_KEY)
