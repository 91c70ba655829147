"""A shorter run than priority order gives, found by simulation when every duration is known.

The spec's order (priority, then the longest path ahead, then file order) can leave slots idle:
a low-priority chain that the run's end waits on starts only after every higher task. When each
task's duration is an estimate (given, or learned from past runs) rather than its timeout, the
planner searches orders in the estimated schedule and adopts one that ends the run at least
`MIN_GAIN` sooner. Among equally short orders it keeps higher priorities earlier (the sum of
priority-weighted end times decides). The search is deterministic: the same plan gets the same
order.

How: forward-backward improvement (schedule the reversed graph, latest ends first, and run the
tasks forward in the order that backward schedule starts them), then random changes (two tasks
trading places, or a few moving a little), kept when they do no harm. Both are standard for
scheduling with precedences. A run that follows such an order keeps a slot a moment for the
tasks it starts first when they are about to be ready (execution/machine/starts.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from awoc_scripts.planning.estimate import EstimatedSchedule, ListSchedule, list_schedule, task_budgets
from awoc_scripts.planning.scheduling import PRIORITY_RANK, start_ranks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from awoc_scripts.plan_types import Task
    from awoc_scripts.planning.scheduling import GraphMetrics

MIN_GAIN = 0.01  # a shorter order is adopted only if the run ends at least 1% sooner
MAX_SIMULATIONS = 300
SIMULATED_STARTS = 20_000  # what the search may spend: 300 runs of 66 tasks, 50 ms or so
MIN_SIMULATIONS = 10  # a plan too large for this many is not searched
BACKWARD_ROUNDS = 6
PRIORITY_WEIGHT = {priority: 2 ** (3 - rank) for priority, rank in PRIORITY_RANK.items()}
SEARCH_SEED = 20261205
SWAP_SHARE = 0.25  # of the random changes, how many trade two tasks' places


class ShorterOrder(NamedTuple):
    """The order adopted instead of priority order, and priority order's estimated makespan."""

    rank: list[int]  # by list position: the place each task has among ready tasks
    priority_order_makespan: float


def searchable(tasks: Sequence[Task], duration_source: Mapping[str, str], max_concurrent: int) -> bool:
    """Whether a search can tell orders apart: every task waits for all its dependencies, each
    has an estimated duration (a timeout is a limit, not an estimate), and tasks can compete."""
    return (
        max_concurrent > 1
        and 1 < len(tasks) * MIN_SIMULATIONS <= SIMULATED_STARTS
        and all(t["dependency_mode"] == "all_complete" for t in tasks)
        and all(duration_source[t["task_id"]] != "timeout" for t in tasks)
    )


def shorter_order(
    tasks: Sequence[Task],
    metrics: GraphMetrics,
    by_priority: EstimatedSchedule,
    max_concurrent: int,
    batch_token_limit: int,
    budgets: Mapping[str, int] | None = None,
) -> ShorterOrder | None:
    """An order whose estimated run ends at least MIN_GAIN sooner than priority order's, or
    None. BY_PRIORITY: the estimate in priority order. Call only when `searchable`."""
    lower_bound = max(max(metrics.remaining_of), sum(metrics.duration) / max_concurrent)
    if by_priority.makespan <= lower_bound * (1 + 1e-9):
        return None  # nothing is shorter
    priority_rank = start_ranks(tasks, metrics.remaining_of)
    search = _Search(tasks, metrics, max_concurrent, batch_token_limit, budgets, priority_rank)
    best_rank, best, baseline = search.run(priority_rank)
    if best[0] > baseline[0] * (1 - MIN_GAIN):
        return None
    return ShorterOrder(best_rank, by_priority.makespan)


_Score = tuple[float, float, float]  # makespan, priority-weighted ends, place-weighted ends


