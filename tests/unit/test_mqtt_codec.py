"""MQTT codec: round trips, bytes from the spec, framing limits, hostile input, topics.

Normative statements are cited by their MQTT 5.0 numbers unless marked 3.1.1. Hostile and
byte-exact packets are built by the tiny encoder below, independent of the codec under test.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mqtt import codec
from protocols.mqtt.codec import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    MQTTError,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    SubOptions,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)

VERSIONS = (MQTT_3_1, MQTT_3_1_1, MQTT_5)

# ---------------------------------------------------------------------------------------------
# Independent packet builder


def vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def pkt(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + vbi(len(body)) + body


def connect_v(
    level: int,
    client_id: str = "c",
    flags: int = 0x02,
    props: bytes = b"\x00",
    tail: bytes = b"",
) -> bytes:
    """CONNECT with ``tail`` (Will, user name, password fields) after the client id."""
    name = "MQIsdp" if level == 3 else "MQTT"
    head = s(name) + bytes((level, flags)) + b"\x00\x3c"
    return pkt(0x10, head + (props if level == 5 else b"") + s(client_id) + tail)


CONNECT_4 = connect_v(4)
CONNECT_5 = connect_v(5)


def decode(data: bytes, version: int | None = None, **kw: Any) -> list[Packet]:
    dec = Decoder(version=version, **kw)
    dec.feed(data)
    return dec.events()


def error(data: bytes, version: int | None = None, **kw: Any) -> MQTTError:
    with pytest.raises(MQTTError) as info:
        decode(data, version, **kw)
    return info.value


def roundtrip(version: int, packet: Packet) -> None:
    data = codec.encode_packet(version, packet)
    dec = Decoder(version=None if isinstance(packet, Connect) else version)
    dec.feed(data)
    events = dec.events()
    assert events == [packet]
    assert [type(e) for e in events] == [type(packet)]
    assert dec.buffered_bytes == 0


# ---------------------------------------------------------------------------------------------
# Strategies

utf8 = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=20,
)
topic_names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00+#"),
    min_size=1,
    max_size=20,
)
topic_filters = topic_names | st.sampled_from(["#", "+", "a/+/b", "a/#", "+/+", "$share/g/a/#"])
u16_nonzero = st.integers(1, 0xFFFF)
pairs = st.lists(st.tuples(utf8, utf8), min_size=1, max_size=3)

_VALUES: dict[str, st.SearchStrategy[Any]] = {}
for _name, _kind, _ctx in codec.PROPERTIES.values():
    _VALUES[_name] = [
        st.integers(0, 1),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(1, codec.REMAINING_LENGTH_MAX),
        utf8,
        st.binary(max_size=20),
        pairs,
    ][_kind]
_VALUES["receive_maximum"] = u16_nonzero
_VALUES["topic_alias"] = u16_nonzero
_VALUES["maximum_packet_size"] = st.integers(1, 0xFFFFFFFF)


def props_for(context: int) -> st.SearchStrategy[dict[str, Any]]:
    optional = {name: _VALUES[name] for name, _, ctx in codec.PROPERTIES.values() if context in ctx}
    if context == codec.PUBLISH:
        optional["subscription_identifier"] = st.lists(
            st.integers(1, codec.REMAINING_LENGTH_MAX), min_size=1, max_size=3
        )
    return st.fixed_dictionaries({}, optional=optional)


def props(version: int, context: int) -> st.SearchStrategy[dict[str, Any]]:
    return props_for(context) if version == MQTT_5 else st.just({})


reasons = st.integers(0, 255)


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    version = draw(st.sampled_from(VERSIONS))
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(st.binary(max_size=30)),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(props(version, codec.WILL_PROPERTIES)),
        )
    username = draw(st.none() | utf8)
    password = draw(st.none() | st.binary(max_size=20))
    if version < MQTT_5 and username is None:
        password = None  # 3.1.1 [MQTT-3.1.2-22]
    return Connect(
        codec.PROTOCOLS[version],
        version,
        draw(st.booleans()),
        draw(st.integers(0, 0xFFFF)),
        draw(utf8.filter(bool)),
        will,
        username,
        password,
        draw(props(version, codec.CONNECT)),
    )


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(topic_names),
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(u16_nonzero) if qos else None,
        draw(props(version, codec.PUBLISH)),
    )


def sub_options(version: int) -> st.SearchStrategy[SubOptions]:
    if version < MQTT_5:
        return st.integers(0, 2).map(SubOptions)
    return st.builds(SubOptions, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2))


def packets(version: int) -> st.SearchStrategy[Packet]:
    v5 = version == MQTT_5
    ack_reason = reasons if v5 else st.just(0)
    options: list[st.SearchStrategy[Any]] = [
        publishes(version),
        st.builds(
            ConnAck,
            st.booleans(),
            reasons if v5 else st.integers(0, 5),
            props(version, codec.CONNACK),
        ),
        *(
            st.builds(cls, u16_nonzero, ack_reason, props(version, ptype))
            for cls, ptype in (
                (PubAck, codec.PUBACK),
                (PubRec, codec.PUBREC),
                (PubRel, codec.PUBREL),
                (PubComp, codec.PUBCOMP),
            )
        ),
        st.builds(
            Subscribe,
            u16_nonzero,
            st.lists(st.tuples(topic_filters, sub_options(version)), min_size=1, max_size=4),
            props(version, codec.SUBSCRIBE).map(
                lambda p: (
                    {**p, "subscription_identifier": p["subscription_identifier"][0]}
                    if isinstance(p.get("subscription_identifier"), list)
                    else p
                )
            ),
        ),
        st.builds(
            SubAck,
            u16_nonzero,
            st.lists(reasons if v5 else st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4),
            props(version, codec.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            u16_nonzero,
            st.lists(topic_filters, min_size=1, max_size=4),
            props(version, codec.UNSUBSCRIBE),
        ),
        st.builds(
            UnsubAck,
            u16_nonzero,
            st.lists(reasons, min_size=1, max_size=4) if v5 else st.just([]),
            props(version, codec.UNSUBACK),
        ),
        st.just(PingReq()),
        st.just(PingResp()),
        st.builds(Disconnect, ack_reason, props(version, codec.DISCONNECT)),
    ]
    if v5:
        options.append(st.builds(Auth, reasons, props(version, codec.AUTH)))
    return st.one_of(options)


# ---------------------------------------------------------------------------------------------
# Round trips


@given(connects())
def test_connect_round_trip_all_versions(packet: Connect) -> None:
    roundtrip(packet.protocol_level, packet)


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
def test_every_packet_round_trips(version: int, data: st.DataObject) -> None:
    roundtrip(version, data.draw(packets(version)))


@given(props_for(codec.PUBLISH))
def test_every_publish_property_round_trips_in_publish(properties: dict[str, Any]) -> None:
    roundtrip(MQTT_5, Publish("t", b"p", 1, False, False, 9, properties))


def test_every_property_appears_in_some_round_trip() -> None:
    everything: dict[str, Any] = {}
    for context in (codec.CONNECT, codec.CONNACK, codec.PUBLISH, codec.WILL_PROPERTIES):
        everything.update({n: None for n, _, ctx in codec.PROPERTIES.values() if context in ctx})
    assert set(everything) == {name for name, _, _ in codec.PROPERTIES.values()}
    connack = {
        "session_expiry_interval": 7,
        "assigned_client_identifier": "auto-1",
        "server_keep_alive": 30,
        "authentication_method": "SCRAM",
        "authentication_data": b"\x01\x02",
        "response_information": "resp/",
        "server_reference": "other:1883",
        "reason_string": "ok",
        "receive_maximum": 10,
        "topic_alias_maximum": 5,
        "maximum_qos": 1,
        "retain_available": 1,
        "user_property": [("k", "v"), ("k", "v2"), ("k", "v")],
        "maximum_packet_size": 1 << 20,
        "wildcard_subscription_available": 0,
        "subscription_identifier_available": 1,
        "shared_subscription_available": 1,
    }
    roundtrip(MQTT_5, ConnAck(True, 0, connack))
    will = Will(
        "w",
        b"x",
        2,
        True,
        {
            "payload_format_indicator": 1,
            "message_expiry_interval": 60,
            "content_type": "text/plain",
            "response_topic": "r/t",
            "correlation_data": b"\x00id",
            "will_delay_interval": 5,
            "user_property": [("a", "b")],
        },
    )
    connect_props = {
        "session_expiry_interval": 0xFFFFFFFF,
        "receive_maximum": 65535,
        "maximum_packet_size": 1024,
        "topic_alias_maximum": 0,
        "request_response_information": 1,
        "request_problem_information": 0,
        "authentication_method": "m",
        "authentication_data": b"d",
        "user_property": [("x", "y")],
    }
    roundtrip(MQTT_5, Connect("MQTT", 5, False, 0, "id", will, "u", b"p", connect_props))
    publish_props = {"topic_alias": 3, "subscription_identifier": [1, 268435455]}
    roundtrip(MQTT_5, Publish("", b"", 1, False, False, 1, publish_props))


def test_user_properties_keep_order_and_duplicates() -> None:
    pairs_ = [("b", "2"), ("a", "1"), ("b", "2"), ("", "")]
    data = codec.encode_puback(MQTT_5, 5, 0x10, {"user_property": pairs_})
    [ack] = decode(data, MQTT_5)
    assert ack.properties["user_property"] == pairs_  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Bytes from the spec


def test_connect_variable_header_example_3_1_1() -> None:
    """3.1.1 section 3.1.2.10, Figure 3.6: protocol level 4, flags 0xCE (user name, password,
    Will QoS 1, Will flag, Clean Session), Keep Alive 10."""
    data = codec.encode_connect(
        MQTT_3_1_1,
        "cid",
        keepalive=10,
        will=Will("w", b"bye", 1, False, {}),
        username="u",
        password=b"pw",
    )
    body = b"\x00\x04MQTT\x04\xce\x00\x0a" + s("cid") + s("w") + s(b"bye") + s("u") + s(b"pw")
    assert data == pkt(0x10, body)
    [packet] = decode(data)
    assert packet == Connect(
        "MQTT", 4, True, 10, "cid", Will("w", b"bye", 1, False, {}), "u", b"pw", {}
    )


def test_connect_variable_header_example_5() -> None:
    """5.0 section 3.1.2.11 example: flags 0xC2, Keep Alive 10, Session Expiry Interval 10."""
    data = codec.encode_connect(
        MQTT_5,
        "",
        keepalive=10,
        username="u",
        password=b"p",
        properties={"session_expiry_interval": 10},
    )
    head = b"\x00\x04MQTT\x05\xc2\x00\x0a\x05\x11\x00\x00\x00\x0a"
    assert data == pkt(0x10, head + s("") + s("u") + s(b"p"))


def test_connect_3_1_uses_mqisdp() -> None:
    data = codec.encode_connect(MQTT_3_1, "x")
    assert data == pkt(0x10, s("MQIsdp") + b"\x03\x02\x00\x3c" + s("x"))
    [packet] = decode(data)
    assert isinstance(packet, Connect) and packet.protocol_level == 3


def test_publish_variable_header_example() -> None:
    """3.1.1 section 3.3.2.3, Figure 3.11: topic "a/b", packet identifier 10."""
    data = codec.encode_publish(MQTT_3_1_1, "a/b", b"", 1, False, False, 10)
    assert data == b"\x32\x07\x00\x03a/b\x00\x0a"
    assert decode(data, MQTT_3_1_1) == [Publish("a/b", b"", 1, False, False, 10, {})]
    data5 = codec.encode_publish(MQTT_5, "a/b", b"hi", 0, True, False, None)
    assert data5 == b"\x31\x08\x00\x03a/b\x00hi"


def test_subscribe_payload_example() -> None:
    """3.1.1 section 3.8.3, Figure 3.22: "a/b" QoS 1 and "c/d" QoS 2."""
    data = codec.encode_subscribe(MQTT_3_1_1, 10, [("a/b", 1), ("c/d", 2)])
    assert data == b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02"
    [sub] = decode(data, MQTT_3_1_1)
    assert sub == Subscribe(10, [("a/b", SubOptions(1)), ("c/d", SubOptions(2))], {})


def test_subscription_options_byte_5() -> None:
    """5.0 section 3.8.3.1: QoS bits 0-1, No Local bit 2, Retain As Published bit 3, Retain
    Handling bits 4-5."""
    data = codec.encode_subscribe(MQTT_5, 1, [("t", SubOptions(2, True, True, 2))])
    assert data == b"\x82\x07\x00\x01\x00\x00\x01t\x2e"


def test_suback_payload_example() -> None:
    """3.1.1 section 3.9.3, Figure 3.26: granted QoS 0, granted QoS 2, failure."""
    assert codec.encode_suback(MQTT_3_1_1, 1, [0, 2, 0x80]) == b"\x90\x05\x00\x01\x00\x02\x80"


def test_suback_3_1_1_maps_5_0_failures_to_0x80() -> None:
    assert codec.encode_suback(MQTT_3_1_1, 1, [1, 0x8F, 0x87]) == b"\x90\x05\x00\x01\x01\x80\x80"
    assert codec.encode_suback(MQTT_5, 1, [1, 0x8F]) == b"\x90\x05\x00\x01\x00\x01\x8f"


def test_unsubscribe_payload_example() -> None:
    """3.1.1 section 3.10.3, Figure 3.30: "a/b" and "c/d"."""
    data = codec.encode_unsubscribe(MQTT_3_1_1, 10, ["a/b", "c/d"])
    assert data == b"\xa2\x0c\x00\x0a\x00\x03a/b\x00\x03c/d"


def test_unsuback_has_no_payload_before_5() -> None:
    assert codec.encode_unsuback(MQTT_3_1_1, 10, [0, 0x11]) == b"\xb0\x02\x00\x0a"
    assert codec.encode_unsuback(MQTT_5, 10, [0, 0x11]) == b"\xb0\x05\x00\x0a\x00\x00\x11"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codec.encode_connack(MQTT_3_1_1, False, 0), b"\x20\x02\x00\x00"),
        (codec.encode_connack(MQTT_3_1_1, True, 0, {"reason_string": "x"}), b"\x20\x02\x01\x00"),
        (codec.encode_connack(MQTT_3_1_1, False, 5), b"\x20\x02\x00\x05"),
        (codec.encode_connack(MQTT_5, False, 0x84), b"\x20\x03\x00\x84\x00"),
        (codec.encode_puback(MQTT_3_1_1, 0x1234, 0x80), b"\x40\x02\x12\x34"),
        (codec.encode_puback(MQTT_5, 7), b"\x40\x02\x00\x07"),
        (codec.encode_puback(MQTT_5, 7, 0x10), b"\x40\x03\x00\x07\x10"),
        (
            codec.encode_puback(MQTT_5, 7, 0, {"reason_string": "a"}),
            b"\x40\x08\x00\x07\x00\x04\x1f\x00\x01a",
        ),
        (codec.encode_pubrec(MQTT_3_1_1, 1), b"\x50\x02\x00\x01"),
        (codec.encode_pubrel(MQTT_3_1_1, 1), b"\x62\x02\x00\x01"),
        (codec.encode_pubrel(MQTT_5, 1, 0x92), b"\x62\x03\x00\x01\x92"),
        (codec.encode_pubcomp(MQTT_3_1_1, 1), b"\x70\x02\x00\x01"),
        (codec.encode_pingreq(), b"\xc0\x00"),
        (codec.encode_pingresp(), b"\xd0\x00"),
        (codec.encode_disconnect(MQTT_3_1_1, 0x8E), b"\xe0\x00"),
        (codec.encode_disconnect(MQTT_5, 0), b"\xe0\x00"),
        (codec.encode_disconnect(MQTT_5, 0x8E), b"\xe0\x01\x8e"),
        (
            codec.encode_disconnect(MQTT_5, 0x8E, {"session_expiry_interval": 0}),
            b"\xe0\x07\x8e\x05\x11\x00\x00\x00\x00",
        ),
        (codec.encode_auth(), b"\xf0\x00"),
        (codec.encode_auth(0x18, {"authentication_method": "m"}), b"\xf0\x06\x18\x04\x15\x00\x01m"),
    ],
)
def test_fixed_encodings(data: bytes, expected: bytes) -> None:
    assert data == expected


def test_short_forms_decode_as_success_without_properties() -> None:
    """5.0 sections 3.4.2.1, 3.14.2.1, 3.15.2.1: Remaining Length 2 (acks) or 0 (DISCONNECT,
    AUTH) means reason 0x00 and no properties; a reason without a property length is
    allowed."""
    stream = b"\x40\x02\x00\x07\x50\x03\x00\x08\x10\xe0\x00\xf0\x00\xe0\x01\x04"
    assert decode(stream, MQTT_5) == [
        PubAck(7, 0, {}),
        PubRec(8, 0x10, {}),
        Disconnect(0, {}),
        Auth(0, {}),
        Disconnect(4, {}),
    ]


# ---------------------------------------------------------------------------------------------
# Remaining length (section 1.5.5 / 3.1.1 section 2.2.3)

BOUNDARIES = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), BOUNDARIES)
def test_variable_byte_integer_boundaries(value: int, encoded: bytes) -> None:
    assert codec.encode_varint(value) == encoded
    assert codec.decode_varint(encoded + b"\xaa") == (value, len(encoded))
    assert vbi(value) == encoded


def test_variable_byte_integer_limits() -> None:
    with pytest.raises(ValueError):
        codec.encode_varint(268435456)
    with pytest.raises(ValueError):
        codec.encode_varint(-1)
    with pytest.raises(MQTTError) as info:
        codec.decode_varint(b"\xff\xff\xff\xff\x01")
    assert info.value.reason_code == codec.MALFORMED_PACKET


@pytest.mark.parametrize(("value", "encoded"), BOUNDARIES[:7])
@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_publish_at_remaining_length_boundaries(version: int, value: int, encoded: bytes) -> None:
    head = b"\x00\x01t" + (b"\x00" if version == MQTT_5 else b"")
    if value < len(head):
        data = b"\xe0\x00" if value == 0 else b""  # DISCONNECT: the only 0-length case here
        expected: list[Packet] = [Disconnect(0, {})] if value == 0 else []
    else:
        payload = b"p" * (value - len(head))
        data = b"\x30" + encoded + head + payload
        assert data == codec.encode_publish(version, "t", payload, 0, False, False, None)
        expected = [Publish("t", payload, 0, False, False, None, {})]
    assert decode(data, version, packet_bytes_max=1 << 22) == expected


def test_largest_remaining_length_is_waited_for_not_refused() -> None:
    dec = Decoder(version=MQTT_5, packet_bytes_max=1 << 30)
    dec.feed(b"\x30\xff\xff\xff\x7f" + b"\x00\x01t\x00")
    assert dec.events() == []
    assert dec.buffered_bytes == 9


def test_five_byte_remaining_length_is_malformed() -> None:
    """Section 1.5.5: at most four bytes; a fifth continuation is a Malformed Packet."""
    dec = Decoder(version=MQTT_5, packet_bytes_max=1 << 30)
    dec.feed(b"\x30\xff\xff\xff\xff")
    with pytest.raises(MQTTError) as info:
        dec.events()
    assert info.value.reason_code == codec.MALFORMED_PACKET
    assert error(b"\x30\x80\x80\x80\x80\x01", MQTT_3_1_1).reason_code == codec.MALFORMED_PACKET


def test_incomplete_remaining_length_waits() -> None:
    dec = Decoder(version=MQTT_5)
    for byte in (b"\x30", b"\x85", b"\x01"):
        dec.feed(byte)
        assert dec.events() == []
    assert dec.buffered_bytes == 3


# ---------------------------------------------------------------------------------------------
# Packet size limit


def test_packet_over_limit_detected_from_fixed_header_alone() -> None:
    """A 100 MB claim is refused from its first 5 bytes: 0x95 Packet too large."""
    claim = 100 * 1024 * 1024
    dec = Decoder(version=MQTT_5)
    dec.feed(b"\x30" + vbi(claim))
    with pytest.raises(MQTTError) as info:
        dec.events()
    assert info.value.reason_code == codec.PACKET_TOO_LARGE
    assert info.value.packet_type == codec.PUBLISH
    assert dec.buffered_bytes == 5


def test_first_packet_over_limit_too() -> None:
    err = error(b"\x10" + vbi(2 << 20))
    assert err.reason_code == codec.PACKET_TOO_LARGE


def test_limit_counts_the_whole_packet_and_is_settable() -> None:
    data = codec.encode_publish(MQTT_3_1_1, "t", b"x" * 100, 0, False, False, None)
    assert len(data) == 105
    assert decode(data, MQTT_3_1_1, packet_bytes_max=105)
    assert error(data, MQTT_3_1_1, packet_bytes_max=104).reason_code == codec.PACKET_TOO_LARGE
    dec = Decoder(version=MQTT_3_1_1)
    dec.packet_bytes_max = 50
    dec.feed(data[:3])
    with pytest.raises(MQTTError):
        dec.events()


# ---------------------------------------------------------------------------------------------
# Streams


def _stream(big: bool = True) -> tuple[bytes, list[Packet]]:
    packets_: list[Packet] = [
        Connect("MQTT", 5, True, 30, "me", None, None, None, {"receive_maximum": 5}),
        Publish("a/b", b"x" * 200, 1, True, False, 3, {"message_expiry_interval": 9}),
        Publish("a/b", b"", 0, False, False, None, {}),
        Subscribe(4, [("a/+", SubOptions(1, True, False, 1))], {"subscription_identifier": 7}),
        PingReq(),
        PubRel(9, 0, {}),
        *([Publish("c", b"y" * 20000, 2, False, True, 65535, {})] if big else []),
        Disconnect(0x04, {"reason_string": "bye"}),
    ]
    return b"".join(codec.encode_packet(MQTT_5, p) for p in packets_), packets_


def test_stream_split_at_every_byte_position() -> None:
    data, expected = _stream(big=False)
    for i in range(len(data) + 1):
        dec = Decoder()
        dec.feed(data[:i])
        got = dec.events()
        dec.feed(data[i:])
        got += dec.events()
        assert got == expected, i
        assert dec.buffered_bytes == 0


def test_stream_fed_byte_by_byte_and_in_chunks() -> None:
    data, expected = _stream()
    for size in (1, 7, 1000, 65536):
        dec = Decoder()
        got: list[Packet] = []
        for i in range(0, len(data), size):
            dec.feed(data[i : i + size])
            got += dec.events()
        assert got == expected


def test_payload_is_a_bytes_slice() -> None:
    data = codec.encode_publish(MQTT_3_1_1, "t", b"abc", 0, False, False, None)
    [p] = decode(data + data, MQTT_3_1_1)[:1]
    assert type(p.payload) is bytes  # type: ignore[union-attr]


def test_version_is_set_from_connect() -> None:
    dec = Decoder()
    assert dec.version is None
    dec.feed(CONNECT_4 + codec.encode_publish(MQTT_3_1_1, "t", b"", 0, False, False, None))
    assert [type(e) for e in dec.events()] == [Connect, Publish]
    assert dec.version == MQTT_3_1_1


def test_second_connect_is_decoded_and_keeps_the_version() -> None:
    """[MQTT-3.1.0-2]: refusing it is the processor's job."""
    dec = Decoder()
    dec.feed(CONNECT_4 + CONNECT_5)
    assert [type(e) for e in dec.events()] == [Connect, Connect]
    assert dec.version == MQTT_3_1_1


