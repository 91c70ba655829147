"""How a run's end is told: its status and exit code from the tasks' states."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import ABORTED, INTERRUPTED, OK, TASKS_FAILED
from awoc_scripts.state.statuses import FAILURES, SUCCEEDED

if TYPE_CHECKING:
    from collections.abc import Iterable


def final_status(exit_code: int, statuses: Iterable[str]) -> tuple[str, int]:
    """Only a run in which every task succeeded is "succeeded" (exit 0)."""
    statuses = list(statuses)
    if exit_code == OK and any(s != SUCCEEDED for s in statuses):
        exit_code = TASKS_FAILED
    if exit_code == TASKS_FAILED:
        return ("finished_with_failures" if any(s in FAILURES for s in statuses) else "incomplete"), exit_code
    return {OK: "succeeded", ABORTED: "aborted", INTERRUPTED: "interrupted"}.get(exit_code, "failed"), exit_code
