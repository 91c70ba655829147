"""The execution engine, for real: subprocesses, the fake claude CLI, timeouts, failures, resume."""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.execution.display import PlainDisplay
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.execution.run_options import Options
from awoc_scripts.flow.prepare import prepare_run
from awoc_scripts.flow.runs import execute_run
from awoc_scripts.state.store import StateStore

from conftest import FAKES, awoc_processes, claude_calls, start_orchestrator, task_results, wait_for

pytestmark = pytest.mark.usefixtures("no_leftover_processes")
RECORD = [sys.executable, str(FAKES / "record_task.py")]


def recorder(log: Path, seconds: float, code: int = 0) -> list[str]:
    return [*RECORD, str(log), str(seconds), str(code)]


def records(log: Path) -> dict[str, dict[str, Any]]:
    if not log.exists():
        return {}
    return {r["task"]: r for r in map(orjson.loads, log.read_bytes().splitlines())}


def run_in_process(config: dict[str, Any], **options: Any) -> tuple[int, dict[str, Any], Path]:
    store = StateStore()
    run, plan, execution = prepare_run(store, [orjson.dumps(config).decode()])
    code, summary = execute_run(
        run, plan, execution, LocalExecutor(grace_s=0.5), PlainDisplay(quiet=True), options=Options(**options)
    )
    return code, summary, run.dir


def gone(pid: int) -> bool:
    """Dead, or a zombie waiting for a parent that is not ours to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat.rsplit(b")", 1)[1].split()[0] == b"Z"


results = task_results


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def test_dependencies_and_both_concurrency_bounds_hold(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    budgets = [3000, 4000, 5000, 6000, 3000, 4000, 5000, 3000, 6000, 4000]
    tasks = [
        {
            "task_id": f"t{i}",
            "agent": "qa",
            "description": f"task {i}",
            "token_budget": b,
            "command": recorder(log, 0.15),
        }
        for i, b in enumerate(budgets)
    ]
    tasks[4]["dependencies"] = ["t0", "t1"]
    tasks[7]["dependencies"] = ["t4"]
    tasks[9]["dependencies"] = ["t7", "t8"]
    config = {
        "parallel_config": {
            "max_concurrent": 3,
            "batch_token_limit": 10000,
            "total_token_budget": 100000,
            "failure_tolerance": 0,
        },
        "tasks": tasks,
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 0, summary
    ran = records(log)
    assert set(ran) == {t["task_id"] for t in tasks}
    budget = {t["task_id"]: t["token_budget"] for t in tasks}
    for moment in [r["start"] for r in ran.values()]:
        live = [tid for tid, r in ran.items() if r["start"] <= moment < r["end"]]
        assert len(live) <= 3, live
        assert sum(budget[t] for t in live) <= 10000, live
    for task in tasks:
        for dep in task.get("dependencies", []):
            assert ran[dep]["end"] <= ran[task["task_id"]]["start"]
            assert f"result of {dep}" in ran[task["task_id"]]["prompt"]
    assert all(r["status"] == "succeeded" for r in results(run_dir).values())
    assert (run_dir / "results" / "task_qa_t9_result.json").exists()


def test_ready_tasks_start_in_priority_order(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    priorities = ["low", "critical", "medium", "high", "critical"]
    tasks = [
        {"task_id": f"t{i}-{p}", "agent": "qa", "description": "x", "priority": p, "command": recorder(log, 0.01)}
        for i, p in enumerate(priorities)
    ]
    code, _, _ = run_in_process({"parallel_config": {"max_concurrent": 1}, "tasks": tasks})
    assert code == 0
    order = [tid for tid, _ in sorted(records(log).items(), key=lambda kv: kv[1]["start"])]
    assert order == ["t1-critical", "t4-critical", "t3-high", "t2-medium", "t0-low"]


GRANDCHILD_IGNORING_TERM = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()  # leaves the task's process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(60)
else:
    time.sleep(60)
"""


def test_timeout_kills_the_whole_tree_even_what_left_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    config = {
        "parallel_config": {"retries": 0},
        "tasks": [
            {
                "task_id": "stubborn",
                "agent": "qa",
                "description": "x",
                "timeout": 1,
                "command": [sys.executable, "-c", GRANDCHILD_IGNORING_TERM, str(pid_file)],
            }
        ],
    }
    code, _, run_dir = run_in_process(config)
    assert code == 1
    result = results(run_dir)["stubborn"]
    assert result["status"] == "timed_out" and "timed out after 1 s" in result["error"]
    assert gone(int(pid_file.read_text()))


