"""parallel-execution-aborter: stop a run and say what it achieved.

If an orchestrator executes the run, it is asked to abort (it stops its tasks, cancels the
rest and writes their results) and we wait for it to finish. Otherwise the saved state is
aborted here: every task that had not ended is cancelled and leftover task processes killed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import ABORTED, OK
from awoc_scripts.execution.machine.levers import ABORT
from awoc_scripts.levers.requests import request_lever
from awoc_scripts.processes import kill_marked
from awoc_scripts.results.aggregate import retry_command
from awoc_scripts.state.owner import initial_state, run_executing
from awoc_scripts.state.statuses import CANCELLED, FAILURES, PENDING, RUNNING, SUCCEEDED
from awoc_scripts.state.task_results import excerpt, read_result, write_ended_result

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.levers.outcomes import AbortOutcome, PartialEntry, PartialResults
    from awoc_scripts.state.store import Run

ABORT_REASON = "aborted by parallel-execution-aborter"
FINISH_WAIT_S = 15.0


def _why(status: str, saved: Mapping[str, Any], result: Mapping[str, Any], executing: bool) -> str:
    text = saved.get("reason") or saved.get("error") or result.get("error") or result.get("reason")
    if text:
        return str(text)
    if status == PENDING:
        return "not started yet" if executing else "not started"
    if status == RUNNING:
        return "still running" if executing else "was running when its orchestrator stopped"
    return status


def partial_results(run: Run) -> PartialResults:
    """Which tasks succeeded (with an excerpt of each result), which did not and why."""
    plan = run.read_plan()
    state = run.read_state() or initial_state(run)
    executing = run_executing(run, state)
    succeeded, not_succeeded = [], []
    counts: dict[str, int] = {}
    tokens = 0
    for task in plan["tasks"]:
        tid = task["task_id"]
        saved: Mapping[str, Any] = state["tasks"].get(tid, {})
        status = str(saved.get("status", PENDING))
        counts[status] = counts.get(status, 0) + 1
        result: Mapping[str, Any] = read_result(run, tid) or {}
        used = int((saved.get("tokens_used") or result.get("tokens_used") or {}).get("total") or 0)
        tokens += used
        entry: PartialEntry = {"task_id": tid, "agent": task["agent"], "task": task["description"]}
        if status == SUCCEEDED:
            text = str(result.get("result") or "")
            entry["result_excerpt"], entry["result_chars"] = excerpt(text), len(text)
            entry["result_file"], entry["tokens_used"] = str(run.task_files(tid).result), used
            succeeded.append(entry)
            continue
        entry["status"], entry["why"] = status, _why(status, saved, result, executing)
        if saved.get("exit_code") is not None or result.get("exit_code") is not None:
            entry["exit_code"] = saved.get("exit_code", result.get("exit_code"))
        if status in FAILURES or status == CANCELLED or status == "skipped":
            entry["retry"] = retry_command(run.run_id, tid)
        not_succeeded.append(entry)
    return {
        "run_id": run.run_id,
        "status": state.get("status"),
        "executing": executing,
        "stop_reason": state.get("stop_reason"),
        "total_tasks": len(plan["tasks"]),
        "completed_successfully": len(succeeded),
        "counts": counts,
        "tokens_used": tokens,
        "succeeded": succeeded,
        "not_succeeded": not_succeeded,
    }


def _wait_until_finished(run: Run, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not run_executing(run, run.read_state()):
            return True
        time.sleep(0.05)
    return False


def abort_with_partial_results(
    run: Run, reason: str = ABORT_REASON, finish_wait_s: float = FINISH_WAIT_S
) -> tuple[int, AbortOutcome]:
    """Abort the run, wherever it executes; returns (3 if it was aborted now, else 0; partial results)."""
    control = request_lever(run, ABORT, {"reason": reason})
    changed = control["changed"]
    out: AbortOutcome = {
        "aborted": bool(changed.get("aborted")),
        "reason": reason,
        "applied_by": control["applied_by"],
        "cancelled": changed.get("cancelled", []),
    }
    if not changed.get("aborted"):
        out["why_not"] = changed.get("why") or changed.get("error")
    if control.get("applied_to") == "running orchestrator":
        out["stopping"] = changed.get("were_running", [])
        out["orchestrator_finished"] = _wait_until_finished(run, finish_wait_s)
    elif changed.get("aborted"):
        killed = kill_marked(run.run_id)
        out["killed_pids"] = killed
        plan = run.read_plan()
        saved = run.read_state()["tasks"]
        for tid in changed["cancelled"]:
            write_ended_result(run, plan, tid, saved[tid], status=CANCELLED, reason=reason)
        run.append_event("run-abort", reason=reason, cancelled=changed["cancelled"], killed_pids=killed)
    out["partial_results"] = partial_results(run)
    return (ABORTED if out["aborted"] else OK), out
