"""Queue, message, consumer and session records.

Ready order: each priority level keeps ``fresh`` (never delivered, in enqueue
order) and ``returned`` (delivered then returned, a heap by enqueue sequence).
A returned message was taken from the head, so its sequence is lower than every
fresh message of its level: the next message of a level is the smallest returned
one, else the first fresh one. Higher levels go first.
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from types import MappingProxyType
from typing import Any, cast


class Message:
    """One copy of a message in one queue."""

    __slots__ = (
        "id",
        "seq",
        "queue",
        "exchange",
        "routing_key",
        "props",
        "body",
        "size",
        "priority",
        "expires_at",
        "delivery_count",
        "session",
        "consumer",
        "lease_at",
        "group",
        "at",
        "first_at",
    )

    def __init__(
        self,
        id: int,
        seq: int,
        queue: Queue,
        exchange: str,
        routing_key: str,
        props: dict[str, Any],
        body: bytes,
        priority: int,
        expires_at: int | None,
    ) -> None:
        self.id = id
        self.seq = seq
        self.queue = queue
        self.exchange = exchange
        self.routing_key = routing_key
        self.props = props
        self.body = body
        self.size = len(body)
        self.priority = priority
        self.expires_at = expires_at
        self.delivery_count = 0
        self.session: Session | None = None
        self.consumer: Consumer | None = None
        self.lease_at: int | None = None
        #: FIFO message group (None outside FIFO queues)
        self.group: str | None = None
        #: when it was enqueued, and first delivered (machine time, ms)
        self.at = 0
        self.first_at: int | None = None


#: The ``fresh`` of a level that never held a message: shared, never appended to (an empty
#: deque costs about 600 bytes, and an idle MQTT session has a queue of its own).
NO_MESSAGES: deque[Message] = deque(maxlen=0)
#: The ``gone`` of a session that has none: shared and immutable (a frozenset), replaced by a
#: set of the session's own before an id is added.
NO_IDS = cast("set[int]", frozenset())
#: Shared, immutable empty containers of a queue or level that has never needed its own (an
#: idle MQTT session has a queue of its own: each empty container costs 56-232 bytes). Code
#: that adds to one replaces it first (see the ``is NO_...`` checks); a mistake raises.
NO_RETURNED = cast("list[tuple[int, Message]]", ())
NO_DELAYED = cast("list[tuple[int, int, Message]]", ())
NO_DEDUP = cast("dict[str, tuple[int, int, Any]]", MappingProxyType({}))
NO_GROUPS = cast("dict[str, int]", MappingProxyType({}))


class Level:
    __slots__ = ("fresh", "returned")

    def __init__(self) -> None:
        self.fresh: deque[Message] = NO_MESSAGES
        self.returned: list[tuple[int, Message]] = NO_RETURNED

    def head(self) -> Message | None:
        if self.returned:
            return self.returned[0][1]
        if self.fresh:
            return self.fresh[0]
        return None

    def pop(self) -> Message:
        if self.returned:
            return heappop(self.returned)[1]
        return self.fresh.popleft()

    def ordered(self) -> list[Message]:
        return [m for _, m in sorted(self.returned, key=lambda e: e[0])] + list(self.fresh)


class Consumer:
    __slots__ = (
        "session",
        "tag",
        "queue",
        "prefetch",
        "no_ack",
        "exclusive",
        "priority",
        "arguments",
        "unacked",
    )

    def __init__(
        self,
        session: Session,
        tag: str,
        queue: Queue,
        prefetch: int,
        no_ack: bool,
        exclusive: bool,
        priority: int,
        arguments: dict[str, Any],
    ) -> None:
        self.session = session
        self.tag = tag
        self.queue = queue
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.arguments = arguments
        self.unacked = 0


class Session:
    __slots__ = ("id", "consumers", "unacked", "gone", "prefetch", "cunacked", "owned")

    def __init__(self, id: int) -> None:
        self.id = id
        self.consumers: dict[str, Consumer] = {}
        #: every message this session holds unacked (consumer or GET), by id
        self.unacked: dict[int, Message] = {}
        #: ids it held from queues since deleted: their settles are ignored
        self.gone: set[int] = NO_IDS
        self.prefetch = 0
        #: unacked messages delivered to its consumers (the session prefetch counts these)
        self.cunacked = 0
        #: exclusive queues it owns, as (vhost, name)
        self.owned: dict[tuple[str, str], None] = {}

    def idle(self) -> bool:
        return not (self.consumers or self.unacked or self.gone or self.prefetch or self.owned)


class Queue:
    __slots__ = (
        "vhost",
        "name",
        "durable",
        "owner",
        "auto_delete",
        "arguments",
        "logged",
        "ttl",
        "expires",
        "max_len",
        "max_bytes",
        "overflow",
        "dlx",
        "dlrk",
        "max_priority",
        "delivery_limit",
        "levels",
        "ready_count",
        "ready_bytes",
        "unacked",
        "unacked_bytes",
        "consumers",
        "next_seq",
        "last_used",
        "ttl_sched",
        "exp_sched",
        "n_expiring",
        "deleted",
        "exclusive_consumer",
        "delay",
        "fifo",
        "dedup_window",
        "dl_reasons",
        "delayed",
        "delay_sched",
        "dedup",
        "groups_held",
    )

    def __init__(
        self,
        vhost: str,
        name: str,
        durable: bool,
        owner: int | None,
        auto_delete: bool,
        arguments: dict[str, Any],
        settings: dict[str, Any],
        now: int,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.owner = owner
        self.auto_delete = auto_delete
        self.arguments = arguments
        #: durable and not exclusive: lives in the log and the snapshot
        self.logged = durable and owner is None
        self.max_priority: int = settings.get("max_priority", 0)
        self.levels = [Level() for _ in range(self.max_priority + 1)]
        self.ready_count = 0
        self.ready_bytes = 0
        self.unacked: dict[int, Message] = {}
        self.unacked_bytes = 0
        #: ordered by priority (highest first), round-robin order within a priority
        self.consumers: list[Consumer] = []
        self.next_seq = 0
        self.last_used = now
        self.ttl_sched: int | None = None
        self.exp_sched: int | None = None
        self.n_expiring = 0
        self.deleted = False
        self.exclusive_consumer = False
        self.apply_settings(settings)
        #: delayed messages: a heap of (visible_at, n, message); not ready, not counted there
        self.delayed: list[tuple[int, int, Message]] = NO_DELAYED
        self.delay_sched: int | None = None
        #: deduplication ids seen within the window: id -> (expires_at, message id, its
        #: message_id property); insertion order is time order
        self.dedup: dict[str, tuple[int, int, Any]] = NO_DEDUP
        #: FIFO groups with messages in flight: group -> count
        self.groups_held: dict[str, int] = {} if self.fifo else NO_GROUPS

    def apply_settings(self, settings: dict[str, Any]) -> None:
        """The settings that may change after declaration (SQS SetQueueAttributes)."""
        self.ttl: int | None = settings.get("ttl")
        self.expires: int | None = settings.get("expires")
        self.max_len: int | None = settings.get("max_len")
        self.max_bytes: int | None = settings.get("max_bytes")
        self.overflow: str = settings.get("overflow", "drop-head")
        self.dlx: str | None = settings.get("dlx")
        self.dlrk: str | None = settings.get("dlrk")
        self.delivery_limit: int | None = settings.get("delivery_limit")
        #: default delay of new messages, ms
        self.delay: int = settings.get("delay", 0)
        #: FIFO: GET holds a message group while one of its messages is in flight
        self.fifo: bool = settings.get("fifo", False)
        self.dedup_window: int = settings.get("dedup_window", 0)
        #: the dead-letter reasons that dead-letter (None: all); others just drop the message
        self.dl_reasons: tuple[str, ...] | None = settings.get("dl_reasons")

    # ready structure -----------------------------------------------------------------

    def push_fresh(self, m: Message) -> None:
        lv = self.levels[m.priority]
        if lv.fresh is NO_MESSAGES:
            lv.fresh = deque()
        lv.fresh.append(m)
        self.ready_count += 1
        self.ready_bytes += m.size
        if m.expires_at is not None:
            self.n_expiring += 1

    def push_returned(self, m: Message) -> None:
        lv = self.levels[m.priority]
        if lv.returned is NO_RETURNED:
            lv.returned = []
        heappush(lv.returned, (m.seq, m))
        self.ready_count += 1
        self.ready_bytes += m.size
        if m.expires_at is not None:
            self.n_expiring += 1

    def head(self) -> Message | None:
        levels = self.levels
        for i in range(len(levels) - 1, -1, -1):
            m = levels[i].head()
            if m is not None:
                return m
        return None

    def pop_head(self) -> Message | None:
        if not self.ready_count:
            return None
        levels = self.levels
        if len(levels) == 1:
            m = levels[0].pop()
        else:
            for i in range(len(levels) - 1, -1, -1):
                lv = levels[i]
                if lv.returned or lv.fresh:
                    m = lv.pop()
                    break
            else:  # pragma: no cover - ready_count says otherwise
                raise AssertionError("ready_count > 0 but no ready message")
        self.ready_count -= 1
        self.ready_bytes -= m.size
        if m.expires_at is not None:
            self.n_expiring -= 1
        return m

    def pop_level_head(self, lv: Level) -> Message:
        m = lv.pop()
        self.ready_count -= 1
        self.ready_bytes -= m.size
        if m.expires_at is not None:
            self.n_expiring -= 1
        return m

    def ready_in_order(self) -> list[Message]:
        out: list[Message] = []
        for i in range(len(self.levels) - 1, -1, -1):
            out.extend(self.levels[i].ordered())
        return out

    def clear_ready(self) -> list[Message]:
        out = self.ready_in_order()
        self.levels = [Level() for _ in range(self.max_priority + 1)]
        self.ready_count = 0
        self.ready_bytes = 0
        self.n_expiring = 0
        return out

    def min_head_expiry(self) -> int | None:
        best: int | None = None
        for lv in self.levels:
            m = lv.head()
            if m is not None and m.expires_at is not None and (best is None or m.expires_at < best):
                best = m.expires_at
        return best