def test_one_failure_within_tolerance_finishes_with_exit_1(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    config = {
        "parallel_config": {"failure_tolerance": 1, "retries": 0},
        "tasks": [
            {"task_id": "bad", "agent": "qa", "description": "x", "command": recorder(log, 0, 3)},
            {"task_id": "good", "agent": "qa", "description": "x", "command": recorder(log, 0.1)},
            {
                "task_id": "after-bad",
                "agent": "qa",
                "description": "x",
                "dependencies": ["bad"],
                "command": recorder(log, 0),
            },
        ],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 1
    by_id = results(run_dir)
    assert by_id["bad"]["status"] == "failed" and by_id["bad"]["exit_code"] == 3
    assert by_id["good"]["status"] == "succeeded"
    assert by_id["after-bad"]["status"] == "skipped" and by_id["after-bad"]["reason"] == "dependency bad failed"
    assert summary["status"] == "finished_with_failures"


def test_two_failures_over_tolerance_abort_with_exit_3(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    config = {
        "parallel_config": {"failure_tolerance": 1, "retries": 0, "max_concurrent": 3},
        "tasks": [
            {"task_id": "bad1", "agent": "qa", "description": "x", "command": recorder(log, 0, 1)},
            {"task_id": "bad2", "agent": "qa", "description": "x", "command": recorder(log, 0.2, 1)},
            {"task_id": "slow", "agent": "qa", "description": "x", "command": recorder(log, 30)},
            {
                "task_id": "later",
                "agent": "qa",
                "description": "x",
                "dependencies": ["slow"],
                "command": recorder(log, 0),
            },
        ],
    }
    started = time.monotonic()
    code, _, run_dir = run_in_process(config)
    assert code == 3
    assert time.monotonic() - started < 25  # "slow" (30 s) was stopped, not waited for
    by_id = results(run_dir)
    assert {by_id[t]["status"] for t in ("bad1", "bad2")} == {"failed"}
    assert by_id["slow"]["status"] == "cancelled" and by_id["later"]["status"] == "cancelled"
    assert "failure tolerance exceeded" in by_id["later"]["reason"]
    state = orjson.loads((run_dir / "state.json").read_bytes())
    assert state["status"] == "aborted" and state["orchestrator"] is None
    assert any(e["event"] == "run-abort" for e in events(run_dir))


def test_retry_with_reduced_scope_quotes_the_previous_error(fake_claude: Path) -> None:
    config = {
        "parallel_config": {"retries": 1},
        "tasks": [
            {
                "task_id": "flaky",
                "agent": "architect",
                "token_budget": 5000,
                "description": "Design it [[fake:fail_times=1]] [[fake:key=flaky]]",
            }
        ],
    }
    code, _, run_dir = run_in_process(config)
    assert code == 0
    calls = claude_calls(fake_claude)
    assert len(calls) == 2
    assert "A previous attempt failed" not in calls[0]["prompt"]
    assert "A previous attempt failed" in calls[1]["prompt"] and "API Error: 500" in calls[1]["prompt"]
    result = results(run_dir)["flaky"]
    assert result["attempts"] == 2 and result["token_budget"] == 4000


def test_rate_limits_wait_with_backoff_and_do_not_count(fake_claude: Path) -> None:
    config = {
        "parallel_config": {"retries": 0, "failure_tolerance": 0},
        "tasks": [
            {
                "task_id": "busy",
                "agent": "docs-fetcher",
                "description": "x [[fake:fail_times=2]] [[fake:fail_kind=rate_limit]] [[fake:key=busy]]",
            }
        ],
    }
    code, _, run_dir = run_in_process(config, backoff_base_s=0.05)
    assert code == 0
    assert len(claude_calls(fake_claude)) == 3
    assert results(run_dir)["busy"]["attempts"] == 1
    assert [e["event"] for e in events(run_dir)].count("task-rate-limited") == 2


def test_stream_json_budget_is_enforced_per_turn(fake_claude: Path) -> None:
    config = {
        "parallel_config": {"retries": 0},
        "tasks": [
            {
                "task_id": "chatty",
                "agent": "workforce",
                "token_budget": 5000,
                "description": "x [[fake:turns=6]] [[fake:turn_sleep=0.4]] [[fake:tokens=2000,300]] "
                "[[fake:grows=1000]] [[fake:stream_usage=per_turn]]",
            }
        ],
    }
    code, _, run_dir = run_in_process(config)
    assert code == 1
    result = results(run_dir)["chatty"]
    assert result["status"] == "budget_exceeded"
    # each turn adds 1000 (a tool result) and 300 (its answer) to what the next one sends: past
    # 5000 at turn 4, stopped before its sixth
    assert 5000 < result["tokens_counted"] < 5 * 1300 + 6 * 300 and result["tokens_used"]["total"] > 4 * 2300
    assert "over its budget of 5000" in result["error"]


def test_agent_tasks_run_claude_with_the_agent_and_dependency_results(fake_claude: Path) -> None:
    config = {
        "tasks": [
            {
                "task_id": "research",
                "agent": "docs-fetcher",
                "description": "Find facts [[fake:result=FACT-42]]",
                "context": "Only public docs.",
            },
            {"task_id": "design", "agent": "architect", "description": "Design it", "dependencies": ["research"]},
        ]
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 0
    calls = {c["prompt"].split("# Task ", 1)[1].split(" ", 1)[0]: c for c in claude_calls(fake_claude)}
    design = calls["design"]
    argv = design["argv"]
    assert argv[:4] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert "--no-session-persistence" in argv
    system = argv[argv.index("--append-system-prompt") + 1]
    assert system.startswith("You are the architect")
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert "--tools=Read,Grep,Glob" in argv
    assert "FACT-42" in design["prompt"] and "## research (docs-fetcher, succeeded)" in design["prompt"]
    assert "Only public docs." in calls["research"]["prompt"]
    by_id = results(run_dir)
    assert by_id["research"]["result"] == "FACT-42"
    assert by_id["research"]["tokens_used"]["output"] == 50
    assert by_id["research"]["cost_usd"] > 0
    assert summary["tokens_used"] == sum(r["tokens_used"]["total"] for r in by_id.values())


def test_task_text_is_data_not_shell(fake_claude: Path, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    text = f"say \"hi\" 'x' $(touch {pwned}) `touch {pwned}` ; touch {pwned}\nsecond line ünïcødé 🚀 \\n"
    code, _, _ = run_in_process({"tasks": [{"agent": "workforce", "description": text}]})
    assert code == 0
    (call,) = claude_calls(fake_claude)
    assert text in call["prompt"]
    assert not pwned.exists()


def test_total_timeout_aborts(tmp_path: Path) -> None:
    config = {
        "parallel_config": {"total_timeout": 1, "retries": 0},
        "tasks": [{"task_id": "long", "agent": "qa", "description": "x", "command": ["sleep", "30"]}],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 3
    assert results(run_dir)["long"]["status"] == "timed_out"
    assert "total timeout" in summary["stop_reason"]


def test_token_budget_exhaustion_stops_new_starts(fake_claude: Path) -> None:
    config = {
        "parallel_config": {"total_token_budget": 3000, "max_concurrent": 1, "retries": 0},
        "tasks": [
            {
                "task_id": "first",
                "agent": "qa",
                "description": "x [[fake:tokens=100,3500]]",  # it writes 3500: they count
                "token_budget": 1500,
                "priority": "high",
            },
            {"task_id": "second", "agent": "qa", "description": "y", "token_budget": 1500},
        ],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 3
    assert "token budget exhausted" in summary["stop_reason"]
    assert results(run_dir)["second"]["status"] == "cancelled"


def test_low_memory_runs_the_rest_one_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    tasks = [{"task_id": f"t{i}", "agent": "qa", "description": "x", "command": recorder(log, 0.1)} for i in range(4)]
    code, _, run_dir = run_in_process({"tasks": tasks}, memory_probe=lambda: 200.0)
    assert code == 0
    levers = [e for e in events(run_dir) if e["event"] == "lever"]
    assert levers[0]["action"] == "convert-remaining-tasks"


def test_far_too_little_memory_stops_the_youngest_task_and_runs_it_again_later(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    tasks = [
        {"task_id": "old", "agent": "qa", "description": "x", "priority": "high", "command": recorder(log, 2.5)},
        {"task_id": "young", "agent": "qa", "description": "x", "command": recorder(log, 2.5)},
    ]
    probes = iter([10_000.0])  # plenty before anything starts, then almost none (under half of 256 MB)
    code, _, run_dir = run_in_process({"tasks": tasks}, memory_probe=lambda: next(probes, 50.0))
    assert code == 0
    names = [e["event"] for e in events(run_dir)]
    pressure = next(e for e in events(run_dir) if e["event"] == "memory-pressure")
    assert pressure["stopped"] == "young" and "task-requeued" in names
    by_id = results(run_dir)
    assert by_id["young"]["status"] == "succeeded" and by_id["young"]["attempts"] == 1
    assert set(records(log)) == {"old", "young"}  # the stopped attempt never finished


def test_time_pressure_cancels_waiting_low_and_medium_tasks(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    config = {"parallel_config": {"total_timeout": 5, "max_concurrent": 1}, "tasks": [
        {"task_id": "vital", "agent": "qa", "description": "x", "priority": "critical", "command": recorder(log, 4.2)},
        {"task_id": "nice", "agent": "qa", "description": "x", "priority": "low", "command": recorder(log, 0)},
    ]}  # fmt: skip
    code, _, run_dir = run_in_process(config)
    assert code == 1  # cancelled by a policy is not succeeded
    assert orjson.loads((run_dir / "state.json").read_bytes())["status"] == "incomplete"
    by_id = results(run_dir)
    assert by_id["vital"]["status"] == "succeeded"
    assert by_id["nice"]["status"] == "cancelled" and "emergency prioritization" in by_id["nice"]["reason"]
    lever = next(e for e in events(run_dir) if e["event"] == "lever")
    assert lever["action"] == "emergency-prioritization" and lever["changed"]["cancelled"] == ["nice"]


def _token_pressure_config(big_tokens: int, policies: dict[str, bool] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"parallel_config": {"total_token_budget": 14000, "max_concurrent": 2}, "tasks": [
        {"task_id": "big", "agent": "qa", "priority": "critical", "token_budget": 4500,
         "description": f"x [[fake:tokens=0,{big_tokens}]]"},  # what it writes counts, all of it
        {"task_id": "slow", "agent": "qa", "priority": "high", "token_budget": 4500,
         "description": "x [[fake:sleep=1.5]] [[fake:tokens=10,10]]"},
        {"task_id": "later", "agent": "qa", "priority": "low", "token_budget": 4500,
         "description": "x [[fake:tokens=10,10]]"},
    ]}  # fmt: skip
    if policies is not None:
        config["parallel_config"]["policies"] = policies
    return config


def test_token_pressure_cuts_the_budgets_of_tasks_still_waiting(fake_claude: Path) -> None:
    code, _, run_dir = run_in_process(_token_pressure_config(11300))  # spent: over 80% of 14000
    assert code == 0
    lever = next(e for e in events(run_dir) if e["event"] == "lever")
    assert lever["action"] == "reduce-remaining-tasks" and lever["args"] == {"percent": 20}
    assert lever["why"] == "token_pressure: 11300 spent of 14000 tokens"
    assert results(run_dir)["later"]["token_budget"] == 3600
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert [a["action"] for a in report["policy_actions"]] == ["reduce-remaining-tasks"]
    assert "## Policies and levers that acted" in (run_dir / "report.md").read_text()


def test_token_pressure_counts_budgets_in_flight_only_when_asked(fake_claude: Path) -> None:
    # 8000 spent is under 80% of 14000; with the 4500 reserved by the running task it is over
    code, _, run_dir = run_in_process(_token_pressure_config(8000))
    assert code == 0 and not [e for e in events(run_dir) if e["event"] == "lever"]
    assert results(run_dir)["later"]["token_budget"] == 4500
    code, _, run_dir = run_in_process(_token_pressure_config(8000, {"token_pressure_counts_in_flight": True}))
    lever = next(e for e in events(run_dir) if e["event"] == "lever")
    assert lever["why"] == "token_pressure: 8000 spent + 4500 reserved by running tasks of 14000 tokens"


def test_a_policy_turned_off_does_not_act(fake_claude: Path, tmp_path: Path) -> None:
    code, _, run_dir = run_in_process(_token_pressure_config(11300, {"token_pressure": False}))
    assert code == 0 and not [e for e in events(run_dir) if e["event"] == "lever"]
    log = tmp_path / "ran.jsonl"
    config = {"parallel_config": {"total_timeout": 5, "max_concurrent": 1, "policies": {"time_pressure": False}},
              "tasks": [
        {"task_id": "vital", "agent": "qa", "description": "x", "priority": "critical", "command": recorder(log, 4.2)},
        {"task_id": "nice", "agent": "qa", "description": "x", "priority": "low", "command": recorder(log, 0)},
    ]}  # fmt: skip
    code, _, run_dir = run_in_process(config)
    assert code == 0 and sorted(records(log)) == ["nice", "vital"]


def test_the_plan_names_every_policy_with_its_threshold(cli) -> None:
    config = {"parallel_config": {"total_timeout": 100, "policies": {"memory_pressure": False}},
              "tasks": [{"agent": "qa", "description": "x", "command": ["true"]}]}  # fmt: skip
    execution = cli("parallel-resource-planner", "plan-execution", orjson.dumps(config).decode()).json()
    by_name = {p["policy"]: p for p in execution["policies"]}
    assert set(by_name) == {
        "token_pressure",
        "token_budget_exhausted",
        "time_pressure",
        "total_timeout",
        "memory_pressure",
    }
    assert by_name["time_pressure"]["enabled"] and "80 s of the 100 s" in by_name["time_pressure"]["when"]
    assert "20000 of 25000 tokens" in by_name["token_pressure"]["when"]
    assert by_name["memory_pressure"]["enabled"] is False


def test_shared_context_comes_first_and_identical_in_every_prompt(tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    shared = "Project: payments.\nConventions: small functions."
    tasks = [
        {"task_id": f"t{i}", "agent": "qa", "description": f"part {i}", "command": recorder(log, 0)} for i in range(3)
    ]
    code, _, _ = run_in_process({"parallel_config": {"shared_context": shared}, "tasks": tasks})
    assert code == 0
    prompts = [r["prompt"] for r in records(log).values()]
    prefix = f"# Shared context\n\n{shared}\n"
    assert all(p.startswith(prefix) for p in prompts)
    assert len({p[: len(prefix)] for p in prompts}) == 1 and len(set(prompts)) == 3


def test_agent_tasks_without_claude_are_refused_before_anything_runs(cli, state_dir, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    result = cli("delegate-parallel", "run", "architect:Design it")
    assert result.code == 2 and "need the claude CLI" in result.stderr
    assert not (state_dir / "runs").exists()


def test_replaceable_agent_command(monkeypatch, tmp_path: Path, cli) -> None:
    script = tmp_path / "agent.sh"
    script.write_text('#!/bin/sh\necho "agent=$AWOC_AGENT task=$AWOC_TASK_ID"; head -c 200 >/dev/null\n')
    script.chmod(0o755)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", str(script))
    result = cli("delegate-parallel", "run", "--quiet", "qa:check things")
    assert result.code == 0, result.stderr
    run_dir = next((Path(os.environ["AWOC_STATE_DIR"]) / "runs").iterdir())
    assert results(run_dir)["qa-1"]["result"] == "agent=qa task=qa-1"


# ---- the orchestrator as its own process: signals, crashes, levers from outside ----


def current_run_dir(state_dir: Path) -> Path:
    return state_dir / "runs" / (state_dir / "current").read_text().strip()


def test_ctrl_c_stops_everything_and_exits_130(state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    config = {
        "tasks": [
            {"task_id": f"s{i}", "agent": "qa", "description": "x", "command": recorder(log, 30)} for i in range(3)
        ]
    }
    proc = start_orchestrator(config)
    wait_for(lambda: (state_dir / "current").exists() and len(awoc_processes(state_dir)) >= 3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    run_dir = current_run_dir(state_dir)
    state = orjson.loads((run_dir / "state.json").read_bytes())
    assert state["status"] == "interrupted"
    assert {r["status"] for r in results(run_dir).values()} == {"cancelled"}


def test_sigkill_mid_run_then_resume(state_dir: Path, tmp_path: Path, cli) -> None:
    log = tmp_path / "ran.jsonl"
    flag = tmp_path / "second-attempt"
    slow = ["sh", "-c", f'if [ -e "{flag}" ]; then echo resumed; else touch "{flag}"; exec sleep 60; fi']
    config = {
        "parallel_config": {"max_concurrent": 4},
        "tasks": [
            {"task_id": "quick1", "agent": "qa", "description": "x", "command": recorder(log, 0)},
            {"task_id": "quick2", "agent": "qa", "description": "x", "command": recorder(log, 0)},
            {"task_id": "slow", "agent": "qa", "description": "x", "command": slow},
            {
                "task_id": "after",
                "agent": "qa",
                "description": "x",
                "dependencies": ["slow", "quick1"],
                "command": recorder(log, 0),
            },
        ],
    }
    proc = start_orchestrator(config)
    wait_for(lambda: (state_dir / "current").exists() and len(records(log)) == 2 and flag.exists())
    run_dir = current_run_dir(state_dir)
    wait_for(lambda: orjson.loads((run_dir / "state.json").read_bytes())["tasks"]["quick2"]["status"] == "succeeded")
    running = awoc_processes(state_dir)  # the slow task: its watchdog or the resume ends it
    assert running
    proc.kill()
    proc.wait()

    result = cli("delegate-parallel", "resume", "--quiet")
    assert result.code == 0, result.stderr
    assert all(gone(pid) for pid in running)
    ran = records(log)
    assert sorted(ran) == ["after", "quick1", "quick2"]  # the quick ones ran once, before the crash
    by_id = results(run_dir)
    assert by_id["slow"]["result"] == "resumed"
    assert {r["status"] for r in by_id.values()} == {"succeeded"}
    assert any(e["event"] == "resume-cleanup" for e in events(run_dir))


def test_lever_from_another_process_while_running(state_dir: Path, tmp_path: Path, cli) -> None:
    log = tmp_path / "ran.jsonl"
    config = {
        "parallel_config": {"max_concurrent": 1},
        "tasks": [
            {
                "task_id": "first",
                "agent": "qa",
                "description": "x",
                "priority": "critical",
                "command": recorder(log, 3),
            },
            {"task_id": "keep", "agent": "qa", "description": "x", "priority": "high", "command": recorder(log, 0)},
            {"task_id": "drop", "agent": "qa", "description": "x", "priority": "low", "command": recorder(log, 0)},
        ],
    }
    proc = start_orchestrator(config)
    wait_for(lambda: len(awoc_processes(state_dir)) == 1)
    lever = cli("task-prioritizer", "emergency-prioritization")
    assert lever.code == 0, lever.stderr
    control = lever.json()
    assert control["applied_by"].startswith("orchestrator")
    assert control["changed"]["cancelled"] == ["drop"]
    assert proc.wait(timeout=20) == 1  # a task the lever cancelled did not succeed: not a 0
    assert sorted(records(log)) == ["first", "keep"]
    assert orjson.loads((current_run_dir(state_dir) / "state.json").read_bytes())["status"] == "incomplete"


def test_sigterm_is_handled_like_ctrl_c(state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "ran.jsonl"
    config = {"tasks": [{"task_id": "s", "agent": "qa", "description": "x", "command": recorder(log, 30)}]}
    proc = start_orchestrator(config)
    wait_for(lambda: (state_dir / "current").exists() and len(awoc_processes(state_dir)) >= 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    run_dir = current_run_dir(state_dir)
    assert orjson.loads((run_dir / "state.json").read_bytes())["status"] == "interrupted"
    assert (run_dir / "report.md").exists()  # the partial report


def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from awoc_scripts.execution.display import LiveDisplay

    screen = io.StringIO()
    display = LiveDisplay(Console(file=screen, force_terminal=True, width=100))
    log = tmp_path / "ran.jsonl"
    tasks = [{"task_id": f"t{i}", "agent": "qa", "description": "x", "command": recorder(log, 0.6)} for i in range(3)]
    run, plan, execution = prepare_run(StateStore(), [orjson.dumps({"tasks": tasks}).decode()])
    code, _ = execute_run(run, plan, execution, LocalExecutor(grace_s=0.5), display)
    assert code == 0
    text = screen.getvalue()
    assert "t0" in text and "running" in text and "tokens 0/" in text
    assert "run succeeded" in text and "[dim]" not in text
    footer = next(line for line in text.splitlines() if "running |" in line)
    assert "| tokens 0/" in footer and len(footer) <= 100, footer  # one line, not wrapped mid-phrase


def test_the_live_footer_keeps_whole_parts_within_the_width() -> None:
    from awoc_scripts.execution.display import fit_footer

    parts = ["3 running", "12 waiting", "40 done", "0 other", "tokens 1200/25000", "4.2s"]
    assert fit_footer(parts, 200) == " | ".join(parts)
    assert fit_footer(parts, 40) == "3 running | 12 waiting | 40 done"


def test_a_process_that_ended_before_its_stop_ends_as_its_own(tmp_path: Path) -> None:
    """A Ctrl-C, a timeout or a lever asks to stop a task whose process has just exited by itself:
    its end is its own (a finished task reported as stopped is cancelled, and runs again)."""
    from awoc_scripts.execution.claude_cli import Invocation
    from awoc_scripts.execution.executors.base import Attempt, Ended
    from awoc_scripts.processes import task_marker

    (tmp_path / "prompt.md").write_text("x")
    invocation = Invocation(["true"], dict(os.environ), "command", role_in_prompt=False)
    files = (tmp_path / "prompt.md", tmp_path / "out.log", tmp_path / "err.log")
    attempt = Attempt("a", invocation, tmp_path, *files, task_marker("r", "a"))
    executor = LocalExecutor(grace_s=0.5)
    try:
        pid = executor.start(attempt).pid
        wait_for(lambda: gone(pid), timeout=10)  # exited, not yet reaped
        executor.stop("a")
        seen: list[Ended] = []
        wait_for(lambda: bool(seen.extend(executor.wait(0.1)) or seen), timeout=10)
        assert seen == [Ended("a", 0, stopped=False)]
    finally:
        executor.shutdown()


def test_a_signal_in_the_middle_of_starting_a_task_still_stops_it(tmp_path: Path, monkeypatch) -> None:
    """The signal lands between a spawn and its bookkeeping: the task must not be forgotten."""
    import awoc_scripts.execution.executors.local as executor_module

    real_spawn = executor_module.spawn

    def spawn_then_signal(*args: Any, **kwargs: Any) -> Any:
        child = real_spawn(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the executor has recorded the child
        return child

    monkeypatch.setattr(executor_module, "spawn", spawn_then_signal)
    log = tmp_path / "ran.jsonl"
    tasks = [{"task_id": f"t{i}", "agent": "qa", "description": "x", "command": recorder(log, 30)} for i in range(2)]
    run, plan, execution = prepare_run(StateStore(), [orjson.dumps({"tasks": tasks}).decode()])
    started = time.monotonic()
    code, _ = execute_run(run, plan, execution, LocalExecutor(grace_s=0.5), PlainDisplay(quiet=True))
    assert code == 130
    assert time.monotonic() - started < 25  # not waiting for the 30 s task
    statuses = {r["task_id"]: r["status"] for r in results(run.dir).values()}
    assert statuses == {"t0": "cancelled", "t1": "cancelled"}


def test_an_abort_ends_thousands_of_pending_tasks_without_a_file_each(tmp_path: Path) -> None:
    # the abort comes with 2,998 tasks never started: each ends cancelled with the reason, in
    # state.json and the report, and only the two that ran have a directory and a result file
    many = 3000
    config = {
        "parallel_config": {"max_concurrent": 2, "total_timeout": 1, "failure_tolerance": many},
        "tasks": [
            {"task_id": f"t{i}", "agent": "qa", "description": "x", "priority": "high", "command": ["sleep", "5"]}
            for i in range(many)
        ],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 3 and summary["counts"] == {"timed_out": 2, "cancelled": many - 2}
    started = sorted(p.name for p in (run_dir / "tasks").iterdir())
    assert len(started) == 2 and sorted(p.name for p in (run_dir / "results").iterdir()) == [
        f"task_qa_{tid}_result.json" for tid in started
    ]
    done = results(run_dir)
    assert len(done) == many
    never = [r for tid, r in done.items() if tid not in started]
    assert all(r["status"] == "cancelled" and r["reason"] == "total timeout of 1 s reached" for r in never)
    assert all(r["attempts"] == 0 and r["started_at"] is None for r in never)
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["execution_summary"]["total_tasks"] == many


def _budget_flag(call: dict[str, Any]) -> float | None:
    argv = call["argv"]
    return float(argv[argv.index("--max-budget-usd") + 1]) if "--max-budget-usd" in argv else None


def test_a_task_whose_reported_cost_passes_its_money_budget_ends_budget_exceeded(fake_claude: Path) -> None:
    # one call of 1000 + 1000 tokens on sonnet costs $0.018
    config = {
        "parallel_config": {"retries": 1},
        "tasks": [
            {"task_id": "dear", "agent": "qa", "description": "x [[fake:tokens=1000,1000]]", "cost_budget_usd": 0.001},
            {"task_id": "cheap", "agent": "qa", "description": "y [[fake:tokens=10,10]]", "cost_budget_usd": 0.5},
            {"task_id": "free", "agent": "qa", "description": "z [[fake:tokens=10,10]]"},
        ],
    }
    code, _, run_dir = run_in_process(config)
    assert code == 1
    done = results(run_dir)
    assert done["dear"]["status"] == "budget_exceeded" and done["dear"]["attempts"] == 1  # no retry: money gone
    assert "over its budget of $0.001" in done["dear"]["error"]
    assert done["cheap"]["status"] == "succeeded" and done["free"]["status"] == "succeeded"
    flags = {c["env"]["AWOC_TASK_ID"]: _budget_flag(c) for c in claude_calls(fake_claude)}
    assert flags == {"dear": 0.001, "cheap": 0.5, "free": None}


def test_the_run_money_budget_caps_each_attempt_cuts_budgets_at_80_percent_and_stops_starts(fake_claude: Path) -> None:
    config = {
        "parallel_config": {"total_cost_budget_usd": 0.02, "max_concurrent": 1, "retries": 0},
        "tasks": [
            {"task_id": "one", "agent": "qa", "description": "x [[fake:tokens=1000,1000]]", "priority": "critical"},
            {"task_id": "two", "agent": "qa", "description": "y [[fake:tokens=1000,1000]]", "priority": "high"},
            {"task_id": "three", "agent": "qa", "description": "z", "cost_budget_usd": 1.0},
        ],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 3 and summary["stop_reason"].startswith("money budget spent")
    done = results(run_dir)
    assert done["one"]["status"] == "succeeded"
    assert done["two"]["status"] == "budget_exceeded" and "over its cap of $0.002" in done["two"]["error"]
    assert done["three"]["status"] == "cancelled" and done["three"]["cost_budget_usd"] == 0.8  # cut by 20%
    flags = [_budget_flag(c) for c in claude_calls(fake_claude)]
    assert flags == [0.02, 0.002]
    names = [e["event"] for e in events(run_dir)]
    assert "cost-pressure" in names and "cost-budget-exhausted" in names
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["resource_usage"]["total_cost_budget_usd"] == 0.02
    planned = orjson.loads((run_dir / "execution.json").read_bytes())  # the plan shows the budgets
    assert [t["cost_budget_usd"] for t in planned["tasks"]] == [None, None, 1.0]
    assert {"cost_pressure", "cost_budget_exhausted"} <= {p["policy"] for p in planned["policies"]}


def test_rate_limits_lower_the_runs_concurrency_until_it_settles_near_the_providers_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a provider that takes 3 calls at once; the run may start 8: the first 429s halve the limit,
    # successes raise it slowly, and every task ends succeeded without a failure counted
    folder = tmp_path / "provider"
    folder.mkdir()
    monkeypatch.setenv("AWOC_AGENT_COMMAND", f"{sys.executable} {FAKES / 'limited_agent.py'}")
    monkeypatch.setenv("LIMITED_AGENT_DIR", str(folder))
    monkeypatch.setenv("LIMITED_AGENT_K", "3")
    config = {
        "parallel_config": {"max_concurrent": 8, "retries": 0, "failure_tolerance": 0},
        "tasks": [{"task_id": f"t{i}", "agent": "qa", "description": f"task {i}"} for i in range(16)],
    }
    code, summary, run_dir = run_in_process(config, backoff_base_s=0.05, backoff_max_s=0.4)
    assert code == 0, summary
    done = results(run_dir)
    assert all(r["status"] == "succeeded" and r["attempts"] == 1 for r in done.values())
    calls = [orjson.loads(line) for line in (folder / "calls.jsonl").read_bytes().splitlines()]
    assert sum(c["outcome"] == "ok" for c in calls) == 16
    changes = [e for e in events(run_dir) if e["event"] == "concurrency-change"]
    assert changes and changes[0]["before"] == 8 and changes[0]["after"] == 4
    assert summary["concurrency"]["lowest"] <= 3
    # it settles near the provider's limit: one slot past it at most, most of the time
    assert statistics.median(c["after"] for c in changes) <= 4
    assert sum(c["outcome"] == "429" for c in calls) <= 16  # no more refusals than tasks
    state = orjson.loads((run_dir / "state.json").read_bytes())
    assert 1 <= state["effective_concurrency"] <= 4
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["concurrency"]["cuts"] >= 1 and report["concurrency"]["lowest"] <= 3
    assert "rate limits cut it" in (run_dir / "report.md").read_text()


def test_a_usage_limit_pauses_the_whole_run_until_its_reset_then_it_goes_on(fake_claude: Path) -> None:
    # "limited" meets the usage limit (reset 2-3 s ahead: the form has whole seconds) while "busy"
    # works: busy is stopped and requeued, nothing starts while paused, and both end succeeded with
    # one counted attempt each
    config = {
        "parallel_config": {"retries": 0, "failure_tolerance": 0, "max_concurrent": 2},
        "tasks": [
            {
                "task_id": "limited",
                "agent": "qa",
                "description": "x [[fake:fail_times=1]] [[fake:fail_kind=usage_limit]] [[fake:resets_in=3]] "
                "[[fake:key=limited]] [[fake:sleep=0.3]]",
            },
            {"task_id": "busy", "agent": "qa", "description": "y [[fake:sleep=1.5]]"},
        ],
    }
    code, summary, run_dir = run_in_process(config)
    assert code == 0, summary
    done = results(run_dir)
    assert {tid: (r["status"], r["attempts"]) for tid, r in done.items()} == {
        "limited": ("succeeded", 1),
        "busy": ("succeeded", 1),
    }
    seen = events(run_dir)
    names = [e["event"] for e in seen]
    assert names.count("run-paused") == 1 and names.count("run-resumed") == 1
    paused = next(e for e in seen if e["event"] == "run-paused")
    assert paused["task_id"] == "limited" and paused["reset_given"] is True
    resumed = next(e for e in seen if e["event"] == "run-resumed")
    assert resumed["paused_s"] >= 1.0
    # nothing started between the pause and its end
    between = names[names.index("run-paused") : names.index("run-resumed")]
    assert "task-start" not in between
    assert "task-requeued" in names[names.index("run-paused") :]


def test_a_run_killed_while_paused_is_finished_by_resume_after_the_reset(fake_claude: Path, cli) -> None:
    config = {
        "parallel_config": {"retries": 0},
        "tasks": [
            {
                "task_id": "limited",
                "agent": "qa",
                "description": "x [[fake:fail_times=1]] [[fake:fail_kind=usage_limit]] [[fake:resets_in=3]] "
                "[[fake:key=killed]]",
            }
        ],
    }
    proc = start_orchestrator(config)
    try:
        state_file: list[Path] = []

        def paused() -> bool:
            found = list(Path(os.environ["AWOC_STATE_DIR"]).glob("runs/*/state.json"))
            state_file[:] = found
            return bool(found) and orjson.loads(found[0].read_bytes()).get("status") == "paused"

        wait_for(paused, timeout=20)
    finally:
        proc.kill()
        proc.wait()
    saved = orjson.loads(state_file[0].read_bytes())
    assert saved["paused_until"] is not None and saved["tasks"]["limited"]["status"] == "pending"
    result = cli("delegate-parallel", "resume", "-q")
    assert result.code == 0, result.stderr
    run_dir = state_file[0].parent
    assert results(run_dir)["limited"]["status"] == "succeeded"
    assert len(claude_calls(fake_claude)) == 2  # the limited call, then one after the reset
    assert [e["event"] for e in events(run_dir)].count("run-resumed") == 1
