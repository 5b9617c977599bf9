"""AMQP 0-9-1 codec: fast paths against pamqp, assembly, limits and hostile input.

Frames for hostile cases are built by the tiny struct encoder below, independent of the
codec under test; well-formed control frames come from pamqp.
"""

from __future__ import annotations

import datetime
import decimal
import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from protocols.amqp091 import codec
from protocols.amqp091.codec import (
    PROTOCOL_HEADER,
    Ack,
    AMQPError,
    BadProtocolHeader,
    ContentTooLarge,
    Decoder,
    Heartbeat,
    Method,
    Publish,
)

# ---------------------------------------------------------------------------------------------
# Independent frame builder


def frame(ftype: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([end])


def shortstr(s: str) -> bytes:
    raw = s.encode()
    return bytes([len(raw)]) + raw


def publish(channel: int, exchange: str = "", routing_key: str = "rk", bits: int = 0) -> bytes:
    args = struct.pack(">HHH", 60, 40, 0) + shortstr(exchange) + shortstr(routing_key)
    return frame(1, channel, args + bytes([bits]))


def content_header(channel: int, body_size: int, props: bytes = b"\x00\x00") -> bytes:
    return frame(2, channel, struct.pack(">HHQ", 60, 0, body_size) + props)


def body(channel: int, data: bytes) -> bytes:
    return frame(3, channel, data)


def ack(channel: int, tag: int, multiple: bool) -> bytes:
    return frame(1, channel, struct.pack(">HHQB", 60, 80, tag, int(multiple)))


HEARTBEAT = frame(8, 0, b"")
TEXT_PROPS = b"\x80\x00" + shortstr("text/plain")  # content_type only


def decoder(**kw: Any) -> Decoder:
    dec = Decoder(**kw)
    dec.feed(PROTOCOL_HEADER)
    assert dec.header_received()
    return dec


def decode_all(data: bytes, **kw: Any) -> list[Any]:
    dec = decoder(**kw)
    dec.feed(data)
    return dec.events()


def unmarshal_all(data: bytes) -> list[tuple[int, Any]]:
    out = []
    while data:
        used, channel, value = pamqp_frame.unmarshal(data)
        out.append((channel, value))
        data = data[used:]
    return out


def raises_code(code: int, data: bytes, **kw: Any) -> AMQPError:
    with pytest.raises(AMQPError) as info:
        decode_all(data, **kw)
    assert info.value.code == code, info.value
    return info.value


def close_args(data: bytes, **kw: Any) -> tuple[int, str, int, int]:
    """connection.close's code, reply text, class and method ids for the error ``data``
    raises."""
    with pytest.raises(AMQPError) as info:
        decode_all(data, **kw)
    err = info.value
    return err.code, err.reply_text, err.class_id, err.method_id


# ---------------------------------------------------------------------------------------------
# Strategies

field_keys = st.text(min_size=1, max_size=12).filter(lambda k: len(k.encode()) <= 255)
scalars_no_float = (
    st.text(max_size=20)
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.none()
    | st.binary(max_size=20)
)
scalars = scalars_no_float | st.floats(allow_nan=False)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(field_keys, inner, max_size=4),
        max_leaves=12,
    )


values = nested(scalars)
tables = st.dictionaries(field_keys, values, max_size=6)
# pika reads 'd' doubles as integers (and cannot send floats at all)
tables_for_pika = st.dictionaries(field_keys, nested(scalars_no_float), max_size=6)
short_text = st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255)
octets = st.integers(0, 255)

properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": short_text,
        "content_encoding": short_text,
        "headers": tables,
        "delivery_mode": octets,
        "priority": octets,
        "correlation_id": short_text,
        "reply_to": short_text,
        "expiration": short_text,
        "message_id": short_text,
        "timestamp": st.integers(0, 2**32 - 1),  # pamqp reads larger values as ms
        "type": short_text,
        "user_id": short_text,
        "app_id": short_text,
        "cluster_id": short_text,
    },
)

# pamqp's attribute name for each properties key
PAMQP_NAMES = {"type": "message_type"}


