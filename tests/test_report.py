"""Aggregation and reports: contracts of aggregate.json and report.json, markdown, the seed's formats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.results.aggregate import aggregate, assign_task_ids, normalize_result
from awoc_scripts.results.report import create_report, human_duration, render_markdown, render_research_report

from conftest import EXAMPLES, REPO, write_json

AGGREGATE_KEYS = {
    "schema",
    "kind",
    "run_id",
    "generated_at",
    "order",
    "by_agent",
    "results",
    "failures",
    "not_run",
    "counts",
    "total_tokens",
    "total_cost_usd",
    "tasks",
}
REPORT_KEYS = {
    "schema",
    "kind",
    "run_id",
    "generated_at",
    "workflow",
    "status",
    "stop_reason",
    "execution_summary",
    "resource_usage",
    "critical_path",
    "critical_path_planned",
    "critical_path_actual",
    "critical_path_actual_s",
    "policies",
    "policy_actions",
    "concurrency",
    "cpu",
    "estimate_vs_actual",
    "warm_pool",
    "task_results",
    "merged_results",
}
SUMMARY_KEYS = {
    "total_tasks",
    "completed_successfully",
    "failed_tasks",
    "not_run_tasks",
    "total_time",
    "total_time_s",
    "sequential_estimate",
    "sequential_estimate_s",
    "time_saved",
    "time_saved_s",
    "efficiency_gain",
    "efficiency_gain_pct",
    "time_saved_counts",
    "wall_clock_time",
    "wall_clock_time_s",
}
USAGE_KEYS = {
    "total_tokens",
    "tokens_counted",
    "average_per_task",
    "budget_utilization",
    "budget_utilization_pct",
    "total_token_budget",
    "tokens_by_kind",
    "cost_usd",
    "total_cost_budget_usd",
    "reused_tasks",
    "tokens_saved",
    "cost_saved_usd",
}
TASK_RESULT_KEYS = {
    "task_id",
    "agent",
    "task",
    "runner",
    "status",
    "result",
    "tokens_used",
    "tokens_counted",
    "token_budget",
    "cost_usd",
    "cost_budget_usd",
    "attempts",
    "duration",
    "duration_s",
    "started_at",
    "finished_at",
    "error",
    "retry_command",
    "warnings",
    "permission_denials",
    "worktree",
    "executed_on",
    "verify",
    "cached_from",
}


def seed_result(agent: str, task: str, result: str, code: int, tokens: int, duration: float) -> dict[str, Any]:
    """What the seed's own bash loop writes."""
    return {
        "agent": agent,
        "task": task,
        "result": result,
        "exit_code": code,
        "tokens_used": tokens,
        "duration": duration,
    }


def test_seed_example_numbers() -> None:
    # the seed's report: 5 tasks, 4 ok, 18750 tokens of 25000, 12m 15s sequential, 4m 23s total
    results = [
        normalize_result(
            seed_result(f"agent{i}", f"task {i}", f"r{i}", 1 if i == 4 else 0, 3750, d),
            f"task_agent{i}_{100 + i}_result.json",
        )
        for i, d in enumerate([263.0, 150.0, 120.0, 100.0, 102.0])
    ]
    assign_task_ids(results, None)
    report = create_report(aggregate(results, None, None), {"total_token_budget": 25000, "total_time_s": 263})
    summary = report["execution_summary"]
    assert (summary["total_tasks"], summary["completed_successfully"], summary["failed_tasks"]) == (5, 4, 1)
    assert summary["total_time"] == "4m 23s"
    # the seed's 12m 15s counts the failed task's 102 s too; time saved counts work that was done
    assert summary["sequential_estimate"] == "10m 33s" and summary["time_saved_counts"] == "succeeded tasks only"
    assert summary["time_saved"] == "6m 10s" and summary["time_saved_s"] == 370
    assert summary["efficiency_gain"] == "58%"
    usage = report["resource_usage"]
    assert (usage["total_tokens"], usage["average_per_task"], usage["budget_utilization"]) == (18750, 3750, "75%")
    assert report["task_results"][4]["task_id"] == "agent4-104"
    assert report["task_results"][4]["retry_command"] == "parallel-task-retry retry-reduced agent4-104"


def test_human_durations() -> None:
    assert [human_duration(s) for s in (0.04, 9.96, 42, 263, 3725)] == ["0.0s", "10.0s", "42s", "4m 23s", "1h 2m 5s"]


