"""AppFlow's tasks over records: the record pipeline of a flow run. Pure: no I/O, no clock, no
trio; records are plain dicts of field -> value, and every date is computed here from its text.

A flow's ``tasks`` (the ``Task`` shape of botocore's ``appflow`` model) compile once with
:func:`compile_tasks` (an invalid definition is :class:`TaskError`, whose message names the task
and what is wrong) into a :class:`Pipeline`; :func:`run` takes a batch of source records and
returns the destination records with the counts of what was filtered, dropped and failed.

Rules (the order tasks take effect in, whatever their order in the list):

1. ``Filter`` + ``PROJECTION``: only the listed source fields are read (every other field of the
   source record is dropped). Several projections add up. Other tasks may read only projected
   fields (checked at compile time).
2. ``Filter`` with a condition (``LESS_THAN``, ``GREATER_THAN``, ``LESS_THAN_OR_EQUAL_TO``,
   ``GREATER_THAN_OR_EQUAL_TO``, ``EQUAL_TO``, ``NOT_EQUAL_TO``, ``BETWEEN``, ``CONTAINS``) on
   its one source field: a record that does not satisfy every condition is *filtered* (not an
   error). Values compare as ``DATA_TYPE`` (a number type, ``boolean``, ``date``/``datetime``
   (epoch milliseconds or ISO 8601), else text); ``VALUE`` is the operand (``EQUAL_TO`` also
   takes ``VALUES``, a JSON array or comma-separated list, any of which matches), ``BETWEEN``
   takes ``LOWER_BOUND`` and ``UPPER_BOUND`` (inclusive). A missing or null field satisfies no
   condition but ``NOT_EQUAL_TO``. A field that cannot be read as ``DATA_TYPE`` is a record
   error.
3. ``Validate`` (``VALIDATE_NON_NULL``, ``VALIDATE_NON_ZERO``, ``VALIDATE_NON_NEGATIVE``,
   ``VALIDATE_NUMERIC``) on each source field; on failure ``VALIDATION_ACTION`` says what
   happens: ``DropRecord`` (the default: the record is dropped and counted), ``TerminateFlow``
   (the run stops with an error naming the field), ``NoAction`` (counted, kept).
4. Transforms, in list order, each writing its ``destinationField`` (default: its first source
   field) into the working record, so later tasks read the new value: ``Truncate``
   (``TRUNCATE_LENGTH`` characters), ``Mask`` (``MASK_ALL``, ``MASK_FIRST_N``/``MASK_LAST_N``
   with ``MASK_LENGTH``; ``MASK_VALUE`` is the mask character, ``*`` by default), ``Arithmetic``
   (``ADDITION``, ``SUBTRACTION``, ``MULTIPLICATION``, ``DIVISION`` over the source fields in
   ``MATH_OPERATION_FIELDS_ORDER`` or list order), ``Merge`` (``CONCAT_FORMAT`` with ``${field}``
   placeholders; the values joined with nothing between them without one). A transform whose
   destination is a new field name also puts it in the destination record.
5. The destination record: ``Map_all`` copies every (projected) field but those in
   ``EXCLUDE_SOURCE_FIELDS_LIST``; ``Map`` copies one source field to ``destinationField``,
   converted from ``SOURCE_DATA_TYPE`` to ``DESTINATION_DATA_TYPE`` when given; ``Passthrough``
   copies it unchanged.

A record error (a value that does not convert, an operand that is not a number, a division by
zero) drops that record and is counted; the first ``ERROR_SAMPLES_MAX`` messages are kept.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

TASKS_MAX = 1_000
SOURCE_FIELDS_MAX = 1_000
ERROR_SAMPLES_MAX = 10
PROPERTY_CHARS_MAX = 2_048
TRUNCATE_LENGTH_MAX = 1_000_000

PROJECTION = "PROJECTION"
NO_OP = "NO_OP"
COMPARISONS = frozenset(
    {
        "LESS_THAN",
        "GREATER_THAN",
        "LESS_THAN_OR_EQUAL_TO",
        "GREATER_THAN_OR_EQUAL_TO",
        "EQUAL_TO",
        "NOT_EQUAL_TO",
        "BETWEEN",
        "CONTAINS",
    }
)
ARITHMETIC = frozenset({"ADDITION", "SUBTRACTION", "MULTIPLICATION", "DIVISION"})
MASKS = frozenset({"MASK_ALL", "MASK_FIRST_N", "MASK_LAST_N"})
VALIDATIONS = frozenset(
    {"VALIDATE_NON_NULL", "VALIDATE_NON_ZERO", "VALIDATE_NON_NEGATIVE", "VALIDATE_NUMERIC"}
)
OPERATORS = frozenset({PROJECTION, NO_OP}) | COMPARISONS | ARITHMETIC | MASKS | VALIDATIONS
TASK_TYPES = (
    "Arithmetic",
    "Filter",
    "Map",
    "Map_all",
    "Mask",
    "Merge",
    "Passthrough",
    "Truncate",
    "Validate",
    "Partition",
)
VALIDATION_ACTIONS = ("DropRecord", "TerminateFlow", "NoAction")

INTEGER_TYPES = frozenset({"integer", "int", "long", "short", "byte", "bigint"})
NUMBER_TYPES = frozenset({"double", "float", "decimal", "number", "numeric", "percent", "currency"})
TEXT_TYPES = frozenset({"string", "text", "varchar", "char", "email", "phone", "url", "id"})
DATE_TYPES = frozenset({"date"})
DATETIME_TYPES = frozenset({"datetime", "timestamp", "time"})
BOOLEAN_TYPES = frozenset({"boolean", "bool"})
DATA_TYPES = INTEGER_TYPES | NUMBER_TYPES | TEXT_TYPES | DATE_TYPES | DATETIME_TYPES | BOOLEAN_TYPES

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_PLACEHOLDER_RE = re.compile(r"\$\{([^{}]+)\}")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class TaskError(ValueError):
    """The tasks are not a valid flow definition; the message says which task and why."""


class RecordError(ValueError):
    """One record cannot go through a task (a conversion, an operand)."""


# -- values -----------------------------------------------------------------------------------


def is_null(value: Any) -> bool:
    return value is None or value == ""


def to_number(value: Any) -> int | float:
    """An int or float from a number or its text; ``RecordError`` otherwise."""
    if isinstance(value, bool):
        raise RecordError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise RecordError(f"{_shown(value)} is not a number") from None
        if math.isnan(number) or math.isinf(number):
            raise RecordError(f"{_shown(value)} is not a finite number")
        return number
    raise RecordError(f"{_shown(value)} is not a number")


def to_int(value: Any) -> int:
    number = to_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise RecordError(f"{_shown(value)} is not an integer")
        return int(number)
    return number


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise RecordError(f"{_shown(value)} is not a boolean")


def _days_from_civil(y: int, m: int, d: int) -> int:
    return calendar.timegm((y, m, d, 0, 0, 0, 0, 0, 0)) // 86_400


def _civil_from_days(z: int) -> tuple[int, int, int]:
    """(year, month, day) of day ``z`` since 1970-01-01 (H. Hinnant's algorithm)."""
    z += 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def to_epoch_ms(value: Any) -> int:
    """Epoch milliseconds from a number (taken as milliseconds) or ISO 8601 text (UTC unless
    it names an offset)."""
    if isinstance(value, bool):
        raise RecordError(f"{value!r} is not a date")
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str):
        raise RecordError(f"{_shown(value)} is not a date")
    text = value.strip()
    if re.fullmatch(r"-?\d{1,16}", text):
        return int(text)
    m = _ISO_RE.match(text)
    if m is None:
        raise RecordError(f"{_shown(value)} is not a date (epoch milliseconds or ISO 8601)")
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hh, mi, ss = int(m.group(4) or 0), int(m.group(5) or 0), int(m.group(6) or 0)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        raise RecordError(f"{_shown(value)} is not a valid date")
    if hh > 23 or mi > 59 or ss > 60:
        raise RecordError(f"{_shown(value)} is not a valid time")
    frac = m.group(7) or ""
    ms = int((frac + "000")[:3]) if frac else 0
    offset_min = 0
    zone = m.group(8)
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset_min = sign * (int(digits[:2]) * 60 + int(digits[2:]))
    seconds = _days_from_civil(y, mo, d) * 86_400 + hh * 3600 + mi * 60 + ss
    return (seconds - offset_min * 60) * 1000 + ms


