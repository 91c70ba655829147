"""The run loop: start tasks as soon as their dependencies allow, watch them, handle every ending.

One process owns a run while it executes. It keeps the live state in memory, writes it back to
state.json under the lock, applies lever requests from other processes between two starts,
and on every way out (success, abort, Ctrl-C, crash) stops what runs and kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.errors import ABORTED, INTERRUPTED, OK, TASKS_FAILED, StateError
from awoc_scripts.execution.controls import apply_pending_controls
from awoc_scripts.execution.executors.local import Attempt, Ended, Executor
from awoc_scripts.execution.levers import EMERGENCY, REDUCE, SEQUENTIAL, apply_lever
from awoc_scripts.execution.prompts import DependencyResult, compose_prompt
from awoc_scripts.execution.runners import Tokens, TurnCounter, build_invocation, read_outcome, task_environment
from awoc_scripts.input.agents import AgentDefinition, find_agent
from awoc_scripts.launcher import command_for
from awoc_scripts.planning.policy_settings import TIME_PRESSURE, TOKEN_PRESSURE, policy_settings
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.processes import available_memory_mb, kill_marked, process_create_time, task_marker
from awoc_scripts.state.run_state import initial_state, orchestrator_alive
from awoc_scripts.state.store import Run, TaskFiles, atomic_write_json, file_lock, now_iso, read_json
from awoc_scripts.state.task_states import (
    BUDGET_EXCEEDED,
    CANCELLED,
    FAILED,
    FAILURES,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
)

FLUSH_INTERVAL_S = 0.25
RESOURCE_CHECK_INTERVAL_S = 0.5
STREAM_CHECK_INTERVAL_S = 0.2
MAX_TRANSIENT_WAITS = 8
RETRY_BUDGET_FACTOR_TENTHS = 8  # a retry gets 80% of the previous budget
STDERR_TAIL_BYTES = 4000


@dataclass
class Options:
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    min_free_memory_mb: int | None = None  # default: parallel_config's
    cwd: Path = field(default_factory=Path.cwd)
    home: Path = field(default_factory=Path.home)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    memory_probe: Callable[[], float] | None = None  # MB available; replaceable for tests


@dataclass
class TaskRecord:
    budget: int
    attempts: int = 0
    pid: int | None = None
    pid_create_time: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    start_mono: float | None = None
    first_start_mono: float | None = None
    deadline: float | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    result: str = ""
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: float = 0.0
    stop_status: str | None = None  # why we stopped it: timed_out, budget_exceeded, cancelled, requeue
    previous_error: str | None = None
    transient_waits: int = 0
    stream: TurnCounter | None = None
    warnings: list[str] = field(default_factory=list)
    files: TaskFiles | None = None


class Orchestrator:
    def __init__(
        self,
        run: Run,
        plan: dict[str, Any],
        execution: dict[str, Any],
        executor: Executor,
        display: Any,
        options: Options | None = None,
        resume: bool = False,
        only: set[str] | None = None,
    ) -> None:
        self.run = run
        self.events = run.buffered_events()
        self.plan = plan
        self.options = options or Options()
        self.executor = executor
        self.display = display
        self.config = execution["parallel_config"]
        budgets = {t["task_id"]: t["token_budget"] for t in execution["tasks"]}
        self.tasks = [{**t, "token_budget": budgets[t["task_id"]]} for t in plan["tasks"]]
        self.by_id = {t["task_id"]: t for t in self.tasks}
        self.metrics = graph_metrics(self.tasks)
        self.state = self._load_state(resume)
        saved = self.state["tasks"]
        self.records = {tid: TaskRecord(int(saved[tid]["token_budget"])) for tid in self.by_id}
        status = {tid: saved[tid]["status"] for tid in self.by_id}
        self.orphans: list[str] = []
        if resume:
            status = self._prepare_resume(status, only)
        self.scheduler = Scheduler(
            self.tasks, self.metrics.remaining, status=status, budget={tid: r.budget for tid, r in self.records.items()}
        )
        self.max_concurrent = int(self.state.get("max_concurrent") or self.config["max_concurrent"])
        self.batch_token_limit = int(self.config["batch_token_limit"])
        self.total_budget = int(self.config["total_token_budget"])
        self.total_timeout = float(self.config["total_timeout"])
        self.failure_tolerance = int(self.config["failure_tolerance"])
        self.shared_context = str(self.config.get("shared_context") or "")
        self.policies = policy_settings(self.config)
        configured = self.config.get("min_free_memory_mb", 256)
        self.min_free_mb = float(
            configured if self.options.min_free_memory_mb is None else self.options.min_free_memory_mb
        )
        self.stop_reason: str | None = None  # set once: nothing new starts after it
        self.exit_code = OK
        self.failed_count = 0
        self.results: dict[str, dict[str, Any]] = {}  # the result files written by this execution
        self.retry_at: dict[str, float] = {}  # tasks waiting out a rate limit, and until when
        self._pending_signal: int | None = None  # SIGINT or SIGTERM received, not acted on yet
        self._agents: dict[str, AgentDefinition] = {}
        self.tokens_spent = sum(r.tokens.total for r in self.records.values())
        self.no_new_starts = False
        self.levers_pulled: set[str] = set()
        self.started_mono = time.monotonic()
        self._dirty = True
        self._last_flush = 0.0
        # our last state.json, held open so its inode cannot be reused: any other writer's atomic
        # replace then shows as another inode (mtimes can tie within one clock tick)
        self._state_fd: int | None = None
        self._state_ino: int | None = None
        self._last_resource_check = 0.0
        self._last_stream_check = 0.0
        self._marked_finished: set[str] = {tid for tid, s in status.items() if s in TERMINAL}

    # -- state ------------------------------------------------------------------------------

    def _load_state(self, resume: bool) -> dict[str, Any]:
        state: dict[str, Any] = read_json(self.run.state_file, default={})
        if state and orchestrator_alive(state):
            pid = state["orchestrator"]["pid"]
            raise StateError(f"run {self.run.run_id} is being executed right now by process {pid}")
        if not state:
            state = initial_state(self.run)
        elif not resume and any(t["status"] != PENDING for t in state["tasks"].values() if t["status"] != CANCELLED):
            resume_command = command_for("delegate-parallel", "resume", self.run.run_id)
            raise StateError(f"run {self.run.run_id} has already run; use `{resume_command}`")
        return state

    def _prepare_resume(self, status: dict[str, str], only: set[str] | None) -> dict[str, str]:
        """Keep what succeeded; everything else runs again (or, with `only`, just those tasks).
        Kill whatever a dead orchestrator left running."""
        saved = self.state["tasks"]
        self.orphans = [tid for tid, task_status in status.items() if task_status == RUNNING]
        killed = kill_marked(self.run.run_id)
        if killed or self.orphans:
            self.events.add("resume-cleanup", orphaned_tasks=self.orphans, killed_pids=killed)
        fresh = {}
        for tid, task_status in status.items():
            if task_status == SUCCEEDED or (only is not None and tid not in only and task_status in TERMINAL):
                fresh[tid] = task_status
                self._restore_record(tid)
            elif only is not None and tid not in only:
                fresh[tid] = CANCELLED  # not part of this retry, and it cannot have a result now
                self.records[tid].reason = "not run: not part of the retried tasks"
            else:
                fresh[tid] = PENDING
                self.records[tid].previous_error = saved[tid].get("previous_error")
                if self.records[tid].previous_error is None:  # a retry keeps its reduced budget
                    self.records[tid].budget = int(self.by_id[tid]["token_budget"])
            saved[tid]["status"] = fresh[tid]
        return fresh

    def _restore_record(self, tid: str) -> None:
        """A task that keeps its outcome: what it produced, from its result file."""
        rec = self.records[tid]
        previous = read_json(self.run.task_files(tid).result, default={})
        rec.result = str(previous.get("result", ""))
        rec.attempts = int(previous.get("attempts", 1))
        rec.tokens = Tokens(**{k: v for k, v in previous.get("tokens_used", {}).items() if k != "total"})
        rec.cost_usd = float(previous.get("cost_usd") or 0)
        rec.started_at = previous.get("started_at")
        rec.finished_at = previous.get("finished_at")
        rec.exit_code = previous.get("exit_code")
        rec.error = previous.get("error")
        rec.reason = previous.get("reason")

    def _snapshot(self) -> dict[str, Any]:
        for tid in self.executor.running():  # not reaped yet, so their pids are still theirs
            rec = self.records[tid]
            if rec.pid is not None and rec.pid_create_time is None:
                rec.pid_create_time = process_create_time(rec.pid)
        tasks = {}
        for tid, rec in self.records.items():
            tasks[tid] = {
                "status": self.scheduler.status[tid],
                "token_budget": self.scheduler.budget[tid],
                "attempts": rec.attempts,
                "pid": rec.pid,
                "pid_create_time": rec.pid_create_time,
                "started_at": rec.started_at,
                "finished_at": rec.finished_at,
                "exit_code": rec.exit_code,
                "error": rec.error,
                "reason": self.scheduler.reason.get(tid) or rec.reason,
                "tokens_used": rec.tokens.as_dict(),
                "cost_usd": round(rec.cost_usd, 9),
                "previous_error": rec.previous_error,
            }
        return tasks

    def _flush(self, status: str = "running", final: bool = False) -> None:
        """Write our view to state.json, keeping (and applying) lever requests made meanwhile."""
        self.events.flush()
        with file_lock(self.run.state_file):
            disk: dict[str, Any] = read_json(self.run.state_file, default={})
            controls = disk.get("controls", self.state.get("controls", []))
            self.state["controls"] = controls
            if not final:
                for control in apply_pending_controls(self.state, self, f"orchestrator (pid {os.getpid()})"):
                    self.events.add(
                        "lever",
                        action=control["action"],
                        args=control["args"],
                        changed=control["changed"],
                        applied_by="orchestrator",
                    )
                    self.display.note(f"lever {control['action']} applied")
            if self.state.get("executions"):
                self.state["executions"][-1]["active_s"] = round(time.monotonic() - self.started_mono, 3)
            self.state.update(
                status=status,
                tasks=self._snapshot(),
                max_concurrent=self.max_concurrent,
                revision=int(disk.get("revision", 0)) + 1,
                updated_at=now_iso(),
                stop_reason=self.stop_reason,
            )
            if final:
                self.state["orchestrator"] = None
            atomic_write_json(self.run.state_file, self.state)
            self._hold_state_file(close=final)
        self._dirty = False
        self._last_flush = time.monotonic()

    def _state_changed_by_others(self) -> bool:
        try:
            return os.stat(self.run.state_file).st_ino != self._state_ino
        except FileNotFoundError:
            return True

    def _hold_state_file(self, close: bool = False) -> None:
        """Called under the state lock, right after our write: nobody can have replaced it yet."""
        if self._state_fd is not None:
            os.close(self._state_fd)
            self._state_fd = None
        if close:
            return
        self._state_fd = os.open(self.run.state_file, os.O_RDONLY | os.O_CLOEXEC)
        self._state_ino = os.fstat(self._state_fd).st_ino

    # -- LeverTarget: the levers act on the live run ---------------------------------------

    def pending(self) -> list[str]:
        return self.scheduler.ids_with(PENDING)

    def priority_of(self, task_id: str) -> str:
        return str(self.by_id[task_id]["priority"])

    def budget_of(self, task_id: str) -> int:
        return self.scheduler.budget[task_id]

    def set_budget(self, task_id: str, budget: int) -> None:
        self.scheduler.set_budget(task_id, budget)
        self.records[task_id].budget = budget

    def cancel(self, task_ids: list[str], reason: str) -> list[tuple[str, str]]:
        skipped = self.scheduler.cancel(task_ids, reason)
        for tid in task_ids:
            if self.scheduler.status[tid] == CANCELLED:
                self._finalize(tid, CANCELLED, reason=reason)
        self._finalize_skipped(skipped)
        return skipped

    def set_max_concurrent(self, value: int) -> int:
        previous, self.max_concurrent = self.max_concurrent, value
        return previous

    def status_of(self, task_id: str) -> str:
        return self.scheduler.status[task_id]

    def error_of(self, task_id: str) -> str | None:
        return self.records[task_id].error

    def requeue_ended(self, task_id: str, previous_error: str) -> list[str]:
        """parallel-task-retry while we run: the task (and what was skipped for it) runs again."""
        if self.stop_reason is not None or self.no_new_starts:
            raise ValueError(f"the run is stopping: {self.stop_reason or 'no new task may start'}")
        was_failure = self.scheduler.status[task_id] in FAILURES
        reopened = self.scheduler.reopen(task_id)  # ValueError if it cannot run again
        if was_failure:
            self.failed_count = max(0, self.failed_count - 1)
        for tid in (task_id, *reopened):
            self._marked_finished.discard(tid)
            self.records[tid].reason = None
            self.records[tid].error = None
        self.records[task_id].previous_error = previous_error
        self._dirty = True
        return reopened

    def abort_run(self, reason: str) -> dict[str, Any]:
        """parallel-execution-aborter while we run."""
        if self.stop_reason is not None:
            return {"aborted": False, "why": f"already stopping: {self.stop_reason}", "cancelled": []}
        running, pending = self.executor.running(), self.pending()
        self._abort(reason)
        return {"aborted": True, "reason": reason, "cancelled": pending, "were_running": running}

    # -- the loop ---------------------------------------------------------------------------

    def execute(self) -> int:
        handlers = self._install_signal_handlers()
        try:
            self._begin()
            self._loop()
        except BaseException as exc:
            self.stop_reason = self.stop_reason or f"orchestrator error: {exc!r}"
            self.exit_code = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else ABORTED
            raise
        finally:
            try:
                self._shutdown()
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        return self.exit_code

    def _begin(self) -> None:
        self.run.make_dirs()
        me = os.getpid()
        self.state["orchestrator"] = {"pid": me, "create_time": process_create_time(me), "started_at": now_iso()}
        self.state.pop("stop_reason", None)
        # each execution's own span: the report's total time adds these, not the idle gaps between resumes
        self.state.setdefault("executions", []).append({"started_at": now_iso(), "active_s": 0.0})
        self._finalize_skipped(self.scheduler.initially_skipped)
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
            if self._state_changed_by_others():
                self._flush()  # picks up lever requests
            if self.stop_reason is None:
                self._enforce_time(now)
            if self.stop_reason is None and now - self._last_resource_check >= RESOURCE_CHECK_INTERVAL_S:
                self._enforce_resources(now)
            if self.stop_reason is None and not self.no_new_starts:
                self._release_due_retries(now)
                self._start_ready()
            idle = not self.executor.running() and not self._waiting_to_retry()
            if idle and (self.stop_reason is not None or not self._start_possible()):
                break
            ended = self.executor.wait(self._wait_timeout(now))
            for end in ended:
                self._on_ended(end)
            if ended and self.stop_reason is None:
                self._enforce_tokens()
            self._check_deadlines_and_budgets()
            if self._dirty and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                self._flush()
            else:
                self.events.flush()
            self.display.tick(self)

    def _start_possible(self) -> bool:
        """Nothing runs: is there anything left that could start?"""
        return not self.no_new_starts and bool(self.scheduler.ready_ids())

    def _waiting_to_retry(self) -> bool:
        return bool(self.retry_at)

    def _wait_timeout(self, now: float) -> float:
        """Until the next deadline of a running task or the next retry, at most one flush away."""
        moments = [self.records[t].deadline for t in self.executor.running()] + list(self.retry_at.values())
        soonest = min((m for m in moments if m is not None), default=now + FLUSH_INTERVAL_S)
        return min(FLUSH_INTERVAL_S, max(0.0, soonest - now))

    # -- starting ---------------------------------------------------------------------------

    def _start_ready(self) -> None:
        while self._pending_signal is None:
            decision = self.scheduler.next_start(self.executor.running(), self.max_concurrent, self.batch_token_limit)
            if decision is None:
                return
            if decision.alone_over_batch_limit:
                self.events.add(
                    "batch-limit-exceeded",
                    task_id=decision.task_id,
                    token_budget=self.scheduler.budget[decision.task_id],
                    batch_token_limit=self.batch_token_limit,
                )
            self._launch(decision.task_id)

    def _launch(self, tid: str) -> None:
        task = self.by_id[tid]
        rec = self.records[tid]
        rec.attempts += 1
        rec.stop_status = None
        files = rec.files = self.run.task_files(tid)
        agent = self._agent(task["agent"])
        env = task_environment(self.run.run_id, task, rec.budget, str(files.prompt), str(files.dir))
        invocation = build_invocation(task, agent, self.config, self.options.environ, env)
        prompt = compose_prompt(
            task,
            shared_context=self.shared_context,
            role=agent.system_prompt if invocation.role_in_prompt else None,
            token_budget=rec.budget,
            dependencies=self._dependency_results(task),
            previous_error=rec.previous_error,
        )
        files.prepare(prompt)
        attempt = Attempt(
            tid,
            invocation,
            self.options.cwd,
            files.prompt,
            files.stdout,
            files.stderr,
            task_marker(self.run.run_id, tid),
        )
        self.scheduler.start(tid)
        rec.started_at = rec.started_at if rec.attempts > 1 and rec.started_at else now_iso()
        rec.start_mono = time.monotonic()
        rec.first_start_mono = rec.first_start_mono or rec.start_mono
        rec.deadline = rec.start_mono + float(task["timeout"])
        rec.stream = TurnCounter() if invocation.stream else None
        try:
            started = self.executor.start(attempt)
        except OSError as exc:
            rec.deadline = None
            rec.error = f"cannot start {invocation.argv[0]!r}: {exc.strerror or exc}"
            self._end_task(tid, FAILED, allow_retry=False)
            return
        rec.pid, rec.pid_create_time = started.pid, None  # read when the state is written
        self._dirty = True
        self.events.add(
            "task-start",
            task_id=tid,
            agent=task["agent"],
            attempt=rec.attempts,
            pid=started.pid,
            token_budget=rec.budget,
        )
        self.display.task_started(tid, rec)

    def _agent(self, name: str) -> AgentDefinition:
        if name not in self._agents:
            self._agents[name] = find_agent(name, self.options.cwd, self.options.home)
        return self._agents[name]

    def _dependency_results(self, task: Mapping[str, Any]) -> list[DependencyResult]:
        out = []
        for dep in task["dependencies"]:
            status = self.scheduler.status[dep]
            if status in TERMINAL and (status == SUCCEEDED or task["dependency_mode"] == "conditional"):
                dep_task = self.by_id[dep]
                text = self.records[dep].result or (self.records[dep].error or "")
                out.append(
                    DependencyResult(
                        dep, dep_task["agent"], status, text, str(self.run.result_file(dep_task["agent"], dep))
                    )
                )
        return out

    # -- ending -----------------------------------------------------------------------------

    def _on_ended(self, end: Ended) -> None:
        tid = end.task_id
        rec = self.records[tid]
        files = rec.files or self.run.task_files(tid)
        rec.exit_code = end.exit_code
        rec.deadline = None
        stdout = _read_bytes(files.stdout)
        stderr_tail = _read_tail(files.stderr, STDERR_TAIL_BYTES) if end.exit_code != 0 else ""
        outcome = read_outcome(end.exit_code, stdout, stderr_tail)
        attempt_tokens = outcome.tokens
        if rec.stream is not None and rec.stream.total().total > attempt_tokens.total:
            attempt_tokens = rec.stream.total()  # stopped before its final result line
        rec.tokens = rec.tokens + attempt_tokens
        self.tokens_spent += attempt_tokens.total
        rec.cost_usd += float(outcome.cost_usd or 0)
        rec.result = outcome.result
        if rec.stop_status == "requeue":
            rec.attempts -= 1
            self.scheduler.requeue(tid)
            self.events.add("task-requeued", task_id=tid, reason="low memory")
            return
        if end.stopped and rec.stop_status:
            status = rec.stop_status
            rec.error = rec.error or outcome.error
        elif outcome.ok:
            status = SUCCEEDED
            rec.error = None
            if attempt_tokens.total > rec.budget:
                rec.warnings.append(f"used {attempt_tokens.total} tokens, over its budget of {rec.budget}")
        else:
            rec.error = outcome.error
            if outcome.transient and rec.transient_waits < MAX_TRANSIENT_WAITS and self.stop_reason is None:
                self._wait_and_retry(tid, outcome.error or "rate limited")
                return
            status = FAILED
        self._end_task(tid, status, allow_retry=self.stop_reason is None)

    def _wait_and_retry(self, tid: str, error: str) -> None:
        """Rate limit or overload: not the task's fault. Wait with backoff; it does not count."""
        rec = self.records[tid]
        delay = min(self.options.backoff_max_s, self.options.backoff_base_s * 2**rec.transient_waits)
        rec.transient_waits += 1
        rec.attempts -= 1
        self.retry_at[tid] = time.monotonic() + delay
        self.events.add("task-rate-limited", task_id=tid, wait_s=delay, error=error[:500])
        self.display.note(f"{tid}: rate limited, retrying in {delay:g} s")

    def _release_due_retries(self, now: float) -> None:
        for tid, moment in list(self.retry_at.items()):
            if now >= moment:
                del self.retry_at[tid]
                self.scheduler.requeue(tid)

    def _end_task(self, tid: str, status: str, allow_retry: bool) -> None:
        rec = self.records[tid]
        task = self.by_id[tid]
        if status in FAILURES and allow_retry and rec.attempts <= int(task["retries"]):
            rec.previous_error = rec.error or status
            new_budget = max(1, rec.budget * RETRY_BUDGET_FACTOR_TENTHS // 10)
            self.set_budget(tid, new_budget)
            self.events.add(
                "task-retry",
                task_id=tid,
                attempt=rec.attempts + 1,
                status=status,
                error=(rec.error or "")[:500],
                token_budget=new_budget,
            )
            self.display.note(f"{tid}: {status}, retrying with reduced scope")
            self.scheduler.requeue(tid)
            self._dirty = True
            return
        skipped = self.scheduler.finish(tid, status)
        self._finalize(tid, status)
        self._finalize_skipped(skipped)
        if status in FAILURES:
            self.failed_count += 1
            if self.failed_count > self.failure_tolerance and self.stop_reason is None:
                self._abort(
                    f"failure tolerance exceeded: {self.failed_count} tasks failed, {self.failure_tolerance} tolerated"
                )

    def _finalize_skipped(self, skipped: list[tuple[str, str]]) -> None:
        for tid, reason in skipped:
            self._finalize(tid, SKIPPED, reason=reason)

    def _finalize(self, tid: str, status: str, reason: str | None = None) -> None:
        """A task reached its final state: write its result file and tell the world."""
        if tid in self._marked_finished:
            return
        self._marked_finished.add(tid)
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
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "duration_s": duration,
            "error": rec.error if status != SUCCEEDED else None,
            "reason": rec.reason,
            "warnings": rec.warnings,
            "dependencies": task["dependencies"],
        }
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
        self._dirty = True
        self.display.task_ended(tid, status, rec)

    # -- limits -----------------------------------------------------------------------------

    def _check_deadlines_and_budgets(self) -> None:
        now = time.monotonic()
        check_streams = now - self._last_stream_check >= STREAM_CHECK_INTERVAL_S
        if check_streams:
            self._last_stream_check = now
        for tid in self.executor.running():
            rec = self.records[tid]
            if rec.stop_status:
                continue
            if rec.deadline is not None and now >= rec.deadline:
                rec.error = f"timed out after {self.by_id[tid]['timeout']:g} s"
                self._stop(tid, TIMED_OUT)
            elif check_streams and rec.stream is not None and rec.files is not None:
                used = rec.stream.feed(_read_from(rec.files.stdout, rec.stream.offset)).total
                if used > rec.budget:
                    rec.error = f"used {used} tokens, over its budget of {rec.budget}"
                    self._stop(tid, BUDGET_EXCEEDED)

    def _stop(self, tid: str, status: str) -> None:
        self.records[tid].stop_status = status
        self.executor.stop(tid)
        self.events.add("task-stop", task_id=tid, status=status, error=self.records[tid].error)

    def _enforce_time(self, now: float) -> None:
        elapsed = now - self.started_mono
        if elapsed >= self.total_timeout:
            self._abort(f"total timeout of {self.total_timeout:g} s reached", running_status=TIMED_OUT)
        elif self.policies["time_pressure"] and elapsed >= TIME_PRESSURE * self.total_timeout:
            self._pull_lever(
                EMERGENCY, {}, f"time_pressure: {elapsed:.0f} s of the {self.total_timeout:g} s total timeout used"
            )

    def _enforce_resources(self, now: float) -> None:
        self._last_resource_check = now
        self._enforce_tokens()
        running = self.executor.running()
        free_mb = self._free_memory_mb()
        if self.policies["memory_pressure"] and free_mb < self.min_free_mb:
            self._pull_lever(SEQUENTIAL, {}, f"memory_pressure: {free_mb:.0f} MB free, under {self.min_free_mb:g} MB")
            if free_mb < self.min_free_mb / 2 and len(running) > 1:
                youngest = max(running, key=lambda t: self.records[t].start_mono or 0)
                self.records[youngest].stop_status = "requeue"
                self.executor.stop(youngest)
                self.events.add("memory-pressure", free_mb=round(free_mb), stopped=youngest)
                self.display.note(f"memory_pressure: {free_mb:.0f} MB free, {youngest} stopped to run again later")

    def _enforce_tokens(self) -> None:
        """Checked after every task end, before anything new starts."""
        spent = self.tokens_spent
        counts_in_flight = self.policies["token_pressure_counts_in_flight"]
        in_flight = sum(self.scheduler.budget[t] for t in self.executor.running()) if counts_in_flight else 0
        if spent >= self.total_budget:
            if not self.no_new_starts:
                self.no_new_starts = True
                self.stop_reason = f"token budget exhausted: {spent} of {self.total_budget} tokens used"
                self.exit_code = ABORTED
                self.events.add("token-budget-exhausted", spent=spent, total=self.total_budget)
                self.display.note(f"token budget exhausted: {spent} of {self.total_budget} tokens; nothing new starts")
                self.cancel(self.pending(), "token budget exhausted")
        elif self.policies["token_pressure"] and spent + in_flight > TOKEN_PRESSURE * self.total_budget:
            counted = f"{spent} spent + {in_flight} reserved by running tasks" if counts_in_flight else f"{spent} spent"
            self._pull_lever(REDUCE, {"percent": 20}, f"token_pressure: {counted} of {self.total_budget} tokens")

    def _free_memory_mb(self) -> float:
        if self.options.memory_probe is not None:
            return self.options.memory_probe()
        return available_memory_mb()

    def _pull_lever(self, action: str, args: dict[str, Any], why: str) -> None:
        if action in self.levers_pulled:
            return
        self.levers_pulled.add(action)
        changed = apply_lever(action, args, self)
        self.events.add("lever", action=action, args=args, changed=changed, applied_by="orchestrator", why=why)
        self.display.note(f"{action}: {why}")
        self._dirty = True

    def _abort(self, reason: str, running_status: str = CANCELLED) -> None:
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
        for tid in list(self.retry_at):
            del self.retry_at[tid]
            self.scheduler.requeue(tid)
        self.cancel(self.pending(), reason)

    def _note_signal(self, signum: int, frame: Any) -> None:
        # Only noted here: the handler may run in the middle of any step (between a spawn and
        # its bookkeeping, say); the loop acts on it at its next safe point, within 0.25 s.
        self._pending_signal = signum

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._note_signal)
        return previous

    # -- the end ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.executor.shutdown()
        leftovers = kill_marked(self.run.run_id)
        if leftovers:
            self.events.add("leftover-processes-killed", pids=leftovers)
        for tid in self.executor.running():
            self._end_task(tid, CANCELLED, allow_retry=False)
        self.cancel(self.pending(), self.stop_reason or "run ended")
        for tid in self.scheduler.ids_with(RUNNING):  # stopped and reaped, or waiting to retry
            status = self.records[tid].stop_status or CANCELLED
            skipped = self.scheduler.finish(tid, status if status in TERMINAL else CANCELLED)
            self._finalize(tid, self.scheduler.status[tid], reason=self.stop_reason)
            self._finalize_skipped(skipped)
        final_status = self._final_status()
        self.events.add(
            "run-end",
            status=final_status,
            exit_code=self.exit_code,
            reason=self.stop_reason,
            elapsed_s=round(time.monotonic() - self.started_mono, 3),
        )
        self._flush(final_status, final=True)
        self.display.end(self)

    def _final_status(self) -> str:
        """The run's end, as the exit code says it: only a run in which every task succeeded is 0."""
        statuses = self.scheduler.status.values()
        if self.exit_code == OK and any(s != SUCCEEDED for s in statuses):
            self.exit_code = TASKS_FAILED
        if self.exit_code == TASKS_FAILED:
            return "finished_with_failures" if any(s in FAILURES for s in statuses) else "incomplete"
        return {OK: "succeeded", ABORTED: "aborted", INTERRUPTED: "interrupted"}.get(self.exit_code, "failed")

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for status in self.scheduler.status.values():
            counts[status] = counts.get(status, 0) + 1
        return {
            "run_id": self.run.run_id,
            "status": self.state.get("status"),
            "exit_code": self.exit_code,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(time.monotonic() - self.started_mono, 3),
            "counts": counts,
            "tokens_used": sum(r.tokens.total for r in self.records.values()),
            "cost_usd": round(sum(r.cost_usd for r in self.records.values()), 9),
        }


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _read_tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _read_from(path: Path, offset: int) -> bytes:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read()
    return b""
