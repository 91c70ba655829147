"""One truth about a task's end, for a run that no orchestrator executes.

A task's result file is written the moment it ends and its task-end event follows; state.json
catches up at the orchestrator's next flush. An orchestrator killed in between leaves state.json
saying "running" or "pending" for a task that ended. Before anything reads or changes such a run
(levers, the aborter, status, wait, report, merge, resume), the ends are taken from the result
files and events, and a task that ended stays ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import StateError
from awoc_scripts.launcher import command_for
from awoc_scripts.state.statuses import PENDING, RUNNING, SUCCEEDED, TERMINAL
from awoc_scripts.state.store import Run, read_json

if TYPE_CHECKING:
    from awoc_scripts.run_documents import RunState

# what a run's saved status says once its orchestrator finished it
ENDED = frozenset({"succeeded", "finished_with_failures", "incomplete", "aborted", "failed"})
NOT_ENDED = frozenset({"running", "paused"})  # written while executing: with no owner, it was stopped
INTERRUPTED = "interrupted"
GONE = "its orchestrator stopped without ending the run (killed, crashed, or its machine stopped)"


def task_ends(run: Run, state: RunState) -> dict[str, str]:
    """Tasks that state.json calls running or pending but that ended: task id -> how.

    The last execution's task-end events say how; a result file of this run that says succeeded
    says so too (it is written before the event)."""
    open_ids = {tid for tid, task in state.get("tasks", {}).items() if task.get("status") in (RUNNING, PENDING)}
    if not open_ids:
        return {}
    ends: dict[str, str] = {}
    for event in run.read_events(only=("run-start", "task-end")):
        if event["event"] == "run-start":
            ends.clear()  # a resume set what had not succeeded going again
        elif event.get("task_id") in open_ids and event.get("status") in TERMINAL:
            ends[str(event["task_id"])] = str(event["status"])
    for tid in open_ids - ends.keys():
        path = run.task_files(tid).result
        if path.exists():
            result = read_json(path, default={})
            if isinstance(result, dict) and result.get("status") == SUCCEEDED and result.get("run_id") == run.run_id:
                ends[tid] = SUCCEEDED
    return ends


def reconcile(run: Run, state: RunState) -> dict[str, str]:
    """STATE (of a run no orchestrator executes) with every task's end written in; returns the ends."""
    ends = task_ends(run, state)
    for tid, status in ends.items():
        state["tasks"][tid]["status"] = status
        state["tasks"][tid]["reason"] = state["tasks"][tid].get("reason") or "ended before its orchestrator stopped"
    if state.get("status") in NOT_ENDED:
        state["status"] = INTERRUPTED
        state["stop_reason"] = state.get("stop_reason") or GONE
        state["orchestrator"] = None
    return ends


def reconcile_saved_run(run: Run, holding_claim: bool = False) -> None:
    """Write the ends into state.json, holding the run's claim (HOLDING_CLAIM: the caller does); a
    run someone else owns is left to them."""
    if not holding_claim:
        try:
            claim = run.claim("reconciled")
        except StateError:
            return
    try:
        if run.state_file.exists():
            with run.locked_state() as state:
                reconcile(run, state)
    finally:
        if not holding_claim:
            claim.release()


def require_open(run: Run, state: RunState, action: str, allow_interrupted: bool = False) -> None:
    """A lever acts on a run being executed, or one not started yet (where it holds when it starts).
    On an ended run it is refused; on an interrupted one too (resume would not keep it), unless
    ALLOW_INTERRUPTED (the aborter, which ends the run)."""
    status = state.get("status")
    if status in ENDED:
        raise StateError(
            f"run {run.run_id} has ended ({status}): {action} acts on a run that is being executed or has not "
            "started; to change what a run does, start a new run"
        )
    if status == INTERRUPTED and not allow_interrupted:
        resume = command_for("delegate-parallel", "resume", run.run_id)
        raise StateError(
            f"run {run.run_id} is interrupted ({state.get('stop_reason') or GONE}): {action} would not hold when it "
            f"is resumed. Run `{resume}`, then use {action} while it executes"
        )
