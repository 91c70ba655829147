"""A finished task never runs again: resume trusts the task's result file over a state.json that
was not flushed yet (the orchestrator killed between the two writes)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

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
        # its result written and its start in events.jsonl (events are written once per pass of
        # the loop, and a SIGKILL loses the pass's last ones: here they are what is counted)
        wait_for(
            lambda: (
                (state_dir / "current").exists()
                and (run_dir(state_dir) / "tasks/t0/result.json").exists()
                and b'"task-start"' in (run_dir(state_dir) / "events.jsonl").read_bytes()
            )
        )
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


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state folder on a 600 KB tmpfs of its own (skipped where this machine may not mount one)."""
    disk = tmp_path / "small"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    monkeypatch.setenv("AWOC_STATE_DIR", str(disk / "state"))
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_run_by_name_and_resume_keeps_the_task_it_could_not_record(
    cli, small_disk: Path, tmp_path: Path
) -> None:
    """The result of a task that printed 400 KB cannot be written on a disk with less room: not a bug
    (exit 3, no traceback), nothing left running, and once there is room `resume` writes that
    result from state.json and the task's output instead of running the task again."""
    state_dir = small_disk / "state"
    ran = f"[ -f {tmp_path}/slow-ran ] || {{ touch {tmp_path}/slow-ran; false; }}"
    config = {
        "tasks": [
            {"task_id": "big", "agent": "qa", "description": "x", "command": ["sh", "-c", "head -c 400000 /dev/zero"]},
            # running when the disk fills up; its second run (the resume) ends at once
            {"task_id": "slow", "agent": "qa", "description": "y", "command": ["sh", "-c", f"{ran} || sleep 30"]},
        ]
    }
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    assert result.code == 3, result.stdout + result.stderr
    run_id = (state_dir / "current").read_text().strip()
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no space left on device (writing ") and "tasks/big/result.json" in line
    assert f"`delegate-parallel resume {run_id}` continues it" in line
    assert not awoc_processes(state_dir)

    subprocess.run(["mount", "-o", "remount,size=50m", str(small_disk)], check=True)
    resumed = cli("delegate-parallel", "resume", "-q")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    run_dir = state_dir / "runs" / run_id
    big = orjson.loads((run_dir / "tasks/big/result.json").read_bytes())
    # its output kept whole in stdout.log; the result holds its end and names the log
    assert big["status"] == "succeeded" and big["started_at"]
    assert "the whole 400000 bytes are in" in big["result"] and len(big["result"]) < 70_000
    starts = [
        e for e in map(orjson.loads, (run_dir / "events.jsonl").read_bytes().splitlines()) if e["event"] == "task-start"
    ]
    assert [e["task_id"] for e in starts].count("big") == 1
