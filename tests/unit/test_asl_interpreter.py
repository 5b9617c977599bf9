"""The pure ASL interpreter (broker/adapters/asl): a table of definitions, inputs and the
outputs and history AWS gives, then task, retry/catch, timer and replay scenarios driven on a
controlled clock (every input carries its time)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.adapters.asl.interpreter import Execution
from broker.adapters.asl.validate import invalid_definition_message, parse_definition

T0 = 1_700_000_000_000
SM = "arn:aws:states:us-east-1:000000000000:stateMachine:m"
EX = "arn:aws:states:us-east-1:000000000000:execution:m:e"


def make(definition: dict[str, Any], **kwargs: Any) -> Execution:
    doc, diagnostics = parse_definition(json.dumps(definition))
    assert not diagnostics, invalid_definition_message(diagnostics)
    assert doc is not None
    return Execution(
        doc,
        execution_arn=EX,
        name="e",
        state_machine_arn=SM,
        state_machine_name="m",
        role_arn="arn:aws:iam::000000000000:role/r",
        seed="seed",
        token_prefix="tok.",
        **kwargs,
    )


def start(definition: dict[str, Any], value: Any, **kwargs: Any) -> Execution:
    exe = make(definition, **kwargs)
    exe.feed({"k": "start", "t": T0, "input": value})
    return exe


def types(exe: Execution) -> list[str]:
    return [e["type"] for e in exe.events]


def chain(*states: tuple[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """States run one after the other (each gets Next, the last End)."""
    out: dict[str, Any] = {}
    for i, (name, state) in enumerate(states):
        state = dict(state)
        if state["Type"] not in ("Choice", "Succeed", "Fail"):
            if i + 1 < len(states):
                state["Next"] = states[i + 1][0]
            else:
                state["End"] = True
        out[name] = state
    return {"StartAt": states[0][0], "States": out, **top}


def one(state: dict[str, Any], **top: Any) -> dict[str, Any]:
    return chain(("S", state), **top)


# -- data flow, Pass, intrinsics: (definition, input, expected output) -------------------------

CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("pass through", one({"Type": "Pass"}), {"a": 1}, {"a": 1}),
    ("Result", one({"Type": "Pass", "Result": {"x": [1, 2]}}), {"a": 1}, {"x": [1, 2]}),
    (
        "ResultPath merges",
        one({"Type": "Pass", "Result": 5, "ResultPath": "$.r.s"}),
        {"a": 1},
        {"a": 1, "r": {"s": 5}},
    ),
    ("ResultPath null", one({"Type": "Pass", "Result": 5, "ResultPath": None}), {"a": 1}, {"a": 1}),
    ("InputPath", one({"Type": "Pass", "InputPath": "$.a.b"}), {"a": {"b": [3]}}, [3]),
    ("OutputPath", one({"Type": "Pass", "OutputPath": "$.k"}), {"k": "v", "z": 0}, "v"),
    ("OutputPath null", one({"Type": "Pass", "OutputPath": None}), {"k": "v"}, {}),
    (
        "Parameters with paths and context",
        one(
            {
                "Type": "Pass",
                "Parameters": {
                    "lit": "x",
                    "v.$": "$.a",
                    "all.$": "$.items[*].n",
                    "filtered.$": "$.items[?(@.n > 1)].n",
                    "name.$": "$$.Execution.Name",
                    "state.$": "$$.State.Name",
                    "nested": {"deep.$": "$.a"},
                },
            }
        ),
        {"a": 1, "items": [{"n": 1}, {"n": 2}]},
        {
            "lit": "x",
            "v": 1,
            "all": [1, 2],
            "filtered": [2],
            "name": "e",
            "state": "S",
            "nested": {"deep": 1},
        },
    ),
    (
        "States.Format and escapes",
        one({"Type": "Pass", "Parameters": {"s.$": "States.Format('{} has \\{{}\\}', $.n, $.l)"}}),
        {"n": "bob", "l": [1]},
        {"s": "bob has {[1]}"},
    ),
    (
        "StringToJson / JsonToString",
        one(
            {
                "Type": "Pass",
                "Parameters": {
                    "o.$": "States.StringToJson($.s)",
                    "t.$": "States.JsonToString($.o)",
                },
            }
        ),
        {"s": '{"a":[1]}', "o": {"b": True}},
        {"o": {"a": [1]}, "t": '{"b":true}'},
    ),
    (
        "array intrinsics",
        one(
            {
                "Type": "Pass",
                "Parameters": {
                    "array.$": "States.Array($.a, 'x', 3)",
                    "part.$": "States.ArrayPartition($.l, 2)",
                    "has.$": "States.ArrayContains($.l, 3)",
                    "range.$": "States.ArrayRange(1, 9, 3)",
                    "item.$": "States.ArrayGetItem($.l, 1)",
                    "len.$": "States.ArrayLength($.l)",
                    "uniq.$": "States.ArrayUnique($.d)",
                },
            }
        ),
        {"a": 1, "l": [1, 2, 3, 4, 5], "d": [1, 1, {"x": 1}, {"x": 1}]},
        {
            "array": [1, "x", 3],
            "part": [[1, 2], [3, 4], [5]],
            "has": True,
            "range": [1, 4, 7],
            "item": 2,
            "len": 5,
            "uniq": [1, {"x": 1}],
        },
    ),
    (
        "math, string, hash, base64, merge",
        one(
            {
                "Type": "Pass",
                "Parameters": {
                    "sum.$": "States.MathAdd($.n, -3)",
                    "split.$": "States.StringSplit($.s, ',; ')",
                    "md5.$": "States.Hash('polymq', 'MD5')",
                    "b64.$": "States.Base64Encode('hi!')",
                    "raw.$": "States.Base64Decode('aGkh')",
                    "merged.$": "States.JsonMerge($.x, $.y, false)",
                },
            }
        ),
        {"n": 10, "s": "a,b; c", "x": {"a": 1, "b": 1}, "y": {"b": 2}},
        {
            "sum": 7,
            "split": ["a", "b", "c"],
            "md5": "1af02b4ac07f27d0f9df6a94d3eed8a0",
            "b64": "aGkh",
            "raw": "hi!",
            "merged": {"a": 1, "b": 2},
        },
    ),
    (
        "ResultSelector does not apply to Pass, Assign and variables do",
        chain(
            ("A", {"Type": "Pass", "Assign": {"who.$": "$.n", "k": 1}}),
            ("B", {"Type": "Pass", "Parameters": {"w.$": "$who", "k.$": "$k"}}),
        ),
        {"n": "ann"},
        {"w": "ann", "k": 1},
    ),
    (
        "Parallel",
        one(
            {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "a", "States": {"a": {"Type": "Pass", "Result": 1, "End": True}}},
                    {
                        "StartAt": "b",
                        "States": {"b": {"Type": "Pass", "InputPath": "$.v", "End": True}},
                    },
                ],
                "ResultSelector": {"first.$": "$[0]", "second.$": "$[1]"},
                "ResultPath": "$.out",
            }
        ),
        {"v": "x"},
        {"v": "x", "out": {"first": 1, "second": "x"}},
    ),
    (
        "Map with ItemsPath, ItemSelector and context",
        one(
            {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "ItemSelector": {
                    "v.$": "$$.Map.Item.Value",
                    "i.$": "$$.Map.Item.Index",
                    "k.$": "$.k",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "p",
                    "States": {"p": {"Type": "Pass", "End": True}},
                },
            }
        ),
        {"items": ["a", "b", "c"], "k": 0},
        [{"v": "a", "i": 0, "k": 0}, {"v": "b", "i": 1, "k": 0}, {"v": "c", "i": 2, "k": 0}],
    ),
    (
        "Map with Iterator (legacy) and ItemBatcher",
        one(
            {
                "Type": "Map",
                "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"b": 1}},
                "Iterator": {"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}},
            }
        ),
        [1, 2, 3],
        [{"b": 1, "Items": [1, 2]}, {"b": 1, "Items": [3]}],
    ),
    (
        "Map over nothing",
        one(
            {"Type": "Map", "ItemProcessor": {"StartAt": "p", "States": {"p": {"Type": "Succeed"}}}}
        ),
        [],
        [],
    ),
    (
        "Succeed with paths",
        one({"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}),
        {"a": {"b": 2}},
        2,
    ),
    # JSONata
    (
        "JSONata Output, Assign and $states",
        chain(
            (
                "A",
                {
                    "Type": "Pass",
                    "Assign": {"total": "{% $sum($states.input.n) %}"},
                    "Output": "{% $states.input.n %}",
                },
            ),
            (
                "B",
                {
                    "Type": "Pass",
                    "Output": {
                        "total": "{% $total %}",
                        "count": "{% $count($states.input) %}",
                        "name": "{% $states.context.Execution.Name %}",
                    },
                },
            ),
            QueryLanguage="JSONata",
        ),
        {"n": [1, 2, 3.5]},
        {"total": 6.5, "count": 3, "name": "e"},
    ),
    (
        "JSONata functions of AWS",
        one(
            {
                "Type": "Pass",
                "Output": {
                    "p": "{% $partition([1,2,3], 2) %}",
                    "r": "{% $range(0, 10, 5) %}",
                    "h": "{% $hash('polymq', 'MD5') %}",
                    "j": "{% $parse('{\"a\": 1}') %}",
                    "now": "{% $now() %}",
                    "ms": "{% $millis() %}",
                },
            },
            QueryLanguage="JSONata",
        ),
        {},
        {
            "p": [[1, 2], [3]],
            "r": [0, 5, 10],
            "h": "1af02b4ac07f27d0f9df6a94d3eed8a0",
            "j": {"a": 1},
            "now": "2023-11-14T22:13:20.000Z",
            "ms": T0,
        },
    ),
    (
        "JSONata Map with Items and ItemSelector",
        one(
            {
                "Type": "Map",
                "Items": "{% $states.input.xs %}",
                "ItemSelector": {"d": "{% $states.context.Map.Item.Value * 2 %}"},
                "ItemProcessor": {
                    "StartAt": "p",
                    "States": {
                        "p": {"Type": "Pass", "Output": "{% $states.input.d %}", "End": True}
                    },
                },
                "Output": "{% $sum($states.result) %}",
            },
            QueryLanguage="JSONata",
        ),
        {"xs": [1, 2, 3]},
        12,
    ),
    (
        "JSONPath state in a JSONPath machine next to a JSONata state",
        chain(
            ("A", {"Type": "Pass", "QueryLanguage": "JSONata", "Output": {"v": "{% 40 + 2 %}"}}),
            ("B", {"Type": "Pass", "InputPath": "$.v"}),
        ),
        {},
        42,
    ),
]


@pytest.mark.parametrize(
    ("definition", "value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_output(definition: dict[str, Any], value: Any, expected: Any) -> None:
    exe = start(definition, value)
    assert exe.status == "SUCCEEDED", (exe.error, exe.cause)
    assert exe.output == expected


# -- Choice: every operator ----------------------------------------------------------------------

CHOICE_RULES: list[tuple[dict[str, Any], Any, bool]] = [
    ({"StringEquals": "a"}, "a", True),
    ({"StringEquals": "a"}, 1, False),
    ({"StringLessThan": "b"}, "a", True),
    ({"StringGreaterThan": "b"}, "a", False),
    ({"StringLessThanEquals": "a"}, "a", True),
    ({"StringGreaterThanEquals": "b"}, "c", True),
    ({"StringMatches": "log-*.txt"}, "log-2024.txt", True),
    ({"StringMatches": "a\\*b"}, "a*b", True),
    ({"StringMatches": "a\\*b"}, "axb", False),
    ({"NumericEquals": 1}, 1.0, True),
    ({"NumericEquals": 1}, "1", False),
    ({"NumericLessThan": 1}, 0.5, True),
    ({"NumericGreaterThan": 1}, 2, True),
    ({"NumericLessThanEquals": 1}, 1, True),
    ({"NumericGreaterThanEquals": 1}, 0, False),
    ({"BooleanEquals": True}, True, True),
    ({"BooleanEquals": True}, 1, False),
    ({"TimestampEquals": "2024-01-01T00:00:00Z"}, "2024-01-01T01:00:00+01:00", True),
    ({"TimestampLessThan": "2024-01-01T00:00:00Z"}, "2023-12-31T23:59:59.5Z", True),
    ({"TimestampGreaterThan": "2024-01-01T00:00:00Z"}, "nope", False),
    ({"TimestampLessThanEquals": "2024-01-01T00:00:00Z"}, "2024-01-01T00:00:00Z", True),
    ({"TimestampGreaterThanEquals": "2024-01-01T00:00:00Z"}, "2024-02-30T00:00:00Z", False),
    ({"IsNull": True}, None, True),
    ({"IsNumeric": True}, 3, True),
    ({"IsNumeric": True}, True, False),
    ({"IsString": False}, 3, True),
    ({"IsBoolean": True}, False, True),
    ({"IsTimestamp": True}, "2024-01-01T00:00:00Z", True),
    ({"IsTimestamp": True}, "2024-01-01", False),
    ({"IsPresent": True}, "x", True),
]


@pytest.mark.parametrize(("rule", "value", "matches"), CHOICE_RULES)
def test_choice_operator(rule: dict[str, Any], value: Any, matches: bool) -> None:
    definition = {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.v", **rule, "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Pass", "Result": "yes", "End": True},
            "No": {"Type": "Pass", "Result": "no", "End": True},
        },
    }
    exe = start(definition, {"v": value})
    assert exe.output == ("yes" if matches else "no")


def test_choice_path_variants_and_combinators() -> None:
    rule = {
        "And": [
            {"Variable": "$.a", "NumericLessThanPath": "$.b"},
            {
                "Or": [
                    {"Variable": "$.s", "StringEqualsPath": "$.t"},
                    {"Variable": "$.x", "IsPresent": True},
                ]
            },
            {"Not": {"Variable": "$.flag", "BooleanEqualsPath": "$.other"}},
            {"Variable": "$.when", "TimestampLessThanEqualsPath": "$.until"},
        ],
        "Next": "Yes",
    }
    definition = {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [rule], "Default": "No"},
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "Error": "NoMatch"},
        },
    }
    value = {
        "a": 1,
        "b": 2,
        "s": "p",
        "t": "p",
        "flag": True,
        "other": False,
        "when": "2024-01-01T00:00:00Z",
        "until": "2024-01-01T00:00:00Z",
    }
    assert start(definition, value).status == "SUCCEEDED"
    assert start(definition, {**value, "b": 0}).error == "NoMatch"


def test_choice_missing_variable_is_runtime_error_and_no_match_fails() -> None:
    definition = {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.v", "StringEquals": "a", "Next": "E"}],
            },
            "E": {"Type": "Succeed"},
        },
    }
    exe = start(definition, {})
    assert (exe.status, exe.error) == ("FAILED", "States.Runtime")
    assert "$.v" in (exe.cause or "")
    exe = start(definition, {"v": "b"})
    assert (exe.status, exe.error) == ("FAILED", "States.NoChoiceMatched")


def test_choice_jsonata_condition_output_assign() -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Condition": "{% $states.input.n > 2 %}",
                        "Next": "Big",
                        "Output": {"size": "big"},
                        "Assign": {"seen": "{% $states.input.n %}"},
                    }
                ],
                "Default": "Small",
            },
            "Big": {
                "Type": "Pass",
                "Output": "{% $merge([$states.input, {'seen': $seen}]) %}",
                "End": True,
            },
            "Small": {"Type": "Succeed"},
        },
    }
    assert start(definition, {"n": 3}).output == {"size": "big", "seen": 3}
    assert start(definition, {"n": 1}).output == {"n": 1}


# -- Fail ----------------------------------------------------------------------------------------


def test_fail_error_cause_and_paths() -> None:
    exe = start(one({"Type": "Fail", "Error": "Bad", "Cause": "why"}), {})
    assert (exe.status, exe.error, exe.cause) == ("FAILED", "Bad", "why")
    assert types(exe) == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    exe = start(
        one({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('n={}', $.n)"}),
        {"e": "E1", "n": 2},
    )
    assert (exe.error, exe.cause) == ("E1", "n=2")
    exe = start(
        one({"Type": "Fail", "Error": "{% 'E' & $states.input.n %}"}, QueryLanguage="JSONata"),
        {"n": 5},
    )
    assert exe.error == "E5"


def test_runtime_errors() -> None:
    exe = start(one({"Type": "Pass", "Parameters": {"x.$": "$.missing"}}), {"a": 1})
    assert exe.error == "States.Runtime"
    assert "could not be found in the input" in (exe.cause or "")
    exe = start(
        one({"Type": "Pass", "Parameters": {"x.$": "States.ArrayGetItem($.l, 9)"}}), {"l": []}
    )
    assert exe.error == "States.IntrinsicFailure"
    exe = start(
        one({"Type": "Pass", "Output": "{% $undefinedThing %}"}, QueryLanguage="JSONata"), {}
    )
    assert exe.error == "States.QueryEvaluationError"
    exe = start(
        one(
            {"Type": "Map", "ItemProcessor": {"StartAt": "p", "States": {"p": {"Type": "Succeed"}}}}
        ),
        {"no": "array"},
    )
    assert exe.error == "States.Runtime"


# -- histories -----------------------------------------------------------------------------------


def test_history_of_a_pass_chain_links_event_ids() -> None:
    exe = start(chain(("A", {"Type": "Pass"}), ("B", {"Type": "Pass"})), {"x": 1})
    assert types(exe) == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in exe.events] == [1, 2, 3, 4, 5, 6]
    assert [e.get("previousEventId") for e in exe.events] == [None, 1, 2, 3, 4, 5]
    assert exe.events[1]["stateEnteredEventDetails"] == {
        "name": "A",
        "input": '{"x":1}',
        "inputDetails": {"truncated": False},
    }
    assert all(e["timestamp"] == T0 for e in exe.events)


def test_history_of_map_and_parallel() -> None:
    exe = start(
        one(
            {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}},
            }
        ),
        [1, 2],
    )
    assert types(exe) == [
        "ExecutionStarted", "MapStateEntered", "MapStateStarted",
        "MapIterationStarted", "MapIterationStarted",
        "PassStateEntered", "PassStateExited", "MapIterationSucceeded",
        "PassStateEntered", "PassStateExited", "MapIterationSucceeded",
        "MapStateSucceeded", "MapStateExited", "ExecutionSucceeded",
    ]  # fmt: skip
    assert exe.events[2]["mapStateStartedEventDetails"] == {"length": 2}
    assert exe.events[3]["mapIterationStartedEventDetails"] == {"name": "S", "index": 0}


# -- Wait ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "value", "due"),
    [
        ({"Seconds": 10}, {}, T0 + 10_000),
        ({"SecondsPath": "$.s"}, {"s": 3}, T0 + 3_000),
        ({"Timestamp": "2030-01-01T00:00:00Z"}, {}, 1_893_456_000_000),
        ({"TimestampPath": "$.t"}, {"t": "2030-01-01T00:00:01.5+00:00"}, 1_893_456_001_500),
        ({"Timestamp": "2000-01-01T00:00:00Z"}, {}, T0),
    ],
)
def test_wait_due_times(state: dict[str, Any], value: Any, due: int) -> None:
    exe = start(one({"Type": "Wait", **state}), value)
    assert exe.status == "RUNNING"
    [timer] = exe.timers.values()
    assert (timer.kind, timer.due_ms) == ("wait", due)
    exe.feed({"k": "timer", "t": due + 5, "timer": timer.id})
    assert exe.status == "SUCCEEDED" and exe.output == value
    assert types(exe)[-3:] == ["WaitStateEntered", "WaitStateExited", "ExecutionSucceeded"][-3:]
    assert exe.events[-2]["timestamp"] == due + 5


def test_wait_bad_seconds_path_is_runtime_error() -> None:
    exe = start(one({"Type": "Wait", "SecondsPath": "$.s"}), {"s": "ten"})
    assert exe.error == "States.Runtime"


def test_execution_timeout() -> None:
    exe = start(one({"Type": "Wait", "Seconds": 100}, TimeoutSeconds=5), {})
    timer = next(t for t in exe.timers.values() if t.kind == "execution")
    assert timer.due_ms == T0 + 5000
    exe.feed({"k": "timer", "t": timer.due_ms, "timer": timer.id})
    assert (exe.status, exe.error) == ("TIMED_OUT", "States.Timeout")
    assert exe.timers == {}


# -- tasks, Retry, Catch, timeouts -----------------------------------------------------------------

SQS_TASK = {
    "Type": "Task",
    "Resource": "arn:aws:states:::sqs:sendMessage",
    "Parameters": {"QueueUrl": "q", "MessageBody.$": "$"},
}


def the_task(exe: Execution) -> Any:
    [task] = exe.tasks.values()
    return task


def test_task_success_result_selector_and_history() -> None:
    exe = start(
        one({**SQS_TASK, "ResultSelector": {"id.$": "$.MessageId"}, "ResultPath": "$.sent"}),
        {"a": 1},
    )
    task = the_task(exe)
    assert (task.resource_type, task.action, task.payload) == (
        "sqs",
        "sendMessage",
        {"QueueUrl": "q", "MessageBody": {"a": 1}},
    )
    assert exe.dispatch == [task.id]
    exe.feed({"k": "ok", "t": T0 + 7, "task": task.id, "output": {"MessageId": "m1"}})
    assert exe.output == {"a": 1, "sent": {"id": "m1"}}
    assert types(exe) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    scheduled = exe.events[2]["taskScheduledEventDetails"]
    assert scheduled["resourceType"] == "sqs" and scheduled["region"] == "us-east-1"
    assert json.loads(scheduled["parameters"]) == {"QueueUrl": "q", "MessageBody": {"a": 1}}


@pytest.mark.parametrize(
    ("retrier", "delays"),
    [
        ({"IntervalSeconds": 1}, [1000, 2000, 4000]),
        ({"IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2}, [2000, 6000]),
        ({"IntervalSeconds": 1, "BackoffRate": 10, "MaxDelaySeconds": 5}, [1000, 5000, 5000]),
        ({"MaxAttempts": 0}, []),
    ],
)
def test_retry_backoff(retrier: dict[str, Any], delays: list[int]) -> None:
    exe = start(one({**SQS_TASK, "Retry": [{"ErrorEquals": ["States.ALL"], **retrier}]}), {})
    now = T0
    seen = []
    for _ in range(len(delays)):
        task = the_task(exe)
        exe.feed({"k": "fail", "t": now, "task": task.id, "error": "Boom", "cause": "c"})
        timer = next(t for t in exe.timers.values() if t.kind == "retry")
        seen.append(timer.due_ms - now)
        now = timer.due_ms
        exe.feed({"k": "timer", "t": now, "timer": timer.id})
    assert seen == delays
    task = the_task(exe)
    exe.feed({"k": "fail", "t": now, "task": task.id, "error": "Boom", "cause": "c"})
    assert (exe.status, exe.error) == ("FAILED", "Boom")


def test_full_jitter_stays_within_the_delay_and_is_replayable() -> None:
    definition = one(
        {
            **SQS_TASK,
            "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 10, "JitterStrategy": "FULL"}],
        }
    )
    delays = []
    for _ in range(2):
        exe = start(definition, {})
        exe.feed({"k": "fail", "t": T0, "task": the_task(exe).id, "error": "Boom"})
        [timer] = [t for t in exe.timers.values() if t.kind == "retry"]
        delays.append(timer.due_ms - T0)
    assert 0 <= delays[0] <= 10_000 and delays[0] == delays[1]


def test_retry_then_catch_and_context_retry_count() -> None:
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                **SQS_TASK,
                "Parameters": {"n.$": "$$.State.RetryCount"},
                "Retry": [
                    {"ErrorEquals": ["Boom"], "MaxAttempts": 1, "IntervalSeconds": 1},
                    {"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1},
                ],
                "Catch": [
                    {"ErrorEquals": ["Other"], "Next": "Never"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Handled"},
                ],
                "End": True,
            },
            "Never": {"Type": "Fail"},
            "Handled": {"Type": "Pass", "End": True},
        },
    }
    exe = start(definition, {"a": 1})
    assert the_task(exe).payload == {"n": 0}
    exe.feed({"k": "fail", "t": T0, "task": the_task(exe).id, "error": "Boom", "cause": "first"})
    timer = next(iter(exe.timers.values()))
    exe.feed({"k": "timer", "t": timer.due_ms, "timer": timer.id})
    assert the_task(exe).payload == {"n": 1}
    exe.feed(
        {"k": "fail", "t": T0 + 2000, "task": the_task(exe).id, "error": "Boom", "cause": "second"}
    )
    assert exe.status == "SUCCEEDED"
    assert exe.output == {"a": 1, "err": {"Error": "Boom", "Cause": "second"}}
    assert "TaskStateExited" in types(exe) and types(exe).count("TaskScheduled") == 2


def test_states_all_does_not_catch_runtime_errors() -> None:
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                **SQS_TASK,
                "ResultSelector": {"x.$": "$.nope"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
                "End": True,
            },
            "H": {"Type": "Succeed"},
        },
    }
    exe = start(definition, {})
    exe.feed({"k": "ok", "t": T0, "task": the_task(exe).id, "output": {}})
    assert (exe.status, exe.error) == ("FAILED", "States.Runtime")


def test_task_timeout_and_heartbeat_timeout() -> None:
    exe = start(one({**SQS_TASK, "TimeoutSeconds": 10, "HeartbeatSeconds": 3}), {})
    task = the_task(exe)
    hb = next(t for t in exe.timers.values() if t.kind == "heartbeat")
    assert hb.due_ms == T0 + 3000
    exe.feed({"k": "hb", "t": T0 + 2000, "task": task.id})
    hb = next(t for t in exe.timers.values() if t.kind == "heartbeat")
    assert hb.due_ms == T0 + 5000
    exe.feed({"k": "timer", "t": hb.due_ms, "timer": hb.id})
    assert (exe.status, exe.error) == ("FAILED", "States.HeartbeatTimeout")
    assert "TaskTimedOut" in types(exe)
    exe = start(one({**SQS_TASK, "TimeoutSecondsPath": "$.t"}), {"t": 4})
    timer = next(t for t in exe.timers.values() if t.kind == "task")
    assert timer.due_ms == T0 + 4000
    exe.feed({"k": "timer", "t": timer.due_ms, "timer": timer.id})
    assert exe.error == "States.Timeout"
    # a late result for the timed-out task changes nothing
    exe.feed({"k": "ok", "t": timer.due_ms + 1, "task": task.id, "output": {}})
    assert exe.status == "FAILED"


def test_callback_task_token_in_context_and_submitted() -> None:
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
    }
    exe = start(one(state), {})
    task = the_task(exe)
    assert task.callback and task.payload["MessageBody"]["token"] == task.token
    assert task.token.startswith("tok.")
    exe.feed({"k": "sub", "t": T0 + 1, "task": task.id, "output": {"MessageId": "m"}})
    assert exe.status == "RUNNING" and "TaskSubmitted" in types(exe)
    exe.feed({"k": "ok", "t": T0 + 2, "task": task.id, "output": {"done": True}})
    assert exe.output == {"done": True}


def test_activity_events() -> None:
    arn = "arn:aws:states:us-east-1:000000000000:activity:work"
    exe = start(one({"Type": "Task", "Resource": arn, "HeartbeatSeconds": 5}), {"job": 1})
    task = the_task(exe)
    assert task.kind == "activity"
    exe.feed({"k": "started", "t": T0 + 1, "task": task.id, "worker": "w1"})
    exe.feed({"k": "ok", "t": T0 + 2, "task": task.id, "output": "done"})
    assert types(exe)[2:5] == ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"]
    assert exe.events[3]["activityStartedEventDetails"] == {"workerName": "w1"}


def test_parallel_branch_failure_cancels_siblings_and_is_caught() -> None:
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "t", "States": {"t": {**SQS_TASK, "End": True}}},
                    {
                        "StartAt": "f",
                        "States": {"f": {"Type": "Fail", "Error": "Broken", "Cause": "b"}},
                    },
                ],
                "Catch": [{"ErrorEquals": ["Broken"], "Next": "H"}],
                "End": True,
            },
            "H": {"Type": "Pass", "End": True},
        },
    }
    exe = start(definition, {})
    assert exe.status == "SUCCEEDED"
    assert exe.output == {"Error": "Broken", "Cause": "b"}
    assert exe.tasks == {} and exe.timers == {}
    assert "ParallelStateFailed" in types(exe)


def test_map_tolerated_failures() -> None:
    processor = {
        "StartAt": "c",
        "States": {
            "c": {
                "Type": "Choice",
                "Choices": [{"Variable": "$", "NumericGreaterThan": 2, "Next": "bad"}],
                "Default": "ok",
            },
            "bad": {"Type": "Fail", "Error": "TooBig", "Cause": "x"},
            "ok": {"Type": "Succeed"},
        },
    }
    tolerant = one({"Type": "Map", "ToleratedFailureCount": 1, "ItemProcessor": processor})
    exe = start(tolerant, [1, 3])
    assert exe.output == [1, {"Error": "TooBig", "Cause": "x"}]
    exe = start(tolerant, [3, 4])
    assert exe.error == "States.ExceedToleratedFailureThreshold"
    exe = start(
        one({"Type": "Map", "ToleratedFailurePercentage": 50, "ItemProcessor": processor}),
        [1, 2, 3, 4],
    )
    assert exe.status == "SUCCEEDED"
    exe = start(one({"Type": "Map", "ItemProcessor": processor}), [1, 3])
    assert exe.error == "TooBig"
    assert "MapIterationFailed" in types(exe)


def test_map_max_concurrency_holds_back_iterations() -> None:
    exe = start(
        one(
            {
                "Type": "Map",
                "MaxConcurrency": 2,
                "ItemProcessor": {"StartAt": "t", "States": {"t": {**SQS_TASK, "End": True}}},
            }
        ),
        [1, 2, 3],
    )
    assert len(exe.tasks) == 2
    first = min(exe.tasks)
    exe.feed({"k": "ok", "t": T0 + 1, "task": first, "output": "a"})
    assert len(exe.tasks) == 2
    for task_id in sorted(exe.tasks):
        exe.feed({"k": "ok", "t": T0 + 2, "task": task_id, "output": "b"})
    assert exe.output == ["a", "b", "b"]


def test_stop_and_redrive_from_the_failed_state() -> None:
    definition = chain(("A", {"Type": "Pass", "Result": {"v": 1}}), ("T", dict(SQS_TASK)))
    exe = start(definition, {})
    exe.feed({"k": "fail", "t": T0 + 1, "task": the_task(exe).id, "error": "Boom"})
    assert exe.status == "FAILED" and exe.redrivable
    exe.feed({"k": "redrive", "t": T0 + 10})
    assert exe.status == "RUNNING" and exe.redrive_count == 1
    assert types(exe)[-4:] == [
        "ExecutionRedriven",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
    ]
    assert the_task(exe).payload == {"QueueUrl": "q", "MessageBody": {"v": 1}}
    exe.feed({"k": "stop", "t": T0 + 11, "error": "Stopped", "cause": "by hand"})
    assert (exe.status, exe.error) == ("ABORTED", "Stopped")
    assert exe.tasks == {}


def test_redrive_map_reruns_only_failed_iterations() -> None:
    definition = one(
        {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "t", "States": {"t": {**SQS_TASK, "End": True}}},
        }
    )
    exe = start(definition, [1, 2])
    ids = sorted(exe.tasks)
    exe.feed({"k": "ok", "t": T0 + 1, "task": ids[0], "output": "one"})
    exe.feed({"k": "fail", "t": T0 + 2, "task": ids[1], "error": "Boom"})
    assert exe.status == "FAILED"
    exe.feed({"k": "redrive", "t": T0 + 3})
    [task] = exe.tasks.values()
    assert task.payload["MessageBody"] == 2
    exe.feed({"k": "ok", "t": T0 + 4, "task": task.id, "output": "two"})
    assert exe.output == ["one", "two"]


def test_replay_of_the_inputs_rebuilds_the_same_execution() -> None:
    definition = chain(
        (
            "U",
            {
                "Type": "Pass",
                "Parameters": {"id.$": "States.UUID()", "r.$": "States.MathRandom(0, 1000)"},
            },
        ),
        ("T", {**SQS_TASK, "Retry": [{"ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL"}]}),
        ("W", {"Type": "Wait", "Seconds": 30}),
    )
    exe = start(definition, {"x": 1})
    inputs: list[dict[str, Any]] = []

    def feed(inp: dict[str, Any]) -> None:
        inputs.append(inp)
        exe.feed(inp)

    feed({"k": "fail", "t": T0 + 5, "task": the_task(exe).id, "error": "Boom"})
    retry = next(iter(exe.timers.values()))
    feed({"k": "timer", "t": retry.due_ms, "timer": retry.id})
    token = the_task(exe).token
    feed({"k": "ok", "t": retry.due_ms + 1, "task": the_task(exe).id, "output": {"ok": 1}})
    replayed = start(definition, {"x": 1})
    for inp in inputs:
        replayed.feed(inp)
    assert replayed.events == exe.events
    assert {t.id: t.due_ms for t in replayed.timers.values()} == {
        t.id: t.due_ms for t in exe.timers.values()
    }
    assert token.startswith("tok.")
    [wait] = replayed.timers.values()
    replayed.feed({"k": "timer", "t": wait.due_ms, "timer": wait.id})
    assert replayed.status == "SUCCEEDED"


def test_test_state_single_state_mode() -> None:
    definition = {
        "StartAt": "X",
        "States": {
            "X": {"Type": "Pass", "Parameters": {"a.$": "$.v"}, "Next": "Y"},
            "Y": {"Type": "Succeed"},
        },
    }
    exe = start(definition, {"v": 2}, single_state="X")
    assert (exe.status, exe.output, exe.next_state) == ("SUCCEEDED", {"a": 2}, "Y")
    assert exe.inspection["afterParameters"] == '{"a":2}'


def test_math_random_and_uuid() -> None:
    definition = one(
        {
            "Type": "Pass",
            "Parameters": {
                "seeded.$": "States.MathRandom(1, 100, 7)",
                "free.$": "States.MathRandom(5, 6)",
                "id.$": "States.UUID()",
            },
        }
    )
    first, second = start(definition, {}).output, start(definition, {}).output
    assert 1 <= first["seeded"] < 100 and first["seeded"] == second["seeded"]
    assert first["free"] == 5
    assert len(first["id"]) == 36 and first["id"][14] == "4"
