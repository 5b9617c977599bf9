"""Scripted Raft scenarios: a tiny deterministic harness over ``storage.raft.core``.

``Net`` holds cores with in-memory disks and a message queue that the test delivers by hand,
so every scenario says exactly which messages arrive, are lost, or wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from storage.raft.core import (
    Entry,
    HardState,
    Message,
    MsgKind,
    Proposed,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
)
from tests.sim.sim import SimDisk


def config(node: str, peers: Iterable[str], **kw: object) -> RaftConfig:
    base: dict[str, object] = {
        "election_ticks": 10,
        "heartbeat_ticks": 1,
        "entries_per_message_max": 64,
        "bytes_per_message_max": 1 << 16,
        "inflight_messages_max": 8,
        "snapshot_chunk_bytes_max": 1 << 16,
        "seed": 7,
    }
    base.update(kw)
    return RaftConfig(id=node, peers=tuple(peers), **base)  # type: ignore[arg-type]


def disk_with(log: Iterable[int], term: int = 0, vote: str | None = None) -> SimDisk:
    """A disk whose log holds entries of the given terms (data ``b"t<term>:<index>"``)."""
    disk = SimDisk()
    for i, t in enumerate(log, 1):
        disk.log.append((t, b"t%d:%d" % (t, i)))
    disk.synced_last = disk.last_index()
    disk.hard_state = HardState(term, vote, 0)
    return disk


class Net:
    """Cores wired through a queue of messages the test delivers explicitly."""

    def __init__(
        self,
        ids: Iterable[str],
        disks: dict[str, SimDisk] | None = None,
        *,
        damaged: Iterable[str] = (),
        **kw: object,
    ) -> None:
        self.ids = tuple(ids)
        self.kw = kw
        self.disks = {i: SimDisk() for i in self.ids}
        self.disks.update(disks or {})
        self.cores: dict[str, RaftCore] = {}
        self.applied: dict[str, list[Entry]] = {i: [] for i in self.ids}
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        self.down: set[str] = set()
        self.cut: set[frozenset[str]] = set()  # pairs that cannot talk
        for i in self.ids:
            self.cores[i] = RaftCore(
                config(i, self.ids, **kw), self.disks[i], log_damaged=i in set(damaged)
            )

    # -- driving --------------------------------------------------------------------------

    def ready(self, node: str) -> Ready | None:
        """Persist, send, apply and advance one Ready of ``node``."""
        core = self.cores[node]
        rd = core.ready()
        if rd is None:
            return None
        disk = self.disks[node]
        disk.begin(rd)
        disk.sync()
        self.queue.extend(rd.messages)
        self.sent.extend(rd.messages)
        self.applied[node].extend(rd.committed)
        core.advance(rd)
        core.check_invariants()
        return rd

    def flush(self) -> None:
        for node in self.ids:
            if node not in self.down:
                while self.ready(node) is not None:
                    pass

    def can_talk(self, a: str, b: str) -> bool:
        return a not in self.down and b not in self.down and frozenset((a, b)) not in self.cut

    def deliver(
        self,
        keep: Callable[[Message], Message | bool] = lambda m: True,
        *,
        rounds_max: int = 1000,
    ) -> None:
        """Deliver queued messages (and their consequences) until none are left. Messages that
        cross a cut are lost; ``keep`` may drop a message (False) or replace it."""
        self.flush()
        for _ in range(rounds_max):
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            for m in batch:
                verdict = keep(m)
                if verdict is False or not self.can_talk(m.frm, m.to):
                    continue
                self.cores[m.to].step(m if verdict is True else verdict)
            self.flush()
        raise AssertionError("messages kept flowing")

    def tick(self, node: str, n: int = 1) -> None:
        for _ in range(n):
            self.cores[node].tick()
        self.flush()

    def tick_all(self, n: int = 1, *, deliver: bool = True) -> None:
        for _ in range(n):
            for node in self.ids:
                if node not in self.down:
                    self.cores[node].tick()
            if deliver:
                self.deliver()
            else:
                self.flush()

    def elect(self, node: str) -> None:
        """Make ``node`` leader by campaigning and delivering everything."""
        self.cores[node].campaign()
        self.deliver()
        assert self.cores[node].role == Role.LEADER, self.cores[node].soft_state()

    def propose(self, node: str, *datas: bytes) -> Proposed:
        res = self.cores[node].propose(list(datas))
        assert isinstance(res, Proposed), res
        return res

    def isolate(self, node: str) -> None:
        for other in self.ids:
            if other != node:
                self.cut.add(frozenset((node, other)))

    def heal(self) -> None:
        self.cut.clear()

    def take(self, kind: MsgKind) -> list[Message]:
        """Remove and return the queued messages of ``kind``."""
        out = [m for m in self.queue if m.kind == kind]
        self.queue = [m for m in self.queue if m.kind != kind]
        return out

    # -- looking ----------------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [i for i in self.ids if self.cores[i].role == Role.LEADER and i not in self.down]

    def log_terms(self, node: str) -> list[int]:
        core = self.cores[node]
        return [e.term for e in core.entries(1, core.last_index + 1)]

    def values(self, node: str) -> list[bytes]:
        return [e.data for e in self.applied[node] if e.data]
