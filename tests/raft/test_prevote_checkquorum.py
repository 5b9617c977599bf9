"""Pre-vote, check-quorum and the follower lease (thesis §9.6)."""

from __future__ import annotations

from typing import Any

from storage.raft.core import Message, MsgKind, NotLeader, Role
from tests.raft import Net


def _settled(**kw: Any) -> Net:
    net = Net(["a", "b", "c"], **kw)
    net.elect("a")
    net.tick_all(2)
    return net


def test_partitioned_node_does_not_bump_its_term_and_rejoins_without_disruption() -> None:
    net = _settled()
    term = net.cores["a"].term
    net.isolate("c")
    net.tick_all(100)
    assert net.cores["c"].term == term  # pre-vote: it never won a pre-vote, so no new term
    assert net.cores["c"].role == Role.PRE_CANDIDATE
    net.heal()
    net.tick_all(5)
    assert net.leaders() == ["a"]
    assert all(c.term == term for c in net.cores.values())
    assert net.cores["c"].leader == "a"


def test_without_pre_vote_the_rejoining_node_disrupts_the_leader() -> None:
    # the contrast that shows the test above can fail
    net = _settled(pre_vote=False, check_quorum=False)
    term = net.cores["a"].term
    net.isolate("c")
    net.tick_all(100)
    assert net.cores["c"].term > term + 3
    net.heal()
    net.tick_all(40)
    assert net.cores["a"].term > term


def test_leader_without_a_quorum_steps_down_after_an_election_timeout() -> None:
    net = _settled()
    net.isolate("a")
    net.tick("a", 9)
    assert net.cores["a"].role == Role.LEADER
    net.tick("a", 11)
    assert net.cores["a"].soft_state().role == Role.FOLLOWER
    assert net.cores["a"].leader is None
    assert net.cores["a"].propose([b"x"]) == NotLeader(None)


def test_leader_with_a_quorum_stays() -> None:
    net = _settled()
    net.down.add("c")
    net.tick_all(50)
    assert net.leaders() == ["a"]


def test_follower_in_lease_ignores_vote_requests() -> None:
    net = _settled()
    b = net.cores["b"]
    term = b.term
    for kind in (MsgKind.VOTE, MsgKind.PRE_VOTE):
        b.step(Message(kind, "b", "c", term + 1, index=100, log_term=term))
    assert b.term == term and b.vote == "a"
    rd = b.ready()
    assert rd is None or not rd.messages


def test_pre_vote_grant_changes_no_state() -> None:
    net = _settled()
    net.down.add("a")
    net.tick("b", 25)  # lease over, b hears nothing
    c = net.cores["c"]
    term, vote = c.term, c.vote
    c.tick()  # c's lease expires too (no leader traffic)
    for _ in range(25):
        c.tick()
        if c.role != Role.FOLLOWER:
            break
    net.flush()
    prevotes = [m for m in net.queue if m.kind == MsgKind.PRE_VOTE]
    assert prevotes and prevotes[0].term == term + 1
    assert (c.term, c.vote) == (term, vote)
