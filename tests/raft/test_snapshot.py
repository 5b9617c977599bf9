"""Log compaction and chunked InstallSnapshot (§7, Figure 13)."""

from __future__ import annotations

import math

from storage.raft.core import MsgKind, ProgressState
from tests.raft import Net

CHUNK_BYTES_MAX = 10


def _compact(net: Net, node: str) -> int:
    """Snapshot ``node`` at its applied index (the data is just the applied values)."""
    core = net.cores[node]
    index = core.applied
    term = core.term_at(index)
    assert term is not None
    data = b"|".join(e.data for e in net.applied[node] if e.index <= index)
    net.disks[node].compact(index, term, data)
    core.report_compacted(index)
    return len(data)


def test_lagging_follower_gets_the_snapshot_in_chunks() -> None:
    net = Net(["a", "b", "c"], snapshot_chunk_bytes_max=CHUNK_BYTES_MAX)
    net.elect("a")
    net.tick_all(2)
    net.down.add("c")
    for k in range(30):
        net.propose("a", b"value-%02d" % k)
    net.tick_all(2)
    size = _compact(net, "a")
    assert net.disks["a"].first > 2
    net.sent.clear()
    net.down.discard("c")
    net.tick_all(3 * math.ceil(size / CHUNK_BYTES_MAX))
    chunks = [m for m in net.sent if m.kind == MsgKind.SNAPSHOT and m.to == "c"]
    assert all(len(m.data) <= CHUNK_BYTES_MAX for m in chunks)
    offsets = sorted({m.offset for m in chunks})
    assert offsets == list(range(0, size, CHUNK_BYTES_MAX))
    assert [m.done for m in chunks if m.offset == offsets[-1]][0]
    c = net.cores["c"]
    assert net.disks["c"].snap.index == net.disks["a"].snap.index
    assert net.disks["c"].snap_data == net.disks["a"].snap_data
    assert c.committed == net.cores["a"].committed
    assert c.applied == net.cores["a"].applied
    # after the snapshot, replication continues with ordinary appends
    net.propose("a", b"after")
    net.tick_all(3)
    assert net.applied["c"][-1].data == b"after"
    assert net.cores["a"].progress("c")[0] == ProgressState.REPLICATE


def test_lost_chunks_are_sent_again() -> None:
    net = Net(["a", "b", "c"], snapshot_chunk_bytes_max=CHUNK_BYTES_MAX)
    net.elect("a")
    net.tick_all(2)
    net.down.add("c")
    for k in range(10):
        net.propose("a", b"value-%02d" % k)
    net.tick_all(2)
    size = _compact(net, "a")
    net.down.discard("c")
    dropped: set[int] = set()

    def lose_each_chunk_once(m: object) -> bool:
        offset = getattr(m, "offset", 0)
        if getattr(m, "kind", None) == MsgKind.SNAPSHOT and offset not in dropped:
            dropped.add(offset)
            return False
        return True

    for _ in range(8 * math.ceil(size / CHUNK_BYTES_MAX)):
        for node in net.ids:
            net.cores[node].tick()
        net.deliver(lose_each_chunk_once)
    assert dropped == set(range(0, size, CHUNK_BYTES_MAX))
    assert net.disks["c"].snap.index == net.disks["a"].snap.index
    assert net.cores["c"].committed == net.cores["a"].committed


def test_follower_with_the_snapshot_entry_keeps_its_log() -> None:
    net = Net(["a", "b", "c"], snapshot_chunk_bytes_max=CHUNK_BYTES_MAX)
    net.elect("a")
    for k in range(5):
        net.propose("a", b"%d" % k)
    net.tick_all(3)
    _compact(net, "a")
    before = net.cores["b"].entries(1, net.cores["b"].last_index + 1)
    net.tick_all(3)
    assert net.cores["b"].entries(1, net.cores["b"].last_index + 1) == before
    assert not [m for m in net.sent if m.kind == MsgKind.SNAPSHOT]
