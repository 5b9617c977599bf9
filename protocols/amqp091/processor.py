"""AMQP 0-9-1 connection processor: codec events -> core API calls, core effects -> frames.

One ``AMQPConnection`` per client connection. It owns the handshake, the channels and every
protocol id (delivery tags, publisher-confirm sequence numbers, consumer tags); the core only
sees sessions and message ids (DESIGN.md section 3).

Rules of the connection state (``state``):

1. ``HEADER`` -> (protocol header ok, send Start) -> ``START_OK`` -> (StartOk authenticated, send
   Tune) -> ``TUNE_OK`` -> ``OPEN_WAIT`` -> (Open of an existing vhost, send OpenOk) -> ``OPEN``.
   Any other method in a handshake state is a connection error 503 COMMAND_INVALID (before Open)
   and nothing but the expected method is accepted.
2. ``OPEN``: channel methods are served. A connection error (codes >= 500, or any error on
   channel 0) sends connection.close and moves to ``CLOSING``: every frame but close-ok is then
   ignored; close-ok (or the close timeout) ends the connection.
3. A client connection.close gets close-ok and ends the connection (``CLOSED``).

Rules of a channel:

1. A channel exists between channel.open and its close-ok. A method on a channel that is not
   open is a connection error 504 CHANNEL_ERROR; channel.open of an open channel likewise.
2. A channel error (codes < 500: 403, 404, 405, 406) sends channel.close, returns the channel's
   unacked messages (its core session goes down at once) and ignores every frame on the channel
   until close-ok.
3. Each channel is one core session; the connection has its own session, which owns its
   exclusive queues.
4. Deliveries for a consumer whose consume-ok has not been sent yet are held and sent right
   after it, so a client never sees basic.deliver before basic.consume-ok.

Publishing: consecutive basic.publish events of one received chunk on the same channel and
exchange go to the core as one batch without waiting. In confirm mode each message takes the
next sequence number; when the core answers for a batch, basic.return (mandatory, unroutable)
precedes the ack, and a batch that was fully accepted is confirmed with one ack(multiple).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as spec

from broker import __version__
from broker.api import (
    COMPLETE,
    D_BODY,
    D_COUNT,
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
from protocols.amqp091 import codec
from protocols.amqp091.codec import (
    Ack,
    AMQPError,
    ContentTooLarge,
    Heartbeat,
    Method,
    Publish,
)

log = logging.getLogger("polymq.amqp")

HEADER, START_OK, TUNE_OK, OPEN_WAIT, OPEN, CLOSING, CLOSED = range(7)

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": False,
}


@dataclass(frozen=True, slots=True)
class AMQPSettings:
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat_s: int = 60
    message_bytes_max: int = 16 << 20
    default_user: str = "guest"
    default_pass: str = "guest"
    default_user_loopback_only: bool = True
    prefetch_count_max: int = 65535
    no_ack_window: int = 2000


def _reply_text(exc: BrokerError | AMQPError) -> str:
    """The reply text as it goes on the wire: ``NAME - detail``, at most 255 octets."""
    text = exc.reply_text if isinstance(exc, AMQPError) else exc.text
    raw = text.encode("utf-8")
    return text if len(raw) <= 255 else raw[:255].decode("utf-8", "ignore")


@dataclass(slots=True)
class Consumer:
    tag: str
    queue: str
    no_ack: bool


@dataclass(slots=True)
class TxOp:
    kind: str  # "publish" | "settle"
    args: tuple[Any, ...]


@dataclass(eq=False, slots=True)
class Channel:
    number: int
    conn: AMQPConnection
    session: int = 0
    closing: bool = False
    next_tag: int = 1
    unacked: dict[int, int] = field(default_factory=dict)  # delivery tag -> core message id
    consumers: dict[str, Consumer] = field(default_factory=dict)
    held: dict[str, list[Any]] = field(default_factory=dict)  # tag -> deliveries before consume-ok
    prefetch: int = 0  # basic.qos global=false: applies to consumers started after it
    confirm: bool = False
    publish_seq: int = 0
    tx: bool = False
    tx_ops: list[TxOp] = field(default_factory=list)
    last_queue: str = ""
    autoack: list[int] = field(default_factory=list)  # no-ack deliveries not yet written

    # -- SessionSink -----------------------------------------------------------------------

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:
        if self.closing:
            return
        held = self.held.get(tag)
        if held is not None:
            held.extend(deliveries)
            return
        consumer = self.consumers.get(tag)
        if consumer is None:
            return
        self._send_deliveries(consumer, deliveries)

    def _send_deliveries(self, consumer: Consumer, deliveries: list[Any]) -> None:
        conn = self.conn
        frame_max = conn.frame_max
        encode = codec.encode_deliver
        number = self.number
        tag = consumer.tag
        unacked = self.unacked
        out = conn.out
        dtag = self.next_tag
        no_ack = consumer.no_ack
        if no_ack:
            # Settled once the frames have left through the socket (on_output_flushed).
            self.autoack.extend([d[D_ID] for d in deliveries])
            conn.autoack_channels[self.number] = self
        for d in deliveries:
            if not no_ack:
                unacked[dtag] = d[D_ID]
            out.append(
                encode(
                    number,
                    tag,
                    dtag,
                    d[D_REDELIVERED],
                    d[D_EXCHANGE],
                    d[D_ROUTING_KEY],
                    d[D_PROPS],
                    d[D_BODY],
                    frame_max,
                )
            )
            dtag += 1
        self.next_tag = dtag
        conn.deliveries_sent += len(deliveries)
        conn.wake_writer()

    def cancelled(self, tag: str) -> None:
        consumer = self.consumers.pop(tag, None)
        self.held.pop(tag, None)
        if consumer is None or self.closing:
            return
        if self.conn.client_capabilities.get("consumer_cancel_notify"):
            self.conn.send_method(self.number, spec.Basic.Cancel(consumer_tag=tag, nowait=True))


class _ConnectionSink:
    """The connection's own session receives no deliveries."""

    def deliver(self, tag: str, queue: str, deliveries: list[Any]) -> None:  # pragma: no cover
        pass

    def cancelled(self, tag: str) -> None:  # pragma: no cover
        pass


