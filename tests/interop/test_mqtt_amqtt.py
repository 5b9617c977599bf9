"""amqtt's asyncio ``MQTTClient`` (MQTT 3.1.1) against the broker: connect, subscribe, publish
at QoS 0, 1 and 2, receive. Each test runs its own event loop with ``asyncio.run`` and puts a
deadline on every await."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from amqtt.client import MQTTClient
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2

from tests.interop.mqtt_helpers import V311, Client, unique_id, unique_topic
from tests.polymq_process import MqttBroker

T = TypeVar("T")
STEP_S = 10.0


async def bounded(aw: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(aw, STEP_S)
    except TimeoutError:
        raise AssertionError(f"amqtt: {what} did not finish within {STEP_S} s") from None


def url(broker: MqttBroker) -> str:
    return f"mqtt://{broker.host}:{broker.mqtt_port}/"


def new_client(client_id: str, **config: Any) -> MQTTClient:
    return MQTTClient(client_id=client_id, config={"auto_reconnect": False, **config})


@pytest.mark.parametrize("qos", [QOS_0, QOS_1, QOS_2])
def test_amqtt_publish_and_receive(mqtt_broker: MqttBroker, qos: int) -> None:
    if qos == QOS_2:
        mqtt_broker.require("qos2")
    topic = unique_topic(f"amqtt-q{qos}")

    async def scenario() -> list[tuple[str, bytes, int]]:
        sub = new_client(unique_id("amqtt-sub"))
        pub = new_client(unique_id("amqtt-pub"))
        await bounded(sub.connect(url(mqtt_broker)), "subscriber connect")
        await bounded(pub.connect(url(mqtt_broker)), "publisher connect")
        try:
            granted = await bounded(sub.subscribe([(topic, qos)]), "subscribe")
            assert granted == [qos]
            for i in range(5):
                await bounded(pub.publish(topic, f"{i}".encode(), qos=qos), "publish")
            got = []
            for _ in range(5):
                msg = await bounded(sub.deliver_message(), "deliver_message")
                assert msg is not None
                got.append((msg.topic, bytes(msg.data), msg.qos))
            return got
        finally:
            await bounded(pub.disconnect(), "publisher disconnect")
            await bounded(sub.disconnect(), "subscriber disconnect")

    got = asyncio.run(scenario())
    assert got == [(topic, f"{i}".encode(), qos) for i in range(5)]


def test_amqtt_and_paho_talk_to_each_other(mqtt_broker: MqttBroker) -> None:
    """An amqtt publisher and a paho subscriber (and back) share one topic space."""
    topic = unique_topic("amqtt-paho")
    paho = Client(mqtt_broker, unique_id("paho"), V311)
    paho.connect()
    try:
        paho.subscribe(f"{topic}/to-paho", 1)

        async def scenario() -> bytes:
            client = new_client(unique_id("amqtt"))
            await bounded(client.connect(url(mqtt_broker)), "connect")
            try:
                await bounded(client.subscribe([(f"{topic}/to-amqtt", QOS_1)]), "subscribe")
                await bounded(client.publish(f"{topic}/to-paho", b"hi paho", qos=QOS_1), "pub")
                await asyncio.to_thread(paho.expect_topic, f"{topic}/to-paho")
                await asyncio.to_thread(paho.publish, f"{topic}/to-amqtt", b"hi amqtt", 1)
                msg = await bounded(client.deliver_message(), "deliver_message")
                assert msg is not None
                return bytes(msg.data)
            finally:
                await bounded(client.disconnect(), "disconnect")

        assert asyncio.run(scenario()) == b"hi amqtt"
        assert paho.messages[0].payload == b"hi paho"
    finally:
        paho.disconnect()


def test_amqtt_retained_message_on_subscribe(mqtt_broker: MqttBroker) -> None:
    mqtt_broker.require("retain")
    topic = unique_topic("amqtt-retain")

    async def scenario() -> tuple[bytes, bool]:
        pub = new_client(unique_id("amqtt-rpub"))
        await bounded(pub.connect(url(mqtt_broker)), "connect")
        try:
            await bounded(pub.publish(topic, b"kept", qos=QOS_1, retain=True), "publish")
            sub = new_client(unique_id("amqtt-rsub"))
            await bounded(sub.connect(url(mqtt_broker)), "connect")
            try:
                await bounded(sub.subscribe([(topic, QOS_1)]), "subscribe")
                msg = await bounded(sub.deliver_message(), "deliver_message")
                assert msg is not None
                return bytes(msg.data), bool(msg.publish_packet.retain_flag)
            finally:
                await bounded(sub.disconnect(), "disconnect")
        finally:
            await bounded(pub.publish(topic, b"", qos=QOS_1, retain=True), "clear")
            await bounded(pub.disconnect(), "disconnect")

    assert asyncio.run(scenario()) == (b"kept", True)
