"""One coherent answer from many task results (aggregate.json).

Results come from a run (results/task_<agent>_<task_id>_result.json) or from files, including
the ones a shell loop calling the scripts writes (`task_<agent>_<pid>_result.json` with agent, task,
result, exit_code, tokens_used, duration). They are put in dependency order, grouped by agent,
identical results merged, and every failure or skipped task is listed with its reason and the
exact command that retries it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.errors import InputError
from awoc_scripts.input.documents import read_json_file
from awoc_scripts.planning.scheduling import graph_metrics
from awoc_scripts.run_documents import RunState, TaskResult, TaskState
from awoc_scripts.state.shapes import SEED_RESULT_FIELDS, result_problem
from awoc_scripts.state.statuses import FAILURES, SUCCEEDED, TERMINAL
from awoc_scripts.state.store import Run, now_iso, result_name
from awoc_scripts.state.task_results import result_from_state

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from awoc_scripts.plan_types import Plan
    from awoc_scripts.results.documents import Aggregate, MergedResult, Problem

SEED_RESULT_NAME = re.compile(r"^task_(?P<agent>.+)_(?P<pid>\d+)_result\.json$")
STATUS_ORDER = ("succeeded", "failed", "timed_out", "budget_exceeded", "cancelled", "skipped", "pending", "running")


def normalize_result(data: Any, source: str) -> TaskResult:
    """A task result in the run's format, whether awoc or a shell loop calling the scripts wrote it."""
    if not isinstance(data, dict) or not isinstance(data.get("agent"), str):
        raise InputError(f'{source}: expected a task result object with an "agent"')
    ours = "task_id" in data and "status" in data
    problem = result_problem(data, None if ours else SEED_RESULT_FIELDS)
    if problem:
        raise InputError(f"{source}: {problem}")
    if ours:
        return cast("TaskResult", dict(data))  # checked: it has the shape
    match = SEED_RESULT_NAME.match(Path(source).name)
    exit_code = data.get("exit_code", 0)
    tokens = data.get("tokens_used", 0)
    total = tokens.get("total", 0) if isinstance(tokens, dict) else int(tokens or 0)
    return {
        "schema": PLAN_SCHEMA,
        "run_id": "",
        "priority": "medium",
        "runner": "command",
        "token_budget": None,
        "cost_budget_usd": None,
        "started_at": None,
        "finished_at": None,
        "warnings": [],
        "permission_denials": [],
        "task_id": str(data.get("task_id") or ""),  # the scripts' results have none: see assign_task_ids
        "pid": int(match["pid"]) if match else None,
        "agent": data["agent"],
        "task": str(data.get("task", "")),
        "status": SUCCEEDED if exit_code == 0 else "failed",
        "result": str(data.get("result", "")),
        "exit_code": exit_code,
        "attempts": 1,
        "tokens_used": {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0, "total": total},
        "cost_usd": 0.0,
        "duration_s": float(data.get("duration") or 0),
        "error": None if exit_code == 0 else f"exit code {exit_code}",
        "reason": None,
        "dependencies": [],
        "source": source,
    }


def assign_task_ids(results: list[TaskResult], plan: Plan | None) -> None:
    """Results a shell loop calling the scripts wrote carry no task id: take the run's task with the same agent
    and description (so the retry command names a real task), else `<agent>-<pid>`, else
    `<agent>-<n>` in the order given."""
    unused = [(t["agent"], t["description"], t["task_id"]) for t in (plan["tasks"] if plan else [])]
    taken = {r["task_id"] for r in results if r.get("task_id")}
    counts: dict[str, int] = {}
    for result in results:
        if result.get("task_id"):
            continue
        agent = result["agent"]
        match = next((u for u in unused if u[0] == agent and u[1] == result["task"] and u[2] not in taken), None)
        if match is not None:
            task_id = match[2]
        elif result.get("pid") is not None:
            task_id = f"{agent}-{result['pid']}"
        else:
            counts[agent] = counts.get(agent, 0) + 1
            task_id = f"{agent}-{counts[agent]}"
            while task_id in taken:
                counts[agent] += 1
                task_id = f"{agent}-{counts[agent]}"
        result["task_id"] = task_id
        taken.add(task_id)


def load_result_files(paths: Sequence[str]) -> list[TaskResult]:
    results = []
    for arg in paths:
        path = Path(arg)
        files = sorted(path.glob("*_result.json")) if path.is_dir() else [path]
        for file in files:
            results.append(normalize_result(read_json_file(file, what="task result"), str(file)))
    if not results:
        raise InputError(f"no task results found in {', '.join(paths)}")
    return results


def run_results(
    run: Run, known: Mapping[str, TaskResult] | None = None, state: RunState | None = None, plan: Plan | None = None
) -> list[TaskResult]:
    """The run's task results, in plan order: `known` ones as given, the others from their files,
    or, for tasks that ended without starting (no file), from state.json. PLAN: the run's, where
    the caller holds it."""
    results = []
    saved: dict[str, TaskState] | None = None if state is None else state.get("tasks", {})
    present = run.result_files()  # one listing: an aborted run may have 100,000 tasks without a file
    for task in (plan or run.read_plan())["tasks"]:
        tid = task["task_id"]
        if known and tid in known:
            results.append(known[tid])
            continue
        name = result_name(task["agent"], tid)
        if name in present:  # a Path is made only for the files there
            file = run.results_dir / name
            results.append(normalize_result(read_json_file(file, what="task result"), str(file)))
            continue
        if saved is None:
            saved = (run.read_state() or {}).get("tasks", {})
        entry: Mapping[str, Any] = saved.get(tid, {})
        if entry.get("status") in TERMINAL:
            results.append(result_from_state(run, task, entry))
    return results


