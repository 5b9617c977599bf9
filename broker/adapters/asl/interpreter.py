"""An Amazon States Language execution as a pure state machine.

Rule 1: an execution changes only when it is fed an input (``Execution.feed``), and every
input carries the time it happened (``t``, epoch ms). Inputs::

    {"k": "start",   "t", "input"}                  the execution begins
    {"k": "started", "t", "task", "worker"}         an activity worker took the task
    {"k": "sub",     "t", "task", "output"}         a callback task's request was accepted
    {"k": "ok",      "t", "task", "output"}         a task succeeded
    {"k": "fail",    "t", "task", "error", "cause"} a task failed
    {"k": "hb",      "t", "task"}                   a heartbeat for a task
    {"k": "timer",   "t", "timer"}                  a timer came due
    {"k": "stop",    "t", "error", "cause"}         StopExecution
    {"k": "redrive", "t"}                           RedriveExecution

Rule 2: the same inputs in the same order give the same state, history and effects: time is
only ever taken from inputs, and randomness (``States.UUID``, ``$random()``, retry jitter, task
tokens) is drawn from a hash of the execution's seed and a counter. So a journal of inputs is
a durable execution, and replaying it on another node rebuilds the same execution (with the
same task tokens a callback consumer holds).

Rule 3: what the execution wants from the outside is read from it, never pushed: ``tasks``
(task id -> ``Task``, the calls in flight; new ones are also listed in ``dispatch`` until the
driver takes them), ``timers`` (timer id -> absolute due time in ms). A result for a task that is
no longer in ``tasks`` (timed out, cancelled) is ignored, as is a timer no longer in ``timers``.

Within one input the execution runs every branch as far as it can go (Pass, Choice, Succeed,
Fail and the data flow of every state are synchronous); it stops at tasks, waits and retries.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from broker.adapters.asl import jsonata as jq
from broker.adapters.asl.intrinsics import IntrinsicError, is_intrinsic
from broker.adapters.asl.intrinsics import parse as parse_intrinsic
from broker.adapters.asl.jsonpath import PathError, PathNotFound, compile_path, set_reference
from broker.adapters.asl.timestamps import format_ms, parse_ms

#: AWS's payload limit for inputs, outputs and task results (characters of JSON)
PAYLOAD_CHARS_MAX = 256 * 1024
#: an inline Map runs at most this many iterations at once (AWS: 40)
MAP_INLINE_CONCURRENCY_MAX = 40
#: items one Map state may have
MAP_ITEMS_MAX = 100_000
#: history events one execution may have (AWS: 25,000)
HISTORY_EVENTS_MAX = 25_000
#: AWS's default task timeout (seconds) where none is given
TASK_TIMEOUT_S_DEFAULT = 99_999_999
#: a Wait longer than a year is refused (AWS: an execution lasts at most a year)
WAIT_S_MAX = 366 * 86_400

JSONPATH = "JSONPath"
JSONATA = "JSONata"
TERMINAL_ERRORS = frozenset({"States.Runtime", "States.DataLimitExceeded"})

_EVENT_PREFIX = {
    "Task": "TaskState",
    "Pass": "PassState",
    "Choice": "ChoiceState",
    "Wait": "WaitState",
    "Succeed": "SucceedState",
    "Fail": "FailState",
    "Parallel": "ParallelState",
    "Map": "MapState",
}


class StateError(Exception):
    """A state failed with an ASL error name; ``terminal`` errors skip Retry and Catch."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause

    @property
    def terminal(self) -> bool:
        return self.error in TERMINAL_ERRORS


def runtime(cause: str) -> StateError:
    return StateError("States.Runtime", cause)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def classify(resource: str) -> tuple[str, str, str]:
    """``(kind, resourceType, resource)`` of a Task's ``Resource`` as history events name it:
    kind is ``activity``, ``lambda`` or ``service``."""
    parts = resource.split(":")
    if len(parts) >= 7 and parts[2] == "states" and parts[5] == "activity":
        return "activity", "activity", resource
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return "lambda", "lambda", resource
    if resource.startswith("arn:aws:states:::aws-sdk:"):
        rest = resource[len("arn:aws:states:::aws-sdk:") :]
        service, _, action = rest.partition(":")
        return "service", f"aws-sdk:{service}", action
    if resource.startswith("arn:aws:states:::"):
        rest = resource[len("arn:aws:states:::") :]
        service, _, action = rest.partition(":")
        return "service", service, action
    return "service", "unknown", resource