# ---------------------------------------------------------------------------------------------
# Errors


def test_error_carries_earlier_events_and_sticks() -> None:
    dec = Decoder()
    dec.feed(CONNECT_4 + b"\xc0\x00" + b"\x36\x00")
    with pytest.raises(MQTTError) as info:
        dec.events()
    assert [type(e) for e in info.value.events] == [Connect, PingReq]
    assert info.value.reason_code == codec.MALFORMED_PACKET
    with pytest.raises(MQTTError) as again:
        dec.events()
    assert again.value is info.value and again.value.events == []


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x30\x03\x00\x01t", codec.PROTOCOL_ERROR),
        (b"\xc0\x00", codec.PROTOCOL_ERROR),
        (b"\x00\x00", codec.PROTOCOL_ERROR),
        (b"\x20\x02\x00\x00", codec.PROTOCOL_ERROR),
    ],
)
def test_first_packet_must_be_connect(data: bytes, code: int) -> None:
    """[MQTT-3.1.0-1]."""
    err = error(data)
    assert err.reason_code == code
    assert "CONNECT" in err.text


@pytest.mark.parametrize(
    ("name", "level", "connack"),
    [
        ("MQTT", 6, codec.CONNACK_UNACCEPTABLE_PROTOCOL_VERSION),
        ("MQTT", 3, codec.CONNACK_UNACCEPTABLE_PROTOCOL_VERSION),
        ("MQIsdp", 4, codec.CONNACK_UNACCEPTABLE_PROTOCOL_VERSION),
        ("MQTT", 0, codec.CONNACK_UNACCEPTABLE_PROTOCOL_VERSION),
        ("AMQP", 4, None),
        ("mqtt", 4, None),
    ],
)
def test_unknown_protocol_name_or_level(name: str, level: int, connack: int | None) -> None:
    """[MQTT-3.1.2-1] unknown name: close; [MQTT-3.1.2-2] unknown level: CONNACK 0x84 (5.0)
    or return code 0x01 (3.1.1)."""
    dec = Decoder()
    dec.feed(pkt(0x10, s(name) + bytes((level,)) + b"\x02\x00\x3c" + s("c")))
    with pytest.raises(MQTTError) as info:
        dec.events()
    assert info.value.reason_code == codec.UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.connack_code == connack
    assert dec.version is None


