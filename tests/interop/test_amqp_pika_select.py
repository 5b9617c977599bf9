"""pika SelectConnection (the callback adapter): a thousand confirmed publishes, then every
message consumed exactly once and in order."""

from __future__ import annotations

from typing import Any

import pika
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel

from tests.polymq_process import AmqpBroker, unique

N = 1000
TIMEOUT_S = 60


class Scenario:
    """connect -> channel -> confirm.select -> queue.declare -> publish N -> all confirmed ->
    consume N -> ack multiple -> close. Each step is the callback of the one before."""

    def __init__(self, url: str) -> None:
        self.queue = unique("select")
        self.confirmed: list[int] = []
        self.nacked: list[int] = []
        self.bodies: list[bytes] = []
        self.redelivered: list[bool] = []
        self.error: str | None = None
        self.done = False
        self.channel: Channel | None = None
        params = pika.URLParameters(url)
        self.conn = SelectConnection(
            params,
            on_open_callback=self.on_open,
            on_open_error_callback=self.on_open_error,
            on_close_callback=self.on_closed,
        )

    def run(self) -> None:
        self.conn.ioloop.call_later(TIMEOUT_S, self.on_timeout)
        self.conn.ioloop.start()

    def fail(self, message: str) -> None:
        if self.done:
            return
        self.error = self.error or message
        if self.conn.is_open:
            self.conn.close()  # on_closed stops the loop
        elif not self.conn.is_closing:
            self.conn.ioloop.stop()

    def on_timeout(self) -> None:
        self.fail(f"timed out: {len(self.confirmed)} confirmed, {len(self.bodies)} consumed of {N}")

    def on_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self.on_channel)

    def on_open_error(self, _conn: SelectConnection, err: Any) -> None:
        self.error = f"could not connect: {err!r}"
        self.conn.ioloop.stop()

    def on_closed(self, _conn: SelectConnection, reason: Any) -> None:
        if not self.done and self.error is None:
            self.error = f"connection closed early: {reason!r}"
        self.conn.ioloop.stop()

    def on_channel(self, channel: Channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(lambda _ch, reason: self.fail(f"channel closed: {reason}"))
        channel.confirm_delivery(ack_nack_callback=self.on_confirm, callback=self.on_confirm_ok)

    def on_confirm_ok(self, _frame: Any) -> None:
        assert self.channel is not None
        self.channel.queue_declare(self.queue, callback=self.on_declared)

    def on_declared(self, frame: Any) -> None:
        assert self.channel is not None
        assert frame.method.queue == self.queue
        for i in range(N):
            self.channel.basic_publish("", self.queue, b"%04d" % i)

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        tags = (
            range((self.confirmed[-1] if self.confirmed else 0) + 1, method.delivery_tag + 1)
            if method.multiple
            else [method.delivery_tag]
        )
        if method.NAME == "Basic.Nack":
            self.nacked.extend(tags)
            return
        self.confirmed.extend(tags)
        if len(self.confirmed) + len(self.nacked) == N:
            assert self.channel is not None
            self.channel.basic_qos(prefetch_count=100, callback=self.on_qos)

    def on_qos(self, _frame: Any) -> None:
        assert self.channel is not None
        self.channel.basic_consume(self.queue, self.on_message)

    def on_message(self, channel: Channel, method: Any, _props: Any, body: bytes) -> None:
        self.bodies.append(body)
        self.redelivered.append(method.redelivered)
        if len(self.bodies) % 50 == 0 or len(self.bodies) == N:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if len(self.bodies) == N:
            channel.queue_declare(self.queue, passive=True, callback=self.on_final_count)

    def on_final_count(self, frame: Any) -> None:
        self.final_ready = frame.method.message_count
        self.done = True
        self.conn.close()


def test_select_connection_thousand_confirmed_in_order(amqp_broker: AmqpBroker) -> None:
    scenario = Scenario(amqp_broker.url)
    try:
        scenario.run()
    finally:
        if scenario.conn.is_open:
            scenario.conn.close()
            scenario.conn.ioloop.call_later(10, scenario.conn.ioloop.stop)
            scenario.conn.ioloop.start()
        scenario.conn.ioloop.close()  # its wake-up socket pair
    assert scenario.error is None, scenario.error
    assert scenario.nacked == []
    assert sorted(scenario.confirmed) == list(range(1, N + 1))
    assert scenario.bodies == [b"%04d" % i for i in range(N)]
    assert not any(scenario.redelivered)
    assert scenario.final_ready == 0
