"""The run as one state machine: every rule of the run loop, and no I/O.

`RunMachine.handle(*events)` takes what happened (an attempt ended, a lever was pulled, time
passed...) and returns what to do (start, stop, write a result, append an event). It owns every
task's state through its ledger; the run loop (run_loop.py) only carries the effects out, and the
levers of a saved run load a machine from state.json (saved.py) to apply the same rules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import ABORTED, INTERRUPTED, OK, AwocError
from awoc_scripts.execution.concurrency import AdaptiveConcurrency
from awoc_scripts.execution.machine import endings, starts
from awoc_scripts.execution.machine.events import (
    AttemptEnded,
    CacheHit,
    CacheMiss,
    CannotStart,
    Crashed,
    Effect,
    Event,
    Failed,
    LeverAnswered,
    LeverPulled,
    Moment,
    Note,
    OutputRead,
    Record,
    RunStarted,
    Shutdown,
    SignalReceived,
    Spawned,
    StartFailed,
    Stop,
    Tick,
    VerificationEnded,
)
from awoc_scripts.execution.machine.ledger import TaskLedger
from awoc_scripts.execution.machine.levers import apply_lever
from awoc_scripts.execution.pause import RunPause
from awoc_scripts.execution.policies import run_policies
from awoc_scripts.execution.policies.cost_pressure import CostPressure
from awoc_scripts.execution.retries import TransientWaits
from awoc_scripts.gc_pause import without_gc
from awoc_scripts.state.statuses import BUDGET_EXCEEDED, CANCELLED, TIMED_OUT

if TYPE_CHECKING:
    from collections.abc import Callable

    from awoc_scripts.execution.machine.settings import MachineSettings
    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.plan_types import JsonObject, Task
    from awoc_scripts.run_documents import ConcurrencySummary, LeverAnswer


class Outbox:
    """What policies write to (`run.events.add`, `run.display.note`): effects, not I/O."""

    def __init__(self, out: list[Effect]) -> None:
        self.out = out

    def add(self, kind: str, **fields: Any) -> None:
        self.out.append(Record(kind, fields))

    def note(self, text: str) -> None:
        self.out.append(Note(text))


class RunMachine:
    def __init__(
        self,
        run_id: str,
        tasks: list[Task],
        records: dict[str, TaskRecord],
        status: dict[str, str],
        settings: MachineSettings,
        *,
        executing: bool = True,
        max_concurrent: int | None = None,
        paused_until: float | None = None,
    ) -> None:
        self.out: list[Effect] = []
        self.saved_status = dict(status)  # as given: the scheduler runs again what was running
        self.saved_run_status: str | None = None  # a saved run's status, when loaded from state.json
        self.events = self.display = Outbox(self.out)
        self.ledger = TaskLedger(run_id, tasks, records, status, self.out)
        self.records, self.by_id, self.scheduler = records, self.ledger.by_id, self.ledger.scheduler
        self.settings = settings
        self.executing = executing  # False: a saved run, changed by a lever with nobody executing it
        self.max_concurrent = max_concurrent or settings.max_concurrent
        self.in_flight: dict[str, None] = {}  # tasks holding a slot: an attempt or verification runs
        self.starting: set[str] = set()  # asked to start (Start, LookUpCache), not answered yet
        self.stop_reason: str | None = None  # set once: nothing new starts after it
        self.exit_code = OK
        self.no_new_starts = False
        self.final: str | None = None  # the run's status once it has ended
        self.levers_pulled: set[str] = set()
        # the plan adopted an order of its own (start ranks): a slot may wait a moment for it
        # (starts.kept_for_earlier), until a lever changes what the order was planned for
        self.follows_plan = bool(tasks) and "start_rank" in tasks[0]
        self.hold_until: float | None = None  # until when a free slot waits (starts.kept_for_earlier)
        self.requeue_why: dict[str, str] = {}
        self.free_memory_mb = math.inf
        self.policies = run_policies(settings.config, settings.min_free_mb, lambda: self.free_memory_mb)
        self.token_policy = next(p for p in self.policies if p.name == "token_pressure")
        self.cost_policy = next(p for p in self.policies if isinstance(p, CostPressure))
        self.last_check = {p.name: -math.inf for p in self.policies}
        self.waits = TransientWaits(settings.backoff_base_s, settings.backoff_max_s)
        self.pause = RunPause()
        self.paused_until = paused_until  # a saved pause: the limit holds after a resume
        self.started_mono = 0.0
        self.concurrency = AdaptiveConcurrency(self.max_concurrent, settings.ramp_up_s, 0.0)
        self.at = Moment(0.0, 0.0)
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            RunStarted: self._run_started,
            Tick: self._tick,
            Spawned: lambda e: starts.spawned(self, e),
            CannotStart: lambda e: starts.cannot_start(self, e),
            StartFailed: lambda e: starts.start_failed(self, e),
            CacheHit: lambda e: starts.cache_hit(self, e),
            CacheMiss: lambda e: starts.cache_miss(self, e),
            OutputRead: lambda e: starts.output_read(self, e),
            AttemptEnded: lambda e: endings.attempt_ended(self, e),
            VerificationEnded: lambda e: endings.verification_ended(self, e),
            SignalReceived: lambda e: self.interrupt(e.name),
            LeverPulled: self._lever_pulled,
            Failed: lambda e: endings.failed_elsewhere(self, e),
            Crashed: lambda e: endings.crashed(self, e),
            Shutdown: lambda e: endings.shutdown(self, e),
        }

    @without_gc  # an abort of 100,000 tasks makes 300,000 objects and no cycle: 0.76 -> 0.37 s
    def handle(self, *events: Event) -> list[Effect]:
        """Apply EVENTS in order; return the effects they call for, in order."""
        for event in events:
            self.at = self.ledger.at = event.at
            self._handlers[type(event)](event)
            if not isinstance(event, Tick | OutputRead):
                self.ledger.dirty = True  # every other event changes what state.json shows
        effects, self.out[:] = list(self.out), []
        if effects:
            self.ledger.dirty = True  # a tick or a read that asked for something changed something
        return effects

    # -- what the loop, the display and the policies read ----------------------------------------

    @property
    def dirty(self) -> bool:
        return self.ledger.dirty

    def flushed(self) -> None:
        self.ledger.dirty = False

    def running(self) -> list[str]:
        return list(self.in_flight)

    def verifying(self, task_id: str) -> bool:
        return self.records[task_id].verifying_since is not None

    def budget_of(self, task_id: str) -> int:
        return self.ledger.budget_of(task_id)

    def tokens_spent(self) -> int:
        return self.ledger.spent

    def cost_spent(self) -> float:
        return self.ledger.cost_spent

    def status_of(self, task_id: str) -> str:
        return self.ledger.status[task_id]

    def active_elapsed(self, now: float) -> float:
        """Time executing, without the time paused by a usage limit."""
        return now - self.started_mono - self.pause.paused_s(now)

    def limit(self, now: float) -> int:
        return self.concurrency.limit(self.max_concurrent, now)

    def finished(self) -> bool:
        """Nothing runs or waits, and nothing more may start."""
        if self.in_flight or self.waits.until:
            return False
        return self.stop_reason is not None or self.no_new_starts or not self.scheduler.ready_ids()

    def ending(self) -> bool:
        """Stopping, with every task still in flight told to stop."""
        return self.stop_reason is not None and all(self.records[t].stop_status is not None for t in self.in_flight)

    def next_moment(self, now: float) -> float | None:
        """The next deadline of a running task, the next retry (a task being stopped has passed its
        own), or the end of a slot's wait for a planned task."""
        deadlines = [self.records[t].deadline for t in self.in_flight if not self.records[t].stop_status]
        held = self.hold_until if self.hold_until is not None and self.hold_until > now else None
        return min((m for m in (*deadlines, *self.waits.until.values(), held) if m is not None), default=None)

    def overdue(self, now: float) -> bool:
        return any(
            rec.deadline is not None and now >= rec.deadline and not rec.stop_status
            for rec in (self.records[t] for t in self.in_flight)
        )

    def streams_to_read(self) -> list[tuple[str, TaskRecord]]:
        """Running attempts whose stream-json output counts their tokens while they run."""
        return [
            (tid, rec)
            for tid, rec in ((t, self.records[t]) for t in self.in_flight if t not in self.starting)
            if not rec.stop_status and rec.stream is not None and rec.files is not None
        ]

    def concurrency_summary(self, now: float) -> ConcurrencySummary:
        return {
            "max_concurrent": self.max_concurrent,
            "lowest": min(self.concurrency.lowest, self.max_concurrent),
            "final": self.limit(now),
            "changes": self.concurrency.changes,
        }

    # -- starting -----------------------------------------------------------------------------

    def _run_started(self, event: RunStarted) -> None:
        now, wall = event.at.now, event.at.wall
        self.started_mono = now
        self.concurrency = AdaptiveConcurrency(self.max_concurrent, self.settings.ramp_up_s, now)
        if self.paused_until is not None and self.paused_until > wall:  # killed while paused: the limit holds
            self.pause.begin(self.paused_until, wall, now)
        self.ledger.finalize_skipped(self.scheduler.initially_skipped)
        if self.max_concurrent != self.settings.max_concurrent:  # resumed after a lever changed it
            planned = self.settings.max_concurrent
            self._leave_planned_order(f"max_concurrent is {self.max_concurrent}, the order was planned for {planned}")

    def _tick(self, event: Tick) -> None:
        now = event.at.now
        if event.free_memory_mb is not None:
            self.free_memory_mb = event.free_memory_mb
        if self.pause.end_if_due(event.at.wall, now):
            self.events.add("run-resumed", paused_s=round(self.pause.paused_s(now), 3))
            self.display.note("usage limit reset: the run goes on")
        for policy in self.policies:
            if self.stop_reason is None and now - self.last_check[policy.name] >= policy.interval_s:
                self.last_check[policy.name] = now
                policy.check(self, now)
        for tid in self.running():
            rec = self.records[tid]
            if not rec.stop_status and rec.deadline is not None and now >= rec.deadline:
                self.stop_task(tid, TIMED_OUT, f"timed out after {self.by_id[tid]['timeout']:g} s")
        if self.stop_reason is None and not self.no_new_starts:
            for tid in self.waits.due(now):
                self.scheduler.requeue(tid)
                self.ledger.dirty = True  # waits no more: state.json shows it pending
        starts.start_next(self)

    # -- ending ---------------------------------------------------------------------------------

    def end_task(self, tid: str, status: str, allow_retry: bool) -> None:
        endings.end_task(self, tid, status, allow_retry)

    def prepare_warm(self, tid: str) -> None:
        """A warm process is started with the money cap its attempt would have now."""
        rec = self.records[tid]
        rec.cost_cap_usd = self.cost_policy.cap_for(rec, self.ledger.cost_spent)

    def uncount(self, tid: str) -> None:
        """The attempt that just ended does not count: stopped to make room, paused, rate limited."""
        self.records[tid].attempts -= 1

    # -- stopping -------------------------------------------------------------------------------

    def stop_task(self, tid: str, status: str, error: str) -> None:
        self.records[tid].error = error
        self._stop(tid, status)

    def requeue(self, task_id: str, why: str) -> None:
        """Stop a running task; it runs again later, and the stopped attempt does not count."""
        self.records[task_id].stop_status = endings.REQUEUE
        self.requeue_why[task_id] = why
        self.out.append(Stop(task_id))

    def _stop(self, tid: str, status: str) -> None:
        self.records[tid].stop_status = status
        self.out.append(Stop(tid))
        self.events.add("task-stop", task_id=tid, status=status, error=self.records[tid].error)

    def stop_starting(self, reason: str, cancel_reason: str) -> None:
        """Nothing new starts; what is pending is cancelled; running tasks finish."""
        self.no_new_starts = True
        self.stop_reason = reason
        self.exit_code = ABORTED
        self.ledger.cancel(self.ledger.pending(), cancel_reason)

    def abort(self, reason: str, running_status: str) -> None:
        """Nothing new starts, running tasks are stopped, the rest is cancelled."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.exit_code = ABORTED
        self.events.add("run-abort", reason=reason)
        self.display.note(f"aborting: {reason}")
        self._stop_everything(reason, running_status)

    def interrupt(self, signal_name: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = f"interrupted ({signal_name})"
            self.exit_code = INTERRUPTED
            self.events.add("run-interrupted", signal=signal_name)
            self._stop_everything(self.stop_reason, CANCELLED)

    def _stop_everything(self, reason: str, running_status: str) -> None:
        for tid in self.running():
            rec = self.records[tid]
            if tid in self.starting:  # asked to start, not started: it simply does not
                self.starting.discard(tid)
                self.in_flight.pop(tid)
                self.scheduler.requeue(tid)
            elif rec.stop_status not in (TIMED_OUT, BUDGET_EXCEEDED):
                rec.error = rec.error or reason
                self._stop(tid, running_status)
        for tid in self.waits.release_all():
            self.scheduler.requeue(tid)
        self.ledger.cancel(self.ledger.pending(), reason)

    # -- levers ---------------------------------------------------------------------------------

    def _lever_pulled(self, event: LeverPulled) -> None:
        try:
            changed = apply_lever(event.action, event.args, self)
        except (AwocError, KeyError, TypeError, ValueError) as exc:  # a bad request must not stop the run
            changed = {"error": getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"}
        self.events.add("lever", action=event.action, args=event.args, changed=changed, applied_by=event.applied_by)
        if self.executing:
            self.display.note(f"lever {event.action} applied")
        self.out.append(LeverAnswered(event.request_id, changed))

    def pull_lever(self, action: str, args: JsonObject, why: str) -> None:
        """A policy pulls a lever, once a run."""
        if action in self.levers_pulled:
            return
        self.levers_pulled.add(action)
        changed = apply_lever(action, args, self)
        self.events.add("lever", action=action, args=args, changed=changed, applied_by="orchestrator", why=why)
        self.display.note(f"{action}: {why}")

    # what levers read and change (execution/levers.py's LeverTarget)

    def pending(self) -> list[str]:
        return self.ledger.pending()

    def priority_of(self, task_id: str) -> str:
        return self.ledger.priority_of(task_id)

    def set_budget(self, task_id: str, budget: int) -> None:
        self.ledger.set_budget(task_id, budget)

    def error_of(self, task_id: str) -> str | None:
        return self.ledger.error_of(task_id)

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        if task_ids:
            self._leave_planned_order(f"a lever cancelled {len(task_ids)} task(s)")
        return self.ledger.cancel(task_ids, reason)

    def set_max_concurrent(self, value: int) -> int:
        previous, self.max_concurrent = self.max_concurrent, value
        if value != previous:
            self._leave_planned_order(f"a lever set max_concurrent to {value}")
        return previous

    def _leave_planned_order(self, why: str) -> None:
        """Ready tasks start in priority order from now on. The planner adopted its order for the
        planned tasks at the planned concurrency (planning/start_order.py): once a lever changes
        either, nothing says that order is still the shorter one, and priorities are the contract."""
        if not self.follows_plan:
            return
        self.follows_plan = False
        self.hold_until = None
        self.scheduler.order_by_priority()
        if self.executing:
            self.events.add("start-order", by="priority", why=why)
            self.display.note(f"start order: by priority from now on ({why})")

    def requeue_ended(self, task_id: str, previous_error: str) -> list[str]:
        """parallel-task-retry: the task (and what was skipped for it) runs again."""
        if self.executing and (self.stop_reason is not None or self.no_new_starts):
            raise ValueError(f"the run is stopping: {self.stop_reason or 'no new task may start'}")
        return self.ledger.reopen(task_id, previous_error)

    def abort_run(self, reason: str) -> LeverAnswer:
        """parallel-execution-aborter."""
        if not self.executing:
            return endings.abort_saved(self, reason)
        if self.stop_reason is not None:
            return {"aborted": False, "why": f"already stopping: {self.stop_reason}", "cancelled": []}
        running, pending = self.running(), self.ledger.pending()
        self.abort(reason, CANCELLED)
        return {"aborted": True, "reason": reason, "cancelled": pending, "were_running": running}
