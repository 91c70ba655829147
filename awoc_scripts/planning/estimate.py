"""The estimated schedule: the run simulated with the executor's own ordering and bounds."""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from awoc_scripts.planning.scheduling import GraphMetrics, ReadyTasks, Scheduler, start_ranks, task_duration
from awoc_scripts.state.statuses import SUCCEEDED

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from awoc_scripts.plan_types import Task


@dataclass
class Slot:
    """When a task starts and ends in the estimate."""

    start: float
    end: float


@dataclass
class EstimatedSchedule:
    """The simulated run: when each task starts, the makespan and the peaks."""

    ids: list[str]
    start_of: list[float | None]  # by list position; None for a task the estimate skips
    duration_of: list[float]
    makespan: float
    peak_concurrency: int
    peak_tokens_in_flight: int
    ran_alone_over_limit: list[str] = field(default_factory=list)

    @functools.cached_property
    def slots(self) -> dict[str, Slot]:
        """Each scheduled task's slot, by id (made on first use: 100,000 of them cost)."""
        return {
            tid: Slot(start, start + duration)
            for tid, start, duration in zip(self.ids, self.start_of, self.duration_of, strict=True)
            if start is not None
        }


def estimate_schedule(
    tasks: Sequence[Task],
    metrics: GraphMetrics,
    max_concurrent: int,
    batch_token_limit: int,
    budgets: Mapping[str, int] | None = None,
    rank: Sequence[int] | None = None,
) -> EstimatedSchedule:
    """Every task succeeds and takes its `estimated_duration` (else its `timeout`). METRICS:
    graph_metrics(TASKS). RANK: an order of ready tasks other than the scheduler's (by list
    position, a permutation of them), for a plan whose tasks all wait for all their dependencies."""
    if rank is not None or all(t["dependency_mode"] == "all_complete" for t in tasks):
        return _estimate_all_complete(tasks, metrics, max_concurrent, batch_token_limit, budgets, rank)
    return _estimate_with_scheduler(tasks, metrics.remaining, max_concurrent, batch_token_limit, budgets)


def _estimate_with_scheduler(
    tasks: Sequence[Task],
    remaining_path: Mapping[str, float],
    max_concurrent: int,
    batch_token_limit: int,
    budgets: Mapping[str, int] | None,
) -> EstimatedSchedule:
    """The executor's Scheduler driven by a clock: what partial and conditional dependencies need."""
    scheduler = Scheduler(tasks, remaining_path, budget=dict(budgets or {}))
    duration = {t["task_id"]: task_duration(t) for t in tasks}
    now = 0.0
    running: set[str] = set()
    in_flight = 0  # the running tasks' budgets: summing them at each start costs O(max_concurrent)
    ends: list[tuple[float, int, str]] = []
    slots: dict[str, Slot] = {}
    alone: list[str] = []
    peak_concurrency = peak_tokens = 0
    budget, by_id = scheduler.budget, scheduler.by_id
    while True:
        while decision := scheduler.next_start(running, max_concurrent, batch_token_limit, in_flight):
            tid = decision.task_id
            scheduler.start(tid)
            running.add(tid)
            in_flight += budget[tid]
            slots[tid] = Slot(now, now + duration[tid])
            heapq.heappush(ends, (now + duration[tid], by_id[tid]["index"], tid))
            if decision.alone_over_batch_limit:
                alone.append(tid)
        peak_concurrency = max(peak_concurrency, len(running))
        peak_tokens = max(peak_tokens, in_flight)
        if not ends:
            break
        now = ends[0][0]
        while ends and ends[0][0] <= now:
            _, _, tid = heapq.heappop(ends)
            running.discard(tid)
            in_flight -= budget[tid]
            scheduler.finish(tid, SUCCEEDED)
    ids = [t["task_id"] for t in tasks]
    start_of = [slots[tid].start if tid in slots else None for tid in ids]
    makespan = max((s.end for s in slots.values()), default=0.0)
    return EstimatedSchedule(
        ids, start_of, [duration[tid] for tid in ids], makespan, peak_concurrency, peak_tokens, alone
    )


