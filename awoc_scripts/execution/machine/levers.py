"""The emergency levers, one definition each.

A lever acts on a `LeverTarget`: the run machine, whether it executes the run (a LeverPulled
event) or was loaded from the run's saved state.json (machine/saved.py). Either way the effect is
the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from awoc_scripts.errors import InputError
from awoc_scripts.state.statuses import FAILURES, SUCCEEDED, TERMINAL

if TYPE_CHECKING:
    from awoc_scripts.plan_types import JsonObject
    from awoc_scripts.run_documents import BudgetChange, LeverAnswer, NotRetried, RetriedTask

REDUCE = "reduce-remaining-tasks"
SEQUENTIAL = "convert-remaining-tasks"
EMERGENCY = "emergency-prioritization"
ABORT = "abort"  # parallel-execution-aborter: stop the run, keep what finished
RETRY = "retry"  # parallel-task-retry: run ended tasks again with reduced scope
ACTIONS = (REDUCE, SEQUENTIAL, EMERGENCY, ABORT, RETRY)
KEPT_IN_EMERGENCY = ("critical", "high")
RETRY_BUDGET_PERCENT = 80


class LeverTarget(Protocol):
    def pending(self) -> list[str]: ...
    def priority_of(self, task_id: str) -> str: ...
    def budget_of(self, task_id: str) -> int: ...
    def set_budget(self, task_id: str, budget: int) -> None: ...
    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        """Cancel those still pending; returns the dependents skipped because of it."""

    def set_max_concurrent(self, value: int) -> int: ...  # returns the previous value
    def status_of(self, task_id: str) -> str: ...
    def error_of(self, task_id: str) -> str | None: ...
    def requeue_ended(self, task_id: str, previous_error: str) -> list[str]:
        """An ended task waits to run again (ValueError if it cannot); returns the skipped
        dependents that wait again with it."""

    def abort_run(self, reason: str) -> LeverAnswer: ...


def parse_percent(text: str) -> int:
    raw = text.strip().removesuffix("%")
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"PERCENT: expected a whole number like 20 or 20%, got {text!r}") from None
    if not 1 <= value <= 99:
        raise InputError(f"PERCENT: expected 1 to 99, got {value}")
    return value


def apply_lever(action: str, args: JsonObject, target: LeverTarget) -> LeverAnswer:
    """Apply one lever; returns what it changed, for printing and for the run's events."""
    if action == REDUCE:
        percent = int(args["percent"])
        changed: list[BudgetChange] = []
        for tid in target.pending():
            before = target.budget_of(tid)
            after = max(1, before * (100 - percent) // 100)
            target.set_budget(tid, after)
            changed.append({"task_id": tid, "token_budget_before": before, "token_budget": after})
        return {"reduced_by_percent": percent, "tasks": changed}
    if action == SEQUENTIAL:
        previous = target.set_max_concurrent(1)
        return {"max_concurrent_before": previous, "max_concurrent": 1, "remaining_tasks": target.pending()}
    if action == EMERGENCY:
        doomed = [tid for tid in target.pending() if target.priority_of(tid) not in KEPT_IN_EMERGENCY]
        skipped = target.cancel(doomed, "cancelled by emergency prioritization")
        skipped_ids = {tid for tid, _ in skipped}
        return {
            "cancelled": [tid for tid in doomed if tid not in skipped_ids],
            "skipped_as_a_result": [{"task_id": t, "reason": r} for t, r in skipped],
            "kept": target.pending(),
        }
    if action == ABORT:
        return target.abort_run(str(args.get("reason") or "aborted"))
    if action == RETRY:
        return retry_tasks(target, list(args["task_ids"]), args.get("message"), bool(args.get("only_failures")))
    raise InputError(f"unknown lever {action!r}")


def retry_tasks(target: LeverTarget, task_ids: list[str], message: str | None, only_failures: bool) -> LeverAnswer:
    """Each task that ended without success runs again with 80% of its budget, told the previous error."""
    allowed = FAILURES if only_failures else TERMINAL - {SUCCEEDED}
    requeued: list[RetriedTask] = []
    reopened: list[str] = []
    not_retried: list[NotRetried] = []
    for tid in task_ids:
        status = target.status_of(tid)
        if status not in allowed:
            why = "it succeeded" if status == SUCCEEDED else f"it is {status}, not ended with a failure"
            not_retried.append({"task_id": tid, "status": status, "why": why})
            continue
        previous = message or target.error_of(tid) or f"the task ended {status}"
        try:
            again = target.requeue_ended(tid, previous)
        except ValueError as exc:
            not_retried.append({"task_id": tid, "status": status, "why": str(exc)})
            continue
        before = target.budget_of(tid)
        after = max(1, before * RETRY_BUDGET_PERCENT // 100)
        target.set_budget(tid, after)
        requeued.append(
            {
                "task_id": tid,
                "status_before": status,
                "token_budget_before": before,
                "token_budget": after,
                "previous_error": previous,
            }
        )
        reopened += again
    return {"requeued": requeued, "reopened_dependents": reopened, "not_retried": not_retried}
