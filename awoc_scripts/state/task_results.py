"""A run's tasks as the scripts name them (a task id, or an agent meaning its tasks), and
the result file of a task that ended without the orchestrator (failed as reported, or cancelled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from awoc_scripts.errors import InputError
from awoc_scripts.run_documents import NO_TOKENS, TaskResult, TaskState, task_result
from awoc_scripts.state.shapes import result_problem
from awoc_scripts.state.statuses import PENDING
from awoc_scripts.state.store import Run, now_iso, read_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.plan_types import ParallelConfig, Plan, Task

EXCERPT_CHARS = 500


def tasks_named(plan: Plan, name: str) -> tuple[list[str], bool]:
    """The task ids NAME stands for, and whether NAME was an agent (else a task id).

    A task id wins over an agent of the same name, as in dependencies. Unknown: ([], False).
    """
    ids = [t["task_id"] for t in plan["tasks"]]
    if name in ids:
        return [name], False
    of_agent = [t["task_id"] for t in plan["tasks"] if t["agent"] == name]
    return of_agent, bool(of_agent)


def require_tasks(plan: Plan, name: str, run_id: str) -> tuple[list[str], bool]:
    ids, is_agent = tasks_named(plan, name)
    if not ids:
        raise InputError(f"{name!r} is neither a task id nor an agent of run {run_id} ({known_names(plan)})")
    return ids, is_agent


def known_names(plan: Plan, limit: int = 8) -> str:
    ids = [t["task_id"] for t in plan["tasks"]]
    agents = list(dict.fromkeys(t["agent"] for t in plan["tasks"]))
    more = f", ... {len(ids) - limit} more" if len(ids) > limit else ""
    return f"tasks: {', '.join(ids[:limit])}{more}; agents: {', '.join(agents[:limit])}"


def plan_task(plan: Plan, task_id: str) -> Task:
    for task in plan["tasks"]:
        if task["task_id"] == task_id:
            return task
    raise KeyError(task_id)


def run_config(run: Run) -> ParallelConfig:
    """The effective parallel_config: the execution plan's if planned, else the validated plan's."""
    execution = run.read_execution()
    config: ParallelConfig = (execution.get("parallel_config") or run.read_plan()["parallel_config"]) or {}
    return config


def read_result(run: Run, task_id: str) -> TaskResult | None:
    try:
        data = read_json(run.task_files(task_id).result, default=None)
    except Exception:  # noqa: BLE001 - a corrupt result file reads as none: the state still says how it ended
        return None
    return cast("TaskResult", data) if data is not None and result_problem(data) is None else None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " [...]"


def result_from_state(run: Run, task: Task, saved: Mapping[str, Any]) -> TaskResult:
    """A task's result as state.json tells it: for a task without a result file, which is one
    that never started (see TaskLedger.finalize), or a base for one that ended outside the orchestrator."""
    return task_result(
        run.run_id,
        task,
        saved.get("status", PENDING),
        exit_code=saved.get("exit_code"),
        attempts=int(saved.get("attempts") or 0),
        tokens=saved.get("tokens_used") or NO_TOKENS.copy(),
        token_budget=int(saved.get("token_budget") or task["token_budget"]),
        tokens_counted=saved.get("tokens_counted"),
        cost_usd=float(saved.get("cost_usd") or 0.0),
        cost_budget_usd=saved.get("cost_budget_usd", task.get("cost_budget_usd")),
        started_at=saved.get("started_at"),
        finished_at=saved.get("finished_at"),
        error=saved.get("error"),
        reason=saved.get("reason"),
    )


def write_ended_result(
    run: Run,
    plan: Plan,
    task_id: str,
    saved: TaskState,
    *,
    status: str,
    error: str | None = None,
    reason: str | None = None,
    exit_code: int | None = None,
) -> None:
    """tasks/<id>/result.json for a task that ended outside the orchestrator, keeping what an
    earlier attempt wrote (its result text, tokens, times)."""
    task = plan_task(plan, task_id)
    result = read_result(run, task_id) or result_from_state(run, task, saved)
    result["status"], result["finished_at"], result["error"], result["reason"] = status, now_iso(), error, reason
    result["token_budget"] = int(saved.get("token_budget") or task["token_budget"])
    if exit_code is not None:
        result["exit_code"] = exit_code
    run.write_task_result(task["agent"], task_id, result)
