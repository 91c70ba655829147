"""A shorter order than priority's, found from the tasks' estimated durations, planned and followed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_planner import plan_of, random_plans, task

from awoc_scripts.execution.display import PlainDisplay
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.execution.run_loop import planned_tasks
from awoc_scripts.execution.run_options import Options
from awoc_scripts.flow.prepare import prepare_run, prepared_summary, summary_markdown
from awoc_scripts.flow.runs import execute_run
from awoc_scripts.planning.estimate import _estimate_with_scheduler
from awoc_scripts.planning.execution_plan import plan_execution
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.planning.start_order import MIN_GAIN
from awoc_scripts.state.statuses import SUCCEEDED
from awoc_scripts.state.store import StateStore

from conftest import FAKES

RECORD = [sys.executable, str(FAKES / "record_task.py")]

# Two slots. In priority order the four high tasks go first and the low chain, which the run's
# end waits on, starts at 2 s: 2 + 1 + 5 = 8 s. Starting the chain at once ends the run at 6 s.
CHAIN_BEHIND_PRIORITIES = [
    task("low-1", 1, priority="low"),
    task("low-2", 5, ["low-1"], priority="low"),
    *(task(f"high-{i}", 1, priority="high") for i in range(1, 5)),
]


def config_of(tasks: list[dict[str, Any]], slots: int = 2) -> dict[str, Any]:
    return {"parallel_config": {"max_concurrent": slots}, "tasks": tasks}


def by_id(execution: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in execution["tasks"]}


def test_a_chain_behind_higher_priorities_starts_first_when_that_ends_the_run_sooner() -> None:
    execution = plan_execution(plan_of(config_of(CHAIN_BEHIND_PRIORITIES)))
    assert execution["start_order"] == {"by": "shortest estimated run", "priority_order_makespan_s": 8.0}
    assert execution["estimated_makespan_s"] == 6.0
    planned = by_id(execution)
    assert planned["low-1"]["estimated_start_s"] == 0.0
    assert planned["low-2"]["estimated_start_s"] == 1.0
    # ranks follow the estimated starts, priority order among equal starts (high-1 and low-1 at
    # 0 s, high-2 and low-2 at 1 s); so the high tasks keep their file order
    by_rank = sorted(execution["tasks"], key=lambda t: t["start_rank"])
    assert [t["task_id"] for t in by_rank] == ["high-1", "low-1", "high-2", "low-2", "high-3", "high-4"]
    assert [t["start_rank"] for t in by_rank] == list(range(6))
    # the same plan gets the same order
    assert plan_execution(plan_of(config_of(CHAIN_BEHIND_PRIORITIES)))["tasks"] == execution["tasks"]


@pytest.mark.parametrize(
    "tasks",
    [
        # a timeout is a limit, not an estimate: no search
        [
            {**{k: v for k, v in t.items() if k != "estimated_duration"}, "timeout": t["estimated_duration"]}
            for t in CHAIN_BEHIND_PRIORITIES
        ],
        # priority order is already as short as anything can be
        [task(f"t{i}", 1 + i % 3, priority=("low", "high")[i % 2]) for i in range(8)],
    ],
    ids=["timeouts-only", "already-shortest"],
)
def test_priority_order_is_kept_when_no_order_is_known_to_be_shorter(tasks: list[dict[str, Any]]) -> None:
    execution = plan_execution(plan_of(config_of(tasks)))
    assert execution["start_order"]["by"] == "priority"
    assert execution["start_order"]["priority_order_makespan_s"] == execution["estimated_makespan_s"]
    assert not any("start_rank" in t for t in execution["tasks"])


def test_one_slot_or_partial_dependencies_keep_priority_order() -> None:
    assert plan_execution(plan_of(config_of(CHAIN_BEHIND_PRIORITIES, 1)))["start_order"]["by"] == "priority"
    partial = [dict(t) for t in CHAIN_BEHIND_PRIORITIES]
    partial[1] |= {"dependency_mode": "partial", "critical_dependencies": ["low-1"]}
    assert plan_execution(plan_of(config_of(partial)))["start_order"]["by"] == "priority"


@settings(max_examples=80, deadline=None)
@given(random_plans())
def test_an_adopted_order_is_shorter_keeps_every_bound_and_is_what_the_executor_follows(
    case: tuple[list[dict[str, Any]], int, int],
) -> None:
    config_tasks, max_concurrent, limit = case
    limits = {"max_concurrent": max_concurrent, "batch_token_limit": limit, "total_token_budget": 10**7}
    plan = plan_of({"parallel_config": limits, "tasks": config_tasks})
    execution = plan_execution(plan)
    order = execution["start_order"]
    if order["by"] == "priority":
        return
    assert execution["estimated_makespan_s"] <= order["priority_order_makespan_s"] * (1 - MIN_GAIN)
    planned = by_id(execution)
    for t in plan["tasks"]:
        for dep in t["dependencies"]:
            assert planned[dep]["estimated_end_s"] <= planned[t["task_id"]]["estimated_start_s"]
    for moment in {t["estimated_start_s"] for t in planned.values()}:
        live = [t for t in planned.values() if t["estimated_start_s"] <= moment < t["estimated_end_s"]]
        assert len(live) <= max_concurrent
        assert sum(t["token_budget"] for t in live) <= limit or len(live) == 1
    # the run's tasks carry the order; the executor's own Scheduler, driven by the same clock,
    # starts every task when the planner's estimate says it will
    tasks = planned_tasks(plan, execution)
    assert [t["start_rank"] for t in tasks] == [t["start_rank"] for t in execution["tasks"]]
    followed = _estimate_with_scheduler(tasks, graph_metrics(tasks).remaining, max_concurrent, limit, None)
    assert followed.start_of == [t["estimated_start_s"] for t in execution["tasks"]]
    assert followed.makespan == execution["estimated_makespan_s"]


def recorded_starts(log: Path) -> list[str]:
    ran = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    return [r["task"] for r in sorted(ran, key=lambda r: r["start"])]


def run_with(tmp_path: Path, tasks: list[dict[str, Any]], slots: int, change: Any = None) -> list[str]:
    tmp_path.mkdir(exist_ok=True)
    log = tmp_path / "ran.jsonl"
    config = config_of([{**t, "command": [*RECORD, str(log), "0.01", "0"]} for t in tasks], slots)
    run, plan, execution = prepare_run(StateStore(), [orjson.dumps(config).decode()])
    if change is not None:
        change(execution)
    code, summary = execute_run(
        run, plan, execution, LocalExecutor(grace_s=0.5), PlainDisplay(quiet=True), options=Options()
    )
    assert code == 0, summary
    return recorded_starts(log)


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_run_starts_its_tasks_in_the_adopted_order(tmp_path: Path) -> None:
    started = run_with(tmp_path, CHAIN_BEHIND_PRIORITIES, 2)
    assert "low-1" in started[:2]  # in priority order it would be fifth


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_run_takes_its_order_from_execution_json_and_ignores_one_that_is_not_whole(tmp_path: Path) -> None:
    tasks = [task(f"t{i}", 1.0, priority="high") for i in range(4)]

    def reverse(execution: dict[str, Any]) -> None:
        for i, entry in enumerate(execution["tasks"]):
            entry["start_rank"] = 3 - i

    assert run_with(tmp_path / "reversed", tasks, 1, reverse) == ["t3", "t2", "t1", "t0"]

    def break_it(execution: dict[str, Any]) -> None:
        reverse(execution)
        execution["tasks"][0]["start_rank"] = 1  # two tasks at one place: not an order

    assert run_with(tmp_path / "broken", tasks, 1, break_it) == ["t0", "t1", "t2", "t3"]


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_run_made_sequential_before_it_starts_goes_by_priority(tmp_path: Path) -> None:
    from awoc_scripts.levers.requests import request_lever

    def sequential_first(execution: dict[str, Any]) -> None:
        assert "start_rank" in execution["tasks"][0]  # the planner adopted its order for 2 slots
        request_lever(StateStore().open_run(), "convert-remaining-tasks", {})

    started = run_with(tmp_path, CHAIN_BEHIND_PRIORITIES, 2, sequential_first)
    # one at a time the order cannot shorten the run: the high tasks go first, as their priority says
    assert started == ["high-1", "high-2", "high-3", "high-4", "low-1", "low-2"]


def test_prepare_says_when_the_order_is_not_strict_priority_order(state_dir: Path) -> None:
    commands = [{**t, "command": ["true"]} for t in CHAIN_BEHIND_PRIORITIES]
    run, plan, execution = prepare_run(StateStore(), [orjson.dumps(config_of(commands)).decode()])
    text = summary_markdown(prepared_summary(run, plan, execution))
    assert "Start order: the shortest estimated run" in text
    assert "(which is estimated at 8 s)" in text


def planned_machine(dependents_of_d1: int, ranked: bool = True) -> Any:
    """Three slots: d1 (10 s), x (9.98 s) and z (20 s) run; y waits for a slot; DEPENDENTS_OF_D1
    tasks wait for d1 and come before y in the plan's order."""
    from builders import machine
    from builders import task as built_task

    tasks = [
        built_task("d1", estimated_duration=10.0),
        built_task("x", estimated_duration=9.98),
        built_task("z", estimated_duration=20.0),
        *(built_task(f"c{i}", "d1", estimated_duration=1.0) for i in range(dependents_of_d1)),
        built_task("y", estimated_duration=1.0),
    ]
    if ranked:
        for rank, each in enumerate(tasks):
            each["start_rank"] = rank
    return machine(tasks, max_concurrent=3)