@pytest.mark.parametrize(
    ("flags", "what"),
    [
        (0x03, "reserved CONNECT flag [MQTT-3.1.2-3]"),
        (0x0A, "Will QoS without Will flag [MQTT-3.1.2-11]"),
        (0x1E, "Will QoS 3 [MQTT-3.1.2-12]"),
        (0x22, "Will Retain without Will flag [MQTT-3.1.2-13]"),
    ],
)
@pytest.mark.parametrize("level", [MQTT_3_1_1, MQTT_5])
def test_connect_flag_violations_are_malformed(level: int, flags: int, what: str) -> None:
    dec = Decoder()
    will = (b"\x00" if level == MQTT_5 else b"") + s("w") + s(b"x")
    dec.feed(connect_v(level, flags=flags, tail=will))
    with pytest.raises(MQTTError) as info:
        dec.events()
    assert info.value.reason_code == codec.MALFORMED_PACKET, what
    assert info.value.packet_type == codec.CONNECT
    assert dec.version == level  # known early: the CONNACK can use the client's format


def test_password_without_user_name_3_1_1_only() -> None:
    """3.1.1 [MQTT-3.1.2-22]; 5.0 allows a password without a user name."""
    err = error(connect_v(4, flags=0x42, tail=s(b"pw")))
    assert err.reason_code == codec.MALFORMED_PACKET
    body = s("MQTT") + b"\x05\x42\x00\x3c\x00" + s("c") + s(b"pw")
    [packet] = decode(pkt(0x10, body))
    assert packet == Connect("MQTT", 5, True, 60, "c", None, None, b"pw", {})


