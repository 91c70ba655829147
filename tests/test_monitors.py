"""context-monitor and parallel-task-monitor: events that are never lost, tokens against budgets,
processes watched and their whole trees stopped at the timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from awoc_scripts.monitors.process_monitor import split_monitor_args
from awoc_scripts.state.store import StateStore

CONFIG = {
    "parallel_config": {"total_token_budget": 20000},
    "tasks": [
        {"agent": "architect", "description": "design", "token_budget": 6000},
        {"agent": "docs-fetcher", "description": "research", "token_budget": 4000},
        {"agent": "workforce", "description": "build one", "token_budget": 4000},
        {"agent": "workforce", "description": "build two", "token_budget": 4000},
    ],
}


def make_run(cli: Any, config: dict[str, Any] = CONFIG) -> str:
    result = cli("parallel-task-parser", "validate", orjson.dumps(config).decode())
    assert result.code == 0, result.stderr
    return str(result.json()["run_id"])


def events(state_dir: Path, run_id: str) -> list[dict[str, Any]]:
    raw = (state_dir / "runs" / run_id / "events.jsonl").read_bytes()
    return [orjson.loads(line) for line in raw.splitlines()]


def assert_one_error(result: Any, *wanted: str) -> None:
    assert result.code == 2, (result.code, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in wanted:
        assert text in result.stderr


# ---- context-monitor ----


def test_track_reads_the_seeds_events_and_keeps_the_rest_as_given(cli, state_dir) -> None:
    run_id = make_run(cli)
    calls = [
        ("parallel-start", "4", "18000"),
        ("parallel-task-start", "architect", "Design", "the", "$(system)"),  # the seed passes it unquoted
        ("parallel-task-complete", "architect", "1200"),
        ("parallel-task-failed", "docs-fetcher-1", "7"),
        ("parallel-task-complete", "workforce", "300"),  # an agent with two tasks
        ("something-else", "a", "--b"),
    ]
    for call in calls:
        result = cli("context-monitor", "track", *call)
        assert result.code == 0, result.stderr
        assert result.json()["event"] == call[0]
    start, task_start, complete, failed, by_agent, other = events(state_dir, run_id)
    assert start["total_tasks"] == 4 and start["total_token_budget"] == 18000
    assert task_start["task_id"] == "architect-1" and task_start["description"] == "Design the $(system)"
    assert complete["task_id"] == "architect-1" and complete["tokens"] == 1200
    assert failed["task_id"] == "docs-fetcher-1" and failed["exit_code"] == 7
    assert by_agent["agent"] == "workforce" and by_agent["task_ids"] == ["workforce-1", "workforce-2"]
    assert "task_id" not in by_agent
    assert other["args"] == ["a", "--b"] and set(other) == {"ts", "event", "args", "source"}


def test_track_refuses_what_it_cannot_read_and_records_nothing(cli, state_dir) -> None:
    run_id = make_run(cli)
    result = cli("context-monitor", "track", "parallel-task-complete", "nobody", "lots")
    assert_one_error(result, "TOKENS: expected a whole number, got 'lots'", "'nobody' is neither a task id")
    assert not (state_dir / "runs" / run_id / "events.jsonl").exists()


def test_parallel_start_without_counts_takes_them_from_the_plan(cli, state_dir) -> None:
    run_id = make_run(cli)
    assert cli("context-monitor", "track", "parallel-start").code == 0  # the seed's unset variables
    (record,) = events(state_dir, run_id)
    plan = orjson.loads((state_dir / "runs" / run_id / "plan.json").read_bytes())
    assert record["total_tasks"] == len(plan["tasks"])
    assert record["total_token_budget"] == plan["parallel_config"]["total_token_budget"]


def test_track_and_status_need_a_run(cli) -> None:
    assert_one_error(cli("context-monitor", "track", "parallel-start", "1", "2"), "no runs yet")
    assert_one_error(cli("context-monitor", "status", "--run", "nope"), "is not a run id")


def test_status_counts_the_orchestrators_tokens_and_the_reported_ones_with_warnings(cli, state_dir) -> None:
    run_id = make_run(cli)
    run = StateStore(state_dir).open_run(run_id)
    from awoc_scripts.state.owner import initial_state

    with run.locked_state() as state:
        state.update(initial_state(run))
        state["tasks"]["architect-1"].update(status="succeeded", tokens_used={"total": 4500})  # 75%
    for call in [
        ("architect", "999"),  # accounted by the orchestrator already: not counted again
        ("docs-fetcher", "3000"),
        ("docs-fetcher-1", "700"),  # 3700 of 4000: 92.5%
        ("workforce-2", "5000"),  # over budget
        ("workforce", "800"),  # agent of two tasks: in the total, unattributed
    ]:
        assert cli("context-monitor", "track", "parallel-task-complete", *call).code == 0
    result = cli("context-monitor", "status")
    assert result.code == 0, result.stderr
    data = result.json()
    used = {t["task_id"]: (t["tokens_used"], t["source"]) for t in data["tasks"]}
    assert used == {
        "architect-1": (4500, "orchestrator"),
        "docs-fetcher-1": (3700, "reported"),
        "workforce-1": (0, None),
        "workforce-2": (5000, "reported"),
    }
    assert data["unattributed"] == [{"agent": "workforce", "tokens": 800}]
    assert data["total"] == {"tokens_used": 14000, "token_budget": 20000, "percent": 70.0, "remaining": 6000}
    levels = {(w["scope"], w["task_id"]): w["threshold"] for w in data["warnings"]}
    assert levels == {
        ("task", "architect-1"): 70,
        ("task", "docs-fetcher-1"): 90,
        ("task", "workforce-2"): 100,
        ("total", None): 70,
    }
    assert result.stderr.count("warning: ") == 4
    assert "task docs-fetcher-1 used 3700 of 4000 tokens (92.5%), past 90% of its budget" in result.stderr


TRACKER = """
import sys
from awoc_scripts.cli.context_monitor import main
worker = sys.argv[1]
for i in range(200):
    try:
        main(["track", "parallel-task-complete", "architect", str(i), "--run", sys.argv[2]])
    except SystemExit as exc:
        if exc.code:
            raise
