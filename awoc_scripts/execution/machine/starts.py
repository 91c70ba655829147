"""How the run machine starts tasks: one start asked at a time, and what each answer means.

Part of the run machine (machine.py), kept apart so that each reads in one sitting. Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.machine.endings import iso as iso_of_moment
from awoc_scripts.execution.machine.events import (
    CacheHit,
    CacheMiss,
    CannotStart,
    LookUpCache,
    OutputRead,
    Spawned,
    Start,
    StartFailed,
)
from awoc_scripts.execution.outcomes import over_budget
from awoc_scripts.planning.scheduling import task_duration
from awoc_scripts.state.statuses import BUDGET_EXCEEDED, PENDING, RUNNING, SUCCEEDED

if TYPE_CHECKING:
    from awoc_scripts.execution.machine.machine import RunMachine

# how near a dependency's expected end a slot is kept for the task the plan starts next
# (kept_for_earlier): more than a run's jitter, far less than any task worth planning
PLAN_HOLD_S = 0.05


def start_next(m: RunMachine) -> None:
    """Ask for the next start, one at a time: each answer (Spawned, CannotStart...) asks again."""
    if m.stop_reason is not None or m.no_new_starts or m.pause.active or m.starting:
        return
    decision = m.scheduler.next_start(m.running(), m.limit(m.at.now), m.settings.batch_token_limit)
    if decision is None or (m.follows_plan and kept_for_earlier(m, decision.task_id)):
        return
    tid, task, rec = decision.task_id, m.by_id[decision.task_id], m.records[decision.task_id]
    if decision.alone_over_batch_limit:
        limit = m.settings.batch_token_limit
        m.events.add("batch-limit-exceeded", task_id=tid, token_budget=rec.budget, batch_token_limit=limit)
    m.scheduler.start(tid)
    m.in_flight[tid] = None
    m.starting.add(tid)
    if m.settings.cache and rec.attempts == 0 and task.get("cache") is not False:
        m.out.append(LookUpCache(tid))
    else:
        ask_start(m, tid)


def kept_for_earlier(m: RunMachine, tid: str) -> bool:
    """Whether the free slot waits a moment for tasks the plan starts before TID, whose
    dependencies are all done or ending about now (within PLAN_HOLD_S of their expected end),
    because the slots those dependencies free are too few for them. The adopted order was found
    with every task taking its estimate, so tasks often end at one planned moment; a few
    milliseconds of jitter must not give an earlier task's slot to TID. Sets `m.hold_until`,
    past which TID starts anyway."""
    scheduler = m.scheduler
    mine = scheduler.rank[tid]
    m.hold_until = None
    waiting: set[str] = set()  # planned before TID, ready once what is ending now has ended
    ending: dict[str, float] = {}  # what they wait for, running, and its expected end
    for running in m.running():
        end = _ending_at(m, running)
        if end is None:
            continue
        for child in scheduler.dependents[running]:
            if child in waiting or scheduler.rank[child] > mine or scheduler.status[child] != PENDING:
                continue
            deps = [dep for dep in m.by_id[child]["dependencies"] if scheduler.status[dep] != SUCCEEDED]
            ends = {dep: _ending_at(m, dep) for dep in deps}
            if all(e is not None for e in ends.values()):
                waiting.add(child)
                ending.update((dep, e) for dep, e in ends.items() if e is not None)
    free_after = m.limit(m.at.now) - len(m.in_flight) - 1  # if TID took this slot
    if len(waiting) <= free_after + len(ending):  # each dependency that ends frees a slot
        return False
    m.hold_until = max(ending.values()) + PLAN_HOLD_S
    return m.at.now < m.hold_until


def _ending_at(m: RunMachine, tid: str) -> float | None:
    """When running TID is expected to end, if that is within PLAN_HOLD_S of now."""
    rec = m.records[tid]
    if m.scheduler.status[tid] != RUNNING or tid in m.starting or rec.start_mono is None or rec.verifying_since:
        return None
    expected = rec.start_mono + task_duration(m.by_id[tid])
    return expected if abs(expected - m.at.now) <= PLAN_HOLD_S else None


def ask_start(m: RunMachine, tid: str) -> None:
    rec = m.records[tid]
    rec.cost_cap_usd = m.cost_policy.cap_for(rec, m.ledger.cost_spent)
    rec.stop_status = None
    m.out.append(Start(tid))


def spawned(m: RunMachine, event: Spawned) -> None:
    tid, rec = event.task_id, m.records[event.task_id]
    m.starting.discard(tid)
    rec.attempts += 1
    rec.files = event.files
    rec.begin_attempt(float(m.by_id[tid]["timeout"]), event.streams, event.at.now, event.at.wall)
    rec.pid, rec.pid_create_time, rec.pid_start_ticks = event.pid, None, None  # read when the state is written
    m.events.add(
        "task-start",
        task_id=tid,
        agent=m.by_id[tid]["agent"],
        attempt=rec.attempts,
        pid=event.pid,
        token_budget=rec.budget,
    )
    start_next(m)


def cannot_start(m: RunMachine, event: CannotStart) -> None:
    tid = event.task_id
    m.starting.discard(tid)
    m.in_flight.pop(tid, None)
    m.events.add("task-cannot-start", task_id=tid, reason=event.reason)
    m.ledger.skip(tid, f"cannot start: {event.reason}")
    start_next(m)


def start_failed(m: RunMachine, event: StartFailed) -> None:
    tid, rec = event.task_id, m.records[event.task_id]
    m.in_flight.pop(tid, None)
    rec.error, rec.deadline = event.error, None
    if tid in m.starting:  # the attempt itself: it counts, and a retry would fail the same way
        m.starting.discard(tid)
        rec.attempts += 1
        if event.files is not None:
            rec.files = event.files
            rec.begin_attempt(float(m.by_id[tid]["timeout"]), False, event.at.now, event.at.wall)
            rec.deadline = None
        m.end_task(tid, "failed", allow_retry=False)
        start_next(m)
        return
    rec.verifying_since = None  # its verification could not start: the attempt failed
    m.end_task(tid, "failed", allow_retry=m.stop_reason is None)


def cache_hit(m: RunMachine, event: CacheHit) -> None:
    tid, rec, cached = event.task_id, m.records[event.task_id], event.result
    m.starting.discard(tid)
    m.in_flight.pop(tid, None)
    rec.result, rec.exit_code = str(cached.get("result") or ""), cached.get("exit_code")
    rec.cached_from, rec.verify = event.run_id, cached.get("verify")
    tokens = cached.get("tokens_used") or {}
    rec.saved = {"tokens": int(tokens.get("total") or 0), "cost_usd": float(cached.get("cost_usd") or 0)}
    rec.started_at = iso_of_moment(event.at)
    m.events.add("task-reused", task_id=tid, cached_from=rec.cached_from, saved=rec.saved)
    m.display.note(f"{tid}: reused from run {rec.cached_from}")
    m.ledger.finish(tid, "succeeded")
    start_next(m)


def cache_miss(m: RunMachine, event: CacheMiss) -> None:
    if event.key is not None:
        m.records[event.task_id].cache_key = event.key
        m.events.add("task-cache-miss", task_id=event.task_id, key=event.key, files=event.files)
    ask_start(m, event.task_id)


def output_read(m: RunMachine, event: OutputRead) -> None:
    rec = m.records[event.task_id]
    if rec.stop_status or rec.stream is None or event.task_id not in m.in_flight:
        return
    rec.stream.feed(event.data)
    counted = rec.stream.counted()
    if counted > rec.budget:
        m.stop_task(event.task_id, BUDGET_EXCEEDED, over_budget(counted, rec.budget))
