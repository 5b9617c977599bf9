"""TLS on every listener: real clients over real TLS, with certificates made by trustme.

One broker verifies client certificates when sent (``tls_verify_peer = optional``) and serves
every plain listener next to the TLS ones (the plain clients must not notice TLS); another
requires them (``required``, configured from a TOML file with a short handshake timeout).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
import stomp
import trustme
import websocket
from botocore.config import Config as BotoConfig

from tests.polymq_process import ROOT, PolymqProcess, server_env, unique

TLS_PORTS = ("--amqps-port", "0", "--mqtts-port", "0", "--mqtt-wss-port", "0")
TLS_PORTS += ("--stomps-port", "0", "--stomp-wss-port", "0", "--admin-tls-port", "0")
WAIT_S = 10.0


@dataclass
class Certs:
    ca: Path  # the CA of the server's and the good client's certificates
    cert: Path
    key: Path
    client: Path  # a client certificate and key (one PEM) issued by ``ca``
    stranger: Path  # a client certificate and key issued by another CA

    def client_context(self, cert: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert))
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    with open(d / "cert.pem", "wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    client = ca.issue_cert("client@polymq.test")
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    stranger = trustme.CA().issue_cert("stranger@polymq.test")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(d / "stranger.pem"))
    return Certs(d / "ca.pem", d / "cert.pem", d / "key.pem", d / "client.pem", d / "stranger.pem")


def _started(broker: PolymqProcess) -> Iterator[PolymqProcess]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_broker(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    args = (*TLS_PORTS, "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key))
    args += ("--tls-ca-file", str(certs.ca), "--tls-verify-peer", "optional")
    broker = PolymqProcess(
        tmp_path_factory.mktemp("tls") / "data",
        extra_args=args,
        listeners=("amqp", "mqtt", "stomp", "http"),
    )
    yield from _started(broker)


@pytest.fixture(scope="module")
def strict_broker(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolymqProcess]:
    """Client certificates required; settings from a TOML file."""
    d = tmp_path_factory.mktemp("tls-strict")
    (d / "polymq.toml").write_text(
        "[tls]\n"
        f'tls_cert_file = "{certs.cert}"\n'
        f'tls_key_file = "{certs.key}"\n'
        f'tls_ca_file = "{certs.ca}"\n'
        'tls_verify_peer = "required"\n'
        "tls_handshake_timeout_ms = 500\n"
    )
    ports = ("--amqps-port", "0", "--mqtts-port", "off", "--mqtt-wss-port", "off")
    ports += ("--stomps-port", "off", "--stomp-wss-port", "off", "--admin-tls-port", "off")
    broker = PolymqProcess(
        d / "data", extra_args=("--config", str(d / "polymq.toml"), *ports), listeners=("amqp",)
    )
    yield from _started(broker)


def port_of(broker: PolymqProcess, listener: str) -> int:
    ports = [
        int(r["port"])
        for r in broker.lines
        if r.get("event") == "listening" and r.get("listener") == listener
    ]
    assert ports, f"no {listener} listener in {broker.lines}"
    return ports[-1]


def amqps(broker: PolymqProcess, ctx: ssl.SSLContext) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port_of(broker, "amqps"),
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        socket_timeout=WAIT_S,
        blocked_connection_timeout=WAIT_S,
        connection_attempts=1,
    )
    return pika.BlockingConnection(params)


def roundtrip(conn: pika.BlockingConnection) -> bytes:
    """Publish one message with a confirm and get it back."""
    ch = conn.channel()
    ch.confirm_delivery()
    queue = ch.queue_declare(unique("tls"), exclusive=True).method.queue
    ch.basic_publish("", queue, b"over tls")
    _, _, body = ch.basic_get(queue, auto_ack=True)
    conn.close()
    return bytes(body or b"")


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes (True) or WAIT_S passes (False)."""
    sock.settimeout(WAIT_S)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


# -- clients over TLS -----------------------------------------------------------------------------


