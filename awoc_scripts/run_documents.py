"""The documents a run writes beside its plan: state.json, each task's result.json, a lever request.

TypedDicts, as in plan_types.py and for the same reasons: these files are read and written as
plain dicts (orjson) by several processes at once, and a TypedDict types that very dict with no
conversion at each boundary and no cost at start-up. `state/shapes.py` derives its checks from
these classes (`shapes.kinds_of`), so a field added here is checked there with no second table.
"""

from typing import TYPE_CHECKING, NotRequired, TypedDict

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.plan_types import JsonObject  # read at run time: state/shapes.py reads these annotations

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from awoc_scripts.plan_types import Task


class TokenCounts(TypedDict):
    input: int
    output: int
    cache_read: int
    cache_creation: int
    total: int


NO_TOKENS: TokenCounts = {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0, "total": 0}


class Denial(TypedDict):
    """A tool call the agent was refused (or a tool it was not given)."""

    tool: str
    input: str
    attempt: NotRequired[int | None]


class Verification(TypedDict):
    command: list[str]
    exit_code: int | None  # None: stopped at its timeout
    passed: bool
    output: str
    duration_s: float


class WhereRan(TypedDict):
    """Where an attempt ran when not on this machine (execution/executors/dask.py)."""

    executor: str
    worker: str
    host: str
    pid: int | None


class Saving(TypedDict):
    tokens: int
    cost_usd: float


class ChangedFile(TypedDict):
    path: str
    added: int | None
    removed: int | None


class EarlierAttempt(TypedDict):
    ref: str  # refs/awoc/<run>/<task>/attempt-<n>: what an earlier attempt committed
    head: str


class WorktreeRecord(TypedDict):
    """tasks/<id>/worktree.json: the task's branch and where it started; in its result, also
    where it ended (what results/merge_queue.py merges)."""

    branch: str
    base: str
    merged: list[str]  # the dependencies' branches its base merges
    path: str
    earlier_attempts: NotRequired[list[EarlierAttempt]]
    head: NotRequired[str]
    commits: NotRequired[list[str]]
    files_changed: NotRequired[list[ChangedFile]]
    notes: NotRequired[list[str]]
    session_id: NotRequired[str]


class IsolationExtras(TypedDict, total=False):
    """What a task's isolation adds to its result when it started."""

    worktree: WorktreeRecord
    isolation_error: str


class TaskResult(TypedDict):
    """tasks/<id>/result.json: how one task ended and what it produced."""

    schema: str
    run_id: str
    task_id: str
    agent: str
    task: str
    priority: str
    runner: str  # "agent" or "command"
    status: str
    result: str
    exit_code: int | None
    attempts: int
    tokens_used: TokenCounts
    tokens_counted: NotRequired[int]  # of those, what counts against token_budget (what it wrote and added)
    token_budget: int | None
    cost_usd: float | None
    cost_budget_usd: float | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    error: str | None
    reason: str | None
    warnings: list[str]
    permission_denials: list[Denial]
    dependencies: list[str]
    verify: NotRequired[Verification | None]
    cached: NotRequired[bool]
    cached_from: NotRequired[str | None]
    saved: NotRequired[Saving | None]
    worktree: NotRequired[WorktreeRecord]
    executed_on: NotRequired[WhereRan]
    isolation_error: NotRequired[str]
    pid: NotRequired[int | None]  # a result a shell loop wrote: the pid in its file name
    source: NotRequired[str]  # a result a shell loop wrote: its file


def task_result(
    run_id: str,
    task: "Task",
    status: str,
    *,
    attempts: int,
    tokens: TokenCounts,
    token_budget: int,
    tokens_counted: int | None = None,
    result: str = "",
    exit_code: int | None = None,
    cost_usd: float = 0.0,
    cost_budget_usd: float | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
    duration_s: float = 0.0,
    error: str | None = None,
    reason: str | None = None,
    warnings: list[str] | None = None,
    denials: list[Denial] | None = None,
    verify: Verification | None = None,
) -> TaskResult:
    """The one way a task result is made: by the run machine when a task ends, and from state.json
    for a task that ended without a result file (state/task_results.py)."""
    made: TaskResult = {
        "schema": PLAN_SCHEMA,
        "run_id": run_id,
        "task_id": task["task_id"],
        "agent": task["agent"],
        "task": task["description"],
        "priority": task["priority"],
        "runner": "command" if task.get("command") else "agent",
        "status": status,
        "result": result,
        "exit_code": exit_code,
        "attempts": attempts,
        "tokens_used": tokens,
        "token_budget": token_budget,
        "cost_usd": round(cost_usd, 9),
        "cost_budget_usd": cost_budget_usd,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration_s,
        "error": error,
        "reason": reason,
        "warnings": warnings if warnings is not None else [],
        "permission_denials": denials if denials is not None else [],
        "verify": verify,
        "dependencies": task["dependencies"],
    }
    if tokens_counted is not None:
        made["tokens_counted"] = tokens_counted
    return made


