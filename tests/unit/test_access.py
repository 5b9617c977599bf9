"""broker/core/access.py: RabbitMQ's password hash, permission patterns and topic permission
variables, as pure functions and as ``AuthState`` checks."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core import access as A


def test_hash_matches_rabbitmq_documented_example() -> None:
    # RabbitMQ's "Credentials and Passwords" guide: salt 908D C60A, password "test12"
    assert A.hash_password("test12", bytes.fromhex("908DC60A")) == (
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    )
    assert A.check_password("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", "test12")
    assert not A.check_password("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", "test13")


@given(st.text(max_size=40), st.binary(min_size=4, max_size=4))
def test_hash_layout_is_salt_then_sha256_of_salt_and_utf8(password: str, salt: bytes) -> None:
    encoded = A.hash_password(password, salt)
    raw = base64.b64decode(encoded)
    assert raw[:4] == salt
    assert raw[4:] == hashlib.sha256(salt + password.encode("utf-8")).digest()
    assert A.valid_hash(encoded)
    assert A.check_password(encoded, password)
    assert not A.check_password(encoded, password + "x")


def test_hash_rejects_other_salt_sizes_and_malformed_hashes() -> None:
    with pytest.raises(ValueError):
        A.hash_password("p", b"123")
    for bad in (None, "", "not base64!", base64.b64encode(b"short").decode(), 42):
        assert not A.valid_hash(bad)
        assert not A.check_password(bad, "p")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        (".*", "anything", True),
        (".*", "", True),
        ("", "", True),  # "" means ^$
        ("", "q", False),
        ("^amq\\.gen", "amq.gen-1", True),
        ("gen", "amq.gen-1", True),  # a search, not anchored (re:run)
        ("^gen", "amq.gen-1", False),
        ("^(a|b)$", "b", True),
        ("^(a|b)$", "ab", False),
    ],
)
def test_pattern_is_an_unanchored_search(pattern: str, subject: str, expected: bool) -> None:
    assert A.matches(pattern, subject) is expected


def test_pattern_errors() -> None:
    assert A.pattern_error("(") is not None
    assert A.pattern_error(3) is not None
    assert A.pattern_error("x" * (A.PATTERN_CHARS_MAX + 1)) is not None
    assert A.pattern_error("^ok$") is None


def test_expand_inserts_values_literally() -> None:
    assert A.expand("^{username}\\.", {"username": "a.b"}) == "^a\\.b\\."
    assert A.matches(A.expand("^{username}\\.", {"username": "a.b"}), "a.b.x")
    assert not A.matches(A.expand("^{username}\\.", {"username": "a.b"}), "aXb.x")


def test_refused_texts_are_rabbitmqs() -> None:
    assert A.refused_text("queue", "q", "/", "u") == (
        "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'u'"
    )
    assert A.refused_text("exchange", "", "v", "u") == (
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'v' refused for user 'u'"
    )
    assert A.topic_refused_text("amq.topic", "a.b", "/", "u") == (
        "ACCESS_REFUSED - access to topic 'a.b' in exchange 'amq.topic' in vhost '/' refused for"
        " user 'u'"
    )


def _state() -> A.AuthState:
    s = A.AuthState()
    assert s.put_user("u", A.hash_password("pw", b"salt"), ["management"]) is None
    return s


VHOSTS = {"/": None, "v": None}


def test_permissions_by_kind() -> None:
    s = _state()
    assert not s.vhost_access("u", "/")
    assert not s.allowed("u", "/", "queue", "q", A.READ)
    assert s.set_permissions("u", "/", ["^c", "^w|^amq\\.default$", "^r"], VHOSTS) is None
    assert s.vhost_access("u", "/") and not s.vhost_access("u", "v")
    assert s.allowed("u", "/", "queue", "cq", A.CONFIGURE)
    assert not s.allowed("u", "/", "queue", "cq", A.WRITE)
    assert s.allowed("u", "/", "exchange", "", A.WRITE)  # the default exchange is amq.default
    assert s.allowed("u", "/", "queue", "rq", A.READ)
    assert not s.allowed("u", "/", "queue", "rq", A.CONFIGURE)
    # a change invalidates the cached answers
    version = s.version
    assert s.set_permissions("u", "/", ["", "", ""], VHOSTS) is None
    assert s.version > version
    assert not s.allowed("u", "/", "queue", "cq", A.CONFIGURE)
    assert s.vhost_access("u", "/")


def test_topic_permissions_default_allow_and_variables() -> None:
    s = _state()
    assert s.topic_allowed("u", "/", "amq.topic", "any.key", A.WRITE)
    assert (
        s.set_topic_permissions("u", "/", "amq.topic", ["^{username}\\.", "^{client_id}$"], VHOSTS)
        is None
    )
    assert s.topic_allowed("u", "/", "amq.topic", "u.x", A.WRITE)
    assert not s.topic_allowed("u", "/", "amq.topic", "v.x", A.WRITE)
    assert s.topic_allowed("u", "/", "amq.topic", "c1", A.READ, {"client_id": "c1"})
    assert not s.topic_allowed("u", "/", "amq.topic", "c2", A.READ, {"client_id": "c1"})
    # a variable the front end does not have stays literal and matches nothing
    assert not s.topic_allowed("u", "/", "amq.topic", "c1", A.READ)
    assert s.topic_allowed("u", "/", "other", "anything", A.WRITE)  # per exchange
    assert s.clear_topic_permissions("u", "/", None, VHOSTS) is None
    assert s.topic_allowed("u", "/", "amq.topic", "v.x", A.WRITE)


def test_refused_changes_change_nothing() -> None:
    s = _state()
    before = s.dump()
    assert s.set_permissions("nobody", "/", [".*"] * 3, VHOSTS) is not None
    assert s.set_permissions("u", "nope", [".*"] * 3, VHOSTS) is not None
    assert s.set_permissions("u", "/", ["(", ".*", ".*"], VHOSTS) is not None
    assert s.put_user("", None, []) is not None
    assert s.put_user("x", "not-a-hash", []) is not None
    assert s.put_user("x", None, [1]) is not None
    assert s.delete_user("nobody") is not None
    assert s.dump() == before


def test_authenticate() -> None:
    s = _state()
    user = s.authenticate("u", "pw")
    assert user is not None and user.tags == ("management",)
    assert s.authenticate("u", "wrong") is None
    assert s.authenticate("nobody", "pw") is None
    assert s.put_user("u", None, []) is None  # no hash: no password login
    assert s.authenticate("u", "pw") is None
    assert s.authenticate("u", "") is None


def test_dump_load_round_trip() -> None:
    s = _state()
    s.set_permissions("u", "v", ["a", "b", "c"], VHOSTS)
    s.set_topic_permissions("u", "v", "x", ["w", "r"], VHOSTS)
    s.seeded = True
    loaded = A.AuthState.load(s.dump())
    assert loaded.dump() == s.dump()
    loaded.check(VHOSTS)
