"""Commands of the broker state machine.

A command is a plain list ``[opcode, field, ...]`` of msgpack-able values. The
opcodes below are APPEND-ONLY: never renumber or reuse one, only add new ones
at the end, and bump ``MACHINE_VERSION`` when the meaning of a logged command
changes. Build commands with the ``cmd_*`` helpers, never by hand.

Field order and replies (``vhost`` is a str, ``session`` an int session id or
None for administrative callers, ``arguments`` a dict):

==  ================  ===================================================  ===================
op  name              fields after the opcode                              reply
==  ================  ===================================================  ===================
1   DECLARE_EXCHANGE  vhost, name, type, durable, auto_delete, internal,   None
                      arguments, passive
2   DELETE_EXCHANGE   vhost, name, if_unused                               None
3   DECLARE_QUEUE     session, vhost, name, durable, exclusive,            [name, messages,
                      auto_delete, arguments, passive                      consumers]
4   DELETE_QUEUE      session, vhost, name, if_unused, if_empty            message count
5   PURGE_QUEUE       session, vhost, name                                 ready count removed
6   BIND              session, vhost, source, dest_kind, dest,             None
                      routing_key, arguments
7   UNBIND            same as BIND                                         None
8   PUBLISH           vhost, exchange, msgs                                [routed, rejected]
9   CONSUME           session, vhost, queue, tag, prefetch, no_ack,        tag
                      exclusive, arguments
10  CANCEL            session, tag                                         None
11  SETTLE            session, op, msg_ids, delay_ms                       number settled
12  GET               session, vhost, queue, max_n, lease_ms, no_ack       [deliveries, ready,
                                                                           times]
13  SESSION_DOWN      session                                              None
14  SESSION_PREFETCH  session, prefetch                                    None
15  TICK              (none; the time is the entry's time_ms)              None
16  SESSIONS_RESET    (none)                                               None
17  SET_QUEUE_ARGS    session, vhost, name, arguments                      None
18  SET_EXCH_ARGS     vhost, name, arguments                               None
19  PUT_USER          name, password_hash, tags                            None
20  DELETE_USER       name                                                 None
21  SET_PERMISSIONS   user, vhost, configure, write, read                  None
22  CLEAR_PERMISSIONS user, vhost                                          None
23  SET_TOPIC_PERMS   user, vhost, exchange, write, read                   None
24  CLEAR_TOPIC_PERMS user, vhost, exchange (None: every exchange)         None
25  ADD_VHOST         name                                                 True if created
26  DELETE_VHOST      name                                                 None
27  SEED_USER         name, password_hash, tags, vhost                     True if created
==  ================  ===================================================  ===================

``msgs`` of PUBLISH is a list of ``[routing_key, props, body, flags]`` (flags bit 0:
mandatory; bit 1: retain, see ``FLAG_RETAIN``), optionally with a fifth field ``opts``, a
dict with ``delay_ms`` (invisible that long), ``group`` (FIFO message group) and ``dedup``
(deduplication id). ``routed`` is the list of per-message queue counts (0 = unroutable)
and ``rejected`` the positions refused by a reject-publish overflow. When any message
carries opts the reply has a third element ``[[position, message id, id of the original
when dropped as a duplicate, the original's message_id property], ...]`` for those
messages. A PUBLISH carries at most
``PUBLISH_BATCH_MAX`` messages.

GET's ``times`` has ``[first delivered at, enqueued at]`` (ms) per delivery.
SET_QUEUE_ARGS replaces a queue's arguments (all but ``x-max-priority`` and ``x-fifo`` may
change; SQS SetQueueAttributes); SET_EXCH_ARGS an exchange's (SNS topic attributes,
EventBridge rules).

Users, permissions and vhosts (19-27) are always logged; ``password_hash`` is RabbitMQ's
salted SHA-256 hash (or None: no password login), never a password. SEED_USER creates the
default user with every permission on ``vhost`` the first time only (see access.py).

``exclusive`` of DECLARE_QUEUE makes ``session`` the owner. ``dest_kind`` is
``"queue"`` or ``"exchange"``. SETTLE ``op`` is one of ``SETTLE_COMPLETE``,
``SETTLE_REQUEUE``, ``SETTLE_DISCARD``, ``SETTLE_MODIFY``; ``delay_ms`` only
matters for MODIFY (0 = ready again now, > 0 = invisible for that long while
still held by the session, as SQS ChangeMessageVisibility).

A delivery is ``(msg_id, redelivered, delivery_count, exchange, routing_key,
props, body)``.
"""

