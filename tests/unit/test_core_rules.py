"""Rules exchanges (``x-rules``): content-matched bindings with a copy per matching binding,
each transformed by its binding's spec (SNS topics and EventBridge buses live on these), and
SET_EXCHANGE_ARGUMENTS."""

from __future__ import annotations

import json
from typing import Any

from broker.core import commands as C
from broker.core.machine import Machine
from broker.core.model import ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED
from tests.unit.core_helpers import Harness, V

PERSISTENT = {"delivery_mode": 2}


def bus(h: Harness, name: str = "bus", **kw: Any) -> None:
    h.exchange(name, "x-rules", **kw)


def rule(
    h: Harness, dest: str, key: str, pattern: Any = None, dest_kind: str = "queue", **args: Any
) -> None:
    arguments = dict(args)
    if pattern is not None:
        arguments["x-pattern"] = pattern
    h.bind("bus", dest, key, arguments=arguments, dest_kind=dest_kind)


def event(source: str, **detail: Any) -> bytes:
    return json.dumps({"source": source, "detail-type": "t", "detail": detail}).encode()


def put(h: Harness, body: bytes, props: dict[str, Any] | None = None, **kw: Any) -> Any:
    return h.ok(C.cmd_publish(V, "bus", [C.msg("", body, props or PERSISTENT)]), **kw)


def drain(h: Harness, queue: str) -> list[bytes]:
    out, _ = h.get(1, queue, max_n=100, no_ack=True)
    return [d[6] for d in out]


def test_each_matching_binding_gets_its_own_copy() -> None:
    h = Harness()
    bus(h)
    for q in ("orders", "all", "other"):
        h.queue(q)
    rule(h, "orders", "r1/t1", {"source": ["shop"], "detail": {"total": [{"numeric": [">", 10]}]}})
    rule(h, "orders", "r2/t1", {"source": [{"prefix": "sh"}]})
    rule(h, "all", "r3/t1")
    rule(h, "other", "r4/t1", {"source": ["bank"]})
    reply = put(h, event("shop", total=20))
    assert reply == [[3], []]
    assert len(drain(h, "orders")) == 2  # two rules, two copies (EventBridge semantics)
    assert drain(h, "all") == [event("shop", total=20)]
    assert drain(h, "other") == []
    assert put(h, event("shop", total=5)) == [[2], []]


def test_fields_inside_arrays_of_objects_match() -> None:
    h = Harness()
    bus(h)
    h.queue("q")
    rule(h, "q", "r/t", {"detail": {"items": {"sku": ["b"]}}})
    put(h, event("s", items=[{"sku": "a"}, {"sku": "b"}]))
    put(h, event("s", items=[{"sku": "a"}]))
    assert len(drain(h, "q")) == 1


def test_disabled_bindings_never_deliver() -> None:
    h = Harness()
    bus(h)
    h.queue("q")
    rule(h, "q", "r/t", {"source": ["s"]}, **{"x-disabled": True})
    assert put(h, event("s")) == [[0], []]
    assert drain(h, "q") == []


def test_transform_applies_per_binding() -> None:
    h = Harness()
    bus(h)
    h.queue("path")
    h.queue("whole")
    rule(
        h,
        "path",
        "r/a",
        {"source": ["s"]},
        **{"x-transform": {"kind": "input_path", "path": "$.detail"}},
    )
    rule(h, "whole", "r/b", {"source": ["s"]})
    put(h, event("s", x=1))
    assert json.loads(drain(h, "path")[0]) == {"x": 1}
    assert json.loads(drain(h, "whole")[0])["source"] == "s"


def test_sns_dialect_matches_attributes_or_body_and_wraps_in_an_envelope() -> None:
    h = Harness()
    bus(h)
    h.queue("attrs")
    h.queue("body")
    envelope = {
        "kind": "sns",
        "raw": False,
        "protocol": "sqs",
        "subscription_arn": "arn:aws:sns:us-east-1:000000000000:t:1",
        "unsubscribe_url": "http://localhost:4566/?Action=Unsubscribe",
        "signing_cert_url": "http://localhost:4566/cert.pem",
    }
    rule(
        h,
        "attrs",
        "s1",
        {"color": ["red"], "size": [{"numeric": [">=", 3]}]},
        **{"x-pattern-dialect": "sns", "x-transform": envelope},
    )
    rule(
        h,
        "body",
        "s2",
        {"order": {"state": ["paid"]}},
        **{"x-pattern-dialect": "sns", "x-pattern-scope": "MessageBody"},
    )
    message = json.dumps({"order": {"state": "paid"}})
    sns = {
        "id": "m-1",
        "topic": "arn:aws:sns:us-east-1:000000000000:t",
        "subject": None,
        "message": message,
        "messages": None,
        "ts": "2026-01-01T00:00:00.000Z",
        "attrs": {"color": ["String", "red"], "size": ["Number", "4"]},
        "seq": None,
        "group": None,
        "dedup": None,
    }
    props = {"delivery_mode": 2, "message_id": "m-1", "sns": sns}
    assert put(h, message.encode(), props) == [[2], []]
    note = json.loads(drain(h, "attrs")[0])
    assert note["Type"] == "Notification" and note["Message"] == message
    assert note["MessageAttributes"]["color"] == {"Type": "String", "Value": "red"}
    assert drain(h, "body") == [message.encode()]
    sns["attrs"] = {"color": ["String", "blue"], "size": ["Number", "4"]}
    assert put(h, message.encode(), props) == [[1], []]


