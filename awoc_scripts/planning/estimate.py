"""The estimated schedule: the run simulated with the executor's own ordering and bounds."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from awoc_scripts.planning.scheduling import Scheduler, task_duration
from awoc_scripts.state.statuses import SUCCEEDED

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from awoc_scripts.plan_types import Task


@dataclass
class Slot:
    start: float
    end: float


@dataclass
class EstimatedSchedule:
    slots: dict[str, Slot]
    makespan: float
    peak_concurrency: int
    peak_tokens_in_flight: int
    ran_alone_over_limit: list[str] = field(default_factory=list)


def estimate_schedule(
    tasks: Sequence[Task],
    remaining_path: Mapping[str, float],
    max_concurrent: int,
    batch_token_limit: int,
    budgets: Mapping[str, int] | None = None,
) -> EstimatedSchedule:
    """Every task succeeds and takes its `estimated_duration` (else its `timeout`)."""
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
    makespan = max((s.end for s in slots.values()), default=0.0)
    return EstimatedSchedule(slots, makespan, peak_concurrency, peak_tokens, alone)
