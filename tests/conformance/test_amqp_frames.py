"""AMQP 0-9-1 framing and channel rules under hostile input, over a raw socket.

Sections of amqp0-9-1.pdf: 4.2.3 general frame format (size, frame-end), 4.2.4 method payloads,
4.2.6 content framing (method, header, bodies), 4.3 channel multiplexing and 2.2.5 the channel
class, and the reply codes of the constants table (501 FRAME_ERROR, 504 CHANNEL_ERROR,
505 UNEXPECTED_FRAME, 530 NOT_ALLOWED, 540 NOT_IMPLEMENTED). Every error here is a connection
error: the broker sends connection.close and, after close-ok, closes the socket. The witness
fixture then checks the broker is unharmed.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conformance.amqp_wire import (
    CHANNEL_CLOSE,
    CHANNEL_OPEN_OK,
    CONNECTION_CLOSE,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    QUEUE_DECLARE_OK,
    Closed,
    RawClient,
    basic_get,
    basic_publish,
    channel_open,
    connection_close_ok,
    content_body,
    content_header,
    frame,
    method,
    queue_declare,
)
from tests.polymq_process import AmqpBroker, PolymqProcess, unique

Raw = Callable[..., RawClient]


def open_with_channel(raw: Raw, **tune: int) -> RawClient:
    client = raw()
    client.open(**tune)
    client.send(channel_open(1))
    client.expect(CHANNEL_OPEN_OK)
    return client


def test_4_2_3_frame_larger_than_frame_max_is_501(raw: Raw) -> None:
    client = open_with_channel(raw)
    payload = struct.pack(">HH", 50, 10) + b"x" * (131072 + 1000)
    client.send(frame(FRAME_METHOD, 1, payload))
    code, text, _, _ = client.expect_connection_close()
    assert code == 501
    assert text.startswith("FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,")


def test_4_2_3_frame_larger_than_lowered_frame_max_is_501(raw: Raw) -> None:
    client = open_with_channel(raw, frame_max=4096)
    client.send(frame(FRAME_METHOD, 1, struct.pack(">HH", 50, 10) + b"x" * 5000))
    code, text, _, _ = client.expect_connection_close()
    assert code == 501 and "frame_too_large" in text


def broker_rss_kib(broker: AmqpBroker) -> int | None:
    if not isinstance(broker, PolymqProcess) or broker.proc is None:
        return None
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def test_4_2_3_100_mb_length_prefix_is_501_at_once(raw: Raw, amqp_broker: AmqpBroker) -> None:
    """The size field alone condemns the frame: the broker answers without waiting for (or
    allocating) 100 MB."""
    before = broker_rss_kib(amqp_broker)
    client = open_with_channel(raw)
    started = time.monotonic()
    client.send(struct.pack(">BHI", FRAME_BODY, 1, 100 * 1024 * 1024) + b"abc")
    code, text, _, _ = client.expect(CONNECTION_CLOSE, timeout=5).close_reason()
    assert time.monotonic() - started < 2
    client.send(connection_close_ok())
    client.wait_eof()
    assert code == 501
    assert "frame_too_large" in text and "104857600" in text
    after = broker_rss_kib(amqp_broker)
    if before is not None and after is not None:
        assert after - before < 50 * 1024, f"RSS grew from {before} KiB to {after} KiB"


def test_4_2_3_100_mb_length_prefix_before_open(raw: Raw) -> None:
    client = raw()
    client.login()
    client.send(struct.pack(">BHI", FRAME_METHOD, 0, 100 * 1024 * 1024) + b"\x00\x0a")
    with pytest.raises(Closed):
        while True:
            got = client.read_frame(timeout=10)
            assert got.kind == FRAME_METHOD and got.ids == (10, 50), got
            assert got.close_reason()[0] == 501


@pytest.mark.parametrize("end", [0x00, 0xCD, 0xFF])
def test_4_2_3_bad_frame_end_is_501(raw: Raw, end: int) -> None:
    client = raw()
    client.open()
    client.send(frame(FRAME_METHOD, 1, struct.pack(">HH", 20, 10) + b"\x00", end=end))
    code, text, class_id, method_id = client.expect_connection_close()
    assert code == 501
    assert text == (
        f"FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {{invalid_frame_end_marker,{end}}}"
    )
    assert (class_id, method_id) == (0, 0)


@pytest.mark.parametrize(
    ("kind", "payload", "text"),
    [
        (7, b"abc", 'FRAME_ERROR - type 7, all octets = <<"abc">>: unknown_frame'),
        (FRAME_METHOD, b"", "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame"),
    ],
    ids=["unknown-frame-type", "empty-method-frame"],
)
def test_4_2_3_unknown_frame_type_and_empty_method_are_501(
    raw: Raw, kind: int, payload: bytes, text: str
) -> None:
    client = open_with_channel(raw)
    client.send(frame(kind, 1, payload))
    assert client.expect_connection_close()[:2] == (501, text)


def test_4_2_4_undecodable_method_arguments_are_501(raw: Raw) -> None:
    client = open_with_channel(raw)
    client.send(method(1, (50, 10), b"\x00\x00\xffshort"))  # shortstr longer than the frame
    code, text, class_id, method_id = client.expect_connection_close()
    assert code == 501 and text.startswith("FRAME_ERROR - cannot decode")
    assert (class_id, method_id) == (50, 10)


@pytest.mark.parametrize(
    ("channel", "ids"),
    [(1, (60, 999)), (1, (99, 1)), (0, (10, 999))],
    ids=["unknown-basic-method", "unknown-class", "unknown-connection-method"],
)
def test_4_2_4_unknown_class_or_method(
    raw: Raw, amqp_broker: AmqpBroker, channel: int, ids: tuple[int, int]
) -> None:
    """polymq answers connection.close 540 NOT_IMPLEMENTED. RabbitMQ 3.10's reader crashes on
    an unknown method id and drops the socket without a close; both end the connection."""
    client = open_with_channel(raw)
    client.send(method(channel, ids, b"\x00\x00\x00\x00"))
    try:
        got = client.read_frame()
    except Closed:
        assert not amqp_broker.is_polymq, "polymq must say why: connection.close 540"
        return
    assert got.ids == (10, 50), got
    code, text, class_id, method_id = got.close_reason()
    assert code == 540 and text.startswith("NOT_IMPLEMENTED")
    assert (class_id, method_id) == ids


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(lambda: content_body(1, b"abc"), id="body-without-header"),
        pytest.param(lambda: content_header(1, 3), id="header-without-method"),
        pytest.param(
            lambda: (
                basic_publish(1, "", "q")
                + content_header(1, 3)
                # the body arrives on another (open) channel than its method and header
                + content_body(2, b"abc")
            ),
            id="body-on-another-channel",
        ),
    ],
)
def test_4_2_6_content_frame_without_its_method_is_505(
    raw: Raw, frames: Callable[[], bytes]
) -> None:
    client = open_with_channel(raw)
    client.send(channel_open(2))
    client.expect(CHANNEL_OPEN_OK)
    client.send(frames())
    code, text, _, _ = client.expect_connection_close()
    assert code == 505
    assert text == "UNEXPECTED_FRAME - expected method frame, got non method frame instead"


def test_4_2_6_method_where_a_body_is_due_is_505(raw: Raw) -> None:
    client = open_with_channel(raw)
    client.send(basic_publish(1, "", "q") + content_header(1, 3) + basic_get(1, "q"))
    code, text, class_id, method_id = client.expect_connection_close()
    assert code == 505
    assert text == ("UNEXPECTED_FRAME - expected content body, got non content body frame instead")
    assert (class_id, method_id) == (60, 40)


def test_4_2_6_header_of_another_class_is_505(raw: Raw) -> None:
    client = open_with_channel(raw)
    header = frame(FRAME_HEADER, 1, struct.pack(">HHQH", 50, 0, 3, 0))
    client.send(basic_publish(1, "", "q") + header)
    code, text, _, _ = client.expect_connection_close()
    assert code == 505
    assert text == (
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead"
    )


def test_4_2_6_well_formed_content_then_a_channel_error(raw: Raw) -> None:
    """Control case: a proper method/header/body sequence is accepted and the channel goes on
    (here to a 404 that closes only the channel)."""
    client = open_with_channel(raw)
    q = unique("raw")
    client.send(queue_declare(1, q))
    client.expect(QUEUE_DECLARE_OK)
    client.send(basic_publish(1, "", q) + content_header(1, 5) + content_body(1, b"hello"))
    missing = unique("missing")
    client.send(queue_declare(1, missing, passive=True))
    got = client.expect(CHANNEL_CLOSE)
    assert got.channel == 1
    assert got.close_reason() == (404, f"NOT_FOUND - no queue '{missing}' in vhost '/'", 50, 10)
    client.send(method(1, (20, 41)))  # channel.close-ok
    client.send(channel_open(1))  # the number is free again
    client.expect(CHANNEL_OPEN_OK)
    client.send(queue_declare(1, q, passive=True))
    r = client.expect(QUEUE_DECLARE_OK).args()
    assert r.shortstr() == q and r.long() == 1  # message-count


def test_4_2_7_heartbeat_on_a_nonzero_channel_is_505(raw: Raw) -> None:
    client = open_with_channel(raw)
    client.send(frame(FRAME_HEARTBEAT, 1, b""))
    assert client.expect_connection_close()[:2] == (
        505,
        "UNEXPECTED_FRAME - type 8, all octets = <<>>",
    )


def test_4_3_method_on_a_channel_not_open_is_504(raw: Raw) -> None:
    client = raw()
    client.open()
    client.send(queue_declare(5, unique("q")))
    code, text, class_id, method_id = client.expect_connection_close()
    assert (code, text) == (504, "CHANNEL_ERROR - expected 'channel.open'")
    assert (class_id, method_id) == (50, 10)


def test_4_3_second_channel_open_is_504(raw: Raw) -> None:
    client = open_with_channel(raw)
    client.send(channel_open(1))
    code, text, class_id, method_id = client.expect_connection_close()
    assert (code, text) == (504, "CHANNEL_ERROR - second 'channel.open' seen")
    assert (class_id, method_id) == (20, 10)


def test_4_3_channel_class_method_on_channel_zero_is_504(raw: Raw) -> None:
    client = raw()
    client.open()
    client.send(queue_declare(0, unique("q")))
    code, text, class_id, method_id = client.expect_connection_close()
    assert (code, text) == (504, "CHANNEL_ERROR - unexpected method in connection state running")
    assert (class_id, method_id) == (50, 10)


@pytest.mark.parametrize("channel_max", [None, 10])
def test_4_3_ten_thousand_channel_opens_stop_at_channel_max_with_530(
    raw: Raw, channel_max: int | None
) -> None:
    """10,000 channel.open frames in one write: channels 1..channel-max open, the next one is
    530 NOT_ALLOWED for the connection (RabbitMQ's default channel-max is 2047)."""
    client = raw(timeout=30)
    agreed = client.open(channel_max=channel_max)
    assert 0 < agreed.channel_max < 10_000
    client.send(b"".join(channel_open(n) for n in range(1, 10_001)))
    opened: set[int] = set()
    while True:
        got = client.read_frame()
        if got.ids != CHANNEL_OPEN_OK:
            break
        assert got.channel not in opened
        opened.add(got.channel)
    # open-oks of different channels may come in any order
    assert opened == set(range(1, agreed.channel_max + 1))
    assert got.channel == 0 and got.ids == (10, 50)
    code, text, class_id, method_id = got.close_reason()
    assert code == 530
    assert text == (
        f"NOT_ALLOWED - number of channels opened ({agreed.channel_max}) has reached the"
        f" negotiated channel_max ({agreed.channel_max})"
    )
    assert (class_id, method_id) == (0, 0)