class Entropy:
    """Deterministic randomness for one execution: a hash of the seed and a counter."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.counter = 0

    def _bytes(self) -> bytes:
        self.counter += 1
        return hashlib.sha256(f"{self.seed}:{self.counter}".encode()).digest()

    def random_float(self) -> float:
        return int.from_bytes(self._bytes()[:8], "big") / 2**64

    def uuid4(self) -> str:
        raw = bytearray(self._bytes()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Task:
    id: int
    branch: int
    resource: str
    kind: str
    resource_type: str
    action: str
    payload: Any
    token: str
    timeout_s: int
    heartbeat_s: int | None
    callback: bool
    state: str
    credentials: Any = None
    started: bool = False
    submitted: bool = False


@dataclass
class Timer:
    id: int
    due_ms: int
    kind: str  # wait | retry | task | heartbeat | execution
    ref: int  # branch id or task id


@dataclass
class Group:
    """The children of a Parallel or Map state."""

    kind: str  # Parallel | Map
    owner: int  # branch id of the state
    size: int
    results: list[Any]
    succeeded: set[int] = field(default_factory=set)
    running: dict[int, int] = field(default_factory=dict)  # child index -> branch id
    pending: deque[int] = field(default_factory=deque)  # Map items not started yet
    inputs: list[Any] = field(default_factory=list)
    concurrency: int = 0
    failures: int = 0
    tolerated_count: int | None = None
    tolerated_percentage: float | None = None
    failed: bool = False


@dataclass
class Branch:
    id: int
    states: dict[str, Any]
    start_at: str
    ql: str
    parent: int | None  # owner branch id of the group
    index: int  # position in the parent's group
    variables: dict[str, Any]
    name: str = ""
    raw_input: Any = None
    effective: Any = None
    entered_ms: int = 0
    retries: dict[int, int] = field(default_factory=dict)
    retry_count: int = 0
    waiting: str = ""  # "", task, timer, group, done
    group: Group | None = None
    map_item: tuple[int, Any] | None = None
    alive: bool = True
    last_event: int = 0
    payload: Any = None  # the state's resolved Parameters/Arguments while it waits


class Execution:
    def __init__(
        self,
        definition: dict[str, Any],
        *,
        execution_arn: str,
        name: str,
        state_machine_arn: str,
        state_machine_name: str,
        role_arn: str = "",
        seed: str = "",
        token_prefix: str = "",
        single_state: str | None = None,
        variables: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.definition = definition
        self.execution_arn = execution_arn
        self.name = name
        self.state_machine_arn = state_machine_arn
        self.state_machine_name = state_machine_name
        self.role_arn = role_arn
        self.entropy = Entropy(seed or execution_arn)
        self.token_prefix = token_prefix
        self.status = "PENDING"
        self.input: Any = None
        self.output: Any = None
        self.error: str | None = None
        self.cause: str | None = None
        self.start_ms = 0
        self.stop_ms: int | None = None
        self.redrive_count = 0
        self.redrive_ms: int | None = None
        self.events: list[dict[str, Any]] = []
        self.tasks: dict[int, Task] = {}
        self.dispatch: list[int] = []
        self.timers: dict[int, Timer] = {}
        self.branches: dict[int, Branch] = {}
        self._ids = 0
        self._now = 0
        self._queue: deque[Branch] = deque()
        self._failed_at: tuple[int, str, Any] | None = None  # root failure: branch, state, input
        # TestState: run one state, then stop and tell where it would go
        self.single_state = single_state
        self.next_state: str | None = None
        self.test_status: str | None = None
        self.inspection: dict[str, Any] = {}
        self._initial_variables = dict(variables or {})
        self._test_context = context or {}
        self.inputs_fed = 0
        self._redo_group: Group | None = None

    # -- ids and events ------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _event(
        self, branch: Branch | None, kind: str, details_key: str | None = None, **details: Any
    ) -> int:
        event_id = len(self.events) + 1
        event: dict[str, Any] = {"timestamp": self._now, "type": kind, "id": event_id}
        previous = branch.last_event if branch is not None else len(self.events)
        if previous:
            event["previousEventId"] = previous
        if details_key is not None:
            event[details_key] = {k: v for k, v in details.items() if v is not None}
        if len(self.events) < HISTORY_EVENTS_MAX:
            self.events.append(event)
        if branch is not None:
            branch.last_event = event_id
        return event_id

    # -- inputs --------------------------------------------------------------------------------

    def feed(self, inp: dict[str, Any]) -> None:
        self.inputs_fed += 1
        self._now = int(inp["t"])
        kind = inp["k"]
        if kind == "start":
            self._start(inp.get("input"))
        elif kind == "redrive":
            self._redrive()
        elif kind == "stop":
            self._stop(inp.get("error"), inp.get("cause"))
        elif self.status == "RUNNING":
            if kind == "timer":
                self._timer(int(inp["timer"]))
            elif kind in ("ok", "fail", "sub", "started", "hb"):
                task = self.tasks.get(int(inp["task"]))
                if task is not None:
                    self._task_input(task, kind, inp)
        self._drain()

    def _drain(self) -> None:
        while self._queue and self.status == "RUNNING":
            branch = self._queue.popleft()
            if branch.alive:
                self._enter(branch)

    def _start(self, value: Any) -> None:
        if self.status != "PENDING":
            return
        self.status = "RUNNING"
        self.input = value
        self.start_ms = self._now
        self._event(
            None,
            "ExecutionStarted",
            "executionStartedEventDetails",
            input=dumps(value),
            inputDetails={"truncated": False},
            roleArn=self.role_arn or None,
        )
        definition = self.definition
        root = self._new_branch(
            definition["States"],
            definition["StartAt"],
            definition.get("QueryLanguage", JSONPATH),
            None,
            0,
            dict(self._initial_variables),
        )
        timeout = definition.get("TimeoutSeconds")
        if isinstance(timeout, int) and timeout > 0 and self.single_state is None:
            self._set_timer(self._now + timeout * 1000, "execution", 0)
        if self.single_state is not None:
            root.start_at = self.single_state
        root.name = root.start_at
        root.raw_input = value
        self._queue.append(root)

    def _new_branch(
        self,
        states: dict[str, Any],
        start_at: str,
        ql: str,
        parent: int | None,
        index: int,
        variables: dict[str, Any],
    ) -> Branch:
        branch = Branch(self._next_id(), states, start_at, ql, parent, index, variables)
        branch.name = start_at
        owner = self.branches.get(parent) if parent is not None else None
        branch.last_event = owner.last_event if owner is not None else len(self.events)
        self.branches[branch.id] = branch
        return branch

    def _finish(self, status: str, kind: str, details_key: str, **details: Any) -> None:
        self.status = status
        self.stop_ms = self._now
        for branch in self.branches.values():
            branch.alive = False
        self.tasks.clear()
        self.dispatch.clear()
        self.timers.clear()
        self._queue.clear()
        self._event(None, kind, details_key, **details)

    def _stop(self, error: Any, cause: Any) -> None:
        if self.status != "RUNNING":
            return
        self.error = error
        self.cause = cause
        self._failed_at = self._failed_at or self._root_position()
        self._finish(
            "ABORTED", "ExecutionAborted", "executionAbortedEventDetails", error=error, cause=cause
        )

    def _root_position(self) -> tuple[int, str, Any] | None:
        for branch in self.branches.values():
            if branch.parent is None and branch.alive:
                return branch.id, branch.name, branch.raw_input
        return None

    @property
    def redrivable(self) -> bool:
        return self.status in ("FAILED", "ABORTED", "TIMED_OUT") and self._failed_at is not None

    def _redrive(self) -> None:
        if not self.redrivable or self._failed_at is None:
            return
        branch_id, state, raw_input = self._failed_at
        self._failed_at = None
        self.status = "RUNNING"
        self.error = self.cause = None
        self.output = None
        self.stop_ms = None
        self.redrive_count += 1
        self.redrive_ms = self._now
        self._event(
            None,
            "ExecutionRedriven",
            "executionRedrivenEventDetails",
            redriveCount=self.redrive_count,
        )
        old = self.branches[branch_id]
        root = self._new_branch(old.states, state, old.ql, None, 0, dict(old.variables))
        root.raw_input = raw_input
        # a Map or Parallel state keeps what its children had produced: only the children
        # that had not succeeded run again
        self._redo_group = old.group if old.name == state else None
        self._queue.append(root)

    # -- state entry -----------------------------------------------------------------------------

    def _state(self, branch: Branch) -> dict[str, Any]:
        state: dict[str, Any] = branch.states[branch.name]
        return state

    def _ql(self, branch: Branch, state: dict[str, Any]) -> str:
        return str(state.get("QueryLanguage", branch.ql))

    def _enter(self, branch: Branch) -> None:
        state = self._state(branch)
        kind = state["Type"]
        branch.entered_ms = self._now
        branch.retries = {}
        branch.retry_count = 0
        self._event(
            branch,
            f"{_EVENT_PREFIX[kind]}Entered",
            "stateEnteredEventDetails",
            name=branch.name,
            input=dumps(branch.raw_input),
            inputDetails={"truncated": False},
        )
        if self.single_state is not None:
            self.inspection["input"] = dumps(branch.raw_input)
        self._run(branch)

    def _run(self, branch: Branch) -> None:
        """Run the current state's body (again, after a retry)."""
        state = self._state(branch)
        try:
            handler = getattr(self, "_run_" + state["Type"].lower())
            handler(branch, state)
        except StateError as exc:
            self._state_failed(branch, exc.error, exc.cause)

    # -- data flow -----------------------------------------------------------------------------

    def context(self, branch: Branch, *, token: str | None = None) -> dict[str, Any]:
        execution: dict[str, Any] = {
            "Id": self.execution_arn,
            "Input": self.input,
            "Name": self.name,
            "RoleArn": self.role_arn,
            "StartTime": format_ms(self.start_ms),
            "RedriveCount": self.redrive_count,
        }
        if self.redrive_ms is not None:
            execution["RedriveTime"] = format_ms(self.redrive_ms)
        ctx: dict[str, Any] = {
            "Execution": execution,
            "State": {
                "EnteredTime": format_ms(branch.entered_ms),
                "Name": branch.name,
                "RetryCount": branch.retry_count,
            },
            "StateMachine": {"Id": self.state_machine_arn, "Name": self.state_machine_name},
        }
        if token is not None:
            ctx["Task"] = {"Token": token}
        if branch.map_item is not None:
            ctx["Map"] = {"Item": {"Index": branch.map_item[0], "Value": branch.map_item[1]}}
        for key, value in self._test_context.items():
            if isinstance(value, dict) and isinstance(ctx.get(key), dict):
                ctx[key] = {**ctx[key], **value}
            else:
                ctx[key] = value
        return ctx

    def _path_value(
        self, text: str, doc: Any, branch: Branch, ctx: dict[str, Any] | None, field_name: str
    ) -> Any:
        try:
            path = compile_path(text)
        except PathError as exc:
            raise runtime(str(exc)) from None
        if path.root == "$$":
            base = ctx if ctx is not None else self.context(branch)
        elif path.root == "$":
            base = doc
        else:
            if path.root not in branch.variables:
                raise runtime(
                    f"The JSONPath '{text}' specified for the field '{field_name}' references "
                    f"the undefined variable '${path.root}'"
                )
            base = branch.variables[path.root]
        try:
            return path.get(base)
        except PathNotFound:
            raise runtime(
                f"The JSONPath '{text}' specified for the field '{field_name}' could not be "
                f"found in the input '{dumps(doc)}'"
            ) from None

    def _apply_input_path(self, branch: Branch, state: dict[str, Any], raw: Any) -> Any:
        if "InputPath" not in state:
            return raw
        text = state["InputPath"]
        if text is None:
            return {}
        try:
            return self._path_value(text, raw, branch, None, "InputPath")
        except StateError:
            raise runtime(f"Invalid path '{text}' : No results for path: {text}") from None

    def _resolve(
        self, template: Any, doc: Any, branch: Branch, ctx: dict[str, Any], where: str
    ) -> Any:
        """A payload template (``Parameters``, ``ResultSelector``, ``ItemSelector``, JSONPath
        ``Assign``): keys ending in ``.$`` take a path or an intrinsic."""
        if isinstance(template, dict):
            out: dict[str, Any] = {}
            for key, value in template.items():
                if key.endswith(".$") and isinstance(value, str):
                    name = key[:-2]
                    if is_intrinsic(value):
                        try:
                            out[name] = parse_intrinsic(value).evaluate(
                                doc, ctx, branch.variables, self.entropy
                            )
                        except IntrinsicError as exc:
                            raise StateError("States.IntrinsicFailure", str(exc)) from None
                        except ValueError as exc:
                            raise StateError("States.IntrinsicFailure", str(exc)) from None
                    else:
                        out[name] = self._path_value(value, doc, branch, ctx, key)
                else:
                    out[key] = self._resolve(value, doc, branch, ctx, where)
            return out
        if isinstance(template, list):
            return [self._resolve(v, doc, branch, ctx, where) for v in template]
        return template

    def _apply_result_path(self, state: dict[str, Any], raw: Any, result: Any) -> Any:
        if "ResultPath" not in state:
            return result
        text = state["ResultPath"]
        if text is None:
            return raw
        try:
            return set_reference(raw, compile_path(text), result)
        except (PathNotFound, PathError):
            raise runtime(f"Unable to apply ResultPath '{text}' to input '{dumps(raw)}'") from None

    def _apply_output_path(self, branch: Branch, state: dict[str, Any], value: Any) -> Any:
        if "OutputPath" not in state:
            return value
        text = state["OutputPath"]
        if text is None:
            return {}
        return self._path_value(text, value, branch, None, "OutputPath")

    def _states_var(self, branch: Branch, **extra: Any) -> dict[str, Any]:
        states = {"input": branch.raw_input, "context": self.context(branch)}
        states.update(extra)
        return states

    def _jsonata(self, template: Any, branch: Branch, states: dict[str, Any], where: str) -> Any:
        try:
            return jq.resolve(
                template, states, branch.variables, self._now, self.entropy, field=where
            )
        except jq.QueryError as exc:
            raise StateError("States.QueryEvaluationError", str(exc)) from None
        except jq.QuerySyntaxError as exc:
            raise StateError("States.QueryEvaluationError", str(exc)) from None

    def _assign(self, branch: Branch, assign: Any, doc: Any, states: dict[str, Any] | None) -> None:
        """Workflow variables: JSONPath ``Assign`` resolves against ``doc`` (the state's
        result), JSONata against ``$states``; all values are computed before any is set."""
        if not isinstance(assign, dict):
            return
        if states is not None:
            values = self._jsonata(assign, branch, states, "Assign")
        else:
            values = self._resolve(assign, doc, branch, self.context(branch), "Assign")
        branch.variables.update(values)
        if self.single_state is not None:
            self.inspection["variables"] = dumps(branch.variables)

    def _finish_jsonpath(
        self, branch: Branch, state: dict[str, Any], result: Any, *, selector: bool = True
    ) -> Any:
        """ResultSelector, Assign, ResultPath and OutputPath of a JSONPath state's result."""
        if selector and "ResultSelector" in state:
            result = self._resolve(
                state["ResultSelector"], result, branch, self.context(branch), "ResultSelector"
            )
            if self.single_state is not None:
                self.inspection["afterResultSelector"] = dumps(result)
        if "Assign" in state:
            self._assign(branch, state["Assign"], result, None)
        merged = self._apply_result_path(state, branch.raw_input, result)
        if self.single_state is not None:
            self.inspection["afterResultPath"] = dumps(merged)
        return self._apply_output_path(branch, state, merged)

    def _finish_jsonata(
        self, branch: Branch, state: dict[str, Any], result: Any, *, has_result: bool
    ) -> Any:
        states = self._states_var(branch, **({"result": result} if has_result else {}))
        if "Output" in state:
            output = self._jsonata(state["Output"], branch, states, "Output")
        else:
            output = result if has_result else branch.raw_input
        if "Assign" in state:
            self._assign(branch, state["Assign"], None, states)
        return output

    def _leave_with(self, branch: Branch, state: dict[str, Any], result: Any) -> None:
        """Leave ``state`` with its result (a Task's, or a Parallel's or Map's list) through
        JSONata Output and Assign, or JSONPath ResultSelector to OutputPath; a ``StateError``
        of those fails the state."""
        try:
            if self._ql(branch, state) == JSONATA:
                output = self._finish_jsonata(branch, state, result, has_result=True)
            else:
                output = self._finish_jsonpath(branch, state, result)
        except StateError as exc:
            self._state_failed(branch, exc.error, exc.cause)
            return
        self._exit(branch, state, output, self._next_of(state))

    # -- transitions -----------------------------------------------------------------------------

    def _exit(self, branch: Branch, state: dict[str, Any], output: Any, nxt: str | None) -> None:
        kind = state["Type"]
        if kind not in ("Fail",):
            self._event(
                branch,
                f"{_EVENT_PREFIX[kind]}Exited",
                "stateExitedEventDetails",
                name=branch.name,
                output=dumps(output),
                outputDetails={"truncated": False},
            )
        if self.single_state is not None and branch.parent is None:
            self.next_state = nxt
            self.test_status = self.test_status or "SUCCEEDED"
            self.output = output
            self.status = "SUCCEEDED"
            self.stop_ms = self._now
            return
        if nxt is None:
            self._branch_done(branch, output)
            return
        branch.name = nxt
        branch.raw_input = output
        branch.waiting = ""
        branch.group = None
        self._queue.append(branch)

    def _next_of(self, state: dict[str, Any]) -> str | None:
        if state.get("End") is True or state["Type"] in ("Succeed", "Fail"):
            return None
        nxt: str = state["Next"]
        return nxt

    def _branch_done(self, branch: Branch, output: Any) -> None:
        branch.alive = False
        branch.waiting = "done"
        if branch.parent is None:
            self.output = output
            self._finish(
                "SUCCEEDED",
                "ExecutionSucceeded",
                "executionSucceededEventDetails",
                output=dumps(output),
                outputDetails={"truncated": False},
            )
            return
        owner = self.branches[branch.parent]
        group = owner.group
        if group is None or not owner.alive:
            return
        group.results[branch.index] = output
        group.succeeded.add(branch.index)
        group.running.pop(branch.index, None)
        if group.kind == "Map":
            self._event(
                owner,
                "MapIterationSucceeded",
                "mapIterationSucceededEventDetails",
                name=owner.name,
                index=branch.index,
            )
        self._group_progress(owner, group)

    def _branch_failed(self, branch: Branch, error: str, cause: str) -> None:
        branch.alive = False
        branch.waiting = "done"
        if branch.parent is None:
            if self.single_state is not None:
                self.error, self.cause = error, cause
                self.test_status = "FAILED"
                self.status = "FAILED"
                return
            self.error, self.cause = error, cause
            self._failed_at = (branch.id, branch.name, branch.raw_input)
            self._finish(
                "FAILED", "ExecutionFailed", "executionFailedEventDetails", error=error, cause=cause
            )
            return
        owner = self.branches[branch.parent]
        group = owner.group
        if group is None or not owner.alive:
            return
        group.running.pop(branch.index, None)
        if group.kind == "Map":
            self._event(
                owner,
                "MapIterationFailed",
                "mapIterationFailedEventDetails",
                name=owner.name,
                index=branch.index,
            )
            if error not in TERMINAL_ERRORS and self._tolerates(group):
                group.failures += 1
                if not self._over_tolerance(group):
                    group.results[branch.index] = {"Error": error, "Cause": cause}
                    self._group_progress(owner, group)
                    return
                error = "States.ExceedToleratedFailureThreshold"
                cause = "The specified tolerated failure threshold was exceeded"
        self._group_failed(owner, group, error, cause)

    def _tolerates(self, group: Group) -> bool:
        return group.tolerated_count is not None or group.tolerated_percentage is not None

    def _over_tolerance(self, group: Group) -> bool:
        if group.tolerated_count is not None and group.failures > group.tolerated_count:
            return True
        if group.tolerated_percentage is not None and group.size:
            return group.failures * 100.0 / group.size > group.tolerated_percentage
        return False

    def _group_failed(self, owner: Branch, group: Group, error: str, cause: str) -> None:
        group.failed = True
        for child_id in list(group.running.values()):
            self._kill(child_id)
        group.running.clear()
        self._event(owner, f"{group.kind}StateFailed", None)
        self._state_failed(owner, error, cause)

    def _kill(self, branch_id: int) -> None:
        """End a branch and everything under it: its tasks and timers are dropped."""
        doomed = {branch_id}
        stack = [branch_id]
        while stack:
            current = stack.pop()
            for b in self.branches.values():
                if b.parent == current and b.id not in doomed:
                    doomed.add(b.id)
                    stack.append(b.id)
        for bid in doomed:
            gone = self.branches.get(bid)
            if gone is not None:
                gone.alive = False
        for task_id in [t.id for t in self.tasks.values() if t.branch in doomed]:
            del self.tasks[task_id]
        for timer_id in [t.id for t in self.timers.values() if self._timer_branch(t) in doomed]:
            del self.timers[timer_id]

    def _timer_branch(self, timer: Timer) -> int:
        if timer.kind in ("task", "heartbeat"):
            task = self.tasks.get(timer.ref)
            return task.branch if task is not None else -1
        return timer.ref

    def _gc(self) -> None:
        """Forget finished branches no group can ask about any more."""
        for bid in [b.id for b in self.branches.values() if not b.alive and b.parent is not None]:
            owner = self.branches.get(self.branches[bid].parent or 0)
            if owner is None or not owner.alive:
                del self.branches[bid]

    # -- errors: Retry and Catch -----------------------------------------------------------------

    @staticmethod
    def _matches(names: list[str], error: str) -> bool:
        for name in names:
            if name == error:
                return True
            if name == "States.ALL" and error not in TERMINAL_ERRORS:
                return True
            if (
                name == "States.TaskFailed"
                and error not in TERMINAL_ERRORS
                and error != ("States.Timeout")
            ):
                return True
        return False

    def _state_failed(self, branch: Branch, error: str, cause: str) -> None:
        state = self._state(branch)
        if error not in TERMINAL_ERRORS and state["Type"] in ("Task", "Parallel", "Map"):
            if self._retry(branch, state, error, cause):
                return
            if self._catch(branch, state, error, cause):
                return
        if self.single_state is not None and branch.parent is None and self.test_status is None:
            self.test_status = "FAILED"
        self._branch_failed(branch, error, cause)

    def _retry(self, branch: Branch, state: dict[str, Any], error: str, cause: str) -> bool:
        for i, retrier in enumerate(state.get("Retry") or []):
            if not self._matches(retrier.get("ErrorEquals", []), error):
                continue
            attempts = branch.retries.get(i, 0)
            if attempts >= int(retrier.get("MaxAttempts", 3)):
                return False
            interval = float(retrier.get("IntervalSeconds", 1))
            backoff = float(retrier.get("BackoffRate", 2.0))
            delay_s = interval * backoff**attempts
            max_delay = retrier.get("MaxDelaySeconds")
            if max_delay is not None:
                delay_s = min(delay_s, float(max_delay))
            if retrier.get("JitterStrategy") == "FULL":
                delay_s = delay_s * self.entropy.random_float()
            branch.retries[i] = attempts + 1
            branch.retry_count += 1
            if self.single_state is not None and branch.parent is None:
                self.test_status = "RETRIABLE"
                self.error, self.cause = error, cause
                self.inspection["errorDetails"] = {
                    "retryIndex": i,
                    "retryBackoffIntervalSeconds": int(delay_s),
                }
                self.status = "FAILED"
                return True
            branch.waiting = "timer"
            self._set_timer(self._now + int(delay_s * 1000), "retry", branch.id)
            return True
        return False

    def _catch(self, branch: Branch, state: dict[str, Any], error: str, cause: str) -> bool:
        for i, catcher in enumerate(state.get("Catch") or []):
            if not self._matches(catcher.get("ErrorEquals", []), error):
                continue
            error_output = {"Error": error, "Cause": cause}
            if self.single_state is not None and branch.parent is None:
                self.test_status = "CAUGHT_ERROR"
                self.error, self.cause = error, cause
                self.inspection["errorDetails"] = {"catchIndex": i}
            if self._ql(branch, state) == JSONATA:
                states = self._states_var(branch, errorOutput=error_output)
                if "Output" in catcher:
                    output = self._jsonata(catcher["Output"], branch, states, "Catch/Output")
                else:
                    output = error_output
                if "Assign" in catcher:
                    self._assign(branch, catcher["Assign"], None, states)
            else:
                if "Assign" in catcher:
                    self._assign(branch, catcher["Assign"], error_output, None)
                if "ResultPath" in catcher:
                    text = catcher["ResultPath"]
                    if text is None:
                        output = branch.raw_input
                    else:
                        output = set_reference(branch.raw_input, compile_path(text), error_output)
                else:
                    output = error_output
            self._exit(branch, state, output, catcher["Next"])
            return True
        return False

    # -- timers ----------------------------------------------------------------------------------

    def _set_timer(self, due_ms: int, kind: str, ref: int) -> int:
        timer = Timer(self._next_id(), due_ms, kind, ref)
        self.timers[timer.id] = timer
        return timer.id

    def _timer(self, timer_id: int) -> None:
        timer = self.timers.pop(timer_id, None)
        if timer is None:
            return
        if timer.kind == "execution":
            self.error, self.cause = "States.Timeout", "The execution timed out"
            self._failed_at = self._root_position()
            self._finish(
                "TIMED_OUT",
                "ExecutionTimedOut",
                "executionTimedOutEventDetails",
                error="States.Timeout",
                cause="The execution timed out",
            )
            return
        if timer.kind in ("task", "heartbeat"):
            task = self.tasks.pop(timer.ref, None)
            if task is None:
                return
            self._drop_task_timers(task.id)
            branch = self.branches[task.branch]
            error = "States.Timeout" if timer.kind == "task" else "States.HeartbeatTimeout"
            cause = (
                "The task timed out" if timer.kind == "task" else "The task's heartbeat timed out"
            )
            self._task_event(branch, task, "TimedOut", error=error, cause=cause)
            self._state_failed(branch, error, cause)
            return
        waiting = self.branches.get(timer.ref)
        if waiting is None or not waiting.alive:
            return
        branch = waiting
        branch.waiting = ""
        if timer.kind == "wait":
            state = self._state(branch)
            try:
                output = self._wait_output(branch, state)
            except StateError as exc:
                self._state_failed(branch, exc.error, exc.cause)
                return
            self._exit(branch, state, output, self._next_of(state))
        elif timer.kind == "retry":
            self._run(branch)

    def _drop_task_timers(self, task_id: int) -> None:
        for timer_id in [
            t.id
            for t in self.timers.values()
            if t.kind in ("task", "heartbeat") and t.ref == task_id
        ]:
            del self.timers[timer_id]

    # -- Pass, Succeed, Fail, Choice, Wait -------------------------------------------------------

    def _run_pass(self, branch: Branch, state: dict[str, Any]) -> None:
        if self._ql(branch, state) == JSONATA:
            output = self._finish_jsonata(branch, state, None, has_result=False)
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            if "Parameters" in state:
                result = self._resolve(
                    state["Parameters"], effective, branch, self.context(branch), "Parameters"
                )
                if self.single_state is not None:
                    self.inspection["afterParameters"] = dumps(result)
            elif "Result" in state:
                result = state["Result"]
            else:
                result = effective
            output = self._finish_jsonpath(branch, state, result, selector=False)
        self._exit(branch, state, output, self._next_of(state))

    def _run_succeed(self, branch: Branch, state: dict[str, Any]) -> None:
        if self._ql(branch, state) == JSONATA:
            output = self._finish_jsonata(branch, state, None, has_result=False)
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            output = self._apply_output_path(branch, state, effective)
        self._exit(branch, state, output, None)

    def _run_fail(self, branch: Branch, state: dict[str, Any]) -> None:
        error = state.get("Error")
        cause = state.get("Cause")
        if self._ql(branch, state) == JSONATA:
            states = self._states_var(branch)
            if jq.is_expr(error):
                error = self._jsonata(error, branch, states, "Error")
            if jq.is_expr(cause):
                cause = self._jsonata(cause, branch, states, "Cause")
        else:
            if "ErrorPath" in state:
                error = self._dynamic(state["ErrorPath"], branch, "ErrorPath")
            if "CausePath" in state:
                cause = self._dynamic(state["CausePath"], branch, "CausePath")
        for value, name in ((error, "ErrorPath"), (cause, "CausePath")):
            if value is not None and not isinstance(value, str):
                raise runtime(f"The value of the field '{name}' must be a string")
        self._branch_failed(branch, error or "", cause or "")

    def _dynamic(self, text: str, branch: Branch, field_name: str) -> Any:
        if is_intrinsic(text):
            try:
                return parse_intrinsic(text).evaluate(
                    branch.raw_input, self.context(branch), branch.variables, self.entropy
                )
            except (IntrinsicError, ValueError) as exc:
                raise StateError("States.IntrinsicFailure", str(exc)) from None
        return self._path_value(text, branch.raw_input, branch, None, field_name)

    def _run_choice(self, branch: Branch, state: dict[str, Any]) -> None:
        if self._ql(branch, state) == JSONATA:
            states = self._states_var(branch)
            for rule in state.get("Choices", []):
                matched = self._jsonata(rule["Condition"], branch, states, "Condition")
                if not isinstance(matched, bool):
                    raise StateError(
                        "States.QueryEvaluationError", "A Condition must evaluate to a boolean"
                    )
                if matched:
                    output = self._choice_output(branch, state, rule, states)
                    self._exit(branch, state, output, rule["Next"])
                    return
            if "Default" in state:
                output = self._choice_output(branch, state, None, states)
                self._exit(branch, state, output, state["Default"])
                return
            raise StateError(
                "States.NoChoiceMatched", "No Matches! No Choice in the Choice state matched"
            )
        effective = self._apply_input_path(branch, state, branch.raw_input)
        for rule in state.get("Choices", []):
            if self._rule(rule, effective, branch):
                if "Assign" in rule:
                    self._assign(branch, rule["Assign"], effective, None)
                output = self._apply_output_path(branch, state, effective)
                self._exit(branch, state, output, rule["Next"])
                return
        if "Default" in state:
            if "Assign" in state:
                self._assign(branch, state["Assign"], effective, None)
            self._exit(
                branch, state, self._apply_output_path(branch, state, effective), state["Default"]
            )
            return
        raise StateError(
            "States.NoChoiceMatched",
            f"No Matches! No Choice in the Choice state '{branch.name}' matched the input",
        )

    def _choice_output(
        self, branch: Branch, state: dict[str, Any], rule: dict[str, Any] | None, states: Any
    ) -> Any:
        source = rule if rule is not None and "Output" in rule else state
        output = (
            self._jsonata(source["Output"], branch, states, "Output")
            if "Output" in source
            else branch.raw_input
        )
        assign = (
            rule.get("Assign") if rule is not None and "Assign" in rule else state.get("Assign")
        )
        if assign is not None:
            self._assign(branch, assign, None, states)
        return output

    def _rule(self, rule: dict[str, Any], doc: Any, branch: Branch) -> bool:
        if "And" in rule:
            return all(self._rule(r, doc, branch) for r in rule["And"])
        if "Or" in rule:
            return any(self._rule(r, doc, branch) for r in rule["Or"])
        if "Not" in rule:
            return not self._rule(rule["Not"], doc, branch)
        variable = rule["Variable"]
        path = compile_path(variable)
        base = self._path_base(path.root, doc, branch)
        present = base is not _ABSENT and path.exists(base)
        if "IsPresent" in rule:
            return present is bool(rule["IsPresent"])
        if not present:
            raise runtime(
                f"Invalid path '{variable}': The choice state's condition path references an "
                "invalid value."
            )
        value = path.get(base)
        for op, expected in rule.items():
            if op in ("Variable", "Next", "Assign", "Comment"):
                continue
            if op.endswith("Path") and op not in ("IsPresent",):
                other = compile_path(expected)
                other_base = self._path_base(other.root, doc, branch)
                if other_base is _ABSENT or not other.exists(other_base):
                    raise runtime(
                        f"Invalid path '{expected}': The choice state's condition path "
                        "references an invalid value."
                    )
                return _compare(op[:-4], value, other.get(other_base))
            return _compare(op, value, expected)
        return False

    def _path_base(self, root: str, doc: Any, branch: Branch) -> Any:
        if root == "$":
            return doc
        if root == "$$":
            return self.context(branch)
        return branch.variables.get(root, _ABSENT)

    def _run_wait(self, branch: Branch, state: dict[str, Any]) -> None:
        due_ms: int
        if self._ql(branch, state) == JSONATA:
            states = self._states_var(branch)
            if "Seconds" in state:
                seconds = state["Seconds"]
                if jq.is_expr(seconds):
                    seconds = self._jsonata(seconds, branch, states, "Seconds")
                due_ms = self._now + self._wait_seconds(seconds, "Seconds")
            else:
                stamp = state["Timestamp"]
                if jq.is_expr(stamp):
                    stamp = self._jsonata(stamp, branch, states, "Timestamp")
                due_ms = self._wait_timestamp(stamp, "Timestamp")
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            branch.effective = effective
            if "Seconds" in state:
                due_ms = self._now + self._wait_seconds(state["Seconds"], "Seconds")
            elif "SecondsPath" in state:
                value = self._path_value(
                    state["SecondsPath"], effective, branch, None, "SecondsPath"
                )
                due_ms = self._now + self._wait_seconds(value, "SecondsPath")
            elif "Timestamp" in state:
                due_ms = self._wait_timestamp(state["Timestamp"], "Timestamp")
            else:
                value = self._path_value(
                    state["TimestampPath"], effective, branch, None, "TimestampPath"
                )
                due_ms = self._wait_timestamp(value, "TimestampPath")
        if self.single_state is not None and branch.parent is None:
            self._exit(branch, state, self._wait_output(branch, state), self._next_of(state))
            return
        branch.waiting = "timer"
        self._set_timer(max(due_ms, self._now), "wait", branch.id)

    def _wait_seconds(self, value: Any, name: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise runtime(
                f"The value of '{name}' must be a non-negative integer, got {dumps(value)}"
            )
        if value > WAIT_S_MAX:
            raise runtime(f"The value of '{name}' is over {WAIT_S_MAX} seconds")
        return value * 1000

    def _wait_timestamp(self, value: Any, name: str) -> int:
        ms = parse_ms(value) if isinstance(value, str) else None
        if ms is None:
            raise runtime(f"The value of '{name}' is not a valid timestamp: {dumps(value)}")
        return ms

    def _wait_output(self, branch: Branch, state: dict[str, Any]) -> Any:
        if self._ql(branch, state) == JSONATA:
            return self._finish_jsonata(branch, state, None, has_result=False)
        effective = (
            branch.effective
            if branch.effective is not None
            else self._apply_input_path(branch, state, branch.raw_input)
        )
        return self._apply_output_path(branch, state, effective)

    # -- Task ------------------------------------------------------------------------------------

    def _field(
        self, branch: Branch, state: dict[str, Any], name: str, doc: Any, states: Any, default: Any
    ) -> Any:
        """The value of field ``name`` (a JSONata expression evaluated) or of ``<name>Path`` (a
        path into ``doc``); ``default`` when the state has neither."""
        if name in state:
            value = state[name]
            return self._jsonata(value, branch, states, name) if jq.is_expr(value) else value
        if f"{name}Path" in state:
            return self._path_value(state[f"{name}Path"], doc, branch, None, f"{name}Path")
        return default

    def _number_field(
        self, branch: Branch, state: dict[str, Any], name: str, doc: Any, states: Any
    ) -> int | None:
        value = self._field(branch, state, name, doc, states, None)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise runtime(f"The value of the field '{name}' must be a positive integer")
        return value

    def _run_task(self, branch: Branch, state: dict[str, Any]) -> None:
        resource = state["Resource"]
        kind, resource_type, action = classify(resource)
        task_id = self._next_id()
        callback = action.endswith(".waitForTaskToken")
        token = f"{self.token_prefix}{task_id}.{self.entropy.uuid4()}"
        jsonata = self._ql(branch, state) == JSONATA
        states = None
        if jsonata:
            states = self._states_var(branch)
            states["context"] = self.context(branch, token=token)
            payload = (
                self._jsonata(state["Arguments"], branch, states, "Arguments")
                if "Arguments" in state
                else branch.raw_input
            )
            if self.single_state is not None:
                self.inspection["afterArguments"] = dumps(payload)
            effective = branch.raw_input
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            if self.single_state is not None:
                self.inspection["afterInputPath"] = dumps(effective)
            if "Parameters" in state:
                payload = self._resolve(
                    state["Parameters"],
                    effective,
                    branch,
                    self.context(branch, token=token),
                    "Parameters",
                )
            else:
                payload = effective
            if self.single_state is not None:
                self.inspection["afterParameters"] = dumps(payload)
        timeout_s = self._number_field(branch, state, "TimeoutSeconds", effective, states)
        heartbeat_s = self._number_field(branch, state, "HeartbeatSeconds", effective, states)
        if heartbeat_s is not None and timeout_s is not None and heartbeat_s >= timeout_s:
            raise runtime("HeartbeatSeconds must be smaller than TimeoutSeconds")
        credentials = state.get("Credentials")
        task = Task(
            task_id,
            branch.id,
            resource,
            kind,
            resource_type,
            action,
            payload,
            token,
            timeout_s or TASK_TIMEOUT_S_DEFAULT,
            heartbeat_s,
            callback,
            branch.name,
            credentials,
        )
        self.tasks[task_id] = task
        branch.waiting = "task"
        branch.payload = payload
        if kind == "activity":
            self._event(
                branch,
                "ActivityScheduled",
                "activityScheduledEventDetails",
                resource=resource,
                input=dumps(payload),
                inputDetails={"truncated": False},
                timeoutInSeconds=timeout_s,
                heartbeatInSeconds=heartbeat_s,
            )
        elif kind == "lambda":
            self._event(
                branch,
                "LambdaFunctionScheduled",
                "lambdaFunctionScheduledEventDetails",
                resource=resource,
                input=dumps(payload),
                inputDetails={"truncated": False},
                timeoutInSeconds=timeout_s,
            )
            self._event(branch, "LambdaFunctionStarted", None)
            task.started = True
        else:
            self._event(
                branch,
                "TaskScheduled",
                "taskScheduledEventDetails",
                resourceType=resource_type,
                resource=action,
                region=_region(self.state_machine_arn),
                parameters=dumps(payload),
                timeoutInSeconds=timeout_s,
                heartbeatInSeconds=heartbeat_s,
            )
            self._event(
                branch,
                "TaskStarted",
                "taskStartedEventDetails",
                resourceType=resource_type,
                resource=action,
            )
            task.started = True
        self._set_timer(self._now + task.timeout_s * 1000, "task", task_id)
        if heartbeat_s is not None and kind != "lambda":
            self._set_timer(self._now + heartbeat_s * 1000, "heartbeat", task_id)
        self.dispatch.append(task_id)

    def _task_event(self, branch: Branch, task: Task, what: str, **details: Any) -> None:
        if task.kind == "activity":
            key = f"activity{what}EventDetails"
            self._event(branch, f"Activity{what}", key, **details)
        elif task.kind == "lambda":
            key = f"lambdaFunction{what}EventDetails"
            self._event(branch, f"LambdaFunction{what}", key, **details)
        else:
            key = f"task{what}EventDetails"
            self._event(
                branch,
                f"Task{what}",
                key,
                resourceType=task.resource_type,
                resource=task.action,
                **details,
            )

    def _task_input(self, task: Task, kind: str, inp: dict[str, Any]) -> None:
        branch = self.branches[task.branch]
        if kind == "started":
            if not task.started:
                task.started = True
                self._event(
                    branch,
                    "ActivityStarted",
                    "activityStartedEventDetails",
                    workerName=inp.get("worker"),
                )
            return
        if kind == "hb":
            if task.heartbeat_s is not None:
                for timer in list(self.timers.values()):
                    if timer.kind == "heartbeat" and timer.ref == task.id:
                        del self.timers[timer.id]
                self._set_timer(self._now + task.heartbeat_s * 1000, "heartbeat", task.id)
            return
        if kind == "sub":
            if not task.submitted:
                task.submitted = True
                self._event(
                    branch,
                    "TaskSubmitted",
                    "taskSubmittedEventDetails",
                    resourceType=task.resource_type,
                    resource=task.action,
                    output=dumps(inp.get("output")),
                    outputDetails={"truncated": False},
                )
            return
        del self.tasks[task.id]
        self._drop_task_timers(task.id)
        state = self._state(branch)
        branch.waiting = ""
        if kind == "fail":
            error = str(inp.get("error") or "")
            cause = str(inp.get("cause") or "")
            self._task_event(branch, task, "Failed", error=error or None, cause=cause or None)
            if not error:
                error = "States.TaskFailed"
            self._state_failed(branch, error, cause)
            return
        result = inp.get("output")
        if len(dumps(result)) > PAYLOAD_CHARS_MAX:
            self._task_event(
                branch,
                task,
                "Failed",
                error="States.DataLimitExceeded",
                cause="The task result is larger than 256 KiB",
            )
            self._state_failed(
                branch, "States.DataLimitExceeded", "The task result is larger than 256 KiB"
            )
            return
        self._task_event(
            branch, task, "Succeeded", output=dumps(result), outputDetails={"truncated": False}
        )
        if self.single_state is not None:
            self.inspection["result"] = dumps(result)
        self._leave_with(branch, state, result)

    # -- Parallel and Map ------------------------------------------------------------------------

    def _run_parallel(self, branch: Branch, state: dict[str, Any]) -> None:
        if self._ql(branch, state) == JSONATA:
            states = self._states_var(branch)
            child_input = (
                self._jsonata(state["Arguments"], branch, states, "Arguments")
                if "Arguments" in state
                else branch.raw_input
            )
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            child_input = (
                self._resolve(
                    state["Parameters"], effective, branch, self.context(branch), "Parameters"
                )
                if "Parameters" in state
                else effective
            )
        definitions = state["Branches"]
        previous = self._redo(branch)
        group = Group("Parallel", branch.id, len(definitions), [None] * len(definitions))
        if previous is not None:
            group.results = previous.results
            group.succeeded = set(previous.succeeded)
        branch.group = group
        branch.waiting = "group"
        self._event(branch, "ParallelStateStarted", None)
        ql = self._ql(branch, state)
        for i, definition in enumerate(definitions):
            if i in group.succeeded:
                continue
            child = self._new_branch(
                definition["States"],
                definition["StartAt"],
                definition.get("QueryLanguage", ql),
                branch.id,
                i,
                dict(branch.variables),
            )
            child.raw_input = child_input
            group.running[i] = child.id
            self._queue.append(child)
        self._group_progress(branch, group)

    def _redo(self, branch: Branch) -> Group | None:
        redo = self._redo_group
        self._redo_group = None
        if redo is not None and branch.parent is None:
            return redo
        return None

    def _run_map(self, branch: Branch, state: dict[str, Any]) -> None:
        ql = self._ql(branch, state)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        assert isinstance(processor, dict)
        if ql == JSONATA:
            states = self._states_var(branch)
            items = state.get("Items", "{% $states.input %}")
            items = self._jsonata(items, branch, states, "Items")
            effective = branch.raw_input
        else:
            effective = self._apply_input_path(branch, state, branch.raw_input)
            items = (
                self._path_value(state["ItemsPath"], effective, branch, None, "ItemsPath")
                if "ItemsPath" in state
                else effective
            )
            states = None
        if not isinstance(items, list):
            raise runtime(
                "Map state input must be an array, got "
                f"{dumps(items)[:200]} (from {'Items' if ql == JSONATA else 'ItemsPath'})"
            )
        if len(items) > MAP_ITEMS_MAX:
            raise runtime(f"A Map state can have at most {MAP_ITEMS_MAX} items")
        concurrency = self._number_field_zero(branch, state, "MaxConcurrency", effective, states)
        selector = state.get("ItemSelector", state.get("Parameters"))
        inputs: list[Any] = []
        for index, item in enumerate(items):
            if selector is None:
                inputs.append(item)
                continue
            branch.map_item = (index, item)
            try:
                if ql == JSONATA:
                    st = self._states_var(branch)
                    inputs.append(self._jsonata(selector, branch, st, "ItemSelector"))
                else:
                    inputs.append(
                        self._resolve(
                            selector, effective, branch, self.context(branch), "ItemSelector"
                        )
                    )
            finally:
                branch.map_item = None
        batcher = state.get("ItemBatcher")
        if isinstance(batcher, dict):
            size = int(batcher.get("MaxItemsPerBatch", len(inputs) or 1))
            base = batcher.get("BatchInput") or {}
            inputs = [
                {**base, "Items": inputs[i : i + size]} for i in range(0, len(inputs), max(size, 1))
            ]
        previous = self._redo(branch)
        group = Group("Map", branch.id, len(inputs), [None] * len(inputs), inputs=inputs)
        if previous is not None and previous.size == len(inputs):
            group.results = previous.results
            group.succeeded = set(previous.succeeded)
        limit = MAP_INLINE_CONCURRENCY_MAX
        group.concurrency = min(concurrency, limit) if concurrency else limit
        tolerated_count = self._tolerance(branch, state, "ToleratedFailureCount", effective, states)
        tolerated_pct = self._tolerance(
            branch, state, "ToleratedFailurePercentage", effective, states
        )
        group.tolerated_count = None if tolerated_count is None else int(tolerated_count)
        group.tolerated_percentage = None if tolerated_pct is None else float(tolerated_pct)
        group.pending = deque(i for i in range(len(inputs)) if i not in group.succeeded)
        branch.group = group
        branch.waiting = "group"
        self._event(branch, "MapStateStarted", "mapStateStartedEventDetails", length=len(inputs))
        self._group_progress(branch, group)

    def _number_field_zero(
        self, branch: Branch, state: dict[str, Any], name: str, doc: Any, states: Any
    ) -> int:
        value = self._field(branch, state, name, doc, states, 0)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise runtime(f"The value of the field '{name}' must be a non-negative integer")
        return value

    def _tolerance(
        self, branch: Branch, state: dict[str, Any], name: str, doc: Any, states: Any
    ) -> float | None:
        value = self._field(branch, state, name, doc, states, None)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise runtime(f"The value of the field '{name}' must be a non-negative number")
        if name == "ToleratedFailurePercentage" and value > 100:
            raise runtime("ToleratedFailurePercentage must be at most 100")
        return float(value)

    def _group_progress(self, owner: Branch, group: Group) -> None:
        """Start Map iterations up to the concurrency, and finish the state when every child
        has finished."""
        state = self._state(owner)
        if group.kind == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            ql = processor.get("QueryLanguage", self._ql(owner, state))
            while group.pending and len(group.running) < group.concurrency:
                index = group.pending.popleft()
                child = self._new_branch(
                    processor["States"],
                    processor["StartAt"],
                    ql,
                    owner.id,
                    index,
                    dict(owner.variables),
                )
                child.raw_input = group.inputs[index]
                group.running[index] = child.id
                self._event(
                    owner,
                    "MapIterationStarted",
                    "mapIterationStartedEventDetails",
                    name=owner.name,
                    index=index,
                )
                self._queue.append(child)
        if group.running or group.pending or group.failed:
            return
        self._event(owner, f"{group.kind}StateSucceeded", None)
        owner.waiting = ""
        results = list(group.results)
        self._gc()
        self._leave_with(owner, state, results)


class _Absent:
    pass


_ABSENT = _Absent()


def _region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_matches(value: str, pattern: str) -> bool:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(_re_escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else _re_escape(ch))
        i += 1
    import re

    return re.fullmatch("".join(out), value, re.DOTALL) is not None


def _re_escape(ch: str) -> str:
    import re

    return re.escape(ch)


def _compare(op: str, value: Any, expected: Any) -> bool:
    """One Choice comparison; a value of the wrong type compares false, as AWS does."""
    if op == "IsNull":
        return (value is None) is bool(expected)
    if op == "IsNumeric":
        return _is_number(value) is bool(expected)
    if op == "IsString":
        return isinstance(value, str) is bool(expected)
    if op == "IsBoolean":
        return isinstance(value, bool) is bool(expected)
    if op == "IsTimestamp":
        return (isinstance(value, str) and parse_ms(value) is not None) is bool(expected)
    if op == "StringMatches":
        return (
            isinstance(value, str)
            and isinstance(expected, str)
            and _string_matches(value, expected)
        )
    if op == "BooleanEquals":
        return isinstance(value, bool) and value is expected
    for prefix in ("String", "Numeric", "Timestamp"):
        if op.startswith(prefix):
            relation = op[len(prefix) :]
            if prefix == "String":
                if not isinstance(value, str) or not isinstance(expected, str):
                    return False
                a: Any = value
                b: Any = expected
            elif prefix == "Numeric":
                if not _is_number(value) or not _is_number(expected):
                    return False
                a, b = value, expected
            else:
                a = parse_ms(value) if isinstance(value, str) else None
                b = parse_ms(expected) if isinstance(expected, str) else None
                if a is None or b is None:
                    return False
            return _relate(relation, a, b)
    return False


def _relate(relation: str, a: Any, b: Any) -> bool:
    if relation == "Equals":
        return bool(a == b)
    if relation == "LessThan":
        return bool(a < b)
    if relation == "GreaterThan":
        return bool(a > b)
    if relation == "LessThanEquals":
        return bool(a <= b)
    if relation == "GreaterThanEquals":
        return bool(a >= b)
    return False


COMPARATORS = tuple(
    f"{prefix}{relation}{suffix}"
    for prefix in ("String", "Numeric", "Timestamp")
    for relation in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    for suffix in ("", "Path")
) + (
    "StringMatches",
    "BooleanEquals",
    "BooleanEqualsPath",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
)
