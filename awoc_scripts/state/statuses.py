"""The states a task goes through, and those a run ends in with their exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import ABORTED, INTERNAL_ERROR, INTERRUPTED, OK, TASKS_FAILED

if TYPE_CHECKING:
    from collections.abc import Iterable

PENDING, RUNNING = "pending", "running"
SUCCEEDED, FAILED, TIMED_OUT, BUDGET_EXCEEDED = "succeeded", "failed", "timed_out", "budget_exceeded"
CANCELLED, SKIPPED = "cancelled", "skipped"
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, BUDGET_EXCEEDED, CANCELLED, SKIPPED})
FAILURES = frozenset({FAILED, TIMED_OUT, BUDGET_EXCEEDED})

# how a run ended, and the exit code that says so (run, start, resume and wait alike)
RUN_EXIT_CODES = {
    "succeeded": OK,
    "finished_with_failures": TASKS_FAILED,
    "incomplete": TASKS_FAILED,  # some task did not run, none failed
    "aborted": ABORTED,
    "interrupted": INTERRUPTED,
    "failed": INTERNAL_ERROR,  # the orchestrator itself failed
}
_STATUS_OF_EXIT = {code: status for status, code in RUN_EXIT_CODES.items() if code != TASKS_FAILED}


def final_status(exit_code: int, statuses: Iterable[str]) -> tuple[str, int]:
    """A run's status and exit code from how it stopped and its tasks' states: only a run in which
    every task succeeded is "succeeded" (exit 0)."""
    statuses = list(statuses)
    if exit_code == ABORTED and statuses and all(s == SUCCEEDED for s in statuses):
        return "succeeded", OK  # a stop that kept nothing from running (a budget spent by the last tasks)
    if exit_code == OK and any(s != SUCCEEDED for s in statuses):
        exit_code = TASKS_FAILED
    if exit_code == TASKS_FAILED:
        return ("finished_with_failures" if any(s in FAILURES for s in statuses) else "incomplete"), exit_code
    return _STATUS_OF_EXIT.get(exit_code, "failed"), exit_code