def counted_tokens(entry: "Mapping[str, Any]") -> int:
    """What a task's tokens count against the budgets (`tokens_counted` of its result or its
    state.json entry); one that does not say (an older run's) counts all it used."""
    counted = entry.get("tokens_counted")
    return int(counted) if counted is not None else int((entry.get("tokens_used") or {}).get("total", 0))


class TaskState(TypedDict):
    """state.json's entry for one task, as the run machine last saw it."""

    status: str
    token_budget: int
    attempts: NotRequired[int]
    pid: NotRequired[int | None]
    pid_create_time: NotRequired[float | None]
    pid_start_ticks: NotRequired[int | None]
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    exit_code: NotRequired[int | None]
    error: NotRequired[str | None]
    reason: NotRequired[str | None]
    previous_error: NotRequired[str | None]
    tokens_used: NotRequired[TokenCounts]
    tokens_counted: NotRequired[int]
    cost_usd: NotRequired[float | None]
    cost_budget_usd: NotRequired[float | None]


class BudgetChange(TypedDict):
    task_id: str
    token_budget_before: int
    token_budget: int


class SkippedTask(TypedDict):
    task_id: str
    reason: str


class RetriedTask(TypedDict):
    task_id: str
    status_before: str
    token_budget_before: int
    token_budget: int
    previous_error: str


class NotRetried(TypedDict):
    task_id: str
    status: str
    why: str


class LeverAnswer(TypedDict, total=False):
    """What a lever changed (execution/machine/levers.py), each lever its own fields; or why not."""

    reduced_by_percent: int  # reduce-remaining-tasks
    tasks: list[BudgetChange]
    max_concurrent_before: int  # convert-remaining-tasks
    max_concurrent: int
    remaining_tasks: list[str]
    cancelled: list[str]  # emergency-prioritization, abort
    skipped_as_a_result: list[SkippedTask]
    kept: list[str]
    aborted: bool  # abort
    reason: str
    were_running: list[str]
    why: str
    requeued: list[RetriedTask]  # retry
    reopened_dependents: list[str]
    not_retried: list[NotRetried]
    error: str  # a request that could not be applied
    withdrawn: bool  # nobody applied it: its orchestrator ended first


class LeverRequest(TypedDict):
    """A lever asked of a run ("controls" in state.json), and, once applied, its answer."""

    id: str
    action: str
    args: JsonObject
    requested_at: NotRequired[str]
    changed: NotRequired[LeverAnswer]
    applied_at: NotRequired[str]
    applied_by: NotRequired[str]
    applied_to: NotRequired[str]


class Owner(TypedDict):
    """The orchestrator executing the run."""

    pid: int
    create_time: float
    start_ticks: NotRequired[int | None]
    started_at: NotRequired[str]


class Execution(TypedDict):
    started_at: str
    active_s: float
    tasks_cpu_s: NotRequired[float]  # the CPU time of what it started and reaped (tasks, checks, git)
    cpus: NotRequired[int]  # the CPUs it could use


class ConcurrencySummary(TypedDict):
    max_concurrent: int
    lowest: int
    final: int
    changes: int


class LoopSummary(TypedDict):
    """What the run loop says of a run when it ends (flow/runs.py's RunSummary adds the report's parts)."""

    run_id: str
    status: str | None
    exit_code: int
    stop_reason: str | None
    elapsed_s: float
    counts: dict[str, int]
    tokens_used: int
    cost_usd: float
    concurrency: ConcurrencySummary


class LoopFields(TypedDict):
    """What the run loop writes of itself into state.json at each flush."""

    max_concurrent: int
    effective_concurrency: float | None
    stop_reason: str | None
    paused_until: str | None
    warm_agents: int | None


class RunState(TypedDict):
    """state.json: where every task of a run stands, written by whoever owns the run."""

    schema: NotRequired[str]
    kind: NotRequired[str]
    run_id: NotRequired[str]
    status: NotRequired[str]
    orchestrator: NotRequired[Owner | None]
    max_concurrent: int
    tasks: dict[str, TaskState]
    controls: NotRequired[list[LeverRequest]]
    revision: NotRequired[int]
    executions: NotRequired[list[Execution]]
    effective_concurrency: NotRequired[float | None]
    paused_until: NotRequired[str | None]
    stop_reason: NotRequired[str | None]
    warm_agents: NotRequired[int | None]
    updated_at: NotRequired[str | None]
