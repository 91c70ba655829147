"""context-monitor: the scripts' progress events in the run's events.jsonl, and tokens against budgets.

`track` never loses an event: each is one line appended under the events file's lock. Bad
arguments (a name the run does not have, a count that is not a number) are refused, and nothing
is written; what a caller leaves out (it calls `track parallel-start` with variables it never
sets) is taken from the run's plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from awoc_scripts.state.owner import initial_state, run_executing
from awoc_scripts.state.task_results import run_config, tasks_named

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from awoc_scripts.plan_types import JsonObject, Plan
    from awoc_scripts.run_documents import RunState
    from awoc_scripts.state.store import Run

PARALLEL_START = "parallel-start"
TASK_START = "parallel-task-start"
TASK_COMPLETE = "parallel-task-complete"
TASK_FAILED = "parallel-task-failed"
THRESHOLDS = (70, 80, 90, 100)
SOURCE = "context-monitor"


class TokenWarning(TypedDict):
    scope: str  # "task" or "total"
    task_id: str | None
    threshold: int
    percent: float
    tokens_used: int
    token_budget: int
    message: str


class TaskTokens(TypedDict):
    task_id: str
    agent: str
    status: str | None
    tokens_used: int
    source: str | None  # "orchestrator", "reported" (parallel-task-complete), or None
    token_budget: int
    percent: float


class Unattributed(TypedDict, total=False):
    """Tokens reported for an agent (or a name) that no task accounts for."""

    agent: str
    name: str
    tokens: int


class TokenTotal(TypedDict):
    tokens_used: int
    token_budget: int
    percent: float
    remaining: int


class TokenStatus(TypedDict):
    """What `context-monitor status` says: tokens against budgets, and the warnings."""

    run_id: str
    status: str | None
    executing: bool
    total: TokenTotal
    tasks: list[TaskTokens]
    unattributed: list[Unattributed]
    tracked: JsonObject  # the events a flow of script calls reported, counted
    warnings: list[TokenWarning]


def _int(value: str, what: str, problems: list[str]) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        problems.append(f"{what}: expected a whole number, got {value!r}")
        return None


def _name_fields(plan: Plan, name: str, problems: list[str]) -> JsonObject:
    """`task_id` when NAME is one task (or the only task of an agent), else `agent`."""
    ids, _ = tasks_named(plan, name)
    fields: JsonObject = {"name": name}
    if not ids:
        problems.append(f"{name!r} is neither a task id nor an agent of this run")
    elif len(ids) == 1:
        fields["task_id"] = ids[0]
        fields["agent"] = next(t["agent"] for t in plan["tasks"] if t["task_id"] == ids[0])
    else:
        fields["agent"] = name
        fields["task_ids"] = ids
    return fields


def interpret(plan: Plan, event: str, args: Sequence[str]) -> tuple[JsonObject, list[str]]:
    """The fields a known event's arguments stand for, and what could not be read."""
    problems: list[str] = []
    fields: JsonObject = {}
    if event == PARALLEL_START:
        fields["total_tasks"] = _int(args[0], "TOTAL_TASKS", problems) if len(args) >= 1 else len(plan["tasks"])
        fields["total_token_budget"] = (
            _int(args[1], "TOTAL_TOKEN_BUDGET", problems)
            if len(args) >= 2
            else plan["parallel_config"]["total_token_budget"]
        )
        return fields, problems
    if event not in (TASK_START, TASK_COMPLETE, TASK_FAILED):
        return fields, problems
    if not args:
        return fields, ["expected AGENT_OR_TASK first"]
    fields.update(_name_fields(plan, args[0], problems))
    if event == TASK_START:
        if len(args) > 1:
            fields["description"] = " ".join(args[1:])  # callers pass it unquoted: one word per argument
    elif len(args) < 2:
        problems.append(
            "expected AGENT_OR_TASK TOKENS" if event == TASK_COMPLETE else "expected AGENT_OR_TASK EXIT_CODE"
        )
    elif event == TASK_COMPLETE:
        fields["tokens"] = _int(args[1], "TOKENS", problems)
    else:
        fields["exit_code"] = _int(args[1], "EXIT_CODE", problems)
    return fields, problems


def track(run: Run, event: str, args: Sequence[str], source: str = SOURCE) -> JsonObject:
    """Append the event (its arguments as given, plus what they mean) to the run's events."""
    from awoc_scripts.errors import InputError

    known = event in (PARALLEL_START, TASK_START, TASK_COMPLETE, TASK_FAILED)
    fields, problems = interpret(run.read_plan(), event, args) if known else ({}, [])
    if problems:
        raise InputError(f"{event}: {'; '.join(problems)} (nothing recorded)")
    return run.append_event(event, args=list(args), **fields, source=source)


