"""MQTT over WebSocket against a real polymq process (``--mqtt-ws-port 0``): paho-mqtt with
``transport="websockets"`` (3.1.1 and 5) for the client view, and a raw wsproto client for the
transport rules: subprotocol negotiation, packets split over and packed into messages, text
frames (1003), ping/pong and the close handshake both ways.

These always run against polymq's own process: the reference broker URLs name TCP listeners.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.interop.mqtt_helpers import V5, V311, VERSION_IDS, VERSIONS, unique_id, unique_topic
from tests.interop.mqtt_helpers import Client as MqttClient
from tests.polymq_process import PolymqProcess

WAIT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    """What ``mqtt_helpers.Client`` needs of a broker: host and port."""

    host: str
    mqtt_port: int


class WsClient(MqttClient):
    """The suite's paho client, over WebSocket."""

    def __init__(self, endpoint: Endpoint, *args: Any, path: str = "/mqtt", **kwargs: Any):
        super().__init__(endpoint, *args, **kwargs)  # type: ignore[arg-type]
        self.paho.transport = "websockets"
        self.paho.ws_set_options(path=path)

    def kill(self) -> None:
        """Drop the TCP connection under the WebSocket without a close or DISCONNECT."""
        self._user_closing = True
        wrapper = self.paho.socket()
        if wrapper is not None:
            # paho hands out its WebSocket wrapper: shut the socket down through a duplicate
            with socket.fromfd(wrapper.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                try:
                    dup.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._gone.wait(WAIT_S)
        self.stop()


@dataclass
class Node:
    proc: PolymqProcess
    tcp: Endpoint
    ws: Endpoint


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    proc = PolymqProcess(
        tmp_path_factory.mktemp("polymq-mqtt-ws") / "data",
        extra_args=("--mqtt-ws-port", "0"),
        listeners=("mqtt",),
    )
    proc.start()
    try:
        # every listener logs its port before "started", which start() waited for
        ws = [r for r in proc.lines if r.get("event") == "listening"]
        ws = [r for r in ws if r.get("listener") == "mqtt_ws"]
        assert ws, f"no mqtt_ws listening line: {proc.lines}"
        yield Node(
            proc,
            Endpoint(proc.host, proc.mqtt_port),
            Endpoint(proc.host, int(ws[-1]["port"])),
        )
    finally:
        proc.stop()


NewClient = Callable[..., MqttClient]


@pytest.fixture
def clients(node: Node) -> Iterator[tuple[NewClient, NewClient]]:
    """(tcp, ws): factories of paho clients that are disconnected at teardown."""
    opened: list[MqttClient] = []

    def tcp(client_id: str = "", version: int = V5, **kwargs: Any) -> MqttClient:
        client = MqttClient(node.tcp, client_id, version, **kwargs)  # type: ignore[arg-type]
        opened.append(client)
        return client

    def ws(client_id: str = "", version: int = V5, **kwargs: Any) -> MqttClient:
        client = WsClient(node.ws, client_id, version, **kwargs)
        opened.append(client)
        return client

    yield tcp, ws
    for client in opened:
        try:
            client.disconnect()
        except Exception:
            client.stop()


# --- paho over WebSocket ----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("path", ["/mqtt", "/ws"])
def test_paho_websocket_publish_subscribe_qos_0_1_2(
    clients: tuple[NewClient, NewClient], version: int, path: str
) -> None:
    _, ws = clients
    sub = ws(unique_id("ws-sub"), version, path=path)
    pub = ws(unique_id("ws-pub"), version, path=path)
    sub.connect()
    pub.connect()
    topic = unique_topic("ws")
    assert sub.subscribe(topic + "/#", 2) == [2]
    for qos in (0, 1, 2):
        payload = f"over websocket at qos {qos}".encode() + bytes(range(256))
        pub.publish(f"{topic}/{qos}", payload, qos=qos)
        [msg] = sub.expect_topic(f"{topic}/{qos}")
        assert msg.payload == payload and msg.qos == qos
    # a payload larger than one read: the message spans several WebSocket frames' reads
    big = bytes(range(256)) * 1024
    pub.publish(f"{topic}/big", big, qos=1)
    [msg] = sub.expect_topic(f"{topic}/big")
    assert msg.payload == big


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_tcp_and_websocket_clients_exchange_both_ways(
    clients: tuple[NewClient, NewClient], version: int
) -> None:
    tcp, ws = clients
    over_tcp = tcp(unique_id("tcp"), version)
    over_ws = ws(unique_id("ws"), version)
    over_tcp.connect()
    over_ws.connect()
    to_ws, to_tcp = unique_topic("to-ws"), unique_topic("to-tcp")
    over_ws.subscribe(to_ws, 1)
    over_tcp.subscribe(to_tcp, 1)
    over_tcp.publish(to_ws, b"from tcp", qos=1)
    over_ws.publish(to_tcp, b"from websocket", qos=1)
    assert [m.payload for m in over_ws.expect_topic(to_ws)] == [b"from tcp"]
    assert [m.payload for m in over_tcp.expect_topic(to_tcp)] == [b"from websocket"]


def test_takeover_and_will_cross_transports(clients: tuple[NewClient, NewClient]) -> None:
    """One hub: a TCP CONNECT with a WebSocket client's id takes its session over, and a
    WebSocket client's will reaches a TCP subscriber."""
    tcp, ws = clients
    client_id = unique_id("both")
    first = ws(client_id, V5)
    first.connect()
    second = tcp(client_id, V5)
    second.connect()
    gone = first.wait_disconnected()
    assert gone.by_server

    will_topic = unique_topic("will")
    watcher = tcp(unique_id("watcher"), V311)
    watcher.connect()
    watcher.subscribe(will_topic, 1)
    dying = ws(unique_id("dying"), V311)
    dying.paho.will_set(will_topic, b"websocket client lost", qos=1)
    dying.connect()
    dying.kill()
    [msg] = watcher.expect_topic(will_topic)
    assert msg.payload == b"websocket client lost"


# --- raw WebSocket: handshake and transport rules ---------------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe_packet(packet_id: int, topic: str) -> bytes:
    t = topic.encode()
    body = packet_id.to_bytes(2, "big") + len(t).to_bytes(2, "big") + t + b"\x00"
    return b"\x82" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return b"\x30" + _remaining_length(len(body)) + body


CONNACK_OK = b"\x20\x02\x00\x00"
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


class RawWs:
    """A blocking WebSocket client over a socket, every read bounded by WAIT_S."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.sock = socket.create_connection((endpoint.host, endpoint.mqtt_port), timeout=WAIT_S)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.binary = b""
        self.eof = False

    def handshake(self, subprotocols: list[str], target: str = "/mqtt", then: bytes = b"") -> Event:
        """Upgrade; ``then`` is sent in the same write, right behind the request."""
        request = Request(host="localhost", target=target, subprotocols=subprotocols)
        self.sock.sendall(self.ws.send(request) + then)
        return self.next_event(lambda e: isinstance(e, (AcceptConnection, RejectConnection)))

    def send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                self.binary += event.data
            else:
                self.events.append(event)

    def next_event(self, match: Callable[[Event], bool]) -> Event:
        deadline = time.monotonic() + WAIT_S
        while True:
            for i, event in enumerate(self.events):
                if match(event):
                    return self.events.pop(i)
            assert not self.eof, f"connection closed; events: {self.events}"
            assert time.monotonic() < deadline, f"no matching event; got {self.events}"
            self._read()

    def expect_bytes(self, data: bytes) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.binary) < len(data):
            assert not self.eof, f"closed after {self.binary!r}, expected {data!r}"
            assert time.monotonic() < deadline, f"got {self.binary!r}, expected {data!r}"
            self._read()
        got, self.binary = self.binary[: len(data)], self.binary[len(data) :]
        assert got == data

    def wait_eof(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.eof:
            assert time.monotonic() < deadline, "the server did not close the connection"
            try:
                self._read()
            except ConnectionResetError:
                self.eof = True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(node: Node) -> Iterator[Callable[[], RawWs]]:
    opened: list[RawWs] = []

    def make() -> RawWs:
        client = RawWs(node.ws)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def http_exchange(endpoint: Endpoint, request: bytes, until_eof: bool = True) -> bytes:
    """Send raw bytes; read the response head, and with ``until_eof`` everything up to the
    server's close. Every read is bounded."""
    with socket.create_connection((endpoint.host, endpoint.mqtt_port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + WAIT_S
        while until_eof or b"\r\n\r\n" not in data:
            assert time.monotonic() < deadline, data
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def upgrade_request(*extra: str, target: str = "/mqtt") -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "offer", [None, "chat", "mqtt5, graphql-ws"], ids=["no-subprotocol", "chat", "others"]
)
def test_handshake_without_mqtt_subprotocol_is_refused_with_400(
    node: Node, offer: str | None
) -> None:
    extra = [] if offer is None else [f"Sec-WebSocket-Protocol: {offer}"]
    response = http_exchange(node.ws, upgrade_request(*extra))
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), response
    assert b"mqtt" in body  # says what to offer
    assert b"connection: close" in head.lower()


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("mqttv3.1, mqtt", "mqtt"), ("x, MQTT", "MQTT")],
)
def test_handshake_selects_mqtt_subprotocol(node: Node, offer: str, chosen: str) -> None:
    request = upgrade_request(f"Sec-WebSocket-Protocol: {offer}", target="/any/path?x=1")
    response = http_exchange(node.ws, request, until_eof=False)
    head = response.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 101 "), head
    assert f"\r\nSec-WebSocket-Protocol: {chosen}\r\n" in head + "\r\n"
    # RFC 6455 section 1.3's sample key and accept value
    assert "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head


