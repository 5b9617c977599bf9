"""STOMP over WebSocket against a real polymq process (``--stomp-ws-port 0``): a small blocking
client written with wsproto over a socket (the shape of stomp.js and RabbitMQ Web STOMP's
clients: text messages, subprotocol ``v12.stomp``), next to stomp.py over TCP on the same node.

These always run against polymq's own process: the reference broker URL names a TCP listener.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.interop.stomp_helpers import Client as StompClient
from tests.interop.stomp_helpers import unique_name
from tests.polymq_process import PolymqProcess

WAIT_S = 10.0


@dataclass
class Node:
    proc: PolymqProcess
    ws_port: int


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    proc = PolymqProcess(
        tmp_path_factory.mktemp("polymq-stomp-ws") / "data",
        extra_args=("--stomp-ws-port", "0"),
        listeners=("stomp",),
    )
    proc.start()
    try:
        # every listener logs its port before "started", which start() waited for
        ws = [r for r in proc.lines if r.get("event") == "listening"]
        ws = [r for r in ws if r.get("listener") == "stomp_ws"]
        assert ws, f"no stomp_ws listening line: {proc.lines}"
        yield Node(proc, int(ws[-1]["port"]))
    finally:
        proc.stop()


@dataclass
class Frame:
    command: str
    headers: dict[str, str]
    body: bytes


def encode(command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class WsStomp:
    """A blocking STOMP over WebSocket client; every read is bounded by WAIT_S. Incoming text
    and binary messages are one byte stream of frames; the kinds of message seen are kept."""

    def __init__(self, node: Node) -> None:
        self.sock = socket.create_connection((node.proc.host, node.ws_port), timeout=WAIT_S)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.buf = b""
        self.kinds: list[str] = []  # "text" / "binary", one per message completed
        self.events: list[Event] = []
        self.eof = False

    def handshake(self, subprotocols: list[str], target: str = "/ws") -> Event:
        self.sock.sendall(
            self.ws.send(Request(host="localhost", target=target, subprotocols=subprotocols))
        )
        return self._next(lambda e: isinstance(e, (AcceptConnection, RejectConnection)))

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def send(self, command: str, headers: dict[str, str] | None = None, body: str = "") -> None:
        self.send_text(encode(command, headers, body.encode()).decode())

    def connect(self) -> Frame:
        self.send(
            "CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"}
        )
        frame = self.frame()
        assert frame.command == "CONNECTED", frame
        return frame

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self.buf += event.data.encode()
                if event.message_finished:
                    self.kinds.append("text")
            elif isinstance(event, BytesMessage):
                self.buf += event.data
                if event.message_finished:
                    self.kinds.append("binary")
            else:
                self.events.append(event)

    def _next(self, match: Callable[[Event], bool]) -> Event:
        deadline = time.monotonic() + WAIT_S
        while True:
            for i, event in enumerate(self.events):
                if match(event):
                    return self.events.pop(i)
            assert not self.eof, f"connection closed; events: {self.events}"
            assert time.monotonic() < deadline, f"no matching event; got {self.events}"
            self._read()

    def _parse(self) -> Frame | None:
        buf = self.buf.lstrip(b"\r\n")  # heart-beats
        head_end = buf.find(b"\n\n")
        if head_end < 0:
            return None
        command, *lines = buf[:head_end].decode().split("\n")
        headers: dict[str, str] = {}
        for line in lines:
            key, _, value = line.partition(":")
            headers.setdefault(key, value)
        start = head_end + 2
        if "content-length" in headers:
            end = start + int(headers["content-length"])
            if len(buf) <= end:
                return None
        else:
            end = buf.find(b"\0", start)
            if end < 0:
                return None
        assert buf[end : end + 1] == b"\0", buf
        self.buf = buf[end + 1 :]
        return Frame(command, headers, buf[start:end])

    def frame(self) -> Frame:
        deadline = time.monotonic() + WAIT_S
        while (frame := self._parse()) is None:
            assert not self.eof, f"closed; unparsed {self.buf!r}"
            assert time.monotonic() < deadline, f"no whole frame; got {self.buf!r}"
            self._read()
        return frame

    def receipt(self, rid: str) -> None:
        frame = self.frame()
        assert (frame.command, frame.headers.get("receipt-id")) == ("RECEIPT", rid), frame

    def close_event(self) -> CloseConnection:
        event = self._next(lambda e: isinstance(e, CloseConnection))
        assert isinstance(event, CloseConnection)
        return event

    def wait_eof(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.eof:
            assert time.monotonic() < deadline, "the server did not close the connection"
            self._read()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ws_client(node: Node) -> Iterator[Callable[[], WsStomp]]:
    opened: list[WsStomp] = []

    def make() -> WsStomp:
        client = WsStomp(node)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def tcp_client(node: Node) -> Iterator[Callable[[], StompClient]]:
    opened: list[StompClient] = []

    def make() -> StompClient:
        client = StompClient(node.proc)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.disconnect()


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [
        (["v10.stomp", "v12.stomp", "v11.stomp"], "v12.stomp"),
        (["v10.stomp", "v11.stomp"], "v11.stomp"),
        (["stomp"], "stomp"),
        (["mqtt", "stomp", "v10.stomp"], "v10.stomp"),
        ([], None),  # RabbitMQ's Web STOMP accepts a client offering no subprotocol
    ],
)
def test_handshake_selects_the_highest_stomp_subprotocol(
    ws_client: Callable[[], WsStomp], offer: list[str], chosen: str | None
) -> None:
    client = ws_client()
    accepted = client.handshake(offer)
    assert isinstance(accepted, AcceptConnection), accepted
    assert accepted.subprotocol == chosen
    assert client.connect().headers["version"] == "1.2"


def test_connect_subscribe_send_message_ack(ws_client: Callable[[], WsStomp]) -> None:
    client = ws_client()
    accepted = client.handshake(["v12.stomp"])
    assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "v12.stomp"
    # CONNECT split over two messages
    connect = encode(
        "CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"}
    )
    client.send_text(connect[:20].decode())
    client.send_text(connect[20:].decode())
    connected = client.frame()
    assert connected.command == "CONNECTED" and connected.headers["version"] == "1.2"
    queue = f"/queue/{unique_name('ws')}"
    # SUBSCRIBE and SEND packed into one message
    client.send_text(
        (
            encode(
                "SUBSCRIBE",
                {"id": "s1", "destination": queue, "ack": "client-individual", "receipt": "r1"},
            )
            + encode("SEND", {"destination": queue, "receipt": "r2"}, "héllo websocket".encode())
        ).decode()
    )
    frames = [client.frame() for _ in range(3)]
    by_command = {f.command: f for f in frames}
    assert {f.headers.get("receipt-id") for f in frames if f.command == "RECEIPT"} == {"r1", "r2"}
    message = by_command["MESSAGE"]
    assert message.body == "héllo websocket".encode()
    assert message.headers["subscription"] == "s1"
    assert message.headers["destination"] == queue
    client.send("ACK", {"id": message.headers["ack"], "receipt": "r3"})
    client.receipt("r3")
    assert set(client.kinds) == {"text"}
    client.send("DISCONNECT", {"receipt": "bye"})
    client.receipt("bye")
    assert client.close_event().code == 1000
    client.wait_eof()


def test_tcp_and_websocket_clients_exchange_both_ways(
    ws_client: Callable[[], WsStomp], tcp_client: Callable[[], StompClient]
) -> None:
    ws = ws_client()
    ws.handshake(["v12.stomp"])
    ws.connect()
    tcp = tcp_client()
    tcp.connect()
    to_ws, to_tcp = f"/queue/{unique_name('to-ws')}", f"/queue/{unique_name('to-tcp')}"
    ws.send("SUBSCRIBE", {"id": "s1", "destination": to_ws, "receipt": "r1"})
    ws.receipt("r1")
    tcp.subscribe(to_tcp)

    tcp.send(to_ws, b"from tcp")
    message = ws.frame()
    assert (message.command, message.body) == ("MESSAGE", b"from tcp")
    # a body that is not UTF-8 travels in a binary message
    binary = bytes(range(256))
    tcp.send(to_ws, binary)
    message = ws.frame()
    assert (message.command, message.body) == ("MESSAGE", binary)
    assert ws.kinds[-1] == "binary"

    ws.send("SEND", {"destination": to_tcp, "receipt": "r2"}, "from websocket")
    ws.receipt("r2")
    tcp.rec.wait_for(lambda: len(tcp.rec.messages) == 1, "the websocket client's message")
    assert tcp.rec.messages[0].body == b"from websocket"


def test_bad_frame_gets_error_then_close_while_others_keep_working(
    ws_client: Callable[[], WsStomp], tcp_client: Callable[[], StompClient]
) -> None:
    other = ws_client()
    other.handshake(["v12.stomp"])
    other.connect()
    bad = ws_client()
    bad.handshake(["v12.stomp"])
    bad.connect()

    bad.send_text("BOGUS\nheader:x\n\n\0")
    error = bad.frame()
    assert error.command == "ERROR"
    assert error.headers["message"] == "Bad command"
    assert bad.close_event().code == 1000
    bad.wait_eof()

    queue = f"/queue/{unique_name('still')}"
    other.send("SUBSCRIBE", {"id": "s1", "destination": queue, "receipt": "r1"})
    other.receipt("r1")
    tcp = tcp_client()
    tcp.connect()
    tcp.send(queue, b"still served")
    message = other.frame()
    assert (message.command, message.body) == ("MESSAGE", b"still served")