# ---------------------------------------------------------------------------------------------
# Properties


@given(properties)
def test_properties_round_trip(props: dict[str, Any]) -> None:
    raw = codec.encode_properties(props)
    assert codec.decode_properties(raw) == props
    assert codec.decode_properties(memoryview(raw)) == props


@given(properties)
def test_properties_read_by_pamqp(props: dict[str, Any]) -> None:
    raw = codec.encode_properties(props)
    hdr = pamqp_header.ContentHeader()
    hdr.unmarshal(struct.pack(">HHQ", 60, 0, 0) + raw)
    for key, value in props.items():
        got = getattr(hdr.properties, PAMQP_NAMES.get(key, key))
        if key == "timestamp":
            assert got.timestamp() == value
        elif key != "headers":
            assert got == value


@given(tables_for_pika)
def test_headers_read_by_pika_as_sent(table: dict[str, Any]) -> None:
    data = pytest.importorskip("pika.data")
    decoded, _ = data.decode_table(codec.encode_table(table), 0)
    assert decoded == table


def test_pika_encoded_headers_decode_to_the_same_values() -> None:
    data = pytest.importorskip("pika.data")
    table = {"s": "é", "i": 7, "big": 2**40, "neg": -5, "t": True, "n": None, "b": b"\x00\xff"}
    table |= {"l": [1, "a", [2]], "d": {"x": {"y": "z"}}}
    pieces: list[bytes] = []
    data.encode_table(pieces, table)
    assert codec.decode_table(b"".join(pieces)) == table


def test_pamqp_only_types_are_converted() -> None:
    """'T' timestamps become int seconds and 'D' decimals floats (lossy by design)."""
    props = commands.Basic.Properties(
        timestamp=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
        headers={
            "when": datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
            "price": decimal.Decimal("12.34"),
            "f32": 1.5,
            "small": 3,
            "u16": 40000,
            "raw": bytearray(b"ab"),
        },
        message_type="kind",
    )
    got = codec.decode_properties(props.marshal())
    stamp = int(datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC).timestamp())
    assert got["timestamp"] == stamp
    assert got["type"] == "kind"
    h = got["headers"]
    assert h["when"] == stamp and isinstance(h["when"], int)
    assert math.isclose(h["price"], 12.34)
    assert h["f32"] == 1.5 and h["small"] == 3 and h["u16"] == 40000 and h["raw"] == b"ab"


def test_all_integer_field_types() -> None:
    items = [
        (b"b", ">b", -3),
        (b"B", ">B", 250),
        (b"s", ">h", -300),
        (b"u", ">H", 60000),
        (b"I", ">i", -70000),
        (b"i", ">I", 4_000_000_000),
        (b"l", ">q", -(2**40)),
        (b"L", ">q", -(2**62)),
        (b"T", ">Q", 1_700_000_000),
    ]
    payload = b"".join(
        shortstr(f"k{i}") + kind + struct.pack(fmt, v) for i, (kind, fmt, v) in enumerate(items)
    )
    table = codec.decode_table(struct.pack(">I", len(payload)) + payload)
    assert list(table.values()) == [v for _, _, v in items]


def test_invalid_utf8_long_string_decodes_as_bytes() -> None:
    payload = shortstr("k") + b"S" + struct.pack(">I", 2) + b"\xff\xfe"
    assert codec.decode_table(struct.pack(">I", len(payload)) + payload) == {"k": b"\xff\xfe"}


def test_property_caches_share_and_bound() -> None:
    props = {"delivery_mode": 2, "content_type": "text/plain"}
    raw = codec.encode_properties(props)
    assert codec.encode_properties(props) is raw
    first = codec.decode_properties(raw)
    assert codec.decode_properties(bytes(raw)) is first
    for i in range(codec.PROPERTIES_CACHE_ENTRIES_MAX * 2):
        codec.encode_properties({"message_id": str(i)})
        codec.decode_properties(codec.encode_properties({"message_id": str(i)}))
    assert len(codec._encode_cache) <= codec.PROPERTIES_CACHE_ENTRIES_MAX
    assert len(codec._decode_cache) <= codec.PROPERTIES_CACHE_ENTRIES_MAX


