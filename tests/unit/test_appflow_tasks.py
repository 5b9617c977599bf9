"""The AppFlow record pipeline (broker/adapters/appflow_tasks.py): compiling tasks, each task
type and operator, type conversion, per-record errors, and definitions that are refused."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from broker.adapters import appflow_tasks as T


def task(
    kind: str, fields: list[str], op: str | None = "NO_OP", dest: str | None = None, **props: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"taskType": kind, "sourceFields": fields}
    if op is not None:
        out["connectorOperator"] = {"S3": op}
    if dest is not None:
        out["destinationField"] = dest
    if props:
        out["taskProperties"] = props
    return out


def run(tasks: list[dict[str, Any]], records: list[dict[str, Any]]) -> T.Result:
    return T.run(T.compile_tasks(tasks, operator_key="S3"), records)


MAP_ALL = task("Map_all", [], None)

ROWS = [
    {"id": "1", "name": "ann", "amount": "50", "ts": "2024-01-01T00:00:00Z"},
    {"id": "2", "name": "bob", "amount": "150", "ts": "2024-02-01T00:00:00Z"},
    {"id": "3", "name": "cyd", "amount": "250", "ts": "2024-03-01T00:00:00Z"},
    {"id": "4", "name": "", "amount": "", "ts": ""},
]


@pytest.mark.parametrize(
    ("op", "props", "ids"),
    [
        ("GREATER_THAN", {"DATA_TYPE": "integer", "VALUE": "100"}, ["2", "3"]),
        ("LESS_THAN", {"DATA_TYPE": "integer", "VALUE": "150"}, ["1"]),
        ("GREATER_THAN_OR_EQUAL_TO", {"DATA_TYPE": "integer", "VALUE": "150"}, ["2", "3"]),
        ("LESS_THAN_OR_EQUAL_TO", {"DATA_TYPE": "double", "VALUE": "150"}, ["1", "2"]),
        ("EQUAL_TO", {"DATA_TYPE": "integer", "VALUE": "250"}, ["3"]),
        ("EQUAL_TO", {"DATA_TYPE": "integer", "VALUES": '["50", "250"]'}, ["1", "3"]),
        ("NOT_EQUAL_TO", {"DATA_TYPE": "integer", "VALUE": "250"}, ["1", "2", "4"]),
        (
            "BETWEEN",
            {"DATA_TYPE": "integer", "LOWER_BOUND": "50", "UPPER_BOUND": "150"},
            ["1", "2"],
        ),
        ("GREATER_THAN", {"VALUE": "100"}, ["2", "3"]),  # numbers without DATA_TYPE
    ],
)
def test_filter_operators(op: str, props: dict[str, str], ids: list[str]) -> None:
    result = run([task("Filter", ["amount"], op, **props), MAP_ALL], ROWS)
    assert [r["id"] for r in result.records] == ids
    assert result.filtered == len(ROWS) - len(ids)
    assert result.errors == 0


def test_filter_contains_and_dates() -> None:
    contains = run([task("Filter", ["name"], "CONTAINS", VALUE="b"), MAP_ALL], ROWS)
    assert [r["id"] for r in contains.records] == ["2"]
    between = run(
        [
            task(
                "Filter",
                ["ts"],
                "BETWEEN",
                DATA_TYPE="datetime",
                LOWER_BOUND="2024-01-15T00:00:00Z",
                UPPER_BOUND=str(T.to_epoch_ms("2024-03-01T00:00:00Z")),
            ),
            MAP_ALL,
        ],
        ROWS,
    )
    assert [r["id"] for r in between.records] == ["2", "3"]


def test_filter_value_of_the_wrong_type_is_a_record_error() -> None:
    result = run(
        [task("Filter", ["amount"], "GREATER_THAN", DATA_TYPE="integer", VALUE="1"), MAP_ALL],
        [{"amount": "12"}, {"amount": "twelve"}],
    )
    assert result.records == [{"amount": "12"}]
    assert result.errors == 1
    assert "twelve" in result.error_samples[0]


def test_projection_and_map_with_conversion() -> None:
    result = run(
        [
            task("Filter", ["id", "amount", "ts"], "PROJECTION"),
            task("Map", ["id"], dest="ident", DESTINATION_DATA_TYPE="integer"),
            task("Map", ["amount"], SOURCE_DATA_TYPE="string", DESTINATION_DATA_TYPE="double"),
            task("Map", ["ts"], dest="day", DESTINATION_DATA_TYPE="date"),
        ],
        ROWS[:2],
    )
    assert result.records == [
        {"ident": 1, "amount": 50.0, "day": "2024-01-01"},
        {"ident": 2, "amount": 150.0, "day": "2024-02-01"},
    ]


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("42", "integer", 42),
        ("42.0", "long", 42),
        (7, "string", "7"),
        (True, "string", "true"),
        ("2.5", "double", 2.5),
        ("yes", "boolean", True),
        ("0", "boolean", False),
        ("1700000000000", "datetime", "2023-11-14T22:13:20.000Z"),
        ("2024-02-29T23:30:00+02:00", "datetime", "2024-02-29T21:30:00.000Z"),
        ("2024-02-29", "date", "2024-02-29"),
        ("", "integer", None),
        (None, "string", None),
    ],
)
def test_convert(value: Any, kind: str, expected: Any) -> None:
    assert T.convert(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [("4.5", "integer"), ("abc", "double"), ("maybe", "boolean"), ("2024-13-01", "date")],
)
def test_convert_refuses(value: Any, kind: str) -> None:
    with pytest.raises(T.RecordError):
        T.convert(value, kind)


def test_iso_round_trip() -> None:
    for ms in (0, 951_782_400_000, 1_709_251_199_999, -86_400_000):
        assert T.to_epoch_ms(T.iso_ms(ms)) == ms


def test_map_conversion_error_drops_the_record_and_counts() -> None:
    result = run(
        [task("Map", ["n"], DESTINATION_DATA_TYPE="integer")],
        [{"n": "1"}, {"n": "x"}, {"n": "3"}],
    )
    assert result.records == [{"n": 1}, {"n": 3}]
    assert (result.errors, len(result.error_samples)) == (1, 1)
    assert result.error_samples[0].startswith("record 2:")


def test_transforms() -> None:
    rec = {"first": "Ada", "last": "Lovelace", "ssn": "123-45-6789", "a": "6", "b": "4"}
    result = run(
        [
            task("Merge", ["first", "last"], dest="full", CONCAT_FORMAT="${first} ${last}"),
            task("Mask", ["ssn"], "MASK_FIRST_N", MASK_LENGTH="7", MASK_VALUE="#"),
            task("Arithmetic", ["a", "b"], "SUBTRACTION", dest="diff"),
            task(
                "Arithmetic",
                ["a", "b"],
                "DIVISION",
                dest="ratio",
                MATH_OPERATION_FIELDS_ORDER="b,a",
            ),
            task("Truncate", ["last"], TRUNCATE_LENGTH="4"),
            task("Map", ["ssn"]),
            task("Map", ["last"], dest="short"),
        ],
        [rec],
    )
    assert result.records == [
        {"full": "Ada Lovelace", "diff": 2, "ratio": 4 / 6, "ssn": "#######6789", "short": "Love"}
    ]


@pytest.mark.parametrize(
    ("op", "props", "expected"),
    [
        ("MASK_ALL", {}, "*****"),
        ("MASK_LAST_N", {"MASK_LENGTH": "2"}, "sec**"),
        ("MASK_FIRST_N", {"MASK_LENGTH": "9"}, "*****"),
    ],
)
def test_masks(op: str, props: dict[str, str], expected: str) -> None:
    result = run([task("Mask", ["s"], op, **props), task("Map", ["s"])], [{"s": "secre"}])
    assert result.records == [{"s": expected}]


def test_arithmetic_errors_are_per_record() -> None:
    result = run(
        [
            task("Arithmetic", ["a", "b"], "DIVISION", dest="q"),
            task("Arithmetic", ["a", "b"], "ADDITION", dest="s"),
        ],
        [{"a": "1", "b": "0"}, {"a": "x", "b": "1"}, {"a": "", "b": "1"}, {"a": "9", "b": "3"}],
    )
    assert result.records == [{"q": 3.0, "s": 12}]
    assert result.errors == 3


def test_validate_actions() -> None:
    records = [{"n": "1"}, {"n": "-2"}, {"n": "0"}, {"n": "x"}]
    dropped = run([task("Validate", ["n"], "VALIDATE_NON_NEGATIVE"), MAP_ALL], records)
    assert [r["n"] for r in dropped.records] == ["1", "0"]
    assert dropped.dropped == 2
    kept = run(
        [task("Validate", ["n"], "VALIDATE_NON_ZERO", VALIDATION_ACTION="NoAction"), MAP_ALL],
        records,
    )
    assert len(kept.records) == 4 and kept.errors == 2
    stop = run(
        [task("Validate", ["n"], "VALIDATE_NUMERIC", VALIDATION_ACTION="TerminateFlow"), MAP_ALL],
        records,
    )
    assert stop.terminated is not None and "record 4" in stop.terminated
    assert len(stop.records) == 3
    nonnull = run([task("Validate", ["n"], "VALIDATE_NON_NULL"), MAP_ALL], [{"n": ""}, {}])
    assert nonnull.dropped == 2


def test_map_all_excludes_and_passthrough() -> None:
    result = run(
        [
            task("Map_all", [], None, EXCLUDE_SOURCE_FIELDS_LIST='["secret"]'),
            task("Passthrough", ["n"], dest="copy"),
        ],
        [{"n": 1, "secret": "x", "o": {"k": [1]}}],
    )
    assert result.records == [{"n": 1, "o": {"k": [1]}, "copy": 1}]


def test_null_fields_fail_conditions_but_not_equal() -> None:
    result = run(
        [task("Filter", ["x"], "NOT_EQUAL_TO", VALUE="a"), MAP_ALL], [{"x": None}, {"x": "a"}, {}]
    )
    assert result.records == [{"x": None}, {}]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([], "at least one task"),
        ([task("Filter", ["a"], "PROJECTION")], "maps no field"),
        ([task("Nope", ["a"])], "taskType 'Nope'"),
        ([task("Partition", ["a"])], "Partition tasks are not supported"),
        ([task("Map", ["a", "b"])], "exactly one source field"),
        ([task("Filter", ["a"], "ADDITION"), MAP_ALL], "not a filter operator"),
        ([task("Filter", ["a"], "GREATER_THAN"), MAP_ALL], "VALUE is required"),
        ([task("Filter", ["a"], "GREATER_THAN", DATA_TYPE="integer", VALUE="x"), MAP_ALL], "VALUE"),
        (
            [task("Filter", ["a"], "BETWEEN", LOWER_BOUND="5", UPPER_BOUND="1"), MAP_ALL],
            "LOWER_BOUND must not be greater",
        ),
        ([task("Map", ["a"], DESTINATION_DATA_TYPE="blob")], "not a data type"),
        (
            [task("Filter", ["a"], "PROJECTION"), task("Map", ["b"])],
            "reads field 'b', which no PROJECTION filter pulls",
        ),
        (
            [task("Validate", ["a"], "VALIDATE_NUMERIC", VALIDATION_ACTION="Explode"), MAP_ALL],
            "VALIDATION_ACTION",
        ),
        ([task("Truncate", ["a"], TRUNCATE_LENGTH="-1"), MAP_ALL], "TRUNCATE_LENGTH"),
        ([task("Arithmetic", ["a"], "ADDITION", dest="s")], "at least two source fields"),
        ([task("Arithmetic", ["a", "b"], "ADDITION")], "needs a destinationField"),
        ([task("Map", ["a"], dest="x"), task("Map", ["b"], dest="x")], "more than one task"),
        (
            [
                {
                    "taskType": "Map",
                    "sourceFields": ["a"],
                    "connectorOperator": {"Salesforce": "NO_OP"},
                }
            ],
            "source connector is S3",
        ),
        ([task("Map", ["a"], "BOGUS")], "'BOGUS' is not an operator"),
    ],
)
def test_invalid_definitions(tasks: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(T.TaskError, match=message.replace("(", r"\(")):
        T.compile_tasks(tasks, operator_key="S3")


def test_destination_fields() -> None:
    pipe = T.compile_tasks(
        [task("Merge", ["a", "b"], dest="ab"), task("Map", ["a"], dest="x")], operator_key="S3"
    )
    assert pipe.destination_fields() == ["ab", "x"]
    assert T.compile_tasks([MAP_ALL]).destination_fields() is None


def test_module_is_pure() -> None:
    """No I/O, clock, threads or trio: the layering test's list of impure modules."""
    from tests.test_layering import IMPURE

    path = Path(T.__file__)
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & IMPURE, names & IMPURE
