"""EventBridge event patterns and SNS subscription filter policies: one matcher for both.

Sources (AWS EventBridge User Guide "Event patterns", "Content filtering in Amazon EventBridge
event patterns", "Comparison operators for use in event patterns", "Arrays in EventBridge event
patterns"; Amazon SNS Developer Guide "Subscription filter policies", "String value matching",
"Numeric value matching", "Key matching", "AND/OR logic", "Filter policy constraints"; the
behaviour and error texts of AWS's own matcher, aws/event-ruler, read for semantics only).

Semantics
---------
* A pattern is a JSON object. A key whose value is an object addresses a nested field; a key
  whose value is an array lists match conditions for that field (OR within the array, AND across
  keys). ``"$or": [pattern, pattern, ...]`` (at least two objects) may appear at any object level.
* Arrays in events are transparent: a condition on a field holds when any leaf value reached
  through arrays matches it. Fields that sit inside objects in an array must all match within the
  *same* array element ("Arrays in EventBridge event patterns"; event-ruler's
  ``rulesForJSONEvent``): ``{"a": {"b": [1], "c": [2]}}`` does not match
  ``{"a": [{"b": 1}, {"c": 2}]}``.
* Leaf values are strings, numbers, booleans and null. An object-valued field is not a leaf:
  ``exists: true`` does not match it, and ``exists: false`` does ("Exists matching only works on
  leaf nodes"). ``exists: false`` means the event holds no leaf at that path anywhere.
* Exact values compare by JSON type: ``"5"`` never equals ``5``, ``true`` never equals ``1``,
  ``null`` matches a JSON null and ``""`` the empty string. Numbers compare numerically
  (``3.018e2`` equals ``301.8``) at the documented precision: six decimal places for EventBridge,
  five for SNS.
* ``anything-but X`` matches every leaf value that ``X`` would not match (a list of strings, a
  list of numbers, ``{"prefix"|"suffix"|"equals-ignore-case"|"wildcard": ...}``); for an array
  field it holds when some element is not excluded ("Numeric value matching": ``[100, 50]``
  matches ``anything-but [100, 500]``). A missing field never matches it.
* ``numeric`` applies to JSON numbers only (SNS: ``Number`` attributes). EventBridge accepts bounds
  between -5.0e9 and 5.0e9; event values outside that range never satisfy a numeric condition.
* ``cidr`` takes an IPv4 or IPv6 network (as event-ruler, an IPv4 mask of 32 or an IPv6 mask of
  128 is rejected); string leaves that parse as an address inside it match.
* ``wildcard``: ``*`` matches any run of characters, ``\\*`` a literal star, ``\\\\`` a backslash;
  any other escape and two consecutive stars are rejected.
* Unknown operators are rejected, never ignored.

Errors
------
:class:`PatternError` carries AWS's message: ``Event pattern is not valid. Reason: <reason>`` for
EventBridge (``InvalidEventPatternException``) and ``Invalid parameter: FilterPolicy: <reason>``
for SNS (``InvalidParameter``). The reasons are event-ruler's texts. AWS appends the parser
location (``\\n at [Source: (String)"..."; line: 1, column: N]``) to EventBridge reasons; that
suffix is not reproduced.

Limits
------
* EventBridge numeric bounds -5.0e9..5.0e9, six decimal places (content filtering page).
* SNS: at most 5 keys per policy (counted per ``$or`` alternative, top-level keys only for a
  nested body policy); total combination of values at most 150, counting nested keys as the
  "Filter policy constraints" page shows (values x nesting depth, multiplied across keys);
  numeric precision five decimal places; MessageAttributes scope rejects nested policies.
* Sizes are checked by the API layer, not here: ``EVENT_PATTERN_MAX_CHARS`` (botocore's
  ``EventPattern`` shape, max length 4096) and ``SNS_FILTER_POLICY_MAX_BYTES`` (256 KB).
* Not enforced: SNS numeric range -1e9..1e9 (AWS accepts values beyond it in practice), the
  EventBridge "Rule is too complex" wildcard limit, and quotas on rules per bus / policies per
  topic.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final

__all__ = [
    "EVENT_PATTERN_MAX_CHARS",
    "SNS_FILTER_POLICY_MAX_BYTES",
    "Pattern",
    "PatternError",
    "RuleSet",
    "compile_pattern",
    "sns_attribute_event",
]

EVENT_PATTERN_MAX_CHARS: Final = 4096
SNS_FILTER_POLICY_MAX_BYTES: Final = 256 * 1024
SNS_MAX_KEYS: Final = 5
SNS_MAX_COMBINATIONS: Final = 150
_REBALANCE_MIN: Final = 16
_PAIR_KEYS_MAX: Final = 64

EVENTBRIDGE_PREFIX: Final = "Event pattern is not valid. Reason: "
SNS_PREFIX: Final = "Invalid parameter: FilterPolicy: "
SNS_NESTED_ATTRIBUTES: Final = (
    "Invalid parameter: Filter policy scope MessageAttributes does not support nested filter policy"
)

OR_KEY: Final = "$or"
# event-ruler reserves these names inside "$or" branches.
_RESERVED_IN_OR: Final = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
    }
)


class PatternError(ValueError):
    """An invalid pattern; ``str(exc)`` is AWS's message for it, ``exc.reason`` the bare reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Missing:
    __slots__ = ()


