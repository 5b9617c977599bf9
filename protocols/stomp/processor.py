"""STOMP 1.0-1.2 connection processor: frames -> core API calls, deliveries -> MESSAGE frames.

Destinations, as RabbitMQ's STOMP plugin defines them:

* ``/queue/<name>``: SEND declares the durable queue and publishes through the default
  exchange; SUBSCRIBE declares it and consumes (competing consumers).
* ``/amq/queue/<name>``: the existing queue (SUBSCRIBE to a missing one is ERROR not_found).
* ``/topic/<key>``: SEND publishes to ``amq.topic`` with the key; SUBSCRIBE gets a queue of its
  own bound to ``amq.topic`` with the key (AMQP ``*``/``#`` wildcards), durable and named after
  the subscription id with ``persistent:true`` (or ``durable:true``).
* ``/exchange/<name>/<pattern>``: SEND publishes to the exchange with the key; SUBSCRIBE gets
  a queue of its own bound with the pattern.
* ``/temp-queue/<name>`` in the ``reply-to`` of a SEND: a queue owned by the connection, which
  is subscribed to it; ``reply-to`` is rewritten to ``/reply-queue/<queue>``, and a SEND to
  that destination reaches the queue.

Rules of the connection state:

1. ``CONNECT_WAIT``: only CONNECT or STOMP; anything else is an ERROR and the end.
2. ``CONNECTED``: client frames are served in order; a frame with a ``receipt`` header gets
   RECEIPT after its effect (for SEND: after the message is applied, durable when it reached a
   durable queue).
3. Any error sends one ERROR frame (``message`` header, detail in the body) and ends the
   connection (``CLOSED``), as RabbitMQ does; DISCONNECT ends it too, after its receipt.

Transactions: SEND, ACK and NACK frames carrying a ``transaction`` header are held until COMMIT
(applied in order) or dropped at ABORT.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker import __version__
from broker.api import (
    COMPLETE,
    D_BODY,
    D_EXCHANGE,
    D_ID,
    D_PROPS,
    D_REDELIVERED,
    D_ROUTING_KEY,
    DISCARD,
    REQUEUE,
    Broker,
    BrokerError,
    Pending,
)
from protocols._server import fmt_peer, is_loopback
from protocols.stomp import codec
from protocols.stomp.codec import Frame, Heartbeat, StompError

log = logging.getLogger("polymq.stomp")

CONNECT_WAIT, CONNECTED, CLOSED = range(3)

ERROR_NAMES = {
    403: "access_refused",
    404: "not_found",
    405: "resource_locked",
    406: "precondition_failed",
    506: "resource_error",
    530: "not_allowed",
    541: "internal_error",
}

# STOMP header -> core property (the AMQP front end reads the same names)
PROPERTY_HEADERS = {
    "content-type": "content_type",
    "content-encoding": "content_encoding",
    "reply-to": "reply_to",
    "correlation-id": "correlation_id",
    "expiration": "expiration",
    "amqp-message-id": "message_id",
    "type": "type",
    "user-id": "user_id",
    "app-id": "app_id",
}
# headers that belong to the frame, not to the message
FRAME_HEADERS = frozenset(
    (
        "destination",
        "receipt",
        "transaction",
        "content-length",
        "persistent",
        "priority",
        "timestamp",
        "message-id",
        "subscription",
        "ack",
        "id",
        "prefetch-count",
    )
)


@dataclass(frozen=True, slots=True)
class StompSettings:
    default_user: str = "guest"
    default_pass: str = "guest"
    default_user_loopback_only: bool = True
    allow_anonymous: bool = True
    vhost: str = "/"
    heartbeat_ms_min: int = 100
    subscriptions_max: int = 1024
    transaction_frames_max: int = 10_000


@dataclass(slots=True)
class Subscription:
    id: str
    destination: str
    queue: str
    ack_mode: str  # auto | client | client-individual
    tag: str
    unacked: dict[str, int] = field(default_factory=dict)  # ack id -> core message id


class StompConnection:
    def __init__(
        self,
        broker: Broker,
        settings: StompSettings,
        *,
        peer: tuple[str, int] | None = None,
        wake_writer: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.peer = peer
        self.wake_writer = wake_writer
        self.state = CONNECT_WAIT
        self.out: list[bytes] = []
        self.decoder = codec.Decoder()
        self.version = "1.0"
        self.session = 0
        self.session_name = ""
        self.user = ""
        self.vhost = self.settings.vhost
        self.subscriptions: dict[str, Subscription] = {}
        self.by_tag: dict[str, Subscription] = {}
        self.transactions: dict[str, list[Frame]] = {}
        self.temp_queues: dict[str, str] = {}  # /temp-queue/<name> -> queue name
        self.send_every_ms = 0  # heart-beats we send
        self.expect_every_ms = 0  # heart-beats we expect
        self.next_ack = 1
        self.close_reason = ""
        self.autoack: list[int] = []
        self.messages_in = 0
        self.messages_out = 0

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
        ids, self.autoack = self.autoack, []
        if ids and self.session:
            self.broker.settle_nowait(self.session, ids, COMPLETE)

    def error(self, message: str, detail: str = "", receipt: str | None = None) -> None:
        """Send one ERROR frame and end the connection."""
        if self.state == CLOSED:
            return
        headers = {"message": message, "content-type": "text/plain", "version": "1.0,1.1,1.2"}
        if receipt is not None:
            headers["receipt-id"] = receipt
        self.send(
            codec.encode_frame(
                "ERROR", headers, detail.encode("utf-8"), version=self.version_for_output()
            )
        )
        log.info(
            "stomp error",
            extra={"peer": fmt_peer(self.peer), "error": message, "detail": detail},
        )
        self.close_reason = message
        self.state = CLOSED

    def version_for_output(self) -> str:
        return self.version

    def _broker_error(self, exc: BrokerError, receipt: str | None = None) -> None:
        self.error(ERROR_NAMES.get(exc.code, "error"), exc.text, receipt)

    # -- input -------------------------------------------------------------------------------

    async def handle_events(self, events: list[Any]) -> None:
        for ev in events:
            if self.state == CLOSED:
                return
            if type(ev) is Heartbeat:
                continue
            frame: Frame = ev
            command = frame.command
            if self.state == CONNECT_WAIT:
                if command not in ("CONNECT", "STOMP"):
                    self.error("Illegal command", "You must log in using CONNECT first")
                    return
                self._on_connect(frame)
                continue
            try:
                await self._dispatch(frame)
            except BrokerError as exc:
                self._broker_error(exc, frame.headers.get("receipt"))
            except StompError as exc:
                self.error(exc.message, exc.detail, frame.headers.get("receipt"))

    async def _dispatch(self, frame: Frame) -> None:
        command = frame.command
        h = frame.headers
        receipt = h.get("receipt")
        tx = h.get("transaction")
        if tx is not None and command in ("SEND", "ACK", "NACK"):
            held = self.transactions.get(tx)
            if held is None:
                self.error("Bad transaction", f"invalid transaction identifier: {tx}", receipt)
                return
            if len(held) >= self.settings.transaction_frames_max:
                self.error(
                    "Transaction too large",
                    f"more than {self.settings.transaction_frames_max} frames in {tx}",
                    receipt,
                )
                return
            held.append(frame)
            if command != "SEND":
                self._receipt(receipt)  # a SEND's receipt waits for the COMMIT
            return
        if command == "SEND":
            pending = await self._on_send(frame)
            if receipt is not None:
                if pending:
                    for p in pending:
                        await p.wait()
                    errors = [self.broker.error_of(p.reply) for p in pending]
                    failed = next((e for e in errors if e is not None), None)
                    if failed is not None:
                        self._broker_error(failed, receipt)
                        return
                self._receipt(receipt)
            return
        if command == "ACK" or command == "NACK":
            self._on_ack(frame, command == "ACK")
            self._receipt(receipt)
        elif command == "SUBSCRIBE":
            await self._on_subscribe(frame)
            self._receipt(receipt)
        elif command == "UNSUBSCRIBE":
            await self._on_unsubscribe(frame)
            self._receipt(receipt)
        elif command == "BEGIN":
            name = h.get("transaction")
            if not name:
                self.error("Missing transaction", "BEGIN needs a transaction header", receipt)
                return
            if name in self.transactions:
                self.error("Bad transaction", f"transaction {name} already begun", receipt)
                return
            self.transactions[name] = []
            self._receipt(receipt)
        elif command == "COMMIT":
            frames = self._take_transaction(h, receipt)
            if frames is None:
                return
            pendings: list[Pending] = []
            for f in frames:
                if f.command == "SEND":
                    pendings.extend(await self._on_send(f))
                else:
                    self._on_ack(f, f.command == "ACK")
            for p in pendings:
                await p.wait()
            self._receipt(receipt)
            for f in frames:
                if f.command == "SEND":
                    self._receipt(f.headers.get("receipt"))
        elif command == "ABORT":
            if self._take_transaction(h, receipt) is not None:
                self._receipt(receipt)
        elif command == "DISCONNECT":
            self._receipt(receipt)
            self.close_reason = "client disconnect"
            self.state = CLOSED
        elif command in ("CONNECT", "STOMP"):
            self.error("Bad CONNECT", "already connected", receipt)
        else:
            self.error("Bad command", f'Could not interpret command "{command}"\n', receipt)

    def _take_transaction(self, h: dict[str, str], receipt: str | None) -> list[Frame] | None:
        name = h.get("transaction")
        if not name or name not in self.transactions:
            self.error("Bad transaction", f"invalid transaction identifier: {name}", receipt)
            return None
        return self.transactions.pop(name)

    def _receipt(self, receipt: str | None) -> None:
        if receipt is not None and self.state != CLOSED:
            self.send(codec.encode_frame("RECEIPT", {"receipt-id": receipt}, version=self.version))

    # -- CONNECT -----------------------------------------------------------------------------

    def _on_connect(self, frame: Frame) -> None:
        h = frame.headers
        version = codec.negotiate_version(h.get("accept-version"))
        if version is None:
            self.error("Version mismatch", "Supported versions are 1.0,1.1,1.2\n")
            return
        self.version = version
        self.decoder.version = version
        s = self.settings
        login = h.get("login")
        if login is not None:
            ok = self.broker.authenticate(login, h.get("passcode") or "") is not None
            if ok and s.default_user_loopback_only and login == s.default_user:
                ok = is_loopback(self.peer)
            if not ok:
                self.error("Bad CONNECT", "Access refused for user '" + login + "'\n")
                return
            user = login
        elif not (s.allow_anonymous and is_loopback(self.peer)):
            self.error("Bad CONNECT", "Access refused: login required")
            return
        else:
            user = s.default_user  # anonymous from loopback acts as the default user
        # RabbitMQ maps the host header to a vhost; a host that names no vhost (clients send
        # the server's host name by default) means the default vhost
        host = h.get("host")
        vhost = host if host and self.broker.vhost_exists(host) else s.vhost
        try:
            self.broker.check_vhost(user, vhost)
        except BrokerError:
            self.error("Bad CONNECT", f"Virtual host '{vhost}' access denied")
            return
        self.user = user
        self.vhost = vhost
        try:
            cx, cy = codec.parse_heart_beat(h.get("heart-beat"))
        except StompError as exc:
            self.error(exc.message, exc.detail)
            return
        floor = s.heartbeat_ms_min
        # we send as often as the client wants to hear from us; we expect what it promised
        self.send_every_ms = max(cy, floor) if cy else 0
        self.expect_every_ms = max(cx, floor) if cx else 0
        self.session = self.broker.open_session(self)
        self.session_name = "session-" + secrets.token_urlsafe(12)
        self.state = CONNECTED
        self.send(
            codec.encode_frame(
                "CONNECTED",
                {
                    "version": version,
                    "heart-beat": f"{self.send_every_ms},{self.expect_every_ms}",
                    "server": f"polymq/{__version__}",
                    "session": self.session_name,
                },
                version=version,
            )
        )

    # -- SEND --------------------------------------------------------------------------------

    async def _on_send(self, frame: Frame) -> list[Pending]:
        h = frame.headers
        dest = h.get("destination")
        if not dest:
            self.error("Missing destination", "SEND needs a destination header")
            return []
        target = self._send_target(dest)
        if target is None:
            return []
        exchange, rk, declare = target
        if declare is not None:
            self._allow("queue", declare, Broker.CONFIGURE)
        self._allow_publish(exchange, rk)
        if declare is not None:
            await self.broker.declare_queue(declare, vhost=self.vhost, durable=True)
        props = self._message_props(h)
        reply_to = props.get("reply_to")
        if isinstance(reply_to, str) and reply_to.startswith("/temp-queue/"):
            props["reply_to"] = "/reply-queue/" + await self._temp_queue(reply_to)
        pendings: list[Pending] = []
        self.messages_in += 1
        try:
            for pending, _count in self.broker.publish_nowait(
                exchange, [(rk, props, frame.body)], vhost=self.vhost
            ):
                pending.callback = self._publish_failed
                if pending.done:
                    self._publish_failed(pending.reply)
                pendings.append(pending)
        except BrokerError as exc:
            self._broker_error(exc, h.get("receipt"))
        return pendings

    # -- access control: as the AMQP operations RabbitMQ's STOMP plugin performs --------------

    def _allow(self, kind: str, name: str, permission: str) -> None:
        self.broker.check(self.user, self.vhost, kind, name, permission)

    def _allow_publish(self, exchange: str, routing_key: str) -> None:
        self._allow("exchange", exchange, Broker.WRITE)
        self.broker.check_topic(self.user, self.vhost, exchange, routing_key, Broker.WRITE)

    def _allow_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self._allow("queue", queue, Broker.WRITE)
        self._allow("exchange", exchange, Broker.READ)
        self.broker.check_topic(self.user, self.vhost, exchange, routing_key, Broker.READ)

    def _publish_failed(self, reply: Any) -> None:
        exc = self.broker.error_of(reply)
        if exc is not None and self.state != CLOSED:
            self._broker_error(exc)

    def _send_target(self, dest: str) -> tuple[str, str, str | None] | None:
        """(exchange, routing key, queue to declare first) for a SEND destination."""
        if dest.startswith("/queue/"):
            name = dest[7:]
            if not name:
                self.error("Bad destination", f"invalid destination {dest}")
                return None
            declared = self.broker.queue_info(name, vhost=self.vhost) is not None
            return "", name, None if declared else name
        if dest.startswith("/amq/queue/"):
            return "", dest[11:], None
        if dest.startswith("/topic/"):
            return "amq.topic", dest[7:], None
        if dest.startswith("/exchange/"):
            rest = dest[10:]
            name, _, key = rest.partition("/")
            return name, key, None
        if dest.startswith("/reply-queue/"):
            return "", dest[13:], None
        if dest.startswith("/temp-queue/"):
            queue = self.temp_queues.get(dest)
            if queue is None:
                self.error("Bad destination", f"unknown temporary queue {dest}")
                return None
            return "", queue, None
        self.error(
            "Unknown destination",
            f"'{dest}' is not a valid destination.\nValid destination types are: /exchange,"
            " /topic, /queue, /amq/queue, /temp-queue, /reply-queue/.",
        )
        return None

    def _message_props(self, h: dict[str, str]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for name, value in h.items():
            prop = PROPERTY_HEADERS.get(name)
            if prop is not None:
                props[prop] = value
            elif name not in FRAME_HEADERS:
                headers[name] = value
        if h.get("persistent", "").lower() == "true":
            props["delivery_mode"] = 2
        priority = h.get("priority")
        if priority is not None and priority.isdigit():
            props["priority"] = int(priority)
        ts = h.get("timestamp")
        if ts is not None and ts.isdigit():
            props["timestamp"] = int(ts)
        if headers:
            props["headers"] = headers
        return props

    async def _temp_queue(self, dest: str) -> str:
        """The connection's queue for ``/temp-queue/<name>``; created and subscribed on first
        use (the subscription id is the destination, as RabbitMQ)."""
        queue = self.temp_queues.get(dest)
        if queue is not None:
            return queue
        queue = "amq.gen-" + secrets.token_urlsafe(16)[:22]
        v = self.vhost
        self._allow("queue", queue, Broker.CONFIGURE)
        self._allow("queue", queue, Broker.READ)
        await self.broker.declare_queue(
            queue, vhost=v, session=self.session, exclusive=True, auto_delete=True
        )
        sub = Subscription(dest, dest, queue, "auto", "T_" + dest)
        self.subscriptions[dest] = sub
        self.by_tag[sub.tag] = sub
        await self.broker.consume(self.session, queue, tag=sub.tag, vhost=v, prefetch=2000)
        self.temp_queues[dest] = queue
        return queue

    # -- SUBSCRIBE ---------------------------------------------------------------------------

    async def _on_subscribe(self, frame: Frame) -> None:
        h = frame.headers
        dest = h.get("destination")
        if not dest:
            self.error("Missing destination", "SUBSCRIBE needs a destination header")
            return
        sub_id = h.get("id")
        if sub_id is None:
            if self.version == "1.0":
                sub_id = dest
            else:
                self.error("Missing id", "SUBSCRIBE needs an id header in STOMP 1.1 and 1.2")
                return
        if sub_id in self.subscriptions:
            self.error("Duplicated subscription identifier", f"subscription {sub_id} exists")
            return
        if len(self.subscriptions) >= self.settings.subscriptions_max:
            self.error("Too many subscriptions", f"at most {self.settings.subscriptions_max}")
            return
        ack_mode = h.get("ack", "auto")
        if ack_mode not in ("auto", "client", "client-individual"):
            self.error(
                "Bad ack mode", f"ack mode {ack_mode} is not auto, client or client-individual"
            )
            return
        prefetch = h.get("prefetch-count", "0")
        if not prefetch.isdigit():
            self.error("Bad prefetch-count", f"prefetch-count {prefetch} is not a number")
            return
        durable = (
            h.get("persistent", "").lower() == "true" or h.get("durable", "").lower() == "true"
        )
        auto_delete = h.get("auto-delete", "").lower() == "true"
        queue = await self._subscription_queue(dest, sub_id, durable, auto_delete)
        if queue is None:
            return
        tag = "T_" + sub_id
        sub = Subscription(sub_id, dest, queue, ack_mode, tag)
        self.subscriptions[sub_id] = sub
        self.by_tag[tag] = sub
        try:
            await self.broker.consume(
                self.session,
                queue,
                tag=tag,
                vhost=self.vhost,
                prefetch=int(prefetch) if ack_mode != "auto" else max(int(prefetch), 2000),
            )
        except BaseException:
            self.subscriptions.pop(sub_id, None)
            self.by_tag.pop(tag, None)
            raise

    async def _subscription_queue(
        self, dest: str, sub_id: str, durable: bool, auto_delete: bool
    ) -> str | None:
        b = self.broker
        v = self.vhost
        if dest.startswith("/queue/"):
            name = dest[7:]
            self._allow("queue", name, Broker.CONFIGURE)
            self._allow("queue", name, Broker.READ)
            await b.declare_queue(name, vhost=v, durable=True)
            return name
        if dest.startswith("/amq/queue/"):
            name = dest[11:]
            self._allow("queue", name, Broker.READ)
            await b.declare_queue(name, vhost=v, passive=True)
            return name
        if dest.startswith("/topic/"):
            exchange, key = "amq.topic", dest[7:]
        elif dest.startswith("/exchange/"):
            exchange, _, key = dest[10:].partition("/")
            await b.declare_exchange(exchange, vhost=v, passive=True)
        else:
            self.error(
                "Unknown destination",
                f"'{dest}' is not a valid destination.\nValid destination types are:"
                " /exchange, /topic, /queue, /amq/queue.",
            )
            return None
        if durable:
            digest = hashlib.md5(f"{sub_id}".encode(), usedforsecurity=False).hexdigest()
            name = f"stomp-subscription-{digest}"
            self._allow_subscription(name, exchange, key)
            await b.declare_queue(name, vhost=v, durable=True, auto_delete=auto_delete)
        else:
            name = "stomp-subscription-" + secrets.token_urlsafe(16)[:22]
            self._allow_subscription(name, exchange, key)
            await b.declare_queue(
                name, vhost=v, session=self.session, exclusive=True, auto_delete=True
            )
        await b.bind(exchange, name, key, vhost=v, session=self.session)
        return name

    def _allow_subscription(self, queue: str, exchange: str, key: str) -> None:
        """Declare (configure), bind (write, read, topic read) and consume (read)."""
        self._allow("queue", queue, Broker.CONFIGURE)
        self._allow_bind(queue, exchange, key)
        self._allow("queue", queue, Broker.READ)

    async def _on_unsubscribe(self, frame: Frame) -> None:
        h = frame.headers
        sub_id = h.get("id") or (h.get("destination") if self.version == "1.0" else None)
        sub = self.subscriptions.pop(sub_id or "", None)
        if sub is None:
            self.error("Bad subscription", f"no subscription with id {sub_id}")
            return
        self.by_tag.pop(sub.tag, None)
        await self.broker.cancel(self.session, sub.tag)
        if sub.unacked:
            ids = list(sub.unacked.values())
            sub.unacked.clear()
            await self.broker.settle(self.session, ids, REQUEUE)
        durable_topic = sub.queue.startswith("stomp-subscription-") and (
            h.get("persistent", "").lower() == "true" or h.get("durable", "").lower() == "true"
        )
        if durable_topic:
            # unsubscribing a durable subscription with persistent:true removes it, as RabbitMQ
            await self.broker.delete_queue(sub.queue, vhost=self.vhost)

    # -- ACK / NACK --------------------------------------------------------------------------

    def _on_ack(self, frame: Frame, ack: bool) -> None:
        h = frame.headers
        ack_id = h.get("id") if self.version == "1.2" else h.get("message-id")
        if ack_id is None:
            needed = "id" if self.version == "1.2" else "message-id"
            self.error("Missing id", f"{frame.command} needs an {needed} header")
            return
        sub = self._sub_of_ack(ack_id, h.get("subscription"))
        if sub is None or ack_id not in sub.unacked:
            self.error(f"Bad {frame.command}", f"unknown message {ack_id}")
            return
        if sub.ack_mode == "client":
            ids = []
            for key in list(sub.unacked):
                ids.append(sub.unacked.pop(key))
                if key == ack_id:
                    break
        else:
            ids = [sub.unacked.pop(ack_id)]
        if ack:
            op = COMPLETE
        else:
            op = DISCARD if h.get("requeue", "true").lower() == "false" else REQUEUE
        self.broker.settle_nowait(self.session, ids, op, on_error=self._publish_failed_exc)

    def _publish_failed_exc(self, exc: BrokerError) -> None:
        if self.state != CLOSED:
            self._broker_error(exc)

    def _sub_of_ack(self, ack_id: str, sub_id: str | None) -> Subscription | None:
        if sub_id is not None:
            return self.subscriptions.get(sub_id)
        # ack ids are "T_<subscription id>@@<session>@@<n>"
        if ack_id.startswith("T_") and "@@" in ack_id:
            return self.subscriptions.get(ack_id[2:].split("@@", 1)[0])
        return None

    # -- deliveries --------------------------------------------------------------------------

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        sub = self.by_tag.get(tag)
        if sub is None or self.state != CONNECTED:
            return
        version = self.version
        auto = sub.ack_mode == "auto"
        needs_ack_header = version == "1.2" and not auto
        encode = codec.encode_message
        for d in deliveries:
            n = self.next_ack
            self.next_ack = n + 1
            message_id = f"T_{sub.id}@@{self.session_name}@@{n}"
            if auto:
                self.autoack.append(d[D_ID])
            else:
                sub.unacked[message_id] = d[D_ID]
            self.out.append(
                encode(
                    version,
                    self._destination_of(sub, d),
                    sub.id,
                    message_id,
                    message_id if needs_ack_header else None,
                    _message_headers(d[D_PROPS], d[D_REDELIVERED]),
                    d[D_BODY],
                )
            )
        self.messages_out += len(deliveries)
        self.wake_writer()

    def _destination_of(self, sub: Subscription, d: Any) -> str:
        exchange = d[D_EXCHANGE]
        if sub.destination.startswith("/temp-queue/"):
            return f"/queue/{sub.queue}"
        rk = d[D_ROUTING_KEY]
        if exchange == "":
            return f"/queue/{rk}" if sub.destination.startswith("/queue/") else sub.destination
        if exchange == "amq.topic":
            return f"/topic/{rk}"
        return f"/exchange/{exchange}/{rk}"

    def cancelled(self, tag: str) -> None:
        sub = self.by_tag.pop(tag, None)
        if sub is None or self.state != CONNECTED:
            return
        self.subscriptions.pop(sub.id, None)
        self.error("Subscription cancelled", f"the queue of subscription {sub.id} was deleted")

    # -- end ---------------------------------------------------------------------------------

    async def close(self) -> None:
        self.state = CLOSED
        if self.session:
            session, self.session = self.session, 0
            try:
                await self.broker.close_session(session)
            except BrokerError as exc:  # pragma: no cover
                log.warning("stomp session release failed", extra={"error": exc.text})

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": fmt_peer(self.peer),
            "user": self.user,
            "vhost": self.vhost,
            "version": self.version,
            "subscriptions": len(self.subscriptions),
        }


def _message_headers(props: dict[str, Any] | None, redelivered: bool) -> dict[str, str]:
    """Core message properties -> MESSAGE headers (the inverse of ``_message_props``)."""
    out: dict[str, str] = {"redelivered": "true" if redelivered else "false"}
    if not props:
        return out
    for header, prop in PROPERTY_HEADERS.items():
        value = props.get(prop)
        if value is not None:
            out[header] = str(value)
    reply_to = out.get("reply-to")
    if reply_to is not None and not reply_to.startswith("/"):
        out["reply-to"] = "/reply-queue/" + reply_to  # an AMQP reply queue name
    if props.get("delivery_mode") == 2:
        out["persistent"] = "true"
    if "priority" in props:
        out["priority"] = str(props["priority"])
    if "timestamp" in props:
        out["timestamp"] = str(props["timestamp"])
    headers = props.get("headers")
    if headers:
        for name, value in headers.items():
            if name in out or name in FRAME_HEADERS:
                continue
            out[str(name)] = _header_value(value)
    return out


def _header_value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
