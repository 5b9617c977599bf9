"""A tiny STOMP 1.0 / 1.1 / 1.2 frame encoder and decoder for conformance tests, written from
the STOMP specifications (stomp.github.io, 1.2 sections "STOMP Frames", "Value Encoding",
"Header Escaping", "Size Limits", "Heart-beating"), independent of ``protocols.stomp`` on
purpose: the broker is checked against a second reading of the spec.

Only what the tests need: ``frame()`` builds exact bytes (escaping is the caller's choice, so
hostile frames are easy to write), ``RawClient`` reads frames and heart-beat EOLs from a
blocking socket with a deadline on every read.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

NUL, EOL = b"\x00", b"\n"
LOGIN, PASSCODE, VHOST = "guest", "guest", "/"

# 1.2 "Value Encoding": what \c \n \r \\ stand for
ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"}
UNESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\c": ":"}


def escape(value: str) -> str:
    return "".join(ESCAPES.get(ch, ch) for ch in value)


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        pair = value[i : i + 2]
        if pair in UNESCAPES:
            out.append(UNESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def frame(
    command: str,
    headers: list[tuple[str, str]] | dict[str, str] = (),  # type: ignore[assignment]
    body: bytes = b"",
    content_length: bool = False,
    escaped: bool = False,
) -> bytes:
    """``command EOL (name:value EOL)* EOL body NUL``; headers go out verbatim unless
    ``escaped`` (then 1.2 escaping is applied to names and values)."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if content_length:
        items.append(("content-length", str(len(body))))
    lines = [command]
    for name, value in items:
        if escaped:
            name, value = escape(name), escape(value)
        lines.append(f"{name}:{value}")
    return ("\n".join(lines) + "\n\n").encode() + body + NUL


def connect(version: str = "1.2", **extra: str) -> bytes:
    headers = {"accept-version": version, "host": VHOST, "login": LOGIN, "passcode": PASSCODE}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return frame("CONNECT", headers)


@dataclass(frozen=True)
class Frame:
    command: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first occurrence wins (1.2 "Repeated Header Entries")."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __getitem__(self, name: str) -> str:
        value = self.header(name)
        if value is None:
            raise KeyError(f"{self.command} has no {name!r} header: {self.headers}")
        return value


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    """One TCP connection, frames in and out by hand."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.heartbeats = 0  # EOLs seen between frames
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed
        self.buf += chunk

    def read_frame(self, timeout: float | None = None) -> Frame:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while self.buf[:1] in (b"\n", b"\r"):  # heart-beats / frame-trailing EOLs
                if self.buf[:1] == b"\n":
                    self.heartbeats += 1
                self.buf = self.buf[1:]
            end = self.buf.find(b"\n\n")
            if end >= 0:
                head = self.buf[:end].decode()
                lines = head.replace("\r\n", "\n").split("\n")
                headers = [tuple(line.split(":", 1)) for line in lines[1:]]
                parsed = [(k, v) for k, v in headers]
                length = next((int(v) for k, v in parsed if k == "content-length"), None)
                start = end + 2
                if length is not None:
                    if len(self.buf) >= start + length + 1:
                        body = self.buf[start : start + length]
                        assert self.buf[start + length : start + length + 1] == NUL
                        self.buf = self.buf[start + length + 1 :]
                        return Frame(lines[0], parsed, body)
                else:
                    nul = self.buf.find(NUL, start)
                    if nul >= 0:
                        body = self.buf[start:nul]
                        self.buf = self.buf[nul + 1 :]
                        return Frame(lines[0], parsed, body)
            self._fill(deadline)

    def handshake(self, version: str = "1.2", **extra: str) -> Frame:
        self.send(connect(version, **extra))
        reply = self.read_frame()
        assert reply.command == "CONNECTED", (reply.command, reply.headers, reply.body)
        return reply

    def read_until_closed(self, timeout: float = 5.0) -> list[Frame]:
        """Every frame until the server closes; fails if it is still open after ``timeout``."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(0.0, deadline - time.monotonic())))
            except Closed:
                return frames
            except TimeoutError:
                raise AssertionError(
                    f"connection still open after {timeout} s; frames so far: {frames}"
                ) from None

    def read_frames_for(self, seconds: float) -> tuple[list[Frame], bool]:
        """Frames that arrive within ``seconds``, and whether the server closed meanwhile."""
        frames: list[Frame] = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                frames.append(self.read_frame(max(0.0, deadline - time.monotonic())))
            except Closed:
                return frames, True
            except TimeoutError:
                return frames, False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