from __future__ import annotations

from typing import Any

MACHINE_VERSION = 3
#: Snapshot versions this machine can restore.
MACHINE_VERSIONS_READABLE = (1, 2, 3)

DECLARE_EXCHANGE = 1
DELETE_EXCHANGE = 2
DECLARE_QUEUE = 3
DELETE_QUEUE = 4
PURGE_QUEUE = 5
BIND = 6
UNBIND = 7
PUBLISH = 8
CONSUME = 9
CANCEL = 10
SETTLE = 11
GET = 12
SESSION_DOWN = 13
SESSION_PREFETCH = 14
TICK = 15
SESSIONS_RESET = 16
SET_QUEUE_ARGUMENTS = 17
SET_EXCHANGE_ARGUMENTS = 18
PUT_USER = 19
DELETE_USER = 20
SET_PERMISSIONS = 21
CLEAR_PERMISSIONS = 22
SET_TOPIC_PERMISSIONS = 23
CLEAR_TOPIC_PERMISSIONS = 24
ADD_VHOST = 25
DELETE_VHOST = 26
SEED_USER = 27
#: commands on users, permissions and vhosts: always logged
AUTH_OPS = frozenset(range(PUT_USER, SEED_USER + 1))

#: Number of fields after the opcode, per opcode.
ARITY: dict[int, int] = {
    DECLARE_EXCHANGE: 8,
    DELETE_EXCHANGE: 3,
    DECLARE_QUEUE: 8,
    DELETE_QUEUE: 5,
    PURGE_QUEUE: 3,
    BIND: 7,
    UNBIND: 7,
    PUBLISH: 3,
    CONSUME: 8,
    CANCEL: 2,
    SETTLE: 4,
    GET: 6,
    SESSION_DOWN: 1,
    SESSION_PREFETCH: 2,
    TICK: 0,
    SESSIONS_RESET: 0,
    SET_QUEUE_ARGUMENTS: 4,
    SET_EXCHANGE_ARGUMENTS: 3,
    PUT_USER: 3,
    DELETE_USER: 1,
    SET_PERMISSIONS: 5,
    CLEAR_PERMISSIONS: 2,
    SET_TOPIC_PERMISSIONS: 5,
    CLEAR_TOPIC_PERMISSIONS: 3,
    ADD_VHOST: 1,
    DELETE_VHOST: 1,
    SEED_USER: 4,
}

NAMES: dict[int, str] = {
    DECLARE_EXCHANGE: "DECLARE_EXCHANGE",
    DELETE_EXCHANGE: "DELETE_EXCHANGE",
    DECLARE_QUEUE: "DECLARE_QUEUE",
    DELETE_QUEUE: "DELETE_QUEUE",
    PURGE_QUEUE: "PURGE_QUEUE",
    BIND: "BIND",
    UNBIND: "UNBIND",
    PUBLISH: "PUBLISH",
    CONSUME: "CONSUME",
    CANCEL: "CANCEL",
    SETTLE: "SETTLE",
    GET: "GET",
    SESSION_DOWN: "SESSION_DOWN",
    SESSION_PREFETCH: "SESSION_PREFETCH",
    TICK: "TICK",
    SESSIONS_RESET: "SESSIONS_RESET",
    SET_QUEUE_ARGUMENTS: "SET_QUEUE_ARGUMENTS",
    SET_EXCHANGE_ARGUMENTS: "SET_EXCHANGE_ARGUMENTS",
    PUT_USER: "PUT_USER",
    DELETE_USER: "DELETE_USER",
    SET_PERMISSIONS: "SET_PERMISSIONS",
    CLEAR_PERMISSIONS: "CLEAR_PERMISSIONS",
    SET_TOPIC_PERMISSIONS: "SET_TOPIC_PERMISSIONS",
    CLEAR_TOPIC_PERMISSIONS: "CLEAR_TOPIC_PERMISSIONS",
    ADD_VHOST: "ADD_VHOST",
    DELETE_VHOST: "DELETE_VHOST",
    SEED_USER: "SEED_USER",
}

