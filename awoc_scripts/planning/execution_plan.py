"""`plan-execution`: budgets, levels, critical path, waves and the estimated schedule of a plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.errors import InputError
from awoc_scripts.gc_pause import without_gc
from awoc_scripts.planning.budgets import BudgetRequest, allocate_budgets
from awoc_scripts.planning.estimate import EstimatedSchedule, estimate_schedule
from awoc_scripts.planning.policy_settings import describe_policies
from awoc_scripts.planning.scheduling import PRIORITY_RANK, GraphMetrics, graph_metrics
from awoc_scripts.planning.start_order import ShorterOrder, searchable, shorter_order

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.plan_types import (
        BudgetSummary,
        ExecutionPlan,
        ExpectedUsage,
        JsonObject,
        ParallelConfig,
        Plan,
        PlannedTask,
        StartOrder,
        Task,
    )
    from awoc_scripts.state.history import History
    from awoc_scripts.state.store import Run, StateStore


@without_gc
def plan_execution(
    plan: Plan,
    max_parallel: int | None = None,
    total_token_budget: int | None = None,
    history: History | None = None,
) -> ExecutionPlan:
    """HISTORY: what past runs took; tasks with no `estimated_duration` of their own are expected
    to take that (else their timeout), and the expected tokens and cost are summed from it."""
    config = plan["parallel_config"].copy()
    warnings = list(plan.get("warnings", []))
    if max_parallel is not None:
        if not 1 <= max_parallel <= 100:
            raise InputError(f"MAX_PARALLEL: expected a whole number from 1 to 100, got {max_parallel}")
        config["max_concurrent"] = max_parallel
    tasks: list[Task] = list(plan["tasks"])  # a task is copied before anything in it changes
    duration_source, expected = _expectations(tasks, history)
    budget = plan["budget"].copy()
    if total_token_budget is not None:
        tasks = [{**t} for t in tasks]
        budget, warnings = _rebudget(tasks, config, total_token_budget, warnings)

    limit = int(config["batch_token_limit"])
    max_concurrent = int(config["max_concurrent"])
    warnings += _batch_limit_warnings(tasks, limit, max_concurrent)
    metrics = graph_metrics(tasks)
    schedule = estimate_schedule(tasks, metrics, max_concurrent, limit)
    order = None
    if searchable(tasks, duration_source, max_concurrent):
        order = shorter_order(tasks, metrics, schedule, max_concurrent, limit)
        if order is not None:
            schedule = estimate_schedule(tasks, metrics, max_concurrent, limit, rank=order.rank)
    sequential = sum(metrics.duration)
    return {
        "schema": PLAN_SCHEMA,
        "kind": "execution",
        "run_id": plan.get("run_id"),
        "parallel_config": config,
        "budget": budget,
        "critical_path": metrics.critical_path,
        "critical_path_s": max(metrics.remaining_of, default=0),
        "waves": metrics.waves,
        "sequential_estimate_s": sequential,
        "estimated_makespan_s": schedule.makespan,
        "estimated_speedup": round(sequential / schedule.makespan, 3) if schedule.makespan else 1.0,
        "peak_concurrency": schedule.peak_concurrency,
        "peak_tokens_in_flight": schedule.peak_tokens_in_flight,
        "warnings": warnings,
        "policies": describe_policies(config),
        "expected_usage": expected,
        "start_order": _start_order(order, schedule),
        "tasks": _planned_tasks(tasks, metrics, schedule, duration_source, order),
    }


def _batch_limit_warnings(tasks: list[Task], limit: int, max_concurrent: int) -> list[str]:
    """One warning when batch_token_limit holds the run below max_concurrent: every task whose budget
    alone is over it (each runs with no other task at once), or else how many fit under it; with the
    limit that would let max_concurrent of them run together."""
    budgets = sorted((t["token_budget"] for t in tasks), reverse=True)
    together = min(max_concurrent, len(tasks))
    enough = f"batch_token_limit {sum(budgets[:together])} would let {together} of them run at once"
    over = [t for t in tasks if t["token_budget"] > limit]
    if over:
        named = ", ".join(t["task_id"] for t in over[:5]) + (f" and {len(over) - 5} more" if len(over) > 5 else "")
        what = (
            f"{named}: token budget {over[0]['token_budget']} alone exceeds"
            if len(over) == 1
            else f"{len(over)} tasks ({named}) have token budgets (up to {max(t['token_budget'] for t in over)}) over"
        )
        how = "it runs" if len(over) == 1 else "each runs"
        hint = enough if len(over) > 1 and together > 1 else "raise batch_token_limit to run it beside other tasks"
        return [f"{what} batch_token_limit {limit}, so {how} alone, with no other task at once; {hint}"]
    fit, spent = 0, 0
    for budget in reversed(budgets):  # the smallest first: the most that could ever run at once
        if spent + budget > limit:
            break
        fit, spent = fit + 1, spent + budget
    if fit >= together:
        return []
    return [
        f"batch_token_limit {limit} lets at most {fit} of these tasks run at once, not max_concurrent "
        f"{max_concurrent}: their token budgets are {budgets[-1]} to {budgets[0]}; {enough}"
    ]


def _start_order(order: ShorterOrder | None, schedule: EstimatedSchedule) -> StartOrder:
    if order is None:
        return {"by": "priority", "priority_order_makespan_s": schedule.makespan}
    return {"by": "shortest estimated run", "priority_order_makespan_s": order.priority_order_makespan}


def describe_start_order(order: StartOrder | None) -> str | None:
    """What orders ready tasks, when it is not priority order (for plan-execution and prepare)."""
    if not order or order["by"] == "priority":
        return None
    return (
        "the shortest estimated run, not strict priority order "
        f"(which is estimated at {order['priority_order_makespan_s']:g} s)"
    )


def _rebudget(
    tasks: list[Task], config: ParallelConfig, total: int, warnings: list[str]
) -> tuple[BudgetSummary, list[str]]:
    """A new total token budget: every task's budget allocated again (explicit ones kept in proportion)."""
    if total < 1:
        raise InputError(f"TOTAL_TOKEN_BUDGET: expected a positive whole number, got {total}")
    explicit = {t["task_id"]: t["token_budget"] for t in tasks if t["budget_source"] == "explicit"}
    requests = [BudgetRequest(t["task_id"], t["agent"], t["priority"], explicit.get(t["task_id"])) for t in tasks]
    allocation = allocate_budgets(requests, total, config.get("agents"))
    for task in tasks:
        task["token_budget"] = allocation.budgets[task["task_id"]]
    config["total_token_budget"] = allocation.total
    budget: BudgetSummary = {
        "total": allocation.total,
        "total_given": True,
        "allocated": allocation.allocated,
        "scale_factor": allocation.scale_factor,
    }
    return budget, [w for w in warnings if "token budget" not in w] + allocation.warnings


