"""Levers on a run from other processes ("controls" in state.json).

A lever called while an orchestrator runs the run appends a control, which the orchestrator
applies between two starts and acknowledges, so the lever can print what really changed; with
no orchestrator alive, the lever is applied straight to the saved state.
"""

from __future__ import annotations

import os
import time
from typing import Any

from awoc_scripts.errors import AwocError, StateError
from awoc_scripts.execution.levers import ABORT, RETRY, LeverTarget, apply_lever
from awoc_scripts.plan_types import Plan
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.state.reconcile import reconcile, require_open
from awoc_scripts.state.run_state import initial_state, run_executing
from awoc_scripts.state.store import Run, now_iso
from awoc_scripts.state.task_states import CANCELLED, PENDING, TERMINAL

CONTROL_WAIT_S = 10.0


class SavedStateTarget:
    """Levers applied straight to state.json (no orchestrator is running the run)."""

    def __init__(self, state: dict[str, Any], plan: Plan) -> None:
        self.state = state
        self.plan = plan
        self.priority = {t["task_id"]: t["priority"] for t in plan["tasks"]}

    def pending(self) -> list[str]:
        return [tid for tid, t in self.state["tasks"].items() if t["status"] == PENDING]

    def priority_of(self, task_id: str) -> str:
        return str(self.priority[task_id])

    def budget_of(self, task_id: str) -> int:
        return int(self.state["tasks"][task_id]["token_budget"])

    def set_budget(self, task_id: str, budget: int) -> None:
        self.state["tasks"][task_id]["token_budget"] = budget

    def _scheduler(self) -> tuple[Scheduler, dict[str, str]]:
        """The saved task states as a scheduler, to reuse its rules for what follows a change."""
        tasks = self.plan["tasks"]
        status = {tid: t["status"] for tid, t in self.state["tasks"].items()}
        return Scheduler(tasks, graph_metrics(tasks).remaining, status=dict(status)), status

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        scheduler, status = self._scheduler()
        skipped = scheduler.cancel(task_ids, reason)
        for tid, new in scheduler.status.items():
            if new != status[tid] and new in TERMINAL:
                self.state["tasks"][tid]["status"] = new
                self.state["tasks"][tid]["reason"] = scheduler.reason.get(tid, reason)
        return skipped

    def set_max_concurrent(self, value: int) -> int:
        previous = int(self.state["max_concurrent"])
        self.state["max_concurrent"] = value
        return previous

    def status_of(self, task_id: str) -> str:
        return str(self.state["tasks"][task_id]["status"])

    def error_of(self, task_id: str) -> str | None:
        error = self.state["tasks"][task_id].get("error")
        return str(error) if error else None

    def requeue_ended(self, task_id: str, previous_error: str) -> list[str]:
        scheduler, _ = self._scheduler()
        reopened = scheduler.reopen(task_id)
        for tid in (task_id, *reopened):
            saved = self.state["tasks"][tid]
            saved.update(status=PENDING, reason=None, error=None)
        self.state["tasks"][task_id]["previous_error"] = previous_error
        return reopened

    def abort_run(self, reason: str) -> dict[str, Any]:
        """Nothing executes the run: every task not ended is cancelled."""
        open_tasks = [tid for tid, t in self.state["tasks"].items() if t["status"] not in TERMINAL]
        if not open_tasks:
            return {"aborted": False, "why": f"every task had ended (run {self.state.get('status')})", "cancelled": []}
        was_running = [tid for tid in open_tasks if self.state["tasks"][tid]["status"] != PENDING]
        for tid in open_tasks:
            self.state["tasks"][tid].update(status=CANCELLED, reason=reason)
        self.state.update(status="aborted", stop_reason=reason, orchestrator=None)
        return {"aborted": True, "reason": reason, "cancelled": open_tasks, "were_running": was_running}


def request_lever(run: Run, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """Apply a lever to a run: through its orchestrator if one executes it right now, else to the
    saved state of a run not started yet (where it holds when it starts), or, for the aborter, of
    an interrupted run (which it ends). On an ended run, or another lever on an interrupted one,
    it is refused (reconcile.require_open).

    An orchestrator that ends without applying the request (it was already shutting down)
    leaves it to us: the request is withdrawn and the saved state decides.
    """
    while True:
        if not run_executing(run, run.read_state()):
            applied = _apply_to_saved_state(run, action, args)
            if applied is not None:
                return applied
            continue  # an orchestrator took the run meanwhile: ask it
        control = {"id": os.urandom(4).hex(), "action": action, "args": args, "requested_at": now_iso()}
        with run.locked_state() as state:
            if not run_executing(run, state):
                continue
            state.setdefault("controls", []).append(control)
        answer = _wait_for_control(run, str(control["id"]), action)
        if answer is not None:
            return answer
        with run.locked_state() as state:
            for saved in state.get("controls", []):
                if saved["id"] == control["id"] and not saved.get("applied_at"):
                    saved.update(applied_at=now_iso(), applied_by="nobody", changed={"withdrawn": True})
                elif saved["id"] == control["id"]:
                    return dict(saved)  # applied at the last moment


def _apply_to_saved_state(run: Run, action: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The lever on state.json, holding the run's claim; None if an orchestrator holds it now."""
    try:
        claim = run.claim("changed by a lever")
    except StateError:
        if run.claimed_for() == "executed":
            return None
        raise
    try:
        with run.locked_state() as state:
            if not state:
                state.update(initial_state(run))
            reconcile(run, state)
            if action != RETRY:  # a retry reopens ended tasks of an ended run: that is its job
                require_open(run, state, action, allow_interrupted=action == ABORT)
            control = {"id": os.urandom(4).hex(), "action": action, "args": args, "requested_at": now_iso()}
            control["changed"] = apply_lever(action, args, SavedStateTarget(state, run.read_plan()))
            control["applied_at"] = now_iso()
            control["applied_by"] = f"{action} (pid {os.getpid()})"
            control["applied_to"] = "saved state"
            state.setdefault("controls", []).append(control)
            run.append_event("lever", action=action, args=args, changed=control["changed"])
            return control
    finally:
        claim.release()


def _wait_for_control(run: Run, control_id: str, action: str) -> dict[str, Any] | None:
    """The control once applied; None if the orchestrator went away without applying it."""
    deadline = time.monotonic() + CONTROL_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
        state = run.read_state()
        for saved in state.get("controls", []):
            if saved["id"] == control_id and saved.get("applied_at"):
                return dict(saved)
        if not run_executing(run, state):
            return None
    raise AwocError(
        f"asked the orchestrator of run {run.run_id} to apply {action}, but it did not confirm within "
        f"{CONTROL_WAIT_S:.0f} s; it will apply it when it next checks"
    )


def apply_pending_controls(state: dict[str, Any], target: LeverTarget, applied_by: str) -> list[dict[str, Any]]:
    """For the orchestrator: apply and acknowledge every control it has not applied yet."""
    done = []
    for control in state.get("controls", []):
        if control.get("applied_at"):
            continue
        try:
            control["changed"] = apply_lever(control["action"], control["args"], target)
        except (AwocError, KeyError, TypeError, ValueError) as exc:  # a bad request must not stop the run
            control["changed"] = {"error": getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"}
        control["applied_at"] = now_iso()
        control["applied_by"] = applied_by
        control["applied_to"] = "running orchestrator"
        done.append(control)
    return done
