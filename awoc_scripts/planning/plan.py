"""A request, validated and normalized into a plan.

Every default is filled in, dependencies are resolved to task ids and token budgets are set,
so later steps never have to guess.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, cast

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.errors import InputError, problems_error
from awoc_scripts.input.config_schema import schema_problems
from awoc_scripts.input.dependencies import TaskRef, find_cycle, format_cycle, resolve_names
from awoc_scripts.input.request import Request, default_task_id
from awoc_scripts.plan_types import JsonObject, ParallelConfig, Plan, Task
from awoc_scripts.planning.budgets import BudgetRequest, allocate_budgets
from awoc_scripts.planning.fan_out import expand_fan_outs
from awoc_scripts.planning.permissions import with_permissions
from awoc_scripts.planning.policy_settings import DEFAULT_MIN_FREE_MEMORY_MB

DEFAULT_CONFIG: ParallelConfig = {
    "max_concurrent": 5,
    "total_timeout": 600,
    "total_token_budget": 25000,
    "failure_tolerance": 1,
    "result_format": "structured",
    "batch_token_limit": 25000,
    "retries": 1,
    "shared_context": "",
    "min_free_memory_mb": DEFAULT_MIN_FREE_MEMORY_MB,
    "agents": {},
    "runner": {},
    "isolation": "process",  # each task's default: "worktree" runs it in its own git worktree
    "keep_worktrees": False,
    "on_permission_denied": "fail",  # a task with a denied tool call fails ("warn": it only warns)
    "verify_timeout": 600,
}
HIGH_PRIORITIES = ("critical", "high")


def build_plan(request: Request) -> Plan:
    config = request.config
    problems = schema_problems(config)
    if problems:
        raise problems_error(request.source, [(request.describe_path(p), m) for p, m in problems])

    given = config.get("parallel_config", {})
    settings = cast("ParallelConfig", {**DEFAULT_CONFIG, **given})  # given is checked against the schema above
    raw_tasks: list[JsonObject] = config["tasks"]
    ids = _assign_ids(raw_tasks, request)
    raw_tasks, ids, request, fans = expand_fan_outs(raw_tasks, ids, request, Path.cwd())
    tasks = _resolve_dependencies(raw_tasks, ids, request)

    allocation = allocate_budgets(
        [
            BudgetRequest(t["task_id"], t["agent"], t["priority"], raw.get("token_budget"))
            for t, raw in zip(tasks, raw_tasks, strict=True)
        ],
        given.get("total_token_budget"),
        settings["agents"],
    )
    budgets = allocation.budgets
    for task in tasks:
        task["token_budget"] = budgets[task["task_id"]]
    _apply_settings(tasks, raw_tasks, settings)
    settings["total_token_budget"] = allocation.total
    with_permissions(tasks, raw_tasks, settings)

    plan: Plan = {
        "schema": PLAN_SCHEMA,
        "kind": "plan",
        "run_id": None,  # set when the plan is saved as a run
        "created_at": None,
        "workflow": config.get("workflow"),
        "source": request.source,
        "parallel_config": settings,
        "budget": {
            "total": allocation.total,
            "total_given": "total_token_budget" in given,
            "allocated": allocation.allocated,
            "scale_factor": allocation.scale_factor,
        },
        "warnings": allocation.warnings + _agent_warnings(tasks),
        "tasks": tasks,
    }
    if fans:
        plan["fan_out"] = [fan.summary() for fan in fans]
    return plan


def _apply_settings(tasks: list[Task], raw_tasks: list[JsonObject], settings: ParallelConfig) -> None:
    """What a task does not say itself: from parallel_config, and its agent's overrides there."""
    timeout, retries, isolation = settings["total_timeout"], settings["retries"], settings["isolation"]
    verify, verify_timeout = settings.get("verify"), settings["verify_timeout"]
    overrides = settings["agents"]
    for task, raw in zip(tasks, raw_tasks, strict=True):
        task["timeout"] = raw["timeout"] if raw.get("timeout") is not None else timeout
        task["retries"] = raw["retries"] if raw.get("retries") is not None else retries
        task["isolation"] = raw.get("isolation") or isolation
        task["verify"] = raw.get("verify") or verify
        task["verify_timeout"] = float(raw.get("verify_timeout") or verify_timeout)
        if raw.get("cache") is False:
            task["cache"] = False
        override = overrides.get(task["agent"])
        if not override:
            continue
        if task["model"] is None and "model" in override:
            task["model"] = override["model"]
        if task["tools"] is None and "tools" in override:
            task["tools"] = override["tools"]
        if task["max_turns"] is None and "max_turns" in override:
            task["max_turns"] = override["max_turns"]
        if task["command"] is None and "command" in override:
            task["command"] = override["command"]


def _agent_warnings(tasks: list[Task]) -> list[str]:
    from awoc_scripts.input.agents import misspelled_agent_warnings

    agents = list(dict.fromkeys(t["agent"] for t in tasks if t["command"] is None))  # a command task needs none
    return misspelled_agent_warnings(agents, Path.cwd(), Path.home()) if agents else []