def _percent(used: int, budget: int) -> float:
    return round(100.0 * used / budget, 1) if budget > 0 else 0.0


def _warning(scope: str, used: int, budget: int, task_id: str | None = None) -> TokenWarning | None:
    percent = _percent(used, budget)
    reached = [t for t in THRESHOLDS if percent >= t]
    if not reached:
        return None
    threshold = reached[-1]
    who = f"task {task_id}" if task_id else "the run"
    past = "over its budget" if threshold >= 100 else f"past {threshold}% of its budget"
    message = f"{who} used {used} of {budget} tokens ({percent:g}%), {past}"
    return {
        "scope": scope,
        "task_id": task_id,
        "threshold": threshold,
        "percent": percent,
        "tokens_used": used,
        "token_budget": budget,
        "message": message,
    }


def token_status(run: Run) -> TokenStatus:
    """Tokens used against budgets, per task and in total, with 70/80/90% warnings.

    A task's tokens are the orchestrator's count; for a task the orchestrator did not account
    (a flow of script calls ran it), the sum of its `parallel-task-complete` reports.
    """
    plan = run.read_plan()
    state = run.read_state() or initial_state(run)
    config = run_config(run)
    reports = _reports(run.read_events())
    rows, warnings, accounted_agents = _task_rows(plan, state, reports.tracked)
    unattributed: list[Unattributed] = [
        {"agent": agent, "tokens": tokens}
        for agent, tokens in reports.by_agent.items()
        if agent not in accounted_agents
    ]
    unattributed += [{"name": name, "tokens": tokens} for name, tokens in reports.unknown.items()]
    used_total = sum(int(r["tokens_used"]) for r in rows) + sum(int(u["tokens"]) for u in unattributed)
    budget_total = int(config["total_token_budget"])
    total_warning = _warning("total", used_total, budget_total)
    if total_warning:
        warnings.append(total_warning)
    return {
        "run_id": run.run_id,
        "status": state.get("status"),
        "executing": run_executing(run, state),
        "total": {
            "tokens_used": used_total,
            "token_budget": budget_total,
            "percent": _percent(used_total, budget_total),
            "remaining": budget_total - used_total,
        },
        "tasks": rows,
        "unattributed": unattributed,
        "tracked": {"parallel_start": reports.start, **{k.replace("-", "_"): n for k, n in reports.counts.items()}},
        "warnings": warnings,
    }


@dataclass
class _Reports:
    """What a flow of script calls reported in events (parallel-task-complete and the like)."""

    tracked: dict[str, int] = field(default_factory=dict)  # tokens by task id
    by_agent: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    start: JsonObject | None = None
    counts: dict[str, int] = field(default_factory=lambda: {TASK_START: 0, TASK_COMPLETE: 0, TASK_FAILED: 0})


def _reports(events: list[JsonObject]) -> _Reports:
    reports = _Reports()
    for record in events:
        kind = record.get("event")
        if kind in reports.counts:
            reports.counts[kind] += 1
        if kind == PARALLEL_START:
            reports.start = {k: record.get(k) for k in ("ts", "total_tasks", "total_token_budget")}
        if kind != TASK_COMPLETE or not isinstance(record.get("tokens"), int):
            continue
        if record.get("task_id"):
            reports.tracked[record["task_id"]] = reports.tracked.get(record["task_id"], 0) + record["tokens"]
        elif record.get("agent"):
            reports.by_agent[record["agent"]] = reports.by_agent.get(record["agent"], 0) + record["tokens"]
        else:
            name = str(record.get("name"))
            reports.unknown[name] = reports.unknown.get(name, 0) + record["tokens"]
    return reports


def _task_rows(
    plan: Plan, state: RunState, tracked: dict[str, int]
) -> tuple[list[TaskTokens], list[TokenWarning], set[str]]:
    """Each task's tokens against its budget; the warnings; the agents the orchestrator accounted."""
    rows: list[TaskTokens] = []
    warnings: list[TokenWarning] = []
    accounted_agents: set[str] = set()
    for task in plan["tasks"]:
        tid = task["task_id"]
        saved: Mapping[str, Any] = state["tasks"].get(tid, {})
        counted = int((saved.get("tokens_used") or {}).get("total") or 0)
        reported = tracked.get(tid, 0)
        if counted:
            accounted_agents.add(task["agent"])
        used = counted or reported
        budget = int(saved.get("token_budget") or task["token_budget"])
        rows.append(
            {
                "task_id": tid,
                "agent": task["agent"],
                "status": saved.get("status"),
                "tokens_used": used,
                "source": "orchestrator" if counted else ("reported" if reported else None),
                "token_budget": budget,
                "percent": _percent(used, budget),
            }
        )
        warning = _warning("task", used, budget, tid)
        if warning:
            warnings.append(warning)
    return rows, warnings, accounted_agents
