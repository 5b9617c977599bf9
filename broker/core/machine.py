"""The broker state machine: ``Machine.apply(meta, command) -> (reply, effects)``.

Rules:

1. Pure and deterministic. Time comes only from ``meta.time_ms``; the machine keeps
   ``now = max(now, meta.time_ms)``. Replaying the same commands with the same metas
   gives the same replies, effects and ``snapshot()`` bytes.
2. Client errors are replies (``CoreError``), never exceptions, and a command that
   fails changes nothing (checks first, then changes).
3. Logged state derives only from logged state. A message copy is *logged* when it is
   created by a logged apply (``meta.index > 0``) in a durable, non-exclusive queue from
   logged input (a published message, or the dead-lettering of a logged copy). Logged
   copies take ids ``index * COPIES_PER_COMMAND_MAX + k`` (past that, the logged overflow
   range) and are routed over durable bindings only, so a replica without the leader's
   transient entities assigns the same ids to the same durable copies. Every other copy
   takes a local id ``LOCAL_ID_BASE + n``.
4. Queue order is the per-queue enqueue sequence, not the id: a returned message goes
   back to its original place, before never-delivered messages of its priority.
5. Deliveries happen at the end of every command that may make one possible; each
   consumer gets at most one ``deliver`` effect per apply, with its deliveries in order.
6. Timers (message TTL at queue heads, leases and delayed returns, x-expires) are heap
   entries ``(time, kind, key, n, obj)`` invalidated lazily; TICK processes every due
   item in a canonical order (leases by id, then queues by name), so stale entries
   never change an outcome.

7. Replicated mode (``set_replicated()``, a cluster, where transient commands are applied on
   one node only): a message routed to a logged queue is logged whatever its delivery mode
   (as RabbitMQ's quorum queues do), so a logged queue holds logged copies only and its
   consumers' credit is the same on every replica; and a session's prefetch counts only
   deliveries of logged copies (``credit_id_max``), so a transient delivery on the session's
   node cannot change which logged message a logged apply hands out there; and a transient
   message dead-lettered into logged queues is not enqueued there by the transient apply but
   handed to the node (``republish``) to publish through the log.

Effects: ``("deliver", session, tag, queue, [delivery, ...])``,
``("cancelled", session, tag)`` and, replicated mode only, ``("republish", vhost, [queue, ...],
props, body)``. A delivery is ``(msg_id, redelivered, delivery_count,
exchange, routing_key, props, body)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

from broker.core import commands as C
from broker.core.access import AuthState
from broker.core.model import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    INTERNAL_ERROR,
    LOCAL_ID_BASE,
    NOT_ALLOWED,
    NOT_FOUND,
    OVERFLOW_ID_BASE,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    SERVICE_SESSION_BASE,
    CoreError,
    Meta,
    connection_of,
)
from broker.core.patterns import sns_attribute_event
from broker.core.queue import (
    NO_DEDUP,
    NO_DELAYED,
    NO_IDS,
    Consumer,
    Message,
    Queue,
    Session,
)
from broker.core.routing import (
    DEFAULT,
    RULES,
    Binding,
    Exchange,
    binding_key,
    check_rule_arguments,
    freeze,
    share_arguments,
)
from broker.core.snapshot import dump_snapshot, load_snapshot
from broker.core.transform import apply as apply_transform

__all__ = ["LOCAL_ID_BASE", "CoreError", "Delivery", "Effect", "Machine", "Meta"]

Effect = tuple[Any, ...]
Delivery = tuple[int, bool, int, str, str, dict[str, Any], bytes]

COPIES = C.COPIES_PER_COMMAND_MAX
ROUTE_CACHE_ENTRIES_MAX = 8192

K_LEASE = 0
K_TTL = 1
K_EXPIRES = 2
K_DELAY = 3

#: How deep a rules exchange may forward into further rules exchanges (an EventBridge rule
#: targeting another bus, an SNS topic).
RULES_DEPTH_MAX = 4
#: sampled bindings whose window is kept (past it the windows start again: one more sample)
SAMPLE_WINDOWS_MAX = 10_000

#: Messages a FIFO GET looks at past held groups before it stops (bounds the work of one GET).
FIFO_SCAN_MESSAGES_MAX = 10_000
#: Deduplication ids a queue remembers within its window; past it a publish is refused.
DEDUP_ENTRIES_MAX = 200_000
DEAD_LETTER_REASONS = ("expired", "maxlen", "rejected", "delivery_limit")

DEFAULT_EXCHANGES = (
    ("", DEFAULT),
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

#: Queue arguments compared on redeclare (others are stored and ignored).
EQUIVALENT_QUEUE_ARGS = (
    "x-dead-letter-exchange",
    "x-dead-letter-reasons",
    "x-dead-letter-routing-key",
    "x-deduplication-window",
    "x-delivery-limit",
    "x-fifo",
    "x-message-delay",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-type",
)
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_PRIORITY_MAX = 255
VHOST_NAME_CHARS_MAX = 255
VHOSTS_MAX = 10_000


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _parse_expiration(v: Any) -> int | None:
    if isinstance(v, bytes):
        try:
            v = v.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(v, str) and v.isdigit() and v.isascii():
        return int(v)
    if _is_int(v) and v >= 0:
        return int(v)
    return None


def _qname(q: Queue) -> str:
    return q.name


class VHost:
    __slots__ = ("name", "exchanges", "queues", "by_dest", "route_cache", "retained")

    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        #: bindings by destination (kind, name)
        self.by_dest: dict[tuple[str, str], dict[Binding, None]] = {}
        self.route_cache: dict[tuple[str, str], tuple[tuple[Queue, ...], tuple[Queue, ...]]] = {}
        #: (exchange, routing key) -> (props, body): the retained message of each key
        self.retained: dict[tuple[str, str], tuple[dict[str, Any], bytes]] = {}
        for name_, type_ in DEFAULT_EXCHANGES:
            self.exchanges[name_] = Exchange(name_, type_, True, False, False, {})


class Machine:
    """Broker state for all vhosts. See the module docstring for the rules."""

    def __init__(self) -> None:
        self.now = 0
        self.vhosts: dict[str, VHost] = {"/": VHost("/")}
        self.sessions: dict[int, Session] = {}
        #: users, permissions, topic permissions (access.py)
        self.auth = AuthState()
        self.local_counter = 0
        self.overflow_counter = 0
        #: replicated mode (a cluster): see rule 7
        self.replicated = False
        #: deliveries with ids below this count towards a session's prefetch (rule 7)
        self.credit_id_max = 1 << 64
        self._heap: list[tuple[int, int, Any, int, Any]] = []
        self._hn = 0
        # per-apply state
        self._index = 0
        self._k = 0
        self._effects: list[Effect] = []
        #: sampled rules bindings (``x-sample-per-s``): key -> [window start ms, copies]
        self._sample_windows: dict[Any, list[int]] = {}
        self._out: dict[Consumer, list[Delivery]] = {}
        self._dirty: dict[Queue, None] = {}
        self._enq_info: tuple[Any, ...] | None = None
        #: (props, body, {pattern group: parsed event}) of the last message routed by rules
        self._event_cache: tuple[Any, bytes, dict[tuple[str, str], Any]] | None = None
        self._handlers: dict[int, Callable[[list[Any]], Any]] = {
            C.DECLARE_EXCHANGE: self._declare_exchange,
            C.DELETE_EXCHANGE: self._delete_exchange_cmd,
            C.DECLARE_QUEUE: self._declare_queue,
            C.DELETE_QUEUE: self._delete_queue_cmd,
            C.PURGE_QUEUE: self._purge_queue,
            C.BIND: self._bind,
            C.UNBIND: self._unbind,
            C.PUBLISH: self._publish,
            C.CONSUME: self._consume,
            C.CANCEL: self._cancel,
            C.SETTLE: self._settle,
            C.GET: self._get,
            C.SESSION_DOWN: self._session_down_cmd,
            C.SESSION_PREFETCH: self._session_prefetch,
            C.TICK: self._tick,
            C.SESSIONS_RESET: self._sessions_reset,
            C.SET_QUEUE_ARGUMENTS: self._set_queue_arguments,
            C.SET_EXCHANGE_ARGUMENTS: self._set_exchange_arguments,
            C.PUT_USER: self._put_user,
            C.DELETE_USER: self._delete_user,
            C.SET_PERMISSIONS: self._set_permissions,
            C.CLEAR_PERMISSIONS: self._clear_permissions,
            C.SET_TOPIC_PERMISSIONS: self._set_topic_permissions,
            C.CLEAR_TOPIC_PERMISSIONS: self._clear_topic_permissions,
            C.ADD_VHOST: self._add_vhost,
            C.DELETE_VHOST: self._delete_vhost,
            C.SEED_USER: self._seed_user,
        }

    # ------------------------------------------------------------------ apply

    def apply(self, meta: Meta, cmd: list[Any]) -> tuple[Any, list[Effect]]:
        if meta.time_ms > self.now:
            self.now = meta.time_ms
        op = cmd[0] if isinstance(cmd, list) and cmd else None
        handler = self._handlers.get(op) if type(op) is int else None
        if handler is None or len(cmd) != C.ARITY[op] + 1:  # type: ignore[index]
            return CoreError(INTERNAL_ERROR, "INTERNAL_ERROR - malformed command"), []
        self._index = meta.index
        self._k = 0
        effects: list[Effect] = []
        self._effects = effects
        self._out = {}
        reply = handler(cmd)
        if self._dirty:
            self._flush()
        self._out = {}
        self._effects = []
        return reply, effects

    # ------------------------------------------------------------------ helpers

    def _vhost(self, name: str) -> VHost | CoreError:
        vh = self.vhosts.get(name)
        if vh is None:
            return CoreError(NOT_ALLOWED, f"NOT_ALLOWED - vhost '{name}' not found")
        return vh

    @staticmethod
    def _no_queue(vh: VHost, name: str) -> CoreError:
        return CoreError(NOT_FOUND, f"NOT_FOUND - no queue '{name}' in vhost '{vh.name}'")

    @staticmethod
    def _no_exchange(vh: VHost, name: str) -> CoreError:
        return CoreError(NOT_FOUND, f"NOT_FOUND - no exchange '{name}' in vhost '{vh.name}'")

    @staticmethod
    def _locked(q: Queue, session: int | None) -> CoreError | None:
        if q.owner is None or (session is not None and q.owner == connection_of(session)):
            return None
        return CoreError(
            RESOURCE_LOCKED,
            f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q.name}' in "
            f"vhost '{q.vhost}'. It could be originally declared on another connection or the "
            "exclusive property value does not match that of the original declaration.",
        )

    def _session(self, sid: int) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session(sid)
        return s

    def _gc(self, s: Session) -> None:
        if s.idle() and self.sessions.get(s.id) is s:
            del self.sessions[s.id]

    def _new_id(self, logged: bool) -> int:
        if logged:
            k = self._k
            if k < COPIES:
                self._k = k + 1
                return self._index * COPIES + k
            n = self.overflow_counter
            self.overflow_counter = n + 1
            return OVERFLOW_ID_BASE + n
        n = self.local_counter
        self.local_counter = n + 1
        return LOCAL_ID_BASE + n

    def _push(self, time: int, kind: int, key: Any, obj: Any) -> None:
        self._hn += 1
        heappush(self._heap, (time, kind, key, self._hn, obj))

    def _sched_msg_ttl(self, q: Queue, m: Message) -> None:
        assert m.expires_at is not None
        t = m.expires_at + 1
        if q.ttl_sched is None or t < q.ttl_sched:
            q.ttl_sched = t
            self._push(t, K_TTL, (q.vhost, q.name), q)

    def _resched_ttl(self, q: Queue) -> None:
        if not q.n_expiring:
            return
        e = q.min_head_expiry()
        if e is not None:
            t = e + 1
            if q.ttl_sched is None or t < q.ttl_sched:
                q.ttl_sched = t
                self._push(t, K_TTL, (q.vhost, q.name), q)

    def _sched_expiry(self, q: Queue) -> None:
        if q.expires is not None and not q.consumers and q.exp_sched is None:
            t = q.last_used + q.expires
            q.exp_sched = t
            self._push(t, K_EXPIRES, (q.vhost, q.name), q)

    def _touch(self, q: Queue) -> None:
        q.last_used = self.now
        self._sched_expiry(q)

    # ------------------------------------------------------------------ exchanges

    def _declare_exchange(self, cmd: list[Any]) -> Any:
        _, vhost, name, type_, durable, auto_delete, internal, arguments, passive = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        x = vh.exchanges.get(name)
        if passive:
            return self._no_exchange(vh, name) if x is None else None
        if name == "":
            return CoreError(
                ACCESS_REFUSED, "ACCESS_REFUSED - operation not permitted on the default exchange"
            )
        if name.startswith("amq."):
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
            )
        if type_ not in C.EXCHANGE_TYPES:
            return CoreError(COMMAND_INVALID, f"COMMAND_INVALID - unknown exchange type '{type_}'")
        arguments = arguments or {}
        ae = arguments.get("alternate-exchange")
        if ae is not None and not isinstance(ae, str):
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - invalid arg 'alternate-exchange' for exchange '{name}' "
                f"in vhost '{vhost}': expected a string",
            )
        if x is not None:
            for field, new, cur in (
                ("type", type_, x.type),
                ("durable", bool(durable), x.durable),
                ("auto_delete", bool(auto_delete), x.auto_delete),
                ("internal", bool(internal), x.internal),
            ):
                if new != cur:
                    return CoreError(
                        PRECONDITION_FAILED,
                        f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange '{name}' "
                        f"in vhost '{vhost}': received '{_fmt(new)}' but current is '{_fmt(cur)}'",
                    )
            if freeze(arguments) != freeze(x.arguments):
                return CoreError(
                    PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - inequivalent arg 'arguments' for exchange '{name}' "
                    f"in vhost '{vhost}'",
                )
            return None
        vh.exchanges[name] = Exchange(
            name, type_, bool(durable), bool(auto_delete), bool(internal), dict(arguments)
        )
        vh.route_cache.clear()
        return None

    def _delete_exchange_cmd(self, cmd: list[Any]) -> Any:
        _, vhost, name, if_unused = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        x = vh.exchanges.get(name)
        if x is None:
            return None  # deleting what is not there succeeds, as RabbitMQ
        if name == "" or name.startswith("amq."):
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - operation not permitted on exchange '{name}' in vhost '{vhost}'",
            )
        if if_unused and x.bindings:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - exchange '{name}' in vhost '{vhost}' in use",
            )
        self._delete_exchange(vh, x)
        return None

    def _delete_exchange(self, vh: VHost, x: Exchange) -> None:
        if vh.exchanges.get(x.name) is not x:
            return
        del vh.exchanges[x.name]
        vh.route_cache.clear()
        for b in list(x.bindings.values()):
            x.remove_binding(b.key)
            self._drop_by_dest(vh, b)
        for b in list(vh.by_dest.pop(("exchange", x.name), {})):
            self._unlink(vh, b, from_dest=False)

    def _drop_by_dest(self, vh: VHost, b: Binding) -> None:
        dk = (b.kind, b.dest)
        group = vh.by_dest.get(dk)
        if group is not None:
            group.pop(b, None)
            if not group:
                del vh.by_dest[dk]

    def _unlink(self, vh: VHost, b: Binding, *, from_dest: bool = True) -> None:
        """Remove a binding from its source (and from the destination index)."""
        src = vh.exchanges.get(b.source)
        if src is not None:
            src.remove_binding(b.key)
        if from_dest:
            self._drop_by_dest(vh, b)
        vh.route_cache.clear()
        if src is not None and src.auto_delete and not src.bindings:
            self._delete_exchange(vh, src)

    # ------------------------------------------------------------------ queues

    def _queue_settings(self, vhost: str, name: str, args: dict[Any, Any]) -> Any:
        out: dict[str, Any] = {}

        def bad(k: str, why: str) -> CoreError:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - invalid arg '{k}' for queue '{name}' in vhost "
                f"'{vhost}': {why}",
            )

        for k, setting, low in (
            ("x-message-ttl", "ttl", 0),
            ("x-expires", "expires", 1),
            ("x-max-length", "max_len", 0),
            ("x-max-length-bytes", "max_bytes", 0),
            ("x-delivery-limit", "delivery_limit", 0),
            ("x-max-priority", "max_priority", 0),
            ("x-message-delay", "delay", 0),
            ("x-deduplication-window", "dedup_window", 0),
        ):
            if k in args:
                v = args[k]
                if not _is_int(v):
                    return bad(k, f"expected an integer, got {v!r}")
                if v < low:
                    return bad(k, f"value must be >= {low}, got {v}")
                if k == "x-max-priority" and v > MAX_PRIORITY_MAX:
                    return bad(k, f"value must be <= {MAX_PRIORITY_MAX}, got {v}")
                out[setting] = v
        if "x-overflow" in args:
            v = args["x-overflow"]
            if v not in OVERFLOW_MODES:
                return bad("x-overflow", f"expected one of {', '.join(OVERFLOW_MODES)}, got {v!r}")
            out["overflow"] = v
        for k, setting in (
            ("x-dead-letter-exchange", "dlx"),
            ("x-dead-letter-routing-key", "dlrk"),
        ):
            if k in args:
                v = args[k]
                if not isinstance(v, str):
                    return bad(k, f"expected a string, got {v!r}")
                out[setting] = v
        if "dlrk" in out and "dlx" not in out:
            return bad(
                "x-dead-letter-routing-key",
                "x-dead-letter-routing-key requires x-dead-letter-exchange",
            )
        if "x-fifo" in args:
            v = args["x-fifo"]
            if not isinstance(v, bool):
                return bad("x-fifo", f"expected a boolean, got {v!r}")
            out["fifo"] = v
        if "x-dead-letter-reasons" in args:
            v = args["x-dead-letter-reasons"]
            if not isinstance(v, list) or any(r not in DEAD_LETTER_REASONS for r in v):
                return bad(
                    "x-dead-letter-reasons",
                    f"expected a list of {', '.join(DEAD_LETTER_REASONS)}, got {v!r}",
                )
            out["dl_reasons"] = tuple(v)
        if "x-queue-type" in args and not isinstance(args["x-queue-type"], str):
            return bad("x-queue-type", "expected a string")
        return out

    def _declare_queue(self, cmd: list[Any]) -> Any:
        _, session, vhost, name, durable, exclusive, auto_delete, arguments, passive = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        q = vh.queues.get(name)
        if passive:
            if q is None:
                return self._no_queue(vh, name)
            err = self._locked(q, session)
            if err is not None:
                return err
            self._touch(q)
            return [name, q.ready_count, len(q.consumers)]
        if not isinstance(name, str) or not name:
            return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - queue name must be set")
        if name.startswith("amq.") and not name.startswith("amq.gen-"):
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
            )
        arguments = arguments or {}
        if q is not None:
            err = self._locked(q, session)
            if err is not None:
                return err
            for field, new, cur in (
                ("durable", bool(durable), q.durable),
                ("exclusive", bool(exclusive), q.owner is not None),
                ("auto_delete", bool(auto_delete), q.auto_delete),
            ):
                if new != cur:
                    return CoreError(
                        PRECONDITION_FAILED,
                        f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue '{name}' in "
                        f"vhost '{vhost}': received '{_fmt(new)}' but current is '{_fmt(cur)}'",
                    )
            for k in EQUIVALENT_QUEUE_ARGS:
                nv, cv = arguments.get(k), q.arguments.get(k)
                if freeze(nv) != freeze(cv):
                    rn = "none" if nv is None else f"the value '{_fmt(nv)}'"
                    cn = "none" if cv is None else f"'{_fmt(cv)}'"
                    return CoreError(
                        PRECONDITION_FAILED,
                        f"PRECONDITION_FAILED - inequivalent arg '{k}' for queue '{name}' in "
                        f"vhost '{vhost}': received {rn} but current is {cn}",
                    )
            self._touch(q)
            return [name, q.ready_count, len(q.consumers)]
        settings = self._queue_settings(vhost, name, arguments)
        if isinstance(settings, CoreError):
            return settings
        if exclusive and session is None:
            return CoreError(NOT_ALLOWED, "NOT_ALLOWED - an exclusive queue needs a session")
        owner = connection_of(session) if exclusive else None
        q = Queue(
            vhost,
            name,
            bool(durable),
            owner,
            bool(auto_delete),
            share_arguments(dict(arguments)),
            settings,
            self.now,
        )
        vh.queues[name] = q
        if owner is not None:
            self._session(owner).owned[(vhost, name)] = None
        self._sched_expiry(q)
        return [name, 0, 0]

    def _delete_queue_cmd(self, cmd: list[Any]) -> Any:
        _, session, vhost, name, if_unused, if_empty = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        q = vh.queues.get(name)
        if q is None:
            return 0  # deleting what is not there succeeds, as RabbitMQ
        err = self._locked(q, session)
        if err is not None:
            return err
        if if_unused and q.consumers:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - queue '{name}' in vhost '{vhost}' in use",
            )
        if if_empty and q.ready_count:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - queue '{name}' in vhost '{vhost}' not empty",
            )
        n = q.ready_count
        self._delete_queue(vh, q)
        return n

    def _delete_queue(self, vh: VHost, q: Queue) -> None:
        if vh.queues.get(q.name) is not q:
            return
        del vh.queues[q.name]
        q.deleted = True
        vh.route_cache.clear()
        touched: dict[Session, None] = {}
        effects = self._effects
        for c in q.consumers:
            s = c.session
            if s.consumers.get(c.tag) is c:
                del s.consumers[c.tag]
            effects.append(("cancelled", s.id, c.tag))
            touched[s] = None
        q.consumers = []
        q.exclusive_consumer = False
        for m in q.unacked.values():
            ms = m.session
            assert ms is not None
            del ms.unacked[m.id]
            if ms.gone is NO_IDS:
                ms.gone = set()
            ms.gone.add(m.id)
            if m.consumer is not None:
                m.consumer.unacked -= 1
                if m.id < self.credit_id_max:
                    ms.cunacked -= 1
            m.session = None
            m.consumer = None
            m.lease_at = None
            touched[ms] = None
        q.unacked = {}
        q.unacked_bytes = 0
        q.clear_ready()
        if q.owner is not None:
            owner = self.sessions.get(q.owner)
            if owner is not None:
                owner.owned.pop((q.vhost, q.name), None)
                touched[owner] = None
        for b in list(vh.by_dest.pop(("queue", q.name), {})):
            self._unlink(vh, b, from_dest=False)
        for s in touched:
            self._gc(s)

    def _usable_queue(self, vhost: str, name: str, session: int | None) -> Queue | CoreError:
        """The queue ``session`` may act on, or the error saying why not."""
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        q = vh.queues.get(name)
        if q is None:
            return self._no_queue(vh, name)
        err = self._locked(q, session)
        return q if err is None else err

    def _purge_queue(self, cmd: list[Any]) -> Any:
        _, session, vhost, name = cmd
        q = self._usable_queue(vhost, name, session)
        if isinstance(q, CoreError):
            return q
        n = len(q.clear_ready()) + len(q.delayed)
        q.delayed = NO_DELAYED
        q.delay_sched = None
        return n

    def _set_exchange_arguments(self, cmd: list[Any]) -> Any:
        _, vhost, name, arguments = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        if name == "" or name.startswith("amq."):
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - cannot change the arguments of exchange '{name}' in vhost "
                f"'{vhost}'",
            )
        x = vh.exchanges.get(name)
        if x is None:
            return self._no_exchange(vh, name)
        if not isinstance(arguments, dict):
            return CoreError(COMMAND_INVALID, "COMMAND_INVALID - arguments must be a table")
        x.arguments = arguments
        ae = arguments.get("alternate-exchange")
        x.alternate = ae if isinstance(ae, str) else None
        vh.route_cache.clear()
        return None

    def _set_queue_arguments(self, cmd: list[Any]) -> Any:
        _, session, vhost, name, arguments = cmd
        q = self._usable_queue(vhost, name, session)
        if isinstance(q, CoreError):
            return q
        if not isinstance(arguments, dict):
            return CoreError(COMMAND_INVALID, "COMMAND_INVALID - arguments must be a table")
        settings = self._queue_settings(vhost, name, arguments)
        if isinstance(settings, CoreError):
            return settings
        for key, setting, default in (
            ("x-max-priority", "max_priority", 0),
            ("x-fifo", "fifo", False),
        ):
            if settings.get(setting, default) != getattr(q, setting):
                return CoreError(
                    PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - cannot change '{key}' of queue '{name}' in vhost "
                    f"'{vhost}'",
                )
        q.arguments = arguments
        q.apply_settings(settings)
        q.ttl_sched = None
        self._resched_ttl(q)
        q.exp_sched = None
        self._sched_expiry(q)
        return None

    # ------------------------------------------------------------------ bindings

    def _bind_check(self, cmd: list[Any]) -> Any:
        _, session, vhost, source, kind, dest, rk, arguments = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        if source == "" or (kind == "exchange" and dest == ""):
            return CoreError(
                ACCESS_REFUSED, "ACCESS_REFUSED - operation not permitted on the default exchange"
            )
        if kind not in ("queue", "exchange"):
            return CoreError(
                COMMAND_INVALID, f"COMMAND_INVALID - unknown destination kind '{kind}'"
            )
        src = vh.exchanges.get(source)
        if src is None:
            return self._no_exchange(vh, source)
        if kind == "queue":
            q = vh.queues.get(dest)
            if q is None:
                return self._no_queue(vh, dest)
            err = self._locked(q, session)
            if err is not None:
                return err
            durable = src.durable and q.logged
        else:
            dx = vh.exchanges.get(dest)
            if dx is None:
                return self._no_exchange(vh, dest)
            durable = src.durable and dx.durable
        return vh, src, durable

    def _bind(self, cmd: list[Any]) -> Any:
        checked = self._bind_check(cmd)
        if isinstance(checked, CoreError):
            return checked
        vh, src, durable = checked
        _, _, _, source, kind, dest, rk, arguments = cmd
        if src.type == RULES:
            why = check_rule_arguments(arguments or {})
            if why is None and durable and "x-sample-per-s" in (arguments or {}):
                # the sampling window is state of this node only (never logged)
                why = "x-sample-per-s is for bindings to transient destinations only"
            if why is not None:
                return CoreError(
                    PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid rule binding: {why}"
                )
        b = Binding(source, kind, dest, rk, dict(arguments or {}), durable)
        if src.add_binding(b):
            vh.by_dest.setdefault((kind, dest), {})[b] = None
            vh.route_cache.clear()
        return None

    def _unbind(self, cmd: list[Any]) -> Any:
        checked = self._bind_check(cmd)
        if isinstance(checked, CoreError):
            return checked
        vh, src, _ = checked
        _, _, _, source, kind, dest, rk, arguments = cmd
        b = src.bindings.get(binding_key(kind, dest, rk, arguments or {}))
        if b is not None:
            self._unlink(vh, b)
        return None

    # ------------------------------------------------------------------ routing

    def _walk(
        self, vh: VHost, x: Exchange, rk: str, headers: Any, durable_only: bool
    ) -> tuple[list[Queue], bool]:
        found: dict[Queue, None] = {}
        cacheable = True
        seen = {x.name}
        todo = [x]
        queues = vh.queues
        exchanges = vh.exchanges
        while todo:
            ex = todo.pop()
            if ex.type == DEFAULT:
                q = queues.get(rk)
                if q is not None and (q.logged or not durable_only):
                    found[q] = None
                continue
            if ex.type == "headers":
                cacheable = False
            matched = False
            for b in ex.match(rk, headers):
                if durable_only and not b.durable:
                    continue
                matched = True
                if b.kind == "queue":
                    found[queues[b.dest]] = None
                elif b.dest not in seen:
                    seen.add(b.dest)
                    todo.append(exchanges[b.dest])
            ae = ex.alternate
            if not matched and ae is not None and ae not in seen:
                ax = exchanges.get(ae)
                if ax is not None and (ax.durable or not durable_only):
                    seen.add(ae)
                    todo.append(ax)
        return list(found), cacheable

    def _targets(
        self, vh: VHost, x: Exchange, rk: str, headers: Any
    ) -> tuple[tuple[Queue, ...], tuple[Queue, ...]]:
        """(logged targets, other targets) of a message; sorted by queue name."""
        if x.type == DEFAULT:
            q = vh.queues.get(rk)
            if q is None:
                return (), ()
            return ((q,), ()) if q.logged else ((), (q,))
        key = (x.name, rk)
        hit = vh.route_cache.get(key)
        if hit is not None:
            return hit
        full, cacheable = self._walk(vh, x, rk, headers, False)
        if not full:
            res: tuple[tuple[Queue, ...], tuple[Queue, ...]] = ((), ())
        else:
            dur, _ = self._walk(vh, x, rk, headers, True)
            logged = [q for q in dur if q.logged]
            if len(logged) > 1:
                logged.sort(key=_qname)
            ls = set(logged)
            other = [q for q in full if q not in ls]
            if len(other) > 1:
                other.sort(key=_qname)
            res = (tuple(logged), tuple(other))
        if cacheable:
            cache = vh.route_cache
            if len(cache) >= ROUTE_CACHE_ENTRIES_MAX:
                cache.clear()
            cache[key] = res
        return res

    # ------------------------------------------------------------------ publish

    def _publish(self, cmd: list[Any]) -> Any:
        _, vhost, exname, msgs = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        x = vh.exchanges.get(exname)
        if x is None:
            return self._no_exchange(vh, exname)
        if x.internal:
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - cannot publish to internal exchange '{exname}' "
                f"in vhost '{vhost}'",
            )
        if len(msgs) > C.PUBLISH_BATCH_MAX:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - a publish carries at most {C.PUBLISH_BATCH_MAX} messages",
            )
        routed: list[int] = []
        rejected: list[int] = []
        infos: list[list[Any]] = []
        logged_apply = self._index > 0
        enqueue = self._enqueue
        append = routed.append
        for m in msgs:
            if m[3] & C.FLAG_RETAIN:
                if m[2]:
                    vh.retained[(exname, m[0])] = (m[1], m[2])
                else:
                    vh.retained.pop((exname, m[0]), None)
        if x.type == RULES:
            for pos, m in enumerate(msgs):
                n, ok = self._publish_rules(vh, x, m[0], m[1], m[2], logged_apply, 0)
                append(n)
                if not ok:
                    rejected.append(pos)
            return [routed, rejected]
        if x.type == DEFAULT:
            queues = vh.queues
            for pos, m in enumerate(msgs):
                rk = m[0]
                q = queues.get(rk)
                if q is None:
                    append(0)
                    continue
                append(1)
                if len(m) > 4:
                    self._enq_info = None
                    if not enqueue(q, "", rk, m[1], m[2], logged_apply and q.logged, m[4]):
                        rejected.append(pos)
                    infos.append([pos, *(self._enq_info or (None, None, None))])
                elif not enqueue(q, "", rk, m[1], m[2], logged_apply and q.logged):
                    rejected.append(pos)
            return [routed, rejected, infos] if infos else [routed, rejected]
        targets = self._targets
        for pos, m in enumerate(msgs):
            rk = m[0]
            props = m[1]
            lt, ot = targets(vh, x, rk, props.get("headers") if props else None)
            append(len(lt) + len(ot))
            ok = True
            opts = m[4] if len(m) > 4 else None
            self._enq_info = None
            for q in lt:
                ok = enqueue(q, exname, rk, props, m[2], logged_apply, opts) and ok
            for q in ot:
                ok = enqueue(q, exname, rk, props, m[2], False, opts) and ok
            if not ok:
                rejected.append(pos)
            if opts is not None:
                infos.append([pos, *(self._enq_info or (None, None, None))])
        return [routed, rejected, infos] if infos else [routed, rejected]

    def _dedup_seen(self, q: Queue, dedup: Any) -> tuple[int, Any] | None:
        """``(message id, message_id property)`` of the message that took ``dedup`` within
        the window, forgetting expired ids first."""
        table = q.dedup
        now = self.now
        while table:
            first = next(iter(table))
            if table[first][0] > now:
                break
            del table[first]
        hit = table.get(str(dedup))
        if hit is None or hit[0] <= now:
            return None
        return hit[1], hit[2]

    def _sched_delay(self, q: Queue) -> None:
        if not q.delayed:
            q.delay_sched = None
            return
        t = q.delayed[0][0]
        if q.delay_sched is None or t < q.delay_sched:
            q.delay_sched = t
            self._push(t, K_DELAY, (q.vhost, q.name), q)

    def _release_delayed(self, q: Queue) -> None:
        """Move the delayed messages that are due to the ready set, in due order."""
        now = self.now
        delayed = q.delayed
        while delayed and delayed[0][0] <= now:
            m = heappop(delayed)[2]
            m.seq = q.next_seq
            q.next_seq += 1
            q.push_fresh(m)
            if m.expires_at is not None:
                self._sched_msg_ttl(q, m)
        q.delay_sched = None
        self._sched_delay(q)
        if q.consumers:
            self._dirty[q] = None

    # ------------------------------------------------------------------ rules exchanges

    @staticmethod
    def _rule_event(group: tuple[str, str], props: dict[str, Any], body: bytes) -> Any:
        """What the patterns of one (dialect, scope) group see of a message; None if nothing."""
        dialect, scope = group
        try:
            if dialect == "sns":
                sns = props.get("sns") if props else None
                if not isinstance(sns, dict):
                    return None
                if scope == "MessageBody":
                    return json.loads(sns.get("message") or "")
                attrs = sns.get("attrs") or {}
                return sns_attribute_event({k: (v[0], v[1]) for k, v in attrs.items()})
            return json.loads(body)
        except (ValueError, TypeError, IndexError, AttributeError):
            return None

    def _parsed_event(self, group: tuple[str, str], props: dict[str, Any], body: bytes) -> Any:
        """``_rule_event`` of the message last asked about, parsed once: the leader routes a
        message once to decide whether it needs the log (``split_publish``) and again to apply
        it. Keyed by the identity of the message's (immutable) body and properties, which the
        cache holds, so a key is never reused."""
        cache = self._event_cache
        if cache is None or cache[0] is not props or cache[1] is not body:
            cache = self._event_cache = (props, body, {})
        events = cache[2]
        if group not in events:
            events[group] = self._rule_event(group, props, body)
        return events[group]

    def _rule_matches(
        self, x: Exchange, props: dict[str, Any], body: bytes, durable_only: bool
    ) -> list[Binding]:
        """The bindings of rules exchange ``x`` that a message matches, in canonical order:
        durable bindings first (they decide logged ids), each part by binding order."""
        found: dict[Any, Binding] = dict(x.unfiltered)
        bindings = x.bindings
        for group, rs in x.rule_sets.items():
            if not len(rs):
                continue
            event = self._parsed_event(group, props, body)
            if event is None:
                continue
            for key in rs.match(event):
                b = bindings.get(key)
                if b is not None:
                    found[key] = b
        out = [b for b in found.values() if b.durable or not durable_only]
        out.sort(key=lambda b: (not b.durable, b.order))
        return out

    def _sampled(self, b: Binding, rate: int) -> bool:
        """Whether a copy may go to sampled binding ``b`` now: at most ``rate`` per second of
        the machine's clock (fixed one-second windows). Sampled bindings are transient, so
        the window is state of this node, outside snapshots."""
        window = self._sample_windows.get(b.key)
        if window is None or self.now - window[0] >= 1000:
            if window is None and len(self._sample_windows) >= SAMPLE_WINDOWS_MAX:
                self._sample_windows.clear()
            window = self._sample_windows[b.key] = [self.now, 0]
        if window[1] >= rate:
            return False
        window[1] += 1
        return True

    def _publish_rules(
        self,
        vh: VHost,
        x: Exchange,
        rk: str,
        props: dict[str, Any],
        body: bytes,
        logged: bool,
        depth: int,
    ) -> tuple[int, bool]:
        """Route one message through rules exchange ``x``: one copy per matching binding, each
        transformed by the binding's ``x-transform``. ``(copies made, none refused)``."""
        n = 0
        ok = True
        for b in self._rule_matches(x, props, body, False):
            rate = b.arguments.get("x-sample-per-s")
            if rate is not None and not self._sampled(b, rate):
                continue
            spec = b.arguments.get("x-transform")
            opts = None
            p2, b2 = props, body
            if spec is not None:
                res = apply_transform(spec, props, body)
                if res is None:
                    continue
                p2, b2, opts = res
            copy_logged = logged and b.durable
            if b.kind == "queue":
                q = vh.queues.get(b.dest)
                if q is None:
                    continue
                n += 1
                if not self._enqueue(q, x.name, rk, p2, b2, copy_logged and q.logged, opts):
                    ok = False
                continue
            dx = vh.exchanges.get(b.dest)
            if dx is None:
                continue
            if dx.type == RULES:
                if depth < RULES_DEPTH_MAX:
                    m, sub_ok = self._publish_rules(vh, dx, rk, p2, b2, copy_logged, depth + 1)
                    n += m
                    ok = ok and sub_ok
                continue
            lt, ot = self._targets(vh, dx, rk, p2.get("headers") if p2 else None)
            for q in lt:
                n += 1
                ok = self._enqueue(q, dx.name, rk, p2, b2, copy_logged, opts) and ok
            for q in ot:
                n += 1
                ok = self._enqueue(q, dx.name, rk, p2, b2, False, opts) and ok
        return n, ok

    def _enqueue(
        self,
        q: Queue,
        exchange: str,
        rk: str,
        props: dict[str, Any],
        body: bytes,
        logged: bool,
        opts: dict[str, Any] | None = None,
    ) -> bool:
        """Add a new copy to ``q``; False when refused by a reject-publish overflow.

        ``opts`` (from a PUBLISH message's fifth field) may carry ``delay_ms`` (invisible for
        that long, instead of the queue's ``x-message-delay``), ``group`` (FIFO message group)
        and ``dedup`` (deduplication id, dropped as a duplicate within the queue's
        ``x-deduplication-window``). With opts, ``_enq_info`` is set to ``(message id,
        id of the original when a duplicate)``.
        """
        delay = q.delay
        group = None
        if opts is not None:
            dedup = opts.get("dedup")
            if dedup is not None and q.dedup_window:
                seen = self._dedup_seen(q, dedup)
                if seen is not None:
                    self._enq_info = (seen[0], seen[0], seen[1])
                    return True
                if len(q.dedup) >= DEDUP_ENTRIES_MAX:
                    return False
            d = opts.get("delay_ms")
            if type(d) is int and d >= 0:
                delay = d
            g = opts.get("group")
            if isinstance(g, str) and q.fifo:
                group = g
        ttl = q.ttl
        if props:
            exp = props.get("expiration")
            if exp is not None:
                e = _parse_expiration(exp)
                if e is not None and (ttl is None or e < ttl):
                    ttl = e
            prio = 0
            if q.max_priority:
                p = props.get("priority")
                if isinstance(p, int) and p > 0:
                    prio = p if p < q.max_priority else q.max_priority
        else:
            prio = 0
        m = Message(
            self._new_id(logged),
            q.next_seq,
            q,
            exchange,
            rk,
            props,
            body,
            prio,
            None if ttl is None else self.now + ttl,
        )
        q.next_seq += 1
        m.at = self.now
        if opts is not None:
            m.group = group
            self._enq_info = (m.id, None, None)
            dedup = opts.get("dedup")
            if dedup is not None and q.dedup_window:
                if q.dedup is NO_DEDUP:
                    q.dedup = {}
                q.dedup[str(dedup)] = (
                    self.now + q.dedup_window,
                    m.id,
                    props.get("message_id") if props else None,
                )
        if delay > 0:
            self._hn += 1
            if q.delayed is NO_DELAYED:
                q.delayed = []
            heappush(q.delayed, (self.now + delay, self._hn, m))
            self._sched_delay(q)
            return True
        if q.consumers and not q.ready_count:
            c = self._pick(q)
            if c is not None:
                self._deliver(q, c, m)
                return True
        if ttl == 0:
            self._dead_letter(q, m, "expired")
            return True
        max_len = q.max_len
        max_bytes = q.max_bytes
        over = False
        if max_len is not None or max_bytes is not None:
            over = (max_len is not None and q.ready_count >= max_len) or (
                max_bytes is not None and q.ready_bytes + m.size > max_bytes
            )
            if over and q.overflow != "drop-head":
                if q.overflow == "reject-publish-dlx":
                    self._dead_letter(q, m, "maxlen")
                return False
        q.push_fresh(m)
        if m.expires_at is not None:
            self._sched_msg_ttl(q, m)
        if over:
            while q.ready_count and (
                (max_len is not None and q.ready_count > max_len)
                or (max_bytes is not None and q.ready_bytes > max_bytes)
            ):
                h = q.pop_head()
                assert h is not None
                self._dead_letter(q, h, "maxlen")
            self._resched_ttl(q)
        if q.consumers:
            self._dirty[q] = None
        return True

    # ------------------------------------------------------------------ dead-lettering

    def _death_props(self, q: Queue, m: Message, reason: str) -> dict[str, Any]:
        props = dict(m.props) if m.props else {}
        old_headers = props.get("headers")
        headers: dict[Any, Any] = dict(old_headers) if isinstance(old_headers, dict) else {}
        old = headers.get("x-death")
        deaths: list[Any] = list(old) if isinstance(old, list) else []
        expiration = props.pop("expiration", None)
        for i, d in enumerate(deaths):
            if isinstance(d, dict) and d.get("queue") == q.name and d.get("reason") == reason:
                entry = dict(deaths.pop(i))
                count = entry.get("count")
                entry["count"] = (count if isinstance(count, int) else 0) + 1
                deaths.insert(0, entry)
                break
        else:
            entry = {
                "count": 1,
                "reason": reason,
                "queue": q.name,
                "time": self.now // 1000,
                "exchange": m.exchange,
                "routing-keys": [m.routing_key],
            }
            if expiration is not None:
                entry["original-expiration"] = expiration
            deaths.insert(0, entry)
        headers["x-death"] = deaths
        if "x-first-death-reason" not in headers:
            headers["x-first-death-queue"] = q.name
            headers["x-first-death-reason"] = reason
            headers["x-first-death-exchange"] = m.exchange
        headers["x-last-death-queue"] = q.name
        headers["x-last-death-reason"] = reason
        headers["x-last-death-exchange"] = m.exchange
        props["headers"] = headers
        return props

    @staticmethod
    def _is_cycle(target: str, deaths: list[Any]) -> bool:
        for d in deaths:
            if not isinstance(d, dict):
                continue
            if d.get("reason") == "rejected":
                return False
            if d.get("queue") == target:
                return True
        return False

    def _dead_letter(self, q: Queue, m: Message, reason: str) -> None:
        """Republish ``m`` (already out of ``q``'s ready and unacked sets) to the DLX."""
        if q.dlx is None or (q.dl_reasons is not None and reason not in q.dl_reasons):
            return
        vh = self.vhosts[q.vhost]
        x = vh.exchanges.get(q.dlx)
        if x is None:
            return
        rk = q.dlrk if q.dlrk is not None else m.routing_key
        props = self._death_props(q, m, reason)
        headers = props["headers"]
        lt, ot = self._targets(vh, x, rk, headers)
        logged = self._index > 0 and m.id < LOCAL_ID_BASE
        deaths = headers["x-death"]
        check = reason != "rejected"
        if lt and self.replicated and not logged:
            # A message of this node only (the transient path) dead-lettered into durable
            # queues: every replica must enqueue it, so it goes through the log (rule 7). The
            # node publishes it to each target through the default exchange.
            names = [t.name for t in lt if not (check and self._is_cycle(t.name, deaths))]
            if names:
                self._effects.append(("republish", q.vhost, names, props, m.body))
            lt = ()
        for t in lt:
            if not (check and self._is_cycle(t.name, deaths)):
                self._enqueue(t, x.name, rk, props, m.body, logged)
        for t in ot:
            if not (check and self._is_cycle(t.name, deaths)):
                self._enqueue(t, x.name, rk, props, m.body, False)

    # ------------------------------------------------------------------ delivery

    @staticmethod
    def _has_credit(c: Consumer) -> bool:
        if c.no_ack:
            return True
        if c.prefetch and c.unacked >= c.prefetch:
            return False
        s = c.session
        return not (s.prefetch and s.cunacked >= s.prefetch)

    def _pick(self, q: Queue) -> Consumer | None:
        has_credit = self._has_credit
        for c in q.consumers:
            if has_credit(c):
                return c
        return None

    def _deliver(self, q: Queue, c: Consumer, m: Message) -> None:
        dc = m.delivery_count + 1
        m.delivery_count = dc
        out = self._out.get(c)
        if out is None:
            out = self._out[c] = []
            self._effects.append(("deliver", c.session.id, c.tag, q.name, out))
        out.append((m.id, dc > 1, dc, m.exchange, m.routing_key, m.props, m.body))
        if m.first_at is None:
            m.first_at = self.now
        if not c.no_ack:
            if m.group is not None:
                q.groups_held[m.group] = q.groups_held.get(m.group, 0) + 1
            s = c.session
            m.session = s
            m.consumer = c
            c.unacked += 1
            if m.id < self.credit_id_max:
                s.cunacked += 1
            s.unacked[m.id] = m
            q.unacked[m.id] = m
            q.unacked_bytes += m.size
        cons = q.consumers
        if len(cons) > 1:
            # round robin: move c behind the other consumers of its priority
            cons.remove(c)
            i = 0
            n = len(cons)
            while i < n and cons[i].priority >= c.priority:
                i += 1
            cons.insert(i, c)

    def _dispatch(self, q: Queue) -> None:
        if not q.ready_count or not q.consumers:
            return
        now = self.now
        pick = self._pick
        deliver = self._deliver
        while q.ready_count:
            c = pick(q)
            if c is None:
                break
            m = q.pop_head()
            assert m is not None
            if m.expires_at is not None and m.expires_at < now:
                self._dead_letter(q, m, "expired")
                continue
            deliver(q, c, m)
        self._resched_ttl(q)

    def _flush(self) -> None:
        dirty = self._dirty
        while dirty:
            q = next(iter(dirty))
            del dirty[q]
            if not q.deleted:
                self._dispatch(q)

    # ------------------------------------------------------------------ consumers

    def _consume(self, cmd: list[Any]) -> Any:
        _, session, vhost, queue, tag, prefetch, no_ack, exclusive, arguments = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        q = vh.queues.get(queue)
        if q is None:
            return self._no_queue(vh, queue)
        err = self._locked(q, session)
        if err is not None:
            return err
        s = self.sessions.get(session)
        if s is not None and tag in s.consumers:
            return CoreError(NOT_ALLOWED, f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
        if q.exclusive_consumer or (exclusive and q.consumers):
            return CoreError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - queue '{queue}' in vhost '{vhost}' in exclusive use",
            )
        arguments = arguments or {}
        prio = arguments.get("x-priority", 0)
        if not _is_int(prio):
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - invalid arg 'x-priority' for consumer '{tag}': "
                f"expected an integer, got {prio!r}",
            )
        if not _is_int(prefetch) or prefetch < 0:
            return CoreError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid prefetch {prefetch!r}"
            )
        s = self._session(session)
        cargs = share_arguments(dict(arguments))
        c = Consumer(s, tag, q, prefetch, bool(no_ack), bool(exclusive), prio, cargs)
        s.consumers[tag] = c
        cons = q.consumers
        i = 0
        while i < len(cons) and cons[i].priority >= prio:
            i += 1
        cons.insert(i, c)
        if exclusive:
            q.exclusive_consumer = True
        self._dirty[q] = None
        return tag

    def _remove_consumer(self, c: Consumer) -> None:
        s = c.session
        if s.consumers.get(c.tag) is c:
            del s.consumers[c.tag]
        q = c.queue
        if q.deleted:
            return
        q.consumers.remove(c)
        if c.exclusive:
            q.exclusive_consumer = False
        if not q.consumers:
            q.last_used = self.now
            if q.auto_delete:
                self._delete_queue(self.vhosts[q.vhost], q)
            else:
                self._sched_expiry(q)

    def _cancel(self, cmd: list[Any]) -> Any:
        _, session, tag = cmd
        s = self.sessions.get(session)
        if s is None:
            return None
        c = s.consumers.get(tag)
        if c is None:
            return None
        self._remove_consumer(c)
        self._gc(s)
        return None

    # ------------------------------------------------------------------ settle / get

    def _detach(self, s: Session, m: Message) -> Queue:
        """Take ``m`` out of the unacked sets of its session and queue."""
        del s.unacked[m.id]
        q = m.queue
        if m.group is not None:
            self._release_group(q, m.group)
        del q.unacked[m.id]
        q.unacked_bytes -= m.size
        c = m.consumer
        if c is not None:
            c.unacked -= 1
            if m.id < self.credit_id_max:
                s.cunacked -= 1
            if not q.deleted:
                self._dirty[q] = None
            m.consumer = None
        m.session = None
        m.lease_at = None
        return q

    @staticmethod
    def _release_group(q: Queue, group: str) -> None:
        n = q.groups_held.get(group, 0) - 1
        if n > 0:
            q.groups_held[group] = n
        else:
            q.groups_held.pop(group, None)

    def _return(self, q: Queue, m: Message) -> None:
        """Put a detached message back in ready at its original place."""
        # As RabbitMQ (and SQS maxReceiveCount): dead-letter once delivered more than the limit.
        if q.delivery_limit is not None and m.delivery_count > q.delivery_limit:
            self._dead_letter(q, m, "delivery_limit")
            return
        q.push_returned(m)
        if m.expires_at is not None:
            self._sched_msg_ttl(q, m)
        if q.consumers:
            self._dirty[q] = None

    def _settle(self, cmd: list[Any]) -> Any:
        _, session, op, ids, delay_ms = cmd
        if op not in C.SETTLE_OPS:
            return CoreError(COMMAND_INVALID, f"COMMAND_INVALID - unknown settle op {op!r}")
        s = self.sessions.get(session)
        if s is None:
            if ids:
                return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag")
            return 0
        unacked = s.unacked
        gone = s.gone
        if len(ids) > 1 and len(set(ids)) != len(ids):
            return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag")
        for mid in ids:
            if mid not in unacked and mid not in gone:
                return CoreError(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag")
        n = 0
        had_credit_use = s.prefetch and s.cunacked >= s.prefetch
        if op == C.SETTLE_COMPLETE:
            dirty = self._dirty
            for mid in ids:
                m = unacked.pop(mid, None)
                if m is None:
                    gone.discard(mid)
                    continue
                q = m.queue
                del q.unacked[mid]
                q.unacked_bytes -= m.size
                if m.group is not None:
                    self._release_group(q, m.group)
                c = m.consumer
                if c is not None:
                    c.unacked -= 1
                    if mid < self.credit_id_max:
                        s.cunacked -= 1
                    dirty[q] = None
                    m.consumer = None
                m.session = None
                m.lease_at = None
                n += 1
        else:
            now = self.now
            for mid in ids:
                m = unacked.get(mid)
                if m is None:
                    gone.discard(mid)
                    continue
                n += 1
                q = self._detach(s, m)
                if op == C.SETTLE_REQUEUE:
                    self._return(q, m)
                elif op == C.SETTLE_DISCARD:
                    self._dead_letter(q, m, "rejected")
                elif delay_ms and delay_ms > 0:
                    if m.group is not None:
                        q.groups_held[m.group] = q.groups_held.get(m.group, 0) + 1
                    m.session = s
                    m.lease_at = now + delay_ms
                    s.unacked[mid] = m
                    q.unacked[mid] = m
                    q.unacked_bytes += m.size
                    self._push(m.lease_at, K_LEASE, mid, m)
                else:
                    self._return(q, m)
        if had_credit_use:
            for c in s.consumers.values():
                self._dirty[c.queue] = None
        self._gc(s)
        return n

    def _get(self, cmd: list[Any]) -> Any:
        """Reply ``[deliveries, ready count, [[first delivered at, enqueued at], ...]]``."""
        _, session, vhost, queue, max_n, lease_ms, no_ack = cmd
        vh = self._vhost(vhost)
        if isinstance(vh, CoreError):
            return vh
        q = vh.queues.get(queue)
        if q is None:
            return self._no_queue(vh, queue)
        err = self._locked(q, session)
        if err is not None:
            return err
        self._touch(q)
        out: list[Delivery] = []
        times: list[list[int | None]] = []
        now = self.now
        s = None if no_ack else self._session(session)
        held = q.groups_held if (q.fifo and s is not None) else None
        skipped: list[Message] = []
        taken: set[str] = set()
        scanned = 0
        while len(out) < max_n:
            m = q.pop_head()
            if m is None:
                break
            if m.expires_at is not None and m.expires_at < now:
                self._dead_letter(q, m, "expired")
                continue
            if held is not None and m.group is not None:
                # FIFO: a group with a message in flight waits (SQS message groups)
                if m.group in held and m.group not in taken:
                    skipped.append(m)
                    scanned += 1
                    if scanned >= FIFO_SCAN_MESSAGES_MAX:
                        break
                    continue
                taken.add(m.group)
            dc = m.delivery_count + 1
            m.delivery_count = dc
            if m.first_at is None:
                m.first_at = now
            out.append((m.id, dc > 1, dc, m.exchange, m.routing_key, m.props, m.body))
            times.append([m.first_at, m.at])
            if s is not None:
                m.session = s
                s.unacked[m.id] = m
                q.unacked[m.id] = m
                q.unacked_bytes += m.size
                if m.group is not None:
                    q.groups_held[m.group] = q.groups_held.get(m.group, 0) + 1
                if lease_ms and lease_ms > 0:
                    m.lease_at = now + lease_ms + 1
                    self._push(m.lease_at, K_LEASE, m.id, m)
        for m in skipped:
            q.push_returned(m)
        self._resched_ttl(q)
        if s is not None:
            self._gc(s)
        return [out, q.ready_count, times]

    # ------------------------------------------------------------------ sessions

    def _session_down(self, sid: int) -> None:
        s = self.sessions.get(sid)
        if s is None:
            return
        for c in list(s.consumers.values()):
            self._remove_consumer(c)
        for mid in sorted(s.unacked):
            m = s.unacked[mid]
            q = self._detach(s, m)
            self._return(q, m)
        s.gone = NO_IDS
        s.cunacked = 0
        for vhost, name in sorted(s.owned):
            ovh = self.vhosts.get(vhost)
            oq = ovh.queues.get(name) if ovh is not None else None
            if ovh is not None and oq is not None and oq.owner == sid:
                self._delete_queue(ovh, oq)
        s.owned.clear()
        if self.sessions.get(sid) is s:
            del self.sessions[sid]

    def _session_down_cmd(self, cmd: list[Any]) -> Any:
        self._session_down(cmd[1])
        return None

    def _session_prefetch(self, cmd: list[Any]) -> Any:
        _, sid, prefetch = cmd
        if not _is_int(prefetch) or prefetch < 0:
            return CoreError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid prefetch {prefetch!r}"
            )
        s = self._session(sid)
        s.prefetch = prefetch
        for c in s.consumers.values():
            self._dirty[c.queue] = None
        self._gc(s)
        return None

    def _sessions_reset(self, cmd: list[Any]) -> Any:
        """Every connection's sessions go down; service sessions (ids from
        ``SERVICE_SESSION_BASE`` up, as SQS receives use) keep their leases."""
        for sid in sorted(self.sessions):
            if sid < SERVICE_SESSION_BASE:
                self._session_down(sid)
        return None

    # ------------------------------------------------------------------ timers

    def _pop_due(self, now: int) -> list[tuple[int, int, Any, int, Any]]:
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            out.append(heappop(heap))
        return out

    def _tick(self, cmd: list[Any]) -> Any:
        now = self.now
        due = self._pop_due(now)
        leases = sorted({e[2]: e[4] for e in due if e[1] == K_LEASE}.items())
        for _, m in leases:
            s = m.session
            if s is None or m.lease_at is None or m.lease_at > now:
                continue
            q = self._detach(s, m)
            self._return(q, m)
            self._gc(s)
        due.extend(self._pop_due(now))
        ttl_keys = sorted({e[2] for e in due if e[1] == K_TTL})
        exp_keys = sorted({e[2] for e in due if e[1] == K_EXPIRES})
        for vhost, name in sorted({e[2] for e in due if e[1] == K_DELAY}):
            dq = self.vhosts[vhost].queues.get(name)
            if dq is not None and dq.delay_sched is not None and dq.delay_sched <= now:
                self._release_delayed(dq)
        for vhost, name in ttl_keys:
            tq = self.vhosts[vhost].queues.get(name)
            if tq is None:
                continue
            q = tq
            if q.ttl_sched is not None and q.ttl_sched <= now:
                q.ttl_sched = None
            self._expire_heads(q)
            self._resched_ttl(q)
        for vhost, name in exp_keys:
            vh = self.vhosts[vhost]
            eq = vh.queues.get(name)
            if eq is None:
                continue
            q = eq
            if q.exp_sched is not None and q.exp_sched <= now:
                q.exp_sched = None
            if q.expires is None or q.consumers:
                continue
            if now >= q.last_used + q.expires:
                self._delete_queue(vh, q)
            else:
                self._sched_expiry(q)
        return None

    def _expire_heads(self, q: Queue) -> None:
        now = self.now
        for lv in reversed(q.levels):
            while True:
                m = lv.head()
                if m is None or m.expires_at is None or m.expires_at >= now:
                    break
                q.pop_level_head(lv)
                self._dead_letter(q, m, "expired")

    def _entry_live(self, e: tuple[int, int, Any, int, Any]) -> bool:
        t, kind, _, _, obj = e
        if kind == K_LEASE:
            return bool(obj.session is not None and obj.lease_at == t)
        if kind == K_TTL:
            return bool(not obj.deleted and obj.ttl_sched == t)
        if kind == K_DELAY:
            return bool(not obj.deleted and obj.delay_sched == t)
        return bool(not obj.deleted and obj.exp_sched == t)

    def next_deadline(self) -> int | None:
        """Earliest time at which a TICK has something to do, or None."""
        heap = self._heap
        while heap and not self._entry_live(heap[0]):
            heappop(heap)
        return heap[0][0] if heap else None

    def durable_due(self, now_ms: int) -> bool:
        """Whether a TICK at ``now_ms`` would change logged state."""
        heap = self._heap
        stack = [0]
        while stack:
            i = stack.pop()
            if i >= len(heap) or heap[i][0] > now_ms:
                continue
            stack.append(2 * i + 1)
            stack.append(2 * i + 2)
            t, kind, _, _, obj = heap[i]
            if kind == K_LEASE:
                if (
                    obj.session is not None
                    and obj.lease_at is not None
                    and (obj.lease_at <= now_ms and obj.id < LOCAL_ID_BASE)
                ):
                    return True
            elif kind == K_DELAY:
                if (
                    not obj.deleted
                    and obj.logged
                    and obj.delayed
                    and obj.delayed[0][0] <= now_ms
                    and any(e[0] <= now_ms and e[2].id < LOCAL_ID_BASE for e in obj.delayed)
                ):
                    return True
            elif kind == K_TTL:
                if not obj.deleted and obj.logged:
                    for lv in obj.levels:
                        m = lv.head()
                        if (
                            m is not None
                            and m.expires_at is not None
                            and m.expires_at < now_ms
                            and m.id < LOCAL_ID_BASE
                        ):
                            return True
            elif (
                not obj.deleted
                and obj.logged
                and not obj.consumers
                and obj.expires is not None
                and now_ms >= obj.last_used + obj.expires
            ):
                return True
        return False

    # ------------------------------------------------------------------ users and vhosts

    def _put_user(self, cmd: list[Any]) -> Any:
        return self.auth.put_user(cmd[1], cmd[2], cmd[3])

    def _delete_user(self, cmd: list[Any]) -> Any:
        return self.auth.delete_user(cmd[1])

    def _set_permissions(self, cmd: list[Any]) -> Any:
        return self.auth.set_permissions(cmd[1], cmd[2], cmd[3:6], self.vhosts)

    def _clear_permissions(self, cmd: list[Any]) -> Any:
        return self.auth.clear_permissions(cmd[1], cmd[2], self.vhosts)

    def _set_topic_permissions(self, cmd: list[Any]) -> Any:
        return self.auth.set_topic_permissions(cmd[1], cmd[2], cmd[3], cmd[4:6], self.vhosts)

    def _clear_topic_permissions(self, cmd: list[Any]) -> Any:
        return self.auth.clear_topic_permissions(cmd[1], cmd[2], cmd[3], self.vhosts)

    def _seed_user(self, cmd: list[Any]) -> Any:
        return self.auth.seed(cmd[1], cmd[2], cmd[3], cmd[4], self.vhosts)

    def _add_vhost(self, cmd: list[Any]) -> Any:
        name = cmd[1]
        if not isinstance(name, str) or not name or len(name) > VHOST_NAME_CHARS_MAX:
            return CoreError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - a vhost name is 1-{VHOST_NAME_CHARS_MAX} characters",
            )
        if name in self.vhosts:
            return False
        if len(self.vhosts) >= VHOSTS_MAX:
            return CoreError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - at most {VHOSTS_MAX} vhosts"
            )
        self.vhosts[name] = VHost(name)
        return True

    def _delete_vhost(self, cmd: list[Any]) -> Any:
        """Delete a vhost with its queues (consumers are cancelled, held messages go), its
        exchanges and bindings, and every permission in it."""
        vh = self.vhosts.get(cmd[1]) if isinstance(cmd[1], str) else None
        if vh is None:
            return CoreError(NOT_FOUND, f"NOT_FOUND - no vhost '{cmd[1]}'")
        for name in sorted(vh.queues):
            q = vh.queues.get(name)
            if q is not None:
                self._delete_queue(vh, q)
        del self.vhosts[vh.name]
        self.auth.vhost_deleted(vh.name)
        return None

    # ------------------------------------------------------------------ persistence rules

    def _queue_logged(self, vhost: Any, name: Any) -> bool:
        vh = self.vhosts.get(vhost)
        q = vh.queues.get(name) if vh is not None else None
        return q is not None and q.logged

    def needs_log(self, cmd: list[Any], now_ms: int | None = None) -> bool:
        """Whether ``cmd`` must go through the replicated log (see DESIGN.md)."""
        op = cmd[0]
        if op == C.PUBLISH:
            return any(flag for flag, _ in self.split_publish(cmd[1], cmd[2], cmd[3]))
        if op == C.SETTLE:
            return any(mid < LOCAL_ID_BASE for mid in cmd[3])
        if op == C.DECLARE_EXCHANGE:
            return bool(cmd[4]) and not cmd[8]
        if op == C.SET_EXCHANGE_ARGUMENTS:
            vh = self.vhosts.get(cmd[1])
            sx = vh.exchanges.get(cmd[2]) if vh is not None else None
            return sx is not None and sx.durable
        if op == C.DELETE_EXCHANGE:
            vh = self.vhosts.get(cmd[1])
            x = vh.exchanges.get(cmd[2]) if vh is not None else None
            return x is not None and x.durable
        if op == C.DECLARE_QUEUE:
            return bool(cmd[4]) and not cmd[5] and not cmd[8]
        if op in (C.DELETE_QUEUE, C.PURGE_QUEUE, C.CONSUME, C.GET, C.SET_QUEUE_ARGUMENTS):
            return self._queue_logged(cmd[2], cmd[3])
        if op in (C.BIND, C.UNBIND):
            vh = self.vhosts.get(cmd[2])
            if vh is None:
                return False
            src = vh.exchanges.get(cmd[3])
            if src is None or not src.durable:
                return False
            if cmd[4] == "queue":
                return self._queue_logged(cmd[2], cmd[5])
            dx = vh.exchanges.get(cmd[5])
            return dx is not None and dx.durable
        if op == C.CANCEL:
            s = self.sessions.get(cmd[1])
            c = s.consumers.get(cmd[2]) if s is not None else None
            return c is not None and c.queue.logged
        if op in (C.SESSION_DOWN, C.SESSION_PREFETCH):
            s = self.sessions.get(cmd[1])
            if op == C.SESSION_PREFETCH:
                # the session prefetch decides later logged deliveries: always logged
                return True
            return s is not None and self._session_logged(s)
        if op in C.AUTH_OPS:
            return True
        if op == C.TICK:
            return self.durable_due(self.now if now_ms is None else max(now_ms, self.now))
        return bool(op == C.SESSIONS_RESET)

    @staticmethod
    def _session_logged(s: Session) -> bool:
        if s.prefetch:
            return True
        if any(c.queue.logged for c in s.consumers.values()):
            return True
        return any(mid < LOCAL_ID_BASE for mid in s.unacked) or any(
            mid < LOCAL_ID_BASE for mid in s.gone
        )

    def split_publish(
        self, vhost: str, exchange: str, msgs: list[Any]
    ) -> list[tuple[bool, list[Any]]]:
        """Consecutive runs of ``msgs``, each tagged with whether it needs the log.

        A message needs the log when it is persistent (delivery_mode 2) and routes to
        at least one durable, non-exclusive queue.
        """
        vh = self.vhosts.get(vhost)
        x = vh.exchanges.get(exchange) if vh is not None else None
        if vh is None or x is None or x.internal:
            return [(False, list(msgs))] if msgs else []
        runs: list[tuple[bool, list[Any]]] = []
        cur: list[Any] = []
        cur_flag = False
        targets = self._targets
        for m in msgs:
            props = m[1]
            need = bool(m[3] & C.FLAG_RETAIN)  # retained messages are always durable
            if not need and ((props and props.get("delivery_mode") == 2) or self.replicated):
                if x.type == RULES:
                    need = bool(self._rule_matches(x, props or {}, m[2], True))
                else:
                    need = bool(targets(vh, x, m[0], props.get("headers") if props else None)[0])
            if cur and need != cur_flag:
                runs.append((cur_flag, cur))
                cur = []
            cur_flag = need
            cur.append(m)
        if cur:
            runs.append((cur_flag, cur))
        return runs

    # ------------------------------------------------------------------ read queries

    def retained(self, vhost: str, exchange: str) -> list[tuple[str, dict[str, Any], bytes]]:
        """Every retained message of ``exchange``: ``(routing_key, props, body)``."""
        vh = self.vhosts.get(vhost)
        if vh is None:
            return []
        return [(rk, p, b) for (x, rk), (p, b) in vh.retained.items() if x == exchange]

    def exchange_exists(self, vhost: str, name: str) -> bool:
        vh = self.vhosts.get(vhost)
        return vh is not None and name in vh.exchanges

    def queue_exists(self, vhost: str, name: str) -> bool:
        vh = self.vhosts.get(vhost)
        return vh is not None and name in vh.queues

    @staticmethod
    def _info(q: Queue) -> dict[str, Any]:
        return {
            "name": q.name,
            "vhost": q.vhost,
            "messages_ready": q.ready_count,
            "messages_unacked": len(q.unacked),
            "messages_delayed": len(q.delayed),
            "messages": q.ready_count + len(q.unacked),
            "consumers": len(q.consumers),
            "bytes": q.ready_bytes + q.unacked_bytes,
            "durable": q.durable,
            "exclusive": q.owner is not None,
            "owner": q.owner,
            "auto_delete": q.auto_delete,
            "arguments": dict(q.arguments),
        }

    def queue_counts(self, vhost: str, name: str) -> tuple[int, int, int] | None:
        vh = self.vhosts.get(vhost)
        q = vh.queues.get(name) if vh is not None else None
        return None if q is None else (q.ready_count, len(q.unacked), len(q.delayed))

    def held(self, session: int, ids: Any) -> list[int]:
        s = self.sessions.get(session)
        if s is None:
            return []
        return [i for i in ids if i in s.unacked]

    def queue_info(self, vhost: str, name: str) -> dict[str, Any] | None:
        vh = self.vhosts.get(vhost)
        q = vh.queues.get(name) if vh is not None else None
        return None if q is None else self._info(q)

    def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        vh = self.vhosts.get(vhost)
        if vh is None:
            return []
        return [self._info(vh.queues[n]) for n in sorted(vh.queues)]

    @staticmethod
    def _exchange_row(vhost: str, x: Exchange) -> dict[str, Any]:
        return {
            "name": x.name,
            "vhost": vhost,
            "type": "direct" if x.type == DEFAULT else x.type,
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": dict(x.arguments),
        }

    def list_exchanges(self, vhost: str) -> list[dict[str, Any]]:
        vh = self.vhosts.get(vhost)
        if vh is None:
            return []
        return [self._exchange_row(vhost, vh.exchanges[n]) for n in sorted(vh.exchanges)]

    def exchange_info(self, vhost: str, name: str) -> dict[str, Any] | None:
        vh = self.vhosts.get(vhost)
        x = vh.exchanges.get(name) if vh is not None else None
        return None if x is None else self._exchange_row(vhost, x)

    def bindings_from(self, vhost: str, exchange: str) -> list[dict[str, Any]]:
        """The bindings whose source is ``exchange``, in canonical order."""
        vh = self.vhosts.get(vhost)
        x = vh.exchanges.get(exchange) if vh is not None else None
        if x is None:
            return []
        return [
            {
                "source": b.source,
                "destination": b.dest,
                "destination_type": b.kind,
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in sorted(x.bindings.values(), key=lambda b: repr(b.key))
        ]

    def bindings_to(
        self, vhost: str, kind: str, name: str
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """``(source, routing_key, arguments)`` of every binding to queue/exchange ``name``."""
        vh = self.vhosts.get(vhost)
        if vh is None:
            return []
        found = vh.by_dest.get((kind, name), {})
        return [(b.source, b.routing_key, dict(b.arguments)) for b in found]

    def list_bindings(self, vhost: str) -> list[dict[str, Any]]:
        """Explicit bindings (the implicit default-exchange bindings are not listed)."""
        vh = self.vhosts.get(vhost)
        if vh is None:
            return []
        out = []
        for n in sorted(vh.exchanges):
            for b in vh.exchanges[n].bindings.values():
                out.append(
                    {
                        "source": b.source,
                        "vhost": vhost,
                        "destination": b.dest,
                        "destination_type": b.kind,
                        "routing_key": b.routing_key,
                        "arguments": dict(b.arguments),
                    }
                )
        return out

    # ------------------------------------------------------------------ snapshot

    def set_replicated(self) -> None:
        """Switch to replicated mode (rule 7); before the first apply."""
        self.replicated = True
        self.credit_id_max = LOCAL_ID_BASE

    def snapshot(self) -> bytes:
        """msgpack of the logged (durable) state only; deterministic bytes."""
        return dump_snapshot(self)

    @classmethod
    def restore(cls, data: bytes) -> Machine:
        m = cls()
        load_snapshot(m, data)
        return m