def test_empty_client_id_without_clean_session_3_1_1() -> None:
    """3.1.1 [MQTT-3.1.3-8]: CONNACK 0x02 Identifier rejected; 5.0 leaves it to the server."""
    err = error(connect_v(4, client_id="", flags=0x00))
    assert err.connack_code == codec.CONNACK_IDENTIFIER_REJECTED
    assert err.reason_code == codec.CLIENT_IDENTIFIER_NOT_VALID
    assert decode(connect_v(5, client_id="", flags=0x00))
    assert decode(connect_v(4, client_id="", flags=0x02))


@pytest.mark.parametrize("level", VERSIONS)
def test_connect_trailing_bytes_are_malformed(level: int) -> None:
    assert error(connect_v(level, tail=b"\x00")).reason_code == codec.MALFORMED_PACKET


@pytest.mark.parametrize(
    "b0",
    [
        0x36,  # QoS 3 [MQTT-3.3.1-4]
        0x37,
        0x3E,
        0x38,  # DUP on QoS 0 [MQTT-3.3.1-2]
        0x39,
    ],
)
@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_publish_bad_flags_are_malformed(version: int, b0: int) -> None:
    err = error(pkt(b0, b"\x00\x01t\x00\x01\x00"), version)
    assert err.reason_code == codec.MALFORMED_PACKET
    assert err.packet_type == codec.PUBLISH


