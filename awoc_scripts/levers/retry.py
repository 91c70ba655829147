"""parallel-task-retry: run a task that ended badly again, with reduced scope.

The task gets 80% of its budget and its previous error quoted in the prompt; the tasks skipped
because of it wait again too. An orchestrator executing the run requeues it live; otherwise the
run is resumed here and now for just those tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import OK, InputError, StateError
from awoc_scripts.execution.machine.levers import RETRY
from awoc_scripts.levers.requests import request_lever
from awoc_scripts.state.owner import initial_state, run_executing
from awoc_scripts.state.statuses import FAILURES, SUCCEEDED, TERMINAL
from awoc_scripts.state.task_results import require_tasks

if TYPE_CHECKING:
    from awoc_scripts.levers.outcomes import RetryOutcome
    from awoc_scripts.plan_types import ExecutionPlan, Plan
    from awoc_scripts.state.store import Run, StateStore


def retry_targets(run: Run, name: str) -> tuple[list[str], bool]:
    """The tasks NAME means for a retry: that task, or the failed tasks of that agent."""
    plan = run.read_plan()
    ids, is_agent = require_tasks(plan, name, run.run_id)
    state = run.read_state() or initial_state(run)
    status = {tid: state["tasks"][tid]["status"] if tid in state["tasks"] else "pending" for tid in ids}
    allowed = FAILURES if is_agent else TERMINAL - {SUCCEEDED}
    if not any(s in allowed for s in status.values()):
        states = ", ".join(f"{tid} {s}" for tid, s in status.items())
        what = f"agent {name} has no failed task" if is_agent else f"task {name} has not ended with a failure"
        raise InputError(f"nothing to retry: {what} ({states})")
    return ids, is_agent


def retry_reduced(
    store: StateStore,
    run: Run,
    name: str,
    message: str | None,
    *,
    execute: bool = True,
    quiet: bool = False,
) -> tuple[int, RetryOutcome]:
    """Requeue NAME's task(s); run them now unless an orchestrator executes the run.

    Returns (the resumed run's exit code, or 0; what was done)."""
    ids, is_agent = retry_targets(run, name)
    resume = None
    if execute and not run_executing(run, run.read_state()):
        from awoc_scripts.flow.runs import load_for_resume

        resume = load_for_resume(store, run.run_id)  # checks the runner exists before anything changes
    args = {"task_ids": ids, "message": message or None, "only_failures": is_agent, "name": name}
    control = request_lever(run, RETRY, args)
    changed = control["changed"]
    if changed.get("error"):
        raise InputError(f"the orchestrator of run {run.run_id} could not retry {name}: {changed['error']}")
    out: RetryOutcome = {
        "run_id": run.run_id,
        "name": name,
        "retried": changed["requeued"],
        "reopened_dependents": changed["reopened_dependents"],
        "not_retried": changed["not_retried"],
        "applied_by": control["applied_by"],
    }
    if not changed["requeued"]:
        why = "; ".join(f"{t['task_id']}: {t['why']}" for t in changed["not_retried"])
        raise InputError(f"nothing to retry: {why}")
    live = control.get("applied_to") == "running orchestrator"
    run.append_event(
        "task-retry-reduced",
        name=name,
        task_ids=[t["task_id"] for t in changed["requeued"]],
        reopened=changed["reopened_dependents"],
        by="orchestrator" if live else "parallel-task-retry",
    )
    if live or not execute:
        out["executed_by"] = "orchestrator" if live else None
        return OK, out
    only = {t["task_id"] for t in changed["requeued"]} | set(changed["reopened_dependents"])
    return _resume(store, run, resume, quiet, out, only)


def _resume(
    store: StateStore,
    run: Run,
    loaded: tuple[Run, Plan, ExecutionPlan] | None,
    quiet: bool,
    out: RetryOutcome,
    only: set[str],
) -> tuple[int, RetryOutcome]:
    from awoc_scripts.execution.display import PlainDisplay
    from awoc_scripts.flow.runs import ExecutorChoice, execute_run, load_for_resume, make_executor

    run_files, plan, execution = loaded or load_for_resume(store, run.run_id)
    try:
        code, summary = execute_run(
            run_files,
            plan,
            execution,
            make_executor(ExecutorChoice(), plan),
            PlainDisplay(quiet=quiet),
            resume=True,
            only=only,
        )
    except StateError:
        if not run_executing(run, run.read_state()):
            raise
        # another process began executing the run meanwhile: it reruns what is pending, ours included
        out["executed_by"] = "orchestrator"
        return OK, out
    out["executed_by"] = "this process"
    out["run"] = summary
    return code, out
