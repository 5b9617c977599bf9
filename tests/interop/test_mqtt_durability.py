"""MQTT state that must survive ``kill -9`` of the broker: retained messages and persistent
sessions with the QoS 1 messages queued for them (3.1.1 [MQTT-3.1.2-4/5]; 5.0 4.1 "the Session
State in the Server"). polymq logs QoS 1/2 messages and session state before it acknowledges
them (PUBACK only after the Raft entry commits), so none may be lost. Runs only against polymq:
a reference broker cannot be killed from here (Mosquitto's test instance runs with
``persistence false``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.interop.conftest import mqtt_clients
from tests.interop.mqtt_helpers import V5, VERSION_IDS, VERSIONS, Client, unique_id, unique_topic
from tests.polymq_process import PolymqProcess

NewClient = Callable[..., Client]


@pytest.fixture
def clients(mqtt_polymq: PolymqProcess) -> Iterator[NewClient]:
    with mqtt_clients(mqtt_polymq) as make:
        yield make


def expiry(version: int) -> int | None:
    return 3600 if version == V5 else None


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_offline_session_keeps_100_qos1_messages_across_kill_9(
    mqtt_polymq: PolymqProcess, clients: NewClient, version: int
) -> None:
    topic = unique_topic("durable")
    client_id = unique_id("durable")
    sub = clients(client_id, version, clean=False)
    sub.connect(session_expiry=expiry(version))
    assert sub.subscribe(topic, 1) == [1]
    sub.disconnect()

    pub = clients(unique_id("durable-pub"), version)
    pub.connect()
    bodies = [f"m{i:03}".encode() for i in range(100)]
    for body in bodies:
        pub.publish(topic, body, 1)  # waits for the PUBACK: the message is committed
    pub.stop()

    mqtt_polymq.kill9()
    mqtt_polymq.start()

    again = clients(client_id, version, clean=False)
    assert again.connect(session_expiry=expiry(version)).session_present
    got = again.expect_topic(topic, 100, timeout=30)
    again.quiet(0.5)
    assert [m.payload for m in got] == bodies
    assert all(m.qos == 1 for m in got)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_unacked_deliveries_come_back_after_kill_9(
    mqtt_polymq: PolymqProcess, clients: NewClient, version: int
) -> None:
    """Delivered but unacknowledged QoS 1 messages are sent again after a crash, DUP set."""
    topic = unique_topic("unacked")
    client_id = unique_id("unacked")
    sub = clients(client_id, version, clean=False, manual_ack=True)
    sub.connect(session_expiry=expiry(version))
    sub.subscribe(topic, 1)
    pub = clients(unique_id("unacked-pub"), version)
    pub.connect()
    for i in range(10):
        pub.publish(topic, f"{i}".encode(), 1)
    sub.expect_topic(topic, 10)
    pub.stop()
    sub.stop()

    mqtt_polymq.kill9()
    mqtt_polymq.start()

    again = clients(client_id, version, clean=False)
    assert again.connect(session_expiry=expiry(version)).session_present
    got = again.expect_topic(topic, 10)
    assert [m.payload for m in got] == [f"{i}".encode() for i in range(10)]


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_retained_messages_survive_kill_9(
    mqtt_polymq: PolymqProcess, clients: NewClient, version: int
) -> None:
    base = unique_topic("retain-durable")
    pub = clients(unique_id("rd-pub"), version)
    pub.connect()
    pub.publish(f"{base}/kept", b"kept", 1, retain=True)
    pub.publish(f"{base}/replaced", b"old", 1, retain=True)
    pub.publish(f"{base}/replaced", b"new", 1, retain=True)
    pub.publish(f"{base}/cleared", b"gone", 1, retain=True)
    pub.publish(f"{base}/cleared", b"", 1, retain=True)
    pub.stop()

    mqtt_polymq.kill9()
    mqtt_polymq.start()

    sub = clients(unique_id("rd-sub"), version)
    sub.connect()
    sub.subscribe(f"{base}/#", 1)
    sub.expect(2)
    sub.quiet(0.5)
    assert {(m.topic, m.payload, m.retain) for m in sub.messages} == {
        (f"{base}/kept", b"kept", True),
        (f"{base}/replaced", b"new", True),
    }


def test_graceful_restart_keeps_sessions_and_retained(
    mqtt_polymq: PolymqProcess, clients: NewClient
) -> None:
    """SIGTERM and start again: the same state as after a crash."""
    topic = unique_topic("restart")
    watcher_id = unique_id("restart-watch")
    watcher = clients(watcher_id, V5, clean=False)
    watcher.connect(session_expiry=3600)
    watcher.subscribe(f"{topic}/#", 1)
    watcher.disconnect()
    holder = clients(unique_id("restart-holder"), V5)
    holder.connect()
    holder.publish(f"{topic}/retained", b"r", 1, retain=True)
    holder.publish(f"{topic}/queued", b"q", 1)

    mqtt_polymq.restart()
    holder.stop()

    again = clients(watcher_id, V5, clean=False)
    assert again.connect(session_expiry=3600).session_present
    got = again.expect(2, timeout=20)
    assert sorted((m.topic, m.payload) for m in got) == [
        (f"{topic}/queued", b"q"),
        (f"{topic}/retained", b"r"),
    ]
    late = clients(unique_id("restart-late"), V5)
    late.connect()
    late.subscribe(f"{topic}/#", 1)
    (msg,) = late.expect(1)
    assert (msg.topic, msg.payload, msg.retain) == (f"{topic}/retained", b"r", True)
