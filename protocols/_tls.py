"""TLS for the listeners: one server ``ssl.SSLContext`` built from the ``tls_*`` settings, and
the handshake every TLS connection goes through before its protocol sees a byte.

* The context loads ``tls_cert_file`` (the chain, leaf first) and ``tls_key_file``; TLS 1.2 is
  the oldest version offered (RabbitMQ's default ``versions`` are 1.2 and 1.3).
* Client certificates, as RabbitMQ's ``ssl_options.verify`` / ``fail_if_no_peer_cert``:
  ``tls_verify_peer = "none"`` (``verify_none``: none is asked for), ``"optional"``
  (``verify_peer`` with ``fail_if_no_peer_cert = false``: one is asked for and checked against
  ``tls_ca_file`` when sent) or ``"required"`` (``verify_peer`` with ``fail_if_no_peer_cert =
  true``: a client without a valid one fails the handshake).
* The handshake runs in the connection's own task, under ``tls_handshake_timeout_ms``. A failed
  or timed-out handshake (a plain-text client on a TLS port, an untrusted or missing client
  certificate) ends that connection only, with one log line naming the peer and the reason.
* Ragged EOF (a peer closing TCP without close_notify) reads as an ordinary end of stream: the
  protocols carried here frame their own messages, so a truncation cannot pass unnoticed.

A handshaken connection is a :class:`TLSStream`: the ``trio.SSLStream`` plus the ``socket``
under it, so the protocol loops use it where they use a ``trio.SocketStream`` (peer address,
closing the socket to end a reader blocked elsewhere).
"""

from __future__ import annotations

import logging
import os
import socket as _socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("polymq.tls")

VERIFY_PEER_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}

#: The first byte of a TLS record carrying a handshake (a ClientHello starts with it)
TLS_HANDSHAKE_RECORD = 0x16


class TLSSetupError(Exception):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def server_context(
    cert_file: str, key_file: str, ca_file: str = "", verify_peer: str = "none"
) -> ssl.SSLContext:
    """The server context of every TLS listener."""
    if verify_peer not in VERIFY_PEER_MODES:
        raise TLSSetupError(f"unknown tls_verify_peer {verify_peer!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("certificate", cert_file), ("key", key_file), ("CA file", ca_file)):
        if path and not os.access(path, os.R_OK):
            raise TLSSetupError(f"cannot read TLS {what} {path}")
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TLSSetupError(
            f"cannot load TLS certificate {cert_file} with key {key_file}: {_reason(exc)}"
        ) from None
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSSetupError(f"cannot load TLS CA file {ca_file}: {_reason(exc)}") from None
    ctx.verify_mode = VERIFY_PEER_MODES[verify_peer]
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class TLSStream(trio.abc.Stream):
    """A handshaken TLS connection: reads and writes go through ``tls``; ``socket`` is the TCP
    socket under it (closing it ends a blocked reader with ``ClosedResourceError``)."""

    __slots__ = ("tls", "socket")

    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self.tls = tls
        self.socket = tls.transport_stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.tls.receive_some(max_bytes)
        return data if type(data) is bytes else bytes(data)

    async def aclose(self) -> None:
        await self.tls.aclose()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's verified certificate (``ssl.SSLSocket.getpeercert`` form), if any."""
        cert = self.tls.getpeercert()
        return cert or None

    def version(self) -> str | None:
        version: str | None = self.tls.version()
        return version


class TLS:
    """The server side of TLS for a node's listeners: the context, the handshake timeout and
    counters (``statistics()``)."""

    def __init__(self, context: ssl.SSLContext, handshake_timeout_s: float) -> None:
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s
        self.handshakes = 0
        self.handshakes_failed = 0
        self.handshakes_timed_out = 0

    def statistics(self) -> dict[str, int]:
        return {
            "handshakes": self.handshakes,
            "handshakes_failed": self.handshakes_failed,
            "handshakes_timed_out": self.handshakes_timed_out,
        }

    async def handshake(self, stream: trio.SocketStream, listener: str) -> TLSStream | None:
        """The TLS connection over ``stream``, or None (logged) when the handshake fails or
        does not finish within the timeout; the caller closes ``stream`` then."""
        tls = trio.SSLStream(stream, self.context, server_side=True, https_compatible=True)
        failure = ""
        with trio.move_on_after(self.handshake_timeout_s) as scope:
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
                failure = _reason(cause) if cause is not None else "connection closed"
            except trio.ClosedResourceError:
                failure = "connection closed"
        if scope.cancelled_caught:
            self.handshakes_timed_out += 1
            log.warning(
                "tls handshake timed out",
                extra={
                    "listener": listener,
                    "peer": _peer(stream),
                    "timeout_ms": int(self.handshake_timeout_s * 1000),
                },
            )
            return None
        if failure:
            self.handshakes_failed += 1
            log.warning(
                "tls handshake failed",
                extra={"listener": listener, "peer": _peer(stream), "reason": failure},
            )
            return None
        self.handshakes += 1
        return TLSStream(tls)

    async def sniff(
        self, stream: trio.SocketStream, listener: str, *, first_byte_timeout_s: float
    ) -> trio.SocketStream | TLSStream | None:
        """For a port that serves plain and TLS clients alike: peek at the first byte the
        client sends; a TLS handshake record is answered with TLS, anything else is left as
        plain text. None when the client sends nothing in time or the handshake fails."""
        first = b""
        with trio.move_on_after(first_byte_timeout_s):
            try:
                first = await stream.socket.recv(1, _socket.MSG_PEEK)
            except OSError:
                return None
        if not first:
            return None
        if first[0] != TLS_HANDSHAKE_RECORD:
            return stream
        return await self.handshake(stream, listener)

    def plain_or_tls(
        self,
        handler: Callable[[Any], Awaitable[None]],
        listener: str,
        *,
        first_byte_timeout_s: float,
        tls_only: bool = False,
    ) -> Callable[[trio.SocketStream], Awaitable[None]]:
        """``handler`` behind :meth:`sniff` (``tls_only``: plain-text clients are closed)."""

        async def serve_one(stream: trio.SocketStream) -> None:
            try:
                if tls_only:
                    conn: trio.SocketStream | TLSStream | None = await self.handshake(
                        stream, listener
                    )
                else:
                    conn = await self.sniff(
                        stream, listener, first_byte_timeout_s=first_byte_timeout_s
                    )
                if conn is not None:
                    await handler(conn)
            finally:
                await trio.aclose_forcefully(stream)

        return serve_one

    def wrap(
        self, handler: Callable[[Any], Awaitable[None]], listener: str
    ) -> Callable[[trio.SocketStream], Awaitable[None]]:
        """``handler`` behind the TLS handshake, for servers with their own accept loop."""

        async def serve_one(stream: trio.SocketStream) -> None:
            try:
                conn = await self.handshake(stream, listener)
                if conn is not None:
                    await handler(conn)
            finally:
                await trio.aclose_forcefully(stream)

        return serve_one


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return ""
    return f"{host}:{port}"
