"""MQTT 3.1.1 / 5.0 connection processor: packets -> core API calls, deliveries -> packets.

Mapping onto the core (as RabbitMQ's MQTT plugin does):

* Topics are routing keys on the ``amq.topic`` exchange (``a/b/c`` <-> ``a.b.c``, ``+`` -> ``*``,
  ``#`` -> ``#``; see ``codec.topic_to_routing_key``), so AMQP and STOMP clients see MQTT
  traffic and the other way round.
* A session's subscriptions are bindings of one session queue: ``mqtt-subscription-<id>qos1``,
  durable, for a persistent session (MQTT 3.1.1 clean session 0, MQTT 5 session expiry > 0),
  bounded by ``session_queue_messages_max`` with reject-publish; ``mqtt-subscription-<id>qos0``,
  transient and owned by the connection, for a clean one. Each binding carries the
  subscription's options (QoS, no local, retain as published, identifier) in its arguments,
  so a resumed session finds them again after a restart.
* A shared subscription ``$share/<group>/<filter>`` is one queue per group and filter with one
  consumer per member (competing consumers); a leaving member's unacknowledged messages go back
  to the queue and on to the others.
* QoS 0 publishes are transient messages; QoS 1 and 2 are persistent (delivery_mode 2) and are
  logged wherever they reach a durable queue: PUBACK / PUBREC leave after that.
* Retained messages are the core's retained message per routing key of ``amq.topic``.
* Deliveries: QoS 0 deliveries are settled once written to the socket; QoS 1 on PUBACK; QoS 2
  on PUBREC (the packet id stays in flight until PUBCOMP). The consumer's prefetch is the
  client's Receive Maximum.

Rules of the connection state:

1. ``CONNECT_WAIT``: only CONNECT is accepted (anything else closes the connection).
2. ``CONNECTED``: every packet but CONNECT and CONNACK; a second CONNECT is a protocol error
   (MQTT 5: DISCONNECT 0x82, then close).
3. ``CLOSED``: after DISCONNECT, a protocol error, a takeover or a keepalive timeout; the io
   loop flushes the output and closes the socket. A will is published unless the client sent
   DISCONNECT with reason 0x00 (or any DISCONNECT in 3.1.1).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from broker.api import (
    COMPLETE,
    D_BODY,
    D_ID,
    D_PROPS,
    D_REDELIVERED,
    D_ROUTING_KEY,
    FLAG_RETAIN,
    Broker,
    BrokerError,
)
from protocols._server import fmt_peer, is_loopback
from protocols.mqtt import codec
from protocols.mqtt.codec import (
    MQTT_5,
    Connect,
    Disconnect,
    MQTTError,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Unsubscribe,
)

log = logging.getLogger("polymq.mqtt")

CONNECT_WAIT, CONNECTED, CLOSED = range(3)
EXCHANGE = "amq.topic"
CONSUMER_TAG = "mqtt"
SHARED_TAG_PREFIX = "mqtt-share:"

# MQTT 5 reason codes used here
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC = 0x83
CLIENT_ID_NOT_VALID = 0x85
BAD_USER_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_ID_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
QUOTA_EXCEEDED = 0x97
DISCONNECT_WITH_WILL = 0x04
KEEP_ALIVE_TIMEOUT = 0x8D
SERVER_SHUTTING_DOWN = 0x8B

# MQTT 3.1.1 CONNACK return codes
V3_BAD_CLIENT_ID = 0x02
V3_BAD_USER_OR_PASSWORD = 0x04
V3_NOT_AUTHORIZED = 0x05

SESSION_EXPIRY_NEVER = 0xFFFFFFFF
HEADER_PREFIX = "x-mqtt-"
MATCH_CACHE_ENTRIES_MAX = 256  # topics per connection whose matching subscriptions are kept


@dataclass(frozen=True, slots=True)
class MQTTSettings:
    packet_bytes_max: int = 1 << 20
    session_queue_messages_max: int = 100_000
    receive_maximum: int = 1024  # inbound QoS 1/2 publishes in flight per connection
    topic_alias_maximum: int = 1024
    keepalive_s_max: int = 3600
    allow_anonymous: bool = True
    default_user: str = "guest"
    default_pass: str = "guest"
    default_user_loopback_only: bool = True
    vhost: str = "/"


@dataclass(slots=True)
class Subscription:
    filter: str  # the MQTT filter (without $share/<group>/)
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    identifier: int | None = None
    group: str | None = None

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-mqtt-filter": self.filter,
            "x-mqtt-qos": self.qos,
            "x-mqtt-no-local": self.no_local,
            "x-mqtt-rap": self.retain_as_published,
        }
        if self.identifier is not None:
            args["x-mqtt-sub-id"] = self.identifier
        return args


class MQTTHub:
    """What the connections of one listener share: the live session per client id (for
    takeover), the delayed wills, and statistics."""

    def __init__(self, broker: Broker, settings: MQTTSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.connections: dict[str, MQTTConnection] = {}
        self.pending_wills: dict[str, trio.CancelScope] = {}
        self.nursery: trio.Nursery | None = None
        self.io: Any = None  # the transport's shared tasks (protocols/mqtt/io.py), once started
        self.session_overflows = 0
        self.messages_in = 0
        self.messages_out = 0

    def cancel_will(self, client_id: str) -> None:
        scope = self.pending_wills.pop(client_id, None)
        if scope is not None:
            scope.cancel()

    def schedule_will(
        self, client_id: str, delay_s: float, msg: tuple[Any, ...], vhost: str = "/"
    ) -> None:
        if delay_s <= 0 or self.nursery is None:
            self.publish_will(msg, vhost)
            return
        scope = trio.CancelScope()
        self.cancel_will(client_id)
        self.pending_wills[client_id] = scope

        async def later() -> None:
            with scope:
                await trio.sleep(delay_s)
                if self.pending_wills.get(client_id) is scope:
                    del self.pending_wills[client_id]
                self.publish_will(msg, vhost)

        self.nursery.start_soon(later)

    def publish_will(self, msg: tuple[Any, ...], vhost: str = "/") -> None:
        try:
            self.broker.publish_nowait(EXCHANGE, [msg], vhost=vhost)
        except BrokerError as exc:
            log.warning("will not published", extra={"error": exc.text})


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT filter matching ([MQTT-4.7]); ``$`` topics are not matched by a leading wildcard."""
    if topic.startswith("$") and filter_[:1] in ("+", "#"):
        return False
    f = filter_.split("/")
    t = topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


