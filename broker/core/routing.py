"""Exchanges, bindings and per-type matching (direct, fanout, topic, headers).

An exchange answers ``match(routing_key, headers)`` with the bindings whose
destination should receive the message. Walking exchange-to-exchange bindings,
alternate exchanges and the durable/transient split lives in machine.py.

A ``x-rules`` exchange (polymq's own type, for SNS topics and EventBridge buses) matches by
content: each binding may carry a pattern (``x-pattern``, compiled by broker/core/patterns.py
in the ``x-pattern-dialect`` "eventbridge" or "sns", with ``x-pattern-scope``
"MessageAttributes" or "MessageBody" for SNS), is skipped while ``x-disabled`` is true, and
every matching binding gets its own copy, transformed by its ``x-transform``
(broker/core/transform.py). See ``Machine._publish_rules``.

Headers matching follows RabbitMQ: the binding argument ``x-match`` is ``all``
(default), ``any``, ``all-with-x`` or ``any-with-x``; the other arguments are
compared with the message headers (keys starting with ``x-`` are ignored unless a
``-with-x`` mode is used). An argument whose value is None (AMQP void) matches
when the header is present with any value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.core.patterns import PatternError, RuleSet, compile_pattern
from broker.core.topic_trie import TopicTrie

DEFAULT = "default"  # type of the nameless default exchange
RULES = "x-rules"  # content-matched bindings, one (transformed) copy per matching binding
RULE_DIALECTS = ("eventbridge", "sns")
SNS_SCOPES = ("MessageAttributes", "MessageBody")


def rule_group(arguments: dict[str, Any]) -> tuple[str, str]:
    """``(dialect, scope)`` of a rules binding: bindings of one group match the same event."""
    dialect = arguments.get("x-pattern-dialect", "eventbridge")
    scope = arguments.get("x-pattern-scope", "MessageAttributes") if dialect == "sns" else ""
    return str(dialect), str(scope)


#: the highest ``x-sample-per-s`` of a rules binding (copies per second)
SAMPLE_PER_S_MAX = 1_000_000


def check_rule_arguments(arguments: dict[str, Any]) -> str | None:
    """Why the arguments of a rules binding are invalid, or None."""
    from broker.core.transform import TransformError, validate

    dialect, scope = rule_group(arguments)
    if dialect not in RULE_DIALECTS:
        return f"unknown x-pattern-dialect {dialect!r}"
    if dialect == "sns" and scope not in SNS_SCOPES:
        return f"unknown x-pattern-scope {scope!r}"
    pattern = arguments.get("x-pattern")
    if pattern is not None:
        try:
            if dialect == "sns":
                compile_pattern(pattern, dialect="sns", scope=scope)
            else:
                compile_pattern(pattern, dialect="eventbridge")
        except PatternError as exc:
            return str(exc)
    rate = arguments.get("x-sample-per-s")
    if rate is not None and (type(rate) is not int or not 1 <= rate <= SAMPLE_PER_S_MAX):
        return f"x-sample-per-s must be an integer from 1 to {SAMPLE_PER_S_MAX}"
    spec = arguments.get("x-transform")
    if spec is not None:
        if not isinstance(spec, dict):
            return "x-transform must be a table"
        try:
            validate(spec)
        except TransformError as exc:
            return str(exc)
    return None


_TRUE = ("b", True)
_FALSE = ("b", False)


def freeze(value: Any) -> Any:
    """A hashable, order-independent form of an argument table (small: every binding keeps
    one in its key)."""
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return ("{}",) + tuple(sorted((k, freeze(v)) for k, v in value.items()))
        return ("{r}",) + tuple(sorted(((repr(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("[]",) + tuple(freeze(v) for v in value)
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    return value


#: Distinct binding argument tables shared between bindings (many MQTT subscriptions carry the
#: same options): frozen form -> (frozen form, the table). Past the limit tables are not shared.
SHARED_ARGUMENTS_MAX = 4096
_shared_arguments: dict[Any, tuple[Any, dict[str, Any]]] = {}


def share_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """An argument table equal to ``arguments``, shared with equal earlier ones (queue and
    consumer arguments; never changed in place)."""
    return _share(arguments)[1]


def _share(arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(frozen arguments, arguments)``, both shared with equal earlier tables. Binding
    arguments are never changed in place, so sharing them is safe."""
    frozen = freeze(arguments)
    hit = _shared_arguments.get(frozen)
    if hit is not None:
        return hit
    if len(_shared_arguments) < SHARED_ARGUMENTS_MAX:
        _shared_arguments[frozen] = (frozen, arguments)
    return frozen, arguments


