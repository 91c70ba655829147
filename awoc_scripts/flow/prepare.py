"""`delegate-parallel prepare`: everything the slash command needs before Claude acts, in one process.

Validate, check that the tasks can run here, plan, save the run (plan.json and execution.json)
and summarise it with the exact commands that follow. Nothing is written unless all of it
succeeds. Claude Code runs a command's shell blocks concurrently, so nothing here may rely on
another block or on which run is "current".
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypedDict

from awoc_scripts.launcher import command_for
from awoc_scripts.planning.execution_plan import describe_start_order, plan_execution
from awoc_scripts.planning.permissions import describe_permissions
from awoc_scripts.planning.policy_settings import policy_lines
from awoc_scripts.planning.validation import save_new_run, validate_request
from awoc_scripts.state.history import History

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from awoc_scripts.plan_types import ExecutionPlan, ExpectedUsage, FanOutSummary, Plan, PolicyDescription, StartOrder
    from awoc_scripts.state.store import Run, StateStore

WAIT_TIMEOUT_S = 100  # under the Bash tool's default limit of two minutes
SUMMARY_TASKS = 30
DESCRIPTION_CHARS = 160


def check_executable(plan: Plan) -> None:
    from awoc_scripts.execution.claude_cli import check_runner_available

    check_runner_available(plan["tasks"], plan["parallel_config"], os.environ)


def prepare_run(
    store: StateStore, args: Sequence[str], before_save: Callable[[Plan], None] | None = None
) -> tuple[Run, Plan, ExecutionPlan]:
    """Validate and plan ARGS and save them as a new run; nothing is written unless both succeed
    (nor unless `before_save`, connecting to where the tasks will run, say, succeeds)."""
    plan = validate_request(args)
    check_executable(plan)
    execution = plan_execution(plan, history=History.load(store.root))
    if before_save is not None:
        before_save(plan)
    run = save_new_run(store, plan)
    execution["run_id"] = run.run_id
    run.write_execution(execution)
    return run, plan, execution


class PermissionGroup(TypedDict):
    may: str  # what the tasks may do with nobody to approve
    tasks: list[str]


class PreparedTask(TypedDict):
    task_id: str
    agent: str
    priority: str
    token_budget: int
    dependencies: list[str]
    cost_budget_usd: float | None
    description: str


class PreparedSummary(TypedDict):
    """What `prepare` says of a saved run before it starts (and the slash command shows)."""

    run_id: str
    task_count: int
    limits: dict[str, float | int | None]
    critical_path: list[str]
    estimated_makespan_s: float
    sequential_estimate_s: float
    start_order: StartOrder | None
    expected_usage: ExpectedUsage | None
    tasks: list[PreparedTask]
    permissions: list[PermissionGroup]
    fan_out: list[FanOutSummary]
    warnings: list[str]
    policies: list[PolicyDescription]
    run_dir: str
    next: dict[str, str]


def next_commands(run_id: str, worktrees: bool = False) -> dict[str, str]:
    """What to run after `prepare`, in the form that works where the user is. With WORKTREES
    (some task changes code on a branch of its own), how that work lands in the checkout."""
    dp = "delegate-parallel"
    commands = {
        "start": command_for(dp, "start", run_id, "--quiet"),
        "wait": command_for(dp, "wait", run_id, "--timeout", str(WAIT_TIMEOUT_S)),
        "status": command_for(dp, "status", run_id, "--format", "text"),
        "report": command_for(dp, "report", run_id),
        "resume": command_for(dp, "resume", run_id, "--quiet"),
    }
    if worktrees:
        commands["merge_dry_run"] = command_for(dp, "merge", run_id, "--dry-run")
        commands["merge"] = command_for(dp, "merge", run_id)
    return commands


def permission_groups(plan: Plan) -> list[PermissionGroup]:
    """What the tasks may do with nobody to approve, one entry per distinct answer."""
    groups: dict[str, list[str]] = {}
    for task in plan["tasks"]:
        groups.setdefault(describe_permissions(task.get("permissions")), []).append(task["task_id"])
    return [{"may": may, "tasks": ids} for may, ids in groups.items()]


def prepared_summary(run: Run, plan: Plan, execution: ExecutionPlan) -> PreparedSummary:
    config = execution["parallel_config"]
    return {
        "run_id": run.run_id,
        "task_count": len(plan["tasks"]),
        "limits": {
            "max_concurrent": config["max_concurrent"],
            "total_timeout": config["total_timeout"],
            "total_token_budget": config["total_token_budget"],
            "failure_tolerance": config["failure_tolerance"],
            "total_cost_budget_usd": config.get("total_cost_budget_usd"),
        },
        "critical_path": execution["critical_path"],
        "estimated_makespan_s": execution["estimated_makespan_s"],
        "sequential_estimate_s": execution["sequential_estimate_s"],
        "start_order": execution.get("start_order"),
        "expected_usage": execution.get("expected_usage"),
        "tasks": [
            {
                "task_id": t["task_id"],
                "agent": t["agent"],
                "priority": t["priority"],
                "token_budget": t["token_budget"],
                "dependencies": t["dependencies"],
                "cost_budget_usd": t.get("cost_budget_usd"),
                "description": t["description"],
            }
            for t in plan["tasks"]
        ],
        "permissions": permission_groups(plan),
        "fan_out": plan.get("fan_out", []),
        "warnings": execution["warnings"],
        "policies": execution["policies"],
        "run_dir": str(run.dir),
        "next": next_commands(run.run_id, any(t["isolation"] == "worktree" for t in plan["tasks"])),
    }


def _cell(text: str) -> str:
    one_line = " ".join(text.split())
    if len(one_line) > DESCRIPTION_CHARS:
        one_line = one_line[: DESCRIPTION_CHARS - 1] + "…"
    return one_line.replace("|", "\\|")


def _expected_line(expected: ExpectedUsage | None) -> list[str]:
    if not expected or not expected.get("tasks_with_history"):
        return []
    (low, high), (low_usd, high_usd) = expected["tokens"], expected["cost_usd"]
    return [
        f"From past runs ({expected['tasks_with_history']} of the tasks seen before): {low}-{high} tokens, "
        f"${low_usd:g}-${high_usd:g}."
    ]


def _start_order_line(order: StartOrder | None) -> list[str]:
    described = describe_start_order(order)
    return [] if described is None else [f"Start order: {described}."]


def summary_markdown(summary: PreparedSummary) -> str:
    limits = summary["limits"]
    commands = summary["next"]
    lines = [
        f"## Run {summary['run_id']}: prepared, not started",
        "",
        f"{summary['task_count']} task(s); at most {limits['max_concurrent']} at once; total timeout "
        f"{limits['total_timeout']} s; token budget {limits['total_token_budget']}; "
        + (f"money budget ${limits['total_cost_budget_usd']:g}; " if limits.get("total_cost_budget_usd") else "")
        + f"failure tolerance {limits['failure_tolerance']}.",
        f"Critical path: {' -> '.join(summary['critical_path'])}; estimated {summary['estimated_makespan_s']:g} s "
        f"(one after another: {summary['sequential_estimate_s']:g} s).",
        *_start_order_line(summary.get("start_order")),
        *_expected_line(summary.get("expected_usage")),
        "",
        "| task | agent | priority | token budget | depends on | description |",
        "|---|---|---|---|---|---|",
    ]
    for task in summary["tasks"][:SUMMARY_TASKS]:
        deps = ", ".join(task["dependencies"]) or "-"
        lines.append(
            f"| {task['task_id']} | {task['agent']} | {task['priority']} | {task['token_budget']} | {_cell(deps)} "
            f"| {_cell(task['description'])} |"
        )
    if summary["task_count"] > SUMMARY_TASKS:
        lines.append(f"| ... | {summary['task_count'] - SUMMARY_TASKS} more | | | | |")
    for fan in summary.get("fan_out") or []:
        first = ", ".join(fan["first_items"]) + (", ..." if fan["count"] > len(fan["first_items"]) else "")
        lines.append(f"\nFan-out: {fan['template']} is {fan['count']} task(s), one per item: {_cell(first)}")
    lines += ["", "What the tasks may do, with nobody there to approve (a refused tool call fails its task):"]
    for group in summary["permissions"]:
        ids = group["tasks"]
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        lines.append(f"- {shown}: {group['may']}")
    for warning in summary["warnings"]:
        lines.append(f"\nWarning: {warning}")
    lines += ["", "Policies that may act by themselves (turn one off in parallel_config.policies):"]
    lines += [f"- {line}" for line in policy_lines([p for p in summary["policies"] if p["enabled"]])]
    lines += [
        "",
        "Commands for this run (each is allowed; run them from this directory):",
        f"- START (once, in the background): `{commands['start']}`",
        f"- WAIT (blocks up to {WAIT_TIMEOUT_S} s, then prints where the run stands): `{commands['wait']}`",
        f"- REPORT (when the run has ended): `{commands['report']}`",
        f"- STATUS (any time): `{commands['status']}`",
        f"- RESUME (if the run was interrupted): `{commands['resume']}`",
        *_merge_lines(commands),
        "",
        f"The full report will be `{summary['run_dir']}/report.md`.",
    ]
    return "\n".join(lines)


def _merge_lines(commands: dict[str, str]) -> list[str]:
    if "merge" not in commands:
        return []
    return [
        f"- MERGE-DRY-RUN (after the run: what would merge, what conflicts): `{commands['merge_dry_run']}`",
        f"- MERGE (lands the succeeded tasks' branches in this checkout): `{commands['merge']}`",
    ]


USAGE_HINT = (
    "Type a config file, e.g. `/delegate-parallel tasks.json`, or tasks as quoted "
    '"agent:description" words, e.g. `/delegate-parallel "docs-fetcher:Research X" "architect:Design Y" '
    '--then "workforce:Build it"`.'
)


def refusal_markdown(message: str) -> str:
    return "\n".join(
        [
            "## Not started: the request was refused",
            "",
            "```text",
            message,
            "```",
            "",
            f"Nothing was written and no task ran. {USAGE_HINT}",
        ]
    )
