"""A test harness for broker.core: applies commands and checks invariants after each."""

from __future__ import annotations

from typing import Any

import msgpack

from broker.core import commands as C
from broker.core.commands import (
    cmd_bind,
    cmd_consume,
    cmd_declare_exchange,
    cmd_declare_queue,
    cmd_publish,
    msg,
)
from broker.core.invariants import check_invariants
from broker.core.machine import Machine
from broker.core.model import CoreError, Meta

V = "/"


def _apply_kw(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw.pop(k) for k in ("t", "local") if k in kw}


class Harness:
    """Applies commands to one Machine; logged metas by default, time set by ``t``."""

    def __init__(self, machine: Machine | None = None) -> None:
        self.m = machine or Machine()
        self.index = 0
        self.time = 1_000
        self.effects: list[Any] = []

    def apply(self, cmd: list[Any], *, t: int | None = None, local: bool = False) -> Any:
        if t is not None:
            self.time = t
        if local:
            meta = Meta(0, 1, self.time)
        else:
            self.index += 1
            meta = Meta(self.index, 1, self.time)
        reply, effects = self.m.apply(meta, cmd)
        check_invariants(self.m)
        self.effects = effects
        return reply

    def ok(self, cmd: list[Any], **kw: Any) -> Any:
        reply = self.apply(cmd, **kw)
        assert not isinstance(reply, CoreError), reply
        return reply

    def err(self, cmd: list[Any], code: int, **kw: Any) -> CoreError:
        before = self.state()
        reply = self.apply(cmd, **kw)
        assert isinstance(reply, CoreError), reply
        assert reply.code == code, reply
        assert self.state() == before, "a failed command changed the state"
        return reply

    def state(self) -> Any:
        """Snapshot content without the clock, plus transient counts."""
        snap = msgpack.unpackb(self.m.snapshot(), raw=False, strict_map_key=False)
        snap[1] = None
        return snap, self.m.list_queues(V), self.m.list_exchanges(V), self.m.list_bindings(V)

    # shortcuts --------------------------------------------------------------------

    def queue(self, name: str, **kw: Any) -> Any:
        ap = _apply_kw(kw)
        return self.ok(cmd_declare_queue(V, name, **kw), **ap)

    def exchange(self, name: str, type_: str = "direct", **kw: Any) -> Any:
        ap = _apply_kw(kw)
        return self.ok(cmd_declare_exchange(V, name, type_, **kw), **ap)

    def bind(self, source: str, dest: str, rk: str = "", **kw: Any) -> Any:
        ap = _apply_kw(kw)
        return self.ok(cmd_bind(V, source, dest, rk, **kw), **ap)

    def publish(
        self,
        exchange: str,
        rk: str,
        body: bytes = b"x",
        props: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        return self.ok(cmd_publish(V, exchange, [msg(rk, body, props)]), **kw)

    def publish_many(
        self, exchange: str, items: list[tuple[str, bytes, dict[str, Any] | None]], **kw: Any
    ) -> Any:
        return self.ok(cmd_publish(V, exchange, [msg(rk, b, p) for rk, b, p in items]), **kw)

    def consume(self, session: int, queue: str, tag: str, **kw: Any) -> Any:
        ap = _apply_kw(kw)
        return self.ok(cmd_consume(session, V, queue, tag, **kw), **ap)

    def get(self, session: int, queue: str, **kw: Any) -> Any:
        """``[deliveries, ready]`` of a GET."""
        return self.get_full(session, queue, **kw)[:2]

    def get_full(self, session: int, queue: str, **kw: Any) -> Any:
        """``[deliveries, ready, times]`` of a GET."""
        ap = _apply_kw(kw)
        return self.ok(C.cmd_get(session, V, queue, **kw), **ap)

    def settle(self, session: int, op: int, ids: list[int], delay_ms: int = 0, **kw: Any) -> Any:
        return self.ok(C.cmd_settle(session, op, ids, delay_ms), **kw)

    def tick(self, t: int) -> Any:
        return self.ok(C.cmd_tick(), t=t)

    def deliveries(self, tag: str | None = None) -> list[tuple[Any, ...]]:
        """Deliveries of the last apply (optionally of one consumer tag)."""
        out = []
        for e in self.effects:
            if e[0] == "deliver" and (tag is None or e[2] == tag):
                out.extend(e[4])
        return out

    def bodies(self, tag: str | None = None) -> list[bytes]:
        return [d[6] for d in self.deliveries(tag)]

    def ready(self, queue: str) -> int:
        info = self.m.queue_info(V, queue)
        assert info is not None
        return int(info["messages_ready"])

    def routed_to(self, exchange: str, rk: str, props: dict[str, Any] | None = None) -> list[str]:
        """Queues that receive a message (by ready count growth), sorted."""
        before = {q["name"]: q["messages_ready"] for q in self.m.list_queues(V)}
        self.publish(exchange, rk, b"r", props)
        after = {q["name"]: q["messages_ready"] for q in self.m.list_queues(V)}
        hit = sorted(n for n in after if after[n] > before.get(n, 0))
        for n in hit:
            self.ok(C.cmd_purge_queue(V, n))
        return hit
