"""The shapes a run's state.json and its task results must have before anything acts on them.

These files are ours, but they live in the user's tree: a hand edit, a merge, another program or
another version can leave valid JSON of the wrong shape. Readers check them here first, so such a
file is one clear error (its path, the JSON path, what was expected: exit 2), never a crash halfway
through a resume, a lever or a report.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, NoReturn

from awoc_scripts.errors import StateError
from awoc_scripts.run_documents import Denial, Execution, LeverRequest, Owner, RunState, TaskResult, TaskState
from awoc_scripts.state.statuses import PENDING, RUNNING, TERMINAL

if typing.TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from awoc_scripts.plan_types import JsonObject

STATUSES = frozenset({PENDING, RUNNING, *TERMINAL})
_NONE: type = type(None)
_INT: frozenset[type] = frozenset({int})
_NUMBER: frozenset[type] = frozenset({int, float})
_TEXT: frozenset[type] = frozenset({str})
_OPTIONAL_INT: frozenset[type] = frozenset({int, _NONE})
_OPTIONAL_NUMBER: frozenset[type] = frozenset({int, float, _NONE})
_OPTIONAL_TEXT: frozenset[type] = frozenset({str, _NONE})
_OBJECT: frozenset[type] = frozenset({dict})


@functools.cache
def kinds_of(document: type) -> dict[str, frozenset[type]]:
    """The JSON kinds each field of a TypedDict may hold, read from its annotations: the checks
    here are derived from run_documents.py's types, so a check and its type cannot drift. (Read
    on first use: annotations cost milliseconds that a script reading no run should not pay.)"""
    return {name: _kinds(hint) for name, hint in typing.get_type_hints(document).items()}


@functools.cache
def required_of(document: type) -> frozenset[str]:
    """Its fields not marked NotRequired (read from the annotations: with postponed annotations a
    TypedDict's own __required_keys__ cannot see NotRequired)."""
    hints = typing.get_type_hints(document, include_extras=True)
    return frozenset(name for name, hint in hints.items() if typing.get_origin(hint) is not typing.NotRequired)


def _kinds(hint: Any) -> frozenset[type]:
    if hint is type(None) or hint is None:
        return frozenset({_NONE})
    if hint is float:
        return _NUMBER  # an integer is a number
    if hint in (str, int, bool):
        return frozenset({hint})
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(_kinds(arg) for arg in typing.get_args(hint)))
    if origin is list or hint is list:
        return frozenset({list})
    if origin is dict or hint is dict or typing.is_typeddict(hint):
        return _OBJECT
    raise TypeError(f"no JSON kind for {hint!r}")


# what a shell loop calling the scripts writes (results/aggregate.py reads both)
SEED_RESULT_FIELDS: dict[str, frozenset[type]] = {
    "task_id": _OPTIONAL_TEXT,
    "agent": _TEXT,
    "exit_code": _INT,
    "tokens_used": frozenset({int, dict, _NONE}),
    "duration": _OPTIONAL_NUMBER,
}


_KIND_NAMES = {
    bool: "true or false",
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    _NONE: "null",
}


NOT_OURS = "(changed by something other than awoc; restore it or start the run again)"


class _Misshapen(Exception):
    """`json.path: what was expected, what was found`: turned into the caller's error."""


def check_state(data: object, path: Path, task_ids: Collection[str] | None = None) -> RunState:
    """DATA, read from PATH, if it has the shape of a state.json ({} for none yet); with TASK_IDS,
    its tasks must be exactly those. Raises StateError naming the first thing that is wrong."""
    try:
        return _state(data, task_ids)
    except _Misshapen as exc:
        raise StateError(f"{path}: {exc} {NOT_OURS}") from None


def result_problem(data: object, fields: dict[str, frozenset[type]] | None = None) -> str | None:
    """What is wrong with a task result's shape (`json.path: ...`), or None. FIELDS: those of
    another format (SEED_RESULT_FIELDS)."""
    try:
        if type(data) is not dict:
            _wrong("$", _OBJECT, data)
        _fields("$", data, kinds_of(TaskResult) if fields is None else fields)
        if "status" in data:
            _status("$.status", data["status"])
        if type(data.get("tokens_used")) is dict:
            _token_counts("$.tokens_used", data["tokens_used"])
        for n, denial in enumerate(data.get("permission_denials") or []):
            if type(denial) is not dict:
                _wrong(f"$.permission_denials[{n}]", _OBJECT, denial)
            _fields(f"$.permission_denials[{n}]", denial, kinds_of(Denial), required_of(Denial))
    except _Misshapen as exc:
        return str(exc)
    return None


