"""storage/raft/transport.py: framing, the handshake, hostile input on one link that leaves the
other links alone, bounded queues and reconnects."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from storage.raft.core import Message, MsgKind
from storage.raft.transport import (
    KIND_HELLO_OK,
    KIND_REFUSE,
    KIND_USER_BASE,
    FrameError,
    FrameReader,
    PeerTransport,
    TransportLimits,
    encode_frame,
    encode_hello,
)

WAIT_S = 10


def test_frame_reader_splits_and_joins() -> None:
    raw = encode_frame(20, b"abc") + encode_frame(21, b"") + encode_frame(22, b"x" * 100)
    reader = FrameReader(1000)
    got = []
    for i in range(len(raw)):
        got += reader.feed(raw[i : i + 1])
    assert got == [(20, b"abc"), (21, b""), (22, b"x" * 100)]


def test_frame_reader_refuses_oversize_and_empty() -> None:
    with pytest.raises(FrameError, match="frame_bytes_max"):
        FrameReader(100).feed(struct.pack("<I", 100 << 20))
    with pytest.raises(FrameError, match="kind"):
        FrameReader(100).feed(struct.pack("<I", 0))


class Node:
    def __init__(self, node_id: str, peers: dict[str, tuple[str, int]], **kw: object) -> None:
        self.messages: list[Message] = []
        self.frames: list[tuple[str, int, bytes]] = []
        self.unreachable: list[str] = []
        self.got = trio.Event()
        self.transport = PeerTransport(
            node_id,
            str(kw.get("cluster_id", "c1")),
            peers,
            on_message=self._msg,
            on_frame=self._frame,
            on_unreachable=self.unreachable.append,
            limits=TransportLimits(reconnect_backoff_ms_min=10, reconnect_backoff_ms_max=50),
        )

    def _msg(self, m: Message) -> None:
        self.messages.append(m)
        self.got.set()

    def _frame(self, peer: str, kind: int, body: bytes) -> None:
        self.frames.append((peer, kind, body))
        self.got.set()

    async def wait(self, pred: object) -> None:
        with trio.fail_after(WAIT_S):
            while not pred():  # type: ignore[operator]
                self.got = trio.Event()
                await self.got.wait()


async def _wait_connected(t: PeerTransport, peer: str) -> None:
    with trio.fail_after(WAIT_S):
        while not t.connected(peer):  # noqa: ASYNC110 - polling a plain attribute
            await trio.sleep(0.01)


@asynccontextmanager
async def cluster(
    ids: tuple[str, ...], cluster_ids: dict[str, str] | None = None
) -> AsyncIterator[tuple[dict[str, Node], dict[str, int]]]:
    listeners = {i: (await trio.open_tcp_listeners(0, host="127.0.0.1")) for i in ids}
    ports = {i: ls[0].socket.getsockname()[1] for i, ls in listeners.items()}
    peers = {i: ("127.0.0.1", ports[i]) for i in ids}
    nodes = {i: Node(i, peers, cluster_id=(cluster_ids or {}).get(i, "c1")) for i in ids}
    async with trio.open_nursery() as nursery:
        for i in ids:
            await nursery.start(nodes[i].transport.serve, listeners[i])
        yield nodes, ports
        nursery.cancel_scope.cancel()


def _append(frm: str, to: str, n: int) -> Message:
    return Message(MsgKind.APPEND, to, frm, 3, index=n, entries=((3, b"d%d" % n),))


async def test_messages_and_user_frames_flow() -> None:
    async with cluster(("a", "b")) as (nodes, _):
        a, b = nodes["a"], nodes["b"]
        await _wait_connected(a.transport, "b")
        for n in range(100):
            assert a.transport.send_message(_append("a", "b", n))
        assert a.transport.send("b", KIND_USER_BASE, b"hello")
        await b.wait(lambda: len(b.messages) == 100 and b.frames)
        assert [m.index for m in b.messages] == list(range(100))
        assert b.frames == [("a", KIND_USER_BASE, b"hello")]


async def test_send_to_a_down_peer_is_dropped_and_reported() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    free = await trio.open_tcp_listeners(0, host="127.0.0.1")
    dead_port = free[0].socket.getsockname()[1]
    await free[0].aclose()
    port = listeners[0].socket.getsockname()[1]
    node = Node("a", {"a": ("127.0.0.1", port), "b": ("127.0.0.1", dead_port)})
    async with trio.open_nursery() as nursery:
        await nursery.start(node.transport.serve, listeners)
        assert not node.transport.send_message(_append("a", "b", 1))
        assert node.unreachable == ["b"]
        assert node.transport.down_for_s("b") >= 0
        nursery.cancel_scope.cancel()


async def _raw_connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _read_frame(stream: trio.SocketStream) -> tuple[int, bytes] | None:
    reader = FrameReader(1 << 20)
    with trio.fail_after(WAIT_S):
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                return None
            frames = reader.feed(data)
            if frames:
                return frames[0]


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (encode_hello("other", "a", "b"), "cluster id"),
        (encode_hello("c1", "zz", "b"), "not a peer"),
        (encode_hello("c1", "a", "a"), "this node is"),
    ],
)
async def test_handshake_mismatch_is_refused(hello: bytes, reason: str) -> None:
    async with cluster(("a", "b")) as (nodes, ports):
        stream = await _raw_connect(ports["b"])
        await stream.send_all(hello)
        frame = await _read_frame(stream)
        assert frame is not None and frame[0] == KIND_REFUSE
        assert reason in frame[1].decode()
        await stream.aclose()
        assert nodes["b"].transport.stats["refused"] == 1


async def test_cluster_id_mismatch_never_connects() -> None:
    async with cluster(("a", "b"), {"b": "c2"}) as (nodes, _):
        with trio.move_on_after(0.3):
            await _wait_connected(nodes["a"].transport, "b")
        assert not nodes["a"].transport.connected("b")
        assert not nodes["a"].transport.send_message(_append("a", "b", 1))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff" + b"x" * 64,  # 4 GiB length prefix: oversize
        struct.pack("<I", 0),  # a frame with no kind byte
        encode_frame(4, b"\xc1not msgpack"),  # a Raft frame that does not decode
        encode_frame(4, b"\x93\x01\x02\x03"),  # msgpack, but not a message
        encode_frame(2, b""),  # a handshake kind after the handshake
    ],
)
async def test_garbage_closes_only_its_connection(garbage: bytes) -> None:
    async with cluster(("a", "b", "c")) as (nodes, ports):
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        await _wait_connected(c.transport, "b")
        stream = await _raw_connect(ports["b"])
        await stream.send_all(encode_hello("c1", "a", "b"))
        assert await _read_frame(stream) == (KIND_HELLO_OK, b"")
        await stream.send_all(garbage)
        assert await _read_frame(stream) is None  # closed by b
        await stream.aclose()
        assert b.transport.stats["bad_frames"] == 1
        # the other links still carry messages
        assert c.transport.send_message(_append("c", "b", 7))
        await _wait_connected(a.transport, "b")
        assert a.transport.send_message(_append("a", "b", 8))
        await b.wait(lambda: {m.index for m in b.messages} >= {7, 8})


async def test_spoofed_sender_is_refused() -> None:
    async with cluster(("a", "b", "c")) as (nodes, ports):
        stream = await _raw_connect(ports["b"])
        await stream.send_all(encode_hello("c1", "a", "b"))
        assert await _read_frame(stream) == (KIND_HELLO_OK, b"")
        from storage.raft.core import encode_message

        await stream.send_all(encode_frame(4, encode_message(_append("c", "b", 1))))
        assert await _read_frame(stream) is None
        await stream.aclose()
        assert not nodes["b"].messages


async def test_full_queue_drops_and_reports() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    # a peer that accepts and answers the handshake, then never reads
    sink = await trio.open_tcp_listeners(0, host="127.0.0.1")
    peers = {
        "a": ("127.0.0.1", listeners[0].socket.getsockname()[1]),
        "b": ("127.0.0.1", sink[0].socket.getsockname()[1]),
    }
    node = Node("a", peers)
    node.transport.limits = TransportLimits(send_queue_frames_max=4)
    node.transport._links["b"].send, node.transport._links["b"].recv = trio.open_memory_channel[
        bytes
    ](4)

    async def stalled(stream: trio.SocketStream) -> None:
        await _read_frame(stream)
        await stream.send_all(encode_frame(KIND_HELLO_OK, b""))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, stalled, sink)
        await nursery.start(node.transport.serve, listeners)
        await _wait_connected(node.transport, "b")
        big = Message(MsgKind.SNAPSHOT, "b", "a", 1, data=b"x" * (1 << 20))
        results = [node.transport.send_message(big) for _ in range(64)]
        assert not all(results)
        assert "b" in node.unreachable
        nursery.cancel_scope.cancel()


async def test_reconnects_after_the_peer_restarts() -> None:
    la = await trio.open_tcp_listeners(0, host="127.0.0.1")
    lb = await trio.open_tcp_listeners(0, host="127.0.0.1")
    pb = lb[0].socket.getsockname()[1]
    peers = {"a": ("127.0.0.1", la[0].socket.getsockname()[1]), "b": ("127.0.0.1", pb)}
    a = Node("a", peers)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.transport.serve, la)
        b1 = Node("b", peers)
        async with trio.open_nursery() as inner:
            await inner.start(b1.transport.serve, lb)
            await _wait_connected(a.transport, "b")
            inner.cancel_scope.cancel()
        with trio.fail_after(WAIT_S):
            while a.transport.connected("b"):  # noqa: ASYNC110 - polling a plain attribute
                await trio.sleep(0.01)
        lb2 = await trio.open_tcp_listeners(pb, host="127.0.0.1")
        b2 = Node("b", peers)
        await nursery.start(b2.transport.serve, lb2)
        await _wait_connected(a.transport, "b")
        assert a.transport.send_message(_append("a", "b", 5))
        await b2.wait(lambda: b2.messages)
        nursery.cancel_scope.cancel()
