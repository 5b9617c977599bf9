"""The per-protocol connection limits of a real node, set from a TOML file: past
``<protocol>_connections_max`` a new connection is refused (AMQP, MQTT, STOMP: closed and
logged; the AWS endpoint: 503 ``ServiceUnavailable``) while the open ones keep working."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest

from tests.interop.stomp_helpers import Client as StompClient
from tests.polymq_process import PolymqProcess

WAIT_S = 10.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    d = tmp_path_factory.mktemp("limits")
    (d / "polymq.toml").write_text(
        "[limits]\n"
        "amqp_connections_max = 1\n"
        "mqtt_connections_max = 1\n"
        "stomp_connections_max = 1\n"
        "http_connections_max = 1\n"
    )
    broker = PolymqProcess(
        d / "data",
        extra_args=("--config", str(d / "polymq.toml")),
        listeners=("amqp", "mqtt", "stomp", "http"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _refused(broker: PolymqProcess, listener: str) -> None:
    broker.wait_event(
        lambda r: (
            r.get("event") == "connection refused: limit reached"
            and r.get("listener") == listener
            and r.get("connections_max") == 1
        ),
        what=f"the {listener} refusal",
    )


def _closed_by_server(port: int, first_bytes: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        try:
            sock.sendall(first_bytes)
            while sock.recv(4096):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return True


def test_amqp_connections_max(limited: PolymqProcess) -> None:
    first = pika.BlockingConnection(pika.URLParameters(limited.url))
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            params = pika.URLParameters(limited.url)
            params.connection_attempts = 1
            pika.BlockingConnection(params)
        _refused(limited, "amqp")
        assert first.channel().queue_declare("", exclusive=True).method.queue
    finally:
        first.close()


def test_mqtt_connections_max(limited: PolymqProcess) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(limited.host, limited.mqtt_port)
    client.loop_start()
    try:
        assert connected.wait(WAIT_S)
        connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
        assert _closed_by_server(limited.mqtt_port, connect)
        _refused(limited, "mqtt")
    finally:
        client.disconnect()
        client.loop_stop()


def test_stomp_connections_max(limited: PolymqProcess) -> None:
    client = StompClient(limited)
    client.connect()
    try:
        frame = b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00"
        assert _closed_by_server(limited.stomp_port, frame)
        _refused(limited, "stomp")
    finally:
        client.disconnect()


def test_http_connections_max(limited: PolymqProcess) -> None:
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=WAIT_S) as held:
        held.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert held.recv(4096).startswith(b"HTTP/1.1 200")  # the one allowed, kept alive
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(limited.http_url + "/", timeout=WAIT_S)
        assert refused.value.code == 503
        assert b"ServiceUnavailable" in refused.value.read()