def _state(data: object, task_ids: Collection[str] | None) -> RunState:
    if type(data) is not dict:
        _wrong("$", _OBJECT, data)
    if not data:
        return typing.cast("RunState", data)
    _fields("$", data, kinds_of(RunState), required_of(RunState))
    if data["max_concurrent"] < 1:
        raise _Misshapen(f"$.max_concurrent: expected at least 1, found {data['max_concurrent']}")
    if data.get("orchestrator") is not None:
        _fields(
            "$.orchestrator",
            data["orchestrator"],
            kinds_of(Owner),
            required_of(Owner),
        )
    for i, item in enumerate(data.get("controls", ())):
        _each_object(f"$.controls[{i}]", item, kinds_of(LeverRequest), required_of(LeverRequest))
    for i, item in enumerate(data.get("executions", ())):
        _each_object(f"$.executions[{i}]", item, kinds_of(Execution))
    tasks = data["tasks"]
    for task_id, task in tasks.items():
        if type(task) is not dict:
            _wrong(f"$.tasks.{task_id}", _OBJECT, task)
        for name in sorted(required_of(TaskState)):
            if name not in task:
                raise _Misshapen(f"$.tasks.{task_id}.{name}: missing")
        for name, value in task.items():
            kinds = kinds_of(TaskState).get(name)
            if kinds is not None and type(value) not in kinds:
                _wrong(f"$.tasks.{task_id}.{name}", kinds, value)
        if "tokens_used" in task:
            _token_counts(f"$.tasks.{task_id}.tokens_used", task["tokens_used"])
        if task["status"] not in STATUSES:
            _status(f"$.tasks.{task_id}.status", task["status"])
    if task_ids is not None and tasks.keys() != set(task_ids):
        missing = sorted(set(task_ids) - tasks.keys())
        extra = sorted(tasks.keys() - set(task_ids))
        raise _Misshapen(
            f"$.tasks: task {missing[0]!r} of the plan is missing"
            if missing
            else f"$.tasks: {extra[0]!r} is no task of the plan"
        )
    return typing.cast("RunState", data)  # checked: it has the shape


def _fields(where: str, item: JsonObject, fields: dict[str, frozenset[type]], required: Collection[str] = ()) -> None:
    for name in required:
        if name not in item:
            raise _Misshapen(f"{where}.{name}: missing")
    for name, kinds in fields.items():
        if name in item and type(item[name]) not in kinds:
            _wrong(f"{where}.{name}", kinds, item[name])


def _status(where: str, status: object) -> None:
    if status not in STATUSES:
        raise _Misshapen(f"{where}: expected one of {', '.join(sorted(STATUSES))}, found {status!r}")


def _token_counts(where: str, tokens: JsonObject) -> None:
    for kind, count in tokens.items():
        if type(count) not in _NUMBER:
            _wrong(f"{where}.{kind}", _NUMBER, count)


def _wrong(where: str, kinds: frozenset[type], found: Any) -> NoReturn:
    shown = kinds - {int} if float in kinds else kinds  # an integer is a number
    names = [_KIND_NAMES[k] for k in shown if k is not _NONE] + (["null"] if _NONE in kinds else [])
    found_name = _KIND_NAMES.get(type(found), type(found).__name__)
    raise _Misshapen(f"{where}: expected {' or '.join(names)}, found {found_name}")


def requested_controls(state: JsonObject, ours: list[LeverRequest]) -> list[LeverRequest]:
    """The controls of a state.json read while running, if they have their shape, else OURS."""
    controls = state.get("controls")
    if type(controls) is not list:
        return ours
    try:
        for item in controls:
            _each_object("$.controls[]", item, kinds_of(LeverRequest), required_of(LeverRequest))
    except _Misshapen:
        return ours
    return controls


# the fields readers of events.jsonl rely on, by event; other events are read with .get
EVENT_FIELDS: dict[str, dict[str, frozenset[type]]] = {
    "concurrency-change": {"before": _NUMBER, "after": _NUMBER},
    "task-warmed": {"task_id": _TEXT},
    "task-warm-used": {"task_id": _TEXT, "warm_s": _OPTIONAL_NUMBER},
    "task-warm-discarded": {"task_id": _TEXT},
}


