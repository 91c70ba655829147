"""The report: report.json in the documented format (plus numbers and more), report.md for people.

Times are written as "4m 23s" and percentages as "64%", each with a numeric sibling
(`total_time_s`, `efficiency_gain_pct`...). The sequential estimate is the sum of the tasks'
durations; time saved and efficiency gain follow from it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.gc_pause import without_gc
from awoc_scripts.launcher import command_for
from awoc_scripts.run_documents import counted_tokens
from awoc_scripts.state.statuses import FAILURES, SUCCEEDED
from awoc_scripts.state.store import ReportFiles, Run, now_iso, parse_iso, read_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from awoc_scripts.plan_types import ExecutionPlan, Plan
    from awoc_scripts.results.documents import (
        Aggregate,
        ConcurrencyChanges,
        CpuUse,
        EstimateVsActual,
        ExecutionSummary,
        PolicyAction,
        Report,
        ReportTask,
        ResourceUsage,
        RunMetadata,
        WarmPoolSummary,
    )
    from awoc_scripts.run_documents import RunState, TaskResult

    Held = tuple[Plan, ExecutionPlan]  # a run's plan and execution plan, as a caller holds them

MAX_RESULT_CHARS_IN_MARKDOWN = 20000
FORMATS = ("json", "markdown", "research_report")
LEADING_VERB = re.compile(
    r"^(research|find|analy[sz]e|investigate|review|design|implement|create|write|build|fix|check|study|explore)"
    r"\s+(the\s+)?",
    re.IGNORECASE,
)


def human_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def percent(value: float) -> str:
    return f"{value:.0f}%"


def run_metadata(run: Run, state: RunState | None = None, held: Held | None = None) -> RunMetadata:
    """What the report needs to know about a run beyond its results. STATE: its state.json as
    the caller just wrote it (reading back 100,000 tasks' state takes a second); HELD: its plan
    and execution plan, where the caller holds them (reading them back takes another)."""
    plan, execution = held if held is not None else (run.read_plan(), run.read_execution())
    state = run.read_state() if state is None else state
    config = execution.get("parallel_config") or plan["parallel_config"]
    executed = bool(state.get("executions"))
    # one pass over events.jsonl (100,000 lines at scale) for everything the report reads of it
    events = run.read_events(only=(*POLICY_EVENTS, *WARM_EVENTS, CONCURRENCY_EVENT)) if executed else []
    return {
        "run_id": run.run_id,
        "workflow": plan.get("workflow"),
        "status": state.get("status", "planned"),
        "stop_reason": state.get("stop_reason"),
        "total_token_budget": config["total_token_budget"],
        "total_cost_budget_usd": config.get("total_cost_budget_usd"),
        "max_concurrent": config["max_concurrent"],
        "batch_token_limit": config.get("batch_token_limit"),
        "result_format": config.get("result_format", "structured"),
        "critical_path": execution.get("critical_path", []),
        "estimated_makespan_s": execution.get("estimated_makespan_s"),
        "expected_usage": execution.get("expected_usage"),
        "executions": state.get("executions") or [],
        "dependencies": {t["task_id"]: t.get("dependencies") or [] for t in plan["tasks"]},
        "policies": execution.get("policies") or [],
        "policy_actions": policy_actions(events),
        "concurrency": concurrency_changes(events, config["max_concurrent"]) if executed else None,
        "warm_events": [e for e in events if e["event"] in WARM_EVENTS],
    }


POLICY_EVENTS = (
    "lever",
    "token-budget-exhausted",
    "cost-pressure",
    "cost-budget-exhausted",
    "memory-pressure",
    "run-abort",
)


WARM_EVENTS = ("task-warmed", "task-warm-used", "task-warm-discarded")
CONCURRENCY_EVENT = "concurrency-change"


def warm_pool_summary(events: Sequence[Mapping[str, Any]], actual_path: Sequence[str]) -> WarmPoolSummary | None:
    """What the warm agents did: how many were started, used and stopped unused, and how long
    the tasks that used one had their process ready before their prompt (on the critical path
    that happened, that much start-up, at most, was taken off the run's time)."""
    if not events:
        return None
    used = {str(e["task_id"]): float(e.get("warm_s") or 0) for e in events if e["event"] == "task-warm-used"}
    return {
        "warmed": sum(1 for e in events if e["event"] == "task-warmed"),
        "used": len(used),
        "stopped_unused": sum(1 for e in events if e["event"] == "task-warm-discarded"),
        "warm_s": {tid: round(s, 3) for tid, s in used.items()},
        "critical_path_warm_s": round(sum(used.get(tid, 0.0) for tid in actual_path), 3),
    }


def concurrency_changes(events: Sequence[Mapping[str, Any]], max_concurrent: int) -> ConcurrencyChanges:
    """How rate limits moved the run's effective concurrency (see execution/concurrency.py)."""
    changes = [e for e in events if e["event"] == CONCURRENCY_EVENT]
    cuts = [c for c in changes if c.get("after", 0) < c.get("before", 0)]
    return {
        "max_concurrent": max_concurrent,
        "lowest": min((int(c["after"]) for c in changes), default=max_concurrent),
        "final": int(changes[-1]["after"]) if changes else max_concurrent,
        "cuts": len(cuts),
        "raises": len(changes) - len(cuts),
    }


def _with_peak(
    changes: ConcurrencyChanges | None, tasks: list[Mapping[str, Any]], batch_token_limit: int | None
) -> ConcurrencyChanges | None:
    """CHANGES and how many tasks really ran at once, at most (from their results' times), and
    whether batch_token_limit let no more of these tasks run together."""
    if changes is None:
        return None
    timed = [t for t in tasks if t.get("started_at") and t.get("finished_at")]
    # the times are UTC ISO texts of one format, so they compare as text (parsing 100,000 tasks' takes
    # half a second). Running as the i-th start comes: i started, less those ended by then (a task
    # that ends as another starts is not beside it)
    starts = sorted(t["started_at"] for t in timed)
    ends = sorted(t["finished_at"] for t in timed)
    peak = max((i + 1 - bisect_right(ends, start) for i, start in enumerate(starts)), default=0)
    budgets = sorted(int(t.get("token_budget") or 0) for t in timed)
    held = batch_token_limit is not None and len(budgets) > peak > 0 and sum(budgets[: peak + 1]) > batch_token_limit
    return {**changes, "peak": peak, "held_by_batch_token_limit": batch_token_limit if held else None}


# past this share of the CPUs' time, the tasks slowed each other down: one at a time each would
# likely have taken less than it did, so the sum of their times overstates the time saved
CPUS_BUSY_PCT = 90.0


def _cpu_use(executions: Sequence[Mapping[str, Any]]) -> CpuUse | None:
    """How busy the tasks kept the machine's CPUs while the run executed (None where not measured)."""
    measured = [e for e in executions if e.get("tasks_cpu_s") is not None and e.get("cpus")]
    active = sum(float(e.get("active_s") or 0) for e in measured)
    if not measured or active <= 0:
        return None
    cpu_s = sum(float(e["tasks_cpu_s"]) for e in measured)
    cpus = max(int(e["cpus"]) for e in measured)
    return {"tasks_cpu_s": round(cpu_s, 3), "cpus": cpus, "busy_pct": round(100 * cpu_s / (active * cpus), 1)}


def policy_actions(events: Sequence[Mapping[str, Any]]) -> list[PolicyAction]:
    """What the pressure policies (and levers from outside) did, from the run's events."""
    actions: list[PolicyAction] = []
    for event in events:
        name = event.get("event")
        if name == "lever":
            actions.append(
                {
                    "at": event.get("ts"),
                    "action": event.get("action"),
                    "by": event.get("applied_by"),
                    "why": event.get("why") or "requested from outside the run",
                    "changed": event.get("changed"),
                }
            )
        elif name in POLICY_EVENTS:
            why = event.get("reason") or ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("ts", "event"))
            actions.append({"at": event.get("ts"), "action": name, "by": "orchestrator", "why": why})
    return actions


def actual_critical_path(
    tasks: list[Mapping[str, Any]], dependencies: Mapping[str, list[str]]
) -> tuple[list[str], float]:
    """The longest chain of real durations through the dependencies, among the tasks that ran."""
    ran = {t["task_id"]: float(t.get("duration_s") or 0) for t in tasks if t.get("started_at") or t.get("duration_s")}
    best: dict[str, tuple[float, str | None]] = {}  # task -> (longest chain ending with it, the task before)
    for root in ran:
        stack = [root]
        while stack:  # depth first without recursion: chains can be 100,000 tasks long
            tid = stack[-1]
            if tid in best:
                stack.pop()
                continue
            waiting = [d for d in dependencies.get(tid, []) if d in ran and d not in best]
            if waiting:
                stack.extend(waiting)
                continue
            length, via = max(((best[d][0], d) for d in dependencies.get(tid, []) if d in ran), default=(0.0, None))
            best[tid] = (length + ran[tid], via)
            stack.pop()
    if not best:
        return [], 0.0
    end = max(best, key=lambda t: best[t][0])
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = best[node][1]
    return path[::-1], best[end][0]


def _run_times(metadata: Mapping[str, Any], tasks: list[Mapping[str, Any]]) -> tuple[float, float]:
    """(time the run was executing, wall-clock span from its first start to its last end)."""
    if metadata.get("total_time_s") is not None:  # given to create-report: it wins
        total = float(metadata["total_time_s"])
        return total, total
    executions = metadata.get("executions") or []
    if executions:
        active = sum(float(e.get("active_s") or 0) for e in executions)
        first = parse_iso(executions[0].get("started_at"))
        last = parse_iso(executions[-1].get("started_at"))
        if first is not None and last is not None:
            return active, last + float(executions[-1].get("active_s") or 0) - first
        return active, active
    starts = [s for s in (parse_iso(t.get("started_at")) for t in tasks) if s is not None]
    ends = [e for e in (parse_iso(t.get("finished_at")) for t in tasks) if e is not None]
    if starts and ends:
        span = max(ends) - min(starts)
    else:
        span = max(
            (float(t.get("duration_s") or 0) for t in tasks), default=0.0
        )  # a shell loop starts them all at once
    return span, span


def _status_of_results(tasks: list[Mapping[str, Any]]) -> str:
    """A run no orchestrator executed (a flow of script calls): its status from its results."""
    statuses = {t["status"] for t in tasks}
    if statuses <= {SUCCEEDED}:
        return "succeeded"
    return "finished_with_failures" if statuses & FAILURES else "incomplete"


def _estimate_vs_actual(
    metadata: Mapping[str, Any], total_time: float, total_tokens: int, tasks: list[Mapping[str, Any]]
) -> EstimateVsActual | None:
    planned = metadata.get("estimated_makespan_s")
    if planned is None:
        return None
    expected = metadata.get("expected_usage") or {}
    return {
        "estimated_makespan_s": planned,
        "actual_s": round(total_time, 3),
        "actual_over_estimate": round(total_time / planned, 3) if planned else None,
        "expected_tokens": expected.get("tokens"),
        "actual_tokens": total_tokens,
        "expected_cost_usd": expected.get("cost_usd"),
        "actual_cost_usd": round(sum(float(t.get("cost_usd") or 0) for t in tasks), 9),
        "tasks_with_history": expected.get("tasks_with_history"),
    }


def _reuse_savings(tasks: list[Mapping[str, Any]]) -> tuple[int, int, float]:
    """Tasks whose result came from an earlier run (the cache): their tokens and cost were saved."""
    reused = [t for t in tasks if t.get("cached")]
    saved: list[Mapping[str, Any]] = [s if isinstance(s := t.get("saved"), dict) else {} for t in reused]
    tokens = sum(int(s.get("tokens") or 0) for s in saved)
    return len(reused), tokens, round(sum(float(s.get("cost_usd") or 0) for s in saved), 9)


def create_report(aggregated: Mapping[str, Any], metadata: Mapping[str, Any]) -> Report:
    tasks: list[Mapping[str, Any]] = aggregated["tasks"]
    total_time, wall_clock = _run_times(metadata, tasks)
    actual_path, actual_path_s = actual_critical_path(tasks, metadata.get("dependencies") or {})
    status = metadata.get("status")
    if status in (None, "planned") and tasks and all(t["status"] not in ("pending", "running") for t in tasks):
        status = _status_of_results(tasks)
    usage = _resource_usage(tasks, metadata)
    retry_of = {p["task_id"]: p["retry_command"] for p in [*aggregated["failures"], *aggregated["not_run"]]}
    return {
        "schema": PLAN_SCHEMA,
        "kind": "report",
        "run_id": metadata.get("run_id") or aggregated.get("run_id"),
        "generated_at": now_iso(),
        "workflow": metadata.get("workflow"),
        "status": status,
        "stop_reason": metadata.get("stop_reason"),
        "execution_summary": _execution_summary(tasks, total_time, wall_clock),
        "resource_usage": usage,
        "critical_path": list(metadata.get("critical_path") or []),
        "critical_path_planned": list(metadata.get("critical_path") or []),
        "critical_path_actual": actual_path,
        "critical_path_actual_s": round(actual_path_s, 3),
        "policies": list(metadata.get("policies") or []),
        "policy_actions": list(metadata.get("policy_actions") or []),
        "concurrency": _with_peak(metadata.get("concurrency"), tasks, metadata.get("batch_token_limit")),
        "cpu": _cpu_use(metadata.get("executions") or []),
        "warm_pool": warm_pool_summary(metadata.get("warm_events") or [], actual_path),
        "estimate_vs_actual": _estimate_vs_actual(metadata, total_time, usage["total_tokens"], tasks),
        "task_results": [_task_entry(t, retry_of.get(t["task_id"])) for t in tasks],
        "merged_results": [r["task_ids"] for r in aggregated["results"] if len(r["task_ids"]) > 1],
    }


def _execution_summary(tasks: list[Mapping[str, Any]], total_time: float, wall_clock: float) -> ExecutionSummary:
    # time saved counts only the work that was done: what succeeded, one after another
    sequential = sum(float(t.get("duration_s") or 0) for t in tasks if t["status"] == SUCCEEDED)
    meaningful = sequential > 0
    saved = max(0.0, sequential - total_time) if meaningful else 0.0
    gain = 100 * saved / sequential if meaningful else 0.0
    succeeded = sum(1 for t in tasks if t["status"] == SUCCEEDED)
    failed = sum(1 for t in tasks if t["status"] in FAILURES)
    return {
        "total_tasks": len(tasks),
        "completed_successfully": succeeded,
        "failed_tasks": failed,
        "not_run_tasks": len(tasks) - succeeded - failed,
        "total_time": human_duration(total_time),
        "total_time_s": round(total_time, 3),
        "wall_clock_time": human_duration(wall_clock),
        "wall_clock_time_s": round(wall_clock, 3),
        "sequential_estimate": human_duration(sequential),
        "sequential_estimate_s": round(sequential, 3),
        "time_saved": human_duration(saved) if meaningful else "n/a",
        "time_saved_s": round(saved, 3) if meaningful else None,
        "efficiency_gain": percent(gain) if meaningful else "n/a",
        "efficiency_gain_pct": round(gain, 1) if meaningful else None,
        "time_saved_counts": "succeeded tasks only" if succeeded < len(tasks) else "all tasks",
    }


def _resource_usage(tasks: list[Mapping[str, Any]], metadata: Mapping[str, Any]) -> ResourceUsage:
    total_tokens = sum(int(t.get("tokens_used", {}).get("total", 0)) for t in tasks)
    counted = sum(counted_tokens(t) for t in tasks)
    reused, tokens_saved, cost_saved = _reuse_savings(tasks)
    budget = metadata.get("total_token_budget")
    utilization = 100 * counted / budget if budget else 0.0
    return {
        "total_tokens": total_tokens,
        "tokens_counted": counted,
        "average_per_task": round(total_tokens / len(tasks)) if tasks else 0,
        "budget_utilization": percent(utilization),
        "budget_utilization_pct": round(utilization, 1),
        "total_token_budget": budget,
        "tokens_by_kind": {
            k: sum(int(t.get("tokens_used", {}).get(k, 0)) for t in tasks)
            for k in ("input", "output", "cache_read", "cache_creation")
        },
        "cost_usd": round(sum(float(t.get("cost_usd") or 0) for t in tasks), 9),
        "total_cost_budget_usd": metadata.get("total_cost_budget_usd"),
        "reused_tasks": reused,
        "tokens_saved": tokens_saved,
        "cost_saved_usd": cost_saved,
    }


def _task_entry(t: Mapping[str, Any], retry_command: str | None) -> ReportTask:
    """One task in report.json's task_results."""
    return {
        "task_id": t["task_id"],
        "agent": t["agent"],
        "task": t.get("task", ""),
        "runner": t.get("runner", "agent"),
        "status": t["status"],
        "result": t.get("result", ""),
        "tokens_used": int(t.get("tokens_used", {}).get("total", 0)),
        "tokens_counted": counted_tokens(t),
        "token_budget": t.get("token_budget"),
        "cost_usd": float(t.get("cost_usd") or 0),
        "cost_budget_usd": t.get("cost_budget_usd"),
        "attempts": t.get("attempts", 1),
        "duration": human_duration(float(t.get("duration_s") or 0)),
        "duration_s": float(t.get("duration_s") or 0),
        "started_at": t.get("started_at"),
        "finished_at": t.get("finished_at"),
        "error": t.get("error") or (t.get("reason") if t["status"] != SUCCEEDED else None),
        "retry_command": retry_command,
        "warnings": list(t.get("warnings") or []),
        "permission_denials": list(t.get("permission_denials") or []),
        "worktree": t.get("worktree"),
        "executed_on": t.get("executed_on"),
        "verify": t.get("verify"),
        "cached_from": t.get("cached_from"),
    }


# -- markdown ---------------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _warm_row(pool: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not pool or not pool["warmed"]:
        return []
    return [
        (
            "Warm agents",
            f"{pool['warmed']} started ahead of their task, {pool['used']} used, {pool['stopped_unused']} stopped "
            f"unused; on the critical path their processes were ready {pool['critical_path_warm_s']:g} s before "
            "their prompts",
        )
    ]


def _estimate_row(estimate: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not estimate:
        return []
    text = f"planned {human_duration(estimate['estimated_makespan_s'])}, took {human_duration(estimate['actual_s'])}"
    if estimate.get("tasks_with_history") and estimate.get("expected_tokens"):
        low, high = estimate["expected_tokens"]
        text += f"; {low}-{high} tokens expected from past runs, {estimate['actual_tokens']} used"
    return [("Estimate", text)]


def _concurrency_row(concurrency: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """How many tasks ran at once, when rate limits or the batch token limit held the run back."""
    if not concurrency:
        return []
    allowed, peak = concurrency["max_concurrent"], concurrency.get("peak")
    why = []
    if concurrency["cuts"]:
        why.append(
            f"rate limits cut it {concurrency['cuts']} time(s), to {concurrency['lowest']} at the lowest, "
            f"{concurrency['final']} at the end"
        )
    if (limit := concurrency.get("held_by_batch_token_limit")) is not None and peak is not None:
        why.append(f"no {peak + 1} of these tasks' token budgets fit under batch_token_limit {limit}")
    if not why:
        return []
    ran = f"at most {peak} at once (max_concurrent {allowed})" if peak is not None else f"max_concurrent {allowed}"
    return [("Concurrency", "; ".join([ran, *why]))]


def _summary_table(report: Mapping[str, Any]) -> list[str]:
    summary = report["execution_summary"]
    usage = report["resource_usage"]
    counts = f"{summary['completed_successfully']} succeeded, {summary['failed_tasks']} failed"
    if summary["not_run_tasks"]:  # by their status: a task cancelled while it ran did run
        others: dict[str, int] = {}
        for task in report["task_results"]:
            if task["status"] != SUCCEEDED and task["status"] not in FAILURES:
                others[task["status"]] = others.get(task["status"], 0) + 1
        counts += "".join(f", {n} {status}" for status, n in sorted(others.items()))
    rows = [
        ("Run", f"`{report['run_id']}` ({report.get('status') or 'unknown'})"),
        ("Tasks", f"{summary['total_tasks']} ({counts})"),
        ("Total time", _total_time_cell(summary)),
        ("Sequential estimate", f"{summary['sequential_estimate']} ({summary.get('time_saved_counts', 'all tasks')})"),
        ("Time saved", _time_saved_cell(summary, usage, report.get("cpu"))),
        ("Tokens", _tokens_cell(usage)),
        (
            "Cost",
            f"${usage['cost_usd']:.4f}"
            + (f" of ${budget:g}" if (budget := usage.get("total_cost_budget_usd")) else ""),
        ),
    ]
    if report.get("critical_path_actual"):
        rows.append(
            ("Critical path", f"{' → '.join(report['critical_path_actual'])} ({report['critical_path_actual_s']:g} s)")
        )
    if report["critical_path"] and report["critical_path"] != report.get("critical_path_actual"):
        rows.append(("Critical path, as planned", " → ".join(report["critical_path"])))
    if usage.get("reused_tasks"):
        rows.append(
            (
                "Reused from earlier runs",
                f"{usage['reused_tasks']} task(s): {usage['tokens_saved']} tokens and "
                f"${usage['cost_saved_usd']:.4f} not spent again",
            )
        )
    rows += _estimate_row(report.get("estimate_vs_actual"))
    rows += _concurrency_row(report.get("concurrency"))
    rows += _warm_row(report.get("warm_pool"))
    if report.get("stop_reason"):
        rows.append(("Stopped because", report["stop_reason"]))
    return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in rows]]


def _tokens_cell(usage: Mapping[str, Any]) -> str:
    counted = usage.get("tokens_counted", usage["total_tokens"])
    budget = f"{counted} of {usage['total_token_budget']} ({usage['budget_utilization']})"
    if counted == usage["total_tokens"]:
        return f"{budget}, {usage['average_per_task']} per task"
    # agents: each request sends the CLI's prompt again, which the budgets leave out
    return (
        f"{usage['total_tokens']} used, {usage['average_per_task']} per task; against the budget, "
        f"{budget}: what the tasks wrote and added to their context"
    )


def _total_time_cell(summary: Mapping[str, Any]) -> str:
    wall = summary.get("wall_clock_time_s")
    if wall is not None and wall > summary["total_time_s"] + 1:
        return f"{summary['total_time']} executing ({summary['wall_clock_time']} from first start to last end)"
    return str(summary["total_time"])


def _time_saved_cell(summary: Mapping[str, Any], usage: Mapping[str, Any], cpu: Mapping[str, Any] | None) -> str:
    if summary["time_saved_s"] is not None:
        saved = f"{summary['time_saved']} ({summary['efficiency_gain']})"
        if summary["time_saved_s"] > 0 and cpu and cpu["busy_pct"] >= CPUS_BUSY_PCT:
            saved += (
                f", at most: the tasks kept the {cpu['cpus']} CPU(s) {cpu['busy_pct']:g}% busy, so one at a "
                "time each would likely have taken less than it did"
            )
        return saved
    succeeded = summary["completed_successfully"]
    if not succeeded:
        return "n/a (no task succeeded)"
    if usage.get("reused_tasks") == succeeded:
        return "n/a (every task that succeeded was reused from an earlier run)"
    return "n/a (the tasks that succeeded took no measurable time)"


def _policy_section(report: Mapping[str, Any]) -> list[str]:
    actions = report.get("policy_actions") or []
    if not actions:
        return []
    lines = ["## Policies and levers that acted", "", "| When | Action | By | Why |", "|---|---|---|---|"]
    for action in actions:
        lines.append(f"| {action['at']} | {action['action']} | {action['by']} | {_cell(str(action['why'])[:300])} |")
    return [*lines, ""]


def _gantt(report: Mapping[str, Any]) -> list[str]:
    lines = [
        "```mermaid",
        "gantt",
        f"    title Tasks of run {report['run_id']}",
        "    dateFormat x",
        "    axisFormat %M:%S",
    ]
    by_agent: dict[str, list[tuple[Mapping[str, Any], int, int]]] = {}
    timed = any(parse_iso(t["started_at"]) is not None for t in report["task_results"])
    for task in report["task_results"]:
        started = parse_iso(task["started_at"])
        if started is not None:
            start = int(started * 1000)
            end = int((parse_iso(task["finished_at"]) or 0) * 1000)
        elif not timed and task["duration_s"]:
            start, end = 0, int(task["duration_s"] * 1000)  # a shell loop calling the scripts starts every task at once
        else:
            continue
        by_agent.setdefault(task["agent"], []).append((task, start, max(end, start + 1)))
    for agent, placed in by_agent.items():
        lines.append(f"    section {agent}")
        for task, start, end in placed:
            tag = "done" if task["status"] == SUCCEEDED else "crit"
            lines.append(f"    {task['task_id']} ({task['status']}) :{tag}, {start}, {end}")
    lines.append("```")
    return lines


def _result_block(text: str, runner: str = "agent") -> str:
    """An agent answers in markdown; a command's output is shown as it is."""
    if not text.strip():
        return "_(no output)_"
    if runner == "command":
        fence = "~~~"
        return f"{fence}text\n{text[:MAX_RESULT_CHARS_IN_MARKDOWN]}\n{fence}"
    text = text.strip()
    if len(text) > MAX_RESULT_CHARS_IN_MARKDOWN:
        text = (
            text[:MAX_RESULT_CHARS_IN_MARKDOWN]
            + f"\n\n_[... {len(text) - MAX_RESULT_CHARS_IN_MARKDOWN} more characters in the task's result.json]_"
        )
    return text


def _failures(report: Mapping[str, Any]) -> list[str]:
    failed = [t for t in report["task_results"] if t["status"] != SUCCEEDED]
    if not failed:
        return []
    lines = ["## Failures and tasks not run", "", "| Task | Status | Why | Retry with |", "|---|---|---|---|"]
    for task in failed:
        lines.append(
            f"| {task['task_id']} | {task['status']} | {_cell((task['error'] or '')[:300])} | "
            f"`{task['retry_command']}` |"
        )
    lines += [
        "",
        "To run everything that did not succeed again: "
        f"`{command_for('delegate-parallel', 'resume', report['run_id'])}`",
        "",
    ]
    return lines


def _verifications(report: Mapping[str, Any]) -> list[str]:
    """Whether each task with a verification passed it; the output of one that failed."""
    lines = []
    for task in report["task_results"]:
        verify = task.get("verify")
        if not isinstance(verify, dict):
            continue
        command = " ".join(str(part) for part in verify.get("command") or [])
        if verify.get("passed"):
            lines.append(f"- {task['task_id']}: `{command}` passed ({verify.get('duration_s')} s)")
            continue
        how = "did not end in time" if verify.get("exit_code") is None else f"exited {verify.get('exit_code')}"
        lines += [f"- {task['task_id']}: `{command}` **failed** ({how}); its output ends:", "", "~~~text"]
        lines += [str(verify.get("output") or "").strip()[-2000:], "~~~", ""]
    return ["## Verification", "", *lines, ""] if lines else []


def _denials(report: Mapping[str, Any]) -> list[str]:
    """Every tool call an agent was refused, one line each: never a silent success."""
    lines = []
    for task in report["task_results"]:
        for denial in task.get("permission_denials") or []:
            attempt = f" (attempt {denial['attempt']})" if denial.get("attempt") else ""
            call = f"{denial['tool']}({denial['input']})" if denial["input"] else denial["tool"]
            lines.append(f"- {task['task_id']}{attempt}: {_cell(call)}")
    if not lines:
        return []
    intro = "Tool calls that were refused (nobody can approve in a run; widen a task's permissions to allow them):"
    return ["## Permission denials", "", intro, "", *lines, ""]


def _merge_section(merge: Mapping[str, Any]) -> list[str]:
    """The last merge of the run's branches: what landed, what was set aside and why."""
    gate = f", gate `{merge['gate']}`" if merge.get("gate") else ""
    lines = ["## Merge", "", f"Into `{merge.get('into') or 'HEAD'}` at {merge.get('finished_at')}{gate}:", ""]
    for step in merge.get("steps") or []:
        if not isinstance(step, dict):
            continue
        why = step.get("why") or ""
        if step.get("conflicting_files"):
            why = "in " + ", ".join(f"`{f}`" for f in step["conflicting_files"])
        if step.get("gate_output"):
            why = "gate output: " + _cell(str(step["gate_output"]).strip()[-300:])
        lines.append(f"- {step.get('task_id')}: **{step.get('outcome')}**" + (f": {_cell(why)}" if why else ""))
    lines.append("")
    return lines


def _warnings(report: Mapping[str, Any]) -> list[str]:
    """What a task did that is not a failure but must not go unseen."""
    lines = []
    for task in report["task_results"]:
        notes = list(task.get("warnings") or [])
        worktree = task.get("worktree")
        if isinstance(worktree, dict):
            notes += [str(n) for n in worktree.get("notes") or []]
        lines += [f"- {task['task_id']}: {_cell(note)}" for note in notes]
    return ["## Warnings", "", *lines, ""] if lines else []


def render_markdown(report: Mapping[str, Any]) -> str:
    title = f"# delegate-parallel report: {report.get('workflow') or 'run'} `{report['run_id']}`"
    lines = [title, "", *_summary_table(report), "", "## Timeline", "", *_gantt(report), ""]
    lines += _failures(report)
    lines += _denials(report)
    lines += _verifications(report)
    lines += _policy_section(report)
    if report.get("worktrees"):
        from awoc_scripts.results.overlap import overlap_markdown

        lines += overlap_markdown(report["worktrees"], report["run_id"])
    if isinstance(report.get("merge"), dict):
        lines += _merge_section(report["merge"])
    lines += _warnings(report)
    lines += ["## Results", ""]
    for task in report["task_results"]:
        if task["status"] != SUCCEEDED:
            continue
        lines += [
            f"### {task['task_id']} ({task['agent']}, {task['duration']}, {task['tokens_used']} tokens)",
            "",
            f"> {_cell(task['task'])[:500]}",
            "",
            _result_block(task["result"], task["runner"]),
            "",
        ]
    return "\n".join(lines)


def topic_of(task_text: str) -> str:
    first = re.split(r"[.:;\n]", task_text.strip(), maxsplit=1)[0]
    topic = LEADING_VERB.sub("", first).strip()
    return (topic[:1].upper() + topic[1:])[:80] or "General"


def render_research_report(report: Mapping[str, Any]) -> str:
    """Findings grouped by agent, then by topic, for research pipelines."""
    lines = [
        f"# Research report: {report.get('workflow') or 'run'} `{report['run_id']}`",
        "",
        *_summary_table(report),
        "",
    ]
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for task in report["task_results"]:
        if task["status"] == SUCCEEDED:
            grouped.setdefault(task["agent"], {}).setdefault(topic_of(task["task"]), []).append(task)
    for agent, topics in grouped.items():
        lines += [f"## Findings of {agent}", ""]
        for topic, tasks in topics.items():
            lines += [f"### {topic}", ""]
            for task in tasks:
                lines += [f"_From {task['task_id']}_", "", _result_block(task["result"], task["runner"]), ""]
    lines += _failures(report)
    return "\n".join(lines)


def markdown_for(report: Mapping[str, Any], result_format: str) -> str:
    return render_research_report(report) if result_format == "research_report" else render_markdown(report)


def write_reports(files: ReportFiles, report: Report, markdown: str, aggregated: Aggregate | None = None) -> None:
    from awoc_scripts.state.store import atomic_write_bytes, atomic_write_json
    from awoc_scripts.terminal_text import shown_safely

    files.dir.mkdir(parents=True, exist_ok=True)
    if aggregated is not None:
        atomic_write_json(files.aggregate, aggregated)
    atomic_write_json(files.report_json, report)
    atomic_write_bytes(files.report_md, shown_safely(markdown).encode("utf-8") + b"\n")


@without_gc  # 100,000 tasks' results and report entries, and no reference cycle among them
def report_run(
    run: Run,
    known_results: Mapping[str, TaskResult] | None = None,
    state: RunState | None = None,
    held: Held | None = None,
) -> Report:
    """Aggregate a run's results and write aggregate.json, report.json and report.md.
    `known_results`, `state` and `held` (the plan and the execution plan): what the caller
    holds already, so their files are not read again."""
    from awoc_scripts.results.aggregate import aggregate, run_results
    from awoc_scripts.results.overlap import worktree_overlap

    metadata = run_metadata(run, state, held)
    plan = held[0] if held is not None else run.read_plan()
    results = run_results(run, known_results, state, plan)
    aggregated = aggregate(results, plan, run.run_id)
    report = create_report(aggregated, metadata)
    overlap = worktree_overlap(plan, results)
    if overlap is not None:
        report["worktrees"] = overlap
    merges = read_json(run.dir / "merge.json", default={}) or {}
    if isinstance(merges, dict) and isinstance(merges.get("merges"), list) and merges["merges"]:
        report["merge"] = merges["merges"][-1]
    write_reports(run.reports, report, markdown_for(report, metadata["result_format"]), aggregated)
    return report


def generate_report_command(
    store: Any, run_id: str | None, aggregated_arg: str | None, metadata_arg: str | None, output_format: str
) -> tuple[Report, str, str]:
    """create-report: the aggregate and metadata given (or the run's), rendered and written."""
    from awoc_scripts.errors import InputError
    from awoc_scripts.input.documents import load_document
    from awoc_scripts.results.aggregate import aggregate, assign_task_ids, normalize_result, run_results
    from awoc_scripts.state.shapes import metadata_problem

    if output_format not in FORMATS:
        raise InputError(f"--format: {output_format!r} is not one of {', '.join(FORMATS)}")
    run = store.run_if_any(run_id, needed=not aggregated_arg)
    if aggregated_arg:
        doc = load_document(aggregated_arg, what="aggregate")
        given = doc.data
        if not isinstance(given, dict) or not isinstance(given.get("tasks"), list):
            raise InputError(f'{doc.source}: expected an aggregate (from `aggregate`) with a "tasks" list')
        # made again from its task results, each checked: the rest of it follows from them
        results = [normalize_result(r, f"{doc.source}: $.tasks[{i}]") for i, r in enumerate(given["tasks"])]
        assign_task_ids(results, None)
        aggregated = aggregate(results, None, given["run_id"] if isinstance(given.get("run_id"), str) else None)
    else:
        assert run is not None
        aggregated = read_json(run.aggregate_file, default={}) or aggregate(
            run_results(run), run.read_plan(), run.run_id
        )
    metadata: RunMetadata = run_metadata(run) if run and aggregated.get("run_id") in (None, run.run_id) else {}
    if metadata_arg:
        doc = load_document(metadata_arg, what="metadata")
        problem = metadata_problem(doc.data)
        if problem:
            raise InputError(f"{doc.source}: {problem}")
        metadata.update(doc.data)
    report = create_report(aggregated, metadata)
    markdown = markdown_for(report, output_format if output_format != "json" else metadata.get("result_format", ""))
    files = run.reports if run and report["run_id"] == run.run_id else store.loose_reports
    write_reports(files, report, markdown)
    return report, markdown, str(files.report_md)


def load_or_create_report(run: Run) -> tuple[Report, str]:
    report: Report = read_json(run.report_json_file, default={})
    if not report or not run.report_md_file.exists():
        from awoc_scripts.state.reconcile import reconcile_saved_run

        reconcile_saved_run(run)  # a run killed before its report: each task as it really ended
        report = report_run(run)
    return report, run.report_md_file.read_text(encoding="utf-8")