def started(effects: list[Any]) -> list[str]:
    from awoc_scripts.execution.machine.events import Start

    return [e.task_id for e in effects if isinstance(e, Start)]


def test_a_slot_freed_just_before_a_planned_end_waits_for_the_tasks_planned_first() -> None:
    from builders import ended, start_all, tick

    m = planned_machine(2)
    assert start_all(m, 0) == ["d1", "x", "z"]
    # x ends 20 ms before d1 is expected to: c0 and c1 come before y, and d1's slot is one too few
    m.handle(ended("x", 9.98))
    assert started(m.handle(tick(9.98))) == []
    assert m.next_moment(9.98) == pytest.approx(10.05)  # the loop wakes when the wait is over
    m.handle(ended("d1", 10.004))
    assert start_all(m, 10.004) == ["c0", "c1"]  # y waits for the next slot


def test_the_wait_ends_when_the_dependency_overruns_its_estimate() -> None:
    from builders import ended, start_all, tick

    m = planned_machine(2)
    start_all(m, 0)
    m.handle(ended("x", 9.98))
    assert started(m.handle(tick(10.04))) == []  # d1 is late, but within the wait
    assert started(m.handle(tick(10.06))) == ["y"]


@pytest.mark.parametrize(("dependents", "ranked"), [(1, True), (2, False)], ids=["enough-slots", "priority-order"])
def test_no_slot_waits_when_the_ending_tasks_free_enough_or_the_run_keeps_priority_order(
    dependents: int, ranked: bool
) -> None:
    from builders import ended, start_all, tick

    m = planned_machine(dependents, ranked)
    start_all(m, 0)
    m.handle(ended("x", 9.98))
    assert started(m.handle(tick(9.98))) == ["y"]


