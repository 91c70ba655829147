"""The run loop: start what is ready, wait for endings, apply policies and controls, flush.

One process owns a run while it executes. It keeps the live state in memory (live_state.py),
the tasks in a TaskBook, and on every way out (success, abort, Ctrl-C, crash) stops what runs
and kills what is left.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from typing import Any

import orjson

from awoc_scripts.errors import ABORTED, INTERRUPTED, OK, AwocError, DiskFull, disk_full
from awoc_scripts.execution.attempts import AttemptMaker, dependency_results
from awoc_scripts.execution.concurrency import AdaptiveConcurrency, Change
from awoc_scripts.execution.controls import apply_pending_controls
from awoc_scripts.execution.executors.base import Attempt, Ended, Executor
from awoc_scripts.execution.isolation.base import CannotStart
from awoc_scripts.execution.isolation.workspaces import Workspaces
from awoc_scripts.execution.levers import apply_lever
from awoc_scripts.execution.live_levers import LiveLevers
from awoc_scripts.execution.live_state import LiveState, note_create_times, task_snapshot
from awoc_scripts.execution.outcomes import REQUEUE, WAIT, attempt_outcome, judge
from awoc_scripts.execution.pause import RunPause
from awoc_scripts.execution.policies import run_policies
from awoc_scripts.execution.policies.cost_pressure import CostPressure
from awoc_scripts.execution.policies.task_limits import TaskLimits
from awoc_scripts.execution.records import Options, TaskRecord
from awoc_scripts.execution.result_cache import ResultCache, cache_key
from awoc_scripts.execution.retries import TransientWaits, reduced_budget
from awoc_scripts.execution.run_end import final_status
from awoc_scripts.execution.runners import agent_command, describe_denials
from awoc_scripts.execution.task_book import TaskBook
from awoc_scripts.execution.verification import failure_reason, verification, verify_attempt
from awoc_scripts.execution.warm_pool import CHECK_INTERVAL_S, MB_PER_AGENT, START_UP_S, WarmPool, default_size
from awoc_scripts.launcher import command_for
from awoc_scripts.plan_types import Plan, Task
from awoc_scripts.processes import available_memory_mb, kill_marked, sweep_empty_cgroups
from awoc_scripts.state.store import Run, now_iso, parse_iso
from awoc_scripts.state.task_states import (
    BUDGET_EXCEEDED,
    CANCELLED,
    FAILED,
    FAILURES,
    SUCCEEDED,
    TIMED_OUT,
)

FLUSH_INTERVAL_S = 0.25
# state.json of 100,000 tasks takes a second to write: flushes are spaced so that writing it never
# takes more than a fifth of the loop's time, or starts would wait on bookkeeping
FLUSH_SHARE_DIVISOR = 5


class Orchestrator:
    def __init__(
        self,
        run: Run,
        plan: Plan,
        execution: dict[str, Any],
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
        budgets = {t["task_id"]: int(t["token_budget"]) for t in execution["tasks"]}
        # durations learned from past runs order the ready tasks by their real critical path
        learned = {
            t["task_id"]: float(t["duration_s"])
            for t in execution["tasks"]
            if str(t.get("duration_source", "")).startswith("history")
        }
        self.tasks: list[Task] = [
            {
                **t,
                "token_budget": budgets[t["task_id"]],
                "estimated_duration": learned.get(t["task_id"], t["estimated_duration"]),
            }
            for t in plan["tasks"]
        ]
        # one owner per run: a second run, start or resume of it stops here with exit 2
        self.claim = run.claim("executed")
        try:
            self._set_up(run, plan, execution, display, resume, only)
        except BaseException:
            self.claim.release()
            raise

    def _set_up(
        self, run: Run, plan: Plan, execution: dict[str, Any], display: Any, resume: bool, only: set[str] | None
    ) -> None:
        budgets = {t["task_id"]: int(t["token_budget"]) for t in execution["tasks"]}
        self.live = LiveState(run, resume)
        self.book = TaskBook(run, self.tasks, self.live.tasks, self.events, display, self._result_extras)
        self.by_id, self.records = self.book.by_id, self.book.records
        self.workspaces = Workspaces(
            run,
            plan,
            self.options.cwd,
            self.by_id,
            lambda tid: self.scheduler.status[tid],
            self.events,
            keep_worktrees=bool(self.config.get("keep_worktrees")),
        )
        status, self.orphans = dict(self.book.saved_status), list[str]()
        if resume:
            status, self.orphans = self.live.prepare_resume(self.records, self.by_id, budgets, only, self.events)
        self.scheduler = self.book.start_scheduling(status)
        self.max_concurrent = int(self.live.data.get("max_concurrent") or self.config["max_concurrent"])
        self.batch_token_limit = int(self.config["batch_token_limit"])
        self.total_budget = int(self.config["total_token_budget"])
        self.failure_tolerance = int(self.config["failure_tolerance"])
        configured = self.config.get("min_free_memory_mb", 256)
        min_free = configured if self.options.min_free_memory_mb is None else self.options.min_free_memory_mb
        probe = self.memory_probe = self.options.memory_probe or available_memory_mb
        self.min_free_mb = float(min_free)
        self.policies = run_policies(self.config, float(min_free), probe)
        self.token_policy = next(p for p in self.policies if p.name == "token_pressure")
        self.cost_policy = next(p for p in self.policies if isinstance(p, CostPressure))
        self.task_limits = TaskLimits(self.by_id)
        self._last_check = {p.name: 0.0 for p in self.policies}
        self.attempts = AttemptMaker(run, self.config, self.options)
        self.cache = ResultCache(run.root) if self.config.get("cache") else None
        self.waits = TransientWaits(self.options)
        self.levers = LiveLevers(self.book, self, CANCELLED)
        self.stop_reason: str | None = None  # set once: nothing new starts after it
        self.exit_code = OK
        self.no_new_starts = False
        self.levers_pulled: set[str] = set()
        self._requeue_why: dict[str, str] = {}
        self._pending_signal: int | None = None  # SIGINT or SIGTERM received, not acted on yet
        self.started_mono = time.monotonic()
        ramp_up_s = float(self.config.get("ramp_up_s") or 0)
        self.concurrency = AdaptiveConcurrency(self.max_concurrent, ramp_up_s, self.started_mono)
        self.pool = WarmPool(self._pool_size(), self.executor, self.events)
        self.pause = RunPause()
        saved_pause = parse_iso(self.live.data.get("paused_until")) if resume else None
        if saved_pause is not None and saved_pause > time.time():  # killed while paused: the limit holds
            self.pause.begin(saved_pause, time.time(), self.started_mono)
        self._last_flush = 0.0
        self._flush_every = FLUSH_INTERVAL_S

    # -- what policies see of the run and do to it (LiveRun) -------------------------------

    def running(self) -> list[str]:
        return self.executor.running()

    def budget_of(self, task_id: str) -> int:
        return self.book.budget_of(task_id)

    def tokens_spent(self) -> int:
        return self.book.spent

    def _pool_size(self) -> int:
        if not any(not t.get("command") and t["isolation"] == "process" for t in self.tasks):
            return 0  # nothing here could use a warm agent
        runner = self.config.get("runner") or {}
        if agent_command(self.config, self.options.environ) and not runner.get("warm_start"):
            return 0  # an agent command that reads its prompt at once
        configured = self.config.get("warm_agents")
        if configured is not None:
            return int(configured)
        return default_size(self.max_concurrent, self.memory_probe())

    def active_elapsed(self, now: float) -> float:
        """Time executing, without the time paused by a usage limit."""
        return now - self.started_mono - self.pause.paused_s(now)

    def cost_spent(self) -> float:
        return self.book.cost_spent

    def status_of(self, task_id: str) -> str:
        return self.scheduler.status[task_id]

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return self.book.results

    def _result_extras(self, task: Task, status: str) -> dict[str, Any]:
        """What a started task's result adds: its worktree, and where it ran when not here."""
        rec = self.records[task["task_id"]]
        extras = self.workspaces.task_ended(task, status, rec.session_id, ran=rec.cached_from is None)
        where = self.executor.where_ran(task["task_id"])
        return {**extras, "executed_on": where} if where else extras

    def pull_lever(self, action: str, args: dict[str, Any], why: str) -> None:
        if action in self.levers_pulled:
            return
        self.levers_pulled.add(action)
        changed = apply_lever(action, args, self.levers)
        self.events.add("lever", action=action, args=args, changed=changed, applied_by="orchestrator", why=why)
        self.display.note(f"{action}: {why}")
        self.book.dirty = True

    def stop_starting(self, reason: str, cancel_reason: str) -> None:
        self.no_new_starts = True
        self.stop_reason = reason
        self.exit_code = ABORTED
        self.book.cancel(self.book.pending(), cancel_reason)

    def requeue(self, task_id: str, why: str) -> None:
        self.records[task_id].stop_status = REQUEUE
        self._requeue_why[task_id] = why
        self.executor.stop(task_id)

    # -- the loop ---------------------------------------------------------------------------

    def execute(self) -> int:
        handlers = {sig: signal.signal(sig, self._note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._begin()
            self._loop()
        except BaseException as exc:
            full = disk_full(exc)
            self.stop_reason = self.stop_reason or (full.message if full else f"orchestrator error: {exc!r}")
            self.exit_code = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else ABORTED
            if full is not None:
                resume = command_for("delegate-parallel", "resume", self.run.run_id)
                raise DiskFull(f"{full.message}: the run stopped; once there is room, `{resume}` continues it") from exc
            raise
        finally:
            try:
                self._shutdown()
            finally:
                self.claim.release()
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        return self.exit_code

    def _note_signal(self, signum: int, frame: Any) -> None:
        # Only noted here: the handler may run in the middle of any step (between a spawn and
        # its bookkeeping, say); the loop acts on it at its next safe point, within 0.25 s.
        self._pending_signal = signum

    def _begin(self) -> None:
        self.run.make_dirs()
        sweep_empty_cgroups()
        self.live.begin_execution()
        self.book.finalize_skipped(self.scheduler.initially_skipped)
        self.workspaces.run_starting()
        self.events.add(
            "run-start",
            tasks=len(self.tasks),
            resumed=bool(self.orphans) or None,
            max_concurrent=self.max_concurrent,
            total_token_budget=self.total_budget,
        )
        self._flush()
        self.display.begin(self)

    def _loop(self) -> None:
        while True:
            if self._pending_signal is not None:
                self.interrupt(self._pending_signal)
            now = time.monotonic()
            if self.pause.end_if_due(time.time(), now):
                self.events.add("run-resumed", paused_s=round(self.pause.paused_s(now), 3))
                self.display.note("usage limit reset: the run goes on")
                self.book.dirty = True
            if self.live.changed_by_others():
                self._flush()  # picks up lever requests
            for policy in self.policies:
                if self.stop_reason is None and now - self._last_check[policy.name] >= policy.interval_s:
                    self._last_check[policy.name] = now
                    policy.check(self, now)
            if self.stop_reason is None and not self.no_new_starts:
                for tid in self.waits.due(now):
                    self.scheduler.requeue(tid)
                if not self.pause.active:
                    self._start_ready()
            if self.pool.enabled:
                self._tend_pool(now)
            idle = not self.executor.running() and not self.waits.until
            if idle and (self.stop_reason is not None or not self._start_possible()):
                break
            ended = self.executor.wait(self._wait_timeout(now))
            for end in ended:
                self._on_ended(end)
            if ended and self.stop_reason is None:
                self.token_policy.check(self, time.monotonic())
                self.cost_policy.check(self, time.monotonic())
            self._collect_ends_before_deadlines(time.monotonic())
            self.task_limits.check(self, time.monotonic())
            if self.book.dirty and time.monotonic() - self._last_flush >= self._flush_every:
                self._flush()
            else:
                self.events.flush()
            self.display.tick(self)

    def _collect_ends_before_deadlines(self, now: float) -> None:
        """A timeout is only for a task still running at its deadline. After the orchestrator was
        stopped (SIGSTOP, a laptop asleep) its wait may return before looking at the tasks that
        ended meanwhile; look once more, so that none of them is taken for one still running."""
        overdue = any(
            rec.deadline is not None and now >= rec.deadline and not rec.stop_status
            for rec in (self.records[t] for t in self.executor.running())
        )
        if overdue:
            for end in self.executor.wait(0):
                self._on_ended(end)

    def _start_possible(self) -> bool:
        return not self.no_new_starts and bool(self.scheduler.ready_ids())

    def _wait_timeout(self, now: float) -> float:
        """Until the next deadline of a running task or the next retry, at most one flush away."""
        # a task being stopped has passed its deadline: waiting for its end must not spin
        deadlines = [self.records[t].deadline for t in self.executor.running() if not self.records[t].stop_status]
        moments = deadlines + list(self.waits.until.values())
        soonest = min((m for m in moments if m is not None), default=now + FLUSH_INTERVAL_S)
        return min(FLUSH_INTERVAL_S, max(0.0, soonest - now))

    def _flush(self, status: str = "running", final: bool = False) -> None:
        began = time.monotonic()
        self.events.flush()
        note_create_times(self.records, self.executor.running())
        if status == "running" and self.pause.active:
            status = "paused"
        self.live.flush(
            status=status,
            final=final,
            active_s=time.monotonic() - self.started_mono,
            apply_controls=self._apply_controls,
            snapshot=lambda: task_snapshot(
                self.records, self.scheduler.status, self.scheduler.budget, self.scheduler.reason
            ),
            fields=lambda: {
                "max_concurrent": self.max_concurrent,
                "effective_concurrency": self.concurrency.limit(self.max_concurrent, time.monotonic()),
                "stop_reason": self.stop_reason,
                "paused_until": self.pause.until_iso(),
                "warm_agents": len(self.pool.warmed),
            },
        )
        self.book.dirty = False
        took = time.monotonic() - began
        self._last_flush = time.monotonic()
        self._flush_every = max(FLUSH_INTERVAL_S, took * (FLUSH_SHARE_DIVISOR - 1))

    def _apply_controls(self, state: dict[str, Any]) -> None:
        for control in apply_pending_controls(state, self.levers, f"orchestrator (pid {os.getpid()})"):
            changed = control["changed"]
            self.events.add(
                "lever", action=control["action"], args=control["args"], changed=changed, applied_by="orchestrator"
            )
            self.display.note(f"lever {control['action']} applied")

    # -- starting and ending ----------------------------------------------------------------

    def _start_ready(self) -> None:
        while self._pending_signal is None:
            limit = self.concurrency.limit(self.max_concurrent, time.monotonic())
            decision = self.scheduler.next_start(self.executor.running(), limit, self.batch_token_limit)
            if decision is None:
                return
            if decision.alone_over_batch_limit:
                budget = self.scheduler.budget[decision.task_id]
                self.events.add(
                    "batch-limit-exceeded",
                    task_id=decision.task_id,
                    token_budget=budget,
                    batch_token_limit=self.batch_token_limit,
                )
            self._launch(decision.task_id)

    def _tend_pool(self, now: float) -> None:
        if now - self.pool.last_check < CHECK_INTERVAL_S and not self.book.dirty:
            return
        self.pool.last_check = now
        holding = None
        if self.memory_probe() < self.min_free_mb + MB_PER_AGENT:
            holding = "memory short"  # memory pressure stops warm processes first
        elif self.stop_reason is not None or self.no_new_starts or self.pause.active:
            holding = "run stopping or paused"
        running = self.executor.running()
        starting = sum(1 for t in running if now - (self.records[t].start_mono or 0.0) < START_UP_S)
        limit = self.concurrency.limit(self.max_concurrent, now)
        if self.pool.tend(now, self.scheduler, limit, starting, holding, self._warm_attempt):
            self.book.dirty = True

    def _warm_attempt(self, tid: str) -> Attempt | None:
        rec = self.records[tid]
        rec.cost_cap_usd = self.cost_policy.cap_for(rec, self.book.cost_spent)
        return self.attempts.make_warm(self.by_id[tid], rec, self.options.cwd)

    def _launch(self, tid: str) -> None:
        task, rec = self.by_id[tid], self.records[tid]
        if self.cache is not None and rec.attempts == 0 and task.get("cache") is not False and self._reused(tid):
            return
        rec.attempts += 1
        rec.stop_status = None
        deps = dependency_results(self.run, task, self.by_id, self.scheduler.status, self.records)
        try:
            workdir = self.workspaces.workdir(task)
        except CannotStart as exc:
            rec.attempts -= 1
            self.events.add("task-cannot-start", task_id=tid, reason=str(exc))
            self.book.skip(tid, f"cannot start: {exc}")
            return
        except AwocError as exc:
            rec.error = f"cannot make its working directory: {exc.message}"
            self.scheduler.start(tid)
            self._end_task(tid, FAILED, allow_retry=False)
            return
        rec.cost_cap_usd = self.cost_policy.cap_for(rec, self.book.cost_spent)
        rec.workdir = workdir
        attempt, invocation = self.attempts.make(task, rec, workdir, deps)
        self.scheduler.start(tid)
        rec.begin_attempt(float(task["timeout"]), invocation.stream)
        try:
            started = self.executor.start(attempt)
        except OSError as exc:
            rec.deadline = None
            rec.error = f"cannot start {invocation.argv[0]!r}: {exc.strerror or exc}"
            self._end_task(tid, FAILED, allow_retry=False)
            return
        rec.pid, rec.pid_create_time, rec.pid_start_ticks = started.pid, None, None  # read when the state is written
        self.book.dirty = True
        self.pool.launched(tid, started.warm_s)
        self.events.add(
            "task-start",
            task_id=tid,
            agent=task["agent"],
            attempt=rec.attempts,
            pid=started.pid,
            token_budget=rec.budget,
        )
        self.display.task_started(tid, rec)

    def _reused(self, tid: str) -> bool:
        """A task whose key matches a success of an earlier run ends with that result, unstarted."""
        assert self.cache is not None
        task, rec = self.by_id[tid], self.records[tid]
        deps = dependency_results(self.run, task, self.by_id, self.scheduler.status, self.records)
        try:
            files = self.workspaces.files_key(task, self.options.cwd)
        except (AwocError, CannotStart):
            return False
        if files is None:
            return False
        invocation, prompt = self.attempts.invocation_and_prompt(task, rec, deps)
        prompt = prompt.replace(str(self.run.dir), "<run>")  # where its dependencies' files are this time
        depended = [[d.task_id, hashlib.sha256(d.result.encode()).hexdigest()] for d in deps]
        rec.cache_key = cache_key(task, invocation, prompt + orjson.dumps(depended).decode(), files)
        hit = self.cache.lookup(rec.cache_key)
        if hit is None or not self.workspaces.adopt(task, hit["result"]):
            self.events.add("task-cache-miss", task_id=tid, key=rec.cache_key, files=files)
            return False
        cached = hit["result"]
        rec.result, rec.exit_code = str(cached.get("result") or ""), cached.get("exit_code")
        rec.cached_from, rec.verify = str(hit.get("run_id")), cached.get("verify")
        rec.saved = {
            "tokens": int((cached.get("tokens_used") or {}).get("total") or 0),
            "cost_usd": float(cached.get("cost_usd") or 0),
        }
        rec.started_at = now_iso()
        self.scheduler.start(tid)
        self.events.add("task-reused", task_id=tid, cached_from=rec.cached_from, saved=rec.saved)
        self.display.note(f"{tid}: reused from run {rec.cached_from}")
        self.book.finish(tid, SUCCEEDED)
        return True

    def _on_ended(self, end: Ended) -> None:
        tid = end.task_id
        rec = self.records[tid]
        if rec.verifying_since is not None:
            self._on_verified(end)
            return
        files = rec.files or self.run.task_files(tid)
        outcome, attempt_tokens = attempt_outcome(end.exit_code, files, rec.stream, not self.by_id[tid].get("command"))
        rec.absorb(end.exit_code, outcome, attempt_tokens)
        if outcome.denials:
            denied = describe_denials(outcome.denials)
            self.events.add("permission-denied", task_id=tid, attempt=rec.attempts, denials=outcome.denials[:20])
            self.display.note(f"{tid}: permission denied: {denied}")
        self.book.spent += attempt_tokens.total
        self.book.cost_spent += float(outcome.cost_usd or 0)
        limited = outcome.usage_limit and not end.stopped and self.stop_reason is None
        if limited and self.pause.may_pause(outcome.resets_at):
            self._usage_limited(tid, outcome.resets_at, outcome.error or "usage limit reached")
            return
        verdict = judge(end.stopped, rec, outcome, attempt_tokens, self.waits.can_wait(rec) and not self.stop_reason)
        if verdict == SUCCEEDED and self.by_id[tid].get("verify") and self._start_verification(tid):
            return  # it succeeds once its verification passes
        if outcome.transient and not end.stopped:
            why = f"{tid}: {(outcome.error or 'rate limited')[:200]}"
            self._concurrency_changed(
                self.concurrency.on_overload(rec.start_mono or 0.0, self.max_concurrent, time.monotonic(), why)
            )
        elif verdict == SUCCEEDED:
            self._concurrency_changed(self.concurrency.on_success(self.max_concurrent))
            self.pause.note_success()
        if verdict == REQUEUE:
            rec.attempts -= 1
            self.scheduler.requeue(tid)
            self.events.add("task-requeued", task_id=tid, reason=self._requeue_why.pop(tid, "requeued"))
        elif verdict == WAIT:
            delay = self.waits.wait(tid, rec, time.monotonic())
            error = (rec.error or "rate limited")[:500]
            self.events.add("task-rate-limited", task_id=tid, wait_s=delay, error=error)
            self.display.note(f"{tid}: rate limited, retrying in {delay:g} s")
        else:
            self._end_task(tid, verdict, allow_retry=self.stop_reason is None)

    def _start_verification(self, tid: str) -> bool:
        """Run the task's verification where it ran; False when it cannot start (then it failed)."""
        task, rec = self.by_id[tid], self.records[tid]
        files = rec.files or self.run.task_files(tid)
        env = dict(self.options.environ) | {"AWOC_RUN_ID": self.run.run_id, "AWOC_TASK_ID": tid}
        attempt = verify_attempt(task, self.run.run_id, files, rec.workdir or self.options.cwd, env)
        rec.verifying_since = time.monotonic()
        rec.deadline = rec.verifying_since + attempt.timeout_s
        rec.stream = None
        try:
            self.executor.start(attempt)
        except OSError as exc:
            rec.verifying_since = rec.deadline = None
            rec.error = f"verification: cannot start {attempt.invocation.argv[0]!r}: {exc.strerror or exc}"
            self._end_task(tid, FAILED, allow_retry=self.stop_reason is None)
            return True
        self.events.add("task-verify", task_id=tid, attempt=rec.attempts, command=attempt.invocation.argv)
        self.display.note(f"{tid}: verifying")
        return True

    def _on_verified(self, end: Ended) -> None:
        tid = end.task_id
        task, rec = self.by_id[tid], self.records[tid]
        started, rec.verifying_since, rec.deadline = rec.verifying_since or time.monotonic(), None, None
        timed_out = end.stopped and rec.stop_status == TIMED_OUT
        exit_code = None if timed_out else end.exit_code
        rec.verify = verification(task, rec.files or self.run.task_files(tid), exit_code, time.monotonic() - started)
        self.events.add("task-verified", task_id=tid, passed=rec.verify["passed"], exit_code=exit_code)
        if end.stopped and not timed_out and rec.stop_status:  # cancelled, requeued...: as any stopped attempt
            if rec.stop_status == REQUEUE:
                rec.attempts -= 1
                self.scheduler.requeue(tid)
                return
            self._end_task(tid, rec.stop_status, allow_retry=False)
            return
        if rec.verify["passed"]:
            self._end_task(tid, SUCCEEDED, allow_retry=False)
            return
        rec.stop_status = None
        rec.error = failure_reason(rec.verify, float(task.get("verify_timeout") or 600))
        self._end_task(tid, FAILED, allow_retry=self.stop_reason is None)

    def _usage_limited(self, tid: str, resets_at: float | None, error: str) -> None:
        """The provider's usage limit: the whole run pauses until it resets. This attempt and
        those stopped for the pause run again and do not count."""
        rec = self.records[tid]
        rec.attempts -= 1
        rec.error = error
        self.scheduler.requeue(tid)
        if not self.pause.begin(resets_at, time.time(), time.monotonic(), self.options.usage_limit_pause_s):
            return
        for other in self.executor.running():
            if not self.records[other].stop_status:
                self.requeue(other, "usage limit: the run is paused")
        until = self.pause.until_iso()
        self.events.add("run-paused", until=until, task_id=tid, reason=error[:500], reset_given=resets_at is not None)
        self.display.note(f"usage limit reached: paused until {until}")
        self.book.dirty = True

    def _concurrency_changed(self, change: Change | None) -> None:
        if change is None:
            return
        self.events.add("concurrency-change", before=change.before, after=change.after, why=change.why)
        if change.after < change.before:
            self.display.note(f"rate limited: at most {change.after} at once now (was {change.before})")
        self.book.dirty = True

    def _end_task(self, tid: str, status: str, allow_retry: bool) -> None:
        rec = self.records[tid]
        money_left = rec.cost_left()
        if money_left is not None and money_left <= 0:
            allow_retry = False  # another attempt could only spend more than the task may
        if status in FAILURES and allow_retry and rec.attempts <= int(self.by_id[tid]["retries"]):
            rec.previous_error = rec.error or status
            self.book.set_budget(tid, reduced_budget(rec.budget))
            self.events.add(
                "task-retry",
                task_id=tid,
                attempt=rec.attempts + 1,
                status=status,
                error=(rec.error or "")[:500],
                token_budget=rec.budget,
            )
            self.display.note(f"{tid}: {status}, retrying with reduced scope")
            self.scheduler.requeue(tid)
            self.book.dirty = True
            return
        self.book.finish(tid, status)
        if status == SUCCEEDED and self.cache is not None and rec.cache_key and not rec.cached_from:
            self.cache.store(rec.cache_key, self.run.run_id, self.book.results[tid])
        if self.book.failed_count > self.failure_tolerance and self.stop_reason is None:
            failed, tolerated = self.book.failed_count, self.failure_tolerance
            self.abort(f"failure tolerance exceeded: {failed} tasks failed, {tolerated} tolerated", CANCELLED)

    def stop_task(self, tid: str, status: str, error: str) -> None:
        self.records[tid].error = error
        self._stop(tid, status)

    def _stop(self, tid: str, status: str) -> None:
        self.records[tid].stop_status = status
        self.executor.stop(tid)
        self.events.add("task-stop", task_id=tid, status=status, error=self.records[tid].error)

    # -- stopping and the end ---------------------------------------------------------------

    def abort(self, reason: str, running_status: str) -> None:
        """Nothing new starts, running tasks are stopped, the rest is cancelled."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.exit_code = ABORTED
        self.events.add("run-abort", reason=reason)
        self.display.note(f"aborting: {reason}")
        self._stop_everything(reason, running_status)

    def interrupt(self, signum: int) -> None:
        if self.stop_reason is None:
            name = signal.Signals(signum).name
            self.stop_reason = f"interrupted ({name})"
            self.exit_code = INTERRUPTED
            self.events.add("run-interrupted", signal=name)
            self._stop_everything(self.stop_reason, CANCELLED)

    def _stop_everything(self, reason: str, running_status: str) -> None:
        for tid in self.executor.running():
            rec = self.records[tid]
            if rec.stop_status not in (TIMED_OUT, BUDGET_EXCEEDED):
                rec.error = rec.error or reason
                self._stop(tid, running_status)
        for tid in self.waits.release_all():
            self.scheduler.requeue(tid)
        self.book.cancel(self.book.pending(), reason)

    def _shutdown(self) -> None:
        self.executor.shutdown()
        leftovers = kill_marked(self.run.run_id)
        if leftovers:
            self.events.add("leftover-processes-killed", pids=leftovers)
        for tid in self.executor.running():
            self._end_task(tid, CANCELLED, allow_retry=False)
        self.book.cancel(self.book.pending(), self.stop_reason or "run ended")
        self.book.close_unfinished(self.stop_reason)
        self.workspaces.run_ended()
        final, self.exit_code = final_status(self.exit_code, self.scheduler.status.values())
        elapsed = round(time.monotonic() - self.started_mono, 3)
        self.events.add("run-end", status=final, exit_code=self.exit_code, reason=self.stop_reason, elapsed_s=elapsed)
        self._flush(final, final=True)
        self.display.end(self)

    def concurrency_summary(self) -> dict[str, int]:
        return {
            "max_concurrent": self.max_concurrent,
            "lowest": min(self.concurrency.lowest, self.max_concurrent),
            "final": self.concurrency.limit(self.max_concurrent, time.monotonic()),
            "changes": self.concurrency.changes,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "status": self.live.data.get("status"),
            "exit_code": self.exit_code,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(time.monotonic() - self.started_mono, 3),
            **self.book.totals(),
            "concurrency": self.concurrency_summary(),
        }


__all__ = ["Options", "Orchestrator", "TaskRecord"]
