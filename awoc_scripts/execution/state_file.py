"""state.json of the run being executed: loaded once, kept in memory, written back under its lock.

Resume preparation lives here too: which saved outcomes stand, which tasks run again, and what
a dead orchestrator left running.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from awoc_scripts.errors import StateError
from awoc_scripts.execution.attempt_report import Tokens
from awoc_scripts.execution.outcomes import attempt_outcome
from awoc_scripts.launcher import command_for
from awoc_scripts.processes import USABLE_CPUS, kill_marked, process_create_time, process_start_ticks
from awoc_scripts.state.owner import initial_state, orchestrator_alive
from awoc_scripts.state.reconcile import task_ends
from awoc_scripts.state.shapes import NOT_OURS, requested_controls, result_problem
from awoc_scripts.state.statuses import CANCELLED, PENDING, RUNNING, SUCCEEDED, TERMINAL
from awoc_scripts.state.store import EventBuffer, Run, atomic_write_json, file_lock, now_iso, parse_iso, read_json
from awoc_scripts.state.task_results import result_from_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.plan_types import ExecutionPlan, Task
    from awoc_scripts.run_documents import LoopFields, RunState, TaskState


class StateFile:
    def __init__(self, run: Run, resume: bool, execution: ExecutionPlan) -> None:
        """EXECUTION: the run's execution plan, as the loop holds it (read from disk, 100,000
        tasks take a second)."""
        self.run = run
        self.data = self._load(resume, execution)
        # our last state.json, held open so its inode cannot be reused: any other writer's atomic
        # replace then shows as another inode (mtimes can tie within one clock tick)
        self._fd: int | None = None
        self._ino: int | None = None
        self._children_cpu_before = 0.0  # when this execution began

    @property
    def tasks(self) -> dict[str, TaskState]:
        tasks: dict[str, TaskState] = self.data["tasks"]
        return tasks

    def _load(self, resume: bool, execution: ExecutionPlan) -> RunState:
        state = self.run.read_state(task_ids=[t["task_id"] for t in execution["tasks"]])
        owner = state.get("orchestrator") if state else None
        if owner and orchestrator_alive(state):
            pid = owner["pid"]
            raise StateError(f"run {self.run.run_id} is being executed right now by process {pid}")
        if not state:
            state = initial_state(self.run, execution)
        elif not resume and any(t["status"] != PENDING for t in state["tasks"].values() if t["status"] != CANCELLED):
            resume_command = command_for("delegate-parallel", "resume", self.run.run_id)
            raise StateError(f"run {self.run.run_id} has already run; use `{resume_command}`")
        return state

    def prepare_resume(
        self,
        records: dict[str, TaskRecord],
        by_id: dict[str, Task],
        plan_budgets: dict[str, int],
        only: set[str] | None,
        events: EventBuffer,
    ) -> tuple[dict[str, str], list[str]]:
        """Keep what succeeded; everything else runs again (or, with `only`, just those tasks).
        Kill whatever a dead orchestrator left running. Returns the statuses to start from and
        the tasks that were running when it died."""
        saved = self.tasks
        status = {tid: str(saved[tid]["status"]) for tid in records}
        orphans = [tid for tid, task_status in status.items() if task_status == RUNNING]
        # A task's result file is written the moment it ends; state.json follows up to a flush
        # later. Killed in between, state.json still says running (or pending): the result wins,
        # so finished work never runs twice.
        ended = [tid for tid, end in task_ends(self.run, self.data).items() if end == SUCCEEDED]
        for tid in ended:
            status[tid] = SUCCEEDED
        if ended:
            events.add("resume-kept-finished", task_ids=ended)
        killed = kill_marked(self.run.run_id)
        if killed or orphans:
            events.add("resume-cleanup", orphaned_tasks=orphans, killed_pids=killed)
        fresh = {}
        for tid, task_status in status.items():
            rec = records[tid]
            if task_status == SUCCEEDED or (only is not None and tid not in only and task_status in TERMINAL):
                fresh[tid] = task_status
                if self._result_lost(tid):
                    self._write_lost_result(by_id[tid])
                    events.add("resume-rewrote-result", task_id=tid)
                self._restore_record(tid, rec)
            elif only is not None and tid not in only:
                fresh[tid] = CANCELLED  # not part of this retry, and it cannot have a result now
                rec.reason = "not run: not part of the retried tasks"
            else:
                fresh[tid] = PENDING
                rec.previous_error = saved[tid].get("previous_error")
                if rec.previous_error is None:  # a retry keeps its reduced budget
                    rec.budget = plan_budgets[tid]
            saved[tid]["status"] = fresh[tid]
        return fresh, orphans

    def _result_lost(self, tid: str) -> bool:
        """The task ran and ended, but its result file is not there: writing it failed (a full disk)."""
        return self.tasks[tid].get("started_at") is not None and not self.run.task_files(tid).result.exists()

    def _write_lost_result(self, task: Task) -> None:
        """The lost result file again, from state.json and the output the task left: its work is kept,
        so the report must show what it produced and how long it took, not an empty 0 s."""
        saved = self.tasks[task["task_id"]]
        files = self.run.task_files(task["task_id"])
        outcome, _tokens = attempt_outcome(int(saved.get("exit_code") or 0), files, None, not task.get("command"))
        result = result_from_state(self.run, task, saved)
        result["result"] = outcome.result
        started, finished = parse_iso(saved.get("started_at")), parse_iso(saved.get("finished_at"))
        if started is not None and finished is not None:
            result["duration_s"] = round(max(0.0, finished - started), 3)
        self.run.write_task_result(task["agent"], task["task_id"], result)

    def _restore_record(self, tid: str, rec: TaskRecord) -> None:
        """A task that keeps its outcome: what it produced, from its result file."""
        path = self.run.task_files(tid).result
        previous = read_json(path, default={})
        problem = result_problem(previous)
        if problem:  # its work is kept, so what it says must be usable
            raise StateError(f"{path}: {problem} {NOT_OURS}")
        rec.result = str(previous.get("result", ""))
        rec.attempts = int(previous.get("attempts", 1))
        rec.tokens = Tokens(**{k: v for k, v in previous.get("tokens_used", {}).items() if k != "total"})
        rec.counted = int(previous.get("tokens_counted", rec.tokens.total))
        rec.cost_usd = float(previous.get("cost_usd") or 0)
        rec.started_at = previous.get("started_at")
        rec.finished_at = previous.get("finished_at")
        rec.exit_code = previous.get("exit_code")
        rec.error = previous.get("error")
        rec.reason = previous.get("reason")
        rec.denials = list(previous.get("permission_denials") or [])
        rec.warnings = [str(w) for w in previous.get("warnings") or []]

    def begin_execution(self) -> None:
        me = os.getpid()
        self.data["orchestrator"] = {
            "pid": me,
            "create_time": process_create_time(me),
            "start_ticks": process_start_ticks(me),
            "started_at": now_iso(),
        }
        self.data.pop("stop_reason", None)
        # each execution's own span: the report's total time adds these, not the idle gaps between resumes
        self.data.setdefault("executions", []).append(
            {"started_at": now_iso(), "active_s": 0.0, "tasks_cpu_s": 0.0, "cpus": USABLE_CPUS}
        )
        self._children_cpu_before = children_cpu_s()

    def flush(
        self,
        *,
        status: str,
        final: bool,
        active_s: float,
        apply_controls: Callable[[RunState], None],
        snapshot: Callable[[], dict[str, TaskState]],
        fields: Callable[[], LoopFields],
    ) -> None:
        """Write our view to state.json, keeping (and, unless final, applying) lever requests made meanwhile."""
        with file_lock(self.run.state_file):
            # the file we hold is still the file: nobody wrote since we did, so no lever waits in it
            disk = read_json(self.run.state_file, default={}) if self.changed_by_others() else {}
            disk = disk if isinstance(disk, dict) else {}
            # only what levers add is taken from the file, and only in its shape (the whole check
            # costs 2 µs a task at every flush); anything else there is ours to overwrite
            self.data["controls"] = requested_controls(disk, self.data.get("controls", []))
            if not final:
                apply_controls(self.data)
            if self.data.get("executions"):
                self.data["executions"][-1]["active_s"] = round(active_s, 3)
                self.data["executions"][-1]["tasks_cpu_s"] = round(children_cpu_s() - self._children_cpu_before, 3)
            self.data["status"] = status
            self.data["tasks"] = snapshot()
            self.data["revision"] = (
                disk["revision"] if type(disk.get("revision")) is int else self.data.get("revision", 0)
            ) + 1
            self.data["updated_at"] = now_iso()
            loop = fields()  # after the levers: what they changed is what is written
            self.data["max_concurrent"], self.data["stop_reason"] = loop["max_concurrent"], loop["stop_reason"]
            self.data["effective_concurrency"] = loop["effective_concurrency"]
            self.data["paused_until"], self.data["warm_agents"] = loop["paused_until"], loop["warm_agents"]
            if final:
                self.data["orchestrator"] = None
            atomic_write_json(self.run.state_file, self.data)
            self._hold(close=final)

    def changed_by_others(self) -> bool:
        try:
            return os.stat(self.run.state_file).st_ino != self._ino
        except FileNotFoundError:
            return True

    def _hold(self, close: bool = False) -> None:
        """Called under the state lock, right after our write: nobody can have replaced it yet."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if close:
            return
        self._fd = os.open(self.run.state_file, os.O_RDONLY | os.O_CLOEXEC)
        self._ino = os.fstat(self._fd).st_ino


def note_create_times(records: dict[str, TaskRecord], running: list[str]) -> None:
    """Running tasks are not reaped yet, so their pids are still theirs."""
    for tid in running:
        rec = records[tid]
        if rec.pid is not None and rec.pid_create_time is None:
            rec.pid_create_time = process_create_time(rec.pid)
            rec.pid_start_ticks = process_start_ticks(rec.pid)


def children_cpu_s() -> float:
    """CPU time of this process's children that have ended and been reaped: a run's tasks (with what
    they started and waited for), their checks and git commands."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