def well_formed_event(event: object) -> bool:
    """Whether a line of events.jsonl is an event its readers can use: a line torn by a killed
    writer, or edited, is left out of what is read rather than stopping a report."""
    if type(event) is not dict or type(event.get("event")) is not str:
        return False
    fields = EVENT_FIELDS.get(event["event"])
    return fields is None or all(type(event.get(k, ...)) in kinds for k, kinds in fields.items())


_LIST: frozenset[type] = frozenset({list})
_OPTIONAL_OBJECT: frozenset[type] = frozenset({dict, _NONE})
# run metadata as `create-report` takes it from the user (what run_metadata in results/report.py makes)
METADATA_FIELDS: dict[str, frozenset[type]] = {
    "run_id": _OPTIONAL_TEXT,
    "workflow": _OPTIONAL_TEXT,
    "status": _OPTIONAL_TEXT,
    "stop_reason": _OPTIONAL_TEXT,
    "result_format": _OPTIONAL_TEXT,
    "total_time_s": _OPTIONAL_NUMBER,
    "total_token_budget": _OPTIONAL_NUMBER,
    "total_cost_budget_usd": _OPTIONAL_NUMBER,
    "estimated_makespan_s": _OPTIONAL_NUMBER,
    "max_concurrent": _OPTIONAL_INT,
    "executions": _LIST,
    "dependencies": _OBJECT,
    "critical_path": _LIST,
    "policies": _LIST,
    "policy_actions": _LIST,
    "concurrency": _OPTIONAL_OBJECT,
    "expected_usage": _OPTIONAL_OBJECT,
    "warm_events": _LIST,
}
POLICY_ACTION_FIELDS: dict[str, frozenset[type]] = {
    "at": _OPTIONAL_TEXT,
    "action": _OPTIONAL_TEXT,
    "by": _OPTIONAL_TEXT,
    "why": _OPTIONAL_TEXT,
}
CONCURRENCY_FIELDS: dict[str, frozenset[type]] = {
    "max_concurrent": _NUMBER,
    "lowest": _NUMBER,
    "final": _NUMBER,
    "cuts": _INT,
    "raises": _INT,
}
EXPECTED_USAGE_FIELDS: dict[str, frozenset[type]] = {"tokens": _LIST, "cost_usd": _LIST, "tasks_with_history": _INT}


def metadata_problem(data: object) -> str | None:
    """What is wrong with run metadata given to create-report (`json.path: ...`), or None."""
    try:
        if type(data) is not dict:
            _wrong("$", _OBJECT, data)
        _fields("$", data, METADATA_FIELDS)
        for i, item in enumerate(data.get("executions") or ()):
            _each_object(f"$.executions[{i}]", item, kinds_of(Execution))
        for i, item in enumerate(data.get("policy_actions") or ()):
            _each_object(f"$.policy_actions[{i}]", item, POLICY_ACTION_FIELDS, POLICY_ACTION_FIELDS)
        if data.get("concurrency") is not None:
            _fields("$.concurrency", data["concurrency"], CONCURRENCY_FIELDS, CONCURRENCY_FIELDS)
        usage = data.get("expected_usage")
        if usage is not None:
            _fields("$.expected_usage", usage, EXPECTED_USAGE_FIELDS)
            for name in ("tokens", "cost_usd"):
                pair = usage.get(name)
                if pair is not None and (len(pair) != 2 or any(type(v) not in _NUMBER for v in pair)):
                    raise _Misshapen(f"$.expected_usage.{name}: expected [lowest, highest], found {pair!r}")
        for task_id, needs in (data.get("dependencies") or {}).items():
            if type(needs) is not list or any(type(n) is not str for n in needs):
                raise _Misshapen(f"$.dependencies.{task_id}: expected a list of task ids")
        if any(type(t) is not str for t in data.get("critical_path") or ()):
            raise _Misshapen("$.critical_path: expected a list of task ids")
        for i, event in enumerate(data.get("warm_events") or ()):
            if not well_formed_event(event):
                raise _Misshapen(f"$.warm_events[{i}]: expected a warm-pool event")
    except _Misshapen as exc:
        return str(exc)
    return None


def _each_object(where: str, item: object, fields: dict[str, frozenset[type]], required: Collection[str] = ()) -> None:
    if type(item) is not dict:
        _wrong(where, _OBJECT, item)
    _fields(where, item, fields, required)
