"""QoS 0, 1 and 2 with paho-mqtt, 3.1.1 and 5: the QoS a subscriber gets, the QoS 2 handshake
exactly once, redelivery with DUP to a persistent session that did not acknowledge, and messages
queued for an offline persistent session.

Statement numbers are those of MQTT 3.1.1 unless marked as 5.0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from tests.interop.mqtt_helpers import (
    V5,
    VERSION_IDS,
    VERSIONS,
    Client,
    unique_id,
    unique_topic,
)
from tests.polymq_process import MqttBroker

NewClient = Callable[..., Client]


def need(broker: MqttBroker, version: int, *features: str) -> None:
    if version == V5:
        broker.require("v5")
    for feature in features:
        broker.require(feature)


def session_expiry(version: int) -> int | None:
    return 300 if version == V5 else None


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_subscriber_gets_the_minimum_of_publish_and_subscription_qos(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """[MQTT-3.8.4-6] granted QoS <= requested; 4.3 / 3.3.5: a message is delivered at
    min(publish QoS, granted QoS). Every pair of the 3 x 3 table, both directions (each client
    publishes and subscribes)."""
    need(mqtt_broker, version, "qos2")
    topic = unique_topic("minqos")
    subs = []
    for sub_qos in (0, 1, 2):
        sub = mqtt_client(unique_id(f"minqos-s{sub_qos}"), version)
        sub.connect()
        assert sub.subscribe(topic, sub_qos) == [sub_qos]
        subs.append(sub)
    for pub_qos, publisher in enumerate(subs):
        publisher.publish(topic, f"q{pub_qos}".encode(), pub_qos)
    for sub_qos, sub in enumerate(subs):
        got = {m.payload: m.qos for m in sub.expect_topic(topic, 3)}
        assert got == {f"q{p}".encode(): min(p, sub_qos) for p in (0, 1, 2)}, sub_qos
        sub.quiet(0.3)  # and nothing more


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_qos2_exactly_once_with_the_four_packet_flow(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """4.3.3: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP on both legs; every message delivered once."""
    need(mqtt_broker, version, "qos2")
    topic = unique_topic("qos2")
    sub = mqtt_client(unique_id("qos2-sub"), version)
    sub.connect()
    assert sub.subscribe(topic, 2) == [2]
    pub = mqtt_client(unique_id("qos2-pub"), version)
    pub.connect()
    n = 50
    for i in range(n):
        rc = pub.publish(topic, f"{i}".encode(), 2)
        assert rc in (0x00, 0x10) if version == V5 else rc == 0
    got = sub.expect_topic(topic, n)
    sub.quiet(0.5)
    assert [m.payload for m in sub.messages] == [f"{i}".encode() for i in range(n)]
    assert all(m.qos == 2 and not m.dup for m in got)
    pub_log = " | ".join(pub.log)
    sub_log = " | ".join(sub.log)
    assert pub_log.count("Received PUBREC") == n and pub_log.count("Sending PUBREL") == n
    assert sub_log.count("Sending PUBREC") == n and sub_log.count("Received PUBREL") == n
    assert sub_log.count("Sending PUBCOMP") == n


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_unacknowledged_qos1_is_redelivered_with_dup_on_reconnect(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """[MQTT-4.4.0-1]: on reconnect with a stored session the server resends unacknowledged
    QoS 1 PUBLISH packets with their original packet identifiers and DUP=1 [MQTT-3.3.1-1];
    once acknowledged they are not sent again."""
    need(mqtt_broker, version)
    topic = unique_topic("dup")
    client_id = unique_id("dup")
    sub = mqtt_client(client_id, version, clean=False, manual_ack=True)
    sub.connect(session_expiry=session_expiry(version))
    assert sub.subscribe(topic, 1) == [1]
    pub = mqtt_client(unique_id("dup-pub"), version)
    pub.connect()
    bodies = [f"m{i}".encode() for i in range(5)]
    for body in bodies:
        pub.publish(topic, body, 1)
    first = sub.expect_topic(topic, 5)
    assert [m.payload for m in first] == bodies and not any(m.dup for m in first)
    sub.kill()  # no PUBACK was ever sent

    again = mqtt_client(client_id, version, clean=False, manual_ack=True)
    assert again.connect(session_expiry=session_expiry(version)).session_present
    second = again.expect_topic(topic, 5)
    assert [m.payload for m in second] == bodies
    assert all(m.dup and m.qos == 1 for m in second)
    assert [m.mid for m in second] == [m.mid for m in first]
    for msg in second:
        again.ack(msg)
    again.quiet(0.3)
    again.disconnect()

    third = mqtt_client(client_id, version, clean=False)
    assert third.connect(session_expiry=session_expiry(version)).session_present
    third.quiet(0.7)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_offline_persistent_session_gets_qos1_and_qos2_on_reconnect(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """[MQTT-3.1.2-5]: QoS 1 and 2 messages for a disconnected persistent session are stored
    and delivered on reconnect, in order per QoS [MQTT-4.6.0-6] (QoS 0 ones may be dropped)."""
    need(mqtt_broker, version, "qos2")
    topic = unique_topic("offline")
    client_id = unique_id("offline")
    sub = mqtt_client(client_id, version, clean=False)
    sub.connect(session_expiry=session_expiry(version))
    assert sub.subscribe(topic, 2) == [2]
    sub.disconnect()

    pub = mqtt_client(unique_id("offline-pub"), version)
    pub.connect()
    sent: dict[int, list[bytes]] = {1: [], 2: []}
    for i in range(40):
        qos = 1 + i % 2
        body = f"q{qos}-{i}".encode()
        pub.publish(topic, body, qos)
        sent[qos].append(body)
    pub.publish(topic, b"q0", 0)

    again = mqtt_client(client_id, version, clean=False)
    assert again.connect(session_expiry=session_expiry(version)).session_present
    again.expect(40, where=lambda m: m.topic == topic and m.qos > 0)
    again.quiet(0.5)
    for qos in (1, 2):
        assert [m.payload for m in again.messages if m.qos == qos] == sent[qos]
    counts = Counter(m.payload for m in again.messages)
    assert max(counts.values()) == 1, "duplicates"


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_many_qos1_messages_none_lost_or_duplicated(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """1,000 QoS 1 messages through one subscriber, published without waiting for each PUBACK
    (the client keeps several in flight): all delivered once, in order."""
    need(mqtt_broker, version)
    topic = unique_topic("many")
    sub = mqtt_client(unique_id("many-sub"), version)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = mqtt_client(unique_id("many-pub"), version)
    pub.connect()
    n = 1000
    for i in range(n):
        pub.publish(topic, f"{i}".encode(), 1, wait=(i == n - 1), timeout=30)
    got = sub.expect_topic(topic, n, timeout=30)
    assert [m.payload for m in got] == [f"{i}".encode() for i in range(n)]
