"""Planning: budgets, critical path, the estimated schedule and its bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from awoc_scripts.input.request import Request, parse_request
from awoc_scripts.planning.estimate import _estimate_all_complete, _estimate_with_scheduler, estimate_schedule
from awoc_scripts.planning.execution_plan import plan_execution
from awoc_scripts.planning.plan import build_plan
from awoc_scripts.planning.scheduling import PRIORITY_RANK, Scheduler, graph_metrics

from conftest import EXAMPLES


def plan_of(config: dict[str, Any]) -> dict[str, Any]:
    return build_plan(Request(config, "test"))


def task(tid: str, duration: float, deps: list[str] = (), priority: str = "medium", budget: int = 1000) -> dict:
    return {
        "task_id": tid,
        "agent": "qa",
        "description": tid,
        "estimated_duration": duration,
        "dependencies": list(deps),
        "priority": priority,
        "token_budget": budget,
    }


def test_feature_development_plan(cli) -> None:
    result = cli("parallel-resource-planner", "plan-execution", str(EXAMPLES / "feature-development.json"), "2")
    assert result.code == 0, result.stderr
    execution = result.json()
    assert [t["token_budget"] for t in execution["tasks"]] == [3500, 6000, 8000, 4000]
    assert execution["critical_path"] == ["docs-fetcher-1", "architect-1", "workforce-1"]
    # every task defaults to the 600 s total timeout: 600 + 600 + (two in parallel) 600
    assert execution["estimated_makespan_s"] == 1800
    assert execution["sequential_estimate_s"] == 2400
    assert execution["waves"] == [["docs-fetcher-1"], ["architect-1"], ["workforce-1", "workforce-2"]]
    assert [t["level"] for t in execution["tasks"]] == [0, 1, 2, 2]
    one_at_a_time = cli("parallel-resource-planner", "plan-execution", str(EXAMPLES / "feature-development.json"), "1")
    assert one_at_a_time.json()["estimated_makespan_s"] == 2400


def test_execution_json_is_written_to_the_run(cli, state_dir: Path) -> None:
    plan = cli("parallel-task-parser", "validate", str(EXAMPLES / "tasks.json")).json()
    result = cli("parallel-resource-planner", "plan-execution")  # the current run
    assert result.code == 0, result.stderr
    saved = orjson.loads((state_dir / "runs" / plan["run_id"] / "execution.json").read_bytes())
    assert saved == result.json()
    # the seed passes the plan text itself: that is the same run, not a new one
    again = cli("parallel-resource-planner", "plan-execution", orjson.dumps(plan).decode(), "5", "30000")
    assert again.json()["run_id"] == plan["run_id"]
    assert len(list((state_dir / "runs").iterdir())) == 1


def test_inline_budgets_and_scaling() -> None:
    args = ["--priority=high", "architect:a", "--priority=medium", "docs-fetcher:b", "workforce:c", "qa:d"]
    plan = build_plan(parse_request(args))
    assert [t["token_budget"] for t in plan["tasks"]] == [6600, 4000, 8000, 5000]
    scaled = build_plan(parse_request([*args, "--total-budget=15000"]))
    assert [t["token_budget"] for t in scaled["tasks"]] == [4194, 2542, 5084, 3177]
    assert scaled["budget"]["scale_factor"] == round(15000 / 23600, 6)
    replanned = plan_execution(plan, None, 15000)
    assert [t["token_budget"] for t in replanned["tasks"]] == [4194, 2542, 5084, 3177]


def test_explicit_budgets_kept_when_replanning_with_a_total() -> None:
    plan = plan_of({"tasks": [task("a", 1, budget=9000), {"task_id": "b", "agent": "workforce", "description": "x"}]})
    assert [t["token_budget"] for t in plan_execution(plan, None, 12000)["tasks"]] == [9000, 3000]


def test_hand_computed_schedule() -> None:
    # remaining paths: a 5, c 3 (c then d), b 2. a and c start; c ends at 1 and b starts;
    # a ends at 3 and d (needs a and c) runs 3..5
    plan = plan_of({"tasks": [task("a", 3), task("b", 2), task("c", 1), task("d", 2, ["a", "c"])]})
    execution = plan_execution(plan, 2)
    slots = {t["task_id"]: (t["estimated_start_s"], t["estimated_end_s"]) for t in execution["tasks"]}
    assert slots == {"a": (0, 3), "c": (0, 1), "b": (1, 3), "d": (3, 5)}
    assert execution["estimated_makespan_s"] == 5
    assert execution["critical_path"] == ["a", "d"]


def test_priority_then_critical_path_then_file_order() -> None:
    plan = plan_of(
        {
            "tasks": [
                task("low-long", 9, priority="low"),
                task("short", 1),
                task("long", 5),
                task("high", 1, priority="high"),
                task("tie", 5),
            ]
        }
    )
    metrics = graph_metrics(plan["tasks"])
    scheduler = Scheduler(plan["tasks"], metrics.remaining)
    assert scheduler.ready_ids() == ["high", "long", "tie", "short", "low-long"]


def test_batch_token_limit_serializes_and_a_huge_task_runs_alone() -> None:
    plan = plan_of(
        {
            "parallel_config": {"batch_token_limit": 10000},
            "tasks": [task("a", 1, budget=6000), task("b", 1, budget=6000), task("huge", 1, budget=20000)],
        }
    )
    execution = plan_execution(plan, 5)
    assert execution["estimated_makespan_s"] == 3
    alone = [w for w in execution["warnings"] if "alone" in w]
    assert alone == [
        "huge: token budget 20000 alone exceeds batch_token_limit 10000, so it runs alone, with no other task "
        "at once; raise batch_token_limit to run it beside other tasks"
    ]
    assert execution["peak_tokens_in_flight"] == 20000


def test_many_tasks_over_the_batch_limit_get_one_warning_with_a_limit_that_would_do() -> None:
    tasks = [task(f"t{i}", 1, budget=50000 + i) for i in range(12)]
    execution = plan_execution(plan_of({"tasks": tasks}), 4)
    assert execution["peak_concurrency"] == 1
    alone = [w for w in execution["warnings"] if "alone" in w]
    assert alone == [
        "12 tasks (t0, t1, t2, t3, t4 and 7 more) have token budgets (up to 50011) over batch_token_limit 25000, "
        "so each runs alone, with no other task at once; batch_token_limit 200038 would let 4 of them run at once"
    ]
    raised = plan_execution(plan_of({"parallel_config": {"batch_token_limit": 200038}, "tasks": tasks}), 4)
    assert raised["peak_concurrency"] == 4
    assert not [w for w in raised["warnings"] if "alone" in w]


def test_budgets_that_fit_the_batch_limit_only_a_few_at_a_time_get_a_warning_saying_how_many() -> None:
    tasks = [task(f"t{i}", 1, budget=10000) for i in range(6)]
    execution = plan_execution(plan_of({"parallel_config": {"total_token_budget": 60000}, "tasks": tasks}), 5)
    assert execution["peak_concurrency"] == 2
    assert [w for w in execution["warnings"] if "batch_token_limit" in w] == [
        "batch_token_limit 25000 lets at most 2 of these tasks run at once, not max_concurrent 5: their token "
        "budgets are 10000 to 10000; batch_token_limit 50000 would let 5 of them run at once"
    ]
    # computed budgets fit the default total, which is the default batch limit: no warning
    computed = [{k: v for k, v in t.items() if k != "token_budget"} for t in tasks]
    plain = plan_execution(plan_of({"tasks": computed}), 5)
    assert not [w for w in plain["warnings"] if "batch_token_limit" in w]


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, int]:
    n = draw(st.integers(1, 25))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        tasks.append(
            task(
                f"t{i}",
                draw(st.integers(1, 10)),
                [f"t{d}" for d in deps],
                draw(st.sampled_from(list(PRIORITY_RANK))),
                draw(st.integers(1, 12000)),
            )
        )
    return tasks, draw(st.integers(1, 6)), draw(st.integers(1000, 30000))


@settings(max_examples=150, deadline=None)
@given(random_plans())
def test_simulated_schedule_respects_every_bound(case: tuple[list[dict[str, Any]], int, int]) -> None:
    config_tasks, max_concurrent, limit = case
    plan = plan_of(
        {"parallel_config": {"batch_token_limit": limit, "total_token_budget": 10**7}, "tasks": config_tasks}
    )
    tasks = plan["tasks"]
    schedule = estimate_schedule(tasks, graph_metrics(tasks), max_concurrent, limit)
    slots = schedule.slots
    budget = {t["task_id"]: t["token_budget"] for t in tasks}
    assert set(slots) == set(budget)
    for t in tasks:
        for dep in t["dependencies"]:
            assert slots[dep].end <= slots[t["task_id"]].start
    for moment in {s.start for s in slots.values()}:
        live = [tid for tid, s in slots.items() if s.start <= moment < s.end]
        assert len(live) <= max_concurrent
        tokens = sum(budget[tid] for tid in live)
        assert tokens <= limit or (len(live) == 1 and budget[live[0]] > limit)
    lower_bound = max(graph_metrics(tasks).remaining.values())
    assert schedule.makespan >= lower_bound


@settings(max_examples=200, deadline=None)
@given(random_plans())
def test_the_fast_estimate_is_the_schedulers_schedule(case: tuple[list[dict[str, Any]], int, int]) -> None:
    # plans where every task waits for all its dependencies take a path of their own: it must
    # start every task exactly when the executor's Scheduler would
    config_tasks, max_concurrent, limit = case
    plan = plan_of(
        {"parallel_config": {"batch_token_limit": limit, "total_token_budget": 10**7}, "tasks": config_tasks}
    )
    tasks = plan["tasks"]
    metrics = graph_metrics(tasks)
    fast = _estimate_all_complete(tasks, metrics, max_concurrent, limit, None)
    general = _estimate_with_scheduler(tasks, metrics.remaining, max_concurrent, limit, None)
    assert fast == general


def test_ten_thousand_tasks_plan_in_reasonable_time() -> None:
    # not a timing test (see bench/): just that large plans work end to end
    tasks = [task(f"t{i}", 1, [f"t{i - 1}", f"t{i // 2}"] if i > 1 else []) for i in range(2000)]
    plan = plan_of({"parallel_config": {"total_token_budget": 10**8}, "tasks": tasks})
    assert len(plan_execution(plan, 8)["tasks"]) == 2000


@settings(max_examples=150, deadline=None)
@given(random_plans(), st.randoms(use_true_random=False))
def test_next_start_is_the_first_ready_task_that_fits(case: tuple[list[dict[str, Any]], int, int], rnd: Any) -> None:
    """Against the rule written out plainly: in ready order, the first whose budget fits."""
    config_tasks, max_concurrent, limit = case
    plan = plan_of({"parallel_config": {"total_token_budget": 10**7}, "tasks": config_tasks})
    scheduler = Scheduler(plan["tasks"], graph_metrics(plan["tasks"]).remaining)
    running: list[str] = []
    while not scheduler.all_done():
        ready = scheduler.ready_ids()
        in_flight = sum(scheduler.budget[t] for t in running)
        fits = [t for t in ready if in_flight + scheduler.budget[t] <= limit]
        if len(running) >= max_concurrent:
            expected = None
        elif running:
            expected = fits[0] if fits else None
        else:
            expected = ready[0] if ready else None
        decision = scheduler.next_start(running, max_concurrent, limit)
        assert (decision.task_id if decision else None) == expected
        if decision and rnd.random() < 0.7:
            scheduler.start(decision.task_id)
            running.append(decision.task_id)
            if rnd.random() < 0.2 and ready[1:]:
                scheduler.set_budget(ready[-1], rnd.randint(1, 12000))  # a lever changed a waiting budget
        elif running:
            done = running.pop(rnd.randrange(len(running)))
            scheduler.finish(done, "succeeded")
        else:
            break