class MQTTConnection:
    """One client connection's protocol state. Every per-connection object counts against the
    memory of an idle connection, so the attributes are slots and the containers most
    connections never use (inbound QoS 2 ids, topic aliases, deliveries held before CONNACK,
    the ``closed`` event) are created on first use."""

    __slots__ = (
        "hub",
        "broker",
        "settings",
        "peer",
        "wake_writer",
        "state",
        "out",
        "decoder",
        "version",
        "client_id",
        "user",
        "vhost",
        "keepalive_s",
        "persistent",
        "durable_session",
        "session_expiry_s",
        "session",
        "queue",
        "queue_durable",
        "consuming",
        "will",
        "send_will",
        "subscriptions",
        "client_receive_maximum",
        "client_packet_bytes_max",
        "client_topic_alias_max",
        "aliases_in",
        "aliases_out",
        "next_packet_id",
        "inflight",
        "qos2_received",
        "inbound_pending",
        "autoack",
        "is_closed",
        "_closed",
        "close_reason",
        "_overflow_logged_at",
        "_held",
        "_matches",
    )

    def __init__(
        self,
        hub: MQTTHub,
        *,
        peer: tuple[str, int] | None = None,
        wake_writer: Callable[[], None] = lambda: None,
    ) -> None:
        self.hub = hub
        self.broker = hub.broker
        self.settings = hub.settings
        self.peer = peer
        self.wake_writer = wake_writer
        self.state = CONNECT_WAIT
        self.out: list[bytes] = []
        self.decoder = codec.Decoder(packet_bytes_max=self.settings.packet_bytes_max)
        self.version = 4
        self.client_id = ""
        self.user = ""
        self.vhost = self.settings.vhost
        self.keepalive_s = 0
        self.persistent = False
        self.durable_session = False
        self.session_expiry_s = 0
        self.session = 0
        self.queue = ""
        self.queue_durable = False
        self.consuming = False
        self.will: Any = None
        self.send_will = True
        self.subscriptions: dict[str, Subscription] = {}  # full filter (with $share) -> sub
        self.client_receive_maximum = 65535
        self.client_packet_bytes_max = 0
        self.client_topic_alias_max = 0
        self.aliases_in: dict[int, str] | None = None
        self.aliases_out: dict[str, int] | None = None
        self.next_packet_id = 1
        self.inflight: dict[int, tuple[int | None, int]] = {}  # packet id -> (msg id, qos)
        self.qos2_received: set[int] | None = None  # inbound QoS 2 ids awaiting PUBREL
        self.inbound_pending = 0
        self.autoack: list[int] | None = None  # QoS 0 deliveries to settle once written
        self.is_closed = False
        self._closed: trio.Event | None = None
        self.close_reason = ""
        self._overflow_logged_at = 0.0
        self._held: list[tuple[str, str, list[Any]]] | None = None
        # topic -> (its matching subscriptions but shared ones, their highest QoS); dropped
        # whenever the subscriptions change
        self._matches: dict[str, tuple[list[Subscription], int]] | None = None

    # -- output ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.wake_writer()

    def take_output(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def on_output_flushed(self) -> None:
        ids = self.autoack
        if ids is None:
            return
        self.autoack = None
        if self.session:
            self.broker.settle_nowait(self.session, ids, COMPLETE)

    def protocol_error(self, reason: int, text: str) -> None:
        """End the connection; MQTT 5 clients first get DISCONNECT with ``reason``."""
        if self.state == CLOSED:
            return
        self.close_reason = f"{reason:#04x} {text}"
        log.info(
            "mqtt protocol error",
            extra={"peer": fmt_peer(self.peer), "client_id": self.client_id, "text": text},
        )
        if self.state == CONNECTED and self.version == MQTT_5:
            self.send(codec.encode_disconnect(MQTT_5, reason, {"reason_string": text[:200]}))
        self.state = CLOSED

    def kick(self, reason: int) -> None:
        """Another connection took this session over (or the node stops)."""
        if self.state != CONNECTED:
            return
        if self.version == MQTT_5:
            self.send(codec.encode_disconnect(MQTT_5, reason))
        self.close_reason = f"{reason:#04x} taken over"
        self.state = CLOSED

    # -- input -------------------------------------------------------------------------------

    async def handle_events(self, events: list[Any]) -> None:
        i = 0
        n = len(events)
        while i < n and self.state != CLOSED:
            ev = events[i]
            kind = type(ev)
            if (kind is Publish or kind is PubAck) and self.state == CONNECTED:
                # a run of publishes is one publish to the core, a run of acks one settle
                j = i + 1
                while j < n and type(events[j]) is kind:
                    j += 1
                if kind is Publish:
                    self._on_publishes(events[i:j])
                else:
                    self._on_pubacks(events[i:j])
                i = j
                continue
            i += 1
            if self.state == CONNECT_WAIT:
                if kind is not Connect:
                    self.close_reason = "first packet is not CONNECT"
                    self.state = CLOSED
                    return
                await self._on_connect(ev)
            elif kind is PubRec:
                self._on_pubrec(ev)
            elif kind is PubRel:
                self._on_pubrel(ev)
            elif kind is PubComp:
                self._on_pubcomp(ev)
            elif kind is Subscribe:
                await self._on_subscribe(ev)
            elif kind is Unsubscribe:
                await self._on_unsubscribe(ev)
            elif kind is PingReq:
                self.send(codec.encode_pingresp())
            elif kind is Disconnect:
                self._on_disconnect(ev)
            elif kind is Connect:
                self.protocol_error(PROTOCOL_ERROR, "a second CONNECT")
            else:
                self.protocol_error(PROTOCOL_ERROR, f"unexpected {kind.__name__} from a client")

    def _connack_refuse(self, v5_code: int, v3_code: int, text: str) -> None:
        if self.version == MQTT_5:
            self.send(codec.encode_connack(MQTT_5, False, v5_code, {"reason_string": text}))
        else:
            self.send(codec.encode_connack(self.version, False, v3_code))
        log.info(
            "mqtt connection refused",
            extra={"peer": fmt_peer(self.peer), "client_id": self.client_id, "text": text},
        )
        self.close_reason = text
        self.state = CLOSED

    async def _on_connect(self, p: Connect) -> None:
        s = self.settings
        self.version = p.protocol_level
        props = p.properties or {}
        client_id = p.client_id
        assigned = None
        if self.version == MQTT_5:
            self.session_expiry_s = int(props.get("session_expiry_interval", 0))
            self.persistent = self.session_expiry_s > 0
        else:
            self.persistent = not p.clean_start
            self.session_expiry_s = SESSION_EXPIRY_NEVER if self.persistent else 0
        if not client_id:
            if self.version != MQTT_5 and not p.clean_start:
                self._connack_refuse(
                    CLIENT_ID_NOT_VALID,
                    V3_BAD_CLIENT_ID,
                    "an empty client identifier needs a clean session",
                )
                return
            client_id = assigned = "polymq-" + secrets.token_hex(8)
        self.client_id = client_id
        # authentication, as RabbitMQ: "vhost:user" names the vhost (split at the last
        # colon); anonymous connections (from loopback, when allowed) act as the default user
        vhost = s.vhost
        if p.username is not None:
            vhost_part, colon, user = p.username.rpartition(":")
            if colon:
                vhost = vhost_part
            password = (p.password or b"").decode("utf-8", "replace")
            ok = self.broker.authenticate(user, password) is not None
            if (
                ok
                and s.default_user_loopback_only
                and user == s.default_user
                and not is_loopback(self.peer)
            ):
                ok = False
            if not ok:
                self._connack_refuse(
                    BAD_USER_OR_PASSWORD, V3_BAD_USER_OR_PASSWORD, "bad user name or password"
                )
                return
        elif not (s.allow_anonymous and is_loopback(self.peer)):
            self._connack_refuse(NOT_AUTHORIZED, V3_NOT_AUTHORIZED, "not authorized")
            return
        else:
            user = s.default_user
        try:
            self.broker.check_vhost(user, vhost)
        except BrokerError as exc:
            self._connack_refuse(NOT_AUTHORIZED, V3_NOT_AUTHORIZED, exc.text)
            return
        self.user = user
        self.vhost = vhost
        # takeover
        old = self.hub.connections.get(self.hub_key)
        if old is not None and old is not self:
            old.kick(SESSION_TAKEN_OVER)
            old.wake_writer()
            with trio.move_on_after(10):
                await old.wait_closed()
        self.hub.connections[self.hub_key] = self
        self.hub.cancel_will(self.hub_key)
        self.client_receive_maximum = int(props.get("receive_maximum", 65535)) or 65535
        self.client_packet_bytes_max = int(props.get("maximum_packet_size", 0))
        self.client_topic_alias_max = int(props.get("topic_alias_maximum", 0))
        keepalive = p.keepalive
        server_keepalive = None
        if keepalive > s.keepalive_s_max:
            keepalive = server_keepalive = s.keepalive_s_max
        self.keepalive_s = keepalive
        self.will = p.will
        # the session queue: a durable one survives this connection
        self.session = self.broker.open_session(self)
        durable_queue = f"mqtt-subscription-{client_id}qos1"
        transient_queue = f"mqtt-subscription-{client_id}qos0"
        session_present = False
        try:
            if p.clean_start:
                await self.broker.delete_queue(transient_queue, vhost=self.vhost)
                await self.broker.delete_queue(durable_queue, vhost=self.vhost)
            else:
                session_present = (
                    self.broker.queue_info(durable_queue, vhost=self.vhost) is not None
                )
            # A resumed session keeps its durable queue even when this connection asks for
            # expiry 0; it then ends with this connection (see close()).
            self.durable_session = self.persistent or session_present
            self.queue = durable_queue if self.durable_session else transient_queue
            if self.durable_session:
                await self._declare_session_queue()
                self._restore_subscriptions()
                if self.subscriptions:
                    await self._start_consuming()
        except BrokerError as exc:
            self._connack_refuse(UNSPECIFIED_ERROR, 3, exc.text)
            return
        self.state = CONNECTED
        ack_props: dict[str, Any] | None = None
        if self.version == MQTT_5:
            ack_props = {
                "receive_maximum": s.receive_maximum,
                "maximum_packet_size": s.packet_bytes_max,
                "topic_alias_maximum": s.topic_alias_maximum,
                "retain_available": 1,
                "wildcard_subscription_available": 1,
                "subscription_identifier_available": 1,
                "shared_subscription_available": 1,
            }
            if assigned is not None:
                ack_props["assigned_client_identifier"] = assigned
            if server_keepalive is not None:
                ack_props["server_keep_alive"] = server_keepalive
        self.send(codec.encode_connack(self.version, session_present, SUCCESS, ack_props))
        held, self._held = self._held, None
        for tag, queue, deliveries in held or ():
            self.deliver(tag, queue, deliveries)

    async def _declare_session_queue(self) -> None:
        s = self.settings
        args: dict[str, Any] = {
            "x-max-length": s.session_queue_messages_max,
            "x-overflow": "reject-publish",
        }
        if self.durable_session and self.session_expiry_s not in (0, SESSION_EXPIRY_NEVER):
            args["x-expires"] = self.session_expiry_s * 1000
        if self.durable_session:
            try:
                await self.broker.declare_queue(
                    self.queue, vhost=self.vhost, durable=True, arguments=args
                )
            except BrokerError as exc:
                if exc.code != 406:
                    raise
                # the session's expiry changed: the old queue keeps its messages
                await self.broker.declare_queue(self.queue, vhost=self.vhost, passive=True)
        else:
            await self.broker.declare_queue(
                self.queue,
                vhost=self.vhost,
                session=self.session,
                exclusive=True,
                auto_delete=False,
                arguments=args,
            )
        self.queue_durable = self.durable_session

    def _restore_subscriptions(self) -> None:
        for source, _key, args in self.broker.queue_bindings(self.queue, vhost=self.vhost):
            if source != EXCHANGE or "x-mqtt-filter" not in args:
                continue
            sub = Subscription(
                args["x-mqtt-filter"],
                int(args.get("x-mqtt-qos", 0)),
                bool(args.get("x-mqtt-no-local", False)),
                bool(args.get("x-mqtt-rap", False)),
                args.get("x-mqtt-sub-id"),
            )
            self.subscriptions[sub.filter] = sub
        self._matches = None

    async def _start_consuming(self) -> None:
        if self.consuming:
            return
        await self.broker.consume(
            self.session,
            self.queue,
            tag=CONSUMER_TAG,
            vhost=self.vhost,
            prefetch=self.client_receive_maximum,
        )
        self.consuming = True

    # -- publish in --------------------------------------------------------------------------

    # -- access control (RabbitMQ's MQTT plugin) ---------------------------------------------

    @property
    def hub_key(self) -> str:
        """Client ids are unique per vhost (a takeover never crosses vhosts)."""
        if self.vhost == "/":
            return self.client_id
        return f"{self.vhost}\x00{self.client_id}"

    def _may_publish(self, routing_key: str) -> bool:
        """Write on the topic exchange and topic write of the routing key."""
        b = self.broker
        if not b.allowed(self.user, self.vhost, "exchange", EXCHANGE, Broker.WRITE):
            return False
        if not b.topic_restricted(self.user, self.vhost, EXCHANGE):
            return True
        variables = {"client_id": self.client_id}
        return b.topic_allowed(
            self.user, self.vhost, EXCHANGE, routing_key, Broker.WRITE, variables=variables
        )

    def _subscribe_refusal(self, sub: Subscription) -> str | None:
        """Why ``sub`` is refused: RabbitMQ declares the session queue (configure), binds it
        (write on the queue, read on the exchange, topic read of the binding key)."""
        b = self.broker
        queue = self._shared_queue(sub) if sub.group is not None else self.queue
        key = codec.filter_to_binding_key(sub.filter)
        try:
            b.check(self.user, self.vhost, "queue", queue, Broker.CONFIGURE)
            b.check(self.user, self.vhost, "queue", queue, Broker.WRITE)
            b.check(self.user, self.vhost, "exchange", EXCHANGE, Broker.READ)
            b.check_topic(
                self.user,
                self.vhost,
                EXCHANGE,
                key,
                Broker.READ,
                variables={"client_id": self.client_id},
            )
        except BrokerError as exc:
            return exc.text
        return None

    def _on_publishes(self, packets: list[Any]) -> None:
        msgs: list[tuple[str, dict[str, Any], bytes, int]] = []
        acks: list[tuple[int, int | None]] = []  # (qos, packet id) per message
        b = self.broker
        # looked up once per batch: write on the exchange, and whether keys are checked
        write_ok = b.allowed(self.user, self.vhost, "exchange", EXCHANGE, Broker.WRITE)
        keys_checked = write_ok and b.topic_restricted(self.user, self.vhost, EXCHANGE)
        for p in packets:
            topic = p.topic
            props = p.properties
            if self.version == MQTT_5 and props:
                alias = props.get("topic_alias")
                if alias is not None:
                    if not 0 < alias <= self.settings.topic_alias_maximum:
                        self.protocol_error(TOPIC_ALIAS_INVALID, f"topic alias {alias} invalid")
                        break
                    if topic:
                        if self.aliases_in is None:
                            self.aliases_in = {}
                        self.aliases_in[alias] = topic
                    else:
                        topic = (self.aliases_in or {}).get(alias, "")
                        if not topic:
                            self.protocol_error(PROTOCOL_ERROR, f"unknown topic alias {alias}")
                            break
            try:
                codec.validate_topic_name(topic)
            except MQTTError as exc:
                self.protocol_error(TOPIC_NAME_INVALID, exc.text)
                break
            qos = p.qos
            rk = codec.topic_to_routing_key(topic)
            if not write_ok or (keys_checked and not self._may_publish(rk)):
                # RabbitMQ: MQTT 5 gets PUBACK/PUBREC 0x87 (QoS 0 is dropped); 3.1.1 has no way
                # to say so, and the connection is closed
                log.info(
                    "mqtt publish refused",
                    extra={"client_id": self.client_id, "user": self.user, "topic": topic},
                )
                if self.version != MQTT_5:
                    self.protocol_error(NOT_AUTHORIZED, f"access to topic '{topic}' refused")
                    break
                if qos == 1:
                    self.send(codec.encode_puback(self.version, p.packet_id, NOT_AUTHORIZED))
                elif qos == 2:
                    self.send(codec.encode_pubrec(self.version, p.packet_id, NOT_AUTHORIZED))
                continue
            if qos == 2 and self.qos2_received and p.packet_id in self.qos2_received:
                # a retransmission of a QoS 2 message we already have: acknowledge only
                self.send(codec.encode_pubrec(self.version, p.packet_id))
                continue
            if qos:
                self.inbound_pending += 1
                if self.inbound_pending > self.settings.receive_maximum:
                    self.protocol_error(
                        RECEIVE_MAXIMUM_EXCEEDED,
                        f"more than {self.settings.receive_maximum} QoS 1/2 publishes in flight",
                    )
                    break
                if qos == 2:
                    if self.qos2_received is None:
                        self.qos2_received = set()
                    self.qos2_received.add(p.packet_id)
            msgs.append(
                (
                    rk,
                    self._message_props(p, topic, props),
                    bytes(p.payload),
                    FLAG_RETAIN if p.retain else 0,
                )
            )
            acks.append((qos, p.packet_id))
        if not msgs:
            return
        self.hub.messages_in += len(msgs)
        try:
            pendings = self.broker.publish_nowait(EXCHANGE, msgs, vhost=self.vhost)
        except BrokerError as exc:
            self.protocol_error(SERVER_UNAVAILABLE, exc.text)
            return
        offset = 0
        for pending, count in pendings:
            part = acks[offset : offset + count]
            offset += count
            cb = self._publish_done(part)
            pending.callback = cb
            if pending.done:
                cb(pending.reply)

    def _publish_done(self, part: list[tuple[int, int | None]]) -> Callable[[Any], None]:
        def done(reply: Any) -> None:
            if self.state == CLOSED:
                return
            error = self.broker.error_of(reply)
            routed: list[int] = [] if error is not None else reply[0]
            rejected = set() if error is not None else set(reply[1])
            if rejected:
                # A subscriber's session queue is full: visible as a metric and a log line
                # (at most one per second per connection), and as PUBACK 0x97 in MQTT 5.
                self.hub.session_overflows += len(rejected)
                now = time.monotonic()
                if now - self._overflow_logged_at >= 1.0:
                    self._overflow_logged_at = now
                    log.warning(
                        "mqtt session queue full: messages refused",
                        extra={
                            "client_id": self.client_id,
                            "refused": len(rejected),
                            "refused_total": self.hub.session_overflows,
                        },
                    )
            for i, (qos, pid) in enumerate(part):
                if not qos or pid is None:
                    continue
                self.inbound_pending -= 1
                reason = SUCCESS
                if error is not None:
                    reason = UNSPECIFIED_ERROR
                elif i in rejected:
                    reason = QUOTA_EXCEEDED
                elif routed and routed[i] == 0:
                    reason = NO_MATCHING_SUBSCRIBERS
                if self.version != MQTT_5:
                    reason = SUCCESS
                if qos == 1:
                    self.send(codec.encode_puback(self.version, pid, reason))
                else:
                    self.send(codec.encode_pubrec(self.version, pid, reason))
                    if reason >= 0x80 and self.qos2_received:
                        self.qos2_received.discard(pid)

        return done

    def _message_props(self, p: Any, topic: str, props: dict[str, Any]) -> dict[str, Any]:
        headers: dict[str, Any] = {
            "x-mqtt-publish-qos": p.qos,
            "x-mqtt-client": self.client_id,
        }
        if p.retain:
            headers["x-mqtt-retain"] = True
        out: dict[str, Any] = {"delivery_mode": 2 if p.qos else 1, "headers": headers}
        if props:
            users = props.get("user_property")
            if users:
                headers.update(users)
                # the pairs as sent (order and repeated names), for MQTT 5 subscribers
                headers["x-mqtt-user-properties"] = [[k, v] for k, v in users]
            if "content_type" in props:
                out["content_type"] = props["content_type"]
            if "response_topic" in props:
                out["reply_to"] = props["response_topic"]
            if "correlation_data" in props:
                data = props["correlation_data"]
                headers["x-mqtt-correlation-data"] = data
                try:
                    text = data.decode("utf-8")
                    if len(data) <= 255:
                        out["correlation_id"] = text
                except UnicodeDecodeError:
                    pass
            if "payload_format_indicator" in props:
                headers["x-mqtt-payload-format"] = props["payload_format_indicator"]
            expiry = props.get("message_expiry_interval")
            if expiry is not None:
                out["expiration"] = str(int(expiry) * 1000)
                headers["x-mqtt-expiry-s"] = int(expiry)
                headers["x-mqtt-published-ms"] = _now_ms()
        return out

    def _on_pubrel(self, p: Any) -> None:
        received = self.qos2_received
        found = False
        if received is not None and p.packet_id in received:
            received.discard(p.packet_id)
            found = True
        reason = SUCCESS if found or self.version != MQTT_5 else PACKET_ID_NOT_FOUND
        self.send(codec.encode_pubcomp(self.version, p.packet_id, reason))

    # -- acks of deliveries ------------------------------------------------------------------

    def _on_pubacks(self, packets: list[Any]) -> None:
        inflight = self.inflight
        ids: list[int] = []
        for p in packets:
            entry = inflight.pop(p.packet_id, None)
            if entry is not None and entry[0] is not None:
                ids.append(entry[0])
        if ids and self.session:
            self.broker.settle_nowait(self.session, ids, COMPLETE)

    def _on_pubrec(self, p: Any) -> None:
        entry = self.inflight.get(p.packet_id)
        if entry is None:
            if self.version == MQTT_5:
                self.send(codec.encode_pubrel(self.version, p.packet_id, PACKET_ID_NOT_FOUND))
            return
        msg_id, _qos = entry
        if msg_id is not None and self.session:
            self.broker.settle_nowait(self.session, [msg_id], COMPLETE)
        self.inflight[p.packet_id] = (None, 2)
        if p.reason_code >= 0x80:
            del self.inflight[p.packet_id]
            return
        self.send(codec.encode_pubrel(self.version, p.packet_id))

    def _on_pubcomp(self, p: Any) -> None:
        self.inflight.pop(p.packet_id, None)

    # -- subscriptions -----------------------------------------------------------------------

    async def _on_subscribe(self, p: Any) -> None:
        codes: list[int] = []
        sub_id = (p.properties or {}).get("subscription_identifier")
        retained_to_send: list[tuple[Subscription, bool]] = []
        for full, opts in p.topics:
            try:
                codec.validate_topic_filter(full)
                group, filter_ = codec.parse_shared(full)
            except MQTTError:
                codes.append(TOPIC_FILTER_INVALID if self.version == MQTT_5 else 0x80)
                continue
            qos = min(opts.qos, 2)
            sub = Subscription(filter_, qos, opts.no_local, opts.retain_as_published, sub_id, group)
            existed = full in self.subscriptions
            refused = self._subscribe_refusal(sub)
            if refused is not None:
                log.info(
                    "mqtt subscribe refused",
                    extra={"client_id": self.client_id, "filter": full, "error": refused},
                )
                codes.append(NOT_AUTHORIZED if self.version == MQTT_5 else 0x80)
                continue
            try:
                if group is None:
                    await self._bind(sub, self.subscriptions.get(full))
                else:
                    await self._join_shared(sub, existed)
            except BrokerError as exc:
                log.warning(
                    "mqtt subscribe failed",
                    extra={"client_id": self.client_id, "filter": full, "error": exc.text},
                )
                codes.append(UNSPECIFIED_ERROR if self.version == MQTT_5 else 0x80)
                continue
            self.subscriptions[full] = sub
            self._matches = None
            codes.append(qos)
            rh = opts.retain_handling
            if group is None and (rh == 0 or (rh == 1 and not existed)):
                retained_to_send.append((sub, True))
        self.send(codec.encode_suback(self.version, p.packet_id, codes))
        for sub, _ in retained_to_send:
            self._send_retained(sub)

    async def _bind(self, sub: Subscription, old: Subscription | None) -> None:
        if (
            not self.durable_session
            and not self.consuming
            and self.broker.queue_info(self.queue, vhost=self.vhost) is None
        ):
            await self._declare_session_queue()
        key = codec.filter_to_binding_key(sub.filter)
        if old is not None and old.arguments() != sub.arguments():
            await self.broker.unbind(
                EXCHANGE,
                self.queue,
                codec.filter_to_binding_key(old.filter),
                vhost=self.vhost,
                session=self.session,
                arguments=old.arguments(),
            )
        await self.broker.bind(
            EXCHANGE,
            self.queue,
            key,
            vhost=self.vhost,
            session=self.session,
            arguments=sub.arguments(),
        )
        await self._start_consuming()

    def _shared_queue(self, sub: Subscription) -> str:
        return f"mqtt-shared-{sub.group}-{sub.filter}"

    async def _join_shared(self, sub: Subscription, existed: bool) -> None:
        s = self.settings
        queue = self._shared_queue(sub)
        await self.broker.declare_queue(
            queue,
            vhost=self.vhost,
            durable=True,
            arguments={
                "x-max-length": s.session_queue_messages_max,
                "x-overflow": "reject-publish",
                "x-expires": 24 * 3600 * 1000,
            },
        )
        await self.broker.bind(
            EXCHANGE,
            queue,
            codec.filter_to_binding_key(sub.filter),
            vhost=self.vhost,
            arguments={"x-mqtt-filter": sub.filter},
        )
        if not existed:
            await self.broker.consume(
                self.session,
                queue,
                tag=SHARED_TAG_PREFIX + f"{sub.group}/{sub.filter}",
                vhost=self.vhost,
                prefetch=self.client_receive_maximum,
            )

    async def _on_unsubscribe(self, p: Any) -> None:
        codes: list[int] = []
        for full in p.topics:
            sub = self.subscriptions.pop(full, None)
            self._matches = None
            if sub is None:
                codes.append(NO_SUBSCRIPTION_EXISTED)
                continue
            try:
                if sub.group is None:
                    await self.broker.unbind(
                        EXCHANGE,
                        self.queue,
                        codec.filter_to_binding_key(sub.filter),
                        vhost=self.vhost,
                        session=self.session,
                        arguments=sub.arguments(),
                    )
                else:
                    await self.broker.cancel(
                        self.session, SHARED_TAG_PREFIX + f"{sub.group}/{sub.filter}"
                    )
                codes.append(SUCCESS)
            except BrokerError:
                codes.append(UNSPECIFIED_ERROR)
        self.send(codec.encode_unsuback(self.version, p.packet_id, codes))

    def _send_retained(self, sub: Subscription) -> None:
        for rk, props, body in self.broker.retained(EXCHANGE, vhost=self.vhost):
            topic = codec.routing_key_to_topic(rk)
            if not topic_matches(sub.filter, topic):
                continue
            msg_qos = _message_qos(props)
            qos = min(msg_qos, sub.qos)
            self._send_publish(topic, props, body, qos, True, False, None, [sub])

    def _on_disconnect(self, p: Any) -> None:
        self.send_will = self.version == MQTT_5 and p.reason_code == DISCONNECT_WITH_WILL
        expiry = (p.properties or {}).get("session_expiry_interval")
        if expiry is not None and self.version == MQTT_5:
            self.session_expiry_s = int(expiry)
        self.close_reason = "client disconnect"
        self.state = CLOSED

    # -- deliveries --------------------------------------------------------------------------

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        if self.state == CONNECT_WAIT:
            # a resumed session's queue starts delivering before CONNACK is sent
            if self._held is None:
                self._held = []
            self._held.append((tag, queue, deliveries))
            return
        if self.state != CONNECTED:
            return
        shared = tag.startswith(SHARED_TAG_PREFIX)
        drop: list[int] = []
        matches = self._matches
        if matches is None and not shared:
            matches = self._matches = {}
        for d in deliveries:
            props = d[D_PROPS] or {}
            topic = _topic_of(d[D_ROUTING_KEY])
            headers = props.get("headers") or {}
            if shared:
                key = "$share/" + tag[len(SHARED_TAG_PREFIX) :]
                sub = self.subscriptions.get(key)
                subs = [sub] if sub is not None else []
                sub_qos = sub.qos if sub is not None else 0
            else:
                assert matches is not None
                match = matches.get(topic)
                if match is None:
                    found = [
                        s
                        for s in self.subscriptions.values()
                        if s.group is None and topic_matches(s.filter, topic)
                    ]
                    match = (found, max((s.qos for s in found), default=0))
                    if len(matches) >= MATCH_CACHE_ENTRIES_MAX:
                        matches.clear()
                    matches[topic] = match
                subs, sub_qos = match
                if subs and headers.get("x-mqtt-client") == self.client_id:
                    subs = [s for s in subs if not s.no_local]
                    sub_qos = max((s.qos for s in subs), default=0)
            if not subs:
                drop.append(d[D_ID])
                continue
            qos = min(_message_qos(props), sub_qos)
            retain = bool(headers.get("x-mqtt-retain")) and any(s.retain_as_published for s in subs)
            if not self._send_publish(
                topic, props, d[D_BODY], qos, retain, d[D_REDELIVERED], d[D_ID], subs
            ):
                drop.append(d[D_ID])
        if drop and self.session:
            self.broker.settle_nowait(self.session, drop, COMPLETE)

    def cancelled(self, tag: str) -> None:
        pass

    def _send_publish(
        self,
        topic: str,
        props: dict[str, Any],
        body: bytes,
        qos: int,
        retain: bool,
        redelivered: bool,
        msg_id: int | None,
        subs: list[Subscription],
    ) -> bool:
        """Encode one outgoing PUBLISH; False when it cannot be sent (too large)."""
        version = self.version
        out_props: dict[str, Any] | None = None
        send_topic = topic
        if version == MQTT_5:
            out_props = _v5_properties(props)
            ids = [s.identifier for s in subs if s.identifier is not None]
            if ids:
                out_props["subscription_identifier"] = ids
            if self.client_topic_alias_max:
                aliases = self.aliases_out
                if aliases is None:
                    aliases = self.aliases_out = {}
                alias = aliases.get(topic)
                if alias is not None:
                    out_props["topic_alias"] = alias
                    send_topic = ""
                elif len(aliases) < self.client_topic_alias_max:
                    alias = len(aliases) + 1
                    aliases[topic] = alias
                    out_props["topic_alias"] = alias
            if out_props.get("message_expiry_interval") == 0:
                return False  # expired on the way
        packet_id = None
        if qos:
            packet_id = self._next_packet_id()
            if packet_id is None:
                return False
        data = codec.encode_publish(
            version, send_topic, body, qos, retain, bool(redelivered and qos), packet_id, out_props
        )
        if self.client_packet_bytes_max and len(data) > self.client_packet_bytes_max:
            return False  # [MQTT-3.1.2-25]: discard what the client cannot take
        if qos:
            assert packet_id is not None
            self.inflight[packet_id] = (msg_id, qos)
        elif msg_id is not None:
            if self.autoack is None:
                self.autoack = [msg_id]
            else:
                self.autoack.append(msg_id)
        self.out.append(data)
        self.hub.messages_out += 1
        self.wake_writer()
        return True

    def _next_packet_id(self) -> int | None:
        inflight = self.inflight
        if len(inflight) >= 65535:
            return None
        pid = self.next_packet_id
        while pid in inflight:
            pid = pid % 65535 + 1
        self.next_packet_id = pid % 65535 + 1
        return pid

    # -- end ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """The socket is gone or the connection ended: will, session, registry."""
        was_connected = self.client_id and self.hub.connections.get(self.hub_key) is self
        taken_over = self.close_reason.endswith("taken over")
        self.state = CLOSED
        if self.will is not None and self.send_will and was_connected and not taken_over:
            self._publish_will()
        if self.session:
            session, self.session = self.session, 0
            try:
                await self.broker.close_session(session)
            except BrokerError as exc:  # pragma: no cover
                log.warning("mqtt session release failed", extra={"error": exc.text})
        session_ends = not self.durable_session or self.session_expiry_s == 0
        if session_ends and self.queue and not taken_over:
            try:
                await self.broker.delete_queue(self.queue, vhost=self.vhost)
            except BrokerError:
                pass
        # Deregistered last: a new connection with this client id waits for ``closed``, so it
        # never sees a session that is still being taken down.
        if was_connected and self.hub.connections.get(self.hub_key) is self:
            del self.hub.connections[self.hub_key]
        self.is_closed = True
        if self._closed is not None:
            self._closed.set()

    async def wait_closed(self) -> None:
        """Until :meth:`close` has finished (the event exists only while someone waits)."""
        if self.is_closed:
            return
        if self._closed is None:
            self._closed = trio.Event()
        await self._closed.wait()

    def _publish_will(self) -> None:
        w = self.will
        props = w.properties or {}
        fake = _WillPacket(w.qos, w.retain)
        msg = (
            codec.topic_to_routing_key(w.topic),
            self._message_props(fake, w.topic, props),
            bytes(w.payload),
            FLAG_RETAIN if w.retain else 0,
        )
        delay = int(props.get("will_delay_interval", 0)) if self.version == MQTT_5 else 0
        if self.persistent and self.session_expiry_s not in (0, SESSION_EXPIRY_NEVER):
            delay = min(delay, self.session_expiry_s)
        elif not self.persistent:
            delay = 0
        if not self._may_publish(msg[0]):
            log.info(
                "mqtt will refused",
                extra={"client_id": self.client_id, "user": self.user, "topic": w.topic},
            )
            return
        self.hub.schedule_will(self.hub_key, delay, msg, self.vhost)

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": fmt_peer(self.peer),
            "client_id": self.client_id,
            "user": self.user,
            "vhost": self.vhost,
            "version": self.version,
            "subscriptions": len(self.subscriptions),
            "inflight": len(self.inflight),
        }


