"""Levers on a run from other processes ("controls" in state.json).

A lever called while an orchestrator runs the run appends a control, which the orchestrator
applies between two starts and acknowledges, so the lever can print what really changed; with
no orchestrator alive, the lever is applied straight to the saved state.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from awoc_scripts.errors import AwocError, StateError
from awoc_scripts.execution.machine.events import LeverAnswered, LeverPulled, Moment
from awoc_scripts.execution.machine.levers import ABORT, RETRY
from awoc_scripts.state.owner import initial_state, run_executing
from awoc_scripts.state.reconcile import reconcile, require_open
from awoc_scripts.state.store import Run, now_iso

if TYPE_CHECKING:
    from awoc_scripts.plan_types import JsonObject, Plan
    from awoc_scripts.run_documents import LeverRequest, RunState

CONTROL_WAIT_S = 10.0


def request_lever(run: Run, action: str, args: JsonObject) -> LeverRequest:
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
        control: LeverRequest = {"id": os.urandom(4).hex(), "action": action, "args": args, "requested_at": now_iso()}
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
                    saved["applied_at"], saved["applied_by"] = now_iso(), "nobody"
                    saved["changed"] = {"withdrawn": True}
                elif saved["id"] == control["id"]:
                    return saved.copy()  # applied at the last moment


def _apply_to_saved_state(run: Run, action: str, args: JsonObject) -> LeverRequest | None:
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
            control: LeverRequest = {"id": os.urandom(4).hex(), "action": action, "args": args}
            control["requested_at"] = now_iso()
            _apply(run.run_id, run.read_plan(), state, control, f"{action} (pid {os.getpid()})", "saved state")
            state.setdefault("controls", []).append(control)
            run.append_event("lever", action=action, args=args, changed=control["changed"])
            return control.copy()
    finally:
        claim.release()


def _wait_for_control(run: Run, control_id: str, action: str) -> LeverRequest | None:
    """The control once applied; None if the orchestrator went away without applying it."""
    deadline = time.monotonic() + CONTROL_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
        state = run.read_state()
        for saved in state.get("controls", []):
            if saved["id"] == control_id and saved.get("applied_at"):
                return saved.copy()
        if not run_executing(run, state):
            return None
    raise AwocError(
        f"asked the orchestrator of run {run.run_id} to apply {action}, but it did not confirm within "
        f"{CONTROL_WAIT_S:.0f} s; it will apply it when it next checks"
    )


def apply_pending_controls(plan: Plan, state: RunState, applied_by: str) -> list[LeverRequest]:
    """Apply and acknowledge every control of a saved STATE not applied yet (what an orchestrator
    does between two starts, here without one)."""
    done = []
    for control in state.get("controls", []):
        if not control.get("applied_at"):
            _apply(str(state.get("run_id") or ""), plan, state, control, applied_by, "saved state")
            done.append(control)
    return done


def _apply(run_id: str, plan: Plan, state: RunState, control: LeverRequest, by: str, to: str) -> None:
    # the whole run machine (about 13 ms to import): a lever that an orchestrator applies never needs it here
    from awoc_scripts.execution.machine.saved import apply_to_saved

    lever = LeverPulled(control["action"], control["args"], request_id=control["id"], at=Moment(0.0, time.time()))
    machine, effects = apply_to_saved(run_id, plan, state, lever)
    control["changed"] = next(e.changed for e in effects if isinstance(e, LeverAnswered))
    if control["action"] == ABORT and control["changed"].get("aborted"):
        state["status"], state["stop_reason"], state["orchestrator"] = "aborted", machine.stop_reason, None
    control["applied_at"] = now_iso()
    control["applied_by"] = by
    control["applied_to"] = to