RESERVED_FLAGS = [
    (0x11, "CONNECT"),
    (0x21, "CONNACK"),
    (0x48, "PUBACK"),
    (0x51, "PUBREC"),
    (0x60, "PUBREL [MQTT-3.6.1-1]"),
    (0x63, "PUBREL"),
    (0x72, "PUBCOMP"),
    (0x80, "SUBSCRIBE [MQTT-3.8.1-1]"),
    (0x83, "SUBSCRIBE"),
    (0x92, "SUBACK"),
    (0xA0, "UNSUBSCRIBE [MQTT-3.10.1-1]"),
    (0xB1, "UNSUBACK"),
    (0xC4, "PINGREQ"),
    (0xD8, "PINGRESP"),
    (0xE2, "DISCONNECT [MQTT-3.14.1-1]"),
    (0xF1, "AUTH [MQTT-3.15.1-1]"),
]


@pytest.mark.parametrize(("b0", "name"), RESERVED_FLAGS)
def test_reserved_fixed_header_flags_are_malformed(b0: int, name: str) -> None:
    """[MQTT-2.1.3-1] (3.1.1 [MQTT-2.2.2-1], [MQTT-2.2.2-2])."""
    err = error(pkt(b0, b"\x00\x01\x00\x00"), MQTT_5)
    assert err.reason_code == codec.MALFORMED_PACKET, name
    assert err.packet_type == b0 >> 4


