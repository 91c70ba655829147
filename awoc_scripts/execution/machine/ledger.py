"""Every task's state while a run executes: its status and budget (the scheduler), what it did
(its record), and its end, told once as a TaskEnded effect. Pure: no clock, no file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.attempt_report import Tokens
from awoc_scripts.execution.machine.events import Effect, Moment, Record, TaskEnded
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.run_documents import TaskResult, TaskState, task_result
from awoc_scripts.state.statuses import CANCELLED, FAILURES, PENDING, RUNNING, SKIPPED, SUCCEEDED, TERMINAL
from awoc_scripts.state.store import iso_of

if TYPE_CHECKING:
    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.plan_types import Task


class TaskLedger:
    def __init__(
        self, run_id: str, tasks: list[Task], records: dict[str, TaskRecord], status: dict[str, str], out: list[Effect]
    ) -> None:
        self.run_id = run_id
        self.tasks = tasks
        self.by_id = {t["task_id"]: t for t in tasks}
        self.records = records
        self.out = out  # where effects go, drained by RunMachine.handle
        self.scheduler = Scheduler(
            tasks, graph_metrics(tasks).remaining, status=status, budget={tid: r.budget for tid, r in records.items()}
        )
        self.status = self.scheduler.status
        self.spent = sum(r.counted for r in records.values())  # a sum kept: summing at each end is quadratic
        self.cost_spent = sum(r.cost_usd for r in records.values())
        self.failed_count = 0
        self.finished: set[str] = {tid for tid, s in status.items() if s in TERMINAL}
        self.dirty = True  # something state.json shows changed since it was written
        self.at = Moment(0.0, 0.0)  # the moment of the event being handled

    # -- what levers and policies read and change --------------------------------------------

    def pending(self) -> list[str]:
        return self.scheduler.ids_with(PENDING)

    def priority_of(self, task_id: str) -> str:
        return str(self.by_id[task_id]["priority"])

    def budget_of(self, task_id: str) -> int:
        return self.scheduler.budget[task_id]

    def set_budget(self, task_id: str, budget: int) -> None:
        self.scheduler.set_budget(task_id, budget)
        self.records[task_id].budget = budget

    def status_of(self, task_id: str) -> str:
        return self.status[task_id]

    def error_of(self, task_id: str) -> str | None:
        return self.records[task_id].error

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        skipped = self.scheduler.cancel(task_ids, reason)
        for tid in task_ids:
            if self.status[tid] == CANCELLED:
                self.finalize(tid, CANCELLED, reason=reason)
        self.finalize_skipped(skipped)
        return skipped

    def reopen(self, task_id: str, previous_error: str) -> list[str]:
        """An ended task (and what was skipped for it) waits to run again."""
        was_failure = self.status[task_id] in FAILURES
        reopened = self.scheduler.reopen(task_id)  # ValueError if it cannot run again
        if was_failure:
            self.failed_count = max(0, self.failed_count - 1)
        for tid in (task_id, *reopened):
            self.finished.discard(tid)
            self.records[tid].reason = None
            self.records[tid].error = None
        self.records[task_id].previous_error = previous_error
        return reopened

    # -- endings ---------------------------------------------------------------------------

    def finish(self, tid: str, status: str) -> None:
        """The task's last attempt ended with STATUS: what depended on it may be skipped now."""
        skipped = self.scheduler.finish(tid, status)
        self.finalize(tid, status)
        self.finalize_skipped(skipped)
        if status in FAILURES:
            self.failed_count += 1

    def skip(self, tid: str, reason: str) -> None:
        """A task that cannot start ends skipped, and so does what depends on it."""
        self.scheduler.reason[tid] = reason
        skipped = self.scheduler.finish(tid, SKIPPED)
        self.finalize(tid, SKIPPED, reason=reason)
        self.finalize_skipped(skipped)

    def finalize_skipped(self, skipped: list[tuple[str, str]]) -> None:
        for tid, reason in skipped:
            self.finalize(tid, SKIPPED, reason=reason)

    def finalize(self, tid: str, status: str, reason: str | None = None) -> None:
        """A task reached its final state: its result is written and the world told, once."""
        if tid in self.finished:
            return
        self.finished.add(tid)
        rec = self.records[tid]
        rec.reason = reason or rec.reason
        started = rec.started_at is not None
        rec.finished_at = iso_of(self.at.wall) if started else None
        # a task that never started produced nothing to write (an abort may end 100,000 such tasks
        # at once): the loop asks for its result (result_of) only if it needs one
        result = self.result_of(tid, status) if started else None
        stored = rec.cache_key if status == SUCCEEDED and not rec.cached_from else None
        self.out.append(TaskEnded(tid, status, result, started=started, cache_key=stored))
        fields = {
            "task_id": tid,
            "agent": self.by_id[tid]["agent"],
            "status": status,
            "tokens": rec.tokens.total,
            "duration_s": result["duration_s"] if result else 0.0,
            "reason": rec.reason,
            "error": rec.error if status != SUCCEEDED else None,
        }
        self.out.append(Record("task-end", fields))

    def result_of(self, tid: str, status: str) -> TaskResult:
        rec, task = self.records[tid], self.by_id[tid]
        duration = round(self.at.now - rec.first_start_mono, 3) if rec.first_start_mono else 0.0
        result = task_result(
            self.run_id,
            task,
            status,
            result=rec.result,
            exit_code=rec.exit_code,
            attempts=rec.attempts,
            tokens=rec.tokens.as_dict(),
            token_budget=rec.budget,
            tokens_counted=rec.counted,
            cost_usd=rec.cost_usd,
            cost_budget_usd=rec.cost_budget,
            started_at=rec.started_at,
            finished_at=rec.finished_at,
            duration_s=duration,
            error=rec.error if status != SUCCEEDED else None,
            reason=rec.reason,
            warnings=rec.warnings,
            denials=rec.denials,
            verify=rec.verify,
        )
        if rec.cached_from:
            result["cached"], result["cached_from"], result["saved"] = True, rec.cached_from, rec.saved
        return result

    def close_unfinished(self, reason: str | None) -> None:
        """At the end: tasks still marked running (stopped and reaped, or waiting to retry) end."""
        for tid in self.scheduler.ids_with(RUNNING):
            status = self.records[tid].stop_status or CANCELLED
            skipped = self.scheduler.finish(tid, status if status in TERMINAL else CANCELLED)
            self.finalize(tid, self.status[tid], reason=reason)
            self.finalize_skipped(skipped)

    # -- what state.json and the summary show ---------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.status.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def snapshot(self) -> dict[str, TaskState]:
        """The tasks part of state.json."""
        reasons = self.scheduler.reason
        return {
            tid: self._never_started(tid, rec, reasons.get(tid) or rec.reason)
            if rec.started_at is None and rec.attempts == 0 and rec.error is None and rec.previous_error is None
            else self._task_state(tid, rec, reasons.get(tid) or rec.reason)
            for tid, rec in self.records.items()
        }

    def _never_started(self, tid: str, rec: TaskRecord, reason: str | None) -> TaskState:
        """What a task that never started shows: most of it the same for all (a copy costs a fifth)."""
        state = _NEVER_STARTED.copy()
        state["status"], state["token_budget"], state["reason"] = self.status[tid], self.scheduler.budget[tid], reason
        state["tokens_used"], state["cost_budget_usd"] = _NO_TOKENS.copy(), rec.cost_budget
        return state

    def _task_state(self, tid: str, rec: TaskRecord, reason: str | None) -> TaskState:
        return {
            "status": self.status[tid],
            "token_budget": self.scheduler.budget[tid],
            "attempts": rec.attempts,
            "pid": rec.pid,
            "pid_create_time": rec.pid_create_time,
            "pid_start_ticks": rec.pid_start_ticks,
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "exit_code": rec.exit_code,
            "error": rec.error,
            "reason": reason,
            "tokens_used": rec.tokens.as_dict(),
            "tokens_counted": rec.counted,
            "cost_usd": round(rec.cost_usd, 9),
            "cost_budget_usd": rec.cost_budget,
            "previous_error": rec.previous_error,
        }


_NO_TOKENS = Tokens().as_dict()
_NEVER_STARTED: TaskState = {
    "status": PENDING,
    "token_budget": 0,
    "attempts": 0,
    "pid": None,
    "pid_create_time": None,
    "pid_start_ticks": None,
    "started_at": None,
    "finished_at": None,
    "exit_code": None,
    "error": None,
    "reason": None,
    "tokens_used": _NO_TOKENS,
    "cost_usd": 0.0,
    "cost_budget_usd": None,
    "previous_error": None,
}
