"""A run that no orchestrator executes: killed, ended, or prepared and not started. One truth
about each task's end, levers that hold or are refused, and a status that never says "running"."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.state.store import StateStore

from conftest import start_orchestrator, wait_for

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def tasks_config(tmp_path: Path, slow_s: float = 30) -> dict[str, Any]:
    marker = tmp_path / "slow-started"
    return {
        "parallel_config": {"max_concurrent": 4, "failure_tolerance": 0, "retries": 0},
        "tasks": [
            {"task_id": "quick", "agent": "workforce", "description": "q", "command": ["true"]},
            {
                "task_id": "slow",
                "agent": "workforce",
                "description": "s",
                # a second run of it (a resume) ends at once
                "command": ["sh", "-c", f"[ -f {marker} ] && exit 0; touch {marker}; sleep {slow_s}"],
            },
            {
                "task_id": "after",
                "agent": "workforce",
                "description": "a",
                "command": ["true"],
                "dependencies": ["slow"],
            },
        ],
    }


@pytest.fixture
def killed_run(tmp_path: Path, state_dir: Path) -> Any:
    """A run whose orchestrator was SIGKILLed while `slow` ran; `quick` had succeeded."""
    proc = start_orchestrator(tasks_config(tmp_path))
    marker = tmp_path / "slow-started"
    wait_for(lambda: marker.exists() and (state_dir / "current").exists())
    run = StateStore().open_run()
    wait_for(lambda: run.read_state().get("tasks", {}).get("quick", {}).get("status") == "succeeded")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: run.claimed_for() is None)  # its watchdog has ended the task it left, and let go
    return run


def test_status_and_wait_of_a_killed_run_say_interrupted_and_what_to_run(cli, killed_run: Any) -> None:
    status = cli("delegate-parallel", "status", "--format", "json")
    assert status.code == 0, status.stderr
    data = status.json()
    assert data["status"] == "interrupted" and data["executing"] is False
    # the slow task's processes, ended by the run's watchdog as its orchestrator died
    ended = r"; its watchdog ended the [1-9]\d* task process\(es\) it left running, at once$"
    assert re.search(ended, data["stop_reason"]), data["stop_reason"]
    assert data["next"] == f"delegate-parallel resume {killed_run.run_id}"
    text = cli("delegate-parallel", "status", "--format", "text").stdout
    assert "interrupted" in text and "running" not in text.splitlines()[0]
    assert f"to continue it: delegate-parallel resume {killed_run.run_id}" in text
    waited = cli("delegate-parallel", "wait", "--timeout", "5")
    assert waited.code == 130
    assert "before its tasks did. Continue it: delegate-parallel resume" in waited.stdout


def test_levers_on_a_killed_run_are_refused_and_change_nothing(cli, killed_run: Any) -> None:
    before = killed_run.state_file.read_bytes()
    for script, verb in [
        ("token-budget-reducer", ["reduce-remaining-tasks", "20%"]),
        ("parallel-to-sequential", ["convert-remaining-tasks"]),
        ("task-prioritizer", ["emergency-prioritization"]),
    ]:
        result = cli(script, *verb)
        assert result.code == 2, (script, result.stderr)
        assert "is interrupted" in result.stderr and "delegate-parallel resume" in result.stderr
    state = orjson.loads(killed_run.state_file.read_bytes())
    assert {t: s["status"] for t, s in state["tasks"].items()} == {
        t: s["status"] for t, s in orjson.loads(before)["tasks"].items()
    } | {"slow": state["tasks"]["slow"]["status"]}
    assert state["max_concurrent"] == 4


def test_the_aborter_on_a_killed_run_keeps_what_ended_even_if_state_json_did_not_say_so(cli, killed_run: Any) -> None:
    # the kill came after the task-end event of `quick` but before state.json said so
    with killed_run.locked_state() as state:
        state["tasks"]["quick"]["status"] = "running"
    result = cli("parallel-execution-aborter", "abort-with-partial-results")
    assert result.code == 3, result.stderr
    data = result.json()
    assert [t["task_id"] for t in data["partial_results"]["succeeded"]] == ["quick"]
    assert sorted(data["cancelled"]) == ["after", "slow"]
    state = killed_run.read_state()
    assert state["tasks"]["quick"]["status"] == "succeeded" and state["status"] == "aborted"
    # the aborter's decision holds: the run has ended, and a lever after it is refused
    refused = cli("parallel-to-sequential", "convert-remaining-tasks")
    assert refused.code == 2 and "has ended (aborted)" in refused.stderr
    # a resume runs what did not succeed, never what did
    resumed = cli("delegate-parallel", "resume", "-q")
    assert resumed.code == 0, resumed.stderr
    events = [e for e in killed_run.read_events(only=("task-start",)) if e["task_id"] == "quick"]
    assert len(events) == 1


def test_a_lever_after_the_run_ended_is_refused_and_rewrites_nothing(cli, tmp_path: Path) -> None:
    config = tasks_config(tmp_path, slow_s=0)
    assert cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode()).code == 0
    run = StateStore().open_run()
    before = run.state_file.read_bytes()
    result = cli("parallel-to-sequential", "convert-remaining-tasks")
    assert result.code == 2 and f"run {run.run_id} has ended (succeeded)" in result.stderr
    assert run.state_file.read_bytes() == before


def test_a_lever_on_a_prepared_run_holds_when_it_starts(cli, tmp_path: Path) -> None:
    config = tasks_config(tmp_path, slow_s=0)
    prepared = cli("delegate-parallel", "prepare", orjson.dumps(config).decode())
    run_id = prepared.json()["run_id"]
    assert cli("parallel-to-sequential", "convert-remaining-tasks").code == 0
    started = cli("delegate-parallel", "start", run_id, "-q")
    assert started.code == 0, started.stderr
    state = StateStore().open_run(run_id).read_state()
    assert state["max_concurrent"] == 1


def test_tasks_that_ended_while_the_orchestrator_was_stopped_are_not_timed_out(tmp_path: Path, state_dir: Path) -> None:
    """A laptop that sleeps: SIGSTOP the orchestrator past its tasks' deadlines, while they end in time."""
    marker = tmp_path / "started"
    tasks = [
        {
            "task_id": f"t{i}",
            "agent": "workforce",
            "description": "x",
            "timeout": 3,
            "command": ["sh", "-c", f"touch {marker}-{i}; sleep 1"],
        }
        for i in range(3)
    ]
    proc = start_orchestrator({"parallel_config": {"retries": 0, "failure_tolerance": 5}, "tasks": tasks})
    wait_for(lambda: all(Path(f"{marker}-{i}").exists() for i in range(3)))
    proc.send_signal(signal.SIGSTOP)
    import time

    time.sleep(5)  # the tasks ended after 1 s, well within their 3 s; the orchestrator wakes after 5 s
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=60) == 0, proc.communicate()[1][-2000:]
    state = StateStore().open_run().read_state()
    assert {t: s["status"] for t, s in state["tasks"].items()} == dict.fromkeys(["t0", "t1", "t2"], "succeeded")


def test_status_shows_what_a_lever_changed_at_once(cli, tmp_path: Path, state_dir: Path) -> None:
    """The lever's change is in state.json as soon as the lever returns, with no task ending meanwhile
    (during a usage-limit pause, say, nothing else would write it)."""
    proc = start_orchestrator(tasks_config(tmp_path))
    try:
        wait_for(lambda: (tmp_path / "slow-started").exists())
        assert cli("parallel-to-sequential", "convert-remaining-tasks").code == 0
        status = cli("delegate-parallel", "status", "--format", "json").json()
        assert status["max_concurrent"] == 1 and status["executing"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
