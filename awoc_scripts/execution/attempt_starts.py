"""Turning the run machine's Start, LookUpCache and Verify into processes, an attempt's end into
the event the machine reads, and a task's end into its result file: the part of the run loop
that makes attempts and keeps what they leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from awoc_scripts.errors import AwocError
from awoc_scripts.execution.attempts import AttemptMaker, dependency_results
from awoc_scripts.execution.isolation.base import CannotStart as CannotMakeWorkdir
from awoc_scripts.execution.machine.events import (
    AttemptEnded,
    CacheHit,
    CacheMiss,
    CannotStart,
    Event,
    Moment,
    Spawned,
    StartFailed,
    TaskEnded,
    VerificationEnded,
)
from awoc_scripts.execution.outcomes import attempt_counted, attempt_outcome
from awoc_scripts.execution.result_cache import ResultCache, cache_key
from awoc_scripts.execution.verification import verification_output, verify_attempt

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from awoc_scripts.execution.executors.base import Ended, Executor
    from awoc_scripts.execution.isolation.workspaces import Workspaces
    from awoc_scripts.execution.run_options import Options
    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.execution.warm_pool import WarmPool
    from awoc_scripts.plan_types import Task
    from awoc_scripts.run_documents import TaskResult
    from awoc_scripts.state.store import Run


class AttemptStarter:
    def __init__(
        self,
        run: Run,
        options: Options,
        executor: Executor,
        workspaces: Workspaces,
        attempts: AttemptMaker,
        pool: WarmPool,
        cache: ResultCache | None,
        tasks: Mapping[str, Task],
        records: Mapping[str, TaskRecord],
        status: Mapping[str, str],
        result_of: Callable[[str, str], TaskResult],
    ) -> None:
        self.run, self.options, self.executor, self.workspaces = run, options, executor, workspaces
        self.attempts, self.pool, self.cache = attempts, pool, cache
        self.by_id, self.records, self.status = tasks, records, status
        self.result_of = result_of  # the machine's result of a task, for one that never started
        self.workdirs: dict[str, Path] = {}  # where each task's current attempt runs
        self.results: dict[str, TaskResult] = {}  # the result of every task that ended in this execution
        # the task folders earlier executions left, before this one makes any: a task that never
        # starts now has one only if it is there (an abort may end 100,000 such tasks at once)
        self.earlier_dirs = run.task_dirs()

    def launch(self, tid: str) -> Event:
        task, rec = self.by_id[tid], self.records[tid]
        deps = dependency_results(self.run, task, self.by_id, self.status, self.records)
        try:
            workdir = self.workdirs[tid] = self.workspaces.workdir(task)
        except CannotMakeWorkdir as exc:
            return CannotStart(tid, str(exc), at=Moment.of_now())
        except AwocError as exc:
            return StartFailed(tid, f"cannot make its working directory: {exc.message}", at=Moment.of_now())
        attempt, invocation = self.attempts.make(task, rec, workdir, deps)
        files = self.run.task_files(tid)
        began = Moment.of_now()  # its clock starts before its process does: starting one is part of its time
        try:
            started = self.executor.start(attempt)
        except OSError as exc:
            error = f"cannot start {invocation.argv[0]!r}: {exc.strerror or exc}"
            return StartFailed(tid, error, files=files, at=began)
        self.pool.launched(tid, started.warm_s)
        return Spawned(tid, started.pid, files, invocation.stream, started.warm_s, at=began)

    def look_up(self, tid: str) -> Event:
        """Has an earlier run succeeded at exactly this task: same command, prompt, files?"""
        import hashlib  # only a run with the cache on loads OpenSSL (3 ms at start-up)

        assert self.cache is not None
        task, rec = self.by_id[tid], self.records[tid]
        deps = dependency_results(self.run, task, self.by_id, self.status, self.records)
        try:
            files = self.workspaces.files_key(task, self.options.cwd)
        except (AwocError, CannotMakeWorkdir):
            files = None
        if files is None:
            return CacheMiss(tid, None, at=Moment.of_now())
        invocation, prompt = self.attempts.invocation_and_prompt(task, rec, deps)
        prompt = prompt.replace(str(self.run.dir), "<run>")  # where its dependencies' files are this time
        depended = [[d.task_id, hashlib.sha256(d.result.encode()).hexdigest()] for d in deps]
        key = cache_key(task, invocation, prompt + orjson.dumps(depended).decode(), files)
        hit = self.cache.lookup(key)
        if hit is None or not self.workspaces.adopt(task, hit["result"]):
            return CacheMiss(tid, key, files, at=Moment.of_now())
        return CacheHit(tid, str(hit.get("run_id")), hit["result"], at=Moment.of_now())

    def verify(self, tid: str) -> Event | None:
        """Run the task's verification where it ran."""
        task, rec = self.by_id[tid], self.records[tid]
        files = rec.files or self.run.task_files(tid)
        env = dict(self.options.environ) | {"AWOC_RUN_ID": self.run.run_id, "AWOC_TASK_ID": tid}
        attempt = verify_attempt(task, self.run.run_id, files, self.workdirs.get(tid, self.options.cwd), env)
        try:
            self.executor.start(attempt)
        except OSError as exc:
            error = f"verification: cannot start {attempt.invocation.argv[0]!r}: {exc.strerror or exc}"
            return StartFailed(tid, error, at=Moment.of_now())
        return None

    def ended(self, end: Ended, verifying: bool) -> Event:
        tid, rec = end.task_id, self.records[end.task_id]
        files = rec.files or self.run.task_files(tid)
        if verifying:
            return VerificationEnded(tid, end.exit_code, end.stopped, verification_output(files), at=Moment.of_now())
        task = self.by_id[tid]
        permissions = task.get("permissions")
        agent, sandboxed = not task.get("command"), bool(permissions and permissions["sandbox"])
        outcome, tokens = attempt_outcome(end.exit_code, files, rec.stream, agent, sandboxed)
        counted = attempt_counted(rec.stream, tokens, files) if agent else 0
        return AttemptEnded(tid, end.exit_code, end.stopped, outcome, tokens, counted, at=Moment.of_now())

    def write_result(self, ended: TaskEnded) -> None:
        """A task ended: its result, with what its isolation adds, in its file (if it ever started)."""
        tid, result = ended.task_id, ended.result
        task, rec = self.by_id[tid], self.records[tid]
        if result is None:
            # It never started, so it produced nothing: no file, and readers build its result from
            # state.json. Unless an earlier execution left one: that one would say something else.
            if tid in self.earlier_dirs:
                self.run.write_task_result(task["agent"], tid, self.result_of(tid, ended.status))
            return
        if ended.started:  # what its isolation adds (its worktree), and where it ran when not here
            extras = self.workspaces.task_ended(task, ended.status, rec.session_id, ran=rec.cached_from is None)
            if "worktree" in extras:
                result["worktree"] = extras["worktree"]
            if "isolation_error" in extras:
                result["isolation_error"] = extras["isolation_error"]
            where = self.executor.where_ran(tid)
            if where:
                result["executed_on"] = where
        self.run.write_task_result(task["agent"], tid, result)
        self.results[tid] = result
        if ended.cache_key and self.cache is not None:
            self.cache.store(ended.cache_key, self.run.run_id, result)
