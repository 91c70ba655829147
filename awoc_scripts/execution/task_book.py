"""The tasks of a run while it executes: their states (the scheduler), what each did (its record),
and the one place where a task's end is written down (its result file and the task-end event)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.execution.records import TaskRecord
from awoc_scripts.plan_types import Task
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.state.store import EventBuffer, Run, now_iso
from awoc_scripts.state.task_states import CANCELLED, FAILURES, PENDING, RUNNING, SKIPPED, SUCCEEDED, TERMINAL


class EndListener(Protocol):
    def task_ended(self, tid: str, status: str, rec: TaskRecord) -> None: ...


def no_extras(task: Task, status: str) -> dict[str, Any]:
    return {}


class TaskBook:
    def __init__(
        self,
        run: Run,
        tasks: list[Task],
        saved: dict[str, dict[str, Any]],
        events: EventBuffer,
        display: EndListener,
        extras: Callable[[Task, str], dict[str, Any]] = no_extras,
    ) -> None:
        self.run = run
        self.tasks = tasks
        self.by_id = {t["task_id"]: t for t in tasks}
        self.metrics = graph_metrics(tasks)
        self.records = {tid: TaskRecord(int(saved[tid]["token_budget"])) for tid in self.by_id}
        self.saved_status = {tid: str(saved[tid]["status"]) for tid in self.by_id}
        self.events = events
        self.display = display
        self.extras = extras  # what the task's isolation adds to the result of a task that started
        self.scheduler: Scheduler | None = None
        for tid, rec in self.records.items():
            rec.cost_budget = self.by_id[tid].get("cost_budget_usd")
            permissions = self.by_id[tid].get("permissions")
            rec.on_denied = permissions["on_denied"] if permissions else "fail"
        self.spent = 0  # tokens, kept as a sum: summing every record at each end is quadratic
        self.cost_spent = 0.0  # dollars, the same way
        self.results: dict[str, dict[str, Any]] = {}  # the result files written by this execution
        self.failed_count = 0
        self.finished: set[str] = {tid for tid, s in self.saved_status.items() if s in TERMINAL}
        self.dirty = True
        # the task folders earlier executions left, before this one makes any: a task that never
        # starts now has one only if it is there (an abort may end 100,000 such tasks at once)
        self.earlier_dirs = run.task_dirs()

    def start_scheduling(self, status: dict[str, str]) -> Scheduler:
        """With the statuses to start from (and, on resume, the records restored)."""
        self.spent = sum(r.tokens.total for r in self.records.values())
        self.cost_spent = sum(r.cost_usd for r in self.records.values())
        self.finished = {tid for tid, s in status.items() if s in TERMINAL}
        self.scheduler = Scheduler(
            self.tasks, self.metrics.remaining, status=status, budget={tid: r.budget for tid, r in self.records.items()}
        )
        return self.scheduler

    @property
    def sched(self) -> Scheduler:
        assert self.scheduler is not None, "start_scheduling first"
        return self.scheduler

    # -- what the levers read and change (LeverTarget, with the run-level parts in the orchestrator)

    def pending(self) -> list[str]:
        return self.sched.ids_with(PENDING)

    def priority_of(self, task_id: str) -> str:
        return str(self.by_id[task_id]["priority"])

    def budget_of(self, task_id: str) -> int:
        return self.sched.budget[task_id]

    def set_budget(self, task_id: str, budget: int) -> None:
        self.sched.set_budget(task_id, budget)
        self.records[task_id].budget = budget

    def status_of(self, task_id: str) -> str:
        return self.sched.status[task_id]

    def error_of(self, task_id: str) -> str | None:
        return self.records[task_id].error

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        skipped = self.sched.cancel(task_ids, reason)
        for tid in task_ids:
            if self.sched.status[tid] == CANCELLED:
                self.finalize(tid, CANCELLED, reason=reason)
        self.finalize_skipped(skipped)
        return skipped

    def reopen(self, task_id: str, previous_error: str) -> list[str]:
        """An ended task (and what was skipped for it) waits to run again."""
        was_failure = self.sched.status[task_id] in FAILURES
        reopened = self.sched.reopen(task_id)  # ValueError if it cannot run again
        if was_failure:
            self.failed_count = max(0, self.failed_count - 1)
        for tid in (task_id, *reopened):
            self.finished.discard(tid)
            self.records[tid].reason = None
            self.records[tid].error = None
        self.records[task_id].previous_error = previous_error
        self.dirty = True
        return reopened

    # -- endings ---------------------------------------------------------------------------

    def finish(self, tid: str, status: str) -> None:
        """The task's last attempt ended with STATUS: what depended on it may be skipped now."""
        skipped = self.sched.finish(tid, status)
        self.finalize(tid, status)
        self.finalize_skipped(skipped)
        if status in FAILURES:
            self.failed_count += 1

    def skip(self, tid: str, reason: str) -> None:
        """A task that cannot start ends skipped, and so does what depends on it."""
        self.sched.reason[tid] = reason
        skipped = self.sched.finish(tid, SKIPPED)
        self.finalize(tid, SKIPPED, reason=reason)
        self.finalize_skipped(skipped)

    def finalize_skipped(self, skipped: list[tuple[str, str]]) -> None:
        for tid, reason in skipped:
            self.finalize(tid, SKIPPED, reason=reason)

    def finalize(self, tid: str, status: str, reason: str | None = None) -> None:
        """A task reached its final state: write its result file and tell the world."""
        if tid in self.finished:
            return
        self.finished.add(tid)
        rec = self.records[tid]
        task = self.by_id[tid]
        rec.reason = reason or rec.reason
        rec.finished_at = now_iso() if rec.started_at else None
        duration = round(time.monotonic() - rec.first_start_mono, 3) if rec.first_start_mono else 0.0
        result = {
            "schema": PLAN_SCHEMA,
            "run_id": self.run.run_id,
            "task_id": tid,
            "agent": task["agent"],
            "task": task["description"],
            "priority": task["priority"],
            "runner": "command" if task.get("command") else "agent",
            "status": status,
            "result": rec.result,
            "exit_code": rec.exit_code,
            "attempts": rec.attempts,
            "tokens_used": rec.tokens.as_dict(),
            "token_budget": rec.budget,
            "cost_usd": round(rec.cost_usd, 9),
            "cost_budget_usd": rec.cost_budget,
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "duration_s": duration,
            "error": rec.error if status != SUCCEEDED else None,
            "reason": rec.reason,
            "warnings": rec.warnings,
            "permission_denials": rec.denials,
            "verify": rec.verify,
            "dependencies": task["dependencies"],
        }
        if rec.cached_from:
            result.update(cached=True, cached_from=rec.cached_from, saved=rec.saved)
        if rec.started_at:
            result.update(self.extras(task, status))
        # A task that never started produced nothing: no file (an abort may end 100,000 such
        # tasks at once); state.json says how it ended, and readers build its result from there.
        # Unless an earlier execution left one: that one would say something else.
        if rec.started_at or tid in self.earlier_dirs:
            self.run.write_task_result(task["agent"], tid, result)
        self.results[tid] = result
        self.events.add(
            "task-end",
            task_id=tid,
            agent=task["agent"],
            status=status,
            tokens=rec.tokens.total,
            duration_s=duration,
            reason=rec.reason,
            error=result["error"],
        )
        self.dirty = True
        self.display.task_ended(tid, status, rec)

    def close_unfinished(self, reason: str | None) -> None:
        """At the end: tasks still marked running (stopped and reaped, or waiting to retry) end."""
        for tid in self.sched.ids_with(RUNNING):
            status = self.records[tid].stop_status or CANCELLED
            skipped = self.sched.finish(tid, status if status in TERMINAL else CANCELLED)
            self.finalize(tid, self.sched.status[tid], reason=reason)
            self.finalize_skipped(skipped)

    def totals(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "tokens_used": sum(r.tokens.total for r in self.records.values()),
            "cost_usd": round(sum(r.cost_usd for r in self.records.values()), 9),
        }

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.sched.status.values():
            counts[status] = counts.get(status, 0) + 1
        return counts