@pytest.mark.parametrize("version", VERSIONS)
def test_reserved_packet_type_0(version: int) -> None:
    assert error(b"\x00\x00", version).reason_code == codec.MALFORMED_PACKET


def test_auth_is_reserved_before_5() -> None:
    assert error(b"\xf0\x00", MQTT_3_1_1).reason_code == codec.MALFORMED_PACKET
    assert decode(b"\xf0\x00", MQTT_5) == [Auth(0, {})]


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff", "not UTF-8 [MQTT-1.5.4-1]"),
        (b"a\xc3", "truncated sequence"),
        (b"\xc0\xaf", "overlong encoding"),
        (b"\xed\xa0\x80", "UTF-16 surrogate [MQTT-1.5.4-1]"),
        (b"a\x00b", "U+0000 [MQTT-1.5.4-2]"),
    ],
)
def test_invalid_utf8_in_topic_is_malformed(version: int, raw: bytes, why: str) -> None:
    props = b"\x00" if version == MQTT_5 else b""
    err = error(pkt(0x30, s(raw) + props + b"payload"), version)
    assert err.reason_code == codec.MALFORMED_PACKET, why
    assert err.packet_type == codec.PUBLISH


@pytest.mark.parametrize("topic", ["a/+", "#", "a/#/b", "+"])
def test_wildcard_in_publish_topic_is_topic_name_invalid(topic: str) -> None:
    """[MQTT-3.3.2-2]."""
    err = error(pkt(0x30, s(topic) + b"\x00"), MQTT_5)
    assert err.reason_code == codec.TOPIC_NAME_INVALID


def test_empty_topic_allowed_only_in_5_for_topic_alias() -> None:
    """[MQTT-4.7.3-1]; 5.0 section 3.3.2.3.4: an empty name with a Topic Alias."""
    assert decode(pkt(0x30, s("") + b"\x03\x23\x00\x01"), MQTT_5) == [
        Publish("", b"", 0, False, False, None, {"topic_alias": 1})
    ]
    assert error(pkt(0x30, s("")), MQTT_3_1_1).reason_code == codec.TOPIC_NAME_INVALID


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x00",  # no topic length
        b"\x30\x01\x00",
        b"\x30\x03\x00\x05a",  # topic longer than the packet
        b"\x32\x04\x00\x01t\x00",  # half a packet identifier
        b"\x32\x03\x00\x01t",  # no packet identifier
    ],
)
def test_truncated_publish_fields_are_malformed(data: bytes) -> None:
    err = error(data + b"\xc0\x00", MQTT_3_1_1)
    assert err.reason_code == codec.MALFORMED_PACKET


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"\x32\x05\x00\x01t\x00\x00", MQTT_3_1_1),
        (b"\x40\x02\x00\x00", MQTT_3_1_1),
        (b"\x82\x06\x00\x00\x00\x01t\x00", MQTT_3_1_1),
        (b"\xa2\x05\x00\x00\x00\x01t", MQTT_3_1_1),
        (b"\x62\x03\x00\x00\x00", MQTT_5),
    ],
)
def test_packet_identifier_zero_is_a_protocol_error(data: bytes, version: int) -> None:
    """[MQTT-2.2.1-3] (3.1.1 [MQTT-2.3.1-1])."""
    assert error(data, version).reason_code == codec.PROTOCOL_ERROR


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_subscribe_without_topics_is_a_protocol_error(version: int) -> None:
    """[MQTT-3.8.3-2] (3.1.1 [MQTT-3.8.3-3]) and [MQTT-3.10.3-2]."""
    props = b"\x00" if version == MQTT_5 else b""
    assert error(pkt(0x82, b"\x00\x01" + props), version).reason_code == codec.PROTOCOL_ERROR
    assert error(pkt(0xA2, b"\x00\x01" + props), version).reason_code == codec.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("version", "options", "code"),
    [
        (MQTT_3_1_1, 0x03, codec.MALFORMED_PACKET),  # QoS 3
        (MQTT_3_1_1, 0x04, codec.MALFORMED_PACKET),  # 3.1.1 [MQTT-3-8.3-4]: reserved bits
        (MQTT_3_1_1, 0x80, codec.MALFORMED_PACKET),
        (MQTT_5, 0x03, codec.MALFORMED_PACKET),
        (MQTT_5, 0x40, codec.MALFORMED_PACKET),  # [MQTT-3.8.3-5]
        (MQTT_5, 0x80, codec.MALFORMED_PACKET),
        (MQTT_5, 0x30, codec.PROTOCOL_ERROR),  # Retain Handling 3
    ],
)
def test_bad_subscription_options(version: int, options: int, code: int) -> None:
    props = b"\x00" if version == MQTT_5 else b""
    data = pkt(0x82, b"\x00\x01" + props + s("t") + bytes((options,)))
    assert error(data, version).reason_code == code


