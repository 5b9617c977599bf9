"""Bounded replication: the inflight window, batching, the unstable buffer."""

from __future__ import annotations

from storage.raft.core import Busy, MsgKind, ProgressState, Proposed
from tests.raft import Net


def test_inflight_window_bounds_unacknowledged_appends() -> None:
    net = Net(["a", "b", "c"], inflight_messages_max=3, entries_per_message_max=1)
    net.elect("a")
    net.tick_all(2)
    assert net.cores["a"].progress("b")[0] == ProgressState.REPLICATE
    net.queue.clear()
    for k in range(20):
        net.propose("a", b"%d" % k)
    net.flush()
    to_b = [m for m in net.queue if m.kind == MsgKind.APPEND and m.to == "b" and m.entries]
    assert len(to_b) == 3
    assert net.cores["a"].progress("b")[3] == 3
    # acknowledgements open the window again, and everything arrives
    net.tick_all(20)
    assert net.values("b") == [b"%d" % k for k in range(20)]


def test_window_of_one_is_stop_and_wait() -> None:
    net = Net(["a", "b"], inflight_messages_max=1, entries_per_message_max=2)
    net.elect("a")
    net.tick_all(2)
    net.queue.clear()
    for k in range(6):
        net.propose("a", b"%d" % k)
    net.flush()
    assert len([m for m in net.queue if m.kind == MsgKind.APPEND and m.entries]) == 1
    net.tick_all(10)
    assert net.values("b") == [b"%d" % k for k in range(6)]


def test_unstable_buffer_is_bounded() -> None:
    net = Net(["a"], unstable_entries_max=4)
    net.elect("a")
    net.flush()
    assert isinstance(net.cores["a"].propose([b"1", b"2", b"3"]), Proposed)
    assert net.cores["a"].propose([b"4", b"5"]) == Busy("unstable buffer full")
    net.flush()  # persisted: room again
    assert isinstance(net.cores["a"].propose([b"4", b"5"]), Proposed)


def test_unreachable_peer_falls_back_to_probing() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.tick_all(2)
    net.cores["a"].report_unreachable("b")
    assert net.cores["a"].progress("b")[0] == ProgressState.PROBE
