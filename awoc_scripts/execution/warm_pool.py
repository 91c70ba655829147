"""A pool of warm agents: the process of an agent task starts before the task does, so a task whose
dependencies just ended does not wait for the CLI to start.

The claude CLI reads its prompt from stdin, and its argv is known when the run is planned: the
process is started with its prompt withheld, and the prompt is written when the task really
starts (its timeout, token and money accounting start then). Which tasks: those likely to start
next, that is, ready tasks waiting for a slot, then tasks whose last unfinished dependencies are
running now, best first; never more than `parallel_config.warm_agents` (by default as many as
half the free memory holds at MB_PER_AGENT each, at most `max_concurrent`) and never more than
the run may start at once. A warm process that will not be used (its task cancelled or skipped, the
run stopping or paused, memory short) is stopped at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awoc_scripts.execution.claude_cli import agent_command
from awoc_scripts.processes import USABLE_CPUS
from awoc_scripts.state.statuses import PENDING, RUNNING, SUCCEEDED

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from awoc_scripts.execution.executors.base import Attempt, Executor
    from awoc_scripts.execution.machine.machine import RunMachine
    from awoc_scripts.plan_types import Task
    from awoc_scripts.planning.scheduling import Scheduler
    from awoc_scripts.state.store import EventBuffer

MB_PER_AGENT = 300  # the claude CLI's peak RSS, measured against the fake API (notes/claude-cli.md)
CHECK_INTERVAL_S = 0.25
# A starting CLI keeps a core busy for about half a second: warming while as many processes as
# there are cores are still starting would slow the tasks that run now (measured: +9% makespan)
START_UP_S = 0.5


def default_size(max_concurrent: int, free_mb: float) -> int:
    return max(0, min(max_concurrent, int(free_mb / 2 / MB_PER_AGENT)))


def pool_size(
    tasks: Sequence[Task],
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    max_concurrent: int,
    free_memory_mb: Callable[[], float],
) -> int:
    """How many warm agents a run keeps: none where no task could use one."""
    if not any(not t.get("command") and t["isolation"] == "process" for t in tasks):
        return 0  # nothing here could use a warm agent
    runner = config.get("runner") or {}
    if agent_command(config, environ) and not runner.get("warm_start"):
        return 0  # an agent command that reads its prompt at once
    configured = config.get("warm_agents")
    if configured is not None:
        return int(configured)
    return default_size(max_concurrent, free_memory_mb())


class WarmPool:
    def __init__(self, size: int, executor: Executor, events: EventBuffer) -> None:
        self.size = size
        self.executor = executor
        self.events = events
        self.warmed: dict[str, float] = {}  # task id: when its process started (monotonic)
        self.unwarmable: set[str] = set()  # command tasks, worktree tasks, runners that read the prompt at once
        self.used: dict[str, float] = {}  # task id: how long it had been warm when its prompt was written
        self.discarded = 0
        self.last_check = 0.0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def wanted(self, sched: Scheduler, running: Sequence[str], limit: int, starting: int, now: float) -> list[str]:
        """The tasks to warm now, best first. STARTING: running tasks still in their start-up."""
        starting += sum(1 for since in self.warmed.values() if now - since < START_UP_S)
        room = min(self.size - len(self.warmed), limit - len(self.warmed), USABLE_CPUS - starting)
        if room <= 0:
            return []
        skip = self.warmed.keys() | self.unwarmable
        waiting = [t for t in sched.ready_ids() if t not in skip][:room]
        soon: set[str] = set()
        for tid in running:
            for child in sched.dependents[tid]:
                if child in skip or sched.status[child] != PENDING:
                    continue
                blocking = sched.blocking[child]
                if all(sched.status[d] in (SUCCEEDED, RUNNING) for d in blocking):
                    soon.add(child)
        following = sorted(soon - set(waiting), key=sched.start_order)
        return (waiting + following)[:room]

    def tend(
        self,
        now: float,
        sched: Scheduler,
        limit: int,
        starting: int,
        holding: str | None,
        make: Callable[[str], Attempt | None],
    ) -> bool:
        """Stop the warm processes that will not be used (all of them while HOLDING says why);
        start those of the tasks likely to start next. MAKE: a task's attempt as it will start,
        or None if it cannot be warmed. Returns whether anything changed."""
        changed = False
        for tid in self.executor.warm_ids():
            if holding or sched.status[tid] != PENDING:
                self.discard(tid, holding or sched.status[tid])
                changed = True
        if holding:
            return changed
        for tid in self.wanted(sched, self.executor.running(), limit, starting, now):
            attempt = make(tid)
            try:
                pid = self.executor.warm(attempt) if attempt is not None else None
            except OSError:
                pid = None
            if pid is None:
                self.unwarmable.add(tid)
                continue
            self.warmed[tid] = now
            self.events.add("task-warmed", task_id=tid, pid=pid)
            changed = True
        return changed

    def tend_for(self, machine: RunMachine, now: float, free_mb: float, make: Callable[[str], Attempt | None]) -> bool:
        """tend() for the run MACHINE executes: all held while memory is short or the run stops or pauses."""
        holding = None
        if free_mb < machine.settings.min_free_mb + MB_PER_AGENT:
            holding = "memory short"  # memory pressure stops warm processes first
        elif machine.stop_reason is not None or machine.no_new_starts or machine.pause.active:
            holding = "run stopping or paused"
        records = machine.records
        starting = sum(1 for t in machine.running() if now - (records[t].start_mono or 0.0) < START_UP_S)
        return self.tend(now, machine.scheduler, machine.limit(now), starting, holding, make)

    def discard(self, tid: str, why: str) -> None:
        self.executor.discard_warm(tid)
        self.warmed.pop(tid, None)
        self.discarded += 1
        self.events.add("task-warm-discarded", task_id=tid, why=why)

    def launched(self, tid: str, warm_s: float | None) -> None:
        """TID started: on its warm process (WARM_S: how long it had waited), or cold."""
        was_warm = self.warmed.pop(tid, None) is not None
        if warm_s is not None:
            self.used[tid] = warm_s
            self.events.add("task-warm-used", task_id=tid, warm_s=round(warm_s, 3))
        elif was_warm:
            self.discarded += 1
            why = "started cold: its command or environment changed since it was warmed (a budget, say)"
            self.events.add("task-warm-discarded", task_id=tid, why=why)
