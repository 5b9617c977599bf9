"""Definition checks for Amazon States Language (pure), with AWS's diagnostic codes.

``diagnostics(text)`` returns every problem found as ``Diagnostic(code, message, location)``,
``location`` a JSON pointer into the definition (``/States/Pick/Choices/0/Next``). Codes:

* ``INVALID_JSON_DESCRIPTION``  the text is not a JSON object;
* ``SCHEMA_VALIDATION_FAILED``  a field missing, of the wrong type or value, not allowed
  (unknown to ASL, or not for the state's type or query language), a path, intrinsic function
  or JSONata expression that does not parse;
* ``MISSING_TRANSITION_TARGET`` ``StartAt``, ``Next``, ``Default`` or a Catch's ``Next`` names
  no state of its (sub)machine;
* ``UNREACHABLE_STATE``         a state no transition leads to;
* ``NO_TERMINAL_STATE``         no state ends the (sub)machine.

``invalid_definition_message`` renders them the way AWS's ``InvalidDefinition`` does:
``Invalid State Machine Definition: 'CODE: message at /location', ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from broker.adapters.asl import jsonata as jq
from broker.adapters.asl.interpreter import COMPARATORS, JSONATA, JSONPATH
from broker.adapters.asl.intrinsics import IntrinsicSyntaxError, is_intrinsic
from broker.adapters.asl.intrinsics import parse as parse_intrinsic
from broker.adapters.asl.jsonpath import PathError, compile_path
from broker.adapters.asl.timestamps import parse_ms

DEFINITION_CHARS_MAX = 1024 * 1024
STATE_NAME_CHARS_MAX = 80
STATES_MAX = 10_000
DIAGNOSTICS_MAX = 100

TYPES = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
TOP_FIELDS = {"Comment", "StartAt", "States", "TimeoutSeconds", "Version", "QueryLanguage"}
COMMON = {"Type", "Comment", "QueryLanguage"}
FLOW = {"Next", "End"}
PATHS_IO = {"InputPath", "OutputPath"}
PATHS_RESULT = {"ResultPath", "ResultSelector"}
FIELDS_JSONPATH: dict[str, set[str]] = {
    "Pass": COMMON | FLOW | PATHS_IO | {"ResultPath", "Parameters", "Result", "Assign"},
    "Task": COMMON
    | FLOW
    | PATHS_IO
    | PATHS_RESULT
    | {
        "Resource",
        "Parameters",
        "Retry",
        "Catch",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
        "Assign",
    },
    "Choice": COMMON | PATHS_IO | {"Choices", "Default", "Assign"},
    "Wait": COMMON
    | FLOW
    | PATHS_IO
    | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Assign"},
    "Succeed": COMMON | PATHS_IO,
    "Fail": COMMON | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": COMMON
    | FLOW
    | PATHS_IO
    | PATHS_RESULT
    | {"Branches", "Parameters", "Retry", "Catch", "Assign"},
    "Map": COMMON
    | FLOW
    | PATHS_IO
    | PATHS_RESULT
    | {
        "ItemProcessor",
        "Iterator",
        "ItemsPath",
        "ItemSelector",
        "Parameters",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ItemReader",
        "ItemBatcher",
        "ResultWriter",
        "Label",
        "Retry",
        "Catch",
        "Assign",
    },
}
FIELDS_JSONATA: dict[str, set[str]] = {
    "Pass": COMMON | FLOW | {"Output", "Assign"},
    "Task": COMMON
    | FLOW
    | {
        "Resource",
        "Arguments",
        "Output",
        "Assign",
        "Retry",
        "Catch",
        "TimeoutSeconds",
        "HeartbeatSeconds",
        "Credentials",
    },
    "Choice": COMMON | {"Choices", "Default", "Output", "Assign"},
    "Wait": COMMON | FLOW | {"Seconds", "Timestamp", "Output", "Assign"},
    "Succeed": COMMON | {"Output"},
    "Fail": COMMON | {"Error", "Cause"},
    "Parallel": COMMON | FLOW | {"Branches", "Arguments", "Output", "Assign", "Retry", "Catch"},
    "Map": COMMON
    | FLOW
    | {
        "Items",
        "ItemProcessor",
        "ItemSelector",
        "MaxConcurrency",
        "ToleratedFailureCount",
        "ToleratedFailurePercentage",
        "ItemReader",
        "ItemBatcher",
        "ResultWriter",
        "Label",
        "Output",
        "Assign",
        "Retry",
        "Catch",
    },
}
RETRY_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCH_FIELDS_JSONPATH = {"ErrorEquals", "Next", "ResultPath", "Assign", "Comment"}
CATCH_FIELDS_JSONATA = {"ErrorEquals", "Next", "Output", "Assign", "Comment"}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    location: str
    severity: str = "ERROR"


class _Checker:
    def __init__(self) -> None:
        self.out: list[Diagnostic] = []

    def add(self, code: str, message: str, location: str) -> None:
        if len(self.out) < DIAGNOSTICS_MAX:
            self.out.append(Diagnostic(code, message, location or "/"))

    def schema(self, message: str, location: str) -> None:
        self.add("SCHEMA_VALIDATION_FAILED", message, location)

    # -- machines ------------------------------------------------------------------------------

    def machine(self, doc: Any, loc: str, ql: str, *, top: bool) -> None:
        if not isinstance(doc, dict):
            self.schema("The value must be an object", loc)
            return
        allowed = (
            TOP_FIELDS
            if top
            else {"Comment", "StartAt", "States", "QueryLanguage", "ProcessorConfig"}
        )
        for key in doc:
            if key not in allowed:
                self.schema(f"The field '{key}' is not supported by Step Functions", f"{loc}/{key}")
        if "QueryLanguage" in doc:
            if doc["QueryLanguage"] not in (JSONPATH, JSONATA):
                self.schema(
                    "The value for the field 'QueryLanguage' must be one of [JSONPath, JSONata]",
                    f"{loc}/QueryLanguage",
                )
            else:
                if ql == JSONATA and doc["QueryLanguage"] == JSONPATH and not top:
                    self.schema(
                        "A JSONPath sub-workflow cannot be nested in a JSONata one",
                        f"{loc}/QueryLanguage",
                    )
                ql = doc["QueryLanguage"]
        if top and "TimeoutSeconds" in doc and not _positive_int(doc["TimeoutSeconds"]):
            self.schema(
                "The field 'TimeoutSeconds' must be a positive integer", f"{loc}/TimeoutSeconds"
            )
        states = doc.get("States")
        start = doc.get("StartAt")
        if not isinstance(start, str):
            self.schema("These fields are required: [StartAt]", loc)
        if not isinstance(states, dict) or not states:
            self.schema(
                "These fields are required: [States]"
                if states is None
                else "The field 'States' must be a non-empty object",
                loc,
            )
            return
        if len(states) > STATES_MAX:
            self.schema(f"A state machine can have at most {STATES_MAX} states", f"{loc}/States")
        names = set(states)
        if isinstance(start, str) and start not in names:
            self.add(
                "MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {start}", f"{loc}/StartAt"
            )
        edges: dict[str, set[str]] = {name: set() for name in names}
        terminal = False
        for name, state in states.items():
            sloc = f"{loc}/States/{name}"
            if len(name) > STATE_NAME_CHARS_MAX:
                self.schema(f"State names must be at most {STATE_NAME_CHARS_MAX} characters", sloc)
            targets, ends = self.state(state, sloc, ql, names)
            edges[name] = targets
            terminal = terminal or ends
        if isinstance(start, str) and start in names:
            seen = {start}
            stack = [start]
            while stack:
                for nxt in edges.get(stack.pop(), ()):
                    if nxt in names and nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            for name in states:
                if name not in seen:
                    self.add(
                        "UNREACHABLE_STATE",
                        f"State '{name}' is not reachable",
                        f"{loc}/States/{name}",
                    )
        if not terminal and not any(d.code == "MISSING_TRANSITION_TARGET" for d in self.out):
            self.add("NO_TERMINAL_STATE", "Workflow has no terminal state", loc)

    # -- states --------------------------------------------------------------------------------

    def state(self, state: Any, loc: str, ql: str, names: set[str]) -> tuple[set[str], bool]:
        targets: set[str] = set()
        if not isinstance(state, dict):
            self.schema("The value must be an object", loc)
            return targets, False
        kind = state.get("Type")
        if kind is None:
            self.schema("These fields are required: [Type]", loc)
            return targets, False
        if kind not in TYPES:
            self.schema(
                f"The value for the field 'Type' must be one of {list(TYPES)}".replace("'", ""),
                f"{loc}/Type",
            )
            return targets, False
        if "QueryLanguage" in state:
            if state["QueryLanguage"] not in (JSONPATH, JSONATA):
                self.schema(
                    "The value for the field 'QueryLanguage' must be one of [JSONPath, JSONata]",
                    f"{loc}/QueryLanguage",
                )
            elif ql == JSONATA and state["QueryLanguage"] == JSONPATH:
                self.schema(
                    "A state cannot use JSONPath when the state machine uses JSONata",
                    f"{loc}/QueryLanguage",
                )
            else:
                ql = state["QueryLanguage"]
        allowed = (FIELDS_JSONATA if ql == JSONATA else FIELDS_JSONPATH)[kind]
        for key in state:
            if key not in allowed:
                other = (FIELDS_JSONPATH if ql == JSONATA else FIELDS_JSONATA)[kind]
                if key in other:
                    self.schema(
                        f"The field '{key}' is not supported for a state with QueryLanguage {ql}",
                        f"{loc}/{key}",
                    )
                else:
                    self.schema(
                        f"The field '{key}' is not supported by Step Functions", f"{loc}/{key}"
                    )
        ends = False
        if kind in ("Succeed", "Fail"):
            ends = True
        elif kind == "Choice":
            pass
        else:
            has_next = "Next" in state
            has_end = state.get("End") is True
            if "End" in state and not isinstance(state["End"], bool):
                self.schema("The field 'End' must be a boolean", f"{loc}/End")
            if has_next and has_end:
                self.schema("The fields 'Next' and 'End' cannot be used together", loc)
            elif not has_next and not has_end:
                self.schema("These fields are required: [Next] or [End]", loc)
            if has_next:
                self.target(state["Next"], f"{loc}/Next", names, targets)
            ends = has_end
        if ql == JSONPATH:
            self.jsonpath_fields(state, loc)
        else:
            self.jsonata_fields(state, loc)
        if "Assign" in state:
            self.assign(state["Assign"], f"{loc}/Assign", ql)
        getattr(self, "state_" + kind.lower())(state, loc, ql, names, targets)
        if kind in ("Task", "Parallel", "Map"):
            self.retry(state.get("Retry"), f"{loc}/Retry")
            self.catch(state.get("Catch"), f"{loc}/Catch", ql, names, targets)
        return targets, ends

    def target(self, value: Any, loc: str, names: set[str], targets: set[str]) -> None:
        if not isinstance(value, str):
            self.schema("The value must be a state name", loc)
            return
        if value not in names:
            self.add("MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {value}", loc)
        targets.add(value)

    def path(self, value: Any, loc: str, *, reference: bool = False, nullable: bool = True) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, str):
            self.schema("The value must be a JSONPath string", loc)
            return
        try:
            path = compile_path(value)
        except PathError as exc:
            self.schema(str(exc), loc)
            return
        if reference and not (path.root == "$" and path.is_reference):
            self.schema(f"The value for the field must be a valid Reference Path: {value}", loc)

    def template(self, value: Any, loc: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key.endswith(".$"):
                    if not isinstance(item, str):
                        self.schema(
                            f"The value for the field '{key}' must be a valid JSONPath or a "
                            "valid intrinsic function call",
                            f"{loc}/{key}",
                        )
                    elif is_intrinsic(item):
                        try:
                            parse_intrinsic(item)
                        except IntrinsicSyntaxError as exc:
                            self.schema(str(exc), f"{loc}/{key}")
                    else:
                        try:
                            compile_path(item)
                        except PathError:
                            self.schema(
                                f"The value for the field '{key}' must be a valid JSONPath or "
                                "a valid intrinsic function call",
                                f"{loc}/{key}",
                            )
                else:
                    self.template(item, f"{loc}/{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.template(item, f"{loc}[{i}]")

    def expressions(self, value: Any, loc: str) -> None:
        try:
            jq.check(value)
        except jq.QuerySyntaxError as exc:
            self.schema(str(exc), loc)

    def jsonpath_fields(self, state: dict[str, Any], loc: str) -> None:
        for key in ("InputPath", "OutputPath", "ItemsPath"):
            if key in state:
                self.path(state[key], f"{loc}/{key}", nullable=key != "ItemsPath")
        if "ResultPath" in state:
            self.path(state["ResultPath"], f"{loc}/ResultPath", reference=True)
        for key in ("Parameters", "ResultSelector", "ItemSelector"):
            if key in state:
                if key != "Parameters" and not isinstance(state[key], dict):
                    self.schema(f"The field '{key}' must be an object", f"{loc}/{key}")
                self.template(state[key], f"{loc}/{key}")
        for key in (
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
            "SecondsPath",
            "TimestampPath",
        ):
            if key in state:
                self.path(state[key], f"{loc}/{key}", nullable=False)
        for key in ("ErrorPath", "CausePath"):
            if key in state:
                value = state[key]
                if is_intrinsic(value):
                    try:
                        parse_intrinsic(value)
                    except IntrinsicSyntaxError as exc:
                        self.schema(str(exc), f"{loc}/{key}")
                else:
                    self.path(value, f"{loc}/{key}", nullable=False)

    def jsonata_fields(self, state: dict[str, Any], loc: str) -> None:
        for key in ("Arguments", "Output", "Items", "ItemSelector"):
            if key in state:
                self.expressions(state[key], f"{loc}/{key}")
        for key in (
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "MaxConcurrency",
            "Seconds",
            "Timestamp",
            "Error",
            "Cause",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
        ):
            if key in state and jq.is_expr(state[key]):
                self.expressions(state[key], f"{loc}/{key}")
        if "Arguments" in state and state.get("Type") == "Task":
            args = state["Arguments"]
            if not (isinstance(args, dict) or jq.is_expr(args)):
                self.schema(
                    "The field 'Arguments' must be an object or a JSONata expression",
                    f"{loc}/Arguments",
                )

    def assign(self, value: Any, loc: str, ql: str) -> None:
        if not isinstance(value, dict):
            self.schema("The field 'Assign' must be an object", loc)
            return
        for key in value:
            name = key[:-2] if key.endswith(".$") and ql == JSONPATH else key
            if (
                not name
                or not (name[0].isalpha() or name[0] == "_")
                or not all(c.isalnum() or c == "_" for c in name)
            ):
                self.schema(f"The variable name '{name}' is invalid", f"{loc}/{key}")
        if ql == JSONATA:
            self.expressions(value, loc)
        else:
            self.template(value, loc)

    # -- per type --------------------------------------------------------------------------------

    def state_pass(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        pass

    def state_succeed(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        pass

    def state_fail(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        for key in ("Error", "Cause"):
            if key in state and f"{key}Path" in state:
                self.schema(f"The fields '{key}' and '{key}Path' cannot be used together", loc)
            if key in state and not isinstance(state[key], str):
                self.schema(f"The field '{key}' must be a string", f"{loc}/{key}")

    def state_task(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        resource = state.get("Resource")
        if resource is None:
            self.schema("These fields are required: [Resource]", loc)
        elif not isinstance(resource, str) or not resource.startswith("arn:"):
            self.schema("Value is not a valid resource ARN", f"{loc}/Resource")
        for key in ("TimeoutSeconds", "HeartbeatSeconds"):
            if key in state and f"{key}Path" in state:
                self.schema(f"The fields '{key}' and '{key}Path' cannot be used together", loc)
            if key in state and not jq.is_expr(state[key]) and not _positive_int(state[key]):
                self.schema(f"The field '{key}' must be a positive integer", f"{loc}/{key}")
        timeout, heartbeat = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
        if (
            isinstance(timeout, int)
            and isinstance(heartbeat, int)
            and _positive_int(timeout)
            and _positive_int(heartbeat)
            and heartbeat >= timeout
        ):
            self.schema(
                "HeartbeatSeconds must be smaller than TimeoutSeconds", f"{loc}/HeartbeatSeconds"
            )

    def state_wait(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in state]
        if len(given) != 1:
            self.schema(
                "Exactly one of these fields is required: [Seconds, Timestamp, SecondsPath, "
                "TimestampPath]",
                loc,
            )
            return
        key = given[0]
        value = state[key]
        if jq.is_expr(value):
            return
        if key == "Seconds" and not (_int(value) and value >= 0):
            self.schema("The field 'Seconds' must be a non-negative integer", f"{loc}/Seconds")
        if key == "Timestamp" and (not isinstance(value, str) or parse_ms(value) is None):
            self.schema("The field 'Timestamp' must be an RFC 3339 timestamp", f"{loc}/Timestamp")

    def state_choice(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        choices = state.get("Choices")
        if not isinstance(choices, list) or not choices:
            self.schema("These fields are required: [Choices]", loc)
            return
        for i, rule in enumerate(choices):
            rloc = f"{loc}/Choices/{i}"
            if not isinstance(rule, dict):
                self.schema("The value must be an object", rloc)
                continue
            if "Next" not in rule:
                self.schema("These fields are required: [Next]", rloc)
            else:
                self.target(rule["Next"], f"{rloc}/Next", names, t)
            if ql == JSONATA:
                if "Condition" not in rule:
                    self.schema("These fields are required: [Condition]", rloc)
                elif not (jq.is_expr(rule["Condition"]) or isinstance(rule["Condition"], bool)):
                    self.schema(
                        "The field 'Condition' must be a JSONata expression", f"{rloc}/Condition"
                    )
                else:
                    self.expressions(rule["Condition"], f"{rloc}/Condition")
                for key in rule:
                    if key not in ("Condition", "Next", "Output", "Assign", "Comment"):
                        self.schema(
                            f"The field '{key}' is not supported for a state with "
                            "QueryLanguage JSONata",
                            f"{rloc}/{key}",
                        )
                if "Output" in rule:
                    self.expressions(rule["Output"], f"{rloc}/Output")
                if "Assign" in rule:
                    self.assign(rule["Assign"], f"{rloc}/Assign", ql)
            else:
                self.rule(rule, rloc, top=True)
                if "Assign" in rule:
                    self.assign(rule["Assign"], f"{rloc}/Assign", ql)
        if "Default" in state:
            self.target(state["Default"], f"{loc}/Default", names, t)

    def rule(self, rule: Any, loc: str, *, top: bool) -> None:
        if not isinstance(rule, dict):
            self.schema("The value must be an object", loc)
            return
        extra = {"Next", "Assign", "Comment"} if top else {"Comment"}
        if not top and "Next" in rule:
            self.schema("The field 'Next' is not allowed in a nested choice rule", f"{loc}/Next")
        for combinator in ("And", "Or"):
            if combinator in rule:
                items = rule[combinator]
                if not isinstance(items, list) or not items:
                    self.schema(
                        f"The field '{combinator}' must be a non-empty array", f"{loc}/{combinator}"
                    )
                    return
                for i, item in enumerate(items):
                    self.rule(item, f"{loc}/{combinator}/{i}", top=False)
                self._only(rule, {combinator} | extra, loc)
                return
        if "Not" in rule:
            self.rule(rule["Not"], f"{loc}/Not", top=False)
            self._only(rule, {"Not"} | extra, loc)
            return
        if "Variable" not in rule:
            self.schema("These fields are required: [Variable]", loc)
        else:
            self.path(rule["Variable"], f"{loc}/Variable", nullable=False)
        ops = [k for k in rule if k in COMPARATORS]
        if len(ops) != 1:
            self.schema("A choice rule must have exactly one comparison operator", loc)
            return
        self._only(rule, {"Variable", ops[0]} | extra, loc)
        op, value = ops[0], rule[ops[0]]
        oloc = f"{loc}/{op}"
        if op.endswith("Path"):
            self.path(value, oloc, nullable=False)
        elif op.startswith("Is") or op == "BooleanEquals":
            if not isinstance(value, bool):
                self.schema(f"The field '{op}' must be a boolean", oloc)
        elif op.startswith("Numeric"):
            if not isinstance(value, int | float) or isinstance(value, bool):
                self.schema(f"The field '{op}' must be a number", oloc)
        elif op.startswith("Timestamp"):
            if not isinstance(value, str) or parse_ms(value) is None:
                self.schema(f"The field '{op}' must be an RFC 3339 timestamp", oloc)
        elif not isinstance(value, str):
            self.schema(f"The field '{op}' must be a string", oloc)

    def _only(self, rule: dict[str, Any], allowed: set[str], loc: str) -> None:
        for key in rule:
            if key not in allowed:
                self.schema(
                    f"The field '{key}' is not supported in this choice rule", f"{loc}/{key}"
                )

    def state_parallel(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        branches = state.get("Branches")
        if not isinstance(branches, list) or not branches:
            self.schema("These fields are required: [Branches]", loc)
            return
        for i, branch in enumerate(branches):
            self.machine(branch, f"{loc}/Branches/{i}", state.get("QueryLanguage", ql), top=False)

    def state_map(
        self, state: dict[str, Any], loc: str, ql: str, names: set[str], t: set[str]
    ) -> None:
        processor = state.get("ItemProcessor", state.get("Iterator"))
        if "ItemProcessor" in state and "Iterator" in state:
            self.schema("The fields 'ItemProcessor' and 'Iterator' cannot be used together", loc)
        if processor is None:
            self.schema("These fields are required: [ItemProcessor]", loc)
            return
        key = "ItemProcessor" if "ItemProcessor" in state else "Iterator"
        if isinstance(processor, dict):
            config = processor.get("ProcessorConfig")
            if config is not None and (
                not isinstance(config, dict)
                or config.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED")
            ):
                self.schema(
                    "ProcessorConfig Mode must be INLINE or DISTRIBUTED",
                    f"{loc}/{key}/ProcessorConfig",
                )
        self.machine(processor, f"{loc}/{key}", state.get("QueryLanguage", ql), top=False)
        if "ItemReader" in state:
            self.schema(
                "ItemReader (items read from Amazon S3) is not supported by polymq",
                f"{loc}/ItemReader",
            )
        if "ResultWriter" in state:
            self.schema(
                "ResultWriter (results written to Amazon S3) is not supported by polymq",
                f"{loc}/ResultWriter",
            )
        if "ItemSelector" in state and "Parameters" in state:
            self.schema("The fields 'ItemSelector' and 'Parameters' cannot be used together", loc)
        batcher = state.get("ItemBatcher")
        if batcher is not None and (
            not isinstance(batcher, dict) or not _positive_int(batcher.get("MaxItemsPerBatch", 1))
        ):
            self.schema("ItemBatcher needs a positive MaxItemsPerBatch", f"{loc}/ItemBatcher")
        for field_name in ("MaxConcurrency", "ToleratedFailureCount"):
            value = state.get(field_name)
            if value is not None and not jq.is_expr(value) and not (_int(value) and value >= 0):
                self.schema(
                    f"The field '{field_name}' must be a non-negative integer",
                    f"{loc}/{field_name}",
                )
        value = state.get("ToleratedFailurePercentage")
        if (
            value is not None
            and not jq.is_expr(value)
            and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100
            )
        ):
            self.schema(
                "The field 'ToleratedFailurePercentage' must be between 0 and 100",
                f"{loc}/ToleratedFailurePercentage",
            )

    # -- Retry and Catch -------------------------------------------------------------------------

    def errors(self, value: Any, loc: str, last: bool) -> None:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            self.schema("The field 'ErrorEquals' must be a non-empty array of strings", loc)
            return
        if "States.ALL" in value:
            if len(value) != 1:
                self.schema("States.ALL must appear alone in ErrorEquals", loc)
            if not last:
                self.schema("States.ALL must be in the last Retrier or Catcher", loc)

    def retry(self, value: Any, loc: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.schema("The field 'Retry' must be an array", loc)
            return
        for i, retrier in enumerate(value):
            rloc = f"{loc}/{i}"
            if not isinstance(retrier, dict):
                self.schema("The value must be an object", rloc)
                continue
            for key in retrier:
                if key not in RETRY_FIELDS:
                    self.schema(
                        f"The field '{key}' is not supported by Step Functions", f"{rloc}/{key}"
                    )
            if "ErrorEquals" not in retrier:
                self.schema("These fields are required: [ErrorEquals]", rloc)
            else:
                self.errors(retrier["ErrorEquals"], f"{rloc}/ErrorEquals", i == len(value) - 1)
            if "IntervalSeconds" in retrier and not _positive_int(retrier["IntervalSeconds"]):
                self.schema(
                    "The field 'IntervalSeconds' must be a positive integer",
                    f"{rloc}/IntervalSeconds",
                )
            if "MaxAttempts" in retrier and not (
                _int(retrier["MaxAttempts"]) and retrier["MaxAttempts"] >= 0
            ):
                self.schema(
                    "The field 'MaxAttempts' must be a non-negative integer", f"{rloc}/MaxAttempts"
                )
            rate = retrier.get("BackoffRate", 2.0)
            if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 1.0:
                self.schema(
                    "The field 'BackoffRate' must be a number not less than 1.0",
                    f"{rloc}/BackoffRate",
                )
            if "MaxDelaySeconds" in retrier and not _positive_int(retrier["MaxDelaySeconds"]):
                self.schema(
                    "The field 'MaxDelaySeconds' must be a positive integer",
                    f"{rloc}/MaxDelaySeconds",
                )
            if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
                self.schema(
                    "The field 'JitterStrategy' must be one of [FULL, NONE]",
                    f"{rloc}/JitterStrategy",
                )

    def catch(self, value: Any, loc: str, ql: str, names: set[str], targets: set[str]) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.schema("The field 'Catch' must be an array", loc)
            return
        allowed = CATCH_FIELDS_JSONATA if ql == JSONATA else CATCH_FIELDS_JSONPATH
        for i, catcher in enumerate(value):
            cloc = f"{loc}/{i}"
            if not isinstance(catcher, dict):
                self.schema("The value must be an object", cloc)
                continue
            for key in catcher:
                if key not in allowed:
                    self.schema(
                        f"The field '{key}' is not supported by Step Functions", f"{cloc}/{key}"
                    )
            if "ErrorEquals" not in catcher:
                self.schema("These fields are required: [ErrorEquals]", cloc)
            else:
                self.errors(catcher["ErrorEquals"], f"{cloc}/ErrorEquals", i == len(value) - 1)
            if "Next" not in catcher:
                self.schema("These fields are required: [Next]", cloc)
            else:
                self.target(catcher["Next"], f"{cloc}/Next", names, targets)
            if "ResultPath" in catcher:
                self.path(catcher["ResultPath"], f"{cloc}/ResultPath", reference=True)
            if "Output" in catcher:
                self.expressions(catcher["Output"], f"{cloc}/Output")
            if "Assign" in catcher:
                self.assign(catcher["Assign"], f"{cloc}/Assign", ql)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value > 0


def parse_definition(text: str) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """The definition as a dict and its diagnostics (empty when it is valid)."""
    if len(text) > DEFINITION_CHARS_MAX:
        return None, [
            Diagnostic(
                "SCHEMA_VALIDATION_FAILED",
                f"The definition is longer than {DEFINITION_CHARS_MAX} characters",
                "/",
            )
        ]
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, [Diagnostic("INVALID_JSON_DESCRIPTION", f"Unexpected token: {exc}", "/")]
    if not isinstance(doc, dict):
        return None, [
            Diagnostic("INVALID_JSON_DESCRIPTION", "The definition must be a JSON object", "/")
        ]
    checker = _Checker()
    checker.machine(doc, "", JSONPATH, top=True)
    return doc, checker.out


def invalid_definition_message(diagnostics: list[Diagnostic]) -> str:
    parts = [f"'{d.code}: {d.message} at {d.location}'" for d in diagnostics]
    return "Invalid State Machine Definition: " + ", ".join(parts)


def variable_references(definition: dict[str, Any]) -> dict[str, list[str]]:
    """State name -> the workflow variables it assigns (DescribeStateMachine's
    ``variableReferences`` lists those a state reads; assigned names are a safe subset)."""
    out: dict[str, list[str]] = {}
    for name, state in (definition.get("States") or {}).items():
        if isinstance(state, dict) and isinstance(state.get("Assign"), dict):
            out[name] = sorted(k[:-2] if k.endswith(".$") else k for k in state["Assign"])
    return out
