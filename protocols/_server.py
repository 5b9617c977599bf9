"""Shared trio TCP serving for the protocol front ends: a bounded number of connections per
listener, one task per connection, errors of one connection never reaching another."""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Awaitable, Callable, Set
from typing import Protocol

import trio

from protocols._tls import TLS, TLSStream

log = logging.getLogger("polymq.server")

#: A connection as the protocol loops see it: plain TCP, or TLS over TCP (``socket`` is the TCP
#: socket in both)
ConnStream = trio.SocketStream | TLSStream

Handler = Callable[[ConnStream], Awaitable[None]]


class Output(Protocol):
    """What the shared write loop needs from a protocol's connection object."""

    out: list[bytes]

    def take_output(self) -> bytes: ...

    def on_output_flushed(self) -> None: ...


class ResourceAlarms(Protocol):
    """What the front ends need of the node's resource alarms (``broker.alarms.Alarms``):
    while any is raised, a connection whose received data publishes is held unread."""

    def raised(self) -> Set[str]: ...

    async def wait_cleared(self) -> None: ...

    def connection_blocked(self, protocol: str, blocked: bool) -> None: ...

    def request_refused(self) -> None: ...


async def hold_publisher(alarms: ResourceAlarms, protocol: str, wire: Wire | None = None) -> None:
    """Hold the calling reader until every resource alarm has cleared. The peer's silence is not
    held against it meanwhile (``wire.last_recv`` is out of reach of the heartbeat check, as
    RabbitMQ pauses its heartbeat monitor on a blocked connection)."""
    alarms.connection_blocked(protocol, True)
    if wire is not None:
        wire.last_recv = math.inf
    try:
        await alarms.wait_cleared()
    finally:
        alarms.connection_blocked(protocol, False)
        if wire is not None:
            wire.last_recv = trio.current_time()


class Wire:
    """One connection's socket and the signals between its reader and its writer task: the
    reader (and the core's deliveries) append to the connection's output and ``wake_writer``;
    the writer sends one joined buffer per wake and sets ``drained`` when nothing is left."""

    def __init__(self, stream: ConnStream) -> None:
        self.stream = stream
        #: the node's resource alarms, for a front end that holds publishers (None: never)
        self.alarms: ResourceAlarms | None = None
        self.wake = trio.Event()
        self.drained = trio.Event()
        self.pending_bytes = 0
        self.last_recv = trio.current_time()
        self.last_send = trio.current_time()
        self.done = False

    def wake_writer(self) -> None:
        self.wake.set()


async def write_loop(
    wire: Wire, conn: Output, close_when: Callable[[], bool] | None = None
) -> None:
    """The writer task. Ends once ``wire.done`` is set and the output is drained; with
    ``close_when``, also closes the socket (ending the reader) when it turns true with nothing
    left to send — for an end decided outside the reader, such as a session takeover."""
    stream = wire.stream
    while True:
        await wire.wake.wait()
        wire.wake = trio.Event()
        data = conn.take_output()
        if data:
            wire.pending_bytes = len(data)
            await stream.send_all(data)
            wire.last_send = trio.current_time()
            conn.on_output_flushed()
        wire.pending_bytes = 0
        if not conn.out:
            wire.drained.set()
            if wire.done:
                return
            if close_when is not None and close_when():
                await trio.aclose_forcefully(stream)
                return


async def drain(wire: Wire, conn: Output, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the writer has sent everything queued so far."""
    if conn.out:
        wire.drained = trio.Event()
        wire.wake_writer()
        with trio.move_on_after(timeout_s):
            await wire.drained.wait()


async def flush_then_discard(
    wire: Wire,
    conn: Output,
    *,
    close_timeout_s: float,
    discard_s: float,
    read_bytes_max: int,
    discard_bytes_max: int = 4 << 20,
) -> None:
    """After a protocol error: let the error reply reach the peer, then read and drop what it
    still sends for a moment, so closing does not turn into a reset (a reset can destroy the
    reply in the peer's receive buffer before it reads it)."""
    await drain(wire, conn, close_timeout_s)
    discarded = 0
    with trio.move_on_after(discard_s):
        while discarded < discard_bytes_max:
            data = await wire.stream.receive_some(read_bytes_max)
            if not data:
                break
            discarded += len(data)


def is_loopback(peer: tuple[str, int] | None) -> bool:
    """Whether a peer address is on this machine (the default user connects only from here)."""
    if peer is None:
        return True
    host = peer[0]
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


def fmt_peer(peer: tuple[str, int] | None) -> str:
    return "" if peer is None else f"{peer[0]}:{peer[1]}"


class ConnectionRegistry(Protocol):
    """Where open connections are recorded (the management API lists them): ``opened`` runs
    in the connection's task before its handler, ``closed`` after it."""

    def opened(self, protocol: str, stream: trio.SocketStream) -> object: ...

    def closed(self, record: object) -> None: ...


class ConnectionLimiter:
    """Counts a listener's open connections; past ``connections_max`` new ones are closed.
    With a ``registry``, each accepted connection is recorded there under ``name``."""

    def __init__(
        self, name: str, connections_max: int, registry: ConnectionRegistry | None = None
    ) -> None:
        self.name = name
        self.connections_max = connections_max
        self.registry = registry
        self.open = 0
        self.accepted = 0
        self.refused = 0

    def statistics(self) -> dict[str, int]:
        return {"open": self.open, "accepted": self.accepted, "refused": self.refused}


async def serve(
    listeners: list[trio.SocketListener],
    handler: Handler,
    limiter: ConnectionLimiter,
    tls: TLS | None = None,
) -> None:
    """Serve ``listeners`` with ``handler``; with ``tls`` each connection is handshaken first
    (in its own task, under the handshake timeout) and a failed handshake ends only it."""

    async def guarded(stream: trio.SocketStream) -> None:
        if limiter.open >= limiter.connections_max:
            limiter.refused += 1
            log.warning(
                "connection refused: limit reached",
                extra={"listener": limiter.name, "connections_max": limiter.connections_max},
            )
            await trio.aclose_forcefully(stream)
            return
        limiter.open += 1
        limiter.accepted += 1
        registry = limiter.registry
        record = None if registry is None else registry.opened(limiter.name, stream)
        try:
            if tls is None:
                await handler(stream)
            else:
                conn = await tls.handshake(stream, limiter.name)
                if conn is not None:
                    await handler(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("connection handler failed", extra={"listener": limiter.name})
        finally:
            limiter.open -= 1
            if registry is not None:
                registry.closed(record)
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, guarded, nursery)


#: accept() errors that mean "out of file descriptors or memory for now": wait and retry
ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
ACCEPT_RETRY_S = 0.1


async def _accept_loop(
    listener: trio.SocketListener,
    guarded: Callable[[trio.SocketStream], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections and start ``guarded`` for each, directly in the serving nursery (no
    wrapper task per connection: an idle connection costs what its own task holds)."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            log.error("accept failed, retrying", extra={"error": str(exc)})
            await trio.sleep(ACCEPT_RETRY_S)
            continue
        nursery.start_soon(guarded, stream)
