"""TCP links between the nodes of a cluster, on trio.

Every node listens on its cluster port and dials every peer. A dialled connection carries frames
*to* that peer and an accepted one frames *from* it, so between two nodes there are two
connections, each written by one side only (besides the handshake answer).

Frames (little-endian)::

    length u32 (of what follows) | kind u8 | body

``KIND_RAFT`` bodies are ``encode_message`` bytes; other kinds belong to the layer above
(``broker/cluster.py`` forwards client commands with them) and reach ``on_frame`` unchanged.

Rules:

1. Handshake: the dialler's first frame is ``KIND_HELLO`` with msgpack ``[version, cluster id,
   sender id, receiver id]``. The acceptor answers ``KIND_HELLO_OK`` only when the cluster id is
   its own, the sender is one of its peers (not itself) and the receiver is itself; otherwise it
   answers ``KIND_REFUSE`` with the reason and closes. Nothing else is read before the answer.
2. A frame longer than ``frame_bytes_max`` (or shorter than its kind byte), a Raft body that does
   not decode, or one whose sender is not the handshake's peer closes that connection only; the
   other links carry on, and the peer's dialler reconnects.
3. Sends never block: each peer has a queue of ``send_queue_frames_max`` frames. A send to a peer
   that is not connected, or whose queue is full, is dropped and ``send`` returns False, and
   ``on_unreachable(peer)`` is called for Raft frames (Raft retries; ``report_unreachable``
   stops pipelining to that peer). Frames still queued when a connection breaks are dropped.
4. A lost connection is redialled with exponential backoff from ``reconnect_backoff_ms_min`` to
   ``reconnect_backoff_ms_max``.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from storage.raft.core import Message, MessageDecodeError, decode_message, encode_message

__all__ = [
    "KIND_HELLO",
    "KIND_HELLO_OK",
    "KIND_RAFT",
    "KIND_REFUSE",
    "KIND_USER_BASE",
    "FrameError",
    "FrameReader",
    "PeerTransport",
    "TransportLimits",
    "encode_frame",
    "encode_hello",
]

log = logging.getLogger("polymq.raft.transport")

PROTOCOL_VERSION = 1
_HEADER = struct.Struct("<IB")
_LENGTH = struct.Struct("<I")

KIND_HELLO = 1
KIND_HELLO_OK = 2
KIND_REFUSE = 3
KIND_RAFT = 4
#: kinds from here up are passed to ``on_frame`` for the layer above
KIND_USER_BASE = 16

READ_BYTES_MAX = 1 << 16
SEND_BATCH_BYTES_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class TransportLimits:
    frame_bytes_max: int = 64 << 20
    send_queue_frames_max: int = 4096
    reconnect_backoff_ms_min: int = 50
    reconnect_backoff_ms_max: int = 2000
    handshake_timeout_ms: int = 2000
    connect_timeout_ms: int = 2000


class FrameError(Exception):
    """The peer sent bytes that are not a valid frame; the connection is closed."""


def encode_frame(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1, kind) + body


def encode_hello(cluster_id: str, sender: str, receiver: str) -> bytes:
    body = msgpack.packb([PROTOCOL_VERSION, cluster_id, sender, receiver], use_bin_type=True)
    assert isinstance(body, bytes)
    return encode_frame(KIND_HELLO, body)


class FrameReader:
    """Splits received bytes into ``(kind, body)`` frames; pure (no I/O)."""

    __slots__ = ("_buf", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int) -> None:
        self._buf = bytearray()
        self.frame_bytes_max = frame_bytes_max

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length < 1:
                raise FrameError("frame without a kind byte")
            if length > self.frame_bytes_max:
                raise FrameError(
                    f"frame of {length} bytes exceeds frame_bytes_max={self.frame_bytes_max}"
                )
            end = pos + _LENGTH.size + length
            if end > len(buf):
                break
            out.append((buf[pos + _LENGTH.size], bytes(buf[pos + _LENGTH.size + 1 : end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


def _decode_hello(body: bytes) -> tuple[int, str, str, str]:
    try:
        obj = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise FrameError(f"hello is not msgpack: {exc}") from None
    if (
        type(obj) is not list
        or len(obj) != 4
        or type(obj[0]) is not int
        or not all(type(x) is str for x in obj[1:])
    ):
        raise FrameError("hello is [version, cluster id, sender, receiver]")
    return obj[0], obj[1], obj[2], obj[3]


class _Link:
    """The outgoing side of one peer."""

    __slots__ = ("addr", "connected", "down_since", "peer", "recv", "send", "sent", "dropped")

    def __init__(self, peer: str, addr: tuple[str, int], queue_max: int, now: float) -> None:
        self.peer = peer
        self.addr = addr
        self.connected = False
        self.down_since: float | None = now
        self.send, self.recv = trio.open_memory_channel[bytes](queue_max)
        self.sent = 0
        self.dropped = 0


class PeerTransport:
    """See the module docstring. ``on_frame(peer, kind, body)`` gets every frame of a kind
    ``>= KIND_USER_BASE``; ``on_message(msg)`` every decoded Raft message."""

    def __init__(
        self,
        node_id: str,
        cluster_id: str,
        peers: dict[str, tuple[str, int]],
        *,
        on_message: Callable[[Message], None],
        on_frame: Callable[[str, int, bytes], None],
        on_unreachable: Callable[[str], None],
        limits: TransportLimits | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.limits = limits = limits if limits is not None else TransportLimits()
        self.on_message = on_message
        self.on_frame = on_frame
        self.on_unreachable = on_unreachable
        now = trio.current_time()
        self._links = {
            p: _Link(p, addr, limits.send_queue_frames_max, now)
            for p, addr in peers.items()
            if p != node_id
        }
        self.inbound: dict[str, int] = {}  # peer -> accepted connections open
        self.stats = {"frames_in": 0, "frames_out": 0, "refused": 0, "bad_frames": 0}

    # -- sending -------------------------------------------------------------------------------

    def send_message(self, msg: Message) -> bool:
        if not self.send(msg.to, KIND_RAFT, encode_message(msg)):
            self.on_unreachable(msg.to)
            return False
        return True

    def send(self, peer: str, kind: int, body: bytes) -> bool:
        link = self._links.get(peer)
        if link is None or not link.connected:
            if link is not None:
                link.dropped += 1
            return False
        try:
            link.send.send_nowait(encode_frame(kind, body))
        except trio.WouldBlock:
            link.dropped += 1
            return False
        return True

    def connected(self, peer: str) -> bool:
        link = self._links.get(peer)
        return link is not None and link.connected

    def down_for_s(self, peer: str) -> float:
        """Seconds since the link to ``peer`` went down (0 while it is up)."""
        link = self._links[peer]
        if link.connected or link.down_since is None:
            return 0.0
        return trio.current_time() - link.down_since

    def statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "peers": {
                p: {
                    "connected": link.connected,
                    "sent": link.sent,
                    "dropped": link.dropped,
                    "inbound": self.inbound.get(p, 0),
                }
                for p, link in self._links.items()
            },
        }

    # -- running -------------------------------------------------------------------------------

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            for link in self._links.values():
                nursery.start_soon(self._dial_loop, link)
            nursery.start_soon(trio.serve_listeners, self._accept, listeners)
            task_status.started()

    async def _dial_loop(self, link: _Link) -> None:
        lim = self.limits
        backoff_s = lim.reconnect_backoff_ms_min / 1000
        while True:
            stream: trio.SocketStream | None = None
            try:
                with trio.fail_after(lim.connect_timeout_ms / 1000):
                    stream = await trio.open_tcp_stream(*link.addr)
                with trio.fail_after(lim.handshake_timeout_ms / 1000):
                    await stream.send_all(encode_hello(self.cluster_id, self.node_id, link.peer))
                    await self._await_hello_ok(stream, link.peer)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, FrameError) as exc:
                if stream is not None:
                    await stream.aclose()
                if isinstance(exc, FrameError):
                    log.warning(
                        "cluster peer refused the link",
                        extra={"peer": link.peer, "reason": str(exc)},
                    )
                await trio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, lim.reconnect_backoff_ms_max / 1000)
                continue
            backoff_s = lim.reconnect_backoff_ms_min / 1000
            link.connected = True
            link.down_since = None
            log.info("cluster link up", extra={"peer": link.peer})
            try:
                await self._write_loop(stream, link)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                link.connected = False
                link.down_since = trio.current_time()
                dropped = 0
                while True:
                    try:
                        link.recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    dropped += 1
                link.dropped += dropped
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                log.info("cluster link down", extra={"peer": link.peer, "frames_dropped": dropped})
            self.on_unreachable(link.peer)

    async def _await_hello_ok(self, stream: trio.SocketStream, peer: str) -> None:
        reader = FrameReader(self.limits.frame_bytes_max)
        while True:
            data = await stream.receive_some(READ_BYTES_MAX)
            if not data:
                raise trio.BrokenResourceError("closed during the handshake")
            frames = reader.feed(data)
            if frames:
                kind, body = frames[0]
                if kind == KIND_HELLO_OK:
                    return
                if kind == KIND_REFUSE:
                    raise FrameError(body.decode("utf-8", "replace"))
                raise FrameError(f"unexpected frame kind {kind} in the handshake")

    async def _write_loop(self, stream: trio.SocketStream, link: _Link) -> None:
        recv = link.recv
        # The peer never writes after the handshake; a read that returns means it closed.
        async with trio.open_nursery() as nursery:

            async def watch_close() -> None:
                try:
                    while await stream.receive_some(READ_BYTES_MAX):
                        pass
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_close)
            while True:
                frame = await recv.receive()
                batch = [frame]
                size = len(frame)
                while size < SEND_BATCH_BYTES_MAX:
                    try:
                        frame = recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    batch.append(frame)
                    size += len(frame)
                await stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])
                link.sent += len(batch)
                self.stats["frames_out"] += len(batch)

    async def _accept(self, stream: trio.SocketStream) -> None:
        peer: str | None = None
        try:
            reader = FrameReader(self.limits.frame_bytes_max)
            frames: list[tuple[int, bytes]] = []
            with trio.move_on_after(self.limits.handshake_timeout_ms / 1000):
                while not frames:
                    data = await stream.receive_some(READ_BYTES_MAX)
                    if not data:
                        return
                    frames = reader.feed(data)
            if not frames:
                return
            kind, body = frames.pop(0)
            if kind != KIND_HELLO:
                raise FrameError(f"first frame is kind {kind}, not a hello")
            version, cluster_id, sender, receiver = _decode_hello(body)
            reason = None
            if version != PROTOCOL_VERSION:
                reason = f"protocol version {version}, expected {PROTOCOL_VERSION}"
            elif cluster_id != self.cluster_id:
                reason = f"cluster id {cluster_id!r}, this node is in {self.cluster_id!r}"
            elif receiver != self.node_id:
                reason = f"this node is {self.node_id!r}, not {receiver!r}"
            elif sender not in self._links:
                reason = f"{sender!r} is not a peer of {self.node_id!r}"
            if reason is not None:
                self.stats["refused"] += 1
                log.warning("cluster link refused", extra={"peer": sender, "reason": reason})
                with trio.move_on_after(1):
                    await stream.send_all(encode_frame(KIND_REFUSE, reason.encode()))
                return
            peer = sender
            self.inbound[peer] = self.inbound.get(peer, 0) + 1
            await stream.send_all(encode_frame(KIND_HELLO_OK, b""))
            self._dispatch(peer, frames)
            while True:
                data = await stream.receive_some(READ_BYTES_MAX)
                if not data:
                    return
                self._dispatch(peer, reader.feed(data))
        except FrameError as exc:
            self.stats["bad_frames"] += 1
            log.warning("bad cluster frame", extra={"peer": peer, "error": str(exc)})
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if getattr(exc, "errno", None) not in (None, errno.ECONNRESET):
                log.info("cluster connection failed", extra={"peer": peer, "error": str(exc)})
        finally:
            if peer is not None:
                self.inbound[peer] -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _dispatch(self, peer: str, frames: list[tuple[int, bytes]]) -> None:
        for kind, body in frames:
            self.stats["frames_in"] += 1
            if kind == KIND_RAFT:
                try:
                    msg = decode_message(body)
                except MessageDecodeError as exc:
                    raise FrameError(f"bad raft message: {exc}") from None
                if msg.frm != peer or msg.to != self.node_id:
                    raise FrameError(
                        f"raft message from {msg.frm!r} to {msg.to!r} on {peer}'s link"
                    )
                self.on_message(msg)
            elif kind >= KIND_USER_BASE:
                self.on_frame(peer, kind, body)
            else:
                raise FrameError(f"unexpected frame kind {kind}")