SETTLE_COMPLETE = 0
SETTLE_REQUEUE = 1
SETTLE_DISCARD = 2
SETTLE_MODIFY = 3
SETTLE_OPS = (SETTLE_COMPLETE, SETTLE_REQUEUE, SETTLE_DISCARD, SETTLE_MODIFY)

FLAG_MANDATORY = 1
#: PUBLISH flag: keep this message as the exchange's retained message for its routing key (an
#: empty body clears it); later subscribers read it with ``Machine.retained``. MQTT retained
#: messages use it. Retained messages are always logged.
FLAG_RETAIN = 2

#: Message ids of a logged apply are ``index * COPIES_PER_COMMAND_MAX + k``.
COPIES_PER_COMMAND_MAX = 65536
#: A PUBLISH carries at most this many messages (so its own copies fit the id range
#: of one entry when each routes to one queue; further copies of fan-out and
#: dead-lettering take ids from the overflow range, see machine.py).
PUBLISH_BATCH_MAX = COPIES_PER_COMMAND_MAX - 1

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers", "x-rules")

Command = list[Any]
Msg = list[Any]


def cmd_declare_exchange(
    vhost: str,
    name: str,
    type: str = "direct",
    *,
    durable: bool = True,
    auto_delete: bool = False,
    internal: bool = False,
    arguments: dict[str, Any] | None = None,
    passive: bool = False,
) -> Command:
    return [
        DECLARE_EXCHANGE,
        vhost,
        name,
        type,
        durable,
        auto_delete,
        internal,
        arguments or {},
        passive,
    ]


def cmd_delete_exchange(vhost: str, name: str, *, if_unused: bool = False) -> Command:
    return [DELETE_EXCHANGE, vhost, name, if_unused]


def cmd_declare_queue(
    vhost: str,
    name: str,
    *,
    session: int | None = None,
    durable: bool = True,
    exclusive: bool = False,
    auto_delete: bool = False,
    arguments: dict[str, Any] | None = None,
    passive: bool = False,
) -> Command:
    return [
        DECLARE_QUEUE,
        session,
        vhost,
        name,
        durable,
        exclusive,
        auto_delete,
        arguments or {},
        passive,
    ]


def cmd_delete_queue(
    vhost: str,
    name: str,
    *,
    session: int | None = None,
    if_unused: bool = False,
    if_empty: bool = False,
) -> Command:
    return [DELETE_QUEUE, session, vhost, name, if_unused, if_empty]


def cmd_purge_queue(vhost: str, name: str, *, session: int | None = None) -> Command:
    return [PURGE_QUEUE, session, vhost, name]


def cmd_bind(
    vhost: str,
    source: str,
    dest: str,
    routing_key: str = "",
    *,
    dest_kind: str = "queue",
    arguments: dict[str, Any] | None = None,
    session: int | None = None,
) -> Command:
    return [BIND, session, vhost, source, dest_kind, dest, routing_key, arguments or {}]


def cmd_unbind(
    vhost: str,
    source: str,
    dest: str,
    routing_key: str = "",
    *,
    dest_kind: str = "queue",
    arguments: dict[str, Any] | None = None,
    session: int | None = None,
) -> Command:
    return [UNBIND, session, vhost, source, dest_kind, dest, routing_key, arguments or {}]