def test_pika_over_amqps_and_plain_amqp_side_by_side(
    tls_broker: PolymqProcess, certs: Certs
) -> None:
    assert roundtrip(amqps(tls_broker, certs.client_context())) == b"over tls"
    plain = pika.BlockingConnection(pika.URLParameters(tls_broker.url))
    assert roundtrip(plain) == b"over tls"


def test_pika_with_a_client_certificate_when_optional(
    tls_broker: PolymqProcess, certs: Certs
) -> None:
    assert roundtrip(amqps(tls_broker, certs.client_context(certs.client))) == b"over tls"
    # a certificate that is sent is verified: one from an unknown CA ends the handshake
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        amqps(tls_broker, certs.client_context(certs.stranger))
    tls_broker.wait_event(
        lambda r: r.get("event") == "tls handshake failed" and "CERTIFICATE" in r.get("reason", ""),
        what="the failed handshake",
    )


def _paho_roundtrip(client: paho.Client, port: int) -> bytes:
    got: list[bytes] = []
    arrived = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        got.append(msg.payload)
        arrived.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("localhost", port)
    client.loop_start()
    try:
        topic = unique("tls").replace(".", "/")
        client.subscribe(topic, qos=1)
        assert subscribed.wait(WAIT_S)
        client.publish(topic, b"mqtt over tls", qos=1).wait_for_publish(WAIT_S)
        assert arrived.wait(WAIT_S)
        client.disconnect()
    finally:
        client.loop_stop()
    return got[0]


def test_paho_over_mqtts_and_wss(tls_broker: PolymqProcess, certs: Certs) -> None:
    tcp = paho.Client(paho.CallbackAPIVersion.VERSION2)
    tcp.tls_set_context(certs.client_context())
    assert _paho_roundtrip(tcp, port_of(tls_broker, "mqtts")) == b"mqtt over tls"
    ws = paho.Client(paho.CallbackAPIVersion.VERSION2, transport="websockets")
    ws.ws_set_options(path="/ws")
    ws.tls_set_context(certs.client_context())
    assert _paho_roundtrip(ws, port_of(tls_broker, "mqtt_wss")) == b"mqtt over tls"
    plain = paho.Client(paho.CallbackAPIVersion.VERSION2)
    assert _paho_roundtrip(plain, tls_broker.mqtt_port) == b"mqtt over tls"


