"""The ``States.*`` intrinsic functions of Amazon States Language (pure).

An intrinsic is parsed once into a tree (``parse``) and evaluated against the effective input,
the context object and the variables (``Call.evaluate``). Arguments are string literals in single
quotes (``\\'``, ``\\{``, ``\\}`` and ``\\\\`` escaped), numbers, ``true``/``false``/``null``, paths
(``$.x``, ``$$.Execution.Id``, ``$var``) or nested intrinsics. A failure at run time is
``IntrinsicError``, which the interpreter reports as ``States.IntrinsicFailure``.

Randomness (``States.UUID``, ``States.MathRandom`` without a seed) comes from the ``Entropy``
the caller passes, so an execution replayed from its journal draws the same values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from broker.adapters.asl.jsonpath import PathError, PathNotFound, compile_path

ARRAY_RANGE_ITEMS_MAX = 1000
HASH_INPUT_CHARS_MAX = 10_000
NESTING_MAX = 16
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


class IntrinsicError(ValueError):
    """An intrinsic that cannot be evaluated (``States.IntrinsicFailure``)."""


class IntrinsicSyntaxError(ValueError):
    """An intrinsic that does not parse (an invalid definition)."""


class Entropy(Protocol):
    def random_float(self) -> float: ...

    def uuid4(self) -> str: ...


@dataclass(frozen=True)
class Literal:
    value: Any

    def evaluate(self, doc: Any, context: Any, variables: dict[str, Any], entropy: Entropy) -> Any:
        return self.value


@dataclass(frozen=True)
class PathArg:
    text: str

    def evaluate(self, doc: Any, context: Any, variables: dict[str, Any], entropy: Entropy) -> Any:
        path = compile_path(self.text)
        if path.root == "$$":
            base = context
        elif path.root == "$":
            base = doc
        else:
            if path.root not in variables:
                raise IntrinsicError(f"The variable '${path.root}' is not defined")
            base = variables[path.root]
        try:
            return path.get(base)
        except PathNotFound:
            raise IntrinsicError(
                f"The JsonPath argument '{self.text}' could not be found in the input"
            ) from None


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]

    def evaluate(self, doc: Any, context: Any, variables: dict[str, Any], entropy: Entropy) -> Any:
        values = [arg.evaluate(doc, context, variables, entropy) for arg in self.args]
        fn = FUNCTIONS[self.name][0]
        try:
            return fn(values, entropy)
        except IntrinsicError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            raise IntrinsicError(f"{self.name}: {exc}") from None


def is_intrinsic(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("States.") and text.rstrip().endswith(")")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, why: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(f"The intrinsic function '{self.text}' is invalid: {why}")

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def call(self, depth: int) -> Call:
        if depth > NESTING_MAX:
            raise self.error("nested too deeply")
        match = re.compile(r"States\.[A-Za-z0-9]+").match(self.text, self.pos)
        if match is None:
            raise self.error("expected a States.* function name")
        name = match.group(0)
        if name not in FUNCTIONS:
            raise self.error(f"unknown function {name}")
        self.pos = match.end()
        self.ws()
        if self.text[self.pos : self.pos + 1] != "(":
            raise self.error("expected '('")
        self.pos += 1
        args: list[Any] = []
        self.ws()
        if self.text[self.pos : self.pos + 1] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.arg(depth))
                self.ws()
                ch = self.text[self.pos : self.pos + 1]
                if ch == ",":
                    self.pos += 1
                    continue
                if ch == ")":
                    self.pos += 1
                    break
                raise self.error("expected ',' or ')'")
        lo, hi = FUNCTIONS[name][1], FUNCTIONS[name][2]
        if not lo <= len(args) <= hi:
            expected = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"{name} takes {expected} arguments, got {len(args)}")
        return Call(name, tuple(args))

    def arg(self, depth: int) -> Any:
        self.ws()
        rest = self.text[self.pos :]
        if rest.startswith("'"):
            return Literal(self.string())
        if rest.startswith("States."):
            return self.call(depth + 1)
        if rest.startswith("$"):
            return PathArg(self.path())
        for word, value in (("true", True), ("false", False), ("null", None)):
            if rest.startswith(word):
                self.pos += len(word)
                return Literal(value)
        match = _NUMBER_RE.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
            return Literal(json.loads(match.group(0)))
        raise self.error(f"unexpected argument at position {self.pos}")

    def string(self) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                # \{ and \} stay escaped for States.Format; others unescape
                out.append("\\" + nxt if nxt in "{}" else nxt)
                self.pos += 2
                continue
            if ch == "'":
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated string")

    def path(self) -> str:
        start = self.pos
        depth = 0
        quote = ""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"" and depth:
                quote = ch
            elif ch in "[(":
                depth += 1
            elif ch in "])":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        try:
            compile_path(text)
        except PathError as exc:
            raise self.error(str(exc)) from None
        return text


_PARSED: dict[str, Call] = {}


def parse(text: str) -> Call:
    cached = _PARSED.get(text)
    if cached is not None:
        return cached
    parser = _Parser(text.strip())
    call = parser.call(0)
    parser.ws()
    if parser.pos != len(parser.text):
        raise parser.error("unexpected text after the call")
    if len(_PARSED) > 4096:
        _PARSED.clear()
    _PARSED[text] = call
    return call


# -- the functions ---------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _need_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise IntrinsicError(f"{what} must be a string")
    return value


def _need_int(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise IntrinsicError(f"{what} must be an integer")
    return value


def _need_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise IntrinsicError(f"{what} must be an array")
    return value


def _format(args: list[Any], entropy: Entropy) -> str:
    template = _need_str(args[0], "The first argument of States.Format")
    values = args[1:]
    out: list[str] = []
    i = 0
    used = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and i + 1 < len(template) and template[i + 1] in "{}":
            out.append(template[i + 1])
            i += 2
            continue
        if template.startswith("{}", i):
            if used >= len(values):
                raise IntrinsicError("States.Format has more {} placeholders than arguments")
            value = values[used]
            used += 1
            out.append(value if isinstance(value, str) else _json(value))
            i += 2
            continue
        out.append(ch)
        i += 1
    if used != len(values):
        raise IntrinsicError("States.Format has more arguments than {} placeholders")
    return "".join(out)


def _string_to_json(args: list[Any], entropy: Entropy) -> Any:
    text = _need_str(args[0], "The argument of States.StringToJson")
    try:
        return json.loads(text)
    except ValueError:
        raise IntrinsicError("The argument of States.StringToJson is not valid JSON") from None


def _array_partition(args: list[Any], entropy: Entropy) -> list[Any]:
    items = _need_list(args[0], "The first argument of States.ArrayPartition")
    size = _need_int(args[1], "The chunk size of States.ArrayPartition")
    if size < 1:
        raise IntrinsicError("The chunk size of States.ArrayPartition must be positive")
    return [items[i : i + size] for i in range(0, len(items), size)]


def _array_range(args: list[Any], entropy: Entropy) -> list[int]:
    start = _need_int(args[0], "The start of States.ArrayRange")
    end = _need_int(args[1], "The end of States.ArrayRange")
    step = _need_int(args[2], "The step of States.ArrayRange")
    if step == 0:
        raise IntrinsicError("The step of States.ArrayRange cannot be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > ARRAY_RANGE_ITEMS_MAX:
        raise IntrinsicError(f"States.ArrayRange can make at most {ARRAY_RANGE_ITEMS_MAX} items")
    return out


def _array_get_item(args: list[Any], entropy: Entropy) -> Any:
    items = _need_list(args[0], "The first argument of States.ArrayGetItem")
    index = _need_int(args[1], "The index of States.ArrayGetItem")
    if not 0 <= index < len(items):
        raise IntrinsicError(f"The index {index} is out of the array's bounds")
    return items[index]


def _array_unique(args: list[Any], entropy: Entropy) -> list[Any]:
    items = _need_list(args[0], "The argument of States.ArrayUnique")
    seen: set[str] = set()
    out = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _math_random(args: list[Any], entropy: Entropy) -> int:
    start = _need_int(args[0], "The start of States.MathRandom")
    end = _need_int(args[1], "The end of States.MathRandom")
    if end <= start:
        raise IntrinsicError("The end of States.MathRandom must be greater than its start")
    if len(args) > 2:
        seed = _need_int(args[2], "The seed of States.MathRandom")
        digest = hashlib.sha256(f"mathrandom:{seed}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
    else:
        fraction = entropy.random_float()
    return start + int(fraction * (end - start))


def _math_add(args: list[Any], entropy: Entropy) -> int:
    return _need_int(args[0], "States.MathAdd's first argument") + _need_int(
        args[1], "States.MathAdd's second argument"
    )


def _string_split(args: list[Any], entropy: Entropy) -> list[str]:
    text = _need_str(args[0], "The first argument of States.StringSplit")
    delimiters = _need_str(args[1], "The delimiter of States.StringSplit")
    if not delimiters:
        return [text]
    pattern = "[" + re.escape(delimiters) + "]"
    return [part for part in re.split(pattern, text) if part != ""]


_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(args: list[Any], entropy: Entropy) -> str:
    data = args[0]
    if data is None:
        raise IntrinsicError("The data of States.Hash cannot be null")
    text = data if isinstance(data, str) else _json(data)
    if len(text) > HASH_INPUT_CHARS_MAX:
        raise IntrinsicError(f"The data of States.Hash is over {HASH_INPUT_CHARS_MAX} characters")
    algorithm = _need_str(args[1], "The algorithm of States.Hash")
    name = _HASHES.get(algorithm)
    if name is None:
        raise IntrinsicError(
            f"The algorithm '{algorithm}' is not one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
        )
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def _b64encode(args: list[Any], entropy: Entropy) -> str:
    text = _need_str(args[0], "The argument of States.Base64Encode")
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _b64decode(args: list[Any], entropy: Entropy) -> str:
    text = _need_str(args[0], "The argument of States.Base64Decode")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise IntrinsicError("The argument of States.Base64Decode is not valid base64") from None


def _json_merge(args: list[Any], entropy: Entropy) -> dict[str, Any]:
    if not isinstance(args[0], dict) or not isinstance(args[1], dict):
        raise IntrinsicError("The arguments of States.JsonMerge must be objects")
    if args[2] is not False:
        raise IntrinsicError("States.JsonMerge supports only a shallow merge (false)")
    return {**args[0], **args[1]}


Fn = Callable[[list[Any], Entropy], Any]
#: name -> (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Fn, int, int]] = {
    "States.Format": (_format, 1, 1 << 10),
    "States.StringToJson": (_string_to_json, 1, 1),
    "States.JsonToString": (lambda a, e: _json(a[0]), 1, 1),
    "States.Array": (lambda a, e: list(a), 0, 1 << 10),
    "States.ArrayPartition": (_array_partition, 2, 2),
    "States.ArrayContains": (
        lambda a, e: a[1] in _need_list(a[0], "The first argument of States.ArrayContains"),
        2,
        2,
    ),
    "States.ArrayRange": (_array_range, 3, 3),
    "States.ArrayGetItem": (_array_get_item, 2, 2),
    "States.ArrayLength": (
        lambda a, e: len(_need_list(a[0], "The argument of States.ArrayLength")),
        1,
        1,
    ),
    "States.ArrayUnique": (_array_unique, 1, 1),
    "States.MathRandom": (_math_random, 2, 3),
    "States.MathAdd": (_math_add, 2, 2),
    "States.StringSplit": (_string_split, 2, 2),
    "States.UUID": (lambda a, e: e.uuid4(), 0, 0),
    "States.Hash": (_hash, 2, 2),
    "States.Base64Encode": (_b64encode, 1, 1),
    "States.Base64Decode": (_b64decode, 1, 1),
    "States.JsonMerge": (_json_merge, 3, 3),
}