_MISSING: Final = _Missing()
_EMPTY: Final[dict[str, Any]] = {}


# ----------------------------------------------------------------------------- numbers


class _Dialect:
    __slots__ = ("name", "prefix", "scale", "limit", "reject_out_of_range", "operators")

    def __init__(
        self,
        name: str,
        prefix: str,
        scale: int,
        limit: float,
        reject_out_of_range: bool,
        operators: frozenset[str],
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.scale = scale
        self.limit = limit
        self.reject_out_of_range = reject_out_of_range
        self.operators = operators


_COMMON_OPERATORS: Final = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "cidr"}
)
_EVENTBRIDGE: Final = _Dialect(
    "eventbridge", EVENTBRIDGE_PREFIX, 10**6, 5.0e9, True, _COMMON_OPERATORS | {"wildcard"}
)
# SNS documents -1e9..1e9 but accepts wider numbers; compare every finite number.
_SNS: Final = _Dialect("sns", SNS_PREFIX, 10**5, 1.0e300, False, _COMMON_OPERATORS)
_ANYTHING_BUT_INNER: Final = {
    "eventbridge": frozenset({"equals-ignore-case", "prefix", "suffix", "wildcard"}),
    "sns": frozenset({"prefix"}),
}


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v is not True and v is not False


def _quantize(v: float, d: _Dialect) -> int | None:
    """The number at the dialect's precision, or None when outside its comparable range."""
    if not -d.limit <= v <= d.limit:  # also false for NaN
        return None
    if type(v) is int:
        return v * d.scale
    return round(v * d.scale)


def _token_text(v: Any) -> str:
    """What Jackson's ``getText()`` shows for a value, as event-ruler puts it in messages."""
    if isinstance(v, dict):
        return "{"
    if isinstance(v, list):
        return "["
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    return json.dumps(v)


# ----------------------------------------------------------------------------- wildcards


def _wildcard_regex(text: str, fail: Callable[[str], PatternError]) -> re.Pattern[str]:
    """Compile an event-ruler wildcard; positions in errors count UTF-8 bytes of ``"text"``."""
    parts: list[str] = []
    literal: list[str] = []
    pos = 1  # event-ruler parses the value with its surrounding quote
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                raise fail(f"Consecutive wildcard characters at pos {pos}")
            parts.append(re.escape("".join(literal)))
            literal.clear()
            parts.append(".*")
        elif ch == "\\":
            if i + 1 < n and text[i + 1] in "*\\":
                literal.append(text[i + 1])
                i += 2
                pos += 2
                continue
            raise fail(f"Invalid escape character at pos {pos}")
        else:
            literal.append(ch)
        pos += len(ch.encode("utf-8", "surrogatepass"))
        i += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


# ----------------------------------------------------------------------------- CIDR


_IPV4_RE: Final = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_IPV6_RE: Final = re.compile(r"^[0-9a-fA-F:.]+$")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_cidr(text: str, fail: Callable[[str], PatternError]) -> _Network:
    slashed = text.split("/")
    if len(slashed) != 2:
        raise fail("Malformed CIDR, one '/' required")
    ip_text, mask_text = slashed
    try:
        mask = int(mask_text.strip(), 10)
        if not mask_text.strip().lstrip("+-").isdigit():
            raise ValueError(mask_text)
    except ValueError:
        raise fail("Malformed CIDR, mask bits must be an integer") from None
    if mask < 0:
        raise fail("Malformed CIDR, mask bits must not be negative")
    try:
        if not (_IPV4_RE.match(ip_text) or (":" in ip_text and _IPV6_RE.match(ip_text))):
            raise ValueError(ip_text)
        address = ipaddress.ip_address(ip_text)
    except ValueError:
        raise fail(f"Nonstandard IP address: {ip_text}") from None
    if address.version == 4 and mask > 31:
        raise fail("IPv4 mask bits must be < 32")
    if address.version == 6 and mask > 127:
        raise fail("IPv6 mask bits must be < 128")
    return ipaddress.ip_network(f"{address}/{mask}", strict=False)