def _estimate_all_complete(
    tasks: Sequence[Task],
    metrics: GraphMetrics,
    max_concurrent: int,
    batch_token_limit: int,
    budgets: Mapping[str, int] | None,
    rank: Sequence[int] | None = None,
) -> EstimatedSchedule:
    """The same simulation for the common plan where every task waits for all its dependencies:
    with every task succeeding nothing is skipped, so readiness is a countdown, and the
    scheduler's own ordering (start ranks, or RANK when given) and ready set (ReadyTasks) run on
    list positions. A hundred thousand tasks take a third of the time the general scheduler does."""
    ids = [t["task_id"] for t in tasks]
    budget = task_budgets(tasks, budgets)
    waiting = [len(t["dependencies"]) for t in tasks]
    if rank is None:
        rank = start_ranks(tasks, metrics.remaining_of)
    run = list_schedule(metrics.duration, waiting, metrics.dependents, budget, rank, max_concurrent, batch_token_limit)
    return EstimatedSchedule(
        ids,
        run.start,
        metrics.duration,
        run.makespan,
        run.peak_concurrency,
        run.peak_tokens,
        [ids[i] for i in run.alone],
    )


def task_budgets(tasks: Sequence[Task], budgets: Mapping[str, int] | None) -> list[int]:
    """Each task's token budget by list position: BUDGETS where it names one, else the plan's."""
    budget = [int(t["token_budget"]) for t in tasks]
    if budgets:
        budget = [budgets.get(t["task_id"], b) for t, b in zip(tasks, budget, strict=True)]
    return budget


class ListSchedule(NamedTuple):
    """One simulated list schedule, by list position."""

    start: list[float | None]
    makespan: float
    peak_concurrency: int
    peak_tokens: int
    alone: list[int]  # started alone because their budget exceeds the batch token limit


def list_schedule(
    duration: Sequence[float],
    waiting: list[int],
    dependents: Sequence[Sequence[int]],
    budget: Sequence[int],
    rank: Sequence[int],
    max_concurrent: int,
    batch_token_limit: int,
) -> ListSchedule:
    """Start the lowest-ranked ready task whenever a slot and the batch token limit allow, every
    task taking DURATION. WAITING (consumed) counts each task's unfinished dependencies;
    DEPENDENTS lists who waits for each. RANK is a permutation of the list positions."""
    n = len(duration)
    at_rank = [0] * n
    for i, r in enumerate(rank):
        at_rank[r] = i
    ready = ReadyTasks(budget)
    for i in range(n):
        if not waiting[i]:
            ready.push(rank[i], budget[i])

    start: list[float | None] = [None] * n
    now = 0.0
    running = in_flight = 0
    ends: list[tuple[float, int]] = []  # (end, position): equal ends in file order, as the scheduler's
    alone: list[int] = []
    peak_concurrency = peak_tokens = 0
    while True:
        while running < max_concurrent:
            best = ready.take(None if not running else batch_token_limit - in_flight)
            if best is None:
                break
            i = at_rank[best]
            if not running and budget[i] > batch_token_limit:
                alone.append(i)
            running += 1
            in_flight += budget[i]
            start[i] = now
            heapq.heappush(ends, (now + duration[i], i))
        if running > peak_concurrency:
            peak_concurrency = running
        if in_flight > peak_tokens:
            peak_tokens = in_flight
        if not ends:
            break
        now = ends[0][0]
        while ends and ends[0][0] <= now:
            i = heapq.heappop(ends)[1]
            running -= 1
            in_flight -= budget[i]
            for child in dependents[i]:
                waiting[child] -= 1
                if not waiting[child]:
                    ready.push(rank[child], budget[child])
    makespan = max((s + d for s, d in zip(start, duration, strict=True) if s is not None), default=0.0)
    return ListSchedule(start, makespan, peak_concurrency, peak_tokens, alone)
