"""What past runs took: recorded at the end of a run, used by the next plan."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from awoc_scripts.state import history
from awoc_scripts.state.history import History, record_run, task_key


def config() -> str:
    tasks = [
        {"task_id": "slow", "agent": "qa", "description": "the slow one", "command": ["sleep", "0.6"]},
        {"task_id": "fast", "agent": "qa", "description": "the fast one", "command": ["sleep", "0.1"]},
        {"task_id": "last", "agent": "qa", "description": "after both", "command": ["true"], "dependencies": ["slow"]},
    ]
    return orjson.dumps({"parallel_config": {"total_timeout": 300}, "tasks": tasks}).decode()


def plan_of(cli, state_dir: Path) -> dict:
    result = cli("delegate-parallel", "run", "-q", config())
    assert result.code == 0, result.stderr
    run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
    return orjson.loads((run_dir / "execution.json").read_bytes()), orjson.loads((run_dir / "report.json").read_bytes())


def test_a_second_run_plans_from_what_the_first_took(cli, state_dir: Path) -> None:
    first_plan, first_report = plan_of(cli, state_dir)
    assert {t["duration_source"] for t in first_plan["tasks"]} == {"timeout"}
    assert first_plan["estimated_makespan_s"] == 600  # two timeouts in a chain: nothing known yet
    took = {t["task_id"]: t["duration_s"] for t in first_report["task_results"]}
    second_plan, second_report = plan_of(cli, state_dir)
    assert {t["task_id"]: t["duration_s"] for t in second_plan["tasks"]} == pytest.approx(took, abs=0.001)
    assert all(t["duration_source"] == "history (task, 1 run)" for t in second_plan["tasks"])
    assert second_plan["critical_path"] == ["slow", "last"]
    assert second_plan["expected_usage"]["tasks_with_history"] == 3
    estimate = second_report["estimate_vs_actual"]
    assert estimate["estimated_makespan_s"] == second_plan["estimated_makespan_s"]
    assert estimate["actual_s"] > 0


def test_history_keeps_the_last_runs_and_the_most_recent_tasks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(history, "MAX_TASK_KEYS", 3)
    for i in range(12):
        done = {"status": "succeeded", "started_at": "x", "agent": "qa", "task": f"t{i % 5}", "duration_s": i + 1.0}
        record_run(tmp_path, f"run{i}", [done, {**done, "task": "again", "tokens_used": {"total": i}}])
    data = orjson.loads((tmp_path / "history.json").read_bytes())
    assert len(data["tasks"]) == 3 and task_key("qa", "again") in data["tasks"]
    again = History.load(tmp_path).expect("qa", "again")
    assert again is not None and again.runs == history.RUNS_KEPT and again.tokens == (2, 11)
    assert History.load(tmp_path).expect("qa", "never seen").source == "agent"
    assert History.load(tmp_path).expect("other", "never seen") is None


def test_a_damaged_history_is_no_history(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text("{not json")
    assert History.load(tmp_path).expect("qa", "x") is None


MISSHAPEN = [
    "[]",
    '{"tasks": 5, "agents": "qa"}',
    '{"tasks": {"k": 1}, "agents": {"qa": {"runs": {"a": 1}}}}',
    '{"agents": {"qa": {"runs": [null, 3, {"duration_s": "a"}, {"duration_s": -1}, {"duration_s": true}]}}}',
    '{"agents": {"qa": {"runs": [{"duration_s": 1e400}, {"tokens": 5}]}}}',
]


@pytest.mark.parametrize("text", MISSHAPEN)
def test_a_misshapen_history_costs_expectations_never_the_run(cli, state_dir: Path, text: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "history.json").write_text(text)
    assert History.load(state_dir).expect("qa", "the slow one") is None
    plan, _ = plan_of(cli, state_dir)
    assert {t["duration_source"] for t in plan["tasks"]} == {"timeout"}
    again = History.load(state_dir).expect("qa", "the slow one")  # rewritten whole by the run
    assert again is not None and again.runs == 1


def test_the_good_entries_of_a_history_survive_the_bad_ones(tmp_path: Path) -> None:
    good = {"run_id": "r", "duration_s": 2.5, "tokens": 7, "cost_usd": 0.5}
    bad = {"duration_s": "soon", "tokens": -3}
    text = {"agents": {"qa": {"runs": [good, bad, {**good, "tokens": 2.5, "cost_usd": "x"}]}, "dev": [good]}}
    (tmp_path / "history.json").write_bytes(orjson.dumps(text))
    seen = History.load(tmp_path).expect("qa", "anything")
    assert seen is not None and seen.runs == 2 and seen.tokens == (0, 7) and seen.cost_usd == (0.0, 0.5)
    assert History.load(tmp_path).expect("dev", "anything") is None
    record_run(tmp_path, "r", [{"status": "succeeded", "started_at": "x", "agent": "qa", "task": "x", "duration_s": 1}])
    assert History.load(tmp_path).expect("qa", "x") is not None


def test_the_slash_commands_summary_shows_what_to_expect_from_past_runs(cli, state_dir: Path) -> None:
    plan_of(cli, state_dir)
    result = cli("delegate-parallel", "prepare", "--for-claude", config())
    assert result.code == 0, result.stderr
    assert "From past runs (3 of the tasks seen before): 0-0 tokens, $0-$0." in result.stdout


def test_planning_from_history_leaves_the_plan_as_it_was(tmp_path: Path) -> None:
    # plan_execution fills in durations from history and budgets from a new total in copies:
    # the plan it was given (a saved run's, say) keeps what it said
    import copy

    from awoc_scripts.input.request import parse_request
    from awoc_scripts.planning.execution_plan import plan_execution
    from awoc_scripts.planning.plan import build_plan

    done = {"status": "succeeded", "started_at": "x", "agent": "qa", "task": "the slow one", "duration_s": 7.0}
    record_run(tmp_path, "run0", [done])
    plan = build_plan(parse_request([config()]))
    before = copy.deepcopy(plan)
    execution = plan_execution(plan, total_token_budget=9000, history=History.load(tmp_path))
    assert plan == before
    slow = next(t for t in execution["tasks"] if t["task_id"] == "slow")
    assert slow["duration_s"] == 7.0 and slow["duration_source"].startswith("history")
    assert sum(t["token_budget"] for t in execution["tasks"]) <= 9000