@pytest.mark.parametrize(
    ("packet", "code", "why"),
    [
        (b"\x40\x09\x00\x01\x00\x05\x1f\x00\x01a\x1f", codec.MALFORMED_PACKET, "overrun"),
        (b"\x40\x07\x00\x01\x00\x03\x7f\x00\x00", codec.MALFORMED_PACKET, "unknown id"),
        (b"\x40\x06\x00\x01\x00\x02\x23\x00", codec.MALFORMED_PACKET, "Topic Alias on PUBACK"),
        (
            b"\x40\x0c\x00\x01\x00\x08\x1f\x00\x01a\x1f\x00\x01b",
            codec.PROTOCOL_ERROR,
            "Reason String twice",
        ),
        (b"\x40\x05\x00\x01\x00\x09\x1f", codec.MALFORMED_PACKET, "length over the packet"),
        (b"\x40\x08\x00\x01\x00\x04\x1f\x00\x01\xff", codec.MALFORMED_PACKET, "bad UTF-8"),
        (b"\x40\x08\x00\x01\x00\x04\x1f\x00\x01\x00", codec.MALFORMED_PACKET, "U+0000"),
    ],
)
def test_bad_properties(packet: bytes, code: int, why: str) -> None:
    """5.0 section 2.2.2.2: an identifier not valid for the packet type is malformed; a
    property included more than once where that is not allowed is a Protocol Error."""
    assert error(packet, MQTT_5).reason_code == code, why


@pytest.mark.parametrize(
    ("props", "code"),
    [
        (b"\x23\x00\x00", codec.PROTOCOL_ERROR),  # Topic Alias 0 [MQTT-3.3.2-8]
        (b"\x01\x02", codec.PROTOCOL_ERROR),  # Payload Format Indicator 2
        (b"\x0b\x00", codec.PROTOCOL_ERROR),  # Subscription Identifier 0
        (b"\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02", codec.PROTOCOL_ERROR),  # expiry twice
        (b"\x0b\x80\x80\x80\x80\x01", codec.MALFORMED_PACKET),  # 5-byte VBI
        (b"\x11\x00\x00\x00\x01", codec.MALFORMED_PACKET),  # session expiry in PUBLISH
    ],
)
def test_bad_publish_properties(props: bytes, code: int) -> None:
    data = pkt(0x30, s("t") + vbi(len(props)) + props + b"payload")
    err = error(data, MQTT_5)
    assert err.reason_code == code
    assert err.packet_type == codec.PUBLISH


def test_repeated_subscription_identifiers_allowed_only_in_publish() -> None:
    [p] = decode(pkt(0x30, s("t") + b"\x04\x0b\x01\x0b\x02"), MQTT_5)
    assert p.properties == {"subscription_identifier": [1, 2]}  # type: ignore[union-attr]
    data = pkt(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02" + s("t") + b"\x00")
    assert error(data, MQTT_5).reason_code == codec.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("props", "code"),
    [
        (b"\x21\x00\x00", codec.PROTOCOL_ERROR),  # Receive Maximum 0
        (b"\x27\x00\x00\x00\x00", codec.PROTOCOL_ERROR),  # Maximum Packet Size 0
        (b"\x17\x02", codec.PROTOCOL_ERROR),  # Request Problem Information 2
        (b"\x19\x05", codec.PROTOCOL_ERROR),  # Request Response Information 5
        (b"\x18\x00\x00\x00\x01", codec.MALFORMED_PACKET),  # Will Delay outside the Will
        (b"\x11\x00\x00\x00\x01\x11\x00\x00\x00\x01", codec.PROTOCOL_ERROR),
    ],
)
def test_bad_connect_properties(props: bytes, code: int) -> None:
    err = error(connect_v(5, props=vbi(len(props)) + props))
    assert err.reason_code == code
    assert err.packet_type == codec.CONNECT


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (b"\xc0\x01\x00", MQTT_5),  # PINGREQ with a body
        (b"\xe0\x01\x00", MQTT_3_1_1),  # 3.1.1 DISCONNECT with a body
        (b"\x40\x03\x00\x01\x00", MQTT_3_1_1),  # 3.1.1 PUBACK with a reason
        (b"\x40\x01\x00", MQTT_5),
        (b"\xb0\x03\x00\x01\x00", MQTT_3_1_1),
        (b"\x20\x02\x02\x00", MQTT_3_1_1),  # reserved CONNACK flags
    ],
)
def test_wrong_lengths_are_malformed(data: bytes, version: int) -> None:
    assert error(data, version).reason_code == codec.MALFORMED_PACKET


# ---------------------------------------------------------------------------------------------
# Hostile input never raises anything but MQTTError


@given(st.binary(max_size=400), st.sampled_from([None, *VERSIONS]))
@settings(max_examples=500)
def test_garbage_raises_only_mqtt_error(data: bytes, version: int | None) -> None:
    dec = Decoder(version=version, packet_bytes_max=4096)
    dec.feed(data)
    try:
        for event in dec.events():
            assert isinstance(event, tuple)
    except MQTTError as exc:
        assert 0x80 <= exc.reason_code <= 0xA2