# ---------------------------------------------------------------------------------------------
# Encoders against pamqp

frame_maxes = st.sampled_from([0, 4096, 4097, 131072])
bodies = st.binary(max_size=9000) | st.sampled_from([b"", b"x" * 4088, b"y" * 4089, b"z" * 8176])


def check_content(
    frames: list[tuple[int, Any]], channel: int, props: dict[str, Any], data: bytes, fmax: int
) -> None:
    hdr_channel, hdr = frames[0]
    assert hdr_channel == channel
    assert isinstance(hdr, pamqp_header.ContentHeader)
    assert hdr.body_size == len(data)
    assert hdr.properties.content_type == props.get("content_type")
    assert hdr.properties.delivery_mode == props.get("delivery_mode")
    chunks = frames[1:]
    assert all(ch == channel and isinstance(b, pamqp_body.ContentBody) for ch, b in chunks)
    assert b"".join(b.value for _, b in chunks) == data
    if fmax:
        assert all(len(b.value) <= fmax - 8 for _, b in chunks)
    if not data:
        assert not chunks


simple_props = st.fixed_dictionaries(
    {}, optional={"content_type": short_text, "delivery_mode": st.integers(1, 2)}
)


@given(
    st.integers(1, 65535),
    short_text,
    st.integers(0, 2**63 - 1),
    st.booleans(),
    short_text,
    short_text,
    simple_props,
    bodies,
    frame_maxes,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_encode_deliver_matches_pamqp(
    channel: int,
    tag: str,
    dtag: int,
    redelivered: bool,
    exchange: str,
    rk: str,
    props: dict[str, Any],
    data: bytes,
    fmax: int,
) -> None:
    raw = codec.encode_deliver(channel, tag, dtag, redelivered, exchange, rk, props, data, fmax)
    frames = unmarshal_all(raw)
    ch, method = frames[0]
    assert ch == channel and isinstance(method, commands.Basic.Deliver)
    assert (method.consumer_tag, method.delivery_tag, method.redelivered) == (
        tag,
        dtag,
        redelivered,
    )
    assert (method.exchange, method.routing_key) == (exchange, rk)
    check_content(frames[1:], channel, props, data, fmax)


@given(
    st.integers(1, 65535),
    st.integers(0, 2**63 - 1),
    st.booleans(),
    short_text,
    short_text,
    st.integers(0, 2**32 - 1),
    simple_props,
    bodies,
    frame_maxes,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_encode_get_ok_matches_pamqp(
    channel: int,
    dtag: int,
    redelivered: bool,
    exchange: str,
    rk: str,
    count: int,
    props: dict[str, Any],
    data: bytes,
    fmax: int,
) -> None:
    raw = codec.encode_get_ok(channel, dtag, redelivered, exchange, rk, count, props, data, fmax)
    frames = unmarshal_all(raw)
    ch, method = frames[0]
    assert ch == channel and isinstance(method, commands.Basic.GetOk)
    assert (method.delivery_tag, method.redelivered, method.message_count) == (
        dtag,
        redelivered,
        count,
    )
    assert (method.exchange, method.routing_key) == (exchange, rk)
    check_content(frames[1:], channel, props, data, fmax)


@given(
    st.integers(1, 65535),
    st.sampled_from([312, 313]),
    short_text,
    short_text,
    short_text,
    simple_props,
    bodies,
    frame_maxes,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_encode_return_matches_pamqp(
    channel: int,
    code: int,
    text: str,
    exchange: str,
    rk: str,
    props: dict[str, Any],
    data: bytes,
    fmax: int,
) -> None:
    raw = codec.encode_return(channel, code, text, exchange, rk, props, data, fmax)
    frames = unmarshal_all(raw)
    ch, method = frames[0]
    assert ch == channel and isinstance(method, commands.Basic.Return)
    assert (method.reply_code, method.reply_text) == (code, text)
    assert (method.exchange, method.routing_key) == (exchange, rk)
    check_content(frames[1:], channel, props, data, fmax)


@given(st.integers(0, 65535), st.integers(0, 2**63 - 1), st.booleans(), st.booleans())
def test_encode_confirm_matches_pamqp(channel: int, tag: int, multiple: bool, ok: bool) -> None:
    raw = codec.encode_confirm(channel, tag, multiple, ok)
    if ok:
        expect: Any = commands.Basic.Ack(tag, multiple)
    else:
        expect = commands.Basic.Nack(tag, multiple, requeue=False)
    assert raw == pamqp_frame.marshal(expect, channel)


def test_encode_method_and_heartbeat() -> None:
    close = commands.Connection.Close(320, "CONNECTION_FORCED - bye", 0, 0)
    assert codec.encode_method(0, close) == pamqp_frame.marshal(close, 0)
    assert codec.encode_heartbeat() == HEARTBEAT


def test_deliver_body_is_decoded_back_by_our_decoder_as_a_publish_shape() -> None:
    """A deliver's content frames have the same layout as a publish's."""
    props = {"content_type": "a/b", "headers": {"k": [1, "v"]}}
    raw = codec.encode_deliver(3, "t", 1, False, "", "q", props, b"p" * 10000, 4096)
    method_len = struct.unpack_from(">I", raw, 3)[0] + 8
    events = decode_all(publish(3, "", "q") + raw[method_len:])
    assert events == [Publish(3, "", "q", False, False, props, b"p" * 10000)]


# ---------------------------------------------------------------------------------------------
# Publish assembly and the Ack fast path


def test_publish_single_frame_body_and_flags() -> None:
    stream = publish(1, "ex", "a.b", bits=3) + content_header(1, 5, TEXT_PROPS) + body(1, b"hello")
    events = decode_all(stream)
    assert events == [Publish(1, "ex", "a.b", True, True, {"content_type": "text/plain"}, b"hello")]
    assert type(events[0].body) is bytes


def test_publish_with_empty_body_has_no_body_frames() -> None:
    events = decode_all(publish(2) + content_header(2, 0) + ack(2, 1, False))
    assert events == [Publish(2, "", "rk", False, False, {}, b""), Ack(2, 1, False)]


def test_publish_from_pamqp_client_frames() -> None:
    props = commands.Basic.Properties(
        content_type="application/json", delivery_mode=2, headers={"x": "y"}
    )
    data = bytes(range(256)) * 40
    stream = pamqp_frame.marshal(commands.Basic.Publish(exchange="e", routing_key="k"), 5)
    stream += pamqp_frame.marshal(pamqp_header.ContentHeader(0, len(data), props), 5)
    for i in range(0, len(data), 4000):
        stream += pamqp_frame.marshal(pamqp_body.ContentBody(data[i : i + 4000]), 5)
    (event,) = decode_all(stream)
    assert event == Publish(
        5,
        "e",
        "k",
        False,
        False,
        {"content_type": "application/json", "delivery_mode": 2, "headers": {"x": "y"}},
        data,
    )


def interleaved_stream() -> tuple[bytes, list[Any]]:
    """Two channels publishing multi-frame bodies interleaved, with acks and heartbeats."""
    a, b = b"A" * 30, b"B" * 7
    stream = (
        publish(1, "x", "one")
        + publish(2, "y", "two", bits=1)
        + content_header(1, len(a), TEXT_PROPS)
        + body(1, a[:10])
        + HEARTBEAT
        + content_header(2, len(b))
        + body(1, a[10:20])
        + ack(3, 99, True)
        + body(2, b)
        + body(1, a[20:])
        + publish(1, "x", "three")
        + content_header(1, 0)
    )
    expect = [
        Heartbeat(),
        Ack(3, 99, True),
        Publish(2, "y", "two", True, False, {}, b),
        Publish(1, "x", "one", False, False, {"content_type": "text/plain"}, a),
        Publish(1, "x", "three", False, False, {}, b""),
    ]
    return stream, expect


def test_publish_assembly_across_channels_and_body_frames() -> None:
    stream, expect = interleaved_stream()
    assert decode_all(stream) == expect


def test_every_split_point_and_byte_by_byte() -> None:
    stream, expect = interleaved_stream()
    full = PROTOCOL_HEADER + stream
    for cut in range(len(full) + 1):
        dec = Decoder()
        got: list[Any] = []
        for piece in (full[:cut], full[cut:]):
            dec.feed(piece)
            if dec.header_received():
                got += dec.events()
        assert got == expect, cut
        assert dec.buffered_bytes == 0
    dec = Decoder()
    got = []
    for i in range(len(full)):
        dec.feed(full[i : i + 1])
        if dec.header_received():
            got += dec.events()
    assert got == expect


@given(st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_random_chunking(sizes: list[int]) -> None:
    stream, expect = interleaved_stream()
    stream *= 3
    dec = decoder()
    got: list[Any] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = sizes[i % len(sizes)]
        dec.feed(stream[pos : pos + step])
        pos += step
        i += 1
        got += dec.events()
    assert got == expect * 3


@given(st.integers(0, 65535), st.integers(0, 2**63 - 1), st.booleans())
def test_ack_fast_path_matches_pamqp(channel: int, tag: int, multiple: bool) -> None:
    raw = pamqp_frame.marshal(commands.Basic.Ack(tag, multiple), channel)
    assert raw == ack(channel, tag, multiple)
    assert decode_all(raw) == [Ack(channel, tag, multiple)]


def test_control_methods_via_pamqp_with_plain_arguments() -> None:
    declare = commands.Queue.Declare(
        queue="q", durable=True, arguments={"x-rate": decimal.Decimal("1.5"), "x-n": 5}
    )
    (event,) = decode_all(pamqp_frame.marshal(declare, 4))
    assert isinstance(event, Method) and event.channel == 4
    assert isinstance(event.method, commands.Queue.Declare)
    assert event.method.queue == "q" and event.method.durable
    assert event.method.arguments == {"x-rate": 1.5, "x-n": 5}
    assert type(event.method.arguments["x-rate"]) is float


# ---------------------------------------------------------------------------------------------
# Limits and framing errors


def test_frame_max_is_checked_from_the_frame_header() -> None:
    dec = decoder(frame_max=4096)
    dec.feed(struct.pack(">BHI", 3, 1, 4089))  # payload 4089 > 4096 - 8, nothing else sent
    with pytest.raises(AMQPError) as info:
        dec.events()
    assert info.value.code == codec.FRAME_ERROR
    assert info.value.reply_text.startswith("FRAME_ERROR - ")
    assert info.value.reply_text == (
        "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4089,4088}"
    )
    assert (info.value.class_id, info.value.method_id) == (0, 0)
    dec = decoder(frame_max=4096)
    dec.feed(struct.pack(">BHI", 1, 0, 100 << 20))
    with pytest.raises(AMQPError) as info:
        dec.events()
    assert info.value.text == "type 1, all octets = <<>>: {frame_too_large,104857600,4088}"


def test_frame_of_exactly_frame_max_is_accepted() -> None:
    data = b"d" * (4096 - 8)
    events = decode_all(publish(1) + content_header(1, len(data)) + body(1, data), frame_max=4096)
    assert events[0].body == data


def test_frame_max_can_be_changed_after_tune() -> None:
    dec = decoder(frame_max=4096)
    dec.frame_max = 131072
    data = b"d" * 10000
    dec.feed(publish(1) + content_header(1, len(data)) + body(1, data))
    assert dec.events()[0].body == data


def test_bad_frame_end() -> None:
    raises_code(codec.FRAME_ERROR, frame(8, 0, b"", end=0x00))
    for end in (0x00, 0xCD, 0xFF):
        assert close_args(frame(1, 1, struct.pack(">HH", 20, 10) + b"\x00", end=end)) == (
            501,
            "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: "
            f"{{invalid_frame_end_marker,{end}}}",
            0,
            0,
        )


def test_unknown_frame_type() -> None:
    for ftype in (0, 4, 7, 9, 255):
        raises_code(codec.FRAME_ERROR, frame(ftype, 0, b""))
    assert close_args(frame(7, 1, b"abc")) == (
        501,
        'FRAME_ERROR - type 7, all octets = <<"abc">>: unknown_frame',
        0,
        0,
    )
    # the payload is awaited: the text shows it
    dec = decoder()
    dec.feed(frame(7, 1, b"abc")[:-2])
    assert dec.events() == []


def test_short_frames_are_unknown_frames() -> None:
    assert close_args(frame(1, 1, b""))[:2] == (
        501,
        "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame",
    )
    assert close_args(frame(1, 1, b"\x00\x3c"))[1] == (
        "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame"
    )
    # a short header is a framing error before it is an unexpected one
    assert close_args(frame(2, 1, b"\x00\x3c\x00"))[1] == (
        "FRAME_ERROR - type 2, all octets = <<0,60,0>>: unknown_frame"
    )
    assert close_args(frame(8, 0, b"x"))[1] == (
        'FRAME_ERROR - type 8, all octets = <<"x">>: unknown_frame'
    )


def test_erlang_binary() -> None:
    fmt = codec._erlang_binary
    assert fmt(b"") == "<<>>"
    assert fmt(b"abc") == '<<"abc">>'
    assert fmt(b"a b~") == '<<"a b~">>'
    assert fmt(b'say "hi"\\\n\t') == '<<"say \\"hi\\"\\\\\\n\\t">>'
    assert fmt(b"\x00\x14") == "<<0,20>>"
    assert fmt(b"ab\x00") == "<<97,98,0>>"
    assert fmt(b"\x7f") == "<<127>>"
    assert fmt(b"\xe9t\xe9") == "<<233,116,233>>"  # latin-1: printed as numbers
    assert fmt(b"abc", strings=False) == "<<97,98,99>>"
    cap = codec.ERLANG_BINARY_OCTETS_MAX
    assert fmt(b"x" * (cap + 1)) == '<<"' + "x" * cap + '"...>>'
    assert fmt(b"\x01" * (100 << 10)) == "<<" + "1," * cap + "...>>"
    assert codec._octets(bytes(range(17))) == (
        "first 16 octets = <<0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15>>"
    )
    assert codec._octets(b"a" * 16) == 'all octets = <<"aaaaaaaaaaaaaaaa">>'


def test_reply_text_is_cut_as_rabbitmq_cuts_it() -> None:
    err = AMQPError(codec.FRAME_ERROR, "x" * 300)
    assert err.reply_text == "FRAME_ERROR - " + "x" * (252 - 14) + "..."
    assert len(err.reply_text.encode()) == 255
    assert AMQPError(codec.FRAME_ERROR, "x" * 241).reply_text == "FRAME_ERROR - " + "x" * 241


def test_body_without_header_and_header_without_publish() -> None:
    raises_code(codec.UNEXPECTED_FRAME, body(1, b"x"))
    raises_code(codec.UNEXPECTED_FRAME, content_header(1, 1))
    raises_code(codec.UNEXPECTED_FRAME, publish(1) + body(1, b"x"))
    raises_code(codec.UNEXPECTED_FRAME, body(0, b"x"))
    no_method = (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        0,
        0,
    )
    assert close_args(body(1, b"abc")) == no_method
    assert close_args(content_header(1, 3)) == no_method
    assert close_args(publish(1) + content_header(1, 3) + body(2, b"abc")) == no_method
    assert close_args(publish(1) + body(1, b"x")) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header "
        "frame instead",
        60,
        40,
    )
    assert close_args(body(0, b"abc"))[1] == 'UNEXPECTED_FRAME - type 3, all octets = <<"abc">>'
    assert close_args(body(0, bytes(20)))[1] == (
        "UNEXPECTED_FRAME - type 3, first 16 octets = <<0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0>>"
    )


def test_method_while_content_in_progress() -> None:
    err = raises_code(codec.UNEXPECTED_FRAME, publish(1) + ack(1, 1, False))
    assert "expected content header" in err.text
    err = raises_code(codec.UNEXPECTED_FRAME, publish(1) + content_header(1, 5) + ack(1, 1, False))
    assert "expected content body" in err.text
    assert (err.reply_text, err.class_id, err.method_id) == (
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
        60,
        40,
    )
    # another channel is not affected
    events = decode_all(publish(1) + ack(2, 1, False))
    assert events == [Ack(2, 1, False)]


def test_header_for_another_class_and_oversized_body() -> None:
    bad = frame(2, 1, struct.pack(">HHQ", 50, 0, 1) + b"\x00\x00")
    raises_code(codec.UNEXPECTED_FRAME, publish(1) + bad)
    assert close_args(publish(1) + bad) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
        60,
        40,
    )
    raises_code(codec.FRAME_ERROR, publish(1) + content_header(1, 2) + body(1, b"abc"))


def test_malformed_and_unknown_methods() -> None:
    raises_code(codec.FRAME_ERROR, frame(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x09ab"))
    raises_code(codec.FRAME_ERROR, frame(1, 1, struct.pack(">HHQ", 60, 80, 1)))  # no bits
    raises_code(codec.FRAME_ERROR, frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00"))
    err = raises_code(codec.NOT_IMPLEMENTED, frame(1, 1, struct.pack(">HH", 99, 1)))
    assert (err.class_id, err.method_id, err.channel) == (99, 1, 1)
    assert err.reply_text.startswith("NOT_IMPLEMENTED - ")
    for ch, ids in ((1, (60, 999)), (0, (10, 999))):
        err = raises_code(codec.NOT_IMPLEMENTED, frame(1, ch, struct.pack(">HH", *ids)))
        assert (err.class_id, err.method_id) == ids
    raises_code(codec.FRAME_ERROR, frame(1, 1, b"\x00\x3c"))
    raises_code(codec.SYNTAX_ERROR, publish(1) + content_header(1, 0, b"\x80\x00\x09ab"))
    raises_code(codec.COMMAND_INVALID, publish(0))


def test_undecodable_arguments_are_frame_errors_with_the_method_ids() -> None:
    declare = frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\xffshort")
    assert close_args(declare) == (
        501,
        "FRAME_ERROR - cannot decode <<0,0,255,115,104,111,114,116>>",
        50,
        10,
    )
    truncated = frame(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x09ab")
    assert close_args(truncated) == (501, "FRAME_ERROR - cannot decode <<0,0,9,97,98>>", 60, 40)
    trailing = frame(1, 1, struct.pack(">HHQBB", 60, 80, 1, 0, 0))
    assert close_args(trailing)[2:] == (60, 80)
    extra = frame(1, 1, struct.pack(">HHH", 60, 40, 0) + b"\x00\x00\x00\x00")
    assert close_args(extra) == (501, "FRAME_ERROR - cannot decode <<0,0,0,0,0,0>>", 60, 40)
    not_utf8 = frame(1, 1, struct.pack(">HHH", 60, 40, 0) + b"\x01\xff\x00\x00")
    assert close_args(not_utf8) == (501, "FRAME_ERROR - cannot decode <<0,0,1,255,0,0>>", 60, 40)
    # a long argument list stays short on the wire, cut as RabbitMQ cuts it
    big = frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\xff" + b"\x01" * 100_000)
    code, text, _, _ = close_args(big)
    assert code == 501 and len(text.encode()) == 255
    assert text == ("FRAME_ERROR - cannot decode <<0,0,255," + "1," * 200)[:252] + "..."


def test_heartbeat() -> None:
    assert decode_all(HEARTBEAT + HEARTBEAT) == [Heartbeat(), Heartbeat()]
    raises_code(codec.UNEXPECTED_FRAME, frame(8, 1, b""))
    raises_code(codec.FRAME_ERROR, frame(8, 0, b"x"))
    assert close_args(frame(8, 1, b"")) == (
        505,
        "UNEXPECTED_FRAME - type 8, all octets = <<>>",
        0,
        0,
    )


def test_content_too_large_skips_body_then_parses_on() -> None:
    big = b"b" * 300
    stream = (
        publish(1)
        + content_header(1, len(big), TEXT_PROPS)
        + body(1, big[:100])
        + ack(2, 4, False)
        + body(1, big[100:])
        + publish(1, "", "next")
        + content_header(1, 3)
        + body(1, b"ok!")
    )
    events = decode_all(stream, message_bytes_max=256)
    assert events == [
        ContentTooLarge(1, 60, 40, 300),
        Ack(2, 4, False),
        Publish(1, "", "next", False, False, {}, b"ok!"),
    ]


def test_error_carries_the_good_prefix_and_sticks() -> None:
    dec = decoder()
    dec.feed(ack(1, 1, False) + HEARTBEAT + body(1, b"x") + ack(1, 2, False))
    with pytest.raises(AMQPError) as info:
        dec.events()
    assert info.value.events == [Ack(1, 1, False), Heartbeat()]
    with pytest.raises(AMQPError) as again:
        dec.events()
    assert again.value.code == codec.UNEXPECTED_FRAME and again.value.events == []


def test_reset_channel_forgets_partial_content() -> None:
    dec = decoder()
    dec.feed(publish(1) + content_header(1, 10))
    assert dec.events() == [] and dec.content_in_progress(1)
    dec.reset_channel(1)
    dec.feed(ack(1, 1, False))
    assert dec.events() == [Ack(1, 1, False)]


# ---------------------------------------------------------------------------------------------
# Protocol header and garbage


def test_protocol_header() -> None:
    dec = Decoder()
    dec.feed(b"AM")
    assert not dec.header_received()
    dec.feed(b"QP\x00\x00\x09\x01" + HEARTBEAT)
    assert dec.header_received()
    assert dec.header_received()
    assert dec.events() == [Heartbeat()]


def test_bad_protocol_header_detected_early() -> None:
    dec = Decoder()
    dec.feed(b"G")
    with pytest.raises(BadProtocolHeader):
        dec.header_received()
    dec = Decoder()
    dec.feed(b"AMQP\x00\x00\x08\x00")
    with pytest.raises(BadProtocolHeader):
        dec.header_received()


@given(st.binary(max_size=16))
def test_random_headers(data: bytes) -> None:
    dec = Decoder()
    dec.feed(data)
    try:
        ok = dec.header_received()
    except BadProtocolHeader:
        assert not PROTOCOL_HEADER.startswith(data[:8])
    else:
        assert ok == (data[:8] == PROTOCOL_HEADER)


def drain(dec: Decoder, data: bytes, step: int) -> None:
    try:
        for i in range(0, len(data), step):
            dec.feed(data[i : i + step])
            dec.events()
    except AMQPError:
        pass


@given(st.binary(max_size=300), st.integers(1, 64))
@settings(max_examples=300)
def test_garbage_after_header_raises_only_amqp_errors(data: bytes, step: int) -> None:
    drain(decoder(frame_max=4096), data, step)


frame_types = st.sampled_from([1, 1, 1, 2, 3, 8])
garbage_frames = st.builds(
    lambda t, ch, payload: frame(t, ch, payload),
    frame_types,
    st.integers(0, 3),
    st.binary(max_size=40)
    | st.builds(
        lambda h, tail: h + tail,
        st.sampled_from(
            [
                b"\x00\x3c\x00\x28",
                b"\x00\x3c\x00\x50",
                b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05",
                b"\x00\x0a\x00\x0b",
                b"\x00\x32\x00\x0a",
            ]
        ),
        st.binary(max_size=40),
    ),
)


@given(st.lists(garbage_frames, max_size=12), st.integers(1, 50))
@settings(max_examples=300)
def test_structured_garbage_raises_only_amqp_errors(frames: list[bytes], step: int) -> None:
    drain(decoder(), b"".join(frames), step)


@given(tables)
def test_encoded_table_bytes_mutated_never_crash(table: dict[str, Any]) -> None:
    raw = bytearray(b"\x20\x00" + codec.encode_table(table))
    for i in range(len(raw)):
        mutated = bytes(raw[:i]) + bytes([raw[i] ^ 0x5A]) + bytes(raw[i + 1 :])
        try:
            codec.decode_properties(mutated)
        except ValueError:
            pass
