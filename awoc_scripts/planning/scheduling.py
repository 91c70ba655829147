"""Which task starts next: the one ordering shared by the estimated schedule and the executor.

Ready tasks are ordered by priority, then by the longest remaining path to a sink (critical
path first), then by file order, unless the planner found a shorter order from the tasks'
estimated durations (start_order.py). `max_concurrent` and `batch_token_limit` bound what runs at
once. A task starts the moment its dependencies allow; nothing waits for a whole wave.
"""

from __future__ import annotations

import bisect
import functools
import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from awoc_scripts.state.statuses import (
    CANCELLED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from awoc_scripts.plan_types import Task

PRIORITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def task_duration(task: Task) -> float:
    """What planning assumes a task takes: its estimate, else its timeout."""
    estimate = task.get("estimated_duration")
    return float(estimate if estimate is not None else task["timeout"])


@dataclass
class GraphMetrics:
    """Levels, remaining paths and the critical path, kept by list position (the id-keyed tables
    are made on first use: at 100,000 tasks a table costs what computing its values does)."""

    ids: list[str]
    order_of: list[int]  # positions in topological order, file order among equals
    level_of: list[int]  # dependency depth, 0 for tasks without dependencies
    remaining_of: list[float]  # longest duration path from the task's start to the end of a sink
    critical_path: list[str]
    waves: list[list[str]]
    duration: list[float]
    dependents: list[list[int]]

    @functools.cached_property
    def order(self) -> list[str]:
        return [self.ids[i] for i in self.order_of]

    @functools.cached_property
    def level(self) -> dict[str, int]:
        return dict(zip(self.ids, self.level_of, strict=True))

    @functools.cached_property
    def remaining(self) -> dict[str, float]:
        return dict(zip(self.ids, self.remaining_of, strict=True))


def graph_metrics(tasks: Sequence[Task]) -> GraphMetrics:
    """Levels, remaining paths and the critical path of a validated (acyclic) plan. O(V + E).

    Works on list positions rather than task ids: at 100,000 tasks, lookups in id-keyed tables
    miss the CPU caches and cost several times more.
    """
    ids = [t["task_id"] for t in tasks]
    n = len(ids)
    position = dict(zip(ids, range(n), strict=True))
    duration = [task_duration(t) for t in tasks]
    dependents: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for i, task in enumerate(tasks):
        deps = task["dependencies"]
        if deps:
            indegree[i] = len(deps)
            for dep in deps:
                dependents[position[dep]].append(i)

    order: list[int] = []
    level = [0] * n
    frontier = [i for i in range(n) if not indegree[i]]
    depth = 0
    while frontier:
        order += frontier
        depth += 1
        next_frontier: list[int] = []
        for i in frontier:
            for child in dependents[i]:
                indegree[child] -= 1
                if not indegree[child]:  # its last dependency is on the level just done
                    level[child] = depth
                    next_frontier.append(child)
        frontier = next_frontier

    remaining = [0.0] * n
    next_on_path: list[int] = [-1] * n
    for i in reversed(order):
        children = dependents[i]
        if children:
            best_child = max(children, key=remaining.__getitem__)  # the first longest
            remaining[i] = duration[i] + remaining[best_child]
            if remaining[best_child] > 0:
                next_on_path[i] = best_child
        else:
            remaining[i] = duration[i]

    critical_path: list[str] = []
    if n:
        node = max(range(n), key=remaining.__getitem__)  # the first longest, in file order
        while node != -1:
            critical_path.append(ids[node])
            node = next_on_path[node]

    waves: list[list[str]] = [[] for _ in range(depth)]
    for i, tid in enumerate(ids):
        waves[level[i]].append(tid)
    return GraphMetrics(ids, order, level, remaining, critical_path, waves, duration, dependents)


def start_ranks(tasks: Sequence[Task], remaining: Sequence[float], planned: bool = True) -> list[int]:
    """Each task's place (by list position) in the order ready tasks start in: priority, then
    the longest path still ahead (REMAINING, by position), then file order; or, if PLANNED, the
    order the planner adopted as shorter (each task's `start_rank`, planning/start_order.py).
    Heaps of these integers compare far faster than heaps of (priority, path, index) tuples."""
    if planned and tasks and "start_rank" in tasks[0]:
        return [t["start_rank"] for t in tasks]
    keys = [
        (PRIORITY_RANK[t["priority"]], -path, t["index"], i)
        for i, (t, path) in enumerate(zip(tasks, remaining, strict=True))
    ]
    keys.sort()
    rank = [0] * len(keys)
    for r, key in enumerate(keys):
        rank[key[3]] = r
    return rank


_EMPTY = 1 << 62  # a tree node over no ready task: above every packed entry


class ReadyTasks:
    """Ready tasks grouped by token budget, each group a heap of start ranks (lower starts
    first), with a segment tree over the groups (sorted by budget) holding each group's best.

    The next task to start is the lowest rank among the groups whose budget fits what the
    batch token limit leaves: a prefix of the sorted budgets, so one tree query, however many
    tasks wait and however many budgets differ. Tree nodes hold `rank << bits | group`, so one
    integer comparison orders them and the winner says which heap it came from. Entries go
    stale when a task starts or its budget changes; they are dropped when met.
    """

    def __init__(self, budgets: Iterable[int] = ()) -> None:
        self.budgets: list[int] = sorted(set(budgets))
        self.heaps: list[list[int]] = [[] for _ in self.budgets]
        self.position = {b: i for i, b in enumerate(self.budgets)}
        self._build()

    def _build(self) -> None:
        self.size = 1
        while self.size < len(self.budgets):
            self.size *= 2
        self.bits = self.size.bit_length()
        self.tree: list[int] = [_EMPTY] * (2 * self.size)
        for i, heap in enumerate(self.heaps):
            if heap:
                self.tree[self.size + i] = heap[0] << self.bits | i
        for node in range(self.size - 1, 0, -1):
            self.tree[node] = min(self.tree[2 * node], self.tree[2 * node + 1])
        self.stale_tree = False

    def _refresh(self, i: int) -> None:
        tree, heap = self.tree, self.heaps[i]
        node = self.size + i
        best = tree[node] = heap[0] << self.bits | i if heap else _EMPTY
        while node > 1:  # up to the root, each node the better of its two children
            sibling = tree[node ^ 1]
            if sibling < best:
                best = sibling
            node >>= 1
            if tree[node] == best:
                break  # nothing above changes either
            tree[node] = best

    def push(self, rank: int, budget: int) -> None:
        i = self.position.get(budget)
        if i is None:  # a budget no task had (a lever or a retry changed it): rebuild once, lazily
            heaps = dict(zip(self.budgets, self.heaps, strict=True))
            heaps[budget] = []
            self.budgets = sorted(heaps)
            self.heaps = [heaps[b] for b in self.budgets]
            self.position = {b: j for j, b in enumerate(self.budgets)}
            self.stale_tree = True
            i = self.position[budget]
        heap = self.heaps[i]
        heapq.heappush(heap, rank)
        if not self.stale_tree and heap[0] == rank:
            entry, node, tree = rank << self.bits | i, self.size + i, self.tree
            while node and entry < tree[node]:  # a new best only ever lowers the nodes above it
                tree[node] = entry
                node //= 2

    def best(self, is_current: Callable[[int, int], bool], max_budget: int | None = None) -> int | None:
        """The lowest current rank among groups with budget <= MAX_BUDGET (all if None)."""
        if self.stale_tree:
            self._build()
        mask = (1 << self.bits) - 1
        while True:
            found = self.tree[1]
            if max_budget is not None and found != _EMPTY and self.budgets[found & mask] > max_budget:
                found = self._prefix_best(bisect.bisect_right(self.budgets, max_budget))  # the best does not fit
            if found == _EMPTY:
                return None
            rank, i = found >> self.bits, found & mask
            if is_current(rank, self.budgets[i]):
                return rank
            heapq.heappop(self.heaps[i])
            self._refresh(i)

    def take(self, max_budget: int | None = None) -> int | None:
        """Remove and return the lowest rank with budget <= MAX_BUDGET (all if None), for a
        caller whose entries never go stale (each task pushed once, its budget fixed)."""
        if self.stale_tree:
            self._build()
        found, mask = self.tree[1], (1 << self.bits) - 1
        if found == _EMPTY:
            return None
        if max_budget is not None and self.budgets[found & mask] > max_budget:  # the best does not fit
            found = self._prefix_best(bisect.bisect_right(self.budgets, max_budget))
            if found == _EMPTY:
                return None
        i = found & mask
        heapq.heappop(self.heaps[i])
        self._refresh(i)
        return found >> self.bits

    def _prefix_best(self, count: int) -> int:
        tree = self.tree
        best = _EMPTY
        lo, hi = self.size, self.size + count
        while lo < hi:
            if lo & 1:
                if tree[lo] < best:
                    best = tree[lo]
                lo += 1
            if hi & 1:
                hi -= 1
                if tree[hi] < best:
                    best = tree[hi]
            lo //= 2
            hi //= 2
        return best

    def entries(self) -> list[tuple[int, int]]:
        return [(rank, budget) for budget, heap in zip(self.budgets, self.heaps, strict=True) for rank in heap]

    def keep_only(self, keep: Callable[[int], bool]) -> None:
        self.heaps = [[r for r in heap if keep(r)] for heap in self.heaps]
        for heap in self.heaps:
            heapq.heapify(heap)
        self._build()


@dataclass
class StartDecision:
    """The next task to start."""

    task_id: str
    alone_over_batch_limit: bool = False


@dataclass
class Scheduler:
    """Task states and readiness for one run. Pure: no clocks, no processes, no files.

    `status` may start with tasks already ended (a resumed run). `finish` and `cancel` return
    the tasks they skip as a consequence, each with its reason.
    """

    tasks: Sequence[Task]
    remaining_path: Mapping[str, float]
    status: dict[str, str] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {t["task_id"]: t for t in self.tasks}
        self.dependents: dict[str, list[str]] = {tid: [] for tid in self.by_id}
        self.blocking: dict[str, frozenset[str]] = {}
        self.waiting_on: dict[str, int] = {}
        for task in self.tasks:
            tid = task["task_id"]
            if self.status.get(tid, PENDING) == RUNNING:
                self.status[tid] = PENDING  # whatever ran before a crash runs again
            self.status.setdefault(tid, PENDING)
            self.budget.setdefault(tid, int(task["token_budget"]))
            # the dependencies whose end this task waits for
            waits = task["critical_dependencies"] if task["dependency_mode"] == "partial" else task["dependencies"]
            self.blocking[tid] = frozenset(waits)
            self.waiting_on[tid] = len(self.blocking[tid])
            for dep in task["dependencies"]:
                self.dependents[dep].append(tid)
        self._rank_by(start_ranks(self.tasks, [self.remaining_path[t["task_id"]] for t in self.tasks]))
        skipped: list[tuple[str, str]] = []
        for tid, state in list(self.status.items()):
            if state in TERMINAL:
                skipped += self._propagate(tid)
        for tid in self.by_id:  # those with something to wait for were settled by _propagate
            if self.status[tid] == PENDING and not self.blocking[tid] and self._settle(tid, skipped):
                skipped += self._propagate(tid)
        self.initially_skipped = skipped

    def _rank_by(self, rank: list[int]) -> None:
        self.rank = {t["task_id"]: rank[i] for i, t in enumerate(self.tasks)}
        self.by_rank = [""] * len(rank)
        for tid, r in self.rank.items():
            self.by_rank[r] = tid
        self._ready = ReadyTasks(self.budget.values())

    def start_order(self, tid: str) -> int:
        """What orders ready tasks (start_ranks)."""
        return self.rank[tid]

    def order_by_priority(self) -> None:
        """From now on ready tasks start in priority order, not in the order the planner adopted."""
        ready = self.ready_ids()
        self._rank_by(start_ranks(self.tasks, [self.remaining_path[t["task_id"]] for t in self.tasks], planned=False))
        for tid in ready:
            self._make_ready(tid)

    def _make_ready(self, tid: str) -> None:
        self._ready.push(self.rank[tid], self.budget[tid])

    def _is_current(self, rank: int, budget: int) -> bool:
        tid = self.by_rank[rank]
        return self.status[tid] == PENDING and self.budget[tid] == budget

    def _skip(self, tid: str, reason: str, skipped: list[tuple[str, str]]) -> None:
        self.status[tid] = SKIPPED
        self.reason[tid] = reason
        skipped.append((tid, reason))

    def _settle(self, tid: str, skipped: list[tuple[str, str]]) -> bool:
        """Every blocking dependency has ended: the task becomes ready (False) or is skipped (True)."""
        reason = self._unmet_condition(tid)
        if reason is None:
            self._make_ready(tid)
            return False
        self._skip(tid, reason, skipped)
        return True

    def _unmet_condition(self, tid: str) -> str | None:
        task = self.by_id[tid]
        if task["dependency_mode"] != "conditional":
            return None  # all_complete and partial skip as soon as a blocking dependency fails
        condition = task.get("condition")
        when = condition["when"] if condition else "success"
        if when == "any":
            return None
        wrong = [d for d in task["dependencies"] if (self.status[d] == SUCCEEDED) != (when == "success")]
        if not wrong:
            return None
        return f"condition {when!r} not met: " + ", ".join(f"{d} {self.status[d]}" for d in wrong)

    def _propagate(self, ended: str) -> list[tuple[str, str]]:
        """`ended` has ended: update its dependents, skipping those that can no longer run."""
        skipped: list[tuple[str, str]] = []
        work = [ended]
        while work:
            done = work.pop()
            ok = self.status[done] == SUCCEEDED
            for child in self.dependents[done]:
                if self.status[child] != PENDING or done not in self.blocking[child]:
                    continue
                if not ok and self.by_id[child]["dependency_mode"] != "conditional":
                    self._skip(child, f"dependency {done} {self.status[done]}", skipped)
                    work.append(child)
                    continue
                self.waiting_on[child] -= 1
                if self.waiting_on[child] == 0 and self._settle(child, skipped):
                    work.append(child)
        return skipped

    # -- what the executor (or the estimate) asks -------------------------------------------

    def ready_ids(self) -> list[str]:
        current = sorted(rank for rank, budget in self._ready.entries() if self._is_current(rank, budget))
        return list(dict.fromkeys(self.by_rank[rank] for rank in current))

    def next_start(
        self, running: Collection[str], max_concurrent: int, batch_token_limit: int, in_flight: int | None = None
    ) -> StartDecision | None:
        """The next task to start now, or None. In ready order, the first whose budget fits
        beside what is in flight (IN_FLIGHT: their budgets' sum, where the caller keeps it); a
        task that alone exceeds the limit runs only alone."""
        if len(running) >= max_concurrent:
            return None
        if running:
            if in_flight is None:
                in_flight = sum(self.budget[t] for t in running)
            room = batch_token_limit - in_flight
            rank = self._ready.best(self._is_current, max_budget=room)
            return None if rank is None else StartDecision(self.by_rank[rank])
        rank = self._ready.best(self._is_current)
        if rank is None:
            return None
        tid = self.by_rank[rank]
        return StartDecision(tid, alone_over_batch_limit=self.budget[tid] > batch_token_limit)

    def set_budget(self, tid: str, budget: int) -> None:
        self.budget[tid] = budget
        if self.status[tid] == PENDING and self.waiting_on[tid] == 0:
            self._make_ready(tid)  # its entry under the old budget is stale now

    def start(self, tid: str) -> None:
        if self.status[tid] != PENDING:
            raise ValueError(f"cannot start {tid}: it is {self.status[tid]}")
        self.status[tid] = RUNNING

    def requeue(self, tid: str) -> None:
        """A running task goes back to waiting (stopped to free memory)."""
        self.status[tid] = PENDING
        self._make_ready(tid)

    def finish(self, tid: str, status: str) -> list[tuple[str, str]]:
        if status not in TERMINAL:
            raise ValueError(f"{status!r} is not a final task state")
        self.status[tid] = status
        return self._propagate(tid)

    def cancel(self, tids: Iterable[str], reason: str) -> list[tuple[str, str]]:
        """Cancel pending tasks; returns the dependents skipped because of it."""
        skipped: list[tuple[str, str]] = []
        for tid in tids:
            if self.status[tid] == PENDING:
                self.status[tid] = CANCELLED
                self.reason[tid] = reason
                skipped += self._propagate(tid)
        return skipped

    def blocked_by(self, tid: str) -> str | None:
        """Why `tid` could not run again now (a dependency it waits for ended badly), or None."""
        task = self.by_id[tid]
        if task["dependency_mode"] == "conditional":
            if all(self.status[d] in TERMINAL for d in self.blocking[tid]):
                return self._unmet_condition(tid)
            return None
        bad = [d for d in self.blocking[tid] if self.status[d] in TERMINAL and self.status[d] != SUCCEEDED]
        return ", ".join(f"dependency {d} {self.status[d]}" for d in bad) or None

    def reopen(self, tid: str) -> list[str]:
        """A task that ended (not succeeded) waits to run again, and so do the tasks skipped only
        because of it. Returns those dependents, in the order they were reopened."""
        if self.status[tid] not in TERMINAL or self.status[tid] == SUCCEEDED:
            raise ValueError(f"cannot reopen {tid}: it is {self.status[tid]}")
        blocker = self.blocked_by(tid)
        if blocker:
            raise ValueError(f"cannot reopen {tid}: {blocker}")
        self.status[tid] = PENDING
        self.reason.pop(tid, None)
        reopened: list[str] = []
        work = [tid]
        while work:
            parent = work.pop()
            for child in self.dependents[parent]:
                if self.status[child] != SKIPPED or parent not in self.blocking[child]:
                    continue
                if self.by_id[child]["dependency_mode"] == "conditional" or not self.blocked_by(child):
                    self.status[child] = PENDING
                    self.reason.pop(child, None)
                    reopened.append(child)
                    work.append(child)
        # conditional dependents counted the end that is undone now: count again
        for parent in (tid, *reopened):
            for child in (parent, *self.dependents[parent]):
                if self.status[child] == PENDING:
                    self._recount(child)
        by_rank = self.by_rank
        self._ready.keep_only(lambda r: self.status[by_rank[r]] != PENDING or self.waiting_on[by_rank[r]] == 0)
        if self.waiting_on[tid] == 0:
            self._make_ready(tid)
        return reopened

    def _recount(self, tid: str) -> None:
        conditional = self.by_id[tid]["dependency_mode"] == "conditional"
        self.waiting_on[tid] = sum(
            1
            for d in self.blocking[tid]
            if not (self.status[d] in TERMINAL if conditional else self.status[d] == SUCCEEDED)
        )

    def ids_with(self, *states: str) -> list[str]:
        return [tid for tid, s in self.status.items() if s in states]

    def all_done(self) -> bool:
        return all(s in TERMINAL for s in self.status.values())
