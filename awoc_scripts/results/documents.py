"""The documents the results stage writes: aggregate.json, report.json (and its parts), the
worktree overlap. TypedDicts, as the run's other documents (run_documents.py): written with
orjson and read back by people and scripts as plain JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from awoc_scripts.plan_types import ExpectedUsage, JsonObject, PolicyDescription
    from awoc_scripts.run_documents import (
        ChangedFile,
        Denial,
        Execution,
        TaskResult,
        Verification,
        WhereRan,
        WorktreeRecord,
    )


class MergedResult(TypedDict):
    """Successful tasks that said the same thing, as one result."""

    task_ids: list[str]
    agent: str
    task: str
    result: str


class Problem(TypedDict):
    """A task that did not succeed, and how to run it again."""

    task_id: str
    agent: str
    task: str
    status: str
    reason: str
    retry_command: str


class Aggregate(TypedDict):
    schema: str
    kind: str
    run_id: str | None
    generated_at: str
    order: list[str]
    by_agent: dict[str, list[str]]
    results: list[MergedResult]
    failures: list[Problem]
    not_run: list[Problem]
    counts: dict[str, int]
    total_tokens: int
    total_cost_usd: float
    tasks: list[TaskResult]
    written_to: NotRequired[str]


class PolicyAction(TypedDict):
    at: str | None
    action: str | None
    by: str | None
    why: str | None
    changed: NotRequired[Any]


class ConcurrencyChanges(TypedDict):
    max_concurrent: int
    lowest: int
    final: int
    cuts: int
    raises: int
    peak: NotRequired[int]  # how many tasks ran at once at most (the report adds it, from the results)
    held_by_batch_token_limit: NotRequired[int | None]  # that limit, when it let no more of the tasks run together


class RunMetadata(TypedDict, total=False):
    """What the report knows of a run beyond its results (create-report also takes it as given)."""

    run_id: str | None
    workflow: str | None
    status: str | None
    stop_reason: str | None
    result_format: str
    total_time_s: float | None
    total_token_budget: int | None
    total_cost_budget_usd: float | None
    estimated_makespan_s: float | None
    max_concurrent: int | None
    batch_token_limit: int | None
    expected_usage: ExpectedUsage | None
    executions: list[Execution]
    dependencies: dict[str, list[str]]
    critical_path: list[str]
    policies: list[PolicyDescription]
    policy_actions: list[PolicyAction]
    concurrency: ConcurrencyChanges | None
    warm_events: list[JsonObject]


class WarmPoolSummary(TypedDict):
    warmed: int
    used: int
    stopped_unused: int
    warm_s: dict[str, float]
    critical_path_warm_s: float


class EstimateVsActual(TypedDict):
    estimated_makespan_s: float
    actual_s: float
    actual_over_estimate: float | None
    expected_tokens: Any
    actual_tokens: int
    expected_cost_usd: Any
    actual_cost_usd: float
    tasks_with_history: int | None


class ExecutionSummary(TypedDict):
    total_tasks: int
    completed_successfully: int
    failed_tasks: int
    not_run_tasks: int
    total_time: str
    total_time_s: float
    wall_clock_time: str
    wall_clock_time_s: float
    sequential_estimate: str
    sequential_estimate_s: float
    time_saved: str
    time_saved_s: float | None
    efficiency_gain: str
    efficiency_gain_pct: float | None
    time_saved_counts: str


class ResourceUsage(TypedDict):
    total_tokens: int
    tokens_counted: int  # of those, what counts against the budgets (what the tasks wrote and added)
    average_per_task: int
    budget_utilization: str
    budget_utilization_pct: float
    total_token_budget: int | None
    tokens_by_kind: dict[str, int]
    cost_usd: float
    total_cost_budget_usd: float | None
    reused_tasks: int
    tokens_saved: int
    cost_saved_usd: float


class ReportTask(TypedDict):
    """One task in report.json's task_results."""

    task_id: str
    agent: str
    task: str
    runner: str
    status: str
    result: str
    tokens_used: int
    tokens_counted: int  # of those, what counts against token_budget
    token_budget: int | None
    cost_usd: float
    cost_budget_usd: float | None
    attempts: int
    duration: str
    duration_s: float
    started_at: str | None
    finished_at: str | None
    error: str | None
    retry_command: str | None
    warnings: list[str]
    permission_denials: list[Denial]
    worktree: WorktreeRecord | None
    executed_on: WhereRan | None
    verify: Verification | None
    cached_from: str | None


class OverlapTask(TypedDict):
    status: str
    branch: str
    base: str
    head: str
    commits: int
    files: list[str]
    files_changed: list[ChangedFile]
    earlier_attempts: list[str]


class Overlap(TypedDict):
    """Tasks in worktrees that changed the same files, and whether their merges conflict."""

    tasks: list[str]
    files: list[str]
    conflict: bool | None
    conflicting_files: list[str]
    error: NotRequired[str]


class WorktreeOverlap(TypedDict):
    repo: str
    base_head: str
    uncommitted_at_start: int
    tasks: dict[str, OverlapTask]
    overlaps: list[Overlap]


class CpuUse(TypedDict):
    """How busy a run's tasks kept the CPUs while it executed."""

    tasks_cpu_s: float
    cpus: int
    busy_pct: float


class Report(TypedDict):
    """report.json."""

    schema: str
    kind: str
    run_id: str | None
    generated_at: str
    workflow: str | None
    status: str | None
    stop_reason: str | None
    execution_summary: ExecutionSummary
    resource_usage: ResourceUsage
    critical_path: list[str]
    critical_path_planned: list[str]
    critical_path_actual: list[str]
    critical_path_actual_s: float
    policies: list[PolicyDescription]
    policy_actions: list[PolicyAction]
    concurrency: ConcurrencyChanges | None
    cpu: CpuUse | None
    warm_pool: WarmPoolSummary | None
    estimate_vs_actual: EstimateVsActual | None
    task_results: list[ReportTask]
    merged_results: list[list[str]]
    worktrees: NotRequired[WorktreeOverlap]
    merge: NotRequired[MergeSummary]


class MergeStep(TypedDict):
    """One branch in a merge: what happened to it, and why."""

    task_id: str
    branch: str
    head: str
    outcome: NotRequired[str]
    why: NotRequired[str]
    note: NotRequired[str]
    conflicting_files: NotRequired[list[str]]
    blocking_files: NotRequired[list[str]]
    gate_output: NotRequired[str]
    to_fix: NotRequired[str]
    resolution: NotRequired[str]


class MergeSummary(TypedDict):
    """One merge of a run (merge.json keeps the last ones, without the overlap)."""

    run_id: str
    repo: str
    into: str | None
    dry_run: bool
    gate: str | None
    finished_at: str
    head: str
    steps: list[MergeStep]
    landed: list[str]
    set_aside: list[str]
    overlap: NotRequired[WorktreeOverlap | None]
