"""Leader election (§5.2), the vote rules (§5.2, §5.4.1) and randomized timeouts."""

from __future__ import annotations

import pytest

from storage.raft.core import HardState, Message, MsgKind, RaftCore, Role
from tests.raft import Net, config, disk_with


@pytest.mark.parametrize("n", [1, 3, 5])
def test_cold_start_elects_exactly_one_leader(n: int) -> None:
    net = Net([f"n{i}" for i in range(n)])
    for _ in range(40):
        net.tick_all()
        if net.leaders():
            break
    assert len(net.leaders()) == 1
    leader = net.leaders()[0]
    term = net.cores[leader].term
    assert all(c.term == term and c.leader == leader for c in net.cores.values())
    # the new leader's empty entry (§8) commits and is applied everywhere
    net.tick_all(3)
    for node in net.ids:
        assert [(e.index, e.term, e.data) for e in net.applied[node]] == [(1, term, b"")]


def test_single_node_commits_proposals_after_persisting() -> None:
    net = Net(["a"])
    net.tick_all(20)
    assert net.leaders() == ["a"]
    res = net.propose("a", b"x", b"y")
    rd = net.cores["a"].ready()
    assert rd is not None
    # the entries are handed out to persist, but not yet to apply (persist first)
    assert [e.data for e in rd.entries] == [b"x", b"y"]
    assert not any(e.index >= res.first_index for e in rd.committed)
    net.disks["a"].begin(rd)
    net.disks["a"].sync()
    net.cores["a"].advance(rd)
    rd2 = net.cores["a"].ready()
    assert rd2 is not None
    assert [e.data for e in rd2.committed] == [b"x", b"y"]


def test_election_timeouts_are_randomized_within_bounds() -> None:
    seen = set()
    for seed in range(40):
        core = RaftCore(config("a", ["a", "b", "c"], seed=seed), disk_with([]))
        ticks = 0
        while core.role == Role.FOLLOWER:
            core.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) < 20
    assert len(seen) > 3


def test_leader_failure_then_reelection_in_a_higher_term() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.propose("a", b"v1")
    net.deliver()
    net.down.add("a")
    for _ in range(60):
        net.tick_all()
        if [x for x in net.leaders() if x != "a"]:
            break
    new = [x for x in net.leaders() if x != "a"]
    assert len(new) == 1
    assert net.cores[new[0]].term > net.cores["a"].term
    # the old leader comes back, learns the new term and follows
    net.down.discard("a")
    net.tick_all(3)
    assert net.cores["a"].role == Role.FOLLOWER and net.cores["a"].leader == new[0]
    net.propose(new[0], b"v2")
    net.tick_all(3)
    assert all(net.values(x) == [b"v1", b"v2"] for x in net.ids)


def _vote(frm: str, to: str, term: int, index: int, log_term: int) -> Message:
    return Message(MsgKind.VOTE, to, frm, term, index=index, log_term=log_term)


def test_one_vote_per_term_and_the_vote_is_persisted_with_the_answer() -> None:
    core = RaftCore(config("a", ["a", "b", "c"]), disk_with([1, 1], term=1))
    core.step(_vote("b", "a", 2, 2, 1))
    rd = core.ready()
    assert rd is not None
    assert rd.hard_state == HardState(2, "b", 0)
    (resp,) = rd.messages
    assert resp.kind == MsgKind.VOTE_RESP and not resp.reject and resp.term == 2
    core.advance(rd)
    core.step(_vote("c", "a", 2, 5, 1))  # same term, another candidate: refused
    core.step(_vote("b", "a", 2, 2, 1))  # the same candidate again (a retry): granted again
    rd = core.ready()
    assert rd is not None
    assert [(m.to, m.reject) for m in rd.messages] == [("c", True), ("b", False)]
    assert rd.hard_state is None


@pytest.mark.parametrize(
    ("index", "log_term", "granted"),
    [
        (3, 2, True),  # same last term, same length
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter (§5.4.1)
        (1, 3, True),  # higher last term wins even when shorter
        (9, 1, False),  # lower last term loses even when longer
    ],
)
def test_vote_requires_an_up_to_date_log(index: int, log_term: int, granted: bool) -> None:
    core = RaftCore(config("a", ["a", "b", "c"]), disk_with([1, 2, 2], term=2))
    core.step(_vote("b", "a", 3, index, log_term))
    rd = core.ready()
    assert rd is not None
    (resp,) = [m for m in rd.messages if m.kind == MsgKind.VOTE_RESP]
    assert resp.reject is not granted
    assert (rd.hard_state is not None and rd.hard_state.vote == "b") is granted


def test_restart_keeps_term_and_vote() -> None:
    disk = disk_with([1], term=1)
    core = RaftCore(config("a", ["a", "b", "c"]), disk)
    core.step(_vote("b", "a", 4, 1, 1))
    rd = core.ready()
    assert rd is not None
    disk.begin(rd)
    disk.sync()
    again = RaftCore(config("a", ["a", "b", "c"]), disk)
    assert (again.term, again.vote) == (4, "b")
    again.step(_vote("c", "a", 4, 9, 1))
    rd = again.ready()
    assert rd is not None and rd.messages[0].reject


def test_a_candidate_that_loses_the_majority_steps_down() -> None:
    net = Net(["a", "b", "c"], pre_vote=False)
    net.cores["a"].campaign()
    net.flush()
    for m in net.take(MsgKind.VOTE):
        net.cores[m.to].step(m)
    net.flush()
    # both refuse because they voted for someone else in this term already
    for m in net.take(MsgKind.VOTE_RESP):
        net.cores[m.to].step(Message(m.kind, m.to, m.frm, m.term, reject=True))
    assert net.cores["a"].role == Role.FOLLOWER
