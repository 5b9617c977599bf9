"""A node whose log failed a CRC check never leads or votes until it has caught up."""

from __future__ import annotations

from storage.raft.core import Message, MsgKind, Role
from tests.raft import Net, disk_with


def test_damaged_node_never_campaigns_even_alone() -> None:
    net = Net(["a", "b", "c"], damaged=["a"])
    net.down.update({"b", "c"})
    net.tick("a", 500)
    assert net.cores["a"].role == Role.FOLLOWER
    assert not [m for m in net.sent if m.kind in (MsgKind.PRE_VOTE, MsgKind.VOTE)]
    net.cores["a"].step(Message(MsgKind.TIMEOUT_NOW, "a", "b", net.cores["a"].term))
    assert net.cores["a"].role == Role.FOLLOWER


def test_damaged_node_refuses_votes_and_pre_votes() -> None:
    net = Net(["a", "b", "c"], damaged=["a"])
    a = net.cores["a"]
    for kind in (MsgKind.PRE_VOTE, MsgKind.VOTE):
        a.step(Message(kind, "a", "b", 5, index=10, log_term=4))
    rd = a.ready()
    assert rd is not None
    assert [m.reject for m in rd.messages] == [True, True]
    assert a.vote is None


def test_damaged_node_catches_up_from_the_leader_and_then_votes_again() -> None:
    # "a" had [1, 1, 1, 1] and acknowledged it; a CRC failure cut it back to [1].
    disks = {
        "a": disk_with([1], term=1),
        "b": disk_with([1, 1, 1, 1], term=1),
        "c": disk_with([1, 1, 1, 1], term=1),
    }
    net = Net(["a", "b", "c"], disks, damaged=["a"])
    for _ in range(60):
        net.tick_all()
        if net.leaders():
            break
    (leader,) = net.leaders()
    assert leader != "a"
    net.tick_all(3)
    assert net.log_terms("a") == net.log_terms(leader)
    assert net.cores["a"].term > 1
    assert not net.cores["a"].log_damaged  # it holds a committed entry of a newer term


def test_a_same_term_leader_does_not_clear_the_damage() -> None:
    disks = {
        "a": disk_with([1, 1], term=2),
        "b": disk_with([1, 1, 2], term=2),
        "c": disk_with([1, 1, 2], term=2),
    }
    net = Net(["a", "b", "c"], disks, damaged=["a"])
    b = net.cores["b"]
    # b leads term 2 (as before a's restart) and sends a's missing entry
    b.campaign()
    net.deliver()
    assert b.role == Role.LEADER and b.term == 3
    net.tick_all(3)
    assert not net.cores["a"].log_damaged
    disks2 = {
        "a": disk_with([1, 1], term=3),
        "b": disk_with([1, 1, 2], term=3),
        "c": disk_with([1, 1, 2], term=3),
    }
    net2 = Net(["a", "b", "c"], disks2, damaged=["a"])
    # a heartbeat of term 3 whose commit covers only term-2 entries leaves it damaged
    net2.cores["a"].step(Message(MsgKind.HEARTBEAT, "a", "b", 3, commit=2))
    assert net2.cores["a"].log_damaged
