"""A run machine loaded from a run's saved state.json, for what changes a run nobody executes: the
levers (a lever on a prepared or interrupted run) and a failure reported by parallel-error-handler.
The same rules as a live run decide what follows (what a cancel skips, what a retry reopens);
only the fields they change are written back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.attempt_report import Tokens
from awoc_scripts.execution.machine.events import Effect, Event
from awoc_scripts.execution.machine.machine import RunMachine
from awoc_scripts.execution.machine.settings import MachineSettings
from awoc_scripts.execution.task_record import TaskRecord
from awoc_scripts.run_documents import NO_TOKENS, RunState, TaskState, counted_tokens
from awoc_scripts.state.statuses import RUNNING

if TYPE_CHECKING:
    from awoc_scripts.plan_types import JsonObject, Plan

WRITTEN_BACK = ("status", "token_budget", "reason", "error", "previous_error", "exit_code", "finished_at")


def saved_machine(run_id: str, plan: Plan, state: RunState) -> RunMachine:
    records = {tid: saved_record(state["tasks"][tid]) for tid in (t["task_id"] for t in plan["tasks"])}
    status = {tid: str(state["tasks"][tid]["status"]) for tid in records}
    machine = RunMachine(
        run_id,
        plan["tasks"],
        records,
        status,
        MachineSettings.of(plan["parallel_config"]),
        executing=False,
        max_concurrent=int(state.get("max_concurrent") or plan["parallel_config"]["max_concurrent"]),
    )
    machine.saved_run_status = state.get("status")
    for tid, saved in machine.saved_status.items():
        if saved == RUNNING:  # as saved: a lever leaves what was running alone (the scheduler would rerun it)
            machine.scheduler.status[tid] = RUNNING
    return machine


def saved_record(saved: TaskState) -> TaskRecord:
    used = saved.get("tokens_used") or NO_TOKENS
    return TaskRecord(
        int(saved["token_budget"]),
        attempts=int(saved.get("attempts") or 0),
        started_at=saved.get("started_at"),
        finished_at=saved.get("finished_at"),
        exit_code=saved.get("exit_code"),
        error=saved.get("error"),
        reason=saved.get("reason"),
        previous_error=saved.get("previous_error"),
        tokens=Tokens(
            int(used.get("input", 0)),
            int(used.get("output", 0)),
            int(used.get("cache_read", 0)),
            int(used.get("cache_creation", 0)),
        ),
        counted=counted_tokens(saved),
        cost_usd=float(saved.get("cost_usd") or 0),
        cost_budget=saved.get("cost_budget_usd"),
    )


def apply_to_saved(run_id: str, plan: Plan, state: RunState, event: Event) -> tuple[RunMachine, list[Effect]]:
    """EVENT on the saved state: STATE's tasks (and max_concurrent) are changed in place."""
    machine = saved_machine(run_id, plan, state)
    before = machine.ledger.snapshot()
    effects = machine.handle(event)
    after = machine.ledger.snapshot()
    for tid, now in after.items():
        changed = {k: now[k] for k in WRITTEN_BACK if now.get(k) != before[tid].get(k)}  # type: ignore[literal-required]
        saved: JsonObject = state["tasks"][tid]  # type: ignore[assignment]  # the fields named in WRITTEN_BACK
        saved.update(changed)
    state["max_concurrent"] = machine.max_concurrent
    return machine, effects
