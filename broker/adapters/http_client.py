"""A small HTTP/1.1 client on h11 over trio, for the adapters' outbound calls (SNS http/https
subscriptions, EventBridge API destinations and OAuth token endpoints): one request per
connection (``Connection: close``), bounded response size, one timeout over connect + send +
receive. ``https`` URLs use the system's trust store unless a context is given."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

#: Largest response body read (the rest is an error); API destinations only need the status.
RESPONSE_BYTES_MAX = 1 << 20
#: Largest response header block.
RESPONSE_HEADER_BYTES_MAX = 64 << 10
#: Default time for one request, connect to last byte (AWS: 5 s per invocation).
REQUEST_TIMEOUT_S = 5.0
READ_CHUNK_BYTES = 65536


class HttpError(Exception):
    """The request did not get a complete response (connect, TLS, protocol, size, timeout)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


async def request(
    method: str,
    url: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout_s: float = REQUEST_TIMEOUT_S,
    response_bytes_max: int = RESPONSE_BYTES_MAX,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"unsupported URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    out_headers = [("Host", host), ("Connection", "close")]
    names = set()
    for name, value in headers or []:
        names.add(name.lower())
        out_headers.append((name, value))
    if "content-length" not in names and (body or method not in ("GET", "HEAD")):
        out_headers.append(("Content-Length", str(len(body))))
    with trio.move_on_after(timeout_s) as scope:
        try:
            return await _exchange(
                parts.scheme, parts.hostname, port, method, target, out_headers, body,
                response_bytes_max, ssl_context or _tls(),
            )  # fmt: skip
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
    assert scope.cancelled_caught
    raise HttpError(f"no response within {timeout_s} s")


async def _exchange(
    scheme: str,
    hostname: str,
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    response_bytes_max: int,
    ssl_context: ssl.SSLContext,
) -> HttpResponse:
    stream: trio.abc.Stream = await trio.open_tcp_stream(hostname, port)
    if scheme == "https":
        tls = trio.SSLStream(stream, ssl_context, server_hostname=hostname)
        await tls.do_handshake()
        stream = tls
    async with stream:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=RESPONSE_HEADER_BYTES_MAX)
        data = conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)
        status = 0
        resp_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(READ_CHUNK_BYTES)))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > response_bytes_max:
                    raise HttpError(f"response body over {response_bytes_max} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if not status:
                    raise HttpError("connection closed before a response")
                return HttpResponse(status, resp_headers, b"".join(chunks))
