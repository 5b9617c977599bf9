"""Users, permissions and vhosts as commands of the state machine: logged, deterministic, kept
in snapshots (version 3, and version 2 snapshots still read), checked by the invariants."""

from __future__ import annotations

import msgpack

from broker.core import access as A
from broker.core import commands as C
from broker.core.machine import Machine
from broker.core.model import NOT_FOUND, PRECONDITION_FAILED, CoreError
from tests.unit.core_helpers import Harness

HASH = A.hash_password("pw", b"\x01\x02\x03\x04")


def _users(h: Harness) -> None:
    h.ok(C.cmd_put_user("alice", HASH, ["administrator"]))
    h.ok(C.cmd_add_vhost("dev"))
    h.ok(C.cmd_set_permissions("alice", "dev", "^a", "^b", "^c"))
    h.ok(C.cmd_set_topic_permissions("alice", "dev", "amq.topic", "^w", "^r"))


def test_user_commands_are_always_logged() -> None:
    m = Machine()
    for cmd in (
        C.cmd_put_user("a", HASH, []),
        C.cmd_delete_user("a"),
        C.cmd_set_permissions("a", "/", ".*", ".*", ".*"),
        C.cmd_clear_permissions("a", "/"),
        C.cmd_set_topic_permissions("a", "/", "x", "", ""),
        C.cmd_clear_topic_permissions("a", "/"),
        C.cmd_add_vhost("v"),
        C.cmd_delete_vhost("v"),
        C.cmd_seed_user("guest", HASH, ["administrator"]),
    ):
        assert m.needs_log(cmd), cmd
        assert len(cmd) == C.ARITY[cmd[0]] + 1
        assert cmd[0] in C.AUTH_OPS


def test_opcodes_were_appended() -> None:
    assert (C.SET_EXCHANGE_ARGUMENTS, C.PUT_USER, C.SEED_USER) == (18, 19, 27)


def test_put_set_clear_delete() -> None:
    h = Harness()
    _users(h)
    auth = h.m.auth
    assert auth.allowed("alice", "dev", "queue", "aq", A.CONFIGURE)
    assert not auth.allowed("alice", "/", "queue", "aq", A.CONFIGURE)
    h.ok(C.cmd_clear_permissions("alice", "dev"))
    assert not auth.vhost_access("alice", "dev")
    assert auth.list_topic_permissions() != []
    h.ok(C.cmd_delete_user("alice"))
    assert auth.list_topic_permissions() == [] and auth.users == {}
    h.err(C.cmd_delete_user("alice"), NOT_FOUND)
    h.err(C.cmd_set_permissions("bob", "/", "", "", ""), NOT_FOUND)
    h.err(C.cmd_set_permissions("bob", "/", "", "", ""), NOT_FOUND)
    h.ok(C.cmd_put_user("bob", None, []))
    h.err(C.cmd_set_permissions("bob", "nope", "", "", ""), NOT_FOUND)
    h.err(C.cmd_set_permissions("bob", "/", "(", "", ""), PRECONDITION_FAILED)
    h.err(C.cmd_put_user("bob", "plaintext", []), PRECONDITION_FAILED)


def test_garbage_fields_are_refused_not_raised() -> None:
    h = Harness()
    before = h.state()
    for cmd in (
        [C.PUT_USER, 1, None, []],
        [C.PUT_USER, "x", None, "tags"],
        [C.SET_PERMISSIONS, None, "/", 1, 2, 3],
        [C.SET_TOPIC_PERMISSIONS, "x", "/", 5, "", ""],
        [C.CLEAR_TOPIC_PERMISSIONS, "x", [], None],
        [C.ADD_VHOST, ""],
        [C.ADD_VHOST, 7],
        [C.DELETE_VHOST, None],
        [C.SEED_USER, "", HASH, [], "/"],
    ):
        assert isinstance(h.apply(cmd), CoreError), cmd
    assert h.state() == before


def test_seed_creates_the_default_user_once() -> None:
    h = Harness()
    assert h.ok(C.cmd_seed_user("guest", HASH, ["administrator"])) is True
    assert h.m.auth.list_permissions() == [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ]
    h.ok(C.cmd_delete_user("guest"))
    assert h.ok(C.cmd_seed_user("guest", HASH, ["administrator"])) is False
    assert "guest" not in h.m.auth.users


def test_delete_vhost_removes_its_queues_exchanges_bindings_and_permissions() -> None:
    h = Harness()
    _users(h)
    h.ok(C.cmd_declare_queue("dev", "q"))
    h.ok(C.cmd_declare_exchange("dev", "x", "fanout"))
    h.ok(C.cmd_bind("dev", "x", "q"))
    h.ok(C.cmd_publish("dev", "x", [C.msg("", b"m", {"delivery_mode": 2})]))
    h.ok(C.cmd_consume(1 << 16 | 1, "dev", "q", "c1"))
    assert h.effects and h.effects[0][0] == "deliver"
    h.ok(C.cmd_declare_queue("/", "q"))  # the same name in another vhost stays
    h.ok(C.cmd_delete_vhost("dev"))
    assert ("cancelled", 1 << 16 | 1, "c1") in h.effects
    assert "dev" not in h.m.vhosts and h.m.queue_exists("/", "q")
    assert h.m.auth.list_permissions(vhost="dev") == []
    assert h.m.auth.list_topic_permissions(vhost="dev") == []
    h.err(C.cmd_delete_vhost("dev"), NOT_FOUND)
    h.err(C.cmd_declare_queue("dev", "q"), 530)
    # created again: empty, with the default exchanges
    assert h.ok(C.cmd_add_vhost("dev")) is True
    assert h.ok(C.cmd_add_vhost("dev")) is False
    assert h.m.list_queues("dev") == []
    assert h.m.exchange_exists("dev", "amq.topic")


def test_snapshot_round_trip_keeps_users_and_deleted_default_vhost() -> None:
    h = Harness()
    _users(h)
    h.ok(C.cmd_seed_user("guest", HASH, ["administrator"]))
    h.ok(C.cmd_delete_vhost("/"))
    data = h.m.snapshot()
    assert msgpack.unpackb(data, raw=False, strict_map_key=False)[0] == 3
    m2 = Machine.restore(data)
    assert m2.snapshot() == data
    assert sorted(m2.vhosts) == ["dev"]
    assert m2.auth.seeded
    assert m2.auth.authenticate("alice", "pw") is not None
    assert m2.auth.allowed("alice", "dev", "exchange", "bx", A.WRITE)
    assert not m2.auth.topic_allowed("alice", "dev", "amq.topic", "x", A.WRITE)


def test_version_2_snapshot_still_restores_without_users() -> None:
    h = Harness()
    h.ok(C.cmd_declare_queue("/", "q"))
    obj = msgpack.unpackb(h.m.snapshot(), raw=False, strict_map_key=False)
    v2 = msgpack.packb([2, *obj[1:5]], use_bin_type=True)
    m = Machine.restore(v2)
    assert m.queue_exists("/", "q")
    assert m.auth.users == {} and not m.auth.seeded  # the node seeds the default user


def test_replay_is_deterministic() -> None:
    a, b = Harness(), Harness()
    for h in (a, b):
        _users(h)
        h.ok(C.cmd_seed_user("guest", HASH, ["administrator"]))
        h.ok(C.cmd_delete_user("alice"))
    assert a.m.snapshot() == b.m.snapshot()
