"""LogStorage: the core over the broker's log interface (MemoryLog here, SegmentedLog alike)."""

from __future__ import annotations

from storage.memlog import MemoryLog
from storage.raft.core import LogStorage, Proposed, RaftCore, Ready, Role, SnapshotMeta
from tests.raft import config


def _persist(storage: LogStorage, rd: Ready) -> None:
    log = storage.log
    if rd.entries:
        first = rd.entries[0].index
        if first <= log.last_index:
            log.truncate_suffix(first - 1)
        log.append([(e.term, e.data) for e in rd.entries])
    log.sync()
    if rd.hard_state is not None:
        storage.hard_state = rd.hard_state


def test_single_node_over_memory_log_survives_a_restart() -> None:
    log = MemoryLog()
    storage = LogStorage(log)
    core = RaftCore(config("a", ["a"]), storage)
    core.campaign()
    assert core.role == Role.LEADER
    assert isinstance(core.propose([b"x", b"y"]), Proposed)
    applied: list[bytes] = []
    while (rd := core.ready()) is not None:
        _persist(storage, rd)
        applied.extend(e.data for e in rd.committed)
        core.advance(rd)
    assert applied == [b"", b"x", b"y"]
    assert log.last_index == 3 and storage.hard_state.commit == 3
    log.crash()
    again = RaftCore(config("a", ["a"]), storage)
    assert (again.term, again.committed, again.last_index) == (1, 3, 3)
    rd = again.ready()
    assert rd is not None and [e.data for e in rd.committed] == [b"", b"x", b"y"]


def test_log_storage_serves_the_snapshot_term_and_compacted_bounds() -> None:
    log = MemoryLog()
    log.append([(1, b"a"), (1, b"b"), (2, b"c"), (2, b"d")])
    storage = LogStorage(log, snapshot=SnapshotMeta(2, 1, 5), snapshot_source=lambda i, o, n: b"")
    log.compact_prefix(2)
    assert (storage.first_index(), storage.last_index()) == (3, 4)
    assert storage.term_at(2) == 1 and storage.term_at(4) == 2
    assert storage.term_at(1) is None and storage.term_at(5) is None