@dataclass(frozen=True, slots=True)
class _WillPacket:
    qos: int
    retain: bool


_topics: dict[str, str] = {}


def _topic_of(routing_key: str) -> str:
    """``codec.routing_key_to_topic``, cached (bounded): it runs once per delivery."""
    topic = _topics.get(routing_key)
    if topic is None:
        topic = codec.routing_key_to_topic(routing_key)
        if len(_topics) >= codec.KEY_CACHE_ENTRIES_MAX:
            del _topics[next(iter(_topics))]
        _topics[routing_key] = topic
    return topic


def _message_qos(props: dict[str, Any]) -> int:
    headers = props.get("headers") or {}
    qos = headers.get("x-mqtt-publish-qos")
    if isinstance(qos, int) and 0 <= qos <= 2:
        return qos
    return 1 if props.get("delivery_mode") == 2 else 0


def _v5_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Core message properties -> MQTT 5 PUBLISH properties (the documented mapping)."""
    out: dict[str, Any] = {}
    headers = props.get("headers") or {}
    if "content_type" in props:
        out["content_type"] = props["content_type"]
    if "reply_to" in props:
        out["response_topic"] = props["reply_to"]
    data = headers.get("x-mqtt-correlation-data")
    if data is None and "correlation_id" in props:
        data = str(props["correlation_id"]).encode()
    if data is not None:
        out["correlation_data"] = data if isinstance(data, bytes) else str(data).encode()
    if "x-mqtt-payload-format" in headers:
        out["payload_format_indicator"] = headers["x-mqtt-payload-format"]
    expiry = headers.get("x-mqtt-expiry-s")
    if expiry is not None:
        published = headers.get("x-mqtt-published-ms", 0)
        left = int(expiry) - (_now_ms() - int(published)) // 1000
        out["message_expiry_interval"] = max(0, left)
    pairs = headers.get("x-mqtt-user-properties")
    if isinstance(pairs, list):
        users = [(str(k), _user_value(v)) for k, v in pairs]
    else:
        users = [
            (str(k), _user_value(v))
            for k, v in headers.items()
            if not str(k).startswith(HEADER_PREFIX)
        ]
    if users:
        out["user_property"] = users
    return out


def _user_value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _now_ms() -> int:
    """Wall-clock milliseconds: message expiry counts from the publish time."""
    return time.time_ns() // 1_000_000