def _planned_tasks(
    tasks: list[Task],
    metrics: GraphMetrics,
    schedule: EstimatedSchedule,
    duration_source: Mapping[str, str],
    order: ShorterOrder | None,
) -> list[PlannedTask]:
    planned: list[PlannedTask] = []
    for t, duration, level, remaining, start in zip(
        tasks, metrics.duration, metrics.level_of, metrics.remaining_of, schedule.start_of, strict=True
    ):
        tid = t["task_id"]
        # no start for a task the estimate skips: it runs only if a dependency fails (a
        # "conditional" task with "when": "failure"), and the estimate has every task succeed
        planned.append(
            {
                "task_id": tid,
                "agent": t["agent"],
                "priority": t["priority"],
                "priority_rank": PRIORITY_RANK[t["priority"]],
                "level": level,
                "token_budget": t["token_budget"],
                "budget_source": t["budget_source"],
                "cost_budget_usd": t.get("cost_budget_usd"),
                "duration_s": duration,
                "duration_source": duration_source[tid],
                "remaining_path_s": remaining,
                "estimated_start_s": start,
                "estimated_end_s": None if start is None else start + duration,
            }
        )
    if order is not None:
        for entry, rank in zip(planned, order.rank, strict=True):
            entry["start_rank"] = rank
    return planned


def _expectations(tasks: list[Task], history: History | None) -> tuple[dict[str, str], ExpectedUsage]:
    """Fill in expected durations from history (in a copy of the task, put in its place in
    TASKS); where each duration comes from; the usage to expect."""
    source: dict[str, str] = {}
    low_tokens = high_tokens = 0
    low_cost = high_cost = 0.0
    known = 0
    for i, task in enumerate(tasks):
        tid = task["task_id"]
        seen = history.expect(task["agent"], task["description"]) if history else None
        if task.get("estimated_duration") is not None:
            source[tid] = "given"
        elif seen is not None:
            task = tasks[i] = {**task, "estimated_duration": seen.duration_s}
            source[tid] = f"history ({seen.source}, {seen.runs} run{'s' if seen.runs != 1 else ''})"
        else:
            source[tid] = "timeout"
        if seen is not None:
            known += 1
            low_tokens, high_tokens = low_tokens + seen.tokens[0], high_tokens + seen.tokens[1]
            low_cost, high_cost = low_cost + seen.cost_usd[0], high_cost + seen.cost_usd[1]
    return source, {
        "tasks_with_history": known,
        "tasks_without_history": len(tasks) - known,
        "tokens": [low_tokens, high_tokens],
        "cost_usd": [round(low_cost, 6), round(high_cost, 6)],
    }


def brief_execution(execution: ExecutionPlan) -> JsonObject:
    keys = (
        "run_id",
        "critical_path",
        "estimated_makespan_s",
        "sequential_estimate_s",
        "estimated_speedup",
        "start_order",
        "peak_concurrency",
        "warnings",
        "policies",
        "expected_usage",
    )
    shown: Mapping[str, Any] = execution
    return {k: shown[k] for k in keys if k in shown} | {"waves": len(execution["waves"])}


def plan_run(
    store: StateStore, plan_arg: str | None, max_parallel: int | None, total_token_budget: int | None
) -> tuple[Run, ExecutionPlan]:
    """plan-execution: plan PLAN (a run, a plan or a config) and save execution.json in its run.
    A plan or config that is not a run yet becomes one only once it planned without error."""
    from awoc_scripts.planning.validation import resolve_plan, save_new_run
    from awoc_scripts.state.history import History

    run, plan = resolve_plan(store, plan_arg)
    execution = plan_execution(plan, max_parallel, total_token_budget, History.load(store.root))
    if run is None:
        run = save_new_run(store, plan)
        execution["run_id"] = run.run_id
    run.write_execution(execution)
    return run, execution
