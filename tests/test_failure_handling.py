"""parallel-error-handler, parallel-task-retry and parallel-execution-aborter: on a saved run, and
on a run an orchestrator is executing right now."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.levers.requests import apply_pending_controls
from awoc_scripts.planning.scheduling import Scheduler, graph_metrics
from awoc_scripts.state.owner import initial_state
from awoc_scripts.state.store import Run, StateStore

from conftest import awoc_processes, start_orchestrator, wait_for

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def fails_once(flag: Path, output: str = "built") -> list[str]:
    """Fails (exit 3, "oops" on stderr) unless FLAG exists, which its first run creates."""
    return [
        "sh",
        "-c",
        f'cat >/dev/null; [ -e "{flag}" ] && echo {output} && exit 0; touch "{flag}"; echo oops >&2; exit 3',
    ]


def config(tmp_path: Path, tolerance: int = 1, slow_s: float | None = None) -> dict[str, Any]:
    tasks = [
        {"task_id": "design", "agent": "architect", "description": "design it", "command": ["echo", "the design"]},
        {
            "task_id": "build",
            "agent": "workforce",
            "description": "build it",
            "dependencies": ["design"],
            "command": fails_once(tmp_path / "built-once"),
        },
        {"task_id": "check", "agent": "qa", "description": "check it", "dependencies": ["build"], "command": ["cat"]},
    ]
    if slow_s is not None:
        tasks.append({"task_id": "slow", "agent": "qa", "description": "wait", "command": ["sleep", str(slow_s)]})
    return {"parallel_config": {"retries": 0, "failure_tolerance": tolerance}, "tasks": tasks}


def validate(cli: Any, data: dict[str, Any]) -> Run:
    result = cli("parallel-task-parser", "validate", orjson.dumps(data).decode())
    assert result.code == 0, result.stderr
    return StateStore().open_run(result.json()["run_id"])


def task_states(run: Run) -> dict[str, str]:
    return {tid: t["status"] for tid, t in run.read_state()["tasks"].items()}


def result_of(run: Run, tid: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(run.task_files(tid).result.read_bytes())
    return data


def assert_one_error(result: Any, *wanted: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for text in wanted:
        assert text in result.stderr, result.stderr


def state_says(state_dir: Path, **wanted: str) -> bool:
    try:
        run_id = (state_dir / "current").read_text().strip()
        state = orjson.loads((state_dir / "runs" / run_id / "state.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return False
    return bool(state.get("orchestrator")) and all(state["tasks"][t]["status"] == s for t, s in wanted.items())


# ---- the scheduler's part ----


def test_reopen_brings_back_what_was_skipped_for_that_task_only() -> None:
    def task(tid: str, deps: list[str], mode: str = "all_complete", when: str | None = None) -> dict[str, Any]:
        extra = {"condition": {"when": when}} if when else {}
        return {
            "task_id": tid,
            "priority": "medium",
            "dependencies": deps,
            "dependency_mode": mode,
            "critical_dependencies": [],
            "token_budget": 10,
            "timeout": 10,
            "index": len(tid),
            **extra,
        }

    tasks = [
        task("a", []),
        task("x", []),
        task("b", ["a"]),
        task("c", ["b"]),
        task("on_failure", ["a"], "conditional", "failure"),
        task("both", ["a", "x"]),
    ]
    scheduler = Scheduler(tasks, graph_metrics(tasks).remaining)
    for tid in ("a", "x"):
        scheduler.start(tid)
    scheduler.finish("x", "failed")
    scheduler.finish("a", "failed")
    assert scheduler.ready_ids() == ["on_failure"]
    assert scheduler.reopen("a") == ["b", "c"]  # "both" still waits for x, which failed
    assert scheduler.status["both"] == "skipped"
    assert scheduler.ready_ids() == ["a"]  # on_failure waits again: a has not ended
    scheduler.start("a")
    assert scheduler.finish("a", "succeeded") == [("on_failure", "condition 'failure' not met: a succeeded")]
    assert scheduler.ready_ids() == ["b"]
    with pytest.raises(ValueError, match="dependency x failed"):
        scheduler.reopen("both")


def test_a_bad_control_never_stops_the_orchestrator(cli) -> None:
    run = validate(cli, config(Path("/nonexistent")))
    state = initial_state(run)
    state["controls"] = [
        {"id": "1", "action": "retry", "args": {"task_ids": ["nope"]}},
        {"id": "2", "action": "x", "args": {}},
    ]
    done = apply_pending_controls(run.read_plan(), state, "test")
    assert [c["changed"] for c in done] == [{"error": "KeyError: 'nope'"}, {"error": "unknown lever 'x'"}]


# ---- parallel-error-handler ----


def test_failure_within_tolerance_is_retried_now_with_reduced_scope(cli, tmp_path) -> None:
    assert cli("delegate-parallel", "run", "-q", orjson.dumps(config(tmp_path)).decode()).code == 1
    run = StateStore().open_run()
    assert task_states(run) == {"design": "succeeded", "build": "failed", "check": "skipped"}

    result = cli("parallel-error-handler", "handle-task-failure", "workforce", "3", "--quiet")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["decision"] == "retry" and data["failed_count"] == 1 and data["failure_tolerance"] == 1
    assert data["failure"]["task_id"] == "build" and data["failure"]["error"] == "exit code 3: oops"
    retry = data["retry"]
    assert retry["retried"][0]["token_budget_before"] == 8000 and retry["retried"][0]["token_budget"] == 6400
    assert retry["reopened_dependents"] == ["check"]
    assert retry["executed_by"] == "this process" and retry["run"]["status"] == "succeeded"
    assert task_states(run) == dict.fromkeys(("design", "build", "check"), "succeeded")
    prompt = run.task_files("build").prompt.read_text()
    assert "> exit code 3: oops" in prompt and "about 6400 tokens" in prompt
    assert result_of(run, "build")["token_budget"] == 6400
    assert result_of(run, "check")["result"].endswith("built")  # the dependency's result, in its prompt
    failed = [e for e in run.read_events() if e["event"] == "parallel-task-failed"]
    assert failed[0]["task_id"] == "build" and failed[0]["exit_code"] == 3 and failed[0]["args"] == ["workforce", "3"]


def test_failure_beyond_tolerance_aborts_with_partial_results(cli, tmp_path) -> None:
    run = validate(cli, config(tmp_path, tolerance=0))  # the seed's flow: nothing ran through an orchestrator
    result = cli("parallel-error-handler", "handle-task-failure", "design", "2", "the design tool crashed")
    assert result.code == 3, result.stderr
    data = result.json()
    assert data["decision"] == "abort" and data["why"] == "failure tolerance exceeded: 1 tasks failed, 0 tolerated"
    assert data["failure"]["skipped_as_a_result"] == [
        {"task_id": "build", "reason": "dependency design failed"},
        {"task_id": "check", "reason": "dependency build skipped"},
    ]
    assert data["abort"]["aborted"] is False  # every task had ended: failed or skipped
    state = run.read_state()
    assert state["tasks"]["design"]["error"] == "the design tool crashed" and state["tasks"]["design"]["exit_code"] == 2
    design = result_of(run, "design")
    assert design["status"] == "failed" and design["exit_code"] == 2 and design["error"] == "the design tool crashed"
    partial = data["abort"]["partial_results"]
    assert partial["completed_successfully"] == 0
    assert [(t["task_id"], t["status"]) for t in partial["not_succeeded"]] == [
        ("design", "failed"),
        ("build", "skipped"),
        ("check", "skipped"),
    ]


def test_a_second_failure_over_tolerance_aborts_what_is_left(cli, tmp_path) -> None:
    data = config(tmp_path, tolerance=1)
    data["tasks"].append({"task_id": "docs", "agent": "docs-fetcher", "description": "research", "command": ["true"]})
    data["tasks"].append({"task_id": "other", "agent": "qa", "description": "unrelated", "command": ["true"]})
    run = validate(cli, data)
    with run.locked_state() as state:
        state.update(initial_state(run))
        state["tasks"]["docs"].update(status="failed", error="no network")
    result = cli("parallel-error-handler", "handle-task-failure", "design", "9")
    assert result.code == 3, result.stderr
    data = result.json()
    assert data["failed_count"] == 2 and data["decision"] == "abort"
    assert data["failure"]["failed_tasks"] == ["design", "docs"]
    assert data["abort"]["aborted"] is True and data["abort"]["cancelled"] == ["other"]
    assert run.read_state()["status"] == "aborted"
    assert task_states(run) == {
        "design": "failed",
        "build": "skipped",
        "check": "skipped",
        "docs": "failed",
        "other": "cancelled",
    }


def test_handler_refuses_bad_input_and_writes_nothing(cli, tmp_path) -> None:
    data = config(tmp_path)
    data["tasks"].append({"agent": "workforce", "description": "another", "command": ["true"]})
    run = validate(cli, data)
    assert_one_error(cli("parallel-error-handler", "handle-task-failure", "build", "x"), "EXIT_CODE", "'x'")
    assert_one_error(cli("parallel-error-handler", "handle-task-failure", "build", "0"), "0 means the task succeeded")
    assert_one_error(
        cli("parallel-error-handler", "handle-task-failure", "nobody", "1"), "'nobody' is neither", "tasks: design"
    )
    assert_one_error(
        cli("parallel-error-handler", "handle-task-failure", "workforce", "1"),
        "agent workforce has 2 tasks (build pending, workforce-2 pending): name the task id",
    )
    assert_one_error(cli("parallel-error-handler", "handle-task-failure", "build", "1", "--run", "x"), "not a run id")
    assert not run.state_file.exists() and not run.events_file.exists()


# ---- parallel-task-retry ----


def test_retry_refuses_what_did_not_fail_and_writes_nothing(cli, tmp_path) -> None:
    run = validate(cli, config(tmp_path))
    assert_one_error(cli("parallel-task-retry", "retry-reduced", "architect"), "agent architect has no failed task")
    assert_one_error(cli("parallel-task-retry", "retry-reduced", "build"), "task build has not ended with a failure")
    assert_one_error(cli("parallel-task-retry", "retry-reduced", "ghost"), "'ghost' is neither")
    assert not run.state_file.exists()


def test_retry_of_an_agent_retries_its_failed_tasks(cli, tmp_path) -> None:
    data = config(tmp_path)
    data["tasks"].append({"task_id": "w2", "agent": "workforce", "description": "more", "command": ["true"]})
    run = validate(cli, data)
    with run.locked_state() as state:
        state.update(initial_state(run))
        state["tasks"]["design"]["status"] = "succeeded"
        state["tasks"]["build"].update(status="timed_out", error="timed out after 5 s")
        state["tasks"]["check"].update(status="skipped", reason="dependency build timed_out")
        state["tasks"]["w2"]["status"] = "succeeded"
    (tmp_path / "built-once").touch()
    result = cli("parallel-task-retry", "retry-reduced", "workforce", "-q")
    assert result.code == 0, result.stderr
    data = result.json()
    assert [(t["task_id"], t["previous_error"]) for t in data["retried"]] == [("build", "timed out after 5 s")]
    assert data["not_retried"] == [{"task_id": "w2", "status": "succeeded", "why": "it succeeded"}]
    assert data["run"]["status"] == "succeeded"
    assert task_states(run)["check"] == "succeeded"
    assert "> timed out after 5 s" in run.task_files("build").prompt.read_text()


def test_retry_while_an_orchestrator_runs_is_requeued_live(cli, state_dir, tmp_path) -> None:
    proc = start_orchestrator(config(tmp_path, tolerance=1, slow_s=2))
    try:
        wait_for(lambda: state_says(state_dir, build="failed", check="skipped", slow="running"))
        result = cli("parallel-task-retry", "retry-reduced", "build", "please narrow it down")
        assert result.code == 0, result.stderr
        data = result.json()
        assert data["applied_by"].startswith("orchestrator") and data["executed_by"] == "orchestrator"
        assert data["reopened_dependents"] == ["check"]
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
    run = StateStore().open_run()
    assert set(task_states(run).values()) == {"succeeded"}
    assert "> please narrow it down" in run.task_files("build").prompt.read_text()
    assert result_of(run, "build")["token_budget"] == 6400


# ---- parallel-execution-aborter ----


def test_abort_a_run_nothing_executes_kills_leftovers_and_cancels_the_rest(cli, tmp_path) -> None:
    run = validate(cli, config(tmp_path))
    leftover = subprocess.Popen(["sleep", "30"], env={**os.environ, "AWOC_TASK": f"{run.run_id}/build"})
    try:
        import psutil

        with run.locked_state() as state:
            state.update(initial_state(run))
            state["tasks"]["design"]["status"] = "succeeded"
            state["tasks"]["build"].update(
                status="running", pid=leftover.pid, pid_create_time=psutil.Process(leftover.pid).create_time()
            )
        run.make_dirs()
        run.write_task_result("architect", "design", {"task_id": "design", "result": "the design " * 100})
        result = cli("parallel-execution-aborter", "abort-with-partial-results")
        assert leftover.wait(timeout=5) == -9
    finally:
        leftover.kill()
        leftover.wait()
    assert result.code == 3, result.stderr
    data = result.json()
    assert data["aborted"] is True and data["cancelled"] == ["build", "check"]
    assert data["killed_pids"] == [leftover.pid]
    partial = data["partial_results"]
    (design,) = partial["succeeded"]
    assert design["result_excerpt"].endswith("[...]") and design["result_chars"] == 1100
    assert [(t["task_id"], t["status"], t["why"]) for t in partial["not_succeeded"]] == [
        ("build", "cancelled", "aborted by parallel-execution-aborter"),
        ("check", "cancelled", "aborted by parallel-execution-aborter"),
    ]
    assert partial["not_succeeded"][0]["retry"] == f"parallel-task-retry retry-reduced build --run {run.run_id}"
    assert run.read_state()["status"] == "aborted"
    assert result_of(run, "check")["status"] == "cancelled"
    assert "2 task(s) cancelled" in result.stderr

    # the run has ended: aborting it again is refused, and changes nothing
    before = run.state_file.read_bytes()
    again = cli("parallel-execution-aborter", "abort-with-partial-results")
    assert again.code == 2 and "has ended (aborted)" in again.stderr, again.stderr
    assert run.state_file.read_bytes() == before


def test_abort_while_an_orchestrator_runs(cli, state_dir, tmp_path) -> None:
    proc = start_orchestrator(config(tmp_path, slow_s=30))
    try:
        wait_for(lambda: state_says(state_dir, design="succeeded", slow="running"))
        result = cli("parallel-execution-aborter", "abort-with-partial-results", "--reason", "enough")
        assert proc.wait(timeout=20) == 3
    finally:
        proc.kill()
        proc.wait()
    assert result.code == 3, result.stderr
    data = result.json()
    assert data["applied_by"].startswith("orchestrator") and data["orchestrator_finished"] is True
    assert data["stopping"] == ["slow"]
    assert "1 running task(s) stopped" in result.stderr, result.stderr  # not only "0 task(s) cancelled"
    partial = data["partial_results"]
    assert partial["status"] == "aborted" and partial["stop_reason"] == "enough"
    assert [t["task_id"] for t in partial["succeeded"]] == ["design"]
    assert partial["succeeded"][0]["result_excerpt"] == "the design"
    assert {t["task_id"]: t["status"] for t in partial["not_succeeded"]}["slow"] == "cancelled"
    assert not awoc_processes(state_dir)
    markdown = StateStore().open_run().report_md_file.read_text()
    tasks_row = next(line for line in markdown.splitlines() if "| Tasks |" in line)
    assert "1 cancelled" in tasks_row and "not run" not in tasks_row, tasks_row  # slow ran, then was stopped


def test_retry_runs_only_the_retried_task_and_what_it_skipped(cli, tmp_path) -> None:
    log = tmp_path / "ran.log"
    data = config(tmp_path, tolerance=2)
    data["tasks"].append(
        {
            "task_id": "other",
            "agent": "qa",
            "description": "fails for good",
            "command": ["sh", "-c", f'echo other >> "{log}"; exit 1'],
        }
    )
    run = validate(cli, data)
    first = cli("delegate-parallel", "start", "-q")
    assert first.code == 1, first.stderr
    assert task_states(run) == {"design": "succeeded", "build": "failed", "check": "skipped", "other": "failed"}
    result = cli("parallel-task-retry", "retry-reduced", "build", "-q")
    assert result.code == 1, result.stderr  # the run as a whole still has a failed task
    states = task_states(run)
    assert (states["build"], states["check"]) == ("succeeded", "succeeded")
    assert states["other"] == "failed"  # not retried: it ran once, in the first execution only
    assert log.read_text() == "other\n"