def dependency_order(results: Sequence[Mapping[str, Any]], plan: Plan | None) -> list[str]:
    ids = [r["task_id"] for r in results]
    if plan is None:
        return ids
    metrics = graph_metrics(plan["tasks"])
    known = set(ids)
    order = [tid for tid in metrics.order if tid in known]
    placed = set(order)
    return order + [tid for tid in ids if tid not in placed]


def retry_command(run_id: str | None, task_id: str) -> str:
    return retry_commands(run_id)(task_id)


def retry_commands(run_id: str | None) -> Callable[[str], str]:
    """What retries a task of the run, by task id (the rest of the command is the same for all:
    an aborted run may list 100,000 tasks)."""
    from awoc_scripts.launcher import command_for

    program = command_for("parallel-task-retry", "retry-reduced")
    run_args = f" --run {shlex.quote(run_id)}" if run_id else ""
    return lambda task_id: f"{program} {shlex.quote(task_id)}{run_args}"


def aggregate(results: Sequence[Mapping[str, Any]], plan: Plan | None, run_id: str | None) -> Aggregate:
    by_id = {r["task_id"]: r for r in results}
    order = dependency_order(results, plan)
    by_agent: dict[str, list[str]] = {}
    for tid in order:
        by_agent.setdefault(by_id[tid]["agent"], []).append(tid)

    merged = _merged_successes(order, by_id)
    retry = retry_commands(run_id)
    problems: list[Problem] = [
        {
            "task_id": tid,
            "agent": by_id[tid]["agent"],
            "task": by_id[tid].get("task", ""),
            "status": by_id[tid]["status"],
            "reason": by_id[tid].get("error") or by_id[tid].get("reason") or by_id[tid]["status"],
            "retry_command": retry(tid),
        }
        for tid in order
        if by_id[tid]["status"] != SUCCEEDED
    ]

    counts = {status: 0 for status in STATUS_ORDER}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    tokens = sum(int(r.get("tokens_used", {}).get("total", 0)) for r in results)
    return {
        "schema": PLAN_SCHEMA,
        "kind": "aggregate",
        "run_id": run_id,
        "generated_at": now_iso(),
        "order": order,
        "by_agent": by_agent,
        "results": merged,
        "failures": [p for p in problems if p["status"] in FAILURES],
        "not_run": [p for p in problems if p["status"] not in FAILURES],
        "counts": {k: v for k, v in counts.items() if v},
        "total_tokens": tokens,
        "total_cost_usd": round(sum(float(r.get("cost_usd") or 0) for r in results), 9),
        "tasks": [cast("TaskResult", dict(by_id[tid])) for tid in order],
    }


def _merged_successes(order: list[str], by_id: Mapping[str, Mapping[str, Any]]) -> list[MergedResult]:
    """The results of the tasks that succeeded, those saying the same thing merged into one."""
    merged: list[MergedResult] = []
    seen: dict[str, MergedResult] = {}
    for tid in order:
        result = by_id[tid]
        if result["status"] != SUCCEEDED:
            continue
        key = " ".join(str(result.get("result", "")).split())
        if key and key in seen:
            seen[key]["task_ids"].append(tid)
            continue
        entry: MergedResult = {
            "task_ids": [tid],
            "agent": result["agent"],
            "task": result.get("task", ""),
            "result": result.get("result", ""),
        }
        merged.append(entry)
        if key:
            seen[key] = entry
    return merged


def load_result_args(args: Sequence[str]) -> list[TaskResult]:
    """RESULTS as the command takes them: files, directories of them, - or JSON text."""
    from awoc_scripts.input.documents import load_document, looks_like_json_text

    loaded = []
    for arg in args:
        # JSON text first: callers pass results as text, often longer than a file name may be
        if arg != "-" and not looks_like_json_text(arg) and _is_directory(arg):
            loaded += load_result_files([arg])
        else:
            doc = load_document(arg, what="task result")
            loaded.append(normalize_result(doc.data, doc.source))
    return loaded


def _is_directory(arg: str) -> bool:
    try:
        return Path(arg).is_dir()
    except OSError:  # a name too long to be a path, say
        return False


def aggregate_command(store: Any, run_id: str | None, args: Sequence[str], output: str | None) -> Aggregate:
    """Results given (or the run's), aggregated and written to `output`, the run, or the state root."""
    from awoc_scripts.state.store import atomic_write_json

    given = [a for a in args if a]  # callers pass unset variables as empty strings
    run = store.run_if_any(run_id, needed=not given)
    if given:
        results = load_result_args(given)
        plan = run.read_plan() if run else None
        assign_task_ids(results, plan)
        if plan and not {r["task_id"] for r in results} <= {t["task_id"] for t in plan["tasks"]}:
            plan = None  # results of something else than this run: keep their own order
        data = aggregate(results, plan, run.run_id if run and plan else None)
    else:
        assert run is not None
        results = run_results(run)
        assign_task_ids(results, run.read_plan())
        data = aggregate(results, run.read_plan(), run.run_id)
    target = Path(output) if output else (run.reports if run and data["run_id"] else store.loose_reports).aggregate
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target, data)
    data["written_to"] = str(target)
    return data