@given(st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
def test_mutated_valid_streams_raise_only_mqtt_error(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(VERSIONS))
    packet = data.draw(packets(version) | connects())
    raw = bytearray(codec.encode_packet(version, packet))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    dec = Decoder(version=None if isinstance(packet, Connect) else version)
    try:
        dec.feed(bytes(raw[:cut]))
        dec.events()
        dec.feed(bytes(raw[cut:]))
        dec.events()
    except MQTTError:
        pass


# ---------------------------------------------------------------------------------------------
# Topic names, filters, shared subscriptions (section 4.7, 4.8.2)


@pytest.mark.parametrize(
    ("topic", "valid"),
    [
        ("a", True),
        ("a/b/c", True),
        ("/", True),
        ("a//b", True),
        ("$SYS/broker", True),
        ("a b/ü/€", True),
        ("*", True),
        ("", False),  # [MQTT-4.7.3-1]
        ("a/+", False),  # [MQTT-3.3.2-2]
        ("a/#", False),
        ("a+b", False),
        ("#", False),
        ("a\x00b", False),  # [MQTT-4.7.3-2]
    ],
)
def test_validate_topic_name(topic: str, valid: bool) -> None:
    if valid:
        codec.validate_topic_name(topic)
    else:
        with pytest.raises(MQTTError) as info:
            codec.validate_topic_name(topic)
        assert info.value.reason_code == codec.TOPIC_NAME_INVALID


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("#", True),
        ("+", True),
        ("a/#", True),
        ("a/+/b", True),
        ("+/+", True),
        ("/+", True),
        ("a//#", True),
        ("$SYS/#", True),
        ("$share/g/a/+", True),
        ("$share/g/#", True),
        ("sport/tennis/#", True),
        ("", False),  # [MQTT-4.7.3-1]
        ("a/#/b", False),  # [MQTT-4.7.1-1]
        ("a#", False),
        ("a/b#", False),
        ("##", False),
        ("a+", False),  # [MQTT-4.7.1-2]
        ("a/+b/c", False),
        ("++", False),
        ("a\x00", False),  # [MQTT-4.7.3-2]
        ("$share/", False),  # [MQTT-4.8.2-1]
        ("$share//a", False),
        ("$share/g", False),  # [MQTT-4.8.2-2]
        ("$share/g/", False),
        ("$share/g+/a", False),
        ("$share/#/a", False),
        ("$share/g/a#", False),
    ],
)
def test_validate_topic_filter(topic_filter: str, valid: bool) -> None:
    if valid:
        codec.validate_topic_filter(topic_filter)
    else:
        with pytest.raises(MQTTError) as info:
            codec.validate_topic_filter(topic_filter)
        assert info.value.reason_code == codec.TOPIC_FILTER_INVALID


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/b", (None, "a/b")),
        ("$share/g/a/b", ("g", "a/b")),
        ("$share/group-1/#", ("group-1", "#")),
        ("$share/g/$SYS/x", ("g", "$SYS/x")),
        ("$SHARE/g/a", (None, "$SHARE/g/a")),  # case-sensitive
        ("share/g/a", (None, "share/g/a")),
    ],
)
def test_parse_shared(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert codec.parse_shared(topic_filter) == expected


def test_is_dollar_topic() -> None:
    """[MQTT-4.7.2-1]: the processor keeps '#' and '+/...' away from these."""
    assert codec.is_dollar_topic("$SYS/x")
    assert codec.is_dollar_topic("$")
    assert not codec.is_dollar_topic("a/$SYS")
    assert not codec.is_dollar_topic("")


# RabbitMQ's MQTT plugin maps '/' -> '.', '+' -> '*', '#' -> '#' (rabbit_mqtt_util); a '.'
# inside a level becomes '/' here so the mapping is a bijection.
@pytest.mark.parametrize(
    ("topic", "routing_key"),
    [
        ("a", "a"),
        ("a/b/c", "a.b.c"),
        ("sensors/device1/temp", "sensors.device1.temp"),
        ("/a", ".a"),
        ("a/", "a."),
        ("a//b", "a..b"),
        ("spBv1.0/group/NDATA/node", "spBv1/0.group.NDATA.node"),
        ("v1.2/data", "v1/2.data"),
        ("a.b", "a/b"),
        ("$SYS/broker/uptime", "$SYS.broker.uptime"),
        ("*", "*"),
        ("ü/€", "ü.€"),
    ],
)
def test_topic_routing_key_rows(topic: str, routing_key: str) -> None:
    assert codec.topic_to_routing_key(topic) == routing_key
    assert codec.routing_key_to_topic(routing_key) == topic


@pytest.mark.parametrize(
    ("topic_filter", "binding_key"),
    [
        ("#", "#"),
        ("+", "*"),
        ("a/+/c", "a.*.c"),
        ("a/#", "a.#"),
        ("+/+/#", "*.*.#"),
        ("v1.2/+", "v1/2.*"),
        ("$SYS/#", "$SYS.#"),
    ],
)
def test_filter_binding_key_rows(topic_filter: str, binding_key: str) -> None:
    assert codec.filter_to_binding_key(topic_filter) == binding_key


@given(topic_names)
def test_topic_routing_key_round_trip_is_exact(topic: str) -> None:
    assert codec.routing_key_to_topic(codec.topic_to_routing_key(topic)) == topic


# ---------------------------------------------------------------------------------------------
# Caches stay bounded


def test_caches_are_bounded() -> None:
    dec = Decoder(version=MQTT_5)
    for i in range(codec.TOPIC_CACHE_ENTRIES_MAX + 50):
        topic = f"t/{i}"
        dec.feed(codec.encode_publish(MQTT_5, topic, b"", 0, False, False, None))
        codec.topic_to_routing_key(topic)
        dec.feed(pkt(0x30, s("x") + b"\x05\x02" + struct.pack(">I", i)))
    assert len(dec.events()) == 2 * (codec.TOPIC_CACHE_ENTRIES_MAX + 50)
    assert len(codec._topic_cache) <= codec.TOPIC_CACHE_ENTRIES_MAX
    assert len(codec._topic_bytes_cache) <= codec.TOPIC_CACHE_ENTRIES_MAX
    assert len(codec._routing_keys) <= codec.KEY_CACHE_ENTRIES_MAX
    assert len(codec._props_cache) <= codec.PROPERTIES_CACHE_ENTRIES_MAX


def test_connack_code_v3() -> None:
    assert codec.connack_code_v3(codec.SUCCESS) == 0
    assert codec.connack_code_v3(codec.BAD_USER_NAME_OR_PASSWORD) == 4
    assert codec.connack_code_v3(codec.NOT_AUTHORIZED) == 5
    assert codec.connack_code_v3(codec.QUOTA_EXCEEDED) == 3


def test_error_str_names_the_packet() -> None:
    err = error(b"\x36\x00", MQTT_5)
    assert str(err).startswith("0x81 PUBLISH: QoS 3")