def test_handshake_refusals(node: Node) -> None:
    filler = "X-Filler: " + "a" * (20 << 10)
    too_big = http_exchange(node.ws, upgrade_request(filler, "Sec-WebSocket-Protocol: mqtt"))
    assert too_big.startswith(b"HTTP/1.1 431 "), too_big[:200]
    unfinished = http_exchange(node.ws, upgrade_request(filler)[:-4])
    assert unfinished.startswith(b"HTTP/1.1 431 "), unfinished[:200]
    plain = http_exchange(node.ws, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 426 "), plain[:200]
    old = upgrade_request("Sec-WebSocket-Protocol: mqtt").replace(
        b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"
    )
    old_version = http_exchange(node.ws, old)
    assert old_version.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in old_version


def test_packets_split_across_and_packed_into_messages(raw: Callable[[], RawWs]) -> None:
    client = raw()
    assert isinstance(client.handshake(["mqtt"]), AcceptConnection)
    connect = connect_packet(unique_id("raw"))
    # one CONNECT over three messages, the middle one fragmented into two frames
    client.send(BytesMessage(data=connect[:1]))
    client.send(BytesMessage(data=connect[1:5], message_finished=False))
    client.send(BytesMessage(data=connect[5:9], message_finished=True))
    client.send(BytesMessage(data=connect[9:]))
    client.expect_bytes(CONNACK_OK)
    # SUBSCRIBE and PINGREQ in one message
    client.send(BytesMessage(data=subscribe_packet(7, unique_topic("raw")) + PINGREQ))
    client.expect_bytes(b"\x90\x03\x00\x07\x00" + PINGRESP)
    # ping -> pong, and MQTT carries on
    client.send(Ping(payload=b"are you there"))
    pong = client.next_event(lambda e: isinstance(e, Pong))
    assert isinstance(pong, Pong) and pong.payload == b"are you there"
    client.send(BytesMessage(data=PINGREQ))
    client.expect_bytes(PINGRESP)


def masked_binary_frame(payload: bytes) -> bytes:
    """One client frame, built by hand (wsproto sends nothing before the upgrade's answer)."""
    assert len(payload) < 126
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + mask + masked


def test_connect_sent_right_behind_the_upgrade_request(raw: Callable[[], RawWs]) -> None:
    client = raw()
    frame = masked_binary_frame(connect_packet(unique_id("eager")))
    assert isinstance(client.handshake(["mqtt"], then=frame), AcceptConnection)
    client.expect_bytes(CONNACK_OK)


def test_text_frame_closes_with_1003_while_others_keep_working(
    raw: Callable[[], RawWs], clients: tuple[NewClient, NewClient]
) -> None:
    _, ws = clients
    bystander = ws(unique_id("bystander"), V5)
    bystander.connect()
    topic = unique_topic("bystander")
    bystander.subscribe(topic, 1)

    client = raw()
    assert isinstance(client.handshake(["mqtt"]), AcceptConnection)
    client.send(BytesMessage(data=connect_packet(unique_id("texter"))))
    client.expect_bytes(CONNACK_OK)
    client.send(TextMessage(data="MQTT is binary"))
    close = client.next_event(lambda e: isinstance(e, CloseConnection))
    assert isinstance(close, CloseConnection) and close.code == 1003
    client.send(close.response())
    client.wait_eof()

    assert bystander.is_connected
    bystander.publish(topic, b"still here", qos=1)
    assert [m.payload for m in bystander.expect_topic(topic)] == [b"still here"]


def test_close_handshake_started_by_the_client(raw: Callable[[], RawWs]) -> None:
    client = raw()
    assert isinstance(client.handshake(["mqtt"]), AcceptConnection)
    client.send(BytesMessage(data=connect_packet(unique_id("closer"))))
    client.expect_bytes(CONNACK_OK)
    client.send(CloseConnection(code=1000, reason="bye"))
    reply = client.next_event(lambda e: isinstance(e, CloseConnection))
    assert isinstance(reply, CloseConnection) and reply.code == 1000
    client.wait_eof()


def test_close_handshake_started_by_the_server_after_disconnect(
    raw: Callable[[], RawWs],
) -> None:
    client = raw()
    assert isinstance(client.handshake(["mqtt"]), AcceptConnection)
    client.send(BytesMessage(data=connect_packet(unique_id("leaver"))))
    client.expect_bytes(CONNACK_OK)
    client.send(BytesMessage(data=DISCONNECT))
    close = client.next_event(lambda e: isinstance(e, CloseConnection))
    assert isinstance(close, CloseConnection) and close.code == 1000
    client.send(close.response())
    client.wait_eof()


def test_message_over_the_packet_limit_closes_with_1009(raw: Callable[[], RawWs]) -> None:
    client = raw()
    assert isinstance(client.handshake(["mqtt"]), AcceptConnection)
    client.send(BytesMessage(data=connect_packet(unique_id("big"))))
    client.expect_bytes(CONNACK_OK)
    # two PUBLISH packets of 600 KiB, each under the default 1 MiB mqtt_packet_bytes_max, in
    # one message over it
    publish = publish_packet(unique_topic("big"), b"x" * (600 << 10))
    client.send(BytesMessage(data=publish * 2))
    close = client.next_event(lambda e: isinstance(e, CloseConnection))
    assert isinstance(close, CloseConnection) and close.code == 1009
