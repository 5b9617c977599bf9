"""paho-mqtt clients for the MQTT interop suite, with a deadline on every wait.

``Client`` wraps one paho ``Client`` (callback API version 2) whose network loop runs in
paho's own thread (``loop_start``). Callbacks only record what arrived and set events; tests
wait on those with timeouts and never sleep for readiness. paho never reconnects by itself here
(``reconnect_on_failure=False``): a test that wants a second connection opens it.

paho does not resolve topic aliases on incoming PUBLISH packets; ``Client`` does, per
connection, so a test sees the real topic and can also see that an alias was used.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.polymq_process import ExternalMqttBroker, ExternalPair, MqttBroker

V311 = paho.MQTTv311
V5 = paho.MQTTv5
VERSIONS = [V311, V5]
VERSION_IDS = ["3.1.1", "5"]
WAIT_S = 10.0

# MQTT 5 reason codes the suites name (MQTT 5.0 section 2.4, table 2-6)
RC_SUCCESS = 0x00
RC_GRANTED_QOS_1 = 0x01
RC_GRANTED_QOS_2 = 0x02
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_BAD_USER_NAME_OR_PASSWORD = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_ALIAS_INVALID = 0x94


def unique_topic(prefix: str) -> str:
    """A topic no other test (or earlier run against a shared broker) has used."""
    return f"polymq-test/{prefix}/{uuid.uuid4().hex[:10]}"


def unique_id(prefix: str) -> str:
    return f"pt-{prefix}-{uuid.uuid4().hex[:10]}"


def props(packet: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    """``props(UserProperty=[("k", "v")], MessageExpiryInterval=5)`` for paho calls."""
    result = Properties(packet)
    for name, value in values.items():
        setattr(result, name, value)
    return result


def props_dict(properties: Properties | None) -> dict[str, Any]:
    if properties is None:
        return {}
    out: dict[str, Any] = {}
    for name in properties.names:
        attr = name.replace(" ", "")
        if hasattr(properties, attr):
            out[attr] = getattr(properties, attr)
    return out


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    properties: dict[str, Any]
    alias: int | None  # the Topic Alias the broker used, if any
    at: float  # time.monotonic() of arrival


@dataclass
class Connack:
    reason_code: int
    session_present: bool
    properties: dict[str, Any]


@dataclass
class Disconnected:
    reason_code: int  # 0 when the connection simply closed (3.1.1 has no DISCONNECT from server)
    by_server: bool
    properties: dict[str, Any] = field(default_factory=dict)


class Client:
    """One MQTT client connection; ``connect()`` waits for the CONNACK."""

    def __init__(
        self,
        broker: MqttBroker | ExternalPair,
        client_id: str = "",
        version: int = V5,
        clean: bool = True,
        manual_ack: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.broker = broker
        self.version = version
        self.clean = clean
        self.client_id = client_id
        self.paho = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean if version != V5 else None,
            protocol=version,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.connack: Connack | None = None
        self.disconnected: Disconnected | None = None
        self.messages: list[Msg] = []
        self.log: list[str] = []
        self._aliases: dict[int, str] = {}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._gone = threading.Event()
        self._acks: dict[int, ReasonCode | list[ReasonCode]] = {}
        self._loop_started = False
        self._user_closing = False
        p = self.paho
        p.on_connect = self._on_connect
        p.on_disconnect = self._on_disconnect
        p.on_message = self._on_message
        p.on_subscribe = self._on_subscribe
        p.on_unsubscribe = self._on_subscribe
        p.on_publish = self._on_publish
        p.on_log = lambda _c, _u, _level, text: self.log.append(text)

    # callbacks (paho's thread: record and notify only) ---------------------------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: ReasonCode, properties: Any) -> None:
        self._aliases.clear()
        self.connack = Connack(rc.value, bool(flags.session_present), props_dict(properties))
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, properties: Any) -> None:
        self.disconnected = Disconnected(rc.value, not self._user_closing, props_dict(properties))
        self._connected.clear()
        self._gone.set()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        properties = props_dict(getattr(message, "properties", None))
        alias = properties.get("TopicAlias")
        topic = message.topic
        if alias is not None:
            if topic:
                self._aliases[alias] = topic
            else:
                topic = self._aliases.get(alias, f"<unknown alias {alias}>")
        msg = Msg(
            topic,
            bytes(message.payload),
            message.qos,
            bool(message.retain),
            bool(message.dup),
            message.mid,
            properties,
            alias,
            time.monotonic(),
        )
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = codes
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = rc
            self._cond.notify_all()

    # connection ----------------------------------------------------------------------------

    def connect(
        self,
        keepalive: int = 30,
        session_expiry: int | None = None,
        properties: Properties | None = None,
        clean_start: bool | None = None,
        expect_success: bool = True,
        timeout: float = WAIT_S,
    ) -> Connack:
        self.connack = None
        self.disconnected = None
        self._gone.clear()
        self._connected.clear()
        self._user_closing = False
        kwargs: dict[str, Any] = {}
        if self.version == V5:
            if properties is None and session_expiry is not None:
                properties = props(PacketTypes.CONNECT)
            if session_expiry is not None:
                assert properties is not None
                properties.SessionExpiryInterval = session_expiry
            kwargs["clean_start"] = self.clean if clean_start is None else clean_start
            kwargs["properties"] = properties
        self.paho.connect(self.broker.host, self.broker.mqtt_port, keepalive, **kwargs)
        if not self._loop_started:
            self.paho.loop_start()
            self._loop_started = True
        deadline = time.monotonic() + timeout
        while self.connack is None:
            assert time.monotonic() < deadline, f"no CONNACK within {timeout} s"
            if self._gone.wait(0.02) and self.connack is None:
                raise AssertionError(f"connection closed without CONNACK: {self.disconnected}")
        if expect_success:
            assert self.connack.reason_code == 0, f"CONNACK refused: {self.connack}"
        return self.connack

    def disconnect(
        self, reason_code: int | None = None, properties: Properties | None = None
    ) -> None:
        """A normal DISCONNECT (with ``reason_code`` on MQTT 5), then wait for the socket to go."""
        self._user_closing = True
        rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code) if reason_code else None
        if self._connected.is_set() or not self._gone.is_set():
            self.paho.disconnect(reasoncode=rc, properties=properties)
            self._gone.wait(WAIT_S)
        self.stop()

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT: what a crashed client looks like."""
        self._user_closing = True
        sock = self.paho.socket()
        if sock is not None:
            assert isinstance(sock, socket.socket)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._gone.wait(WAIT_S)
        self.stop()

    def stop(self) -> None:
        if self._loop_started:
            self.paho.loop_stop()
            self._loop_started = False
        # paho keeps its socket and a wake-up socket pair open after a close it did not start
        self.paho._reset_sockets()

    def wait_disconnected(self, timeout: float = WAIT_S) -> Disconnected:
        assert self._gone.wait(timeout), f"still connected after {timeout} s"
        assert self.disconnected is not None
        return self.disconnected

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set() and not self._gone.is_set()

    # operations ----------------------------------------------------------------------------

    def _wait_ack(self, mid: int, what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._acks:
                left = deadline - time.monotonic()
                assert left > 0, f"no {what} for mid {mid} within {timeout} s"
                gone = self._gone.is_set()
                assert not gone, f"disconnected waiting for {what}: {self.disconnected}"
                self._cond.wait(min(left, 0.05))
            return self._acks.pop(mid)

    def subscribe(
        self,
        topic: str | Iterable[tuple[str, int]],
        qos: int = 1,
        options: SubscribeOptions | None = None,
        properties: Properties | None = None,
        timeout: float = WAIT_S,
    ) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS / reason codes."""
        if isinstance(topic, str):
            rc, mid = self.paho.subscribe(topic, qos if options is None else 0, options, properties)
        else:
            rc, mid = self.paho.subscribe(list(topic), properties=properties)
        assert rc == paho.MQTT_ERR_SUCCESS, rc
        codes = self._wait_ack(mid, "SUBACK", timeout)
        return [c.value for c in codes]

    def unsubscribe(self, topic: str, timeout: float = WAIT_S) -> None:
        rc, mid = self.paho.unsubscribe(topic)
        assert rc == paho.MQTT_ERR_SUCCESS, rc
        self._wait_ack(mid, "UNSUBACK", timeout)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        wait: bool = True,
        timeout: float = WAIT_S,
    ) -> int:
        """PUBLISH; for QoS 1/2 wait for PUBACK / PUBCOMP. Returns the ack's reason code (5)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        assert info.rc == paho.MQTT_ERR_SUCCESS, info.rc
        if not wait:
            return 0
        if qos == 0:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"QoS 0 publish not written within {timeout} s"
            return 0
        rc = self._wait_ack(info.mid, "PUBACK/PUBCOMP", timeout)
        return int(rc.value)

    def ack(self, msg: Msg) -> None:
        self.paho.ack(msg.mid, msg.qos)

    # receiving -----------------------------------------------------------------------------

    def expect(
        self,
        n: int,
        timeout: float = WAIT_S,
        where: Callable[[Msg], bool] = lambda m: True,
    ) -> list[Msg]:
        """Wait until ``n`` messages matching ``where`` have arrived; returns them all (so far),
        in arrival order. Does not consume them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if where(m)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                assert left > 0, (
                    f"{self.client_id!r} got {len(got)} of {n} messages within {timeout} s: "
                    f"{[(m.topic, m.payload[:40]) for m in got]}"
                )
                self._cond.wait(min(left, 0.05))

    def expect_topic(self, topic: str, n: int = 1, timeout: float = WAIT_S) -> list[Msg]:
        return self.expect(n, timeout, lambda m: m.topic == topic)

    def quiet(self, seconds: float = 0.5, where: Callable[[Msg], bool] = lambda m: True) -> None:
        """Assert that nothing (matching) arrives within ``seconds``."""
        end = time.monotonic() + seconds
        before = len([m for m in self.messages if where(m)])
        with self._cond:
            while (left := end - time.monotonic()) > 0:
                self._cond.wait(left)
        after = [m for m in self.messages if where(m)]
        assert len(after) == before, f"unexpected messages: {after[before:]}"

    def settle(self, seconds: float = 0.3) -> list[Msg]:
        """Let late copies arrive (for counting them); returns everything received."""
        end = time.monotonic() + seconds
        with self._cond:
            while (left := end - time.monotonic()) > 0:
                self._cond.wait(left)
            return list(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()


def wait_total(clients: list[Client], n: int, timeout: float = WAIT_S) -> None:
    """Wait until the clients together have received ``n`` messages."""
    deadline = time.monotonic() + timeout
    while (got := sum(len(c.messages) for c in clients)) < n:
        assert time.monotonic() < deadline, f"{got} of {n} messages within {timeout} s"
        time.sleep(0.02)  # polling several clients' counters, bounded by the deadline


def probe_features(broker: ExternalMqttBroker | ExternalPair) -> set[str]:
    """What an external broker supports, found by asking it (never assumed for polymq)."""
    features = {"v311"}
    probe = Client(broker, unique_id("probe"), V5)
    try:
        connack = probe.connect(expect_success=False)
        ok_v5 = connack.reason_code == 0
    except (AssertionError, OSError):
        ok_v5 = False
    finally:
        probe.stop()
    if ok_v5:
        features.add("v5")
        cp = connack.properties
        if cp.get("SharedSubscriptionAvailable", 1):
            features.add("shared")
        if cp.get("SubscriptionIdentifierAvailable", 1):
            features.add("subscription-ids")
        if cp.get("MaximumQoS", 2) == 2:
            features.add("qos2")
        if cp.get("RetainAvailable", 1):
            features.add("retain")
        if "MaximumPacketSize" in cp:
            features.add("maximum-packet-size")
    else:
        probe = Client(broker, unique_id("probe"), V311)
        try:
            probe.connect()
            topic = unique_topic("probe")
            if probe.subscribe(topic, 2) == [2]:
                features.add("qos2")
            # shared subscriptions in 3.1.1 syntax: delivered once to the one member?
            shared = f"$share/probe/{topic}"
            if probe.subscribe(shared, 0) == [0]:
                probe.unsubscribe(topic)
                probe.publish(topic, b"probe", 1)
                try:
                    probe.expect(1, timeout=1.0)
                    features.add("shared")
                except AssertionError:
                    pass
            features.add("retain")
        finally:
            probe.disconnect()
    wrong = Client(broker, unique_id("probe"), V311, username="guest", password="not-the-password")
    try:
        if wrong.connect(expect_success=False).reason_code != 0:
            features.add("auth")
    except AssertionError:
        pass
    finally:
        wrong.disconnect()
    return features


@contextmanager
def reference_may_deviate(broker: Any, observed: str) -> Iterator[None]:
    """Against polymq the block's assertions hold as written. Against a reference broker a
    failure (or a timeout) inside it is reported as an expected failure naming what that
    reference was seen to do instead, so its deviations from the spec stay visible without
    turning the reference run red."""
    try:
        yield
    except (AssertionError, TimeoutError) as exc:
        if getattr(broker, "is_polymq", True):
            raise
        pytest.xfail(f"reference deviation ({observed}): {exc}"[:400])