def test_invalid_patterns_and_transforms_are_refused_at_bind() -> None:
    h = Harness()
    bus(h)
    h.queue("q")
    h.err(
        C.cmd_bind(V, "bus", "q", "r", arguments={"x-pattern": {"source": [{"bogus": 1}]}}),
        PRECONDITION_FAILED,
    )
    h.err(
        C.cmd_bind(V, "bus", "q", "r", arguments={"x-transform": {"kind": "input", "input": "{"}}),
        PRECONDITION_FAILED,
    )
    h.err(
        C.cmd_bind(V, "bus", "q", "r", arguments={"x-pattern-dialect": "smoke-signals"}),
        PRECONDITION_FAILED,
    )


def test_forwarding_to_other_exchanges() -> None:
    h = Harness()
    bus(h)
    bus(h, "bus2")
    h.exchange("fan", "fanout")
    h.queue("q2")
    h.queue("qf")
    h.bind("bus2", "q2", "r/t", arguments={"x-pattern": {"source": ["s"]}})
    h.bind("fan", "qf")
    rule(h, "bus2", "r/b", {"source": ["s"]}, dest_kind="exchange")
    rule(h, "fan", "r/f", None, dest_kind="exchange")
    assert put(h, event("s")) == [[2], []]
    assert len(drain(h, "q2")) == 1 and len(drain(h, "qf")) == 1


def test_rules_exchange_routing_survives_a_snapshot_and_logs_persistent_messages() -> None:
    h = Harness()
    bus(h)
    h.queue("q")
    rule(h, "q", "r/t", {"source": ["s"]})
    runs = h.m.split_publish(V, "bus", [C.msg("", event("s"), PERSISTENT)])
    assert [flag for flag, _ in runs] == [True]
    runs = h.m.split_publish(V, "bus", [C.msg("", event("x"), PERSISTENT)])
    assert [flag for flag, _ in runs] == [False]
    m2 = Machine.restore(h.m.snapshot())
    h2 = Harness(m2)
    h2.index = h.index
    assert put(h2, event("s")) == [[1], []]
    assert put(h2, event("x")) == [[0], []]


def test_set_exchange_arguments() -> None:
    h = Harness()
    bus(h)
    h.exchange("alt", "fanout")
    h.queue("q")
    h.bind("alt", "q")
    h.exchange("x", "direct")
    h.ok(C.cmd_set_exchange_arguments(V, "x", {"alternate-exchange": "alt", "x-sns": {"a": 1}}))
    info = h.m.exchange_info(V, "x")
    assert info is not None and info["arguments"]["x-sns"] == {"a": 1}
    h.ok(C.cmd_publish(V, "x", [C.msg("nowhere", b"m")]))
    assert drain(h, "q") == [b"m"]
    h.err(C.cmd_set_exchange_arguments(V, "amq.topic", {}), ACCESS_REFUSED)
    h.err(C.cmd_set_exchange_arguments(V, "missing", {}), NOT_FOUND)


def test_sampled_binding_takes_at_most_its_rate_per_second() -> None:
    h = Harness()
    bus(h)
    h.queue("sample", durable=False)
    h.queue("all")
    rule(h, "sample", "discoverer", **{"x-sample-per-s": 3})
    rule(h, "all", "r1/t1")
    for i in range(5):
        put(h, event("shop", n=i), t=10_000 + i)
    # every event reaches the ordinary rule; the sampled one takes the first 3 of this second
    assert len(drain(h, "all")) == 5
    assert drain(h, "sample") == [event("shop", n=i) for i in range(3)]
    put(h, event("shop", n=5), t=10_999)
    assert drain(h, "sample") == []
    put(h, event("shop", n=6), t=11_000)  # a new window
    assert drain(h, "sample") == [event("shop", n=6)]


def test_sampled_binding_is_refused_when_durable_or_malformed() -> None:
    h = Harness()
    bus(h)
    h.queue("durable")
    h.queue("scratch", durable=False)
    refused = h.err(
        C.cmd_bind(V, "bus", "durable", "k", arguments={"x-sample-per-s": 5}), PRECONDITION_FAILED
    )
    assert "transient destinations only" in refused.text
    for bad in (0, -1, 1.5, "5", True, 10**7):
        refused = h.err(
            C.cmd_bind(V, "bus", "scratch", "k", arguments={"x-sample-per-s": bad}),
            PRECONDITION_FAILED,
        )
        assert "x-sample-per-s must be an integer" in refused.text
