"""Log replication (§5.3): log matching, repair of divergent followers (Figure 7) with fast
backtracking, and the commitment rule of Figure 8 (§5.4.2)."""

from __future__ import annotations

import dataclasses

import pytest

from storage.raft.core import Message, MsgKind, Role
from tests.raft import Net, disk_with

LEADER_LOG = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7 = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE_7))
def test_figure_7_follower_is_repaired_to_the_leaders_log(case: str) -> None:
    disks = {
        "ldr": disk_with(LEADER_LOG, term=7),
        "f": disk_with(FIGURE_7[case], term=7),
        "x": disk_with(LEADER_LOG, term=7),
    }
    net = Net(["ldr", "f", "x"], disks)
    net.elect("ldr")
    assert net.cores["ldr"].term == 8
    net.tick_all(3)
    want = [*LEADER_LOG, 8]
    assert net.log_terms("f") == want
    leader_entries = net.cores["ldr"].entries(1, 12)
    assert net.cores["f"].entries(1, 12) == leader_entries
    rejects = [m for m in net.sent if m.kind == MsgKind.APPEND_RESP and m.frm == "f" and m.reject]
    # fast backtracking: one rejection per conflicting term at most, not one per entry
    assert len(rejects) <= 2, rejects
    assert net.cores["f"].committed == 11


def test_figure_8_no_commit_of_an_earlier_term_by_counting_replicas() -> None:
    # Figure 8 (c): S1 leads term 4 and has put index 2 (term 2) on S1, S2, S3, a majority.
    disks = {
        "s1": disk_with([1, 2], term=3),
        "s2": disk_with([1, 2], term=3),
        "s3": disk_with([1], term=3),
        "s4": disk_with([1], term=3),
        "s5": disk_with([1, 3], term=3),
    }
    net = Net(["s1", "s2", "s3", "s4", "s5"], disks, entries_per_message_max=1)
    net.down.add("s5")
    net.cores["s1"].campaign()

    def no_term_4_entries(m: Message) -> Message | bool:
        # S1's appends reach the others without their term-4 entries
        kept = tuple(e for e in m.entries if e[0] != 4)
        return True if kept == m.entries else dataclasses.replace(m, entries=kept)

    net.deliver(no_term_4_entries)
    s1 = net.cores["s1"]
    assert s1.role == Role.LEADER and s1.term == 4
    net.tick_all(5, deliver=False)
    net.deliver(no_term_4_entries)
    assert net.log_terms("s3")[:2] == [1, 2]
    assert sum(1 for n in ("s1", "s2", "s3", "s4") if net.log_terms(n)[:2] == [1, 2]) >= 3
    # replicated on a majority, yet not committed: S5 could still overwrite it (Figure 8 d)
    assert s1.committed < 2
    # once an entry of term 4 is on a majority, both commit (indirectly for index 2)
    net.tick_all(3)
    assert s1.committed == 3
    assert [e.term for e in net.applied["s1"]] == [1, 2, 4]


def test_follower_truncates_an_uncommitted_conflicting_suffix_and_persists_the_cut() -> None:
    disks = {
        "a": disk_with([1, 1, 2], term=2),
        "b": disk_with([1, 1, 3, 3], term=3),
        "c": disk_with([1, 1, 2], term=3),
    }
    net = Net(["a", "b", "c"], disks)
    net.elect("c")
    net.tick_all(2)
    assert net.log_terms("b") == [1, 1, 2, 4]
    assert net.disks["b"].log == net.disks["c"].log


def test_pipelining_respects_entry_and_byte_limits_per_message() -> None:
    net = Net(["a", "b", "c"], entries_per_message_max=3, bytes_per_message_max=10)
    net.elect("a")
    net.tick_all(2)
    net.sent.clear()
    for k in range(20):
        net.propose("a", b"%04d" % k)
    net.tick_all(3)
    appends = [m for m in net.sent if m.kind == MsgKind.APPEND and m.entries]
    assert appends
    for m in appends:
        assert len(m.entries) <= 3
        assert len(m.entries) == 1 or sum(len(d) for _, d in m.entries) <= 10
    assert all(net.values(x) == [b"%04d" % k for k in range(20)] for x in net.ids)
