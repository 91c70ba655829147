"""parallel-error-handler: a task failed; record it, then retry it or abort the run.

Like a classic handle_task_failure: while the run's failed tasks are within
`failure_tolerance`, the task is retried with reduced scope; beyond it, the run is aborted with
its partial results. The failure is recorded in state.json unless an orchestrator executes the
run (it owns the task states then, and has recorded the failure itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import ABORTED, OK, InputError
from awoc_scripts.execution.machine.events import Failed, Moment
from awoc_scripts.execution.machine.saved import apply_to_saved
from awoc_scripts.levers.abort import abort_with_partial_results
from awoc_scripts.levers.retry import retry_reduced
from awoc_scripts.monitors.context_monitor import TASK_FAILED
from awoc_scripts.state.owner import initial_state, run_executing
from awoc_scripts.state.statuses import FAILED, FAILURES, RUNNING, TERMINAL
from awoc_scripts.state.task_results import require_tasks, run_config, write_ended_result

if TYPE_CHECKING:
    from awoc_scripts.levers.outcomes import FailureDecision, FailureRecord
    from awoc_scripts.plan_types import Plan
    from awoc_scripts.run_documents import RunState
    from awoc_scripts.state.store import Run, StateStore

STDERR_TAIL_CHARS = 2000
SOURCE = "parallel-error-handler"


def parse_exit_code(text: str) -> int:
    try:
        code = int(text.strip())
    except ValueError:
        raise InputError(f"EXIT_CODE: expected a whole number, got {text!r}") from None
    if code == 0:
        raise InputError("EXIT_CODE: 0 means the task succeeded; give the failed task's exit code")
    return code


def failed_task(plan: Plan, state: RunState, name: str, run_id: str) -> str:
    """The one task NAME means: the task id, or the agent's only task, or the one it has running
    (or, handled again, the one that failed)."""
    ids, _ = require_tasks(plan, name, run_id)
    if len(ids) == 1:
        return ids[0]
    status = {tid: state["tasks"][tid]["status"] if tid in state["tasks"] else None for tid in ids}
    for wanted in ({RUNNING}, FAILURES):
        matching = [tid for tid in ids if status[tid] in wanted]
        if len(matching) == 1:
            return matching[0]
    states = ", ".join(f"{tid} {s}" for tid, s in status.items())
    raise InputError(f"agent {name} has {len(ids)} tasks ({states}): name the task id that failed")


def _stderr_tail(run: Run, task_id: str) -> str:
    try:
        with open(run.task_files(task_id).stderr, "rb") as fh:
            text = fh.read()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace")
    except OSError:
        return ""
    return text.strip()


def record_failure(run: Run, name: str, exit_code: int, message: str | None) -> FailureRecord:
    """The failure, in state.json (unless an orchestrator owns it) and in the events."""
    plan = run.read_plan()
    recorded = False
    with run.locked_state() as state:
        if not state:
            state.update(initial_state(run))
        tid = failed_task(plan, state, name, run.run_id)
        saved = state["tasks"][tid]
        error = message or saved.get("error") or _stderr_tail(run, tid) or f"exited with code {exit_code}"
        owned = run_executing(run, state)
        skipped: list[tuple[str, str]] = []
        if not owned:
            before = {t: s["status"] for t, s in state["tasks"].items()}
            apply_to_saved(run.run_id, plan, state, Failed(tid, error, exit_code, at=Moment.of_now()))
            after = state["tasks"]
            skipped = [(t, str(after[t].get("reason"))) for t in after if t != tid and after[t]["status"] != before[t]]
            recorded = True
        failed = [t["task_id"] for t in plan["tasks"] if state["tasks"][t["task_id"]]["status"] in FAILURES]
        if tid not in failed:
            failed.append(tid)  # the orchestrator has not seen it end yet: it counts all the same
        saved_copy = saved.copy()
    args = [name, str(exit_code), *([message] if message else [])]
    run.append_event(
        TASK_FAILED, args=args, name=name, task_id=tid, exit_code=exit_code, error=error[:2000], source=SOURCE
    )
    if recorded:
        write_ended_result(run, plan, tid, saved_copy, status=FAILED, error=error, exit_code=exit_code)
    return {
        "task_id": tid,
        "status": saved_copy["status"],
        "exit_code": exit_code,
        "error": error,
        "recorded_in_state": recorded,
        "skipped_as_a_result": [{"task_id": t, "reason": r} for t, r in skipped],
        "failed_tasks": failed,
    }


def handle_task_failure(
    store: StateStore,
    run: Run,
    name: str,
    exit_code: int,
    message: str | None,
    *,
    execute: bool = True,
    quiet: bool = False,
) -> tuple[int, FailureDecision]:
    """Record the failure, then retry within the tolerance or abort beyond it."""
    tolerance = int(run_config(run)["failure_tolerance"])
    failure = record_failure(run, name, exit_code, message)
    count = len(failure["failed_tasks"])
    out: FailureDecision = {
        "run_id": run.run_id,
        "failure": failure,
        "failed_count": count,
        "failure_tolerance": tolerance,
    }
    if count <= tolerance:
        out["decision"] = "retry"
        out["why"] = f"{count} failed task(s), {tolerance} tolerated: retry {failure['task_id']} with reduced scope"
        if failure["status"] not in TERMINAL:
            # the orchestrator executing the run has not seen it end: it will retry it itself
            out["retry"] = {"skipped": f"{failure['task_id']} is {failure['status']} in the orchestrator's view"}
            return OK, out
        code, out["retry"] = retry_reduced(
            store, run, failure["task_id"], failure["error"], execute=execute, quiet=quiet
        )
        return code, out
    out["decision"] = "abort"
    reason = f"failure tolerance exceeded: {count} tasks failed, {tolerance} tolerated"
    out["why"] = reason
    _, out["abort"] = abort_with_partial_results(run, reason)
    return ABORTED, out