def msg(
    routing_key: str,
    body: bytes,
    props: dict[str, Any] | None = None,
    *,
    mandatory: bool = False,
    retain: bool = False,
    opts: dict[str, Any] | None = None,
) -> Msg:
    """One message of a PUBLISH batch."""
    flags = (FLAG_MANDATORY if mandatory else 0) | (FLAG_RETAIN if retain else 0)
    if opts is not None:
        return [routing_key, props if props is not None else {}, body, flags, opts]
    return [routing_key, props if props is not None else {}, body, flags]


def cmd_publish(vhost: str, exchange: str, msgs: list[Msg]) -> Command:
    if len(msgs) > PUBLISH_BATCH_MAX:
        raise ValueError(f"a PUBLISH carries at most {PUBLISH_BATCH_MAX} messages")
    return [PUBLISH, vhost, exchange, msgs]


def cmd_consume(
    session: int,
    vhost: str,
    queue: str,
    tag: str,
    *,
    prefetch: int = 0,
    no_ack: bool = False,
    exclusive: bool = False,
    arguments: dict[str, Any] | None = None,
) -> Command:
    return [CONSUME, session, vhost, queue, tag, prefetch, no_ack, exclusive, arguments or {}]


def cmd_cancel(session: int, tag: str) -> Command:
    return [CANCEL, session, tag]


def cmd_settle(session: int, op: int, msg_ids: list[int], delay_ms: int = 0) -> Command:
    return [SETTLE, session, op, msg_ids, delay_ms]


def cmd_get(
    session: int,
    vhost: str,
    queue: str,
    *,
    max_n: int = 1,
    lease_ms: int = 0,
    no_ack: bool = False,
) -> Command:
    return [GET, session, vhost, queue, max_n, lease_ms, no_ack]


def cmd_session_down(session: int) -> Command:
    return [SESSION_DOWN, session]


def cmd_session_prefetch(session: int, prefetch: int) -> Command:
    return [SESSION_PREFETCH, session, prefetch]


def cmd_tick() -> Command:
    return [TICK]


def cmd_sessions_reset() -> Command:
    return [SESSIONS_RESET]


def cmd_set_queue_arguments(
    vhost: str, name: str, arguments: dict[str, Any], *, session: int | None = None
) -> Command:
    return [SET_QUEUE_ARGUMENTS, session, vhost, name, arguments]


def cmd_set_exchange_arguments(vhost: str, name: str, arguments: dict[str, Any]) -> Command:
    return [SET_EXCHANGE_ARGUMENTS, vhost, name, arguments]


def cmd_put_user(name: str, password_hash: str | None, tags: list[str]) -> Command:
    return [PUT_USER, name, password_hash, list(tags)]


def cmd_delete_user(name: str) -> Command:
    return [DELETE_USER, name]


def cmd_set_permissions(user: str, vhost: str, configure: str, write: str, read: str) -> Command:
    return [SET_PERMISSIONS, user, vhost, configure, write, read]


def cmd_clear_permissions(user: str, vhost: str) -> Command:
    return [CLEAR_PERMISSIONS, user, vhost]


def cmd_set_topic_permissions(
    user: str, vhost: str, exchange: str, write: str, read: str
) -> Command:
    return [SET_TOPIC_PERMISSIONS, user, vhost, exchange, write, read]


def cmd_clear_topic_permissions(user: str, vhost: str, exchange: str | None = None) -> Command:
    return [CLEAR_TOPIC_PERMISSIONS, user, vhost, exchange]


def cmd_add_vhost(name: str) -> Command:
    return [ADD_VHOST, name]


def cmd_delete_vhost(name: str) -> Command:
    return [DELETE_VHOST, name]


def cmd_seed_user(
    name: str, password_hash: str | None, tags: list[str], vhost: str = "/"
) -> Command:
    return [SEED_USER, name, password_hash, list(tags), vhost]
