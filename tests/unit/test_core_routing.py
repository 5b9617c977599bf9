"""Routing: direct, fanout, topic, headers, default, exchange-to-exchange, alternate."""

from __future__ import annotations

import pytest

from broker.core import commands as C
from broker.core.routing import headers_match
from broker.core.topic_trie import TopicTrie
from tests.unit.core_helpers import Harness, V

# pattern, routing key, matches
TOPIC_CASES = [
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.b", "a.b.b", True),
    ("*.b", "a.b", True),
    ("*.b", "b", False),
    ("*.b", ".b", True),
    ("*.b", "a.b.c", False),
    ("a.*.c", "a..c", True),
    ("a.*.c", "a.c", False),
    ("a..c", "a..c", True),
    ("a..c", "a.b.c", False),
    ("", "", True),
    ("", "a", False),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("*.#", "", False),
    ("*.#", "a", True),
    ("#.*", "a.b.c", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "b", True),
    ("#.b.#", "a.c", False),
    ("a.b", "a.b", True),
    ("a.b", "a.b.", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), TOPIC_CASES)
def test_topic_trie(pattern: str, key: str, expected: bool) -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "v")
    trie.add("zzz.unrelated", "w")
    assert ("v" in trie.match(key)) is expected
    assert trie.remove(pattern, "v")
    assert "v" not in trie.match(key)
    assert len(trie) == 1


@pytest.mark.parametrize(("pattern", "key", "expected"), TOPIC_CASES)
def test_topic_exchange(pattern: str, key: str, expected: bool) -> None:
    h = Harness()
    h.exchange("t", "topic")
    h.queue("q")
    h.bind("t", "q", pattern)
    assert h.routed_to("t", key) == (["q"] if expected else [])


def test_topic_trie_many_patterns_and_pruning() -> None:
    trie: TopicTrie[int] = TopicTrie()
    pats = ["a.b", "a.*", "a.#", "#", "*.b", "x.y.z"]
    for i, p in enumerate(pats):
        trie.add(p, i)
    assert sorted(trie.match("a.b")) == [0, 1, 2, 3, 4]
    for i, p in enumerate(pats):
        assert trie.remove(p, i)
    assert not trie.remove("a.b", 0)
    assert trie.match("a.b") == ()
    assert not trie._root.children


def test_direct_fanout_default() -> None:
    h = Harness()
    h.queue("q1")
    h.queue("q2")
    h.bind("amq.direct", "q1", "k")
    h.bind("amq.direct", "q2", "k")
    h.bind("amq.direct", "q2", "other")
    assert h.routed_to("amq.direct", "k") == ["q1", "q2"]
    assert h.routed_to("amq.direct", "other") == ["q2"]
    assert h.routed_to("amq.direct", "none") == []
    h.bind("amq.fanout", "q1", "ignored")
    assert h.routed_to("amq.fanout", "anything") == ["q1"]
    # default exchange: every queue by its name
    assert h.routed_to("", "q2") == ["q2"]
    assert h.routed_to("", "missing") == []
    assert h.publish("", "missing") == [[0], []]
    assert h.publish("amq.direct", "k") == [[2], []]


def test_one_copy_per_queue_and_shared_body() -> None:
    h = Harness()
    h.queue("q")
    h.exchange("t", "topic")
    h.bind("t", "q", "a.*")
    h.bind("t", "q", "#")
    assert h.publish("t", "a.b") == [[1], []]
    assert h.ready("q") == 1
    h.queue("q2")
    h.bind("t", "q2", "#")
    body = b"shared-body"
    h.publish("t", "a.b", body)
    h.consume(1, "q", "c1", no_ack=True)
    h.consume(2, "q2", "c2", no_ack=True)
    got = h.m.vhosts[V].queues["q"]
    assert got.ready_count == 0
    h.publish("t", "a.b", body)
    bodies = h.bodies()
    assert len(bodies) == 2 and all(b is body for b in bodies)


def test_default_exchange_bind_refused() -> None:
    h = Harness()
    h.queue("q")
    h.err(C.cmd_bind(V, "", "q", "q"), 403)
    h.exchange("x")
    h.err(C.cmd_bind(V, "x", "", dest_kind="exchange"), 403)
    h.err(C.cmd_bind(V, "nope", "q"), 404)
    h.err(C.cmd_bind(V, "x", "nope"), 404)
    h.err(C.cmd_bind(V, "x", "nope", dest_kind="exchange"), 404)
    h.err(C.cmd_unbind(V, "nope", "q"), 404)
    h.ok(C.cmd_unbind(V, "x", "q", "never-bound"))