class AMQPConnection:
    def __init__(
        self,
        broker: Broker,
        settings: AMQPSettings,
        *,
        peer: tuple[str, int] | None = None,
        wake_writer: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.peer = peer
        self.state = HEADER
        self.out: list[bytes] = []
        self.wake_writer = wake_writer
        self.decoder = codec.Decoder(
            frame_max=settings.frame_max, message_bytes_max=settings.message_bytes_max
        )
        self.frame_max = settings.frame_max
        self.channel_max = settings.channel_max
        self.heartbeat_s = 0
        self.vhost = "/"
        self.user = ""
        self.client_properties: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.channels: dict[int, Channel] = {}
        self.session = 0
        self.closed_reason = ""
        self.deliveries_sent = 0
        self.publishes_received = 0
        #: held by a resource alarm (connection.blocked sent when the client can take it)
        self.blocked = False
        # Errors found in callbacks (confirms, publish replies) handled after the current batch.
        self._deferred: list[tuple[int, BrokerError]] = []
        self.autoack_channels: dict[int, Channel] = {}
        self._handlers: dict[str, Callable[[Channel, Any], Any]] = {
            "Channel.Close": self._channel_close,
            "Channel.CloseOk": self._channel_close_ok,
            "Channel.Flow": self._channel_flow,
            "Channel.FlowOk": self._ignore,
            "Exchange.Declare": self._exchange_declare,
            "Exchange.Delete": self._exchange_delete,
            "Exchange.Bind": self._exchange_bind,
            "Exchange.Unbind": self._exchange_unbind,
            "Queue.Declare": self._queue_declare,
            "Queue.Bind": self._queue_bind,
            "Queue.Unbind": self._queue_unbind,
            "Queue.Purge": self._queue_purge,
            "Queue.Delete": self._queue_delete,
            "Basic.Qos": self._basic_qos,
            "Basic.Consume": self._basic_consume,
            "Basic.Cancel": self._basic_cancel,
            "Basic.Get": self._basic_get,
            "Basic.Ack": self._basic_ack_method,
            "Basic.Nack": self._basic_nack,
            "Basic.Reject": self._basic_reject,
            "Basic.Recover": self._basic_recover,
            "Basic.RecoverAsync": self._basic_recover,
            "Confirm.Select": self._confirm_select,
            "Tx.Select": self._tx_select,
            "Tx.Commit": self._tx_commit,
            "Tx.Rollback": self._tx_rollback,
        }

    # -- output ------------------------------------------------------------------------------

    def send_method(self, channel: int, method: Any) -> None:
        self.out.append(codec.encode_method(channel, method))
        self.wake_writer()

    def on_output_flushed(self) -> None:
        """The output taken so far has been written to the socket: settle the no-ack
        deliveries it carried, which lets the core send the next window."""
        if not self.autoack_channels:
            return
        channels = list(self.autoack_channels.values())
        self.autoack_channels.clear()
        for ch in channels:
            ids, ch.autoack = ch.autoack, []
            if ids and ch.session and not ch.closing:
                self.broker.settle_nowait(ch.session, ids, COMPLETE)

    def block(self, reason: str) -> None:
        """A resource alarm holds this publishing connection: say so with connection.blocked
        when the client advertised the ``connection.blocked`` capability."""
        if self.blocked or self.state != OPEN:
            return
        self.blocked = True
        if self.client_capabilities.get("connection.blocked"):
            self.send_method(0, spec.Connection.Blocked(reason=reason[:255]))

    def unblock(self) -> None:
        if not self.blocked:
            return
        self.blocked = False
        if self.state == OPEN and self.client_capabilities.get("connection.blocked"):
            self.send_method(0, spec.Connection.Unblocked())

    def take_output(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    # -- input -------------------------------------------------------------------------------

    def start(self) -> None:
        """Called once the protocol header has arrived."""
        self.state = START_OK
        self.send_method(
            0,
            spec.Connection.Start(
                version_major=0,
                version_minor=9,
                server_properties={
                    "product": "polymq",
                    "version": __version__,
                    "platform": "Python/trio",
                    "copyright": "polymq authors",
                    "information": "https://github.com/polymq/polymq",
                    "capabilities": dict(CAPABILITIES),
                    "cluster_name": "polymq",
                },
                mechanisms="PLAIN AMQPLAIN",
                locales="en_US",
            ),
        )

    async def handle_events(self, events: list[Any]) -> None:
        """Process the events of one received chunk, in order."""
        i = 0
        n = len(events)
        while i < n and self.state not in (CLOSED,):
            ev = events[i]
            kind = type(ev)
            if kind is Publish:
                # Gather the run of publishes on one channel/exchange/mandatory flag.
                j = i + 1
                while (
                    j < n
                    and type(events[j]) is Publish
                    and events[j].channel == ev.channel
                    and events[j].exchange == ev.exchange
                    and events[j].mandatory == ev.mandatory
                ):
                    j += 1
                self._on_publish(events[i:j])
                i = j
                continue
            if kind is Ack:
                j = i + 1
                while j < n and type(events[j]) is Ack and events[j].channel == ev.channel:
                    j += 1
                self._on_acks(events[i:j])
                i = j
                continue
            i += 1
            try:
                if kind is Method:
                    await self._on_method(ev.channel, ev.method)
                elif kind is Heartbeat:
                    pass
                elif kind is ContentTooLarge:
                    ch = self._channel(ev.channel)
                    if ch is not None:
                        await self._channel_error(
                            ch,
                            BrokerError(
                                codec.PRECONDITION_FAILED,
                                f"PRECONDITION_FAILED - message size {ev.size} is larger than"
                                f" configured max size {self.settings.message_bytes_max}",
                            ),
                            ev.class_id,
                            ev.method_id,
                        )
            except AMQPError as exc:
                self.connection_error(exc.code, _reply_text(exc), exc.class_id, exc.method_id)
            if self._deferred:
                await self._run_deferred()
        if self._deferred:
            await self._run_deferred()

    async def _run_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for number, exc in deferred:
            ch = self.channels.get(number)
            if ch is not None and not ch.closing:
                await self._channel_error(ch, exc, 60, 40)

    def _channel(self, number: int) -> Channel | None:
        """The open channel ``number``; None when it is closing (frames are dropped)."""
        if self.state != OPEN:
            return None
        ch = self.channels.get(number)
        if ch is None:
            raise AMQPError(
                codec.CHANNEL_ERROR, "expected 'channel.open'", channel=number, class_id=60
            )
        return None if ch.closing else ch

    async def _on_method(self, number: int, method: Any) -> None:
        name = method.name
        state = self.state
        if state == CLOSING:
            if name == "Connection.CloseOk":
                self.state = CLOSED
            return
        if number == 0:
            await self._connection_method(name, method)
            return
        if state != OPEN:
            raise AMQPError(
                codec.COMMAND_INVALID,
                f"unexpected method {name} on channel {number} during the handshake",
                class_id=method.index >> 16,
                method_id=method.index & 0xFFFF,
            )
        if name == "Channel.Open":
            self._channel_open(number)
            return
        if name == "Channel.CloseOk":
            ch = self.channels.get(number)
            if ch is not None and ch.closing:
                del self.channels[number]
                return
        try:
            ch = self._channel(number)
        except AMQPError as exc:
            exc.class_id, exc.method_id = method.index >> 16, method.index & 0xFFFF
            raise
        if ch is None:
            return
        handler = self._handlers.get(name)
        if handler is None:
            raise AMQPError(
                codec.COMMAND_INVALID,
                f"unexpected method {name} on channel {number}",
                channel=number,
                class_id=method.index >> 16,
                method_id=method.index & 0xFFFF,
            )
        try:
            await handler(ch, method)
        except BrokerError as exc:
            await self._channel_error(ch, exc, method.index >> 16, method.index & 0xFFFF)

    async def _channel_error(
        self, ch: Channel, exc: BrokerError, class_id: int, method_id: int
    ) -> None:
        if exc.code >= 500:
            self.connection_error(exc.code, _reply_text(exc), class_id, method_id)
            return
        ch.closing = True
        ch.consumers.clear()
        ch.held.clear()
        ch.unacked.clear()
        ch.tx_ops.clear()
        self.send_method(
            ch.number,
            spec.Channel.Close(
                reply_code=exc.code,
                reply_text=_reply_text(exc),
                class_id=class_id,
                method_id=method_id,
            ),
        )
        await self._release_session(ch)

    async def _release_session(self, ch: Channel) -> None:
        if ch.session:
            session, ch.session = ch.session, 0
            try:
                await self.broker.close_session(session)
            except BrokerError as exc:  # pragma: no cover - the core accepts any session
                log.warning("session release failed", extra={"error": exc.text})

    def connection_error(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        if self.state in (CLOSING, CLOSED):
            return
        self.closed_reason = f"{code} {text}"
        log.info(
            "amqp connection error",
            extra={"peer": fmt_peer(self.peer), "code": code, "text": text},
        )
        self.send_method(
            0,
            spec.Connection.Close(
                reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
            ),
        )
        self.state = CLOSING

    # -- connection class -------------------------------------------------------------------

    async def _connection_method(self, name: str, method: Any) -> None:
        state = self.state
        if name == "Connection.Close":
            self.send_method(0, spec.Connection.CloseOk())
            self.state = CLOSED
            return
        if name == "Connection.CloseOk":
            self.state = CLOSED
            return
        if state == START_OK and name == "Connection.StartOk":
            self._start_ok(method)
        elif state == TUNE_OK and name == "Connection.TuneOk":
            self._tune_ok(method)
        elif state == OPEN_WAIT and name == "Connection.Open":
            self._open(method)
        elif state == OPEN and name in ("Connection.Blocked", "Connection.Unblocked"):
            pass
        elif state == OPEN and name == "Connection.UpdateSecret":
            self.send_method(0, spec.Connection.UpdateSecretOk())
        elif state == OPEN and not name.startswith("Connection."):
            raise AMQPError(
                codec.CHANNEL_ERROR,
                "unexpected method in connection state running",
                class_id=method.index >> 16,
                method_id=method.index & 0xFFFF,
            )
        else:
            raise AMQPError(
                codec.COMMAND_INVALID,
                f"unexpected method {name} on channel 0",
                class_id=method.index >> 16,
                method_id=method.index & 0xFFFF,
            )

    def _start_ok(self, method: Any) -> None:
        props = method.client_properties or {}
        self.client_properties = props
        caps = props.get("capabilities")
        self.client_capabilities = caps if isinstance(caps, dict) else {}
        mechanism = method.mechanism
        response = method.response
        raw = response.encode("utf-8", "surrogateescape") if isinstance(response, str) else response
        user = password = None
        if mechanism == "PLAIN":
            parts = bytes(raw).split(b"\x00")
            if len(parts) == 3:
                user, password = (
                    parts[1].decode("utf-8", "replace"),
                    parts[2].decode("utf-8", "replace"),
                )
        elif mechanism == "AMQPLAIN":
            table = _parse_amqplain(bytes(raw))
            user, password = table.get("LOGIN"), table.get("PASSWORD")
        else:
            # As RabbitMQ: an unknown mechanism ends the connection without a reply.
            self._close_silently(f"unsupported authentication mechanism '{mechanism}'")
            return
        s = self.settings
        ok = (
            user is not None
            and password is not None
            and self.broker.authenticate(user, password) is not None
        )
        reason = None
        if not ok:
            reason = (
                f"Login was refused using authentication mechanism {mechanism}."
                " For details see the broker logfile."
            )
        elif s.default_user_loopback_only and user == s.default_user and not is_loopback(self.peer):
            reason = f"user '{user}' can only connect via localhost"
        if reason is not None:
            log.info("amqp login refused", extra={"peer": fmt_peer(self.peer), "user": user})
            if self.client_capabilities.get("authentication_failure_close"):
                raise AMQPError(codec.ACCESS_REFUSED, reason)
            # Clients that do not announce authentication_failure_close get a plain close.
            self._close_silently(reason)
            return
        self.user = user or ""
        self.state = TUNE_OK
        self.send_method(
            0,
            spec.Connection.Tune(
                channel_max=s.channel_max, frame_max=s.frame_max, heartbeat=s.heartbeat_s
            ),
        )

    def _tune_ok(self, method: Any) -> None:
        s = self.settings
        # A client may lower the server's limits, never raise them (0 asks for no limit).
        frame_max, channel_max = method.frame_max, method.channel_max
        if not codec.FRAME_MIN_SIZE <= frame_max <= s.frame_max:
            raise AMQPError(
                codec.NOT_ALLOWED,
                f"negotiated frame_max = {frame_max} is outside"
                f" [{codec.FRAME_MIN_SIZE}, {s.frame_max}]",
                class_id=10,
                method_id=31,
            )
        if not 0 < channel_max <= s.channel_max:
            raise AMQPError(
                codec.NOT_ALLOWED,
                f"negotiated channel_max = {channel_max} is outside [1, {s.channel_max}]",
                class_id=10,
                method_id=31,
            )
        self.frame_max = frame_max
        self.decoder.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat_s = method.heartbeat
        self.state = OPEN_WAIT

    def _close_silently(self, reason: str) -> None:
        """End the connection without connection.close (as RabbitMQ does for some refusals
        during the handshake)."""
        self.closed_reason = reason
        self.state = CLOSED

    def _open(self, method: Any) -> None:
        vhost = method.virtual_host or "/"
        try:
            self.broker.check_vhost(self.user, vhost)
        except BrokerError as exc:
            raise AMQPError(
                exc.code, exc.text.split(" - ", 1)[-1], class_id=10, method_id=40
            ) from None
        self.vhost = vhost
        self.session = self.broker.open_session(_ConnectionSink())
        self.state = OPEN
        self.send_method(0, spec.Connection.OpenOk())

    async def close(self) -> None:
        """The socket is gone or the connection ended: release every session."""
        self.state = CLOSED
        channels = list(self.channels.values())
        self.channels.clear()
        for ch in channels:
            ch.closing = True
            await self._release_session(ch)
        if self.session:
            session, self.session = self.session, 0
            await self.broker.close_session(session)

    # -- channel class ----------------------------------------------------------------------

    def _channel_open(self, number: int) -> None:
        if number in self.channels:
            raise AMQPError(
                codec.CHANNEL_ERROR,
                "second 'channel.open' seen",
                channel=number,
                class_id=20,
                method_id=10,
            )
        if len(self.channels) >= self.channel_max or number > self.channel_max:
            raise AMQPError(
                codec.NOT_ALLOWED,
                f"number of channels opened ({len(self.channels)}) has reached the negotiated"
                f" channel_max ({self.channel_max})",
                channel=number,
            )
        ch = Channel(number, self)
        ch.session = self.broker.open_session(ch, connection=self.session, channel=number)
        self.channels[number] = ch
        self.send_method(number, spec.Channel.OpenOk())

    async def _channel_close(self, ch: Channel, method: Any) -> None:
        ch.closing = True
        del self.channels[ch.number]
        await self._release_session(ch)
        self.send_method(ch.number, spec.Channel.CloseOk())

    async def _channel_close_ok(self, ch: Channel, method: Any) -> None:
        pass  # handled in _on_method

    async def _channel_flow(self, ch: Channel, method: Any) -> None:
        if not method.active:
            raise BrokerError(
                codec.NOT_IMPLEMENTED, "NOT_IMPLEMENTED - active=false is not supported"
            )
        self.send_method(ch.number, spec.Channel.FlowOk(active=True))

    async def _ignore(self, ch: Channel, method: Any) -> None:
        pass

    # -- access control ---------------------------------------------------------------------
    # RabbitMQ's rules (broker/core/access.py): declare/delete need configure, publish write on
    # the exchange (and topic write of the key), bind write on the destination and read on the
    # source (and topic read of the key), consume/get/purge read on the queue.

    def _allow(self, kind: str, name: str, permission: str) -> None:
        self.broker.check(self.user, self.vhost, kind, name, permission)

    def _allow_bind(self, dest_kind: str, dest: str, source: str, routing_key: str) -> None:
        self._allow(dest_kind, dest, Broker.WRITE)
        self._allow("exchange", source, Broker.READ)
        self.broker.check_topic(self.user, self.vhost, source, routing_key, Broker.READ)

    def _publish_refusal(self, exchange: str, msgs: list[Any]) -> BrokerError | None:
        broker = self.broker
        try:
            self._allow("exchange", exchange, Broker.WRITE)
            if broker.topic_restricted(self.user, self.vhost, exchange):
                for rk, _props, _body in msgs:
                    broker.check_topic(self.user, self.vhost, exchange, rk, Broker.WRITE)
        except BrokerError as exc:
            return exc
        return None

    # -- exchange class ---------------------------------------------------------------------

    async def _exchange_declare(self, ch: Channel, m: Any) -> None:
        if not m.passive:
            self._allow("exchange", m.exchange, Broker.CONFIGURE)
            ae = (m.arguments or {}).get("alternate-exchange")
            if isinstance(ae, str):
                self._allow("exchange", ae, Broker.WRITE)
                self._allow("exchange", m.exchange, Broker.READ)
        await self.broker.declare_exchange(
            m.exchange,
            m.exchange_type,
            vhost=self.vhost,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments or {},
            passive=m.passive,
        )
        if not m.nowait:
            self.send_method(ch.number, spec.Exchange.DeclareOk())

    async def _exchange_delete(self, ch: Channel, m: Any) -> None:
        self._allow("exchange", m.exchange, Broker.CONFIGURE)
        await self.broker.delete_exchange(m.exchange, vhost=self.vhost, if_unused=m.if_unused)
        if not m.nowait:
            self.send_method(ch.number, spec.Exchange.DeleteOk())

    async def _exchange_bind(self, ch: Channel, m: Any) -> None:
        self._allow_bind("exchange", m.destination, m.source, m.routing_key)
        await self.broker.bind(
            m.source,
            m.destination,
            m.routing_key,
            vhost=self.vhost,
            session=ch.session,
            dest_kind="exchange",
            arguments=m.arguments or {},
        )
        if not m.nowait:
            self.send_method(ch.number, spec.Exchange.BindOk())

    async def _exchange_unbind(self, ch: Channel, m: Any) -> None:
        self._allow_bind("exchange", m.destination, m.source, m.routing_key)
        await self.broker.unbind(
            m.source,
            m.destination,
            m.routing_key,
            vhost=self.vhost,
            session=ch.session,
            dest_kind="exchange",
            arguments=m.arguments or {},
        )
        if not m.nowait:
            self.send_method(ch.number, spec.Exchange.UnbindOk())

    # -- queue class ------------------------------------------------------------------------

    def _queue_name(self, ch: Channel, name: str, class_id: int, method_id: int) -> str:
        if name:
            return name
        if not ch.last_queue:
            raise AMQPError(
                codec.NOT_ALLOWED,
                "queue name '' is not allowed: no queue declared on this channel",
                channel=ch.number,
                class_id=class_id,
                method_id=method_id,
            )
        return ch.last_queue

    async def _queue_declare(self, ch: Channel, m: Any) -> None:
        name = m.queue
        if not name:
            if m.passive:
                name = self._queue_name(ch, name, 50, 10)
            else:
                name = "amq.gen-" + secrets.token_urlsafe(16)[:22]
        if not m.passive:
            self._allow("queue", name, Broker.CONFIGURE)
            dlx = (m.arguments or {}).get("x-dead-letter-exchange")
            if isinstance(dlx, str):
                self._allow("exchange", dlx, Broker.WRITE)
                self._allow("queue", name, Broker.READ)
        ok = await self.broker.declare_queue(
            name,
            vhost=self.vhost,
            session=ch.session,
            durable=m.durable,
            exclusive=m.exclusive,
            auto_delete=m.auto_delete,
            arguments=m.arguments or {},
            passive=m.passive,
        )
        ch.last_queue = ok.name
        if not m.nowait:
            self.send_method(
                ch.number,
                spec.Queue.DeclareOk(
                    queue=ok.name,
                    message_count=ok.message_count,
                    consumer_count=ok.consumer_count,
                ),
            )

    async def _queue_bind(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 50, 20)
        routing_key = m.routing_key or (queue if not m.queue else "")
        self._allow_bind("queue", queue, m.exchange, routing_key)
        await self.broker.bind(
            m.exchange,
            queue,
            routing_key,
            vhost=self.vhost,
            session=ch.session,
            arguments=m.arguments or {},
        )
        if not m.nowait:
            self.send_method(ch.number, spec.Queue.BindOk())

    async def _queue_unbind(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 50, 50)
        self._allow_bind("queue", queue, m.exchange, m.routing_key)
        await self.broker.unbind(
            m.exchange,
            queue,
            m.routing_key,
            vhost=self.vhost,
            session=ch.session,
            arguments=m.arguments or {},
        )
        self.send_method(ch.number, spec.Queue.UnbindOk())

    async def _queue_purge(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 50, 30)
        self._allow("queue", queue, Broker.READ)
        count = await self.broker.purge_queue(queue, vhost=self.vhost, session=ch.session)
        if not m.nowait:
            self.send_method(ch.number, spec.Queue.PurgeOk(message_count=count))

    async def _queue_delete(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 50, 40)
        self._allow("queue", queue, Broker.CONFIGURE)
        count = await self.broker.delete_queue(
            queue,
            vhost=self.vhost,
            session=ch.session,
            if_unused=m.if_unused,
            if_empty=m.if_empty,
        )
        if not m.nowait:
            self.send_method(ch.number, spec.Queue.DeleteOk(message_count=count))

    # -- basic class: consumers ---------------------------------------------------------------

    async def _basic_qos(self, ch: Channel, m: Any) -> None:
        if m.prefetch_size:
            raise BrokerError(
                codec.NOT_IMPLEMENTED,
                f"NOT_IMPLEMENTED - prefetch_size!=0 ({m.prefetch_size})",
            )
        count = m.prefetch_count
        if count > self.settings.prefetch_count_max:
            raise BrokerError(
                codec.PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - prefetch_count {count} is larger than the maximum"
                f" {self.settings.prefetch_count_max}",
            )
        if m.global_:
            await self.broker.set_prefetch(ch.session, count)
        else:
            ch.prefetch = count
        self.send_method(ch.number, spec.Basic.QosOk())

    async def _basic_consume(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 60, 20)
        self._allow("queue", queue, Broker.READ)
        tag = m.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)[:22]
        if tag in ch.consumers:
            raise AMQPError(
                codec.NOT_ALLOWED,
                f"attempt to reuse consumer tag '{tag}'",
                channel=ch.number,
                class_id=60,
                method_id=20,
            )
        consumer = Consumer(tag, queue, m.no_ack)
        ch.consumers[tag] = consumer
        ch.held[tag] = []
        try:
            # A no-ack consumer takes a window of deliveries that are settled once written, so
            # a queue of any length never floods the connection's memory.
            await self.broker.consume(
                ch.session,
                queue,
                tag=tag,
                vhost=self.vhost,
                prefetch=self.settings.no_ack_window if m.no_ack else ch.prefetch,
                no_ack=False,
                exclusive=m.exclusive,
                arguments=m.arguments or {},
            )
        except BaseException:
            ch.consumers.pop(tag, None)
            ch.held.pop(tag, None)
            raise
        held = ch.held.pop(tag, [])
        if not m.nowait:
            self.send_method(ch.number, spec.Basic.ConsumeOk(consumer_tag=tag))
        if held and tag in ch.consumers:
            ch._send_deliveries(consumer, held)

    async def _basic_cancel(self, ch: Channel, m: Any) -> None:
        tag = m.consumer_tag
        if tag in ch.consumers:
            await self.broker.cancel(ch.session, tag)
            ch.consumers.pop(tag, None)
            ch.held.pop(tag, None)
        if not m.nowait:
            self.send_method(ch.number, spec.Basic.CancelOk(consumer_tag=tag))

    async def _basic_get(self, ch: Channel, m: Any) -> None:
        queue = self._queue_name(ch, m.queue, 60, 70)
        self._allow("queue", queue, Broker.READ)
        deliveries, remaining = await self.broker.get(
            ch.session, queue, vhost=self.vhost, max_n=1, no_ack=m.no_ack
        )
        if not deliveries:
            self.send_method(ch.number, spec.Basic.GetEmpty())
            return
        d = deliveries[0]
        dtag = ch.next_tag
        ch.next_tag += 1
        if not m.no_ack:
            ch.unacked[dtag] = d[D_ID]
        self.out.append(
            codec.encode_get_ok(
                ch.number,
                dtag,
                d[D_REDELIVERED] or d[D_COUNT] > 1,
                d[D_EXCHANGE],
                d[D_ROUTING_KEY],
                remaining,
                d[D_PROPS],
                d[D_BODY],
                self.frame_max,
            )
        )
        self.wake_writer()

    # -- basic class: settling ----------------------------------------------------------------

    def _take_tags(self, ch: Channel, delivery_tag: int, multiple: bool) -> list[int]:
        """Core message ids for a (possibly multiple) ack/nack; raises 406 on unknown tags."""
        unacked = ch.unacked
        if multiple:
            if delivery_tag == 0:
                ids = list(unacked.values())
                unacked.clear()
                return ids
            if delivery_tag not in unacked and (not unacked or delivery_tag < next(iter(unacked))):
                raise BrokerError(
                    codec.PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}",
                )
            ids = []
            while unacked:
                first = next(iter(unacked))
                if first > delivery_tag:
                    break
                ids.append(unacked.pop(first))
            return ids
        mid = unacked.pop(delivery_tag, None)
        if mid is None:
            raise BrokerError(
                codec.PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}",
            )
        return [mid]

    def _settle(self, ch: Channel, ids: list[int], op: int) -> None:
        if not ids:
            return
        if ch.tx:
            ch.tx_ops.append(TxOp("settle", (ids, op)))
            return
        self.broker.settle_nowait(ch.session, ids, op, on_error=self._deferred_error(ch.number))

    def _on_acks(self, acks: list[Any]) -> None:
        number = acks[0].channel
        try:
            ch = self._channel(number)
        except AMQPError as exc:
            self.connection_error(exc.code, _reply_text(exc), 60, 80)
            return
        if ch is None:
            return
        ids: list[int] = []
        try:
            for ack in acks:
                ids.extend(self._take_tags(ch, ack.delivery_tag, ack.multiple))
        except BrokerError as exc:
            self._settle(ch, ids, COMPLETE)
            self._deferred.append((number, exc))
            return
        self._settle(ch, ids, COMPLETE)

    async def _basic_ack_method(self, ch: Channel, m: Any) -> None:
        self._settle(ch, self._take_tags(ch, m.delivery_tag, m.multiple), COMPLETE)

    async def _basic_nack(self, ch: Channel, m: Any) -> None:
        ids = self._take_tags(ch, m.delivery_tag, m.multiple)
        self._settle(ch, ids, REQUEUE if m.requeue else DISCARD)

    async def _basic_reject(self, ch: Channel, m: Any) -> None:
        ids = self._take_tags(ch, m.delivery_tag, False)
        self._settle(ch, ids, REQUEUE if m.requeue else DISCARD)

    async def _basic_recover(self, ch: Channel, m: Any) -> None:
        ids = list(ch.unacked.values())
        ch.unacked.clear()
        if ids:
            await self.broker.settle(ch.session, ids, REQUEUE)
        if m.name == "Basic.Recover":
            self.send_method(ch.number, spec.Basic.RecoverOk())

    # -- publishing ---------------------------------------------------------------------------

    def _deferred_error(self, number: int) -> Callable[[BrokerError], None]:
        def fail(exc: BrokerError) -> None:
            self._deferred.append((number, exc))
            self.wake_writer()

        return fail

    def _on_publish(self, run: list[Any]) -> None:
        first = run[0]
        try:
            ch = self._channel(first.channel)
        except AMQPError as exc:
            self.connection_error(exc.code, _reply_text(exc), 60, 40)
            return
        if ch is None:
            return
        self.publishes_received += len(run)
        msgs = [(p.routing_key, p.props, p.body) for p in run]
        exchange = first.exchange
        if exchange == "amq.default":
            exchange = ""
        refused = self._publish_refusal(exchange, msgs)
        if refused is not None:
            self._deferred.append((ch.number, refused))
            return
        if ch.tx:
            ch.tx_ops.append(TxOp("publish", (exchange, msgs, first.mandatory, run)))
            return
        self._publish(ch, exchange, msgs, first.mandatory, run)

    def _publish(
        self, ch: Channel, exchange: str, msgs: list[Any], mandatory: bool, run: list[Any]
    ) -> list[Pending]:
        seq0 = ch.publish_seq + 1
        if ch.confirm:
            ch.publish_seq += len(msgs)
        number = ch.number
        try:
            pendings = self.broker.publish_nowait(
                exchange, msgs, vhost=self.vhost, mandatory=mandatory
            )
        except BrokerError as exc:
            self._deferred.append((number, exc))
            if ch.confirm:
                self._confirm_range(ch, seq0, seq0 + len(msgs) - 1, ack=False)
            return []
        offset = 0
        out: list[Pending] = []
        for pending, size in pendings:
            callback = self._publish_done(ch, run[offset : offset + size], seq0 + offset, mandatory)
            pending.callback = callback
            if pending.done:
                callback(pending.reply)
            offset += size
            out.append(pending)
        return out

    def _publish_done(
        self, ch: Channel, run: list[Any], seq0: int, mandatory: bool
    ) -> Callable[[Any], None]:
        def done(reply: Any) -> None:
            if ch.closing or self.state in (CLOSING, CLOSED):
                return
            error = self.broker.error_of(reply)
            n = len(run)
            if error is not None:
                self._deferred.append((ch.number, error))
                if ch.confirm:
                    self._confirm_range(ch, seq0, seq0 + n - 1, ack=False)
                self.wake_writer()
                return
            routed, rejected = reply
            if mandatory:
                for i, count in enumerate(routed):
                    if count == 0:
                        p = run[i]
                        self.out.append(
                            codec.encode_return(
                                ch.number,
                                codec.NO_ROUTE,
                                "NO_ROUTE",
                                p.exchange,
                                p.routing_key,
                                p.props,
                                p.body,
                                self.frame_max,
                            )
                        )
            if ch.confirm:
                if not rejected:
                    self.out.append(codec.encode_confirm(ch.number, seq0 + n - 1, n > 1, True))
                else:
                    refused = set(rejected)
                    for i in range(n):
                        self.out.append(
                            codec.encode_confirm(ch.number, seq0 + i, False, i not in refused)
                        )
            self.wake_writer()

        return done

    def _confirm_range(self, ch: Channel, lo: int, hi: int, *, ack: bool) -> None:
        if hi < lo:
            return
        if lo == hi:
            self.out.append(codec.encode_confirm(ch.number, hi, False, ack))
        else:
            # multiple=True covers every earlier unconfirmed tag, which all resolved before.
            self.out.append(codec.encode_confirm(ch.number, hi, True, ack))
        self.wake_writer()

    async def _confirm_select(self, ch: Channel, m: Any) -> None:
        if ch.tx:
            raise BrokerError(
                codec.PRECONDITION_FAILED,
                "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
            )
        ch.confirm = True
        if not m.nowait:
            self.send_method(ch.number, spec.Confirm.SelectOk())

    async def _tx_select(self, ch: Channel, m: Any) -> None:
        if ch.confirm:
            raise BrokerError(
                codec.PRECONDITION_FAILED,
                "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
            )
        ch.tx = True
        self.send_method(ch.number, spec.Tx.SelectOk())

    async def _tx_commit(self, ch: Channel, m: Any) -> None:
        if not ch.tx:
            raise BrokerError(
                codec.PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional"
            )
        ops, ch.tx_ops = ch.tx_ops, []
        pendings: list[Pending] = []
        ch.tx = False
        try:
            for op in ops:
                if op.kind == "publish":
                    exchange, msgs, mandatory, run = op.args
                    pendings.extend(self._publish(ch, exchange, msgs, mandatory, run))
                else:
                    ids, kind = op.args
                    self._settle(ch, ids, kind)
        finally:
            ch.tx = True
        for pending in pendings:
            await pending.wait()
        if self._deferred:
            return  # the failing publish closes the channel instead of a commit-ok
        self.send_method(ch.number, spec.Tx.CommitOk())

    async def _tx_rollback(self, ch: Channel, m: Any) -> None:
        if not ch.tx:
            raise BrokerError(
                codec.PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional"
            )
        ch.tx_ops.clear()
        self.send_method(ch.number, spec.Tx.RollbackOk())

    # -- introspection ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": fmt_peer(self.peer),
            "user": self.user,
            "vhost": self.vhost,
            "channels": len(self.channels),
            "publishes_received": self.publishes_received,
            "deliveries_sent": self.deliveries_sent,
        }


def _parse_amqplain(raw: bytes) -> dict[str, str]:
    """AMQPLAIN's response: field-table entries without the table's length prefix."""
    out: dict[str, str] = {}
    i = 0
    n = len(raw)
    try:
        while i < n:
            klen = raw[i]
            key = raw[i + 1 : i + 1 + klen].decode("utf-8", "replace")
            i += 1 + klen
            kind = raw[i : i + 1]
            i += 1
            if kind == b"S":
                vlen = int.from_bytes(raw[i : i + 4], "big")
                out[key] = raw[i + 4 : i + 4 + vlen].decode("utf-8", "replace")
                i += 4 + vlen
            elif kind == b"s":
                vlen = raw[i]
                out[key] = raw[i + 1 : i + 1 + vlen].decode("utf-8", "replace")
                i += 1 + vlen
            else:
                break
    except IndexError:
        pass
    return out
