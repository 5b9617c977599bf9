"""MQTT 5 message properties and connection options with paho-mqtt: message expiry, topic
aliases in both directions, user properties and the request/response properties passed
through, payload format indicator, request problem information.

Statement numbers are those of MQTT 5.0.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from paho.mqtt.packettypes import PacketTypes

from tests.interop.mqtt_helpers import (
    RC_NO_MATCHING_SUBSCRIBERS,
    RC_TOPIC_ALIAS_INVALID,
    V5,
    Client,
    props,
    unique_id,
    unique_topic,
)
from tests.polymq_process import MqttBroker

NewClient = Callable[..., Client]


@pytest.fixture(autouse=True)
def needs_v5(mqtt_broker: MqttBroker) -> None:
    mqtt_broker.require("v5")


def test_message_expiry_to_an_offline_session(
    mqtt_broker: MqttBroker, mqtt_client: NewClient
) -> None:
    """[MQTT-3.3.2-5]: a message whose Message Expiry Interval has passed is not delivered to a
    subscriber that was not yet sent it; [MQTT-3.3.2-6]: the interval forwarded is the one
    received minus the time the message waited in the server."""
    topic = unique_topic("expiry")
    client_id = unique_id("expiry")
    sub = mqtt_client(client_id, V5, clean=False)
    sub.connect(session_expiry=300)
    sub.subscribe(topic, 1)
    sub.disconnect()

    pub = mqtt_client(unique_id("expiry-pub"), V5)
    pub.connect()
    pub.publish(topic, b"short", 1, properties=props(MessageExpiryInterval=1))
    pub.publish(topic, b"long", 1, properties=props(MessageExpiryInterval=60))
    pub.publish(topic, b"forever", 1)
    time.sleep(2.2)  # the scenario is the passing of time: one message must expire

    again = mqtt_client(client_id, V5, clean=False)
    assert again.connect(session_expiry=300).session_present
    again.expect_topic(topic, 2)
    again.quiet(0.5)
    got = {m.payload: m.properties.get("MessageExpiryInterval") for m in again.messages}
    assert set(got) == {b"long", b"forever"}
    assert got[b"forever"] is None
    assert got[b"long"] is not None and 50 <= got[b"long"] <= 58


def test_message_expiry_interval_forwarded_to_online_subscriber(
    mqtt_client: NewClient,
) -> None:
    topic = unique_topic("expiry-online")
    sub = mqtt_client(unique_id("eo-sub"), V5)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.publish(topic, b"x", 1, properties=props(MessageExpiryInterval=30))
    (msg,) = sub.expect_topic(topic)
    assert 28 <= msg.properties["MessageExpiryInterval"] <= 30


def test_topic_alias_from_the_client(mqtt_client: NewClient) -> None:
    """3.3.2.3.4: a PUBLISH with topic and Topic Alias sets the mapping; one with an empty
    topic and the alias uses it [MQTT-3.3.2-12]. The server's Topic Alias Maximum (CONNACK)
    bounds the values; polymq and Mosquitto both allow 10."""
    topic = unique_topic("alias-in")
    other = unique_topic("alias-in-2")
    sub = mqtt_client(unique_id("ai-sub"), V5)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.subscribe(other, 1)
    pub = mqtt_client(unique_id("ai-pub"), V5)
    maximum = pub.connect().properties.get("TopicAliasMaximum", 0)
    assert maximum >= 1
    pub.publish(topic, b"set", 1, properties=props(TopicAlias=1))
    pub.publish("", b"used", 1, properties=props(TopicAlias=1))
    pub.publish(other, b"remapped", 1, properties=props(TopicAlias=1))
    pub.publish("", b"used again", 1, properties=props(TopicAlias=1))
    sub.expect(4)
    assert [(m.topic, m.payload) for m in sub.messages] == [
        (topic, b"set"),
        (topic, b"used"),
        (other, b"remapped"),
        (other, b"used again"),
    ]


def test_topic_alias_over_the_maximum_is_a_protocol_error(mqtt_client: NewClient) -> None:
    """[MQTT-3.3.2-8]: a Topic Alias of 0 or above the server's maximum is a Protocol Error:
    DISCONNECT 0x94 Topic Alias invalid."""
    pub = mqtt_client(unique_id("ai-bad"), V5)
    maximum = pub.connect().properties.get("TopicAliasMaximum", 0)
    # straight through paho: the broker may close before the PUBLISH is even handed over
    pub.paho.publish(unique_topic("alias-bad"), b"x", 1, properties=props(TopicAlias=maximum + 1))
    gone = pub.wait_disconnected()
    assert gone.by_server and gone.reason_code == RC_TOPIC_ALIAS_INVALID


def test_topic_alias_to_the_client(mqtt_client: NewClient) -> None:
    """[MQTT-3.3.2-10]: the server may use aliases up to the client's Topic Alias Maximum;
    ``Client`` resolves them, so every message still arrives on its topic. (Mosquitto 2.0.11
    never sends aliases; polymq may.) Without a Topic Alias Maximum the server sends none
    [MQTT-3.3.2-9]."""
    base = unique_topic("alias-out")
    topics = [f"{base}/{i}" for i in range(3)]
    sub = mqtt_client(unique_id("ao-sub"), V5)
    sub.connect(properties=props(PacketTypes.CONNECT, TopicAliasMaximum=2))
    sub.subscribe(f"{base}/#", 1)
    plain = mqtt_client(unique_id("ao-plain"), V5)
    plain.connect()
    plain.subscribe(f"{base}/#", 1)
    for _ in range(3):
        for topic in topics:
            plain.publish(topic, topic.encode(), 1)
    got = sub.expect(9)
    assert [m.topic for m in got] == topics * 3
    assert all(m.payload == m.topic.encode() for m in got)
    assert all(m.alias is None or 1 <= m.alias <= 2 for m in got)
    plain.expect(9)
    assert all(m.alias is None for m in plain.messages)


def test_properties_passed_through_unchanged(mqtt_client: NewClient) -> None:
    """3.3.2.3: Payload Format Indicator, Content Type, Response Topic, Correlation Data and
    User Properties reach the subscriber unaltered [MQTT-3.3.2-4, -15, -16, -17], user
    properties in their order and with repeated keys [MQTT-3.3.2-18]."""
    topic = unique_topic("props")
    sub = mqtt_client(unique_id("props-sub"), V5)
    sub.connect()
    sub.subscribe(topic, 1)
    user = [("k", "v1"), ("a", "b"), ("k", "v2"), ("ünï", "côdé")]
    sent = props(
        PayloadFormatIndicator=1,
        ContentType="application/json; charset=utf-8",
        ResponseTopic=f"{topic}/reply",
        CorrelationData=b"\x00\x01corr\xff",
        UserProperty=user,
    )
    sub.publish(topic, '{"x": "ü"}'.encode(), 1, properties=sent)
    (msg,) = sub.expect_topic(topic)
    p = msg.properties
    assert p["PayloadFormatIndicator"] == 1
    assert p["ContentType"] == "application/json; charset=utf-8"
    assert p["ResponseTopic"] == f"{topic}/reply"
    assert p["CorrelationData"] == b"\x00\x01corr\xff"
    assert p["UserProperty"] == user
    assert msg.payload == '{"x": "ü"}'.encode()


def test_request_response_round_trip(mqtt_client: NewClient) -> None:
    """4.10: a responder answers on the Response Topic with the Correlation Data."""
    service = unique_topic("service")
    requester = mqtt_client(unique_id("requester"), V5)
    requester.connect()
    reply_to = f"{service}/reply/{requester.client_id}"
    requester.subscribe(reply_to, 1)
    responder = mqtt_client(unique_id("responder"), V5)
    responder.connect()
    responder.subscribe(service, 1)
    requester.publish(
        service, b"2+2", 1, properties=props(ResponseTopic=reply_to, CorrelationData=b"req-1")
    )
    (request,) = responder.expect_topic(service)
    responder.publish(
        request.properties["ResponseTopic"],
        b"4",
        1,
        properties=props(CorrelationData=request.properties["CorrelationData"]),
    )
    (reply,) = requester.expect_topic(reply_to)
    assert reply.payload == b"4" and reply.properties["CorrelationData"] == b"req-1"


@pytest.mark.parametrize("rpi", [0, 1])
def test_request_problem_information(mqtt_client: NewClient, rpi: int) -> None:
    """[MQTT-3.1.2-29]: with Request Problem Information 0 the server sends no Reason String or
    User Property on anything but PUBLISH, CONNACK and DISCONNECT; the PUBACK of a message with
    no subscriber may say 0x10 No matching subscribers (3.4.2.1)."""
    client = mqtt_client(unique_id(f"rpi{rpi}"), V5)
    client.connect(properties=props(PacketTypes.CONNECT, RequestProblemInformation=rpi))
    acks: list[tuple[int, dict[str, object]]] = []
    client.paho.on_publish = lambda _c, _u, _mid, rc, p: acks.append((rc.value, p.json()))
    client.paho.publish(unique_topic("nobody"), b"x", 1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while not acks:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    code, ack_props = acks[0]
    assert code in (0x00, RC_NO_MATCHING_SUBSCRIBERS)
    if rpi == 0:
        assert "ReasonString" not in ack_props and "UserProperty" not in ack_props
