"""MQTT connections and sessions with paho-mqtt, 3.1.1 and 5: connect and disconnect, login,
clean and persistent sessions with the session present flag, assigned client identifiers,
keepalive, and session takeover.

Statement numbers are those of the OASIS standards: ``[MQTT-x.y.z-n]`` of MQTT 3.1.1 unless
marked as 5.0.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from paho.mqtt.packettypes import PacketTypes

from tests.interop.mqtt_helpers import (
    RC_BAD_USER_NAME_OR_PASSWORD,
    RC_SESSION_TAKEN_OVER,
    V5,
    V311,
    VERSION_IDS,
    VERSIONS,
    Client,
    props,
    unique_id,
    unique_topic,
)
from tests.polymq_process import MqttBroker

NewClient = Callable[..., Client]


def persistent(make: NewClient, client_id: str, version: int) -> tuple[Client, int | None]:
    """A client for a persistent session, and the session expiry its CONNECT must carry."""
    return make(client_id, version, clean=False), (300 if version == V5 else None)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_connect_publish_receive_disconnect(mqtt_client: NewClient, version: int) -> None:
    topic = unique_topic("hello")
    client = mqtt_client(unique_id("hello"), version)
    connack = client.connect()
    assert connack.reason_code == 0 and not connack.session_present
    assert client.subscribe(topic, 1) == [1]
    client.publish(topic, b"hello", 1)
    (msg,) = client.expect_topic(topic)
    assert (msg.payload, msg.qos, msg.retain, msg.dup) == (b"hello", 1, False, False)
    client.disconnect()
    assert client.disconnected is not None and not client.disconnected.by_server


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_default_user_guest_guest_is_accepted(mqtt_client: NewClient, version: int) -> None:
    client = mqtt_client(unique_id("guest"), version, username="guest", password="guest")
    assert client.connect().reason_code == 0


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_wrong_password_is_refused(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """3.1.1 CONNACK return code 4 "bad user name or password" (3.2.2.3); 5.0 reason code 0x86
    (3.2.2.2), then the server closes the connection [MQTT-3.2.2-5]."""
    mqtt_broker.require("auth")
    if version == V5:
        mqtt_broker.require("v5")
    client = mqtt_client(unique_id("badpw"), version, username="guest", password="wrong")
    connack = client.connect(expect_success=False)
    expected = RC_BAD_USER_NAME_OR_PASSWORD if version == V5 else 4
    # paho reports a 3.1.1 return code 4 as its 5.0 equivalent 0x86
    assert connack.reason_code in (expected, RC_BAD_USER_NAME_OR_PASSWORD)
    client.wait_disconnected()


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_session_present_flag_follows_the_session(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """[MQTT-3.2.2-1] clean session -> session present 0; [MQTT-3.2.2-2] a stored session ->
    1; [MQTT-3.2.2-3] no stored session -> 0. 5.0: Clean Start 0 with Session Expiry 0 keeps no
    session past the connection (3.1.2.11.2)."""
    if version == V5:
        mqtt_broker.require("v5")
    client_id = unique_id("present")
    first, expiry = persistent(mqtt_client, client_id, version)
    assert not first.connect(session_expiry=expiry).session_present
    assert first.subscribe(unique_topic("present"), 1) == [1]
    first.disconnect()

    again, _ = persistent(mqtt_client, client_id, version)
    assert again.connect(session_expiry=expiry).session_present
    again.disconnect()

    clean = mqtt_client(client_id, version, clean=True)
    assert not clean.connect().session_present
    clean.disconnect()

    after_clean, _ = persistent(mqtt_client, client_id, version)
    assert not after_clean.connect(session_expiry=expiry).session_present
    after_clean.disconnect()

    if version == V5:
        short = mqtt_client(client_id, V5, clean=False)
        short.connect(session_expiry=0)
        short.disconnect()
        later = mqtt_client(client_id, V5, clean=False)
        assert not later.connect(session_expiry=300).session_present


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_clean_session_forgets_subscriptions(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    if version == V5:
        mqtt_broker.require("v5")
    topic = unique_topic("forget")
    client_id = unique_id("forget")
    first = mqtt_client(client_id, version, clean=True)
    first.connect()
    first.subscribe(topic, 1)
    first.disconnect()
    second = mqtt_client(client_id, version, clean=True)
    second.connect()
    publisher = mqtt_client(unique_id("forget-pub"), version)
    publisher.connect()
    publisher.publish(topic, b"nobody", 1)
    second.quiet(0.5)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_persistent_session_keeps_subscriptions(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """A stored session keeps its subscriptions [MQTT-3.1.2-4]: no SUBSCRIBE after reconnect."""
    if version == V5:
        mqtt_broker.require("v5")
    topic = unique_topic("keep")
    client_id = unique_id("keep")
    first, expiry = persistent(mqtt_client, client_id, version)
    first.connect(session_expiry=expiry)
    first.subscribe(topic, 1)
    first.disconnect()
    again, _ = persistent(mqtt_client, client_id, version)
    assert again.connect(session_expiry=expiry).session_present
    publisher = mqtt_client(unique_id("keep-pub"), version)
    publisher.connect()
    publisher.publish(topic, b"still subscribed", 1)
    (msg,) = again.expect_topic(topic)
    assert msg.payload == b"still subscribed"


def test_3_1_1_empty_client_id_with_clean_session_is_accepted(mqtt_client: NewClient) -> None:
    """[MQTT-3.1.3-6] the server assigns an identifier; 3.1.1 does not tell the client."""
    client = mqtt_client("", V311, clean=True)
    assert client.connect().reason_code == 0
    topic = unique_topic("anon")
    client.subscribe(topic, 0)
    client.publish(topic, b"x", 0)
    client.expect_topic(topic)


def test_5_assigned_client_identifier(mqtt_broker: MqttBroker, mqtt_client: NewClient) -> None:
    """5.0 [MQTT-3.1.3-7]: an empty ClientID gets an Assigned Client Identifier in CONNACK,
    unique per connection (3.2.2.3.7)."""
    mqtt_broker.require("v5")
    one = mqtt_client("", V5)
    two = mqtt_client("", V5)
    first = one.connect().properties.get("AssignedClientIdentifier")
    second = two.connect().properties.get("AssignedClientIdentifier")
    assert isinstance(first, str) and first
    assert isinstance(second, str) and second and second != first


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_keepalive_is_honoured_by_pings(
    mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int
) -> None:
    """With keepalive 1 s a pinging client stays connected well past 1.5 x keepalive
    [MQTT-3.1.2-24], and every PINGREQ gets a PINGRESP [MQTT-3.12.4-1]."""
    if version == V5:
        mqtt_broker.require("v5")
    client = mqtt_client(unique_id("ping"), version)
    connack = client.connect(keepalive=1)
    assert connack.properties.get("ServerKeepAlive", 1) >= 1
    time.sleep(4)  # the scenario is the passing of time: four keepalive periods
    assert client.is_connected
    assert any("Sending PINGREQ" in line for line in client.log)
    assert any("Received PINGRESP" in line for line in client.log)
    topic = unique_topic("ping")
    client.subscribe(topic, 1)
    client.publish(topic, b"alive", 1)
    client.expect_topic(topic)


def test_5_server_keep_alive_if_sent_is_what_the_client_uses(
    mqtt_broker: MqttBroker, mqtt_client: NewClient
) -> None:
    """5.0 3.2.2.3.14: if CONNACK carries Server Keep Alive the client MUST use it
    [MQTT-3.2.2-21]; a client asking for keepalive 0 (none) may be given one by the server. Either
    way the connection outlives 1.5 x the keepalive in force."""
    mqtt_broker.require("v5")
    client = mqtt_client(unique_id("srvka"), V5)
    connack = client.connect(keepalive=2)
    server_keepalive = connack.properties.get("ServerKeepAlive")
    in_force = 2 if server_keepalive is None else int(server_keepalive)
    assert 0 <= in_force <= 65535
    if server_keepalive is not None:
        client.paho._keepalive = in_force  # paho 2.2 does not apply it by itself
    if in_force:
        time.sleep(min(in_force * 2, 6))
    assert client.is_connected


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_session_takeover(mqtt_broker: MqttBroker, mqtt_client: NewClient, version: int) -> None:
    """A second connection with the same ClientID makes the server close the first
    [MQTT-3.1.4-2]; 5.0 [MQTT-3.1.4-3] says it sends DISCONNECT 0x8E Session taken over first.
    The new connection works and, with a persistent session, inherits its subscriptions."""
    if version == V5:
        mqtt_broker.require("v5")
    topic = unique_topic("takeover")
    client_id = unique_id("takeover")
    first, expiry = persistent(mqtt_client, client_id, version)
    first.connect(session_expiry=expiry)
    first.subscribe(topic, 1)

    second, _ = persistent(mqtt_client, client_id, version)
    assert second.connect(session_expiry=expiry).session_present
    gone = first.wait_disconnected()
    assert gone.by_server
    if version == V5:
        # The DISCONNECT before the close is what polymq sends; Mosquitto 2.0.11 only closes,
        # which 4.13 allows ("MAY send a DISCONNECT"). Either way no other reason code.
        got_disconnect = any("Received DISCONNECT" in line for line in first.log)
        if mqtt_broker.is_polymq or got_disconnect:
            assert got_disconnect and gone.reason_code == RC_SESSION_TAKEN_OVER

    publisher = mqtt_client(unique_id("takeover-pub"), version)
    publisher.connect()
    publisher.publish(topic, b"to the new connection", 1)
    (msg,) = second.expect_topic(topic)
    assert msg.payload == b"to the new connection"
    assert not first.messages
    assert second.is_connected


def test_5_session_expiry_interval_ends_the_session(
    mqtt_broker: MqttBroker, mqtt_client: NewClient
) -> None:
    """5.0 3.1.2.11.2: the session is discarded when Session Expiry Interval seconds have passed
    after the connection closed; before that it is present."""
    mqtt_broker.require("v5")
    client_id = unique_id("expiry")
    first = mqtt_client(client_id, V5, clean=False)
    first.connect(session_expiry=1)
    first.subscribe(unique_topic("expiry"), 1)
    first.disconnect()
    time.sleep(2.5)  # the scenario is the passing of time: the session must expire
    later = mqtt_client(client_id, V5, clean=False)
    assert not later.connect(session_expiry=1).session_present


def test_5_disconnect_can_change_session_expiry(
    mqtt_broker: MqttBroker, mqtt_client: NewClient
) -> None:
    """5.0 3.14.2.2.2: DISCONNECT may set Session Expiry Interval (not from 0 to non-zero);
    setting it to 0 ends the session at once."""
    mqtt_broker.require("v5")
    client_id = unique_id("discexp")
    first = mqtt_client(client_id, V5, clean=False)
    first.connect(session_expiry=300)
    first.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    later = mqtt_client(client_id, V5, clean=False)
    assert not later.connect(session_expiry=300).session_present
