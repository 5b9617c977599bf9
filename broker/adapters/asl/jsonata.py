"""JSONata in Amazon States Language (``QueryLanguage: "JSONata"``), evaluated with the
``jsonata-python`` library (pure: the functions that would read a clock or draw random numbers
are replaced by ones fed from the execution's inputs).

An expression is a string ``{% ... %}``. It sees ``$states`` (``input``, ``context``, and where
AWS defines them ``result`` and ``errorOutput``), the workflow variables by name, and AWS's
added functions ``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid`` and ``$parse``.
A failure to evaluate, or an expression that yields nothing where a value is needed, is
``QueryError`` (``States.QueryEvaluationError``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import jsonata as _jsonata

from broker.adapters.asl.intrinsics import Entropy

_J = _jsonata.Jsonata
EXPRESSIONS_CACHED_MAX = 4096
_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


class QueryError(ValueError):
    """``States.QueryEvaluationError``."""


class QuerySyntaxError(ValueError):
    """An expression that does not parse (an invalid definition)."""


def is_expr(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


def _source(text: str) -> str:
    return text[2:-2].strip()


_CACHE: dict[str, Any] = {}


def compile_expr(text: str) -> Any:
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    try:
        expr = _J(_source(text))
    except Exception as exc:
        raise QuerySyntaxError(
            f"The JSONata expression '{_source(text)}' is invalid: {exc}"
        ) from None
    if len(_CACHE) >= EXPRESSIONS_CACHED_MAX:
        _CACHE.clear()
    _CACHE[text] = expr
    return expr


def plain(value: Any) -> Any:
    """The library's values as plain JSON values (its lists are a subclass; integral floats
    stay floats, as JSON numbers they print the same)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise QueryError(
        f"The JSONata expression yielded a value that is not JSON: {type(value).__name__}"
    )


def _bindings(
    states: dict[str, Any], variables: dict[str, Any], now_ms: int, entropy: Entropy
) -> dict[str, Any]:
    from broker.adapters.asl.timestamps import format_ms

    def partition(items: Any, size: Any) -> list[Any]:
        if not isinstance(items, list) or not isinstance(size, int | float) or size < 1:
            raise QueryError("$partition needs an array and a positive chunk size")
        n = int(size)
        return [items[i : i + n] for i in range(0, len(items), n)]

    def rng(start: Any, end: Any, step: Any) -> list[Any]:
        s, e, st = int(start), int(end), int(step)
        if st == 0:
            raise QueryError("$range needs a non-zero step")
        return list(range(s, e + (1 if st > 0 else -1), st))

    def hash_(value: Any, algorithm: Any) -> str:
        name = _HASHES.get(str(algorithm))
        if name is None:
            raise QueryError(f"$hash does not know the algorithm {algorithm}")
        text = value if isinstance(value, str) else json.dumps(plain(value), separators=(",", ":"))
        return hashlib.new(name, text.encode()).hexdigest()

    def random(*seed: Any) -> float:
        if seed and seed[0] is not None:
            digest = hashlib.sha256(f"random:{seed[0]}".encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2**64
        return entropy.random_float()

    def parse(text: Any) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise QueryError("$parse needs a JSON string") from None

    fns: dict[str, Callable[..., Any]] = {
        "now": lambda: format_ms(now_ms),
        "millis": lambda: now_ms,
        "partition": partition,
        "range": rng,
        "hash": hash_,
        "random": random,
        "uuid": lambda: entropy.uuid4(),
        "parse": parse,
    }
    out: dict[str, Any] = dict(variables)
    out.update({name: _J.JLambda(fn) for name, fn in fns.items()})
    out["states"] = states
    return out


def evaluate(
    text: str,
    states: dict[str, Any],
    variables: dict[str, Any],
    now_ms: int,
    entropy: Entropy,
    *,
    field: str = "",
) -> Any:
    """The value of ``{% expr %}``; ``QueryError`` when it fails or yields nothing."""
    expr = compile_expr(text)
    try:
        value = expr.evaluate(None, _bindings(states, variables, now_ms, entropy))
    except QueryError:
        raise
    except Exception as exc:
        raise QueryError(
            f"An error occurred while evaluating the expression '{_source(text)}'"
            f"{' for the field ' + repr(field) if field else ''}: {exc}"
        ) from None
    if value is None:
        raise QueryError(
            f"The JSONata expression '{_source(text)}'"
            f"{' specified for the field ' + repr(field) if field else ''} returned nothing "
            "(undefined)."
        )
    return plain(value)


def resolve(
    template: Any,
    states: dict[str, Any],
    variables: dict[str, Any],
    now_ms: int,
    entropy: Entropy,
    *,
    field: str = "",
) -> Any:
    """A JSON template with ``{% %}`` strings anywhere in it, evaluated."""
    if is_expr(template):
        return evaluate(template, states, variables, now_ms, entropy, field=field)
    if isinstance(template, dict):
        return {
            k: resolve(v, states, variables, now_ms, entropy, field=f"{field}/{k}")
            for k, v in template.items()
        }
    if isinstance(template, list):
        return [
            resolve(v, states, variables, now_ms, entropy, field=f"{field}[{i}]")
            for i, v in enumerate(template)
        ]
    return template


def check(template: Any) -> None:
    """``QuerySyntaxError`` for the first expression in ``template`` that does not parse."""
    if is_expr(template):
        compile_expr(template)
    elif isinstance(template, dict):
        for v in template.values():
            check(v)
    elif isinstance(template, list):
        for v in template:
            check(v)