"""


def test_sixteen_processes_tracking_at_once_lose_no_event(cli, state_dir) -> None:
    run_id = make_run(cli)
    env = {**os.environ, "AWOC_STATE_DIR": str(state_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRACKER, str(n), run_id], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for n in range(16)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    lines = (state_dir / "runs" / run_id / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == 3200
    records = [orjson.loads(line) for line in lines]  # every line whole
    counts: dict[int, int] = {}
    for record in records:
        counts[record["tokens"]] = counts.get(record["tokens"], 0) + 1
    assert counts == dict.fromkeys(range(200), 16)


# ---- parallel-task-monitor ----


@pytest.mark.parametrize(
    ("args", "timeout", "names", "expected_timeout"),
    [
        (["123 456", "600"], None, ["123", "456"], 600.0),  # the seed's "PID PID" TIMEOUT
        (["architect", "docs-fetcher", "600"], None, ["architect", "docs-fetcher"], 600.0),  # "${!TASK_PIDS[@]}"
        (["123", "456"], None, ["123", "456"], None),  # two pids
        (["123", "1.5"], None, ["123"], 1.5),  # 1.5 cannot be a pid
        (["123 456", "600"], 5.0, ["123", "456", "600"], 5.0),  # --timeout given: all are names
    ],
)
def test_monitor_arguments(args: list[str], timeout: float | None, names: list[str], expected_timeout: Any) -> None:
    assert split_monitor_args(args, timeout) == (names, expected_timeout)


@contextlib.contextmanager
def process_tree(script: str) -> Iterator[tuple[subprocess.Popen[bytes], list[psutil.Process]]]:
    """`sh -c SCRIPT` in its own session; yields it with its whole tree once the children exist."""
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        root = psutil.Process(proc.pid)
        deadline = time.monotonic() + 5
        while len(root.children(recursive=True)) < script.count("sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        yield proc, [root, *root.children(recursive=True)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def lines_of(result: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_monitor_stops_the_whole_tree_at_the_timeout(cli) -> None:
    with process_tree("sleep 60 & sleep 60") as (proc, tree):
        assert len(tree) == 3
        started = time.monotonic()
        result = cli("parallel-task-monitor", "monitor", str(proc.pid), "--timeout", "0.5", "--interval", "0.1")
        assert time.monotonic() - started < 5
        assert result.code == 3, result.stderr
        *samples, summary = lines_of(result)
        assert samples and all(s["type"] == "sample" for s in samples)
        assert samples[0]["processes"][0]["processes"] == 3  # the tree: sh and its two sleeps
        assert summary["type"] == "summary" and summary["timed_out"] is True
        (ending,) = summary["processes"]
        assert ending["pid"] == proc.pid and ending["ended"] == "killed"
        assert set(ending["killed_pids"]) == {p.pid for p in tree}
        assert ending["runtime_s"] >= 0.5 and ending["peak_rss_mb"] > 0
        assert not any(alive(p) for p in tree), "a process of the tree survived"


def test_monitor_ends_when_the_processes_exit_by_themselves(cli) -> None:
    first = subprocess.Popen(["sleep", "0.3"])
    second = subprocess.Popen(["sleep", "0.1"])
    try:
        result = cli("parallel-task-monitor", "monitor", f"{first.pid} {second.pid}", "30", "--interval", "0.1")
    finally:
        first.wait()
        second.wait()
    assert result.code == 0, result.stderr
    summary = lines_of(result)[-1]
    assert summary["timeout_s"] == 30 and summary["timed_out"] is False and summary["elapsed_s"] < 5
    assert [(p["pid"], p["ended"]) for p in summary["processes"]] == [(first.pid, "exited"), (second.pid, "exited")]


def running_architect(state: dict[str, Any], run: Any, pid: int, **saved: object) -> None:
    """A fresh state in which architect-1 is running as PID, as the orchestrator saves it."""
    from awoc_scripts.state.owner import initial_state

    state.update(initial_state(run))
    state["tasks"]["architect-1"].update(
        status="running", pid=pid, pid_create_time=psutil.Process(pid).create_time(), **saved
    )


def test_monitor_finds_a_runs_tasks_by_agent_or_task_id(cli, state_dir) -> None:
    run = StateStore(state_dir).open_run(make_run(cli))
    with process_tree("sleep 60") as (proc, _):
        with run.locked_state() as state:
            running_architect(state, run, proc.pid)
            state["tasks"]["docs-fetcher-1"].update(status="succeeded", pid=1, pid_create_time=1.0)
        status = cli("parallel-task-monitor", "status")
        assert status.code == 0, status.stderr
        (task,) = status.json()["tasks"]
        assert task["task_id"] == "architect-1" and task["pid"] == proc.pid and task["rss_mb"] > 0
        assert task["status"] in ("sleeping", "running")

        result = cli("parallel-task-monitor", "monitor", "architect", "docs-fetcher", "0.3", "--interval", "0.1")
        assert result.code == 3, result.stderr
        summary = lines_of(result)[-1]
        by_task = {p["task_id"]: p for p in summary["processes"]}
        assert by_task["architect-1"]["ended"] == "killed" and by_task["architect-1"]["pid"] == proc.pid
        assert by_task["docs-fetcher-1"] == {
            "pid": 1,
            "task_id": "docs-fetcher-1",
            "ended": "not-running",
            "task_status": "succeeded",
        }
        assert proc.wait(timeout=5) is not None


def test_monitor_refuses_unknown_pids_and_names(cli) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert_one_error(cli("parallel-task-monitor", "monitor", str(dead.pid)), f"no process with pid {dead.pid}")
    assert_one_error(cli("parallel-task-monitor", "monitor", "architect"), "no run to find it in")
    make_run(cli)
    assert_one_error(
        cli("parallel-task-monitor", "monitor", "nobody", "--timeout", "1"), "'nobody' is neither", "agents: architect"
    )
    assert_one_error(cli("parallel-task-monitor", "monitor", "", "5"), "no process id")
    assert_one_error(cli("parallel-task-monitor", "monitor", str(os.getpid()), "--interval", "0"), "--interval")


def test_monitor_knows_a_running_task_after_the_clock_is_stepped(cli, state_dir, monkeypatch) -> None:
    """The orchestrator saves each running task's start in ticks since boot: a stepped clock moves the
    boot time, not those ticks, so the task's process is still found (and can be stopped)."""
    from awoc_scripts.processes import process_start_ticks

    run = StateStore(state_dir).open_run(make_run(cli))
    with process_tree("sleep 60") as (proc, _):
        with run.locked_state() as state:
            running_architect(state, run, proc.pid, pid_start_ticks=process_start_ticks(proc.pid))
        stepped = psutil.boot_time() - 1.0
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)
        status = cli("parallel-task-monitor", "status")
        assert status.code == 0, status.stderr
        (task,) = status.json()["tasks"]
        assert task["pid"] == proc.pid and task["status"] != "gone" and task["rss_mb"] > 0
