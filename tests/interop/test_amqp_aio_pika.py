"""aio-pika (asyncio) against the broker. The suite runs trio, so each test drives its own
asyncio loop with ``asyncio.run`` and bounds every await with ``asyncio.wait_for``."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq.abc
import pamqp.commands

from tests.polymq_process import AmqpBroker, unique

T = 10  # seconds per await


async def robust_round_trip(url: str) -> None:
    conn = await asyncio.wait_for(aio_pika.connect_robust(url, timeout=T), T)
    async with conn:
        channel = await asyncio.wait_for(conn.channel(), T)  # publisher confirms by default
        await channel.set_qos(prefetch_count=10)
        exchange = await channel.declare_exchange(
            unique("aio-direct"), aio_pika.ExchangeType.DIRECT, auto_delete=True
        )
        queue = await channel.declare_queue(unique("aio"))
        await queue.bind(exchange, routing_key="work")

        for i in range(20):
            confirmation = await asyncio.wait_for(
                exchange.publish(
                    aio_pika.Message(
                        b"job-%02d" % i,
                        headers={"n": i},
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key="work",
                ),
                T,
            )
            assert confirmation is not None and confirmation.delivery_tag == i + 1

        bodies: list[bytes] = []

        async def consume() -> None:
            async with queue.iterator() as it:
                async for message in it:
                    async with message.process():  # acks on exit
                        assert message.headers["n"] == len(bodies)
                        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                        bodies.append(message.body)
                    if len(bodies) == 15:
                        return

        await asyncio.wait_for(consume(), T)
        assert bodies == [b"job-%02d" % i for i in range(15)]

        rest = []
        for _ in range(5):
            message = await asyncio.wait_for(queue.get(fail=False, timeout=T), T)
            assert message is not None
            rest.append(message.body)
            await message.ack()
        assert rest == [b"job-%02d" % i for i in range(15, 20)]
        assert await asyncio.wait_for(queue.get(fail=False, timeout=T), T) is None

        # a mandatory publish nobody can route comes back as basic.return 312 NO_ROUTE
        returned = await asyncio.wait_for(
            exchange.publish(aio_pika.Message(b"x"), routing_key="nowhere", mandatory=True), T
        )
        assert isinstance(returned, aiormq.abc.DeliveredMessage)
        assert isinstance(returned.delivery, pamqp.commands.Basic.Return)
        assert returned.delivery.reply_code == 312
        assert returned.delivery.reply_text == "NO_ROUTE"
        assert returned.body == b"x"
        await queue.delete(if_unused=True, if_empty=True)


def test_aio_pika_connect_robust_publish_confirm_consume(amqp_broker: AmqpBroker) -> None:
    asyncio.run(asyncio.wait_for(robust_round_trip(amqp_broker.url), 60))