def completed_run(cli, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    config = {
        "workflow": "research",
        "parallel_config": {"failure_tolerance": 2, "retries": 0},
        "tasks": [
            {
                "task_id": "a",
                "agent": "docs-fetcher",
                "description": "Research GraphQL performance",
                "command": ["echo", "same finding"],
            },
            {
                "task_id": "b",
                "agent": "docs-fetcher",
                "description": "Research REST limits",
                "command": ["echo", "same finding"],
            },
            {
                "task_id": "c",
                "agent": "architect",
                "description": "Design the API",
                "dependencies": ["a", "b"],
                "command": ["echo", "the design"],
            },
            {"task_id": "d", "agent": "workforce", "description": "Break it", "command": ["false"]},
            {
                "task_id": "e",
                "agent": "workforce",
                "description": "After d",
                "dependencies": ["d"],
                "command": ["true"],
            },
        ],
    }
    result = cli("delegate-parallel", "run", "--quiet", str(write_json(tmp_path / "c.json", config)))
    assert result.code == 1, result.stderr
    run_dir = Path(result.json()["report_json"]).parent
    return run_dir, result.json()


def test_run_writes_aggregate_and_reports_with_pinned_keys(cli, tmp_path: Path) -> None:
    run_dir, summary = completed_run(cli, tmp_path)
    aggregated = orjson.loads((run_dir / "aggregate.json").read_bytes())
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert set(aggregated) == AGGREGATE_KEYS
    assert set(report) == REPORT_KEYS
    assert set(report["execution_summary"]) == SUMMARY_KEYS
    assert set(report["resource_usage"]) == USAGE_KEYS
    assert all(set(t) == TASK_RESULT_KEYS for t in report["task_results"])
    assert summary["execution_summary"] == report["execution_summary"]

    assert aggregated["order"].index("c") > aggregated["order"].index("a")
    assert aggregated["by_agent"] == {"docs-fetcher": ["a", "b"], "architect": ["c"], "workforce": ["d", "e"]}
    assert [r["task_ids"] for r in aggregated["results"]] == [["a", "b"], ["c"]]  # identical results merged
    run_id = run_dir.name
    assert aggregated["failures"] == [
        {
            "task_id": "d",
            "agent": "workforce",
            "task": "Break it",
            "status": "failed",
            "reason": "exit code 1",
            "retry_command": f"parallel-task-retry retry-reduced d --run {run_id}",
        }
    ]
    assert aggregated["not_run"][0]["task_id"] == "e" and aggregated["not_run"][0]["reason"] == "dependency d failed"
    assert report["merged_results"] == [["a", "b"]]


def test_markdown_report_has_summary_timeline_results_and_retry_commands(cli, tmp_path: Path) -> None:
    run_dir, _ = completed_run(cli, tmp_path)
    markdown = (run_dir / "report.md").read_text()
    assert markdown.startswith("# delegate-parallel report: research")
    assert "| Tasks | 5 (3 succeeded, 1 failed, 1 skipped) |" in markdown
    assert "```mermaid\ngantt" in markdown and "section docs-fetcher" in markdown
    assert "    c (succeeded) :done, " in markdown and "    d (failed) :crit, " in markdown
    assert f"`parallel-task-retry retry-reduced d --run {run_dir.name}`" in markdown
    assert f"`delegate-parallel resume {run_dir.name}`" in markdown
    assert "~~~text\nthe design\n~~~" in markdown


def test_research_report_groups_by_agent_and_topic(cli, tmp_path: Path) -> None:
    run_dir, _ = completed_run(cli, tmp_path)
    report = orjson.loads((run_dir / "report.json").read_bytes())
    research = render_research_report(report)
    assert "## Findings of docs-fetcher" in research
    assert "### GraphQL performance" in research and "### REST limits" in research
    assert research.index("## Findings of docs-fetcher") < research.index("## Findings of architect")
    assert render_markdown(report) != research


def test_report_command_prints_again_and_rebuilds_missing_files(cli, tmp_path: Path) -> None:
    run_dir, _ = completed_run(cli, tmp_path)
    (run_dir / "report.md").unlink()
    again = cli("delegate-parallel", "report")
    assert again.code == 0 and again.stdout.startswith("# delegate-parallel report")
    assert (run_dir / "report.md").exists()
    as_json = cli("delegate-parallel", "report", "--format", "json")
    assert as_json.json()["run_id"] == run_dir.name


def test_seed_flow_by_hand(cli, tmp_path: Path, state_dir: Path) -> None:
    """The seed's bash flow, step by step: results its own loop wrote, then aggregate and create-report."""
    assert cli("parallel-task-parser", "validate", "architect:Design", "docs-fetcher:Research").code == 0
    results = tmp_path / "results"
    results.mkdir()
    write_json(
        results / "task_architect_4242_result.json", seed_result("architect", "Design", "a design", 0, 1200, 3.5)
    )
    write_json(results / "task_docs-fetcher_4243_result.json", seed_result("docs-fetcher", "Research", "", 2, 300, 1.0))
    aggregated = cli("parallel-result-aggregator", "aggregate", str(results))
    assert aggregated.code == 0, aggregated.stderr
    data = aggregated.json()
    assert data["counts"] == {"succeeded": 1, "failed": 1} and data["total_tokens"] == 1500
    report = cli("parallel-report-generator", "create-report", data["written_to"], '{"total_token_budget": 10000}')
    assert report.code == 0, report.stderr
    body = report.json()
    assert body["execution_summary"]["completed_successfully"] == 1
    assert body["resource_usage"]["budget_utilization"] == "15%"
    markdown = cli("parallel-report-generator", "create-report", data["written_to"], "--format", "markdown")
    assert markdown.stdout.startswith("# delegate-parallel report")
    # the seed passes result *contents*, and unset variables as empty strings
    content = (results / "task_architect_4242_result.json").read_text()
    assert cli("parallel-result-aggregator", "aggregate", content, "").json()["counts"] == {"succeeded": 1}


@pytest.mark.parametrize("bad", ["[1]", '{"agent": 3}', "missing.json"])
def test_aggregator_bad_input(cli, bad: str) -> None:
    result = cli("parallel-result-aggregator", "aggregate", bad)
    assert result.code == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_report_generator_bad_format(cli, tmp_path: Path) -> None:
    completed_run(cli, tmp_path)
    result = cli("parallel-report-generator", "create-report", "--format", "pdf")
    assert result.code == 2 and "is not one of json, markdown, research_report" in result.stderr


def test_demo_example_runs_end_to_end(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make demo` runs: real command tasks inspecting this repository (state kept in tmp)."""
    if not (REPO / ".venv" / "bin" / "dependency-validator").exists():
        pytest.skip("the demo uses the project's .venv (make install)")
    monkeypatch.chdir(REPO)
    result = cli("delegate-parallel", "run", "--quiet", str(EXAMPLES / "inspect-repo.json"))
    assert result.code == 0, result.stderr
    report = orjson.loads(Path(result.json()["report_json"]).read_bytes())
    assert report["execution_summary"]["completed_successfully"] == 7
    summary = next(t for t in report["task_results"] if t["task_id"] == "summary")
    assert "Summary of 6 inspections" in summary["result"]


def test_aggregate_takes_the_seeds_json_text_of_any_length(cli) -> None:
    result = {"agent": "workforce", "task": "x" * 400, "result": "done " * 200, "exit_code": 0, "tokens_used": 5}
    out = cli("parallel-result-aggregator", "aggregate", orjson.dumps(result).decode())
    assert out.code == 0, out.stderr
    assert out.json()["counts"] == {"succeeded": 1}
    long_text = cli("parallel-result-aggregator", "aggregate", "y" * 400)
    assert long_text.code == 2 and "internal error" not in long_text.stderr
    assert "cannot read task result: File name too long" in long_text.stderr


def timed_result(task_id: str, start_s: float, end_s: float, budget: int) -> dict[str, Any]:
    def at(s: float) -> str:
        return f"2026-01-01T00:00:{s:06.3f}Z"

    return {
        "task_id": task_id,
        "agent": "workforce",
        "status": "succeeded",
        "exit_code": 0,
        "result": "ok",
        "token_budget": budget,
        "started_at": at(start_s),
        "finished_at": at(end_s),
        "duration_s": end_s - start_s,
    }


def concurrency_of(results: list[dict[str, Any]], max_concurrent: int, batch_limit: int) -> tuple[Any, str]:
    changes = {"max_concurrent": max_concurrent, "lowest": max_concurrent, "final": max_concurrent, "cuts": 0}
    metadata = {"total_token_budget": 10**6, "concurrency": {**changes, "raises": 0}, "batch_token_limit": batch_limit}
    report = create_report(aggregate([normalize_result(r, None) for r in results], None, None), metadata)
    row = [line for line in render_markdown(report).splitlines() if line.startswith("| Concurrency |")]
    return report["concurrency"], row[0] if row else ""


def test_report_says_how_many_tasks_ran_at_once_and_when_the_batch_limit_held_them_back() -> None:
    # three tasks end to end (one ends as the next starts: not beside it), whose budgets fit one at a time
    serial = [timed_result("a", 0, 1, 20000), timed_result("b", 1, 2, 20000), timed_result("c", 2, 3, 20000)]
    concurrency, row = concurrency_of(serial, 4, 25000)
    assert concurrency["peak"] == 1 and concurrency["held_by_batch_token_limit"] == 25000
    assert row == (
        "| Concurrency | at most 1 at once (max_concurrent 4); "
        "no 2 of these tasks' token budgets fit under batch_token_limit 25000 |"
    )
    # the same times with budgets that fit together: dependencies, say, kept them apart, as the timeline shows
    concurrency, row = concurrency_of([{**r, "token_budget": 5000} for r in serial], 4, 25000)
    assert concurrency["peak"] == 1 and concurrency["held_by_batch_token_limit"] is None
    assert row == ""
    # as many at once as allowed: no row
    overlapping = [timed_result("a", 0, 2, 5000), timed_result("b", 0.5, 3, 5000), timed_result("c", 1, 2.5, 5000)]
    concurrency, row = concurrency_of(overlapping, 3, 25000)
    assert concurrency["peak"] == 3 and row == ""


def test_run_whose_budgets_exceed_the_batch_limit_reports_one_at_a_time(cli, tmp_path: Path) -> None:
    config = {
        "parallel_config": {"max_concurrent": 3, "retries": 0, "batch_token_limit": 25000},
        "tasks": [
            {"task_id": f"t{i}", "agent": "workforce", "description": "x", "command": ["true"], "token_budget": 30000}
            for i in range(3)
        ],
    }
    result = cli("delegate-parallel", "run", "--quiet", str(write_json(tmp_path / "c.json", config)))
    assert result.code == 0, result.stderr
    assert result.stderr.count("alone") == 1
    assert "3 tasks (t0, t1, t2) have token budgets (up to 30000) over batch_token_limit 25000" in result.stderr
    run_dir = Path(result.json()["report_json"]).parent
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["concurrency"]["peak"] == 1
    markdown = (run_dir / "report.md").read_text()
    assert "| Concurrency | at most 1 at once (max_concurrent 3); no 2 of these tasks" in markdown


def test_time_saved_is_called_an_upper_bound_when_the_tasks_kept_the_cpus_busy() -> None:
    results = [timed_result("a", 0, 4, 1000), timed_result("b", 0, 4, 1000)]

    def report_with(tasks_cpu_s: float) -> tuple[Any, str]:
        execution = {"started_at": "2026-01-01T00:00:00.000Z", "active_s": 4.0, "tasks_cpu_s": tasks_cpu_s, "cpus": 2}
        metadata = {"total_token_budget": 10**6, "executions": [execution]}
        report = create_report(aggregate([normalize_result(r, None) for r in results], None, None), metadata)
        row = [line for line in render_markdown(report).splitlines() if line.startswith("| Time saved |")]
        return report["cpu"], row[0]

    cpu, row = report_with(7.6)
    assert cpu == {"tasks_cpu_s": 7.6, "cpus": 2, "busy_pct": 95.0}
    assert row == (
        "| Time saved | 4.0s (50%), at most: the tasks kept the 2 CPU(s) 95% busy, so one at a time each would "
        "likely have taken less than it did |"
    )
    cpu, row = report_with(2.0)
    assert cpu["busy_pct"] == 25.0 and row == "| Time saved | 4.0s (50%) |"


def test_a_run_records_the_cpu_time_of_its_tasks(cli, tmp_path: Path) -> None:
    burn = "import time\nx = 0\nfor i in range(3_000_000): x += i\nprint(time.process_time())"
    config = {
        "parallel_config": {"max_concurrent": 2, "retries": 0},
        "tasks": [
            {"task_id": f"t{i}", "agent": "workforce", "description": "x", "command": [sys.executable, "-c", burn]}
            for i in range(2)
        ],
    }
    result = cli("delegate-parallel", "run", "--quiet", str(write_json(tmp_path / "c.json", config)))
    assert result.code == 0, result.stderr
    run_dir = Path(result.json()["report_json"]).parent
    burnt = sum(float((run_dir / "tasks" / t / "stdout.log").read_text()) for t in ("t0", "t1"))
    (execution,) = orjson.loads((run_dir / "state.json").read_bytes())["executions"]
    assert execution["tasks_cpu_s"] >= burnt > 0 and execution["cpus"] >= 1
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["cpu"]["tasks_cpu_s"] == execution["tasks_cpu_s"]
