"""The WebSocket upgrade (RFC 6455 section 4) shared by the MQTT and STOMP WebSocket listeners.

The HTTP/1.1 request is parsed with h11, its headers bounded by ``HANDSHAKE_BYTES_MAX`` (else
431); bytes a client sends right behind its request are kept for the protocol. Any request path
is accepted. Each listener describes itself with a ``Handshake``: its subprotocol names in order
of preference (the first one the client offers is chosen, echoed as the client spelled it), and
what to say to a client offering none (``refuse_without``: a 400 with that text, as MQTT
requires; None: accepted without a ``Sec-WebSocket-Protocol`` header, as RabbitMQ's Web STOMP).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import h11
import trio

HANDSHAKE_BYTES_MAX = 16 << 10
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REASONS = {
    400: "Bad Request",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
}


class HandshakeRefused(Exception):
    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


@dataclass(frozen=True)
class Upgrade:
    """An accepted upgrade request: the response to send and the bytes read past the request.
    ``subprotocol`` is "" when none was chosen."""

    response: bytes
    subprotocol: str
    path: str
    trailing: bytes


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    out: list[str] = []
    for key, value in headers:
        if key == name:
            out += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    return out


def refusal_response(refused: HandshakeRefused) -> bytes:
    body = (refused.text + "\n").encode("utf-8")
    lines = [f"HTTP/1.1 {refused.status} {_REASONS.get(refused.status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in refused.headers]
    lines += [
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def upgrade_response(key: bytes, subprotocol: str | None) -> bytes:
    lines = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_token(key.strip()) + b"\r\n"
    )
    if subprotocol is not None:
        lines += b"Sec-WebSocket-Protocol: " + subprotocol.encode("ascii") + b"\r\n"
    return lines + b"\r\n"


@dataclass(frozen=True)
class Handshake:
    protocol: str  # named in the 426 answer to a request that is not an upgrade
    subprotocols: tuple[str, ...]  # preferred first
    refuse_without: str | None  # the 400 text for a client offering none of them, or None

    def select_subprotocol(self, offered: list[str]) -> str | None:
        lowered = {p.lower(): p for p in offered}
        for name in self.subprotocols:
            if name in lowered:
                return lowered[name]  # echoed as the client spelled it
        return None

    def check_request(self, request: h11.Request) -> tuple[str | None, str]:
        """Validate an upgrade request: ``(subprotocol or None, path)``, or HandshakeRefused."""
        headers = [(k.lower(), v) for k, v in request.headers]
        if request.method != b"GET":
            raise HandshakeRefused(400, "a WebSocket upgrade must be a GET request")
        if request.http_version < b"1.1":
            raise HandshakeRefused(400, "a WebSocket upgrade needs HTTP/1.1")
        upgrade = [t.lower() for t in _tokens(headers, b"upgrade")]
        connection = [t.lower() for t in _tokens(headers, b"connection")]
        if "websocket" not in upgrade or "upgrade" not in connection:
            raise HandshakeRefused(
                426,
                f"this port serves {self.protocol} over WebSocket only: send a WebSocket "
                "upgrade request",
                (("Upgrade", "websocket"),),
            )
        versions = _tokens(headers, b"sec-websocket-version")
        if versions != ["13"]:
            raise HandshakeRefused(
                426, "unsupported Sec-WebSocket-Version (13 is)", (("Sec-WebSocket-Version", "13"),)
            )
        keys = [v for k, v in headers if k == b"sec-websocket-key"]
        try:
            valid_key = (
                len(keys) == 1 and len(base64.b64decode(keys[0].strip(), validate=True)) == 16
            )
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            raise HandshakeRefused(400, "missing or invalid Sec-WebSocket-Key")
        offered = _tokens(headers, b"sec-websocket-protocol")
        chosen = self.select_subprotocol(offered)
        if chosen is None and self.refuse_without is not None:
            raise HandshakeRefused(
                400, f"{self.refuse_without}; offered: {', '.join(offered) or 'none'}"
            )
        return chosen, request.target.decode("latin-1")

    async def read_upgrade(self, stream: trio.abc.Stream) -> Upgrade | None:
        """Read one upgrade request. None when the client went away first; HandshakeRefused
        when it must be answered with an HTTP error."""
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=HANDSHAKE_BYTES_MAX)
        request: h11.Request | None = None
        received = 0
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                status = 431 if exc.error_status_hint == 431 else 400
                text = (
                    f"request headers over {HANDSHAKE_BYTES_MAX} bytes"
                    if status == 431
                    else f"malformed HTTP request: {exc}"
                )
                raise HandshakeRefused(status, text) from None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(HANDSHAKE_BYTES_MAX)
                received += len(data)
                parser.receive_data(bytes(data))
                if not data and request is None:
                    return None
                continue
            if isinstance(event, h11.Request):
                # h11 bounds only a request still incomplete; one that arrived whole is measured
                if received - len(parser.trailing_data[0]) > HANDSHAKE_BYTES_MAX:
                    raise HandshakeRefused(431, f"request headers over {HANDSHAKE_BYTES_MAX} bytes")
                request = event
            elif isinstance(event, h11.Data):
                raise HandshakeRefused(400, "a WebSocket upgrade request has no body")
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                subprotocol, path = self.check_request(request)
                key = next(v for k, v in request.headers if k.lower() == b"sec-websocket-key")
                return Upgrade(
                    upgrade_response(key, subprotocol),
                    subprotocol or "",
                    path,
                    parser.trailing_data[0],
                )
            else:  # ConnectionClosed or PAUSED before a whole request
                return None