def iso_ms(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    days, rem = divmod(epoch_ms, 86_400_000)
    y, m, d = _civil_from_days(days)
    secs, ms = divmod(rem, 1000)
    hh, rest = divmod(secs, 3600)
    mi, ss = divmod(rest, 60)
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{ms:03d}Z"


def iso_date(epoch_ms: int) -> str:
    y, m, d = _civil_from_days(epoch_ms // 86_400_000)
    return f"{y:04d}-{m:02d}-{d:02d}"


def convert(value: Any, data_type: str) -> Any:
    """``value`` as ``data_type`` (one of ``DATA_TYPES``); null stays null."""
    if value is None:
        return None
    kind = data_type.lower()
    if kind in TEXT_TYPES:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return str(value)
    if value == "":
        return None
    if kind in INTEGER_TYPES:
        return to_int(value)
    if kind in NUMBER_TYPES:
        return float(to_number(value))
    if kind in BOOLEAN_TYPES:
        return to_bool(value)
    if kind in DATE_TYPES:
        return iso_date(to_epoch_ms(value))
    if kind in DATETIME_TYPES:
        return iso_ms(to_epoch_ms(value))
    raise RecordError(f"unknown data type {data_type}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _comparable(value: Any, data_type: str | None) -> Any:
    """A value to compare with ``<``/``==``: numbers for number types, epoch ms for dates,
    bools for booleans, text otherwise (or, with no ``DATA_TYPE``, a number when it reads as
    one)."""
    kind = (data_type or "").lower()
    if kind in INTEGER_TYPES or kind in NUMBER_TYPES:
        return to_number(value)
    if kind in DATE_TYPES or kind in DATETIME_TYPES:
        return to_epoch_ms(value)
    if kind in BOOLEAN_TYPES:
        return to_bool(value)
    if kind:
        return value if isinstance(value, str) else convert(value, "string")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        return to_number(value)
    except RecordError:
        return value if isinstance(value, str) else convert(value, "string")


# -- compiled tasks ---------------------------------------------------------------------------

Predicate = Callable[[Any], bool]
Transform = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class _Condition:
    field: str
    test: Predicate
    null_passes: bool
    label: str


@dataclass(frozen=True)
class _Validation:
    field: str
    test: Predicate
    action: str
    label: str


@dataclass(frozen=True)
class _Transform:
    dest: str
    fn: Transform
    new_field: bool


@dataclass(frozen=True)
class _Map:
    source: str
    dest: str
    source_type: str | None
    dest_type: str | None


@dataclass(frozen=True)
class Pipeline:
    projection: tuple[str, ...] | None
    conditions: tuple[_Condition, ...]
    validations: tuple[_Validation, ...]
    transforms: tuple[_Transform, ...]
    map_all: bool
    excluded: frozenset[str]
    maps: tuple[_Map, ...]

    def destination_fields(self) -> list[str] | None:
        """The destination record's fields in order, or None when ``Map_all`` makes them
        depend on the source."""
        if self.map_all:
            return None
        out = [t.dest for t in self.transforms if t.new_field]
        out += [m.dest for m in self.maps if m.dest not in out]
        return out


@dataclass
class Result:
    records: list[dict[str, Any]] = field(default_factory=list)
    filtered: int = 0
    dropped: int = 0  # by Validate with DropRecord
    errors: int = 0  # records that failed a task
    error_samples: list[str] = field(default_factory=list)
    terminated: str | None = None  # a TerminateFlow validation failed: why

    def add_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES_MAX:
            self.error_samples.append(message)


def _prop(task: dict[str, Any], key: str) -> str | None:
    props = task.get("taskProperties") or {}
    value = props.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if len(value) > PROPERTY_CHARS_MAX:
        raise TaskError(f"task property {key} must be at most {PROPERTY_CHARS_MAX} characters")
    return value


def _list_prop(text: str) -> list[str]:
    """A JSON array of strings or a comma-separated list."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError:
            raise TaskError(f"{_shown(text)} is not a JSON array") from None
        if not isinstance(items, list):
            raise TaskError(f"{_shown(text)} is not a JSON array")
        return [str(i) for i in items]
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _data_type(task: dict[str, Any], key: str, where: str) -> str | None:
    kind = _prop(task, key)
    if kind is None or kind == "":
        return None
    if kind.lower() not in DATA_TYPES:
        raise TaskError(
            f"{where}: {key} {kind!r} is not a data type polymq knows "
            f"(one of {', '.join(sorted(DATA_TYPES))})"
        )
    return kind.lower()


def _int_prop(task: dict[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    text = _prop(task, key)
    if text is None:
        raise TaskError(f"{where}: task property {key} is required")
    try:
        value = int(text)
    except ValueError:
        raise TaskError(f"{where}: {key} must be an integer, got {_shown(text)}") from None
    if not lo <= value <= hi:
        raise TaskError(f"{where}: {key} must be between {lo} and {hi}, got {value}")
    return value


def _operand(task: dict[str, Any], key: str, data_type: str | None, where: str) -> Any:
    text = _prop(task, key)
    if text is None:
        raise TaskError(f"{where}: task property {key} is required")
    try:
        return _comparable(text, data_type)
    except RecordError as exc:
        raise TaskError(f"{where}: {key} {exc}") from None


def _condition(task: dict[str, Any], op: str, where: str) -> _Condition:
    sources = task["sourceFields"]
    if len(sources) != 1:
        raise TaskError(f"{where}: a {op} filter takes exactly one source field")
    name = sources[0]
    kind = _data_type(task, "DATA_TYPE", where)
    label = f"{name} {op}"

    def comparable(value: Any) -> Any:
        return _comparable(value, kind)

    if op == "BETWEEN":
        lo = _operand(task, "LOWER_BOUND", kind, where)
        hi = _operand(task, "UPPER_BOUND", kind, where)
        _check_ordered(lo, hi, where)
        return _Condition(name, lambda v: lo <= comparable(v) <= hi, False, label)
    if op == "CONTAINS":
        needle = _prop(task, "VALUE")
        if needle is None:
            raise TaskError(f"{where}: task property VALUE is required")
        return _Condition(name, lambda v: needle in convert(v, "string"), False, label)
    if op == "EQUAL_TO" and _prop(task, "VALUES") is not None:
        raw = _list_prop(_prop(task, "VALUES") or "")
        if not raw:
            raise TaskError(f"{where}: VALUES names no value")
        try:
            values = [_comparable(v, kind) for v in raw]
        except RecordError as exc:
            raise TaskError(f"{where}: VALUES {exc}") from None
        return _Condition(name, lambda v: comparable(v) in values, False, label)
    operand = _operand(task, "VALUE", kind, where)
    tests: dict[str, Predicate] = {
        "LESS_THAN": lambda v: comparable(v) < operand,
        "GREATER_THAN": lambda v: comparable(v) > operand,
        "LESS_THAN_OR_EQUAL_TO": lambda v: comparable(v) <= operand,
        "GREATER_THAN_OR_EQUAL_TO": lambda v: comparable(v) >= operand,
        "EQUAL_TO": lambda v: comparable(v) == operand,
        "NOT_EQUAL_TO": lambda v: comparable(v) != operand,
    }
    return _Condition(name, tests[op], op == "NOT_EQUAL_TO", label)


def _check_ordered(lo: Any, hi: Any, where: str) -> None:
    try:
        bad = lo > hi
    except TypeError:
        raise TaskError(f"{where}: LOWER_BOUND and UPPER_BOUND are not comparable") from None
    if bad:
        raise TaskError(f"{where}: LOWER_BOUND must not be greater than UPPER_BOUND")


def _validation_test(op: str) -> Predicate:
    if op == "VALIDATE_NON_NULL":
        return lambda v: not is_null(v)

    def numeric(check: Callable[[float], bool]) -> Predicate:
        def test(v: Any) -> bool:
            try:
                return check(to_number(v))
            except RecordError:
                return False

        return test

    if op == "VALIDATE_NON_ZERO":
        return numeric(lambda n: n != 0)
    if op == "VALIDATE_NON_NEGATIVE":
        return numeric(lambda n: n >= 0)
    return numeric(lambda n: True)


def _mask(task: dict[str, Any], op: str, source: str, where: str) -> Transform:
    char = _prop(task, "MASK_VALUE") or "*"
    if op == "MASK_ALL":

        def mask_all(rec: dict[str, Any]) -> Any:
            value = rec.get(source)
            return None if value is None else char * len(convert(value, "string"))

        return mask_all
    n = _int_prop(task, "MASK_LENGTH", where, 0, TRUNCATE_LENGTH_MAX)
    first = op == "MASK_FIRST_N"

    def mask_n(rec: dict[str, Any]) -> Any:
        value = rec.get(source)
        if value is None:
            return None
        text = convert(value, "string")
        k = min(n, len(text))
        return char * k + text[k:] if first else text[: len(text) - k] + char * k

    return mask_n


def _arithmetic(task: dict[str, Any], op: str, where: str) -> Transform:
    sources: list[str] = list(task["sourceFields"])
    order = _prop(task, "MATH_OPERATION_FIELDS_ORDER")
    if order:
        ordered = _list_prop(order)
        if sorted(ordered) != sorted(sources):
            raise TaskError(
                f"{where}: MATH_OPERATION_FIELDS_ORDER must list the source fields, each once"
            )
        sources = ordered
    if len(sources) < 2:
        raise TaskError(f"{where}: {op} takes at least two source fields")

    def compute(rec: dict[str, Any]) -> Any:
        values = []
        for name in sources:
            value = rec.get(name)
            if is_null(value):
                raise RecordError(f"{op}: field {name} is null")
            try:
                values.append(to_number(value))
            except RecordError as exc:
                raise RecordError(f"{op}: field {name}: {exc}") from None
        acc = values[0]
        for v in values[1:]:
            if op == "ADDITION":
                acc = acc + v
            elif op == "SUBTRACTION":
                acc = acc - v
            elif op == "MULTIPLICATION":
                acc = acc * v
            else:
                if v == 0:
                    raise RecordError(f"DIVISION: field {sources[values.index(v)]} is zero")
                acc = acc / v
        return acc

    return compute


def _merge(task: dict[str, Any]) -> Transform:
    sources: list[str] = list(task["sourceFields"])
    fmt = _prop(task, "CONCAT_FORMAT")

    def text(value: Any) -> str:
        return "" if value is None else convert(value, "string")

    if not fmt:
        return lambda rec: "".join(text(rec.get(name)) for name in sources)
    return lambda rec: _PLACEHOLDER_RE.sub(lambda m: text(rec.get(m.group(1))), fmt)


def _operator(task: dict[str, Any], where: str, operator_key: str | None) -> str | None:
    ops = task.get("connectorOperator") or {}
    if not isinstance(ops, dict):
        raise TaskError(f"{where}: connectorOperator must be a structure")
    if not ops:
        return None
    if len(ops) != 1:
        raise TaskError(f"{where}: connectorOperator must name exactly one connector")
    key, op = next(iter(ops.items()))
    if operator_key is not None and key != operator_key:
        raise TaskError(
            f"{where}: connectorOperator is for {key}, but the source connector is {operator_key}"
        )
    if op not in OPERATORS:
        raise TaskError(f"{where}: {op!r} is not an operator")
    return str(op)


def compile_tasks(tasks: Iterable[dict[str, Any]], *, operator_key: str | None = None) -> Pipeline:
    """Check and compile ``tasks``; ``operator_key`` is the ``connectorOperator`` member the
    source connector's tasks must use (``S3``, ``CustomConnector``), None to accept any."""
    task_list = list(tasks)
    if not task_list:
        raise TaskError("a flow needs at least one task")
    if len(task_list) > TASKS_MAX:
        raise TaskError(f"a flow can have at most {TASKS_MAX} tasks")
    projection: list[str] | None = None
    conditions: list[_Condition] = []
    validations: list[_Validation] = []
    transforms: list[_Transform] = []
    maps: list[_Map] = []
    map_all = False
    excluded: set[str] = set()
    reads: list[tuple[str, str]] = []  # (task label, field) for the projection check
    produced: set[str] = set()
    for i, task in enumerate(task_list, 1):
        kind = task.get("taskType")
        where = f"task {i} ({kind})"
        if kind not in TASK_TYPES:
            raise TaskError(f"task {i}: taskType {kind!r} is not one of {', '.join(TASK_TYPES)}")
        if kind == "Partition":
            raise TaskError(f"{where}: Partition tasks are not supported by polymq")
        sources = task.get("sourceFields")
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise TaskError(f"{where}: sourceFields must be a list of field names")
        if len(sources) > SOURCE_FIELDS_MAX:
            raise TaskError(f"{where}: at most {SOURCE_FIELDS_MAX} source fields")
        op = _operator(task, where, operator_key)
        dest = task.get("destinationField") or None
        if kind == "Filter":
            if op is None:
                raise TaskError(f"{where}: a Filter task needs a connectorOperator")
            if op == PROJECTION:
                if not sources or any(s == "" for s in sources):
                    raise TaskError(f"{where}: a PROJECTION filter lists the fields to pull")
                projection = (projection or []) + [
                    s for s in sources if s not in (projection or [])
                ]
                continue
            if op not in COMPARISONS:
                raise TaskError(f"{where}: {op} is not a filter operator")
            conditions.append(_condition(task, op, where))
            reads.extend((where, s) for s in sources)
        elif kind == "Validate":
            if op not in VALIDATIONS:
                raise TaskError(
                    f"{where}: a Validate task takes one of {', '.join(sorted(VALIDATIONS))}"
                )
            if not sources:
                raise TaskError(f"{where}: a Validate task needs a source field")
            action = _prop(task, "VALIDATION_ACTION") or "DropRecord"
            if action not in VALIDATION_ACTIONS:
                raise TaskError(
                    f"{where}: VALIDATION_ACTION must be one of {', '.join(VALIDATION_ACTIONS)}"
                )
            test = _validation_test(op)
            validations.extend(_Validation(s, test, action, f"{s} {op}") for s in sources)
            reads.extend((where, s) for s in sources)
        elif kind in ("Map", "Passthrough"):
            if len(sources) != 1:
                raise TaskError(f"{where}: a {kind} task takes exactly one source field")
            if op is not None and op != NO_OP:
                raise TaskError(f"{where}: a {kind} task takes the NO_OP operator")
            source_type = _data_type(task, "SOURCE_DATA_TYPE", where) if kind == "Map" else None
            dest_type = _data_type(task, "DESTINATION_DATA_TYPE", where) if kind == "Map" else None
            maps.append(_Map(sources[0], dest or sources[0], source_type, dest_type))
            if sources[0] not in produced:
                reads.append((where, sources[0]))
        elif kind == "Map_all":
            map_all = True
            listed = _prop(task, "EXCLUDE_SOURCE_FIELDS_LIST")
            if listed:
                excluded.update(_list_prop(listed))
        else:  # Truncate, Mask, Arithmetic, Merge
            if not sources:
                raise TaskError(f"{where}: a {kind} task needs a source field")
            target = dest or sources[0]
            fn: Transform
            if kind == "Truncate":
                if len(sources) != 1:
                    raise TaskError(f"{where}: a Truncate task takes exactly one source field")
                n = _int_prop(task, "TRUNCATE_LENGTH", where, 0, TRUNCATE_LENGTH_MAX)
                src = sources[0]

                def truncate(rec: dict[str, Any], src: str = src, n: int = n) -> Any:
                    value = rec.get(src)
                    return None if value is None else convert(value, "string")[:n]

                fn = truncate
            elif kind == "Mask":
                if op not in MASKS:
                    raise TaskError(f"{where}: a Mask task takes one of {', '.join(sorted(MASKS))}")
                if len(sources) != 1:
                    raise TaskError(f"{where}: a Mask task takes exactly one source field")
                fn = _mask(task, op, sources[0], where)
            elif kind == "Arithmetic":
                if op not in ARITHMETIC:
                    raise TaskError(
                        f"{where}: an Arithmetic task takes one of {', '.join(sorted(ARITHMETIC))}"
                    )
                if not dest:
                    raise TaskError(f"{where}: an Arithmetic task needs a destinationField")
                fn = _arithmetic(task, op, where)
            else:
                if not dest:
                    raise TaskError(f"{where}: a Merge task needs a destinationField")
                fn = _merge(task)
            reads.extend((where, s) for s in sources if s not in produced)
            new_field = target not in sources and target not in produced
            transforms.append(_Transform(target, fn, new_field))
            produced.add(target)
    if projection is not None:
        allowed = set(projection) | produced
        for label, name in reads:
            if name not in allowed:
                raise TaskError(
                    f"{label}: reads field {name!r}, which no PROJECTION filter pulls from the "
                    "source"
                )
    if not map_all and not maps and not any(t.new_field for t in transforms):
        raise TaskError(
            "the flow maps no field to the destination: add a Map, Map_all or Passthrough task"
        )
    dests = [m.dest for m in maps]
    dupes = sorted({d for d in dests if dests.count(d) > 1})
    if dupes:
        raise TaskError(f"destination field {dupes[0]!r} is mapped by more than one task")
    return Pipeline(
        projection=tuple(projection) if projection is not None else None,
        conditions=tuple(conditions),
        validations=tuple(validations),
        transforms=tuple(transforms),
        map_all=map_all,
        excluded=frozenset(excluded),
        maps=tuple(maps),
    )


# -- running ----------------------------------------------------------------------------------


def run(pipeline: Pipeline, records: Iterable[dict[str, Any]]) -> Result:
    """The destination records of one batch, and what happened to the others. Stops at the
    first ``TerminateFlow`` failure (``result.terminated``)."""
    out = Result()
    keep = pipeline.projection
    conditions = pipeline.conditions
    validations = pipeline.validations
    transforms = pipeline.transforms
    maps = pipeline.maps
    map_all = pipeline.map_all
    excluded = pipeline.excluded
    append = out.records.append
    for index, source in enumerate(records):
        rec = {k: source[k] for k in keep if k in source} if keep is not None else source
        try:
            passed = True
            for cond in conditions:
                value = rec.get(cond.field)
                if is_null(value):
                    if not cond.null_passes:
                        passed = False
                        break
                elif not cond.test(value):
                    passed = False
                    break
            if not passed:
                out.filtered += 1
                continue
            dropped = False
            for check in validations:
                if check.test(rec.get(check.field)):
                    continue
                if check.action == "TerminateFlow":
                    out.terminated = (
                        f"record {index + 1}: validation {check.label} failed "
                        "(VALIDATION_ACTION TerminateFlow)"
                    )
                    return out
                if check.action == "DropRecord":
                    dropped = True
                    break
                out.add_error(f"record {index + 1}: validation {check.label} failed")
            if dropped:
                out.dropped += 1
                continue
            dest: dict[str, Any] = {}
            if transforms:
                if rec is source:
                    rec = dict(source)
                for t in transforms:
                    rec[t.dest] = t.fn(rec)
                    if t.new_field:
                        dest[t.dest] = rec[t.dest]
            if map_all:
                mapped = {k: v for k, v in rec.items() if k not in excluded}
                mapped.update(dest)
                dest = mapped
            for m in maps:
                value = rec.get(m.source)
                if m.source_type is not None:
                    value = convert(value, m.source_type)
                if m.dest_type is not None:
                    value = convert(value, m.dest_type)
                dest[m.dest] = value
        except RecordError as exc:
            out.add_error(f"record {index + 1}: {exc}")
            continue
        except TypeError as exc:  # comparing values of different kinds without a DATA_TYPE
            out.add_error(f"record {index + 1}: {exc}")
            continue
        append(dest)
    return out
