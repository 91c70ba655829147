"""The run loop: feeds the run machine what happens and carries out what it asks for.

Every rule (what starts, what a task's end means, levers, policies, pauses) is the machine's
(machine/machine.py); here are only the processes (the executor), the files (state.json, result
files, events), the display and the signals. One process owns a run while it executes, and on
every way out (success, abort, Ctrl-C, crash) stops what runs and kills what is left.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import AwocError, DiskFull, RunFolderGone, disk_full
from awoc_scripts.execution.attempt_starts import AttemptStarter
from awoc_scripts.execution.attempts import AttemptMaker
from awoc_scripts.execution.isolation.workspaces import Workspaces
from awoc_scripts.execution.machine.events import (
    Crashed,
    Effect,
    Event,
    LeverAnswered,
    LeverPulled,
    LookUpCache,
    Moment,
    Note,
    OutputRead,
    Record,
    RunStarted,
    Shutdown,
    SignalReceived,
    Spawned,
    Start,
    Stop,
    TaskEnded,
    Tick,
    Verify,
)
from awoc_scripts.execution.machine.machine import RunMachine
from awoc_scripts.execution.machine.settings import MachineSettings
from awoc_scripts.execution.outcomes import read_from
from awoc_scripts.execution.result_cache import ResultCache
from awoc_scripts.execution.run_options import Options
from awoc_scripts.execution.state_file import StateFile, note_create_times
from awoc_scripts.execution.task_record import TaskRecord
from awoc_scripts.execution.warm_pool import CHECK_INTERVAL_S, WarmPool, pool_size
from awoc_scripts.execution.watchdog import Watchdog
from awoc_scripts.gc_pause import without_gc
from awoc_scripts.launcher import command_for
from awoc_scripts.processes import available_memory_mb, kill_marked, sweep_empty_cgroups
from awoc_scripts.state.store import Run, iso_of, parse_iso
from awoc_scripts.stop_signals import stopping_signals

if TYPE_CHECKING:
    from awoc_scripts.execution.executors.base import Attempt, Executor
    from awoc_scripts.plan_types import ExecutionPlan, Plan, Task
    from awoc_scripts.run_documents import LeverAnswer, LoopSummary, RunState, TaskResult

FLUSH_INTERVAL_S = 0.25
# state.json of 100,000 tasks takes a second to write: flushes are spaced so that writing it never
# takes more than a fifth of the loop's time, or starts would wait on bookkeeping
FLUSH_SHARE_DIVISOR = 5
STREAM_CHECK_INTERVAL_S = 0.2  # how often running agents' stream-json output is read for their tokens
MEMORY_CHECK_INTERVAL_S = 0.25


class RunLoop:
    def __init__(
        self,
        run: Run,
        plan: Plan,
        execution: ExecutionPlan,
        executor: Executor,
        display: Any,
        options: Options | None = None,
        resume: bool = False,
        only: set[str] | None = None,
    ) -> None:
        self.run, self.executor, self.display = run, executor, display
        self.events = run.buffered_events()
        self.options = options or Options()
        self.config = execution["parallel_config"]
        self.tasks = planned_tasks(plan, execution)
        # one owner per run: a second run, start or resume of it stops here with exit 2
        self.claim = run.claim("executed")
        try:
            self._set_up(plan, execution, resume, only)
        except BaseException:
            self.claim.release()
            raise

    @without_gc  # a record per task and the scheduler's tables: 100,000 tasks make a million objects
    def _set_up(self, plan: Plan, execution: ExecutionPlan, resume: bool, only: set[str] | None) -> None:
        self.state_file = StateFile(self.run, resume, execution)
        by_id = {t["task_id"]: t for t in self.tasks}
        records = {
            tid: new_record(task, int(self.state_file.tasks[tid]["token_budget"])) for tid, task in by_id.items()
        }
        status, self.orphans = {tid: str(self.state_file.tasks[tid]["status"]) for tid in by_id}, list[str]()
        if resume:
            budgets = {t["task_id"]: int(t["token_budget"]) for t in execution["tasks"]}
            status, self.orphans = self.state_file.prepare_resume(records, by_id, budgets, only, self.events)
        self.machine = RunMachine(
            self.run.run_id,
            self.tasks,
            records,
            status,
            MachineSettings.of(self.config, self.options),
            max_concurrent=int(self.state_file.data.get("max_concurrent") or self.config["max_concurrent"]),
            paused_until=parse_iso(self.state_file.data.get("paused_until")) if resume else None,
        )
        self.records, self.by_id = records, by_id
        keep = bool(self.config.get("keep_worktrees"))
        self.workspaces = Workspaces(self.run, plan, self.options.cwd, by_id, self.machine.status_of, self.events, keep)
        self.memory_probe = self.options.memory_probe or available_memory_mb
        self.attempts = AttemptMaker(self.run, self.config, self.options)
        self.cache = ResultCache(self.run.root) if self.config.get("cache") else None
        size = pool_size(self.tasks, self.config, self.options.environ, self.machine.max_concurrent, self.memory_probe)
        self.pool = WarmPool(size, self.executor, self.events)
        self.starter = AttemptStarter(
            self.run,
            self.options,
            self.executor,
            self.workspaces,
            self.attempts,
            self.pool,
            self.cache,
            by_id,
            records,
            self.machine.scheduler.status,
            self.machine.ledger.result_of,
        )
        self._pool_changed = False
        self._answers: dict[str, LeverAnswer] = {}  # lever requests answered, by id
        self._pending_signal: int | None = None  # one of stopping_signals() received, not acted on yet
        self._last_flush, self._flush_every = 0.0, FLUSH_INTERVAL_S
        self._last_stream_read = -math.inf
        self._memory: tuple[float, float] = (-math.inf, math.inf)  # when read, MB free then

    # -- what the display reads -------------------------------------------------------------

    @property
    def results(self) -> dict[str, TaskResult]:
        """The result of every task that ended in this execution."""
        return self.starter.results

    # -- the loop ---------------------------------------------------------------------------

    def execute(self) -> int:
        try:
            return self._execute()
        except Exception as exc:
            if isinstance(exc, AwocError) or self.run.dir.is_dir():
                raise
            # a task that cleans the project (`git clean -x`, `rm -rf .awoc`) took the run's files with it
            raise RunFolderGone(
                f"{self.run.dir} was deleted while the run executed (by a task that cleans the project, as "
                "`git clean -x` does?): the run stopped and its tasks were ended, but what it recorded is lost"
            ) from exc

    def _execute(self) -> int:
        watchdog = Watchdog.start(self.run, self.claim.fd)
        if watchdog is not None:
            self.executor.keep(watchdog.pid)
        handlers = {sig: signal.signal(sig, self._note_signal) for sig in stopping_signals()}
        everything_ended = False
        try:
            self._begin()
            self._loop()
        except BaseException as exc:
            full = disk_full(exc)
            reason = full.message if full else f"orchestrator error: {exc!r}"
            self.machine.handle(Crashed(reason, interrupted=isinstance(exc, KeyboardInterrupt), at=Moment.of_now()))
            if full is not None:
                resume = command_for("delegate-parallel", "resume", self.run.run_id)
                raise DiskFull(f"{full.message}: the run stopped; once there is room, `{resume}` continues it") from exc
            raise
        finally:
            try:
                self._shutdown()
                everything_ended = True
            finally:
                if watchdog is not None:
                    watchdog.end(everything_ended)  # else it kills what the shutdown left
                self.claim.release()
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        return self.machine.exit_code

    def _note_signal(self, signum: int, frame: Any) -> None:
        # Only noted here: the handler may run in the middle of any step (between a spawn and
        # its bookkeeping, say); the loop acts on it at its next safe point, within 0.25 s.
        self._pending_signal = signum

    def _begin(self) -> None:
        self.run.make_dirs()
        sweep_empty_cgroups()
        self.state_file.begin_execution()
        self.workspaces.run_starting()
        self._feed(RunStarted(at=Moment.of_now()))
        self.events.add(
            "run-start",
            tasks=len(self.tasks),
            resumed=bool(self.orphans) or None,
            max_concurrent=self.machine.max_concurrent,
            total_token_budget=self.machine.settings.total_token_budget,
        )
        self._flush()
        self.display.begin(self)

    def _loop(self) -> None:
        while True:
            self._act_on_signal()
            if self.state_file.changed_by_others():
                self._flush()  # picks up lever requests
            now = time.monotonic()
            self._feed(Tick(free_memory_mb=self._free_memory(now), at=Moment.of_now()))
            if self.pool.enabled:
                self._tend_pool(now)
            if self.machine.finished():
                break
            for end in self.executor.wait(self._wait_timeout(now)):
                self._feed(self.starter.ended(end, self.machine.verifying(end.task_id)))
            if self.machine.overdue(time.monotonic()):
                # after a SIGSTOP (a laptop asleep) the wait may return before looking at the tasks
                # that ended meanwhile: look once more, so that none is taken for one still running
                for end in self.executor.wait(0):
                    self._feed(self.starter.ended(end, self.machine.verifying(end.task_id)))
            self._read_streams()
            # once everything is being stopped, the final flush comes within the grace: one more before
            # it would only delay the end (by half a second at 100,000 tasks)
            if (
                (self.machine.dirty or self._pool_changed)
                and not self.machine.ending()
                and time.monotonic() - self._last_flush >= self._flush_every
            ):
                self._flush()
            else:
                self.events.flush()
            self.display.tick(self)

    def _act_on_signal(self) -> None:
        if self._pending_signal is not None:
            self._feed(SignalReceived(signal.Signals(self._pending_signal).name, at=Moment.of_now()))
            self._pending_signal = None

    def _free_memory(self, now: float) -> float:
        if now - self._memory[0] >= MEMORY_CHECK_INTERVAL_S:
            self._memory = (now, self.memory_probe())
        return self._memory[1]

    def _wait_timeout(self, now: float) -> float:
        """Until the next deadline of a running task or the next retry, at most one flush away."""
        soonest = self.machine.next_moment(now)
        return FLUSH_INTERVAL_S if soonest is None else min(FLUSH_INTERVAL_S, max(0.0, soonest - now))

    def _read_streams(self) -> None:
        now = time.monotonic()
        if now - self._last_stream_read < STREAM_CHECK_INTERVAL_S:
            return
        self._last_stream_read = now
        for tid, rec in self.machine.streams_to_read():
            assert rec.files is not None and rec.stream is not None
            data = read_from(rec.files.stdout, rec.stream.offset)
            if data:
                self._feed(OutputRead(tid, data, at=Moment.of_now()))

    # -- carrying out what the machine asks -----------------------------------------------------

    @without_gc  # what an event asks for is carried out without the collector walking every task
    def _feed(self, event: Event) -> None:
        work: deque[Effect] = deque(self.machine.handle(event))
        while work:
            answer = self._carry_out(work.popleft())
            if answer is not None:
                work.extend(self.machine.handle(answer))
                if isinstance(answer, Spawned):
                    self.display.task_started(answer.task_id, self.records[answer.task_id])

    def _carry_out(self, effect: Effect) -> Event | None:
        if isinstance(effect, Record):
            self.events.add(effect.kind, **effect.fields)
        elif isinstance(effect, Note):
            self.display.note(effect.text)
        elif isinstance(effect, TaskEnded):
            self.starter.write_result(effect)
            self.display.task_ended(effect.task_id, effect.status, self.records[effect.task_id])
        elif isinstance(effect, Stop):
            self.executor.stop(effect.task_id)
        elif isinstance(effect, (Start, LookUpCache)):
            self._act_on_signal()  # a Ctrl-C withdraws the starts not made yet
            if effect.task_id not in self.machine.starting:
                return None
            starter = self.starter
            return starter.launch(effect.task_id) if isinstance(effect, Start) else starter.look_up(effect.task_id)
        elif isinstance(effect, Verify):
            return self.starter.verify(effect.task_id)
        elif isinstance(effect, LeverAnswered):
            self._answers[effect.request_id] = effect.changed
        return None

    # -- warm agents ------------------------------------------------------------------------

    def _tend_pool(self, now: float) -> None:
        if now - self.pool.last_check < CHECK_INTERVAL_S and not self.machine.dirty:
            return
        self.pool.last_check = now
        if self.pool.tend_for(self.machine, now, self._free_memory(now), self._warm_attempt):
            self._pool_changed = True

    def _warm_attempt(self, tid: str) -> Attempt | None:
        self.machine.prepare_warm(tid)
        return self.attempts.make_warm(self.by_id[tid], self.records[tid], self.options.cwd)

    # -- state.json and the end -------------------------------------------------------------

    def _flush(self, status: str = "running", final: bool = False) -> None:
        began = time.monotonic()
        self.events.flush()
        note_create_times(self.records, self.machine.running())
        if status == "running" and self.machine.pause.active:
            status = "paused"
        self.state_file.flush(
            status=status,
            final=final,
            active_s=began - self.machine.started_mono,
            apply_controls=self._apply_controls,
            snapshot=self.machine.ledger.snapshot,
            fields=lambda: {
                "max_concurrent": self.machine.max_concurrent,
                "effective_concurrency": self.machine.limit(time.monotonic()),
                "stop_reason": self.machine.stop_reason,
                "paused_until": self.machine.pause.until_iso(),
                "warm_agents": len(self.pool.warmed),
            },
        )
        self.machine.flushed()
        self._pool_changed = False
        self._last_flush = time.monotonic()
        self._flush_every = max(FLUSH_INTERVAL_S, (self._last_flush - began) * (FLUSH_SHARE_DIVISOR - 1))

    def _apply_controls(self, state: RunState) -> None:
        """Levers asked by other processes since the last flush: the machine applies each."""
        for control in state.get("controls", []):
            if control.get("applied_at"):
                continue
            lever = LeverPulled(control["action"], control["args"], request_id=control["id"], at=Moment.of_now())
            self._feed(lever)
            control["changed"] = self._answers.get(control["id"], {})
            control["applied_at"] = iso_of(lever.at.wall)
            control["applied_by"] = f"orchestrator (pid {os.getpid()})"
            control["applied_to"] = "running orchestrator"

    def _shutdown(self) -> None:
        self.executor.shutdown()
        leftovers = kill_marked(self.run.run_id)
        if leftovers:
            self.events.add("leftover-processes-killed", pids=leftovers)
        self._feed(Shutdown(at=Moment.of_now()))
        self.workspaces.run_ended()
        machine = self.machine
        elapsed = round(time.monotonic() - machine.started_mono, 3)
        self.events.add(
            "run-end", status=machine.final, exit_code=machine.exit_code, reason=machine.stop_reason, elapsed_s=elapsed
        )
        self._flush(machine.final or "failed", final=True)
        self.display.end(self)

    def summary(self) -> LoopSummary:
        records = self.records.values()
        return {
            "run_id": self.run.run_id,
            "status": self.state_file.data.get("status"),
            "exit_code": self.machine.exit_code,
            "stop_reason": self.machine.stop_reason,
            "elapsed_s": round(time.monotonic() - self.machine.started_mono, 3),
            "counts": self.machine.ledger.counts(),
            "tokens_used": sum(r.tokens.total for r in records),
            "cost_usd": round(sum(r.cost_usd for r in records), 9),
            "concurrency": self.machine.concurrency_summary(time.monotonic()),
        }


@without_gc
def planned_tasks(plan: Plan, execution: ExecutionPlan) -> list[Task]:
    """The plan's tasks with the execution plan's budgets and, where past runs measured them,
    their learned durations (they order the ready tasks by their real critical path)."""
    planned = {t["task_id"]: t for t in execution["tasks"]}
    tasks: list[Task] = []
    for task in plan["tasks"]:
        entry = planned[task["task_id"]]
        learned = str(entry.get("duration_source", "")).startswith("history")
        duration = float(entry["duration_s"]) if learned else task["estimated_duration"]
        tasks.append({**task, "token_budget": int(entry["token_budget"]), "estimated_duration": duration})
    ranks = [r for r in (planned[t["task_id"]].get("start_rank") for t in tasks) if type(r) is int]
    if len(ranks) == len(tasks) and sorted(ranks) == list(range(len(tasks))):  # the planner's order, whole
        for task, rank in zip(tasks, ranks, strict=True):
            task["start_rank"] = rank
    return tasks


def new_record(task: Task, budget: int) -> TaskRecord:
    permissions = task.get("permissions")
    return TaskRecord(
        budget,
        cost_budget=task.get("cost_budget_usd"),
        on_denied=permissions["on_denied"] if permissions else "fail",
    )