def _parse_ip(v: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if len(v) > 64:
        return None
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- conditions


Predicate = Callable[[Any], bool]


class _Leaf:
    """The conditions of one pattern array, pre-sorted by kind for a fast per-value test."""

    __slots__ = (
        "path",
        "exact_str",
        "exact_q",
        "exact_raw",
        "lit_true",
        "lit_false",
        "lit_null",
        "prefixes",
        "preds",
        "exists_true",
        "exists_false",
        "dialect",
    )

    def __init__(self, path: tuple[str, ...], dialect: _Dialect) -> None:
        self.path = path
        self.exact_str: set[str] = set()
        self.exact_q: set[int] = set()
        self.exact_raw: set[float] = set()
        self.lit_true = False
        self.lit_false = False
        self.lit_null = False
        self.prefixes: list[str] = []
        self.preds: list[Predicate] = []
        self.exists_true = False
        self.exists_false = False
        self.dialect = dialect

    @property
    def indexable(self) -> bool:
        """True when every condition is an exact value or a case-sensitive prefix."""
        return not (self.preds or self.exists_true or self.exists_false)

    def index_keys(self) -> list[tuple[Any, ...]]:
        keys: list[tuple[Any, ...]] = [("s", s) for s in self.exact_str]
        keys.extend(("q", q) for q in self.exact_q)
        keys.extend(("r", r) for r in self.exact_raw)
        if self.lit_true:
            keys.append(("t",))
        if self.lit_false:
            keys.append(("f",))
        if self.lit_null:
            keys.append(("z",))
        return keys

    def test(self, v: Any) -> bool:
        """Whether one leaf value satisfies one of the positive conditions."""
        t = type(v)
        if t is str:
            if v in self.exact_str:
                return True
            for p in self.prefixes:
                if v.startswith(p):
                    return True
        elif t is bool:
            if self.lit_true if v else self.lit_false:
                return True
        elif t is int or t is float:
            q = _quantize(v, self.dialect)
            if (q in self.exact_q) if q is not None else (v in self.exact_raw):
                return True
        elif v is None and self.lit_null:
            return True
        for pred in self.preds:  # noqa: SIM110 - a plain loop is faster on this hot path
            if pred(v):
                return True
        return False

    def matches(self, local: Any, root: Any) -> bool:
        t = type(local)
        if t is str or t is int or t is float or t is bool or local is None:
            return self.test(local) or self.exists_true
        if t is not list:
            return self.exists_false and not _has_leaf(root, self.path)
        found = False
        for v in _leaves(local):
            if self.test(v):
                return True
            found = True
        if found:
            return self.exists_true
        return self.exists_false and not _has_leaf(root, self.path)


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                yield from _leaves(item)
            elif not isinstance(item, dict):
                yield item
    elif not isinstance(value, (dict, _Missing)):
        yield value


def _has_leaf(value: Any, path: tuple[str, ...]) -> bool:
    """Whether the event holds a leaf at ``path``, arrays being transparent."""
    if not path:
        if isinstance(value, list):
            return any(_has_leaf(item, path) for item in value)
        return not isinstance(value, (dict, _Missing))
    if isinstance(value, list):
        return any(_has_leaf(item, path) for item in value)
    if isinstance(value, dict) and path[0] in value:
        return _has_leaf(value[path[0]], path[1:])
    return False


class _Node:
    """An object level of a pattern: fields (AND) and ``$or`` groups (each an OR of objects)."""

    __slots__ = ("fields", "ors")

    def __init__(self) -> None:
        self.fields: list[tuple[str, _Leaf | _Node]] = []
        self.ors: list[list[_Node]] = []

    def matches(self, value: Any, root: Any) -> bool:
        if isinstance(value, list):
            objects = [item for item in _flat(value) if isinstance(item, dict)]
            if not objects:
                return self.match_object(_EMPTY, root)
            return any(self.match_object(obj, root) for obj in objects)
        if isinstance(value, dict):
            return self.match_object(value, root)
        return self.match_object(_EMPTY, root)

    def match_object(self, obj: dict[str, Any], root: Any) -> bool:
        for name, child in self.fields:
            if not child.matches(obj.get(name, _MISSING), root):
                return False
        for group in self.ors:
            for branch in group:
                if branch.match_object(obj, root):
                    break
            else:
                return False
        return True


def _flat(value: list[Any]) -> Iterable[Any]:
    for item in value:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


# ----------------------------------------------------------------------------- compiler


class _Compiler:
    def __init__(self, dialect: _Dialect, scope: str) -> None:
        self.d = dialect
        self.scope = scope

    def fail(self, reason: str) -> PatternError:
        return PatternError(self.d.prefix + reason, reason)

    def compile(self, pattern: Any) -> _Node:
        if not isinstance(pattern, dict):
            raise self.fail("Filter is not an object")
        return self.node(pattern, (), in_or=False, depth=1)

    def node(self, obj: dict[str, Any], path: tuple[str, ...], *, in_or: bool, depth: int) -> _Node:
        node = _Node()
        if not obj:
            raise self.fail("Empty objects are not allowed")
        for name, value in obj.items():
            if not isinstance(name, str):
                raise self.fail("Field names must be strings")
            if name == OR_KEY:
                node.ors.append(self.or_group(value, path, depth))
                continue
            if in_or and name in _RESERVED_IN_OR:
                raise self.fail(
                    f"{name} is Ruler reserved fieldName which cannot be used inside {OR_KEY}."
                )
            if isinstance(value, dict):
                if self.d is _SNS and self.scope == "MessageAttributes":
                    raise PatternError(SNS_NESTED_ATTRIBUTES, SNS_NESTED_ATTRIBUTES)
                child = self.node(value, (*path, name), in_or=in_or, depth=depth + 1)
                node.fields.append((name, child))
            elif isinstance(value, list):
                node.fields.append((name, self.leaf(value, (*path, name))))
            else:
                raise self.fail(f'"{name}" must be an object or an array')
        return node

    def or_group(self, value: Any, path: tuple[str, ...], depth: int) -> list[_Node]:
        if not isinstance(value, list):
            raise self.fail(f"It must be an Array followed with {OR_KEY}.")
        branches: list[_Node] = []
        for item in value:
            if not isinstance(item, dict):
                raise self.fail(f"Only JSON object is allowed in array of {OR_KEY} relationship.")
            branches.append(self.node(item, path, in_or=True, depth=depth))
        if len(branches) < 2:
            raise self.fail(f"There must have at least 2 Objects in {OR_KEY} relationship.")
        return branches

    def leaf(self, values: list[Any], path: tuple[str, ...]) -> _Leaf:
        leaf = _Leaf(path, self.d)
        for v in values:
            if isinstance(v, dict):
                self.expression(v, leaf)
            elif isinstance(v, str):
                leaf.exact_str.add(v)
            elif v is True:
                leaf.lit_true = True
            elif v is False:
                leaf.lit_false = True
            elif v is None:
                leaf.lit_null = True
            elif _is_number(v):
                q = _quantize(v, self.d)
                if q is None:
                    leaf.exact_raw.add(v)
                else:
                    leaf.exact_q.add(q)
            else:
                raise self.fail("Match value must be String, number, true, false, or null")
        if not values:
            raise self.fail("Empty arrays are not allowed")
        return leaf

    # -- match expressions ------------------------------------------------------------------

    def expression(self, expr: dict[str, Any], leaf: _Leaf) -> None:
        if not expr:
            raise self.fail("Match expression name not found")
        items = list(expr.items())
        op, value = items[0]
        if op not in self.d.operators:
            raise self.fail(f"Unrecognized match type {op}")
        single = "Only one key allowed in match expression"
        if op == "prefix":
            if isinstance(value, dict):
                text = self.ignore_case_object(value, "Prefix", "prefix")
                low = text.lower()
                leaf.preds.append(lambda v: type(v) is str and v.lower().startswith(low))
            elif isinstance(value, str):
                leaf.prefixes.append(value)
            else:
                raise self.fail("prefix match pattern must be a string")
        elif op == "suffix":
            if isinstance(value, dict):
                text = self.ignore_case_object(value, "Suffix", "suffix")
                low = text.lower()
                leaf.preds.append(lambda v: type(v) is str and v.lower().endswith(low))
            elif isinstance(value, str):
                suffix = value
                leaf.preds.append(lambda v: type(v) is str and v.endswith(suffix))
            else:
                raise self.fail("suffix match pattern must be a string")
        elif op == "equals-ignore-case":
            if not isinstance(value, str):
                raise self.fail("equals-ignore-case match pattern must be a string")
            low = value.lower()
            leaf.preds.append(lambda v: type(v) is str and v.lower() == low)
        elif op == "wildcard":
            if not isinstance(value, str):
                raise self.fail("wildcard match pattern must be a string")
            rx = _wildcard_regex(value, self.fail)
            leaf.preds.append(lambda v: type(v) is str and rx.fullmatch(v) is not None)
        elif op == "numeric":
            if not isinstance(value, list):
                raise self.fail("Value of numeric must be an array.")
            leaf.preds.append(self.numeric(value))
            if len(items) > 1:
                raise self.fail("Too many elements in numeric expression")
        elif op == "anything-but":
            leaf.preds.append(self.anything_but(value))
            if len(items) > 1:
                raise self.fail("Too many elements in numeric expression")
        elif op == "exists":
            if value is True:
                leaf.exists_true = True
            elif value is False:
                leaf.exists_false = True
            else:
                raise self.fail("exists match pattern must be either true or false.")
        elif op == "cidr":
            if not isinstance(value, str):
                raise self.fail("prefix match pattern must be a string")
            net = _parse_cidr(value, self.fail)
            leaf.preds.append(lambda v: _in_network(v, net))
        if len(items) > 1:
            raise self.fail(single)

    def ignore_case_object(self, value: dict[str, Any], label: str, op: str) -> str:
        if not value:
            raise self.fail(f"{label} expression name not found")
        (inner, text), *rest = value.items()
        if inner != "equals-ignore-case":
            raise self.fail(f"Unsupported {op} pattern: {inner}")
        if not isinstance(text, str):
            raise self.fail("equals-ignore-case match pattern must be a string")
        if rest:
            raise self.fail("Only one key allowed in match expression")
        return text

    def number(self, v: Any) -> int:
        """A bound or excluded value at the dialect's precision; rejects what AWS rejects."""
        q = _quantize(v, self.d)
        if q is None:
            if self.d.reject_out_of_range:
                raise self.fail("Value must be between -5.0E9 and 5.0E9, inclusive")
            raise self.fail(f"Cannot compare number : {_token_text(v)}")
        return q

    def numeric(self, terms: list[Any]) -> Predicate:
        def term(i: int) -> Any:
            return terms[i] if i < len(terms) else "]"

        op = term(0)
        if not isinstance(op, str) or len(terms) == 0:
            raise self.fail(f"Invalid member in numeric match: {_token_text(op)}")
        lo: int | None = None
        hi: int | None = None
        lo_open = hi_open = False
        if op not in ("=", ">=", ">", "<=", "<"):
            raise self.fail(f"Unrecognized numeric range operator: {op}")
        first = term(1)
        if len(terms) < 2 or not _is_number(first):
            raise self.fail(f"Value of {'equals' if op == '=' else op} must be numeric")
        bound = self.number(first)
        if op == "=":
            if len(terms) > 2:
                raise self.fail("Too many elements in numeric expression")
            eq = bound
            d = self.d
            return lambda v: _is_number(v) and _quantize(v, d) == eq
        if op in ("<", "<="):
            if len(terms) > 2:
                raise self.fail("Too many elements in numeric expression")
            hi, hi_open = bound, op == "<"
        else:
            lo, lo_open = bound, op == ">"
            if len(terms) > 2:
                op2 = terms[2]
                if not isinstance(op2, str):
                    raise self.fail(f"Bad value in numeric range: {_token_text(op2)}")
                if op2 not in ("<", "<="):
                    raise self.fail(f"Bad numeric range operator: {op2}")
                second = term(3)
                if len(terms) < 4 or not _is_number(second):
                    raise self.fail(f"Value of {op2} must be numeric")
                if len(terms) > 4:
                    raise self.fail("Too many terms in numeric range expression")
                hi, hi_open = self.number(second), op2 == "<"
                if hi <= lo:
                    raise self.fail("Bottom must be less than top")
        return _range_predicate(lo, lo_open, hi, hi_open, self.d)

    def anything_but(self, value: Any) -> Predicate:
        inner_op: str | None = None
        if isinstance(value, dict):
            if not value:
                raise self.fail("Anything-But expression name not found")
            (inner_op, value), *rest = value.items()
            if inner_op not in _ANYTHING_BUT_INNER[self.d.name]:
                raise self.fail(f"Unsupported anything-but pattern: {inner_op}")
            if not (isinstance(value, (list, str)) or _is_number(value)):
                raise self.fail(
                    "Value of anything-but must be an array or single string/number value."
                )
            excluded = self.anything_but_strings(value, inner_op)
            if rest:
                raise self.fail("Too many elements in numeric expression")
            return _anything_but_strings(inner_op, excluded, self.fail)
        if isinstance(value, list):
            strings: set[str] = set()
            numbers: set[int] = set()
            for item in value:
                if isinstance(item, str):
                    strings.add(item)
                elif _is_number(item):
                    numbers.add(self.number(item))
                else:
                    raise self.fail(
                        "Inside anything but list, start|null|boolean is not supported."
                    )
            if bool(strings) == bool(numbers):
                raise self.fail(
                    "Inside anything but list, either all values are number or string, "
                    "mixed type is not supported"
                )
        elif isinstance(value, str):
            strings, numbers = {value}, set()
        elif _is_number(value):
            strings, numbers = set(), {self.number(value)}
        else:
            raise self.fail("Value of anything-but must be an array or single string/number value.")
        if strings:
            return lambda v: not (type(v) is str and v in strings)
        d = self.d
        return lambda v: not (_is_number(v) and _quantize(v, d) in numbers)

    def anything_but_strings(self, value: Any, inner_op: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for item in items:
            if not isinstance(item, str):
                if inner_op == "equals-ignore-case":
                    raise self.fail(
                        "Inside anything-but/equals-ignore-case list, "
                        "number|start|null|boolean is not supported."
                    )
                if inner_op == "wildcard":
                    raise self.fail("wildcard match pattern must be a string")
                raise self.fail("prefix/suffix match pattern must be a string")
            if inner_op in ("prefix", "suffix") and not item:
                raise self.fail("Null prefix/suffix not allowed")
            out.append(item)
        return out


def _anything_but_strings(
    inner_op: str, excluded: list[str], fail: Callable[[str], PatternError]
) -> Predicate:
    if inner_op == "prefix":
        prefixes = tuple(excluded)
        return lambda v: not (type(v) is str and v.startswith(prefixes))
    if inner_op == "suffix":
        suffixes = tuple(excluded)
        return lambda v: not (type(v) is str and v.endswith(suffixes))
    if inner_op == "equals-ignore-case":
        lowered = {e.lower() for e in excluded}
        return lambda v: not (type(v) is str and v.lower() in lowered)
    regexes = [_wildcard_regex(e, fail) for e in excluded]
    return lambda v: not (type(v) is str and any(rx.fullmatch(v) for rx in regexes))


def _range_predicate(
    lo: int | None, lo_open: bool, hi: int | None, hi_open: bool, d: _Dialect
) -> Predicate:
    def pred(v: Any) -> bool:
        if not _is_number(v):
            return False
        q = _quantize(v, d)
        if q is None:
            return False
        if lo is not None and (q <= lo if lo_open else q < lo):
            return False
        return not (hi is not None and (q >= hi if hi_open else q > hi))

    return pred


def _in_network(v: Any, net: _Network) -> bool:
    if type(v) is not str:
        return False
    address = _parse_ip(v)
    return address is not None and address.version == net.version and address in net


# ----------------------------------------------------------------------------- SNS limits


def _sns_keys(node: _Node) -> int:
    """Top-level keys of the widest ``$or`` alternative (nested policies: parent keys only)."""
    return len(node.fields) + sum(max(_sns_keys(b) for b in group) for group in node.ors)


def _sns_combinations(node: _Node, depth: int = 1) -> int:
    """Values x nesting depth, multiplied across keys; ``$or`` alternatives add up."""
    total = 1
    for _name, child in node.fields:
        if isinstance(child, _Node):
            total *= _sns_combinations(child, depth + 1)
        else:
            total *= _leaf_value_count(child) * depth
    for group in node.ors:
        total *= sum(_sns_combinations(b, depth) for b in group)
    return total


def _leaf_value_count(leaf: _Leaf) -> int:
    return (
        len(leaf.exact_str)
        + len(leaf.exact_q)
        + len(leaf.exact_raw)
        + leaf.lit_true
        + leaf.lit_false
        + leaf.lit_null
        + len(leaf.prefixes)
        + len(leaf.preds)
        + leaf.exists_true
        + leaf.exists_false
    )


# ----------------------------------------------------------------------------- public API


class Pattern:
    """A compiled event pattern or filter policy. Build with :func:`compile_pattern`."""

    __slots__ = ("source", "dialect", "scope", "_root")

    def __init__(self, source: Any, dialect: str, scope: str, root: _Node) -> None:
        self.source = source
        self.dialect = dialect
        self.scope = scope
        self._root = root

    def matches(self, event: Any) -> bool:
        """Whether ``event`` (a parsed JSON value) matches; a non-object has no fields."""
        return self._root.matches(event, event)

    def __repr__(self) -> str:
        return f"Pattern({json.dumps(self.source, sort_keys=True)}, dialect={self.dialect!r})"


def compile_pattern(
    pattern: dict[str, Any] | str, *, dialect: str = "eventbridge", scope: str = "MessageAttributes"
) -> Pattern:
    """Validate and compile an EventBridge event pattern or an SNS filter policy.

    ``dialect`` is ``"eventbridge"`` or ``"sns"``; ``scope`` (SNS only) is the subscription's
    ``FilterPolicyScope``, ``"MessageAttributes"`` (flat policy over message attributes, see
    :func:`sns_attribute_event`) or ``"MessageBody"`` (nested policy over the JSON body). A ``str``
    is JSON text. Raises :class:`PatternError` with AWS's message.
    """
    if dialect == "eventbridge":
        d = _EVENTBRIDGE
    elif dialect == "sns":
        d = _SNS
        if scope not in ("MessageAttributes", "MessageBody"):
            raise ValueError(f"unknown SNS filter policy scope {scope!r}")
    else:
        raise ValueError(f"unknown pattern dialect {dialect!r}")
    if isinstance(pattern, (str, bytes, bytearray)):
        try:
            parsed = json.loads(pattern)
        except (ValueError, RecursionError):
            reason = "Invalid JSON" if d is _EVENTBRIDGE else "failed to parse JSON."
            raise PatternError(d.prefix + reason, reason) from None
    else:
        parsed = pattern
    compiler = _Compiler(d, scope)
    try:
        root = compiler.compile(parsed)
    except RecursionError:
        raise compiler.fail("Pattern is nested too deeply") from None
    if d is _SNS:
        if _sns_keys(root) > SNS_MAX_KEYS:
            raise compiler.fail("Filter policy can not have more than 5 keys")
        if _sns_combinations(root) > SNS_MAX_COMBINATIONS:
            raise compiler.fail("Filter policy is too complex")
    source = json.loads(json.dumps(parsed))
    return Pattern(source, d.name, scope if d is _SNS else "", root)


def sns_attribute_event(attributes: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The object an SNS ``MessageAttributes``-scope filter policy is matched against.

    ``attributes`` maps a name to ``(DataType, StringValue)``. ``String`` (and custom
    ``String.x`` types) give the string; ``Number`` (and ``Number.x``) give an int or float parsed
    from the string, so numeric conditions compare numerically; ``String.Array`` gives the parsed
    JSON array (its strings, numbers, booleans and nulls are the attribute's values; text that is
    not a JSON array stays a string). ``Binary`` attributes are ignored by SNS filtering ("Filter
    policy constraints": SNS compares policies only with String, String.Array and Number
    attributes), so they are left out and ``exists: true`` does not see them.
    """
    event: dict[str, Any] = {}
    for name, (data_type, value) in attributes.items():
        base = data_type.split(".", 1)[0]
        if data_type == "String.Array":
            try:
                parsed = json.loads(value) if isinstance(value, (str, bytes)) else value
            except ValueError:
                parsed = value
            event[name] = parsed if isinstance(parsed, list) else value
        elif base == "Number":
            event[name] = _parse_number(value)
        elif base == "String":
            event[name] = value
    return event


def _parse_number(value: Any) -> Any:
    if _is_number(value):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


# ----------------------------------------------------------------------------- RuleSet


class _IndexNode:
    __slots__ = ("children", "exact", "prefixes", "prefix_lens")

    def __init__(self) -> None:
        self.children: dict[str, _IndexNode] = {}
        self.exact: dict[tuple[Any, ...], dict[Hashable, None]] = {}
        self.prefixes: dict[str, dict[Hashable, None]] = {}
        self.prefix_lens: list[int] = []


def _scalar_key(v: Any, d: _Dialect) -> tuple[Any, ...] | None:
    t = type(v)
    if t is str:
        return ("s", v)
    if t is bool:
        return ("t",) if v else ("f",)
    if t is int or t is float:
        q = _quantize(v, d)
        return ("q", q) if q is not None else ("r", v)
    if v is None:
        return ("z",)
    return None


class RuleSet:
    """Many patterns keyed by hashable keys; :meth:`match` returns the keys an event matches.

    Each pattern is indexed by one necessary condition (its *anchor*): a field outside any
    ``$or`` whose conditions are all exact values or case-sensitive prefixes. The index is a tree
    of field names; :meth:`match` walks the event only along indexed paths, collects the patterns
    whose anchor a leaf value hits, and fully verifies just those (plus the few patterns without
    an anchor). Among a pattern's possible anchors the one with the smallest buckets is chosen.
    Results come in the order patterns were added, so every replica sees the same order. All
    patterns must share one dialect (numbers are indexed at its precision).
    """

    __slots__ = (
        "_patterns",
        "_seq",
        "_next",
        "_anchors",
        "_pairs",
        "_pair_anchors",
        "_unindexed",
        "_root",
        "_dialect",
    )

    def __init__(self) -> None:
        self._patterns: dict[Hashable, Pattern] = {}
        self._seq: dict[Hashable, int] = {}
        self._next = 0
        self._anchors: dict[Hashable, tuple[_IndexNode, list[tuple[Any, ...]], list[str]]] = {}
        # Compound anchors: (path A, path B) -> (value key A, value key B) -> patterns.
        self._pairs: dict[
            tuple[tuple[str, ...], tuple[str, ...]],
            dict[tuple[tuple[Any, ...], tuple[Any, ...]], dict[Hashable, None]],
        ] = {}
        self._pair_anchors: dict[Hashable, tuple[Any, list[Any]]] = {}
        self._unindexed: dict[Hashable, None] = {}
        self._root = _IndexNode()
        self._dialect: _Dialect = _EVENTBRIDGE

    def __len__(self) -> int:
        return len(self._patterns)

    def __contains__(self, key: object) -> bool:
        return key in self._patterns

    def add(self, key: Hashable, pattern: Pattern) -> None:
        """Add ``pattern`` under ``key``, replacing any pattern already there."""
        self.remove(key)
        dialect = _SNS if pattern.dialect == "sns" else _EVENTBRIDGE
        if not self._patterns:
            self._dialect = dialect
        elif dialect is not self._dialect:
            raise ValueError("a RuleSet holds patterns of one dialect")
        self._patterns[key] = pattern
        self._seq[key] = self._next
        self._next += 1
        for bucket in self._place(key):
            size = len(bucket)
            # Anchors are chosen by bucket sizes at add time, so early patterns may all pick a
            # field that later turns out unselective (every rule names the same "source"). When
            # a bucket reaches 16, 32, 64, ... entries, re-place its patterns: those with a
            # cheaper anchor elsewhere move. Doubling keeps the work amortised O(1) per add.
            if size >= _REBALANCE_MIN and size & (size - 1) == 0:
                for other in list(bucket):
                    if other in bucket:
                        self._unplace(other)
                        self._place(other)

    def _place(self, key: Hashable) -> list[dict[Hashable, None]]:
        """Index ``key`` under its cheapest anchor; returns the buckets it went into."""
        candidates = list(_anchor_candidates(self._patterns[key]._root, ()))
        exact = sorted(
            ((path, leaf) for path, leaf in candidates if not leaf.prefixes),
            key=lambda item: item[0],
        )
        if len(exact) >= 2:
            (path_a, leaf_a), (path_b, leaf_b) = exact[0], exact[1]
            pair_keys = [(a, b) for a in leaf_a.index_keys() for b in leaf_b.index_keys()]
            if len(pair_keys) <= _PAIR_KEYS_MAX:
                table = self._pairs.setdefault((path_a, path_b), {})
                for pk in pair_keys:
                    table.setdefault(pk, {})[key] = None
                self._pair_anchors[key] = ((path_a, path_b), pair_keys)
                return []
        best: tuple[int, tuple[str, ...], _Leaf] | None = None
        for path, leaf in candidates:
            cost = self._cost(path, leaf)
            if best is None or cost < best[0]:
                best = (cost, path, leaf)
        if best is None:
            self._unindexed[key] = None
            return []
        _cost, path, leaf = best
        node = self._root
        for name in path:
            node = node.children.setdefault(name, _IndexNode())
        keys = leaf.index_keys()
        buckets: list[dict[Hashable, None]] = []
        for k in keys:
            bucket = node.exact.setdefault(k, {})
            bucket[key] = None
            buckets.append(bucket)
        for p in leaf.prefixes:
            pbucket = node.prefixes.get(p)
            if pbucket is None:
                pbucket = node.prefixes[p] = {}
                if len(p) not in node.prefix_lens:
                    node.prefix_lens.append(len(p))
                    node.prefix_lens.sort()
            pbucket[key] = None
            buckets.append(pbucket)
        self._anchors[key] = (node, keys, list(leaf.prefixes))
        return buckets

    def _cost(self, path: tuple[str, ...], leaf: _Leaf) -> int:
        node: _IndexNode | None = self._root
        for name in path:
            if node is None:
                break
            node = node.children.get(name)
        keys = leaf.index_keys()
        if node is None:
            return len(keys) + 2 * len(leaf.prefixes)
        cost = sum(len(node.exact.get(k, ())) + 1 for k in keys)
        # A prefix is probed once per length per value and may collect more rules: count double.
        cost += sum(2 * (len(node.prefixes.get(p, ())) + 1) for p in leaf.prefixes)
        return cost

    def remove(self, key: Hashable) -> None:
        """Remove the pattern under ``key``; a missing key is a no-op."""
        if self._patterns.pop(key, None) is None:
            return
        del self._seq[key]
        if self._unindexed.pop(key, _MISSING) is not _MISSING:
            return
        self._unplace(key)

    def _unplace(self, key: Hashable) -> None:
        pair = self._pair_anchors.pop(key, None)
        if pair is not None:
            paths, pair_keys = pair
            table = self._pairs[paths]
            for pk in pair_keys:
                bucket = table[pk]
                del bucket[key]
                if not bucket:
                    del table[pk]
            if not table:
                del self._pairs[paths]
            return
        node, keys, prefixes = self._anchors.pop(key)
        for k in keys:
            bucket = node.exact[k]
            del bucket[key]
            if not bucket:
                del node.exact[k]
        for p in prefixes:
            pbucket = node.prefixes.get(p)
            if pbucket is None:
                continue
            pbucket.pop(key, None)
            if not pbucket:
                del node.prefixes[p]
                if all(len(q) != len(p) for q in node.prefixes):
                    node.prefix_lens.remove(len(p))

    def match(self, event: Any) -> list[Hashable]:
        """Keys of the patterns ``event`` matches, each once, in the order they were added."""
        candidates: dict[Hashable, None] = dict(self._unindexed)
        self._walk(self._root, event, candidates)
        for (path_a, path_b), table in self._pairs.items():
            keys_a = _keys_at(event, path_a, self._dialect)
            if not keys_a:
                continue
            keys_b = _keys_at(event, path_b, self._dialect)
            for ka in keys_a:
                for kb in keys_b:
                    bucket = table.get((ka, kb))
                    if bucket:
                        candidates.update(bucket)
        patterns = self._patterns
        matched = [k for k in candidates if patterns[k]._root.matches(event, event)]
        if len(matched) > 1:
            matched.sort(key=self._seq.__getitem__)
        return matched

    def _walk(self, node: _IndexNode, value: Any, out: dict[Hashable, None]) -> None:
        if isinstance(value, list):
            for item in value:
                self._walk(node, item, out)
            return
        if isinstance(value, dict):
            children = node.children
            if not children:
                return
            if len(children) <= len(value):
                for name, child in children.items():
                    sub = value.get(name, _MISSING)
                    if sub is not _MISSING:
                        self._walk(child, sub, out)
            else:
                for name, sub in value.items():
                    found = children.get(name)
                    if found is not None:
                        self._walk(found, sub, out)
            return
        if node.exact:
            bucket = node.exact.get(_scalar_key(value, self._dialect) or ("?",))
            if bucket:
                out.update(bucket)
        if node.prefix_lens and type(value) is str:
            n_value = len(value)
            for n in node.prefix_lens:
                if n > n_value:
                    break
                pbucket = node.prefixes.get(value[:n])
                if pbucket:
                    out.update(pbucket)


def _keys_at(value: Any, path: tuple[str, ...], d: _Dialect) -> list[tuple[Any, ...]]:
    """Index keys of the leaf values at ``path`` (arrays transparent)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    depth_end = len(path)
    while stack:
        v, i = stack.pop()
        if isinstance(v, list):
            stack.extend((item, i) for item in v)
        elif isinstance(v, dict):
            if i < depth_end and path[i] in v:
                stack.append((v[path[i]], i + 1))
        elif i == depth_end:
            k = _scalar_key(v, d)
            if k is not None:
                out.append(k)
    return out


def _anchor_candidates(
    node: _Node, path: tuple[str, ...]
) -> Iterable[tuple[tuple[str, ...], _Leaf]]:
    """Fields every match needs (outside ``$or``) whose conditions the index can look up."""
    for name, child in node.fields:
        if isinstance(child, _Node):
            yield from _anchor_candidates(child, (*path, name))
        elif child.indexable:
            yield (*path, name), child