def test_plan_execution_says_when_the_order_is_not_strict_priority_order(cli, tmp_path: Path) -> None:
    config = tmp_path / "tasks.json"
    config.write_bytes(orjson.dumps(config_of(CHAIN_BEHIND_PRIORITIES)))
    result = cli("parallel-resource-planner", "plan-execution", str(config))
    assert result.code == 0, result.stderr
    assert result.json()["start_order"]["by"] == "shortest estimated run"
    assert "start order: the shortest estimated run, not strict priority order (which is estimated at 8 s)" in (
        result.stderr
    )


def against_priorities(max_concurrent: int) -> Any:
    """Planned against their priorities: the low tasks first, the critical one last."""
    from builders import machine
    from builders import task as built_task

    tasks = [
        built_task("low-1", priority="low"),
        built_task("low-2", priority="low"),
        built_task("low-3", priority="low"),
        built_task("high", priority="high"),
        built_task("critical", priority="critical"),
    ]
    for rank, each in enumerate(tasks):
        each["start_rank"] = rank
    return machine(tasks, max_concurrent=max_concurrent)


def test_a_lever_that_makes_the_run_sequential_returns_it_to_priority_order() -> None:
    from builders import at, ended, records, start_all

    from awoc_scripts.execution.machine.events import LeverPulled

    m = against_priorities(2)
    assert start_all(m, 0) == ["low-1", "low-2"]  # the plan's order
    effects = m.handle(LeverPulled("convert-remaining-tasks", {}, at=at(1)))
    assert records(effects, "start-order") == [{"by": "priority", "why": "a lever set max_concurrent to 1"}]
    assert not m.follows_plan
    m.handle(ended("low-1", 2), ended("low-2", 2))
    assert start_all(m, 2) == ["critical"]  # not low-3, which the plan put next
    m.handle(ended("critical", 3))
    assert start_all(m, 3) == ["high"]


