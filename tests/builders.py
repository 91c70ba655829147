"""Builders for tasks, configs and run machines, shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from awoc_scripts.execution.attempt_report import Outcome, Tokens
from awoc_scripts.execution.machine.events import (
    AttemptEnded,
    Effect,
    Moment,
    RunStarted,
    Spawned,
    Start,
    Tick,
)
from awoc_scripts.execution.machine.machine import RunMachine
from awoc_scripts.execution.machine.settings import MachineSettings
from awoc_scripts.execution.task_record import TaskRecord
from awoc_scripts.plan_types import Task
from awoc_scripts.planning.plan import DEFAULT_CONFIG
from awoc_scripts.state.store import TaskFiles


def script_task(task_id: str, script: str, **more: Any) -> dict[str, Any]:
    """A task of a request (what a user writes) that runs SCRIPT with sh."""
    return {"task_id": task_id, "agent": "workforce", "description": task_id, "command": ["sh", "-c", script], **more}


def command_task(task_id: str, command: list[str], **more: Any) -> dict[str, Any]:
    """A task of a request that runs COMMAND."""
    return {"task_id": task_id, "agent": "qa", "description": task_id, "command": command, **more}


def config(**overrides: Any) -> dict[str, Any]:
    """A parallel_config as a plan holds it: every default, then OVERRIDES."""
    return {**DEFAULT_CONFIG, "agents": {}, "runner": {}, **overrides}


def task(task_id: str, *dependencies: str, **fields: Any) -> Task:
    """A normalized task: every field a plan fills in, then FIELDS."""
    built: dict[str, Any] = {
        "task_id": task_id,
        "agent": "workforce",
        "description": f"do {task_id}",
        "priority": "medium",
        "token_budget": 1000,
        "budget_source": "given",
        "dependencies": list(dependencies),
        "dependency_mode": "all_complete",
        "critical_dependencies": [],
        "condition": None,
        "timeout": 60.0,
        "estimated_duration": 10.0,
        "retries": 1,
        "command": None,
        "model": None,
        "tools": None,
        "max_turns": None,
        "context": None,
        "isolation": "process",
        "index": 0,
        **fields,
    }
    return built  # type: ignore[return-value]


def numbered(tasks: list[Task]) -> list[Task]:
    for index, each in enumerate(tasks):
        each["index"] = index
    return tasks


def machine(tasks: list[Task], **config_overrides: Any) -> RunMachine:
    """A started run machine for TASKS (all pending), its config's defaults changed by CONFIG_OVERRIDES."""
    tasks = numbered(tasks)
    records = {t["task_id"]: TaskRecord(t["token_budget"], cost_budget=t.get("cost_budget_usd")) for t in tasks}
    status = {t["task_id"]: "pending" for t in tasks}
    built = RunMachine("run-1", tasks, records, status, MachineSettings.of(config(**config_overrides)))
    built.handle(RunStarted(at=at(0)))
    return built


def at(now: float, wall: float = 1_800_000_000.0) -> Moment:
    """A moment NOW seconds into the run (monotonic), the wall clock moving with it."""
    return Moment(now, wall + now)


def files(task_id: str) -> TaskFiles:
    return TaskFiles(Path("/nonexistent/run/tasks") / task_id)


def spawned(task_id: str, now: float, pid: int = 100, streams: bool = False) -> Spawned:
    return Spawned(task_id, pid, files(task_id), streams, at=at(now))


def ended(task_id: str, now: float, exit_code: int = 0, stopped: bool = False, **outcome: Any) -> AttemptEnded:
    tokens = outcome.pop("tokens", Tokens())
    counted = outcome.pop("counted", tokens.total)  # as an agent without a stream of its turns counts them
    result = Outcome(
        ok=outcome.pop("ok", exit_code == 0), result=outcome.pop("result", "done"), tokens=tokens, **outcome
    )
    return AttemptEnded(task_id, exit_code, stopped, result, tokens, counted, at=at(now))


def tick(now: float, free_memory_mb: float | None = None) -> Tick:
    return Tick(free_memory_mb=free_memory_mb, at=at(now))


def start_all(m: RunMachine, now: float, effects: list[Effect] | None = None) -> list[str]:
    """Answer every Start as if its process started; returns the tasks started, in order."""
    started = []
    queue = list(m.handle(tick(now)) if effects is None else effects)
    while queue:
        effect = queue.pop(0)
        if isinstance(effect, Start):
            started.append(effect.task_id)
            queue += m.handle(spawned(effect.task_id, now))
    return started


def of_kind(effects: list[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def records(effects: list[Effect], name: str) -> list[dict[str, Any]]:
    """The fields of the events named NAME the effects append."""
    return [e.fields for e in effects if type(e).__name__ == "Record" and e.kind == name]
