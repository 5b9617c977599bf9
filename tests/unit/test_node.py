"""One node end to end through the core API: durable vs transient paths, restart recovery,
ordering, snapshots, timers and error replies. Real segmented log on a temp directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.api import COMPLETE, D_BODY, D_ID, D_REDELIVERED, REQUEUE, Broker, BrokerError
from broker.config import Config
from broker.core import commands as C
from broker.node import Node, Pending

PERSISTENT = {"delivery_mode": 2}
TRANSIENT: dict[str, Any] = {}


class Sink:
    def __init__(self) -> None:
        self.deliveries: list[Any] = []
        self.cancels: list[str] = []
        self._changed = trio.Event()

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        self.deliveries.extend(deliveries)
        self._changed.set()
        self._changed = trio.Event()

    def cancelled(self, tag: str) -> None:
        self.cancels.append(tag)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Any]:
        with trio.fail_after(timeout):
            while len(self.deliveries) < n:
                await self._changed.wait()
        return self.deliveries

    def bodies(self) -> list[bytes]:
        return [d[D_BODY] for d in self.deliveries]


@asynccontextmanager
async def running(data_dir: Path, **overrides: Any) -> AsyncIterator[Broker]:
    config = Config(data_dir=str(data_dir), **overrides)
    node = Node(config)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(node.run)
        try:
            yield Broker(node)
        finally:
            node.stop()
            with trio.fail_after(10):
                await node.wait_stopped()


async def test_durable_state_survives_restart_transient_does_not(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await broker.declare_queue("dq", durable=True)
        await broker.declare_queue("tq", durable=False)
        await broker.declare_exchange("dx", "topic", durable=True)
        await broker.bind("dx", "dq", "a.*")
        batch = [("a.b", PERSISTENT, b"p1"), ("a.c", TRANSIENT, b"t1"), ("a.d", PERSISTENT, b"p2")]
        result = await broker.publish("dx", batch)
        assert result.routed == [1, 1, 1]
        await broker.publish("", [("tq", PERSISTENT, b"tq1")])
        assert broker.queue_info("dq")["messages_ready"] == 3
        assert broker.node.commands_logged >= 4
    async with running(tmp_path) as broker:
        assert broker.queue_info("tq") is None
        info = broker.queue_info("dq")
        assert info is not None and info["messages_ready"] == 2
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "dq", tag="c1")
        await sink.wait_for(2)
        assert sink.bodies() == [b"p1", b"p2"]
        # the topic binding survived too
        await broker.publish("dx", [("a.z", PERSISTENT, b"p3")])
        await sink.wait_for(3)
        assert sink.bodies()[-1] == b"p3"


async def test_acked_messages_stay_acked_unacked_are_redelivered_after_restart(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as broker:
        await broker.declare_queue("q", durable=True)
        await broker.publish("", [("q", PERSISTENT, b"m%d" % i) for i in range(4)])
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "q", tag="c", prefetch=10)
        delivered = await sink.wait_for(4)
        assert [d[D_REDELIVERED] for d in delivered] == [False] * 4
        await broker.settle(session, [delivered[0][D_ID], delivered[2][D_ID]], COMPLETE)
        # m1 and m3 stay unacked when the node stops
    async with running(tmp_path) as broker:
        assert broker.queue_info("q")["messages_ready"] == 2
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "q", tag="c")
        delivered = await sink.wait_for(2)
        assert sink.bodies() == [b"m1", b"m3"]
        assert all(d[D_REDELIVERED] for d in delivered)


async def test_order_is_kept_between_logged_and_transient_publishes(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await broker.declare_queue("q", durable=True)
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "q", tag="c", no_ack=True)
        batch = [("q", PERSISTENT if i % 3 else TRANSIENT, b"%d" % i) for i in range(30)]
        # without waiting: the transient runs queue behind the pending durable ones
        pendings = broker.publish_nowait("", batch)
        assert len(pendings) > 3
        await sink.wait_for(30)
        assert sink.bodies() == [b"%d" % i for i in range(30)]


async def test_requeue_and_session_close_return_messages(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await broker.declare_queue("q", durable=True)
        await broker.publish("", [("q", PERSISTENT, b"a"), ("q", PERSISTENT, b"b")])
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "q", tag="c", prefetch=1)
        first = (await sink.wait_for(1))[0]
        assert first[D_BODY] == b"a"
        await broker.settle(session, [first[D_ID]], REQUEUE)
        again = (await sink.wait_for(2))[1]
        assert again[D_BODY] == b"a" and again[D_REDELIVERED]
        await broker.close_session(session)
        info = broker.queue_info("q")
        assert info["messages_ready"] == 2 and info["consumers"] == 0


async def test_errors_carry_amqp_codes(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        with pytest.raises(BrokerError) as err:
            await broker.declare_queue("missing", passive=True)
        assert err.value.code == 404
        await broker.declare_queue("q", durable=True)
        with pytest.raises(BrokerError) as err:
            await broker.declare_queue("q", durable=False)
        assert err.value.code == 406
        with pytest.raises(BrokerError) as err:
            await broker.declare_exchange("amq.custom", "direct")
        assert err.value.code == 403
        with pytest.raises(BrokerError) as err:
            await broker.publish("no-such-exchange", [("k", PERSISTENT, b"x")])
        assert err.value.code == 404
        # a failed command changes nothing and the node keeps serving
        assert broker.queue_info("q")["durable"] is True


async def test_snapshot_compacts_and_restores(tmp_path: Path) -> None:
    async with running(tmp_path, segment_bytes_max=4096) as broker:
        await broker.declare_queue("q", durable=True)
        for i in range(50):
            await broker.publish("", [("q", PERSISTENT, b"x" * 200 + b"%d" % i)])
        index = await broker.node.snapshot_now()
        assert index == broker.node.applied_index
        assert broker.node.statistics()["log"]["first_index"] > 1
        await broker.publish("", [("q", PERSISTENT, b"after")])
    async with running(tmp_path) as broker:
        assert broker.node.snapshot_index == index
        info = broker.queue_info("q")
        assert info["messages_ready"] == 51
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "q", tag="c", no_ack=True)
        await sink.wait_for(51)
        assert sink.bodies()[0].endswith(b"0") and sink.bodies()[-1] == b"after"


async def test_ttl_dead_letters_through_the_timer(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await broker.declare_queue("dead", durable=True)
        await broker.declare_queue(
            "short",
            durable=True,
            arguments={
                "x-message-ttl": 30,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dead",
            },
        )
        sink = Sink()
        session = broker.open_session(sink)
        await broker.consume(session, "dead", tag="c", no_ack=True)
        await broker.publish("", [("short", PERSISTENT, b"expiring")])
        delivered = await sink.wait_for(1)
        props = delivered[0][5]
        assert delivered[0][D_BODY] == b"expiring"
        assert props["headers"]["x-death"][0]["reason"] == "expired"
        assert broker.queue_info("short")["messages_ready"] == 0


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
async def test_every_fsync_policy_recovers_a_clean_shutdown(tmp_path: Path, fsync: str) -> None:
    async with running(tmp_path, fsync=fsync) as broker:
        await broker.declare_queue("q", durable=True)
        await broker.publish("", [("q", PERSISTENT, b"%d" % i) for i in range(100)])
    async with running(tmp_path, fsync=fsync) as broker:
        assert broker.queue_info("q")["messages_ready"] == 100


async def test_pipelined_declare_then_publish_is_durable(tmp_path: Path) -> None:
    """A client that pipelines queue.declare and a persistent publish without waiting gets the
    message logged: its path is decided once the declare has been applied."""
    async with running(tmp_path) as broker:
        node = broker.node
        declared = Pending()
        node.submit(C.cmd_declare_queue("/", "pq", durable=True), declared)
        pendings = broker.publish_nowait("", [("pq", PERSISTENT, b"kept")])
        with trio.fail_after(5):
            await pendings[-1][0].wait()
            assert (await declared.wait())[0] == "pq"
    async with running(tmp_path) as broker:
        assert broker.queue_info("pq")["messages_ready"] == 1


async def test_pipeline_limit_refuses_with_resource_error_and_loses_nothing(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, pipeline_entries_max=2) as broker:
        await broker.declare_queue("q", durable=True)
        first = broker.publish_nowait("", [("q", PERSISTENT, b"1")])
        second = broker.publish_nowait("", [("q", PERSISTENT, b"2")])
        with pytest.raises(BrokerError) as err:
            broker.publish_nowait("", [("q", PERSISTENT, b"3")])
        assert err.value.code == 506 and "pipeline_entries_max=2" in err.value.text
        with trio.fail_after(5):
            await first[0][0].wait()
            await second[0][0].wait()
        await broker.publish("", [("q", PERSISTENT, b"4")])
        assert broker.queue_info("q")["messages_ready"] == 3
