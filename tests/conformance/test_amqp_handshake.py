"""AMQP 0-9-1 connection negotiation, by hand over a raw socket.

Section numbers are those of amqp0-9-1.pdf: 4.2.2 protocol header, 2.2.4 connection class
(start / start-ok / tune / tune-ok / open), 1.4.2 connection methods, and the reply codes of
the constants table. Texts are RabbitMQ's (clients and operators match on them).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance.amqp_wire import (
    CHANNEL_OPEN_OK,
    CONNECTION_CLOSE,
    CONNECTION_OPEN_OK,
    CONNECTION_TUNE,
    PROTOCOL_HEADER,
    Closed,
    RawClient,
    channel_open,
    connection_open,
    start_ok,
    tune_ok,
)

Raw = Callable[..., RawClient]

BAD_HEADERS = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-client-hello"),
    pytest.param(b"AMQP\x00\x00\x09\x02", id="amqp-0-9-2"),
    pytest.param(b"AMQP\x00\x01\x00\x00", id="amqp-1-0"),
    pytest.param(b"AMQP\x03\x01\x00\x00", id="amqp-1-0-sasl"),
    pytest.param(b"AMQX\x00\x00\x09\x01", id="bad-magic"),
    pytest.param(b"\x00" * 8, id="zeros"),
]


@pytest.mark.parametrize("first_bytes", BAD_HEADERS)
def test_4_2_2_bad_protocol_header_gets_our_header_and_close(raw: Raw, first_bytes: bytes) -> None:
    """A server that does not accept the header answers with the header it supports, then
    closes the socket (4.2.2)."""
    client = raw()
    client.send(first_bytes)
    assert client.wait_eof(timeout=5) == PROTOCOL_HEADER


def test_4_2_2_header_split_across_packets(raw: Raw) -> None:
    client = raw()
    client.send(PROTOCOL_HEADER[:3])
    client.send(PROTOCOL_HEADER[3:])
    assert client.read_frame().ids == (10, 10)


def test_4_2_2_close_after_half_a_header_and_half_a_frame(raw: Raw) -> None:
    raw().send(PROTOCOL_HEADER[:5])
    client = raw()
    client.login()
    client.send(tune_ok(10, 131072, 0)[:9])
    # both sockets are dropped at teardown; the witness checks the broker is fine


def test_2_2_4_connection_start_advertises_0_9_plain_amqplain_and_capabilities(raw: Raw) -> None:
    start = raw().start()
    assert start.version == (0, 9)
    assert {"PLAIN", "AMQPLAIN"} <= set(start.mechanisms)
    assert "en_US" in start.locales
    props = start.server_properties
    assert isinstance(props.get("product"), str) and isinstance(props.get("version"), str)
    capabilities = props["capabilities"]
    for name in (
        "publisher_confirms",
        "consumer_cancel_notify",
        "basic.nack",
        "connection.blocked",
        "exchange_exchange_bindings",
        "per_consumer_qos",
        "authentication_failure_close",
    ):
        assert capabilities.get(name) is True, name


@pytest.mark.parametrize("mechanism", ["PLAIN", "AMQPLAIN"])
def test_2_2_4_full_handshake(raw: Raw, mechanism: str) -> None:
    client = raw()
    client.start()
    client.send(start_ok("guest", "guest", mechanism))
    r = client.expect(CONNECTION_TUNE).args()
    channel_max, frame_max, heartbeat = r.short(), r.long(), r.short()
    assert frame_max == 131072
    assert 0 < channel_max <= 65535
    assert heartbeat == 60
    client.send(tune_ok(channel_max, frame_max, 0))
    client.send(connection_open("/"))
    client.expect(CONNECTION_OPEN_OK)
    client.send(channel_open(1))
    client.expect(CHANNEL_OPEN_OK)


@pytest.mark.parametrize(
    ("user", "password", "mechanism"),
    [("guest", "wrong", "PLAIN"), ("nobody", "guest", "PLAIN"), ("guest", "wrong", "AMQPLAIN")],
)
def test_1_4_2_bad_credentials_are_403_access_refused(
    raw: Raw, user: str, password: str, mechanism: str
) -> None:
    """With the client capability authentication_failure_close the broker says why (403);
    the text names the mechanism and nothing about which of user or password was wrong."""
    client = raw()
    client.start()
    client.send(start_ok(user, password, mechanism))
    code, text, class_id, method_id = client.expect_connection_close()
    assert code == 403
    assert text == (
        f"ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}."
        " For details see the broker logfile."
    )
    assert (class_id, method_id) == (0, 0)


def test_1_4_2_bad_credentials_without_capability_just_close(raw: Raw) -> None:
    client = raw()
    client.start()
    client.send(start_ok("guest", "wrong", auth_failure_close=False))
    assert client.wait_eof() == b""


def test_1_4_2_unknown_mechanism_closes_the_socket(raw: Raw) -> None:
    client = raw()
    client.start()
    client.send(start_ok("guest", "guest", "NO-SUCH-MECHANISM"))
    with pytest.raises(Closed):
        client.read_frame()


def test_1_4_2_unknown_vhost_is_530_not_allowed(raw: Raw) -> None:
    client = raw()
    tune = client.login()
    client.send(tune_ok(tune.channel_max, tune.frame_max, 0))
    client.send(connection_open("/no-such-vhost"))
    code, text, class_id, method_id = client.expect_connection_close()
    assert code == 530
    assert text == "NOT_ALLOWED - vhost /no-such-vhost not found"
    assert (class_id, method_id) == (10, 40)


@pytest.mark.parametrize(
    ("channel_max", "frame_max"),
    [
        pytest.param(0, 131072, id="channel-max-0-means-unlimited"),
        pytest.param(65535, 131072, id="channel-max-above-server"),
        pytest.param(None, 131073, id="frame-max-above-server"),
        pytest.param(None, 0, id="frame-max-0-means-unlimited"),
        pytest.param(None, 4095, id="frame-max-below-4096"),
    ],
)
def test_2_2_4_tune_ok_above_the_servers_limits_is_refused(
    raw: Raw, channel_max: int | None, frame_max: int
) -> None:
    """The client may lower the server's limits, never raise them (or ask for 'no limit' when
    the server has one); frame-max below 4096 (the spec minimum) is refused too. The broker
    closes the socket without a connection.close: the connection is not open yet."""
    client = raw()
    tune = client.login()
    client.send(tune_ok(tune.channel_max if channel_max is None else channel_max, frame_max, 0))
    client.send(connection_open("/"))
    try:
        got = client.read_frame(timeout=10)  # RabbitMQ closes after about 3 s
    except Closed:
        return
    # a connection.close saying why is acceptable too, but never connection.open-ok
    assert got.ids == CONNECTION_CLOSE, got
    assert got.close_reason()[0] in (501, 530), got.close_reason()


def test_2_2_4_client_may_lower_frame_max_and_channel_max(raw: Raw) -> None:
    client = raw()
    agreed = client.open(frame_max=4096, channel_max=3)
    assert agreed.frame_max == 4096
    for channel in (1, 2, 3):
        client.send(channel_open(channel))
        client.expect(CHANNEL_OPEN_OK)