def test_an_emergency_that_cancels_tasks_returns_the_run_to_priority_order() -> None:
    from builders import at, ended, records, start_all

    from awoc_scripts.execution.machine.events import LeverPulled

    m = against_priorities(1)
    assert start_all(m, 0) == ["low-1"]
    effects = m.handle(LeverPulled("emergency-prioritization", {}, at=at(1)))
    assert records(effects, "start-order") == [{"by": "priority", "why": "a lever cancelled 2 task(s)"}]
    m.handle(ended("low-1", 2))
    assert start_all(m, 2) == ["critical"]


def test_a_resumed_run_with_another_max_concurrent_goes_by_priority_a_budget_lever_keeps_the_plan() -> None:
    from builders import at, records, start_all

    from awoc_scripts.execution.machine.events import LeverPulled, RunStarted
    from awoc_scripts.execution.machine.machine import RunMachine

    planned = against_priorities(2)
    resumed = RunMachine(
        "run-1",
        planned.scheduler.tasks,
        planned.records,
        dict.fromkeys(planned.records, "pending"),
        planned.settings,
        max_concurrent=1,
    )
    effects = resumed.handle(RunStarted(at=at(0)))
    assert records(effects, "start-order") == [
        {"by": "priority", "why": "max_concurrent is 1, the order was planned for 2"}
    ]
    assert start_all(resumed, 0) == ["critical"]

    kept = against_priorities(2)
    kept.handle(LeverPulled("reduce-remaining-tasks", {"percent": 50}, at=at(0)))
    assert kept.follows_plan
    assert start_all(kept, 0) == ["low-1", "low-2"]


@settings(max_examples=100, deadline=None)
@given(random_plans(), st.randoms(use_true_random=False), st.integers(0, 30))
def test_after_order_by_priority_a_scheduler_starts_what_one_in_priority_order_would(
    case: tuple[list[dict[str, Any]], int, int], rng: Any, switch_after: int
) -> None:
    """Any planned order, left after any number of starts and ends: from then on every start is
    the one a scheduler that never had a planned order makes from the same state, and every task
    starts once, after its dependencies."""
    config_tasks, max_concurrent, limit = case
    plan = plan_of(
        {"parallel_config": {"batch_token_limit": limit, "total_token_budget": 10**7}, "tasks": config_tasks}
    )
    ranks = list(range(len(plan["tasks"])))
    rng.shuffle(ranks)
    ranked = [{**t, "start_rank": r} for t, r in zip(plan["tasks"], ranks, strict=True)]
    remaining = graph_metrics(plan["tasks"]).remaining
    planned, by_priority = Scheduler(ranked, remaining), Scheduler(plan["tasks"], remaining)
    running: list[str] = []
    started: list[str] = []
    while True:
        if len(started) == switch_after:
            planned.order_by_priority()
        decision = planned.next_start(running, max_concurrent, limit)
        if len(started) >= switch_after:
            assert decision == by_priority.next_start(running, max_concurrent, limit)
        if decision is not None:
            tid = decision.task_id
            assert all(d in started and d not in running for d in planned.by_id[tid]["dependencies"])
            planned.start(tid)
            by_priority.start(tid)
            running.append(tid)
            started.append(tid)
        elif running:
            done = running.pop(0)
            planned.finish(done, SUCCEEDED)
            by_priority.finish(done, SUCCEEDED)
        else:
            break
    assert sorted(started) == sorted(planned.by_id)
