"""A run's live state (state.json): task states, budgets, and the lever requests ("controls").

The orchestrator keeps the live copy in memory and writes it back under the lock; a lever
called from another process while it runs appends a control, which the orchestrator applies
between two starts and acknowledges, so the lever can print what really changed.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.errors import AwocError
from awoc_scripts.levers import LeverTarget, apply_lever
from awoc_scripts.scheduling import PENDING, TERMINAL, Scheduler, graph_metrics
from awoc_scripts.state import Run, now_iso, read_json

CONTROL_WAIT_S = 10.0


def initial_state(run: Run) -> dict[str, Any]:
    """state.json before anything ran, from execution.json if planned, else from plan.json."""
    source = read_json(run.execution_file, default={}) or run.read_plan()
    config = source["parallel_config"]
    return {
        "schema": PLAN_SCHEMA,
        "kind": "state",
        "run_id": run.run_id,
        "status": "planned",
        "orchestrator": None,
        "max_concurrent": int(config["max_concurrent"]),
        "tasks": {
            t["task_id"]: {"status": PENDING, "token_budget": t["token_budget"], "attempts": 0} for t in source["tasks"]
        },
        "controls": [],
        "revision": 0,
    }


def orchestrator_alive(state: dict[str, Any]) -> bool:
    info = state.get("orchestrator")
    if not info:
        return False
    from awoc_scripts.processes import same_process_alive

    return same_process_alive(int(info["pid"]), float(info["create_time"]))


class SavedStateTarget:
    """Levers applied straight to state.json (no orchestrator is running the run)."""

    def __init__(self, state: dict[str, Any], plan: dict[str, Any]) -> None:
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

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        tasks = self.plan["tasks"]
        status = {tid: t["status"] for tid, t in self.state["tasks"].items()}
        scheduler = Scheduler(tasks, graph_metrics(tasks).remaining, status=dict(status))
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


def request_lever(run: Run, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """Apply a lever to a run, whether or not an orchestrator is running it right now."""
    control = {"id": secrets.token_hex(4), "action": action, "args": args, "requested_at": now_iso()}
    with run.locked_state() as state:
        if not state:
            state.update(initial_state(run))
        if not orchestrator_alive(state):
            control["changed"] = apply_lever(action, args, SavedStateTarget(state, run.read_plan()))
            control["applied_at"] = now_iso()
            control["applied_by"] = f"{action} (pid {os.getpid()})"
            state.setdefault("controls", []).append(control)
            run.append_event("lever", action=action, args=args, changed=control["changed"])
            return control
        state.setdefault("controls", []).append(control)
    deadline = time.monotonic() + CONTROL_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
        for saved in run.read_state().get("controls", []):
            if saved["id"] == control["id"] and saved.get("applied_at"):
                return dict(saved)
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
        control["changed"] = apply_lever(control["action"], control["args"], target)
        control["applied_at"] = now_iso()
        control["applied_by"] = applied_by
        done.append(control)
    return done
