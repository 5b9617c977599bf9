"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

from storage.raft.core import Busy, MsgKind, Proposed, Role
from tests.raft import Net


def test_transfer_to_an_up_to_date_follower() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.tick_all(2)
    term = net.cores["a"].term
    assert net.cores["a"].transfer_leadership("b")
    net.deliver()
    assert net.leaders() == ["b"]
    assert net.cores["b"].term == term + 1
    assert any(m.kind == MsgKind.TIMEOUT_NOW for m in net.sent)


def test_transfer_catches_a_lagging_target_up_first_and_refuses_proposals_meanwhile() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.tick_all(2)
    net.down.add("b")
    for k in range(5):
        net.propose("a", b"%d" % k)
    net.tick_all(2)
    assert net.cores["b"].last_index < net.cores["a"].last_index
    assert net.cores["a"].transfer_leadership("b")
    assert isinstance(net.cores["a"].propose([b"late"]), Busy)
    net.down.discard("b")
    net.tick_all(3)
    assert net.leaders() == ["b"]
    assert net.values("b") == [b"%d" % k for k in range(5)]
    timeout_now = [m for m in net.sent if m.kind == MsgKind.TIMEOUT_NOW]
    assert len(timeout_now) >= 1


def test_transfer_gives_up_after_an_election_timeout() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.tick_all(2)
    net.down.add("c")
    assert net.cores["a"].transfer_leadership("c")
    assert net.cores["a"].lead_transferee == "c"
    net.tick_all(9)
    assert isinstance(net.cores["a"].propose([b"x"]), Busy)
    net.tick_all(2)
    assert net.cores["a"].lead_transferee is None
    assert net.cores["a"].role == Role.LEADER
    assert isinstance(net.cores["a"].propose([b"x"]), Proposed)


def test_only_a_leader_transfers() -> None:
    net = Net(["a", "b", "c"])
    net.elect("a")
    assert not net.cores["b"].transfer_leadership("c")
    assert not net.cores["a"].transfer_leadership("a")
