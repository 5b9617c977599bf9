"""STOMP sessions with stomp.py: CONNECT for each protocol version, RECEIPT, DISCONNECT, ERROR
frames and heart-beats. Runs against a polymq process, or against RabbitMQ's STOMP plugin when
``POLYMQ_TEST_STOMP_URL`` names it; the behaviour asserted is RabbitMQ's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.interop.stomp_helpers import VERSIONS, Client, bodies, unique_name

NewClient = Callable[..., Client]


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_each_version_and_round_trip(stomp_client: NewClient, version: str) -> None:
    """Connection10/11/12 with guest/guest and host ``/``: CONNECTED names the version, the
    server and a session; 1.1 and 1.2 add heart-beat. Then a SEND reaches a SUBSCRIBE."""
    client = stomp_client(version)
    connected = client.connect()
    headers = connected.headers
    assert headers.get("session"), headers
    assert headers.get("server"), headers
    if version == "1.0":
        assert headers.get("version", "1.0") == "1.0", headers
    else:
        assert headers["version"] == version, headers
        assert headers["heart-beat"] == "0,0", headers

    queue = f"/queue/{unique_name('connect')}"
    client.subscribe(queue)
    client.send(queue, b"hello " + version.encode())
    (msg,) = client.expect()
    assert msg.body == b"hello " + version.encode()
    assert msg.headers["destination"] == queue
    assert msg.headers.get("message-id")
    if version != "1.0":
        assert msg.headers["subscription"]


def test_wrong_passcode_is_refused_with_error(stomp_client: NewClient) -> None:
    """Bad credentials: ERROR ``message:Bad CONNECT`` (RabbitMQ's text), never CONNECTED."""
    client = stomp_client()
    client.conn.connect("guest", "wrong", wait=False)
    error = client.expect_error()
    assert error.headers["message"] == "Bad CONNECT", error.headers
    assert client.rec.connected is None


def test_receipts_for_every_frame_with_a_receipt_header(stomp_client: NewClient) -> None:
    """Every client frame carrying ``receipt`` is answered by RECEIPT with that receipt-id
    (SUBSCRIBE, SEND, UNSUBSCRIBE, BEGIN, COMMIT here; ACK and NACK in test_stomp_ack.py)."""
    client = stomp_client()
    client.connect()
    queue = f"/queue/{unique_name('receipt')}"
    sub = client.subscribe(queue, ack="client-individual")  # each waits for its RECEIPT
    client.send(queue, b"x")
    (msg,) = client.expect()
    client.ack(msg)
    tx = f"tx-{unique_name('r')}"
    client.conn.begin(tx, headers={"receipt": "begin-receipt"})
    client.wait_receipt("begin-receipt")
    client.commit(tx)
    client.unsubscribe(sub)


def test_disconnect_with_receipt_then_close(stomp_client: NewClient) -> None:
    """DISCONNECT with a receipt: the RECEIPT comes, then the server closes. Messages sent
    before the DISCONNECT, delivered to the closing session but not acked, are all there for
    the next session, marked redelivered."""
    client = stomp_client()
    client.connect()
    queue = f"/queue/{unique_name('disconnect')}"
    client.subscribe(queue, ack="client-individual")
    for i in range(3):
        client.send(queue, f"m{i}".encode(), receipt=i == 2)
    client.expect(3)
    client.conn.disconnect(receipt="bye")  # stomp.py waits for the RECEIPT
    assert "bye" in client.rec.receipts
    client.wait_disconnected()

    again = stomp_client()
    again.connect()
    again.subscribe(queue)
    got = again.expect(3)
    assert bodies(got) == [b"m0", b"m1", b"m2"]
    assert [m.headers["redelivered"] for m in got] == ["true"] * 3


def test_subscribe_to_missing_amq_queue_is_an_error_then_close(stomp_client: NewClient) -> None:
    """``/amq/queue/<name>`` names an existing queue and never declares one: subscribing to a
    missing one gets ERROR ``message:not_found`` and the connection closes."""
    client = stomp_client()
    client.connect()
    name = unique_name("missing")
    client.subscribe(f"/amq/queue/{name}", receipt=False)
    error = client.expect_error()
    assert error.headers["message"] == "not_found", error.headers
    assert name.encode() in bytes(error.body)
    client.wait_disconnected()


def test_unknown_destination_type_is_an_error(stomp_client: NewClient) -> None:
    """A destination outside the known prefixes: ERROR ``message:Unknown destination``."""
    client = stomp_client()
    client.connect()
    client.send("/nowhere/x", b"x", receipt=False)
    error = client.expect_error()
    assert error.headers["message"] == "Unknown destination", error.headers


def test_server_sends_heart_beats_when_asked(stomp_client: NewClient) -> None:
    """The client asks for beats every 1000 ms (``heart-beat:0,1000``): CONNECTED offers to
    send (a non-zero first number), and beats (EOLs) arrive at about that rate."""
    client = stomp_client(heartbeats=(0, 1000))
    connected = client.connect()
    server_send_ms = int(connected.headers["heart-beat"].split(",")[0])
    assert 0 < server_send_ms <= 1000, connected.headers
    start = time.monotonic()
    client.rec.wait_for(lambda: client.rec.heartbeats >= 2, "two heart-beats", timeout=5)
    assert time.monotonic() - start < 5
