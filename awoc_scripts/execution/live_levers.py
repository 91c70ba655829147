"""Levers on a run being executed (LeverTarget): task-level ones act on its TaskBook, run-level
ones (concurrency, retry while running, abort) on the run loop."""

from __future__ import annotations

from typing import Any, Protocol

from awoc_scripts.execution.task_book import TaskBook


class RunLoop(Protocol):
    max_concurrent: int
    stop_reason: str | None
    no_new_starts: bool

    def running(self) -> list[str]: ...
    def abort(self, reason: str, running_status: str) -> None: ...


class LiveLevers:
    def __init__(self, book: TaskBook, loop: RunLoop, cancelled_status: str) -> None:
        self.book = book
        self.loop = loop
        self.cancelled_status = cancelled_status

    def pending(self) -> list[str]:
        return self.book.pending()

    def priority_of(self, task_id: str) -> str:
        return self.book.priority_of(task_id)

    def budget_of(self, task_id: str) -> int:
        return self.book.budget_of(task_id)

    def set_budget(self, task_id: str, budget: int) -> None:
        self.book.set_budget(task_id, budget)

    def status_of(self, task_id: str) -> str:
        return self.book.status_of(task_id)

    def error_of(self, task_id: str) -> str | None:
        return self.book.error_of(task_id)

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        return self.book.cancel(task_ids, reason)

    def set_max_concurrent(self, value: int) -> int:
        previous, self.loop.max_concurrent = self.loop.max_concurrent, value
        return previous

    def requeue_ended(self, task_id: str, previous_error: str) -> list[str]:
        """parallel-task-retry while we run: the task (and what was skipped for it) runs again."""
        if self.loop.stop_reason is not None or self.loop.no_new_starts:
            raise ValueError(f"the run is stopping: {self.loop.stop_reason or 'no new task may start'}")
        return self.book.reopen(task_id, previous_error)

    def abort_run(self, reason: str) -> dict[str, Any]:
        """parallel-execution-aborter while we run."""
        if self.loop.stop_reason is not None:
            return {"aborted": False, "why": f"already stopping: {self.loop.stop_reason}", "cancelled": []}
        running, pending = self.loop.running(), self.book.pending()
        self.loop.abort(reason, self.cancelled_status)
        return {"aborted": True, "reason": reason, "cancelled": pending, "were_running": running}