def _assign_ids(raw_tasks: list[JsonObject], request: Request) -> list[str]:
    counts: dict[str, int] = {}
    ids: list[str] = []
    first_seen: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for i, task in enumerate(raw_tasks):
        agent = task["agent"]
        counts[agent] = counts.get(agent, 0) + 1
        task_id = task.get("task_id") or default_task_id(agent, counts[agent])
        if task_id in first_seen:
            where = request.describe_path(f"tasks[{first_seen[task_id]}]")
            problems.append((request.describe_path(f"tasks[{i}]"), f"duplicate task id {task_id!r} (also {where})"))
        else:
            first_seen[task_id] = i
        ids.append(task_id)
    if problems:
        raise problems_error(request.source, problems)
    return ids


def _resolve_dependencies(raw_tasks: list[JsonObject], ids: list[str], request: Request) -> list[Task]:
    id_set = set(ids)

    @functools.cache
    def by_agent_and_priority() -> tuple[dict[str, list[str]], dict[str, str]]:
        """What names other than task ids need; built only if some task uses one."""
        by_agent: dict[str, list[str]] = {}
        priority_of: dict[str, str] = {}
        for raw, task_id in zip(raw_tasks, ids, strict=True):
            by_agent.setdefault(raw["agent"], []).append(task_id)
            priority_of[task_id] = raw.get("priority", "medium")
        return by_agent, priority_of

    problems: list[tuple[str, str]] = []
    tasks: list[Task] = []
    earlier: set[str] = set()
    in_file_order = True  # every dependency listed before its dependent: then there is no cycle
    for i, (raw, task_id) in enumerate(zip(raw_tasks, ids, strict=True)):
        names = raw.get("dependencies", [])
        mode = raw.get("dependency_mode", "all_complete")
        # the common task: ids of tasks listed before it, nothing to expand, nothing to report
        plain = mode == "all_complete" and "critical_dependencies" not in raw and "condition" not in raw
        if plain and not earlier.issuperset(names):
            in_file_order = False
            plain = _plain_ids(names, task_id, id_set)
        if plain:
            tasks.append(_task_of(raw, task_id, i, list(dict.fromkeys(names)), mode, [], None))
            earlier.add(task_id)
            continue
        where = request.describe_path(f"tasks[{i}]")
        me = TaskRef(task_id, raw["agent"])
        by_agent, priority_of = by_agent_and_priority()
        deps = resolve_names(names, me, id_set, by_agent, f"{where}.dependencies", problems)
        in_file_order = in_file_order and earlier.issuperset(deps)
        earlier.add(task_id)
        critical: list[str] = []
        condition = None
        if "critical_dependencies" in raw:
            if mode != "partial":
                problems.append((f"{where}.critical_dependencies", 'only applies with dependency_mode "partial"'))
            critical = resolve_names(
                raw["critical_dependencies"], me, id_set, by_agent, f"{where}.critical_dependencies", problems
            )
            for name in critical:
                if name not in deps:
                    problems.append(
                        (f"{where}.critical_dependencies", f"{name!r} is not among the task's dependencies")
                    )
        elif mode == "partial":
            critical = [d for d in deps if priority_of[d] in HIGH_PRIORITIES]
        if "condition" in raw:
            if mode != "conditional":
                problems.append((f"{where}.condition", 'only applies with dependency_mode "conditional"'))
            condition = raw["condition"]
        elif mode == "conditional":
            condition = {"when": "success"}
        tasks.append(_task_of(raw, task_id, i, deps, mode, critical, condition))
    if problems:
        raise problems_error(request.source, problems)
    cycle = None if in_file_order else find_cycle({t["task_id"]: t["dependencies"] for t in tasks})
    if cycle:
        raise InputError(f"{request.source}: {format_cycle(cycle)}")
    return tasks


def _plain_ids(names: list[str], task_id: str, ids: set[str]) -> bool:
    """Every name is the id of another task: nothing to expand, nothing to report."""
    return ids.issuperset(names) and task_id not in names


# A task as the plan holds it, before its own values, budgets and settings are filled in. Every
# task starts as a copy: copying one dict and setting ten keys costs half of building it whole.
_BLANK_TASK: Task = {
    "task_id": "",
    "agent": "",
    "description": "",
    "priority": "medium",
    "token_budget": 0,  # set with the other tasks' budgets
    "budget_source": "computed",
    "dependencies": [],
    "dependency_mode": "all_complete",
    "critical_dependencies": [],
    "condition": None,
    "timeout": 0,  # set from the settings
    "estimated_duration": None,
    "retries": 0,  # set from the settings
    "command": None,
    "model": None,
    "tools": None,
    "max_turns": None,
    "context": None,
    "isolation": "process",  # set from the settings
    "index": 0,
    "cost_budget_usd": None,
}
_TAKEN_AS_GIVEN = frozenset(
    ("estimated_duration", "command", "model", "tools", "max_turns", "context", "cost_budget_usd")
)


def _task_of(
    raw: JsonObject, task_id: str, index: int, deps: list[str], mode: Any, critical: list[str], condition: Any
) -> Task:
    """A task as the plan holds it, before budgets and settings are filled in."""
    task = _BLANK_TASK.copy()
    task["task_id"], task["agent"], task["description"] = task_id, raw["agent"], raw["description"]
    task["priority"] = raw.get("priority", "medium")
    task["budget_source"] = "explicit" if "token_budget" in raw else "computed"
    task["dependencies"], task["dependency_mode"] = deps, mode
    task["critical_dependencies"], task["condition"], task["index"] = critical, condition, index
    if not _TAKEN_AS_GIVEN.isdisjoint(raw):
        for key in _TAKEN_AS_GIVEN.intersection(raw):
            task[key] = raw[key]  # type: ignore[literal-required]
    return task
