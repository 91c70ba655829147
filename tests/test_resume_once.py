"""A finished task never runs again: resume trusts the task's result file over a state.json that
was not flushed yet (the orchestrator killed between the two writes)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from conftest import awoc_processes, start_orchestrator, wait_for


def counted_config(log: Path, n: int, sleep_s: float) -> dict[str, Any]:
    # a task that starts while its own result file says it ended is a finished task run twice
    script = f'[ -f "$AWOC_TASK_DIR/result.json" ] && echo "RERUN $AWOC_TASK_ID" >> "{log}"; sleep {sleep_s}; echo ok'
    return {
        "parallel_config": {"max_concurrent": 2, "retries": 0},
        "tasks": [
            {"task_id": f"t{i}", "agent": "qa", "description": "counted", "command": ["sh", "-c", script]}
            for i in range(n)
        ],
    }


def run_dir(state_dir: Path) -> Path:
    return state_dir / "runs" / (state_dir / "current").read_text().strip()


def test_a_task_whose_result_says_it_succeeded_is_not_run_again(cli, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "reruns.log"
    proc = start_orchestrator(counted_config(log, 2, 0.1) | {"parallel_config": {"max_concurrent": 1}})
    try:
        wait_for(lambda: (state_dir / "current").exists() and (run_dir(state_dir) / "tasks/t0/result.json").exists())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the window: the result is written, state.json still says running
    state_file = run_dir(state_dir) / "state.json"
    state = orjson.loads(state_file.read_bytes())
    state["tasks"]["t0"]["status"] = "running"
    state_file.write_bytes(orjson.dumps(state))
    result = cli("delegate-parallel", "resume", "-q")
    assert result.code == 0, result.stderr
    assert not log.exists()
    events = [orjson.loads(line) for line in (run_dir(state_dir) / "events.jsonl").read_bytes().splitlines()]
    assert any(e["event"] == "resume-kept-finished" and "t0" in e["task_ids"] for e in events)
    starts = [e["task_id"] for e in events if e["event"] == "task-start"]
    assert starts.count("t0") == 1


def test_repeated_sigkills_at_random_moments_never_rerun_a_finished_task(cli, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "reruns.log"
    chance = random.Random(20261202)
    proc = start_orchestrator(counted_config(log, 8, 0.15))
    for _ in range(6):
        wait_for(lambda: (state_dir / "current").exists(), timeout=20)
        try:
            proc.wait(timeout=chance.uniform(0.05, 0.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from awoc_scripts.cli.delegate_parallel import main; main()", "resume", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    proc.wait(timeout=60)
    final = cli("delegate-parallel", "resume", "-q")
    assert final.code == 0, final.stderr
    assert not log.exists(), log.read_text()
    results = [orjson.loads(p.read_bytes()) for p in run_dir(state_dir).glob("tasks/*/result.json")]
    assert len(results) == 8 and all(r["status"] == "succeeded" for r in results)
    assert not awoc_processes(state_dir)


def test_a_live_orchestrator_is_known_after_the_clock_is_stepped(cli, state_dir: Path, monkeypatch) -> None:
    """A stepped clock (a virtual machine resumed from a snapshot) moves the boot time that turns a
    process's start into wall-clock time. The live orchestrator must not then look dead: a resume
    would kill its tasks and run them again."""
    import psutil

    proc = start_orchestrator(counted_config(state_dir / "unused.log", 1, 30))
    try:
        wait_for(lambda: (state_dir / "current").exists() and (run_dir(state_dir) / "tasks/t0/stdout.log").exists())
        stepped = psutil.boot_time() + 1.0
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)
        result = cli("delegate-parallel", "resume", "-q")
        assert result.code == 2, result.stdout + result.stderr
        assert f"is being executed right now by process {proc.pid}" in result.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
