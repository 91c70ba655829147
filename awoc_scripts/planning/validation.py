"""`validate`: arguments to a saved plan, the first step of every run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from awoc_scripts.gc_pause import without_gc
from awoc_scripts.planning.permissions import describe_permissions, settle_sandbox_probe, start_sandbox_probe
from awoc_scripts.state.store import Run, StateStore, now_iso

if TYPE_CHECKING:
    from collections.abc import Sequence

    from awoc_scripts.plan_types import JsonObject, Plan


@without_gc
def validate_request(args: Sequence[str]) -> Plan:
    """The normalized plan for these arguments, without saving anything."""
    start_sandbox_probe(os.environ)  # agent tasks will need its answer: it comes while the rest is done
    try:
        from awoc_scripts.input.request import parse_request
        from awoc_scripts.planning.git_base import attach_git_base
        from awoc_scripts.planning.plan import build_plan

        plan = build_plan(parse_request(args))
        attach_git_base(plan, Path.cwd())
        return plan
    finally:
        settle_sandbox_probe()


def save_new_run(store: StateStore, plan: Plan) -> Run:
    """Save the plan as a new run and make it current. The plan gets its run id."""

    from awoc_scripts.planning.git_base import check_new_branches

    def write(run: Run) -> None:
        check_new_branches(plan, run.run_id)
        plan["run_id"] = run.run_id
        plan["created_at"] = now_iso()
        run.write_plan(plan)

    return store.create_run(write)


NORMALIZED_ONLY_KEYS = ("index", "budget_source", "permissions")


# a task's config key -> the field of its plan's permissions
PERMISSION_KEYS = {
    "permission_mode": "mode",
    "allowed_tools": "allowed_tools",
    "disallowed_tools": "disallowed_tools",
    "add_dirs": "add_dirs",
    "on_permission_denied": "on_denied",
}


def plan_to_config(plan: JsonObject) -> JsonObject:
    """A plan document back to the config it stands for, so it is validated like any config."""
    tasks = []
    for task in plan.get("tasks", []):
        if not isinstance(task, dict):
            tasks.append(task)
            continue
        config_task = {k: v for k, v in task.items() if v is not None and k not in NORMALIZED_ONLY_KEYS}
        if task.get("budget_source") == "computed":
            config_task.pop("token_budget", None)
        if config_task.get("dependency_mode", "all_complete") != "partial":
            config_task.pop("critical_dependencies", None)
        permissions = task.get("permissions")
        if isinstance(permissions, dict):  # what was decided stays decided
            config_task |= {key: permissions[field] for key, field in PERMISSION_KEYS.items() if field in permissions}
        tasks.append(config_task)
    config: JsonObject = {"tasks": tasks}
    if isinstance(plan.get("parallel_config"), dict):
        config["parallel_config"] = {k: v for k, v in plan["parallel_config"].items() if v not in (None, "", {})}
    if plan.get("workflow"):
        config["workflow"] = plan["workflow"]
    return config


def resolve_plan(store: StateStore, arg: str | None) -> tuple[Run | None, Plan]:
    """PLAN as the commands take it: a run id, a plan or config (file, - or JSON text), or none
    for the current run. A plan of a known run comes with that run; anything else with None,
    to be saved as a new run once everything else about the request is known to be good."""
    from awoc_scripts.errors import InputError
    from awoc_scripts.input.documents import load_document
    from awoc_scripts.input.request import Request
    from awoc_scripts.state.store import RUN_ID_PATTERN

    if arg is None or RUN_ID_PATTERN.match(arg):
        run = store.open_run(arg)
        return run, run.read_plan()
    doc = load_document(arg, what="plan")
    data = doc.data
    if not isinstance(data, dict):
        raise InputError(f'{doc.source}: expected a plan or config object with a "tasks" list')
    run_id = data.get("run_id")
    if data.get("kind") == "plan" and isinstance(run_id, str) and RUN_ID_PATTERN.match(run_id):
        run = Run(store.root, run_id)
        if run.exists():
            return run, run.read_plan()
    from awoc_scripts.planning.plan import build_plan

    config = plan_to_config(data) if data.get("kind") == "plan" else data
    return None, build_plan(Request(config, doc.source))


BRIEF_TASKS = 30


def brief_plan(plan: Plan) -> JsonObject:
    """The plan in a few lines, for a prompt: the first tasks and what matters about them."""
    config = plan["parallel_config"]
    return {
        "run_id": plan["run_id"],
        "workflow": plan.get("workflow"),
        "task_count": len(plan["tasks"]),
        "limits": {
            k: config[k] for k in ("max_concurrent", "total_timeout", "total_token_budget", "failure_tolerance")
        },
        "tasks": [
            {k: t[k] for k in ("task_id", "agent", "priority", "token_budget", "dependencies")}
            | {"description": t["description"][:200], "may": describe_permissions(t.get("permissions"))}
            for t in plan["tasks"][:BRIEF_TASKS]
        ],
        "more_tasks": max(0, len(plan["tasks"]) - BRIEF_TASKS),
        "warnings": plan["warnings"],
    }
