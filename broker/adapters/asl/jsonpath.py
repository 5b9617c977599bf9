"""The JSONPath that Amazon States Language uses, evaluated here (pure).

A small evaluator rather than a general library: ASL needs exactly the Jayway subset AWS
documents, with AWS's answers (a definite path that matches nothing is an error the caller
names, an indefinite one yields a list), and it runs on every state transition, so paths are
compiled once per definition and evaluated by walking a tuple of steps.

Grammar::

    path     := root step*            root: "$" | "$$" (context object) | "$name" (variable)
    step     := "." name | ".*" | ".." name | "..*" | "[" selector "]"
    selector := "*" | int ("," int)* | quoted ("," quoted)* | [int] ":" [int] [":" int]
              | "?(" filter ")"
    filter   := or;  or := and ("||" and)*;  and := unary ("&&" unary)*
    unary    := "!" unary | "(" or ")" | operand [op operand]
    operand  := "@" step* | number | 'string' | "string" | true | false | null
    op       := == != < <= > >= =~

A *Reference Path* (``ResultPath``, ``ItemsPointer``) has only names and integer indexes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PATH_CHARS_MAX = 4096
_NAME_RE = re.compile(r"[^.\[\]()\s'\"=!<>&|,@]+")
_NUM_RE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


class PathError(ValueError):
    """A path that does not parse."""


class PathNotFound(LookupError):
    """A definite path that matches nothing in the document."""


@dataclass(frozen=True)
class Step:
    kind: str  # name | index | wildcard | descend | union | slice | filter
    arg: Any = None


class _Missing:
    pass


MISSING = _Missing()


@dataclass(frozen=True)
class Path:
    text: str
    root: str  # "$", "$$" or a variable name
    steps: tuple[Step, ...]

    @property
    def definite(self) -> bool:
        return all(step.kind in ("name", "index") for step in self.steps)

    @property
    def is_reference(self) -> bool:
        return self.root == "$" and self.definite

    def select(self, doc: Any) -> list[Any]:
        current = [doc]
        for step in self.steps:
            nxt: list[Any] = []
            for value in current:
                _apply(step, value, nxt)
            current = nxt
        return current

    def get(self, doc: Any) -> Any:
        """The value at a definite path (``PathNotFound`` when absent) or the list of matches
        of an indefinite one."""
        if self.definite:
            value = doc
            for step in self.steps:
                value = _child(step, value)
                if value is MISSING:
                    raise PathNotFound(self.text)
            return value
        return self.select(doc)

    def exists(self, doc: Any) -> bool:
        if self.definite:
            try:
                self.get(doc)
            except PathNotFound:
                return False
            return True
        return bool(self.select(doc))


def _child(step: Step, value: Any) -> Any:
    if step.kind == "name":
        if isinstance(value, dict) and step.arg in value:
            return value[step.arg]
        return MISSING
    if isinstance(value, list) and not isinstance(value, bool):
        index = step.arg
        if -len(value) <= index < len(value):
            return value[index]
    return MISSING


def _descendants(value: Any, out: list[Any]) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        out.append(item)
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _apply(step: Step, value: Any, out: list[Any]) -> None:
    kind = step.kind
    if kind in ("name", "index"):
        child = _child(step, value)
        if child is not MISSING:
            out.append(child)
    elif kind == "wildcard":
        if isinstance(value, dict):
            out.extend(value.values())
        elif isinstance(value, list):
            out.extend(value)
    elif kind == "descend":
        found: list[Any] = []
        _descendants(value, found)
        inner: Step = step.arg
        for item in found:
            _apply(inner, item, out)
    elif kind == "union":
        for part in step.arg:
            _apply(part, value, out)
    elif kind == "slice":
        if isinstance(value, list):
            start, stop, stride = step.arg
            out.extend(value[slice(start, stop, stride)])
    elif kind == "filter":
        test: Callable[[Any], bool] = step.arg
        if isinstance(value, list):
            out.extend(item for item in value if test(item))
        elif isinstance(value, dict):
            out.extend(item for item in value.values() if test(item))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, why: str) -> PathError:
        return PathError(f"The path '{self.text}' is invalid: {why} at position {self.pos}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def expect(self, token: str) -> None:
        self.skip_ws()
        if not self.text.startswith(token, self.pos):
            raise self.error(f"expected '{token}'")
        self.pos += len(token)

    def name(self) -> str:
        match = _NAME_RE.match(self.text, self.pos)
        if match is None:
            raise self.error("expected a name")
        self.pos = match.end()
        return match.group(0)

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated string")

    def integer(self) -> int | None:
        match = re.compile(r"-?\d+").match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return int(match.group(0))

    def steps(self, *, in_filter: bool = False) -> list[Step]:
        out: list[Step] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == ".":
                if self.peek(2) == "..":
                    self.pos += 2
                    if self.peek() == "*":
                        self.pos += 1
                        out.append(Step("descend", Step("wildcard")))
                    elif self.peek() == "[":
                        out.append(Step("descend", self.bracket()))
                    else:
                        out.append(Step("descend", Step("name", self.name())))
                    continue
                self.pos += 1
                if self.peek() == "*":
                    self.pos += 1
                    out.append(Step("wildcard"))
                else:
                    out.append(Step("name", self.name()))
            elif ch == "[":
                out.append(self.bracket())
            elif in_filter:
                break
            else:
                raise self.error(f"unexpected '{ch}'")
        return out

    def bracket(self) -> Step:
        self.expect("[")
        self.skip_ws()
        ch = self.peek()
        if ch == "*":
            self.pos += 1
            step = Step("wildcard")
        elif ch in ("'", '"'):
            names = [self.quoted()]
            self.skip_ws()
            while self.peek() == ",":
                self.pos += 1
                self.skip_ws()
                if self.peek() not in ("'", '"'):
                    raise self.error("expected a quoted name")
                names.append(self.quoted())
                self.skip_ws()
            step = (
                Step("name", names[0])
                if len(names) == 1
                else Step("union", tuple(Step("name", n) for n in names))
            )
        elif self.peek(2) == "?(":
            self.pos += 2
            test = self.filter_or()
            self.expect(")")
            step = Step("filter", test)
        else:
            first = self.integer()
            self.skip_ws()
            if self.peek() == ":":
                parts: list[int | None] = [first]
                while self.peek() == ":":
                    self.pos += 1
                    self.skip_ws()
                    parts.append(self.integer())
                    self.skip_ws()
                if len(parts) > 3:
                    raise self.error("too many ':' in a slice")
                while len(parts) < 3:
                    parts.append(None)
                if parts[2] == 0:
                    raise self.error("a slice step cannot be 0")
                step = Step("slice", tuple(parts))
            else:
                if first is None:
                    raise self.error("expected an index, a quoted name, '*' or a filter")
                indexes = [first]
                while self.peek() == ",":
                    self.pos += 1
                    self.skip_ws()
                    value = self.integer()
                    if value is None:
                        raise self.error("expected an index")
                    indexes.append(value)
                    self.skip_ws()
                step = (
                    Step("index", indexes[0])
                    if len(indexes) == 1
                    else Step("union", tuple(Step("index", i) for i in indexes))
                )
        self.expect("]")
        return step

    # -- filters --------------------------------------------------------------------------------

    def filter_or(self) -> Callable[[Any], bool]:
        parts = [self.filter_and()]
        self.skip_ws()
        while self.peek(2) == "||":
            self.pos += 2
            parts.append(self.filter_and())
            self.skip_ws()
        if len(parts) == 1:
            return parts[0]
        return lambda item: any(p(item) for p in parts)

    def filter_and(self) -> Callable[[Any], bool]:
        parts = [self.filter_unary()]
        self.skip_ws()
        while self.peek(2) == "&&":
            self.pos += 2
            parts.append(self.filter_unary())
            self.skip_ws()
        if len(parts) == 1:
            return parts[0]
        return lambda item: all(p(item) for p in parts)

    def filter_unary(self) -> Callable[[Any], bool]:
        self.skip_ws()
        if self.peek() == "!" and self.peek(2) != "!=":
            self.pos += 1
            inner = self.filter_unary()
            return lambda item: not inner(item)
        if self.peek() == "(":
            self.pos += 1
            inner = self.filter_or()
            self.expect(")")
            return inner
        left = self.operand()
        self.skip_ws()
        for op in ("==", "!=", "<=", ">=", "=~", "<", ">"):
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                self.skip_ws()
                right = self.regex() if op == "=~" else self.operand()
                return _comparison(op, left, right)
        return lambda item: _truthy(left(item))

    def regex(self) -> Callable[[Any], Any]:
        if self.peek() != "/":
            raise self.error("expected a /regex/")
        end = self.text.find("/", self.pos + 1)
        if end < 0:
            raise self.error("unterminated regex")
        source = self.text[self.pos + 1 : end]
        self.pos = end + 1
        flags = 0
        if self.peek() == "i":
            flags = re.IGNORECASE
            self.pos += 1
        try:
            compiled = re.compile(source, flags)
        except re.error as exc:
            raise self.error(f"bad regex ({exc})") from None
        return lambda item: compiled

    def operand(self) -> Callable[[Any], Any]:
        self.skip_ws()
        ch = self.peek()
        if ch == "@":
            self.pos += 1
            steps = tuple(self.steps(in_filter=True))
            path = Path("@", "@", steps)

            def at(item: Any) -> Any:
                if path.definite:
                    try:
                        return path.get(item)
                    except PathNotFound:
                        return MISSING
                return path.select(item)

            return at
        if ch in ("'", '"'):
            text = self.quoted()
            return lambda item: text
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return lambda item, value=value: value  # type: ignore[misc]
        match = _NUM_RE.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
            number = json.loads(match.group(0))
            return lambda item: number
        raise self.error("expected '@', a number, a string, true, false or null")


def _truthy(value: Any) -> bool:
    return value is not MISSING and value is not None and value is not False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparison(
    op: str, left: Callable[[Any], Any], right: Callable[[Any], Any]
) -> Callable[[Any], bool]:
    def test(item: Any) -> bool:
        a, b = left(item), right(item)
        if a is MISSING or b is MISSING:
            return False
        if op == "=~":
            return isinstance(a, str) and b.search(a) is not None
        if op == "==":
            return bool(a == b and (_is_number(a) == _is_number(b)))
        if op == "!=":
            return not (a == b and (_is_number(a) == _is_number(b)))
        if _is_number(a) and _is_number(b) or isinstance(a, str) and isinstance(b, str):
            if op == "<":
                return bool(a < b)
            if op == "<=":
                return bool(a <= b)
            if op == ">":
                return bool(a > b)
            return bool(a >= b)
        return False

    return test


_CACHE: dict[str, Path] = {}
_CACHE_MAX = 4096


def compile_path(text: str) -> Path:
    """Parse ``text`` once (cached); ``PathError`` when it is not a valid path."""
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathError(f"The path '{text}' is invalid: it must start with '$'")
    if len(text) > PATH_CHARS_MAX:
        raise PathError(f"The path is longer than {PATH_CHARS_MAX} characters")
    parser = _Parser(text)
    if text.startswith("$$"):
        root = "$$"
        parser.pos = 2
    else:
        parser.pos = 1
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, 1)
        if match is not None:
            root = match.group(0)
            parser.pos = match.end()
        else:
            root = "$"
    path = Path(text, root, tuple(parser.steps()))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[text] = path
    return path


def set_reference(doc: Any, path: Path, value: Any) -> Any:
    """``doc`` with ``value`` put at the reference path (ResultPath semantics): ``$`` replaces
    the whole document; missing objects on the way are created; the input is not changed."""
    if not path.steps:
        return value
    if not path.is_reference:
        raise PathError(f"The path '{path.text}' is not a reference path")
    return _set(doc, path.steps, 0, value, path.text)


def _set(node: Any, steps: tuple[Step, ...], i: int, value: Any, text: str) -> Any:
    step = steps[i]
    last = i == len(steps) - 1
    if step.kind == "name":
        if node is MISSING or node is None:
            node = {}
        if not isinstance(node, dict):
            raise PathNotFound(text)
        out = dict(node)
        out[step.arg] = (
            value if last else _set(node.get(step.arg, MISSING), steps, i + 1, value, text)
        )
        return out
    if not isinstance(node, list) or not -len(node) <= step.arg < len(node):
        raise PathNotFound(text)
    items = list(node)
    items[step.arg] = value if last else _set(items[step.arg], steps, i + 1, value, text)
    return items
