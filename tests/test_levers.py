"""The levers, on a saved run and on a run an orchestrator is executing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import psutil

from awoc_scripts.levers.requests import apply_pending_controls
from awoc_scripts.state.store import StateStore

INLINE = [
    "--priority=critical",
    "architect:a",
    "--priority=high",
    "workforce:b",
    "--priority=medium",
    "docs-fetcher:c",
    "--priority=low",
    "qa:d",
    "--then",
    "--priority=high",
    "qa:e",
    "--total-budget=100000",
]


def make_run(cli) -> str:
    result = cli("parallel-task-parser", "validate", *INLINE)
    assert result.code == 0, result.stderr
    return result.json()["run_id"]


def state_of(state_dir: Path, run_id: str) -> dict:
    return orjson.loads((state_dir / "runs" / run_id / "state.json").read_bytes())


def test_reduce_remaining_tasks(cli, state_dir) -> None:
    run_id = make_run(cli)
    result = cli("token-budget-reducer", "reduce-remaining-tasks", "20%")
    assert result.code == 0, result.stderr
    changed = {c["task_id"]: c for c in result.json()["changed"]["tasks"]}
    assert changed["architect-1"] == {"task_id": "architect-1", "token_budget_before": 7800, "token_budget": 6240}
    assert state_of(state_dir, run_id)["tasks"]["architect-1"]["token_budget"] == 6240
    assert cli("token-budget-reducer", "reduce-remaining-tasks", "20").code == 0
    assert state_of(state_dir, run_id)["tasks"]["architect-1"]["token_budget"] == 4992


def test_emergency_prioritization_cancels_low_and_medium_and_their_dependents(cli, state_dir) -> None:
    run_id = make_run(cli)
    changed = cli("task-prioritizer", "emergency-prioritization").json()["changed"]
    assert changed["cancelled"] == ["docs-fetcher-1", "qa-1"]
    assert changed["skipped_as_a_result"] == [{"task_id": "qa-2", "reason": "dependency docs-fetcher-1 cancelled"}]
    assert changed["kept"] == ["architect-1", "workforce-1"]  # qa-2 is high, but depended on docs-fetcher-1
    tasks = state_of(state_dir, run_id)["tasks"]
    assert tasks["qa-1"]["status"] == "cancelled" and tasks["qa-2"]["status"] == "skipped"


def test_convert_to_sequential(cli, state_dir) -> None:
    run_id = make_run(cli)
    changed = cli("parallel-to-sequential", "convert-remaining-tasks").json()["changed"]
    assert changed["max_concurrent_before"] == 5 and changed["max_concurrent"] == 1
    assert state_of(state_dir, run_id)["max_concurrent"] == 1


def test_levers_need_a_run(cli) -> None:
    calls = [("token-budget-reducer", "reduce-remaining-tasks", "10"), ("task-prioritizer", "emergency-prioritization")]
    for call in calls:
        result = cli(*call)
        assert result.code == 2 and "no runs yet" in result.stderr
    assert "expected 1 to 99" in cli("token-budget-reducer", "reduce-remaining-tasks", "150%").stderr


def test_concurrent_levers_lose_no_update(cli, state_dir) -> None:
    run_id = make_run(cli)
    env = {**os.environ, "AWOC_STATE_DIR": str(state_dir)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from awoc_scripts.cli.levers import budget_main; budget_main()",
                "reduce-remaining-tasks",
                "10",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(8)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    budget = 7800
    for _ in range(8):
        budget = budget * 90 // 100
    state = state_of(state_dir, run_id)
    assert state["tasks"]["architect-1"]["token_budget"] == budget
    assert len(state["controls"]) == 8


def test_a_running_orchestrator_applies_the_lever_and_confirms(cli, state_dir) -> None:
    """Stand in for an orchestrator: this process owns the run and applies controls as they come."""
    run_id = make_run(cli)
    run = StateStore(state_dir).open_run(run_id)
    me = psutil.Process()
    with run.locked_state() as state:
        from awoc_scripts.state.owner import initial_state

        state.update(initial_state(run))
        state["orchestrator"] = {"pid": me.pid, "create_time": me.create_time()}
        state["tasks"]["architect-1"]["status"] = "running"
    stop = threading.Event()

    def orchestrate() -> None:
        while not stop.is_set():
            with run.locked_state() as state:
                apply_pending_controls(run.read_plan(), state, "test orchestrator")
            time.sleep(0.02)

    thread = threading.Thread(target=orchestrate)
    thread.start()
    try:
        env = {**os.environ, "AWOC_STATE_DIR": str(state_dir)}
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from awoc_scripts.cli.levers import prioritizer_main; prioritizer_main()",
                "emergency-prioritization",
            ],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
    finally:
        stop.set()
        thread.join()
    control = orjson.loads(out.stdout)
    assert control["applied_by"] == "test orchestrator"
    assert control["changed"]["kept"] == ["workforce-1"]  # architect-1 is running: not pending, untouched