class Binding:
    __slots__ = ("source", "kind", "dest", "routing_key", "arguments", "key", "durable", "order")

    def __init__(
        self,
        source: str,
        kind: str,
        dest: str,
        routing_key: str,
        arguments: dict[str, Any],
        durable: bool,
    ) -> None:
        self.source = source
        self.kind = kind
        self.dest = dest
        self.routing_key = routing_key
        frozen, self.arguments = _share(arguments)
        self.key = (kind, dest, routing_key, frozen)
        self.durable = durable
        #: canonical order among the matches of a rules exchange (set for those only)
        self.order = ""


def binding_key(kind: str, dest: str, routing_key: str, arguments: dict[str, Any]) -> Any:
    return (kind, dest, routing_key, freeze(arguments))


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and (type(a) is bool) == (type(b) is bool)


def headers_match(arguments: dict[str, Any], headers: dict[Any, Any] | None) -> bool:
    mode = arguments.get("x-match", "all")
    with_x = mode in ("all-with-x", "any-with-x")
    want_all = mode in ("all", "all-with-x")
    hdrs = headers or {}
    for k, v in arguments.items():
        if k == "x-match" or (not with_x and isinstance(k, str) and k.startswith("x-")):
            continue
        ok = k in hdrs and (v is None or _same(hdrs[k], v))
        if want_all and not ok:
            return False
        if not want_all and ok:
            return True
    return want_all


class Exchange:
    __slots__ = (
        "name",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "alternate",
        "bindings",
        "_direct",
        "_trie",
        "rule_sets",
        "unfiltered",
    )

    def __init__(
        self,
        name: str,
        type: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict[str, Any],
    ) -> None:
        self.name = name
        self.type = type
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments
        ae = arguments.get("alternate-exchange")
        self.alternate: str | None = ae if isinstance(ae, str) else None
        self.bindings: dict[Any, Binding] = {}
        self._direct: dict[str, dict[Binding, None]] = {}
        self._trie: TopicTrie[Binding] = TopicTrie()
        #: rules exchanges: a RuleSet of binding keys per (dialect, scope), and the bindings
        #: without a pattern (they match everything)
        self.rule_sets: dict[tuple[str, str], RuleSet] = {}
        self.unfiltered: dict[Any, Binding] = {}

    def add_binding(self, b: Binding) -> bool:
        if b.key in self.bindings:
            return False
        self.bindings[b.key] = b
        if self.type == "direct":
            self._direct.setdefault(b.routing_key, {})[b] = None
        elif self.type == "topic":
            self._trie.add(b.routing_key, b)
        elif self.type == RULES:
            b.order = repr(b.key)
        if self.type == RULES and not b.arguments.get("x-disabled"):
            pattern = b.arguments.get("x-pattern")
            if pattern is None:
                self.unfiltered[b.key] = b
            else:
                dialect, scope = rule_group(b.arguments)
                rs = self.rule_sets.get((dialect, scope))
                if rs is None:
                    rs = self.rule_sets[(dialect, scope)] = RuleSet()
                if dialect == "sns":
                    rs.add(b.key, compile_pattern(pattern, dialect="sns", scope=scope))
                else:
                    rs.add(b.key, compile_pattern(pattern, dialect="eventbridge"))
        return True

    def remove_binding(self, key: Any) -> Binding | None:
        b = self.bindings.pop(key, None)
        if b is None:
            return None
        if self.type == "direct":
            group = self._direct[b.routing_key]
            del group[b]
            if not group:
                del self._direct[b.routing_key]
        elif self.type == "topic":
            self._trie.remove(b.routing_key, b)
        elif self.type == RULES:
            self.unfiltered.pop(b.key, None)
            for rs in self.rule_sets.values():
                rs.remove(b.key)
        return b

    def match(self, routing_key: str, headers: dict[Any, Any] | None) -> Iterable[Binding]:
        t = self.type
        if t == "direct":
            return self._direct.get(routing_key, ())
        if t == "fanout":
            return self.bindings.values()
        if t == "topic":
            return self._trie.match(routing_key)
        if t == "headers":
            return [b for b in self.bindings.values() if headers_match(b.arguments, headers)]
        return ()
