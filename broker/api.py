"""The core API: the only door the front ends use (DESIGN.md section 3).

Every call builds a core command and hands it to the node, which logs it when it is durable
(declares of durable entities, persistent messages into durable queues, their settles) and applies
it directly otherwise. Calls answer after the apply; for durable commands that is after the entry
is on disk. An error reply of the core becomes a ``BrokerError`` carrying the AMQP-style reply
code, which each front end maps to its own protocol error.

Batch forms: ``publish`` takes many messages in one call (split by the core into logged and
transient runs, each one command), ``settle`` takes many message ids; deliveries reach a session's
sink in batches, one call per consumer per apply.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from broker.core import access as A
from broker.core import commands as C
from broker.core.model import (
    ACCESS_REFUSED,
    LOCAL_ID_BASE,
    NOT_ALLOWED,
    SERVICE_SESSION_BASE,
    CoreError,
)
from broker.core.patterns import compile_pattern
from broker.core.routing import check_rule_arguments
from broker.node import BrokerError, Node, Pending, SessionSink

__all__ = [
    "COMPLETE",
    "D_BODY",
    "D_COUNT",
    "D_EXCHANGE",
    "D_ID",
    "D_PROPS",
    "D_REDELIVERED",
    "D_ROUTING_KEY",
    "DISCARD",
    "FLAG_RETAIN",
    "MODIFY",
    "REQUEUE",
    "Broker",
    "BrokerError",
    "LeaderUnavailable",
    "Message",
    "Pending",
    "PublishResult",
    "QueueDeclared",
    "SERVICE_SESSION_BASE",
    "SessionSink",
    "UserInfo",
]


class LeaderUnavailable(Exception):
    """``Broker.call_leader`` could not get an answer. ``served`` False: the leader certainly
    did not run the request (retrying is safe); True: it may have."""

    def __init__(self, text: str, *, served: bool) -> None:
        super().__init__(text)
        self.served = served


#: pause before ``run_while_leading`` starts again a function that returned
RESTART_WHILE_LEADING_S = 1.0

# Settle operations, one vocabulary for every front end.
COMPLETE = C.SETTLE_COMPLETE
REQUEUE = C.SETTLE_REQUEUE
DISCARD = C.SETTLE_DISCARD
MODIFY = C.SETTLE_MODIFY

# Delivery tuple fields, as the core emits them.
D_ID, D_REDELIVERED, D_COUNT, D_EXCHANGE, D_ROUTING_KEY, D_PROPS, D_BODY = range(7)

# (routing_key, properties, body), (routing_key, properties, body, flags) or
# (routing_key, properties, body, flags, opts): flags as the core's PUBLISH flags (FLAG_RETAIN
# keeps the message as the key's retained message); opts as a PUBLISH message's opts
# (``delay_ms``, ``group``, ``dedup``; see broker/core/commands.py).
Message = (
    tuple[str, dict[str, Any], bytes]
    | tuple[str, dict[str, Any], bytes, int]
    | tuple[str, dict[str, Any], bytes, int, dict[str, Any]]
)
FLAG_RETAIN = C.FLAG_RETAIN


@dataclass(frozen=True, slots=True)
class QueueDeclared:
    name: str
    message_count: int
    consumer_count: int


@dataclass(frozen=True, slots=True)
class PublishResult:
    routed: list[int]  # per message: number of queues it reached (0 = unroutable)
    rejected: list[int]  # positions refused by a queue's reject-publish overflow (nack these)
    # position -> (message id, id of the original when dropped as a duplicate, the original's
    # message_id property), for the messages that carried opts
    ids: dict[int, tuple[Any, ...]] | None = None


def _on_error_only(on_error: Callable[[BrokerError], None]) -> Callable[[Any], None]:
    def callback(reply: Any) -> None:
        if isinstance(reply, CoreError):
            on_error(BrokerError(reply.code, reply.text))

    return callback


def _check(reply: Any) -> Any:
    if isinstance(reply, CoreError):
        raise BrokerError(reply.code, reply.text)
    return reply


class Broker:
    def __init__(self, node: Node) -> None:
        self.node = node

    # -- leadership ----------------------------------------------------------------------------

    def leading(self) -> bool:
        """True where work that must happen once per cluster runs: always on a single node,
        on the leader in a cluster (see ``run_while_leading``)."""
        return self.node.leading

    async def run_while_leading(self, fn: Callable[[], Awaitable[Any]]) -> NoReturn:
        """Run ``fn()`` whenever this node leads; cancel it when leadership moves away, and
        start it again when it comes back. On a single node ``fn`` runs at once (and again,
        ``RESTART_WHILE_LEADING_S`` later, if it returns). Background work of the adapters
        (schedules, delivery workers, executions) goes through here so a cluster does it once,
        on the node whose state is current; what it reads and writes goes through the log, so
        a new leader carries on."""
        node = self.node
        while True:
            await node.wait_leading(True)
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    await node.wait_leading(False)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await fn()
                nursery.cancel_scope.cancel()
            await trio.sleep(RESTART_WHILE_LEADING_S)

    @property
    def clustered(self) -> bool:
        return self.node.cluster is not None

    def serve_for_followers(
        self, service: str, handler: Callable[[bytes], Awaitable[bytes]]
    ) -> None:
        """Cluster mode: serve ``service`` requests other nodes send with ``call_leader``
        while this node leads."""
        assert self.node.cluster is not None
        self.node.cluster.serve_rpc(service, handler)

    async def call_leader(self, service: str, payload: bytes, *, timeout_s: float) -> bytes:
        """Cluster mode: run ``service``'s handler on the leader with ``payload``; raises
        ``LeaderUnavailable``."""
        from broker.cluster import RpcUnavailable

        assert self.node.cluster is not None
        try:
            return await self.node.cluster.call_leader(service, payload, timeout_s)
        except RpcUnavailable as exc:
            raise LeaderUnavailable(str(exc), served=exc.served) from None

    # -- sessions ------------------------------------------------------------------------------

    def open_session(
        self, sink: SessionSink, *, connection: int | None = None, channel: int = 0
    ) -> int:
        """A new connection's own session, or session ``channel`` of ``connection``."""
        return self.node.open_session(sink, connection=connection, channel=channel)

    async def close_session(self, session: int) -> None:
        """Cancel the session's consumers, return its unacked messages, drop its exclusive
        queues."""
        try:
            _check(await self.node.execute(C.cmd_session_down(session)))
        finally:
            self.node.forget_session(session)

    async def set_prefetch(self, session: int, prefetch: int) -> None:
        _check(await self.node.execute(C.cmd_session_prefetch(session, prefetch)))

    # -- topology ------------------------------------------------------------------------------

    async def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        *,
        vhost: str = "/",
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
    ) -> None:
        _check(
            await self.node.execute(
                C.cmd_declare_exchange(
                    vhost,
                    name,
                    type,
                    durable=durable,
                    auto_delete=auto_delete,
                    internal=internal,
                    arguments=arguments,
                    passive=passive,
                )
            )
        )

    async def delete_exchange(
        self, name: str, *, vhost: str = "/", if_unused: bool = False
    ) -> None:
        _check(await self.node.execute(C.cmd_delete_exchange(vhost, name, if_unused=if_unused)))

    async def declare_queue(
        self,
        name: str,
        *,
        vhost: str = "/",
        session: int | None = None,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
    ) -> QueueDeclared:
        """Declare a queue; an exclusive queue belongs to ``session`` and goes with it."""
        reply = _check(
            await self.node.execute(
                C.cmd_declare_queue(
                    vhost,
                    name,
                    session=session,
                    durable=durable,
                    exclusive=exclusive,
                    auto_delete=auto_delete,
                    arguments=arguments,
                    passive=passive,
                )
            )
        )
        return QueueDeclared(reply[0], reply[1], reply[2])

    async def delete_queue(
        self,
        name: str,
        *,
        vhost: str = "/",
        session: int | None = None,
        if_unused: bool = False,
        if_empty: bool = False,
    ) -> int:
        cmd = C.cmd_delete_queue(
            vhost, name, session=session, if_unused=if_unused, if_empty=if_empty
        )
        count: int = _check(await self.node.execute(cmd))
        return count

    async def purge_queue(self, name: str, *, vhost: str = "/", session: int | None = None) -> int:
        count: int = _check(
            await self.node.execute(C.cmd_purge_queue(vhost, name, session=session))
        )
        return count

    async def bind(
        self,
        source: str,
        destination: str,
        routing_key: str = "",
        *,
        vhost: str = "/",
        session: int | None = None,
        dest_kind: str = "queue",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        cmd = C.cmd_bind(
            vhost,
            source,
            destination,
            routing_key,
            dest_kind=dest_kind,
            arguments=arguments,
            session=session,
        )
        _check(await self.node.execute(cmd))

    async def unbind(
        self,
        source: str,
        destination: str,
        routing_key: str = "",
        *,
        vhost: str = "/",
        session: int | None = None,
        dest_kind: str = "queue",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        cmd = C.cmd_unbind(
            vhost,
            source,
            destination,
            routing_key,
            dest_kind=dest_kind,
            arguments=arguments,
            session=session,
        )
        _check(await self.node.execute(cmd))

    # -- messages ------------------------------------------------------------------------------

    def _publish_commands(
        self, vhost: str, exchange: str, messages: Sequence[Message], mandatory: bool
    ) -> list[tuple[int, list[Any], bool]]:
        """``(offset, command, logged)`` per run of the batch that takes one path."""
        flags = C.FLAG_MANDATORY if mandatory else 0
        msgs = [
            [m[0], m[1], m[2], flags | m[3]] if len(m) > 3 else [m[0], m[1], m[2], flags]
            for m in messages
        ]
        for i, m in enumerate(messages):
            if len(m) > 4:
                msgs[i].append(m[4])
        out: list[tuple[int, list[Any], bool]] = []
        offset = 0
        for logged, run in self.node.machine.split_publish(vhost, exchange, msgs):
            out.append((offset, C.cmd_publish(vhost, exchange, run), logged))
            offset += len(run)
        return out

    async def publish(
        self,
        exchange: str,
        messages: Sequence[Message],
        *,
        vhost: str = "/",
        mandatory: bool = False,
    ) -> PublishResult:
        """Publish a batch and wait until every message has taken effect (for persistent
        messages into durable queues: until they are on disk). The answer carries what a
        publisher confirm or basic.return needs."""
        pendings: list[tuple[int, Pending]] = []
        for offset, cmd, logged in self._publish_commands(vhost, exchange, messages, mandatory):
            pending = Pending()
            self.node.submit(cmd, pending, logged=logged)
            pendings.append((offset, pending))
        routed: list[int] = []
        rejected: list[int] = []
        ids: dict[int, tuple[Any, ...]] | None = None
        for offset, pending in pendings:
            reply = _check(await pending.wait())
            routed.extend(reply[0])
            rejected.extend(offset + i for i in reply[1])
            if len(reply) > 2:
                if ids is None:
                    ids = {}
                for pos, *info in reply[2]:
                    ids[offset + pos] = tuple(info)
        return PublishResult(routed, rejected, ids)

    def publish_nowait(
        self,
        exchange: str,
        messages: Sequence[Message],
        *,
        vhost: str = "/",
        mandatory: bool = False,
    ) -> list[tuple[Pending, int]]:
        """Publish without waiting (the protocol fast path). Ordering with the caller's other
        calls is kept by the node's pipeline. Returns one ``(pending, count)`` per core command:
        ``pending`` resolves to the core's reply for the next ``count`` messages of the batch
        (see ``error_of`` and ``PublishResult``'s fields: ``[routed, rejected]``)."""
        out: list[tuple[Pending, int]] = []
        for _offset, cmd, logged in self._publish_commands(vhost, exchange, messages, mandatory):
            pending = Pending()
            self.node.submit(cmd, pending, logged=logged)
            out.append((pending, len(cmd[3])))
        return out

    @staticmethod
    def error_of(reply: Any) -> BrokerError | None:
        """The ``BrokerError`` an error reply stands for, or None for a success."""
        if isinstance(reply, CoreError):
            return BrokerError(reply.code, reply.text)
        return None

    async def consume(
        self,
        session: int,
        queue: str,
        *,
        tag: str,
        vhost: str = "/",
        prefetch: int = 0,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        cmd = C.cmd_consume(
            session,
            vhost,
            queue,
            tag,
            prefetch=prefetch,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=arguments,
        )
        result: str = _check(await self.node.execute(cmd))
        return result

    async def cancel(self, session: int, tag: str) -> None:
        _check(await self.node.execute(C.cmd_cancel(session, tag)))

    async def get(
        self,
        session: int,
        queue: str,
        *,
        vhost: str = "/",
        max_n: int = 1,
        lease_ms: int = 0,
        no_ack: bool = False,
    ) -> tuple[list[Any], int]:
        reply = _check(
            await self.node.execute(
                C.cmd_get(session, vhost, queue, max_n=max_n, lease_ms=lease_ms, no_ack=no_ack)
            )
        )
        return reply[0], reply[1]

    async def get_detailed(
        self,
        session: int,
        queue: str,
        *,
        vhost: str = "/",
        max_n: int = 1,
        lease_ms: int = 0,
    ) -> tuple[list[Any], int, list[list[int | None]]]:
        """As ``get``, with ``[first delivered at, enqueued at]`` (ms) per delivery."""
        reply = _check(
            await self.node.execute(
                C.cmd_get(session, vhost, queue, max_n=max_n, lease_ms=lease_ms)
            )
        )
        return reply[0], reply[1], reply[2]

    async def set_queue_arguments(
        self, name: str, arguments: dict[str, Any], *, vhost: str = "/"
    ) -> None:
        """Replace a queue's arguments (all but ``x-max-priority`` and ``x-fifo``)."""
        _check(await self.node.execute(C.cmd_set_queue_arguments(vhost, name, arguments)))

    async def set_exchange_arguments(
        self, name: str, arguments: dict[str, Any], *, vhost: str = "/"
    ) -> None:
        """Replace an exchange's arguments (SNS topic attributes, EventBridge rules)."""
        _check(await self.node.execute(C.cmd_set_exchange_arguments(vhost, name, arguments)))

    def exchange_info(self, name: str, *, vhost: str = "/") -> dict[str, Any] | None:
        """``name``, ``type``, ``durable``, ``arguments`` ... of an exchange, or None."""
        return self.node.machine.exchange_info(vhost, name)

    def bindings_from(self, exchange: str, *, vhost: str = "/") -> list[dict[str, Any]]:
        """Bindings whose source is ``exchange``: ``destination``, ``destination_type``,
        ``routing_key``, ``arguments``."""
        return self.node.machine.bindings_from(vhost, exchange)

    def list_exchanges(self, *, vhost: str = "/") -> list[dict[str, Any]]:
        return self.node.machine.list_exchanges(vhost)

    def list_bindings(self, *, vhost: str = "/") -> list[dict[str, Any]]:
        return self.node.machine.list_bindings(vhost)

    @staticmethod
    def check_rule_binding(arguments: dict[str, Any]) -> str | None:
        """Why a rules-exchange binding with these arguments would be refused (an invalid
        pattern or transform, in AWS's words), or None. Changes nothing."""
        return check_rule_arguments(arguments)

    @staticmethod
    def pattern_matches(pattern: dict[str, Any] | str, event: Any) -> bool:
        """Whether an EventBridge pattern matches a parsed event (TestEventPattern); raises
        ``ValueError`` with AWS's message for an invalid pattern."""
        return compile_pattern(pattern, dialect="eventbridge").matches(event)

    def held(self, session: int, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` that ``session`` holds unsettled right now."""
        return self.node.machine.held(session, ids)

    def queue_counts(self, name: str, *, vhost: str = "/") -> tuple[int, int, int] | None:
        """``(ready, unacked, delayed)`` of a queue, or None when it does not exist."""
        return self.node.machine.queue_counts(vhost, name)

    async def wait_ready(self, name: str, *, vhost: str = "/", timeout_s: float) -> bool:
        """Wait until the queue may have a message for a GET, at most ``timeout_s``; False on
        timeout (long polling)."""
        return await self.node.wait_ready(vhost, name, timeout_s)

    def list_queues(self, *, vhost: str = "/") -> list[dict[str, Any]]:
        return self.node.machine.list_queues(vhost)

    async def settle(
        self, session: int, ids: Sequence[int], op: int = COMPLETE, *, delay_ms: int = 0
    ) -> int:
        """Settle many deliveries at once. Logged and transient ids go in separate commands."""
        total = 0
        for cmd in self._settle_commands(session, ids, op, delay_ms):
            total += _check(await self.node.execute(cmd))
        return total

    def settle_nowait(
        self,
        session: int,
        ids: Sequence[int],
        op: int = COMPLETE,
        *,
        delay_ms: int = 0,
        on_error: Callable[[BrokerError], None] | None = None,
    ) -> None:
        """Settle without waiting (consumer acks on the fast path); a refusal reaches
        ``on_error``."""
        for cmd in self._settle_commands(session, ids, op, delay_ms):
            pending = None
            if on_error is not None:
                pending = Pending(_on_error_only(on_error))
            self.node.submit(cmd, pending)

    @staticmethod
    def _settle_commands(
        session: int, ids: Sequence[int], op: int, delay_ms: int
    ) -> list[list[Any]]:
        logged = [i for i in ids if i < LOCAL_ID_BASE]
        if len(logged) == len(ids):
            return [C.cmd_settle(session, op, list(ids), delay_ms)] if ids else []
        local = [i for i in ids if i >= LOCAL_ID_BASE]
        return [C.cmd_settle(session, op, group, delay_ms) for group in (logged, local) if group]

    # -- queries -------------------------------------------------------------------------------

    def queue_bindings(
        self, queue: str, *, vhost: str = "/"
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """``(exchange, routing_key, arguments)`` of every binding to ``queue``."""
        return self.node.machine.bindings_to(vhost, "queue", queue)

    def retained(
        self, exchange: str, *, vhost: str = "/"
    ) -> list[tuple[str, dict[str, Any], bytes]]:
        """The retained messages of ``exchange``: ``(routing_key, props, body)``."""
        return self.node.machine.retained(vhost, exchange)

    def queue_info(self, name: str, *, vhost: str = "/") -> dict[str, Any] | None:
        info: dict[str, Any] | None = self.node.machine.queue_info(vhost, name)
        return info

    # -- users, vhosts and permissions -------------------------------------------------------
    # RabbitMQ's model (broker/core/access.py): users with salted password hashes and tags;
    # per user and vhost three patterns (configure, write, read); topic permissions per
    # exchange. The checks are synchronous reads of the applied state; the changes are logged
    # commands.

    CONFIGURE = A.CONFIGURE
    WRITE = A.WRITE
    READ = A.READ

    @property
    def auth_version(self) -> int:
        """Changes whenever users or permissions change (for callers that cache checks)."""
        return self.node.machine.auth.version

    def authenticate(self, user: str, password: str) -> UserInfo | None:
        """The user when ``password`` is its password, else None."""
        found = self.node.machine.auth.authenticate(user, password)
        return None if found is None else UserInfo(found.name, found.tags)

    def user_info(self, name: str) -> UserInfo | None:
        found = self.node.machine.auth.users.get(name)
        return None if found is None else UserInfo(found.name, found.tags)

    def vhost_exists(self, vhost: str) -> bool:
        return vhost in self.node.machine.vhosts

    def allowed_vhost(self, user: str, vhost: str) -> bool:
        """Whether ``user`` has permissions (any) in ``vhost``."""
        return self.node.machine.auth.vhost_access(user, vhost)

    def check_vhost(self, user: str, vhost: str) -> None:
        """Raise ``BrokerError`` 530 NOT_ALLOWED, in RabbitMQ's words, when ``vhost`` does not
        exist or ``user`` has no permissions in it."""
        if vhost not in self.node.machine.vhosts:
            raise BrokerError(NOT_ALLOWED, f"NOT_ALLOWED - vhost {vhost} not found")
        if not self.node.machine.auth.vhost_access(user, vhost):
            raise BrokerError(
                NOT_ALLOWED,
                f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'",
            )

    def allowed(self, user: str, vhost: str, kind: str, name: str, permission: str) -> bool:
        """Whether ``user`` has ``permission`` (``Broker.CONFIGURE`` / ``WRITE`` / ``READ``) on
        the ``kind`` (``"queue"`` or ``"exchange"``) called ``name``."""
        return self.node.machine.auth.allowed(user, vhost, kind, name, permission)

    def check(self, user: str, vhost: str, kind: str, name: str, permission: str) -> None:
        """As ``allowed``; raises ``BrokerError`` 403 ACCESS_REFUSED with RabbitMQ's text."""
        if not self.node.machine.auth.allowed(user, vhost, kind, name, permission):
            raise BrokerError(ACCESS_REFUSED, A.refused_text(kind, name, vhost, user))

    def topic_restricted(self, user: str, vhost: str, exchange: str) -> bool:
        """Whether publishes and bindings of ``user`` on ``exchange`` have their routing keys
        checked: a topic exchange with topic permissions for the user."""
        machine = self.node.machine
        if (user, vhost, exchange) not in machine.auth.topic_permissions:
            return False
        vh = machine.vhosts.get(vhost)
        x = vh.exchanges.get(exchange) if vh is not None else None
        return x is not None and x.type == "topic"

    def topic_allowed(
        self,
        user: str,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        *,
        variables: dict[str, str] | None = None,
    ) -> bool:
        """Topic permission of ``routing_key`` on ``exchange`` (checked for topic exchanges
        only; any other exchange, or one that does not exist, allows every key)."""
        machine = self.node.machine
        vh = machine.vhosts.get(vhost)
        x = vh.exchanges.get(exchange) if vh is not None else None
        if x is None or x.type != "topic":
            return True
        return machine.auth.topic_allowed(user, vhost, exchange, routing_key, permission, variables)

    def check_topic(
        self,
        user: str,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        *,
        variables: dict[str, str] | None = None,
    ) -> None:
        if not self.topic_allowed(
            user, vhost, exchange, routing_key, permission, variables=variables
        ):
            raise BrokerError(
                ACCESS_REFUSED, A.topic_refused_text(exchange, routing_key, vhost, user)
            )

    @staticmethod
    def hash_password(password: str) -> str:
        """A new salted hash of ``password`` (RabbitMQ's rabbit_password_hashing_sha256)."""
        return A.hash_password(password, secrets.token_bytes(A.SALT_BYTES))

    async def put_user(
        self,
        name: str,
        *,
        password: str | None = None,
        password_hash: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """Create or replace a user. Only the hash of ``password`` is logged; with neither a
        password nor a hash the user cannot log in with a password (as RabbitMQ)."""
        if password is not None:
            password_hash = self.hash_password(password)
        _check(await self.node.execute(C.cmd_put_user(name, password_hash, list(tags))))

    async def delete_user(self, name: str) -> None:
        _check(await self.node.execute(C.cmd_delete_user(name)))

    def list_users(self) -> list[dict[str, Any]]:
        return self.node.machine.auth.list_users()

    async def set_permissions(
        self, user: str, vhost: str, configure: str, write: str, read: str
    ) -> None:
        _check(await self.node.execute(C.cmd_set_permissions(user, vhost, configure, write, read)))

    async def clear_permissions(self, user: str, vhost: str) -> None:
        _check(await self.node.execute(C.cmd_clear_permissions(user, vhost)))

    def list_permissions(
        self, *, user: str | None = None, vhost: str | None = None
    ) -> list[dict[str, Any]]:
        return self.node.machine.auth.list_permissions(user=user, vhost=vhost)

    async def set_topic_permissions(
        self, user: str, vhost: str, exchange: str, write: str, read: str
    ) -> None:
        cmd = C.cmd_set_topic_permissions(user, vhost, exchange, write, read)
        _check(await self.node.execute(cmd))

    async def clear_topic_permissions(
        self, user: str, vhost: str, exchange: str | None = None
    ) -> None:
        _check(await self.node.execute(C.cmd_clear_topic_permissions(user, vhost, exchange)))

    def list_topic_permissions(
        self, *, user: str | None = None, vhost: str | None = None
    ) -> list[dict[str, Any]]:
        return self.node.machine.auth.list_topic_permissions(user=user, vhost=vhost)

    async def add_vhost(self, name: str) -> bool:
        """Create a vhost (with the default exchanges); False when it existed."""
        created: bool = _check(await self.node.execute(C.cmd_add_vhost(name)))
        return created

    async def delete_vhost(self, name: str) -> None:
        """Delete a vhost with its queues, exchanges, bindings and permissions."""
        _check(await self.node.execute(C.cmd_delete_vhost(name)))

    def list_vhosts(self) -> list[str]:
        return sorted(self.node.machine.vhosts)

    async def seed_default_user(self, name: str, password: str, *, vhost: str = "/") -> bool:
        """Create the default user (tag administrator, every permission on ``vhost``) unless
        this data directory had it once already; True when created now."""
        if self.node.machine.auth.seeded:
            return False
        cmd = C.cmd_seed_user(name, self.hash_password(password), [A.TAG_ADMINISTRATOR], vhost)
        created: bool = _check(await self.node.execute(cmd))
        return created


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated user: its name and tags (``administrator``, ``management``, ...)."""

    name: str
    tags: tuple[str, ...]