class _Inbox(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.arrived = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.bodies.append(frame.body)
        self.arrived.set()


def test_stomp_py_over_tls(tls_broker: PolymqProcess, certs: Certs) -> None:
    port = port_of(tls_broker, "stomps")
    conn = stomp.Connection([("localhost", port)], timeout=WAIT_S)
    conn.set_ssl(for_hosts=[("localhost", port)], ca_certs=str(certs.ca))
    inbox = _Inbox()
    conn.set_listener("inbox", inbox)
    conn.connect("guest", "guest", wait=True)
    queue = "/queue/" + unique("stomps")
    conn.subscribe(queue, id="1", ack="auto")
    conn.send(queue, "stomp over tls", receipt="r1")
    assert inbox.arrived.wait(WAIT_S)
    assert inbox.bodies == ["stomp over tls"]
    conn.disconnect()


def test_stomp_over_wss(tls_broker: PolymqProcess, certs: Certs) -> None:
    ws = websocket.create_connection(
        f"wss://localhost:{port_of(tls_broker, 'stomp_wss')}/ws",
        sslopt={"ca_certs": str(certs.ca)},
        subprotocols=["v12.stomp"],
        timeout=WAIT_S,
    )
    try:
        ws.send("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
        assert str(ws.recv()).startswith("CONNECTED\n")
    finally:
        ws.close()


def test_boto3_over_https_and_http_on_the_aws_port(tls_broker: PolymqProcess, certs: Certs) -> None:
    urls = [
        f"https://localhost:{tls_broker.http_port}",
        f"http://localhost:{tls_broker.http_port}",
    ]
    for url in urls:
        sqs = boto3.client(
            "sqs",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            verify=str(certs.ca),
            config=BotoConfig(retries={"total_max_attempts": 1}),
        )
        queue_url = sqs.create_queue(QueueName=unique("https").replace(".", "-"))["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=url)
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in messages] == [url]


def test_admin_over_https(tls_broker: PolymqProcess, certs: Certs) -> None:
    url = f"https://localhost:{port_of(tls_broker, 'admin_tls')}/api/health"
    with urllib.request.urlopen(url, context=certs.client_context(), timeout=WAIT_S) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "ok"


# -- refusals ------------------------------------------------------------------------------------


def test_plain_text_client_on_a_tls_port_is_closed_and_others_go_on(
    tls_broker: PolymqProcess, certs: Certs
) -> None:
    mqtt_connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
    for listener, first_bytes in (("amqps", b"AMQP\x00\x00\x09\x01"), ("mqtts", mqtt_connect)):
        with socket.create_connection(("127.0.0.1", port_of(tls_broker, listener))) as sock:
            sock.sendall(first_bytes)
            assert closed_by_server(sock)
        tls_broker.wait_event(
            lambda r, name=listener[:-1]: (
                r.get("event") == "tls handshake failed" and r.get("listener") == name
            ),
            what=f"the failed handshake's log line ({listener})",
        )
    # the listener still serves TLS clients
    assert roundtrip(amqps(tls_broker, certs.client_context())) == b"over tls"


def test_client_certificate_required_and_missing_is_refused(
    strict_broker: PolymqProcess, certs: Certs
) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        amqps(strict_broker, certs.client_context())
    strict_broker.wait_event(
        lambda r: r.get("event") == "tls handshake failed" and "CERTIFICATE" in r.get("reason", ""),
        what="the refused handshake",
    )
    assert roundtrip(amqps(strict_broker, certs.client_context(certs.client))) == b"over tls"


def test_a_silent_client_is_closed_after_the_handshake_timeout(
    strict_broker: PolymqProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", port_of(strict_broker, "amqps"))) as sock:
        assert closed_by_server(sock)
    record = strict_broker.wait_event(
        lambda r: r.get("event") == "tls handshake timed out", what="the handshake timeout"
    )
    assert record["timeout_ms"] == 500


# -- configuration ------------------------------------------------------------------------------


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    off = ["--amqp-port", "off", "--mqtt-port", "off", "--stomp-port", "off", "--http-port", "off"]
    off += ["--admin-port", "off", "--host", "127.0.0.1"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            *off,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=server_env(),
    )


def _error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("polymq: error")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_certificate_without_key_is_a_one_line_error(tmp_path: Path, certs: Certs) -> None:
    out = _serve(tmp_path, "--tls-cert-file", str(certs.cert))
    assert out.returncode == 2
    assert "tls_key_file is not" in _error_line(out)
    out = _serve(
        tmp_path,
        *("--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key)),
        *("--tls-verify-peer", "required"),
    )
    assert out.returncode == 2
    assert "tls_ca_file" in _error_line(out)
    assert not (tmp_path / "data").exists()


def test_unreadable_certificate_stops_the_start(tmp_path: Path, certs: Certs) -> None:
    missing = tmp_path / "missing.pem"
    out = _serve(tmp_path, "--tls-cert-file", str(missing), "--tls-key-file", str(certs.key))
    assert out.returncode == 1
    assert str(missing) in _error_line(out)
    # a key that does not belong to the certificate
    out = _serve(tmp_path, "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.client))
    assert out.returncode == 1
    assert "cannot load TLS certificate" in _error_line(out)
    assert not (tmp_path / "data").exists()


def test_tls_listeners_are_off_without_a_certificate(tmp_path: Path) -> None:
    broker = PolymqProcess(tmp_path / "data", extra_args=TLS_PORTS)
    broker.start()
    try:
        listening = {r.get("listener") for r in broker.lines if r.get("event") == "listening"}
        assert listening == {"amqp", "admin"}
    finally:
        broker.stop()
