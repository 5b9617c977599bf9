"""Definition checks (broker/adapters/asl/validate.py), the JSONPath subset and timestamps:
invalid definitions with the AWS diagnostic code and location each gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.adapters.asl.jsonpath import PathError, compile_path, set_reference
from broker.adapters.asl.timestamps import format_ms, parse_ms
from broker.adapters.asl.validate import invalid_definition_message, parse_definition


def sm(states: dict[str, Any], start: str = "A", **top: Any) -> str:
    return json.dumps({"StartAt": start, "States": states, **top})


PASS_END = {"Type": "Pass", "End": True}

INVALID: list[tuple[str, str, str, str]] = [
    ("not json", "{", "INVALID_JSON_DESCRIPTION", "/"),
    ("not an object", "[]", "INVALID_JSON_DESCRIPTION", "/"),
    ("no StartAt", json.dumps({"States": {"A": PASS_END}}), "SCHEMA_VALIDATION_FAILED", "/"),
    ("StartAt missing", sm({"A": PASS_END}, start="B"), "MISSING_TRANSITION_TARGET", "/StartAt"),
    ("unknown top field", sm({"A": PASS_END}, Foo=1), "SCHEMA_VALIDATION_FAILED", "/Foo"),
    (
        "bad type",
        sm({"A": {"Type": "Nope", "End": True}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Type",
    ),
    ("no Type", sm({"A": {"End": True}}), "SCHEMA_VALIDATION_FAILED", "/States/A"),
    (
        "Next missing",
        sm({"A": {"Type": "Pass", "Next": "B"}}),
        "MISSING_TRANSITION_TARGET",
        "/States/A/Next",
    ),
    ("neither Next nor End", sm({"A": {"Type": "Pass"}}), "SCHEMA_VALIDATION_FAILED", "/States/A"),
    ("unreachable", sm({"A": PASS_END, "B": PASS_END}), "UNREACHABLE_STATE", "/States/B"),
    (
        "unknown state field",
        sm({"A": {**PASS_END, "Resource": "x"}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Resource",
    ),
    (
        "Task without Resource",
        sm({"A": {"Type": "Task", "End": True}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
    ),
    (
        "bad InputPath",
        sm({"A": {**PASS_END, "InputPath": "a.b"}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/InputPath",
    ),
    (
        "ResultPath not a reference",
        sm({"A": {**PASS_END, "ResultPath": "$.a[*]"}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/ResultPath",
    ),
    (
        "bad Parameters path",
        sm({"A": {**PASS_END, "Parameters": {"x.$": "nope"}}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Parameters/x.$",
    ),
    (
        "unknown intrinsic",
        sm({"A": {**PASS_END, "Parameters": {"x.$": "States.Nope(1)"}}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Parameters/x.$",
    ),
    (
        "intrinsic arity",
        sm({"A": {**PASS_END, "Parameters": {"x.$": "States.MathAdd(1)"}}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Parameters/x.$",
    ),
    (
        "Wait with two fields",
        sm({"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "End": True}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
    ),
    (
        "Wait bad timestamp",
        sm({"A": {"Type": "Wait", "Timestamp": "tomorrow", "End": True}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Timestamp",
    ),
    (
        "Choice without Choices",
        sm({"A": {"Type": "Choice"}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
    ),
    (
        "Choice rule two operators",
        sm(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "B"}
                    ],
                },
                "B": {"Type": "Succeed"},
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Choices/0",
    ),
    (
        "Choice wrong operand type",
        sm(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.a", "NumericEquals": "1", "Next": "B"}],
                },
                "B": {"Type": "Succeed"},
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Choices/0/NumericEquals",
    ),
    (
        "Choice Default missing",
        sm(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "B"}],
                    "Default": "C",
                },
                "B": {"Type": "Succeed"},
            }
        ),
        "MISSING_TRANSITION_TARGET",
        "/States/A/Default",
    ),
    (
        "nested Next",
        sm(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [
                        {"Not": {"Variable": "$.a", "IsNull": True, "Next": "B"}, "Next": "B"}
                    ],
                },
                "B": {"Type": "Succeed"},
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Choices/0/Not/Next",
    ),
    (
        "Retry States.ALL not last",
        sm(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                }
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Retry/0/ErrorEquals",
    ),
    (
        "BackoffRate below 1",
        sm(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}],
                }
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Retry/0/BackoffRate",
    ),
    (
        "Catch Next missing",
        sm(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "End": True,
                    "Catch": [{"ErrorEquals": ["X"], "Next": "Z"}],
                }
            }
        ),
        "MISSING_TRANSITION_TARGET",
        "/States/A/Catch/0/Next",
    ),
    (
        "Parallel branch bad",
        sm(
            {
                "A": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [{"StartAt": "x", "States": {"x": {"Type": "Pass", "Next": "A"}}}],
                }
            }
        ),
        "MISSING_TRANSITION_TARGET",
        "/States/A/Branches/0/States/x/Next",
    ),
    (
        "Map without processor",
        sm({"A": {"Type": "Map", "End": True}}),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
    ),
    (
        "JSONPath field in JSONata",
        sm({"A": {**PASS_END, "InputPath": "$"}}, QueryLanguage="JSONata"),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/InputPath",
    ),
    (
        "JSONata syntax",
        sm({"A": {**PASS_END, "Output": "{% $states.input.( %}"}}, QueryLanguage="JSONata"),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Output",
    ),
    (
        "JSONPath state in JSONata machine",
        sm({"A": {**PASS_END, "QueryLanguage": "JSONPath"}}, QueryLanguage="JSONata"),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/QueryLanguage",
    ),
    (
        "HeartbeatSeconds >= TimeoutSeconds",
        sm(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "End": True,
                    "TimeoutSeconds": 5,
                    "HeartbeatSeconds": 5,
                }
            }
        ),
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/HeartbeatSeconds",
    ),
    ("no terminal state", sm({"A": {"Type": "Pass", "Next": "A"}}), "NO_TERMINAL_STATE", "/"),
]


@pytest.mark.parametrize(
    ("text", "code", "location"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_definitions(text: str, code: str, location: str) -> None:
    _doc, diagnostics = parse_definition(text)
    assert (code, location) in [(d.code, d.location) for d in diagnostics], diagnostics
    message = invalid_definition_message(diagnostics)
    assert message.startswith("Invalid State Machine Definition: '")
    assert f"{code}: " in message and f" at {location}'" in message


def test_valid_definition_has_no_diagnostics() -> None:
    text = sm(
        {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "q", "MessageBody": {"t.$": "$$.Task.Token"}},
                "Retry": [
                    {"ErrorEquals": ["States.Timeout"], "JitterStrategy": "FULL"},
                    {"ErrorEquals": ["States.ALL"]},
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "F"}],
                "Next": "M",
            },
            "M": {
                "Type": "Map",
                "ItemsPath": "$.xs",
                "ItemProcessor": {"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}},
                "Next": "C",
            },
            "C": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.a", "IsPresent": True},
                            {"Variable": "$.a", "StringMatches": "x*"},
                        ],
                        "Next": "S",
                    }
                ],
                "Default": "F",
            },
            "S": {"Type": "Succeed"},
            "F": {"Type": "Fail", "ErrorPath": "$.e.Error"},
        }
    )
    _doc, diagnostics = parse_definition(text)
    assert diagnostics == []


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T12:00:00.250Z", 1_709_208_000_250),
        ("2024-01-01T02:00:00+02:00", 1_704_067_200_000),
        ("2024-02-30T00:00:00Z", None),
        ("2024-01-01 00:00:00Z", None),
        ("2024-01-01T00:00:00", None),
    ],
)
def test_timestamps(text: str, ms: int | None) -> None:
    assert parse_ms(text) == ms
    if ms is not None:
        assert parse_ms(format_ms(ms)) == ms


def test_jsonpath_errors_and_reference_paths() -> None:
    for bad in ("a.b", "$.a[", "$.a[?(@.x ~ 1)]", "$[1:2:0]"):
        with pytest.raises(PathError):
            compile_path(bad)
    path = compile_path("$.a[0].b")
    assert set_reference({"a": [{}]}, path, 1) == {"a": [{"b": 1}]}
    assert set_reference({"a": 1}, compile_path("$"), 2) == 2