class _Search:
    def __init__(
        self,
        tasks: Sequence[Task],
        metrics: GraphMetrics,
        max_concurrent: int,
        batch_token_limit: int,
        budgets: Mapping[str, int] | None,
        priority_rank: list[int],
    ) -> None:
        self.n = len(tasks)
        self.duration = metrics.duration
        self.dependents = metrics.dependents
        self.dependencies: list[list[int]] = [[] for _ in range(self.n)]
        for i, children in enumerate(self.dependents):
            for child in children:
                self.dependencies[child].append(i)
        self.weight = [PRIORITY_WEIGHT[t["priority"]] for t in tasks]
        self.place_weight = [self.n - r for r in priority_rank]  # n for the first in priority order, 1 for the last
        self.budget = task_budgets(tasks, budgets)
        self.max_concurrent, self.batch_token_limit = max_concurrent, batch_token_limit
        self.simulations = 0
        self.allowed = min(MAX_SIMULATIONS, SIMULATED_STARTS // self.n)

    def run(self, priority_rank: list[int]) -> tuple[list[int], _Score, _Score]:
        """The best order found, as ranks by start in its schedule (priority order among equal
        starts: the same schedule, told plainly); its score; priority order's score."""
        best_rank = priority_rank
        forward = self._forward(best_rank)
        best = baseline = self._score(forward)
        for _ in range(BACKWARD_ROUNDS):
            if self.simulations + 2 > self.allowed:
                break
            backward = self._simulate(self._ranks([-self._end(forward, i) for i in range(self.n)]), backward=True)
            rank = self._ranks([-self._end(backward, i) for i in range(self.n)])
            forward = self._forward(rank)
            score = self._score(forward)
            if score >= best:
                break
            best_rank, best = rank, score
        import random  # here, not at the top: most plans are never searched, and every script plans

        place = [float(r) for r in best_rank]
        rng = random.Random(SEARCH_SEED)
        while self.simulations < self.allowed:
            moved = list(place)
            if rng.random() < SWAP_SHARE:  # two tasks trade places
                i, j = rng.randrange(self.n), rng.randrange(self.n)
                moved[i], moved[j] = moved[j], moved[i]
            else:  # one to three tasks move a little
                for _ in range(rng.randint(1, 3)):
                    moved[rng.randrange(self.n)] += rng.gauss(0.0, self.n / 8)
            rank = self._ranks(moved)
            score = self._score(self._forward(rank))
            if score <= best:  # sideways moves too: they let the search cross plateaus
                place, best_rank, best = moved, rank, score
        best_schedule = self._forward(best_rank)
        # starts a float's rounding apart are one start: priority order decides among them
        starts = [round(self._end(best_schedule, i) - self.duration[i], 9) for i in range(self.n)]
        by_start = self._ranks(list(zip(starts, priority_rank, strict=True)))
        return by_start, best, baseline

    def _forward(self, rank: list[int]) -> ListSchedule:
        return self._simulate(rank, backward=False)

    def _simulate(self, rank: list[int], *, backward: bool) -> ListSchedule:
        self.simulations += 1
        waits_for, dependents = self.dependencies, self.dependents
        if backward:  # the reversed graph: a task waits for its dependents
            waits_for, dependents = dependents, waits_for
        return list_schedule(
            self.duration,
            [len(w) for w in waits_for],
            dependents,
            self.budget,
            rank,
            self.max_concurrent,
            self.batch_token_limit,
        )

    def _end(self, schedule: ListSchedule, i: int) -> float:
        start = schedule.start[i]
        return (start or 0.0) + self.duration[i]

    def _score(self, schedule: ListSchedule) -> _Score:
        """Shorter first; among equals, higher priorities ending earlier, then tasks earlier in
        priority order ending earlier."""
        ends = [self._end(schedule, i) for i in range(self.n)]
        by_priority = sum(w * end for w, end in zip(self.weight, ends, strict=True))
        by_place = sum(w * end for w, end in zip(self.place_weight, ends, strict=True))
        return round(schedule.makespan, 9), by_priority, by_place

    @staticmethod
    def _ranks(keys: Sequence[Any]) -> list[int]:
        """Each position's place when sorted by KEYS (ties in file order)."""
        rank = [0] * len(keys)
        for r, i in enumerate(sorted(range(len(keys)), key=keys.__getitem__)):
            rank[i] = r
        return rank