@pytest.mark.parametrize(
    ("args", "headers", "expected"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "all", "a": 1}, {"a": 2}, False),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 1}, True),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 3, "b": "y"}, False),
        ({"a": 1}, {"a": 1, "c": 3}, True),  # all is the default
        ({"x-match": "all"}, {}, True),
        ({"x-match": "any"}, {"a": 1}, False),
        ({"x-match": "all", "a": None}, {"a": "anything"}, True),  # value-less match
        ({"x-match": "all", "a": None}, {}, False),
        ({"x-match": "all", "x-k": 1}, {}, True),  # x- args ignored
        ({"x-match": "all-with-x", "x-k": 1}, {}, False),
        ({"x-match": "all-with-x", "x-k": 1}, {"x-k": 1}, True),
        ({"x-match": "any-with-x", "x-k": 1, "a": 2}, {"x-k": 1}, True),
        ({"x-match": "any", "x-k": 1}, {"x-k": 1}, False),
        ({"x-match": "all", "a": 1}, {"a": True}, False),  # bool is not int
        ({"x-match": "all", "a": 1}, None, False),
    ],
)
def test_headers_match(args: dict, headers: dict | None, expected: bool) -> None:
    assert headers_match(args, headers) is expected


def test_headers_exchange() -> None:
    h = Harness()
    h.queue("q1")
    h.queue("q2")
    h.bind("amq.headers", "q1", arguments={"x-match": "all", "fmt": "pdf", "type": "report"})
    h.bind("amq.match", "q2", arguments={"x-match": "any", "fmt": "pdf", "type": "log"})
    h.bind("amq.headers", "q2", arguments={"x-match": "any", "fmt": "pdf", "type": "log"})
    props = {"headers": {"fmt": "pdf", "type": "report"}}
    assert h.routed_to("amq.headers", "", props) == ["q1", "q2"]
    assert h.routed_to("amq.headers", "", {"headers": {"type": "log"}}) == ["q2"]
    assert h.routed_to("amq.headers", "", {}) == []
    assert h.routed_to("amq.match", "", {"headers": {"fmt": "pdf"}}) == ["q2"]


def test_exchange_to_exchange_no_duplicates_and_cycles() -> None:
    h = Harness()
    h.exchange("a", "fanout")
    h.exchange("b", "fanout")
    h.exchange("c", "direct")
    h.queue("q")
    h.queue("qc")
    h.bind("a", "b", dest_kind="exchange")
    h.bind("b", "a", dest_kind="exchange")  # cycle
    h.bind("a", "q")
    h.bind("b", "q")
    h.bind("b", "c", "k", dest_kind="exchange")
    h.bind("c", "qc", "k")
    assert h.publish("a", "k") == [[2], []]
    assert h.ready("q") == 1 and h.ready("qc") == 1
    assert h.routed_to("b", "other") == ["q"]
    # unbinding e2e changes routing (cache invalidated)
    h.ok(C.cmd_unbind(V, "b", "c", "k", dest_kind="exchange"))
    assert h.routed_to("a", "k") == ["q"]
    # deleting an exchange removes bindings where it is the destination
    h.ok(C.cmd_delete_exchange(V, "b"))
    assert h.routed_to("a", "k") == ["q"]
    assert all(b["source"] != "b" and b["destination"] != "b" for b in h.m.list_bindings(V))


def test_alternate_exchange() -> None:
    h = Harness()
    h.exchange("ae", "fanout")
    h.exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    h.queue("q")
    h.queue("unrouted")
    h.bind("main", "q", "k")
    h.bind("ae", "unrouted")
    assert h.routed_to("main", "k") == ["q"]
    assert h.routed_to("main", "zzz") == ["unrouted"]
    # a missing alternate exchange just leaves the message unroutable
    h.exchange("main2", "direct", arguments={"alternate-exchange": "missing"})
    assert h.publish("main2", "x") == [[0], []]
    # alternate cycles terminate
    h.exchange("ae1", "direct", arguments={"alternate-exchange": "ae2"})
    h.exchange("ae2", "direct", arguments={"alternate-exchange": "ae1"})
    assert h.publish("ae1", "x") == [[0], []]


def test_auto_delete_exchange_goes_with_last_binding() -> None:
    h = Harness()
    h.exchange("ad", "fanout", auto_delete=True)
    h.queue("q1")
    h.queue("q2")
    h.bind("ad", "q1")
    h.bind("ad", "q2")
    h.ok(C.cmd_unbind(V, "ad", "q1"))
    assert h.m.exchange_exists(V, "ad")
    h.ok(C.cmd_delete_queue(V, "q2"))
    assert not h.m.exchange_exists(V, "ad")


def test_publish_errors() -> None:
    h = Harness()
    h.err(C.cmd_publish(V, "nope", [C.msg("k", b"x")]), 404)
    h.exchange("int", "fanout", internal=True)
    h.err(C.cmd_publish(V, "int", [C.msg("k", b"x")]), 403)
    h.err(C.cmd_publish("/other", "", [C.msg("k", b"x")]), 530)
