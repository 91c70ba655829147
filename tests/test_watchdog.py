"""The run's watchdog, on its own: it leaves quietly when told the run ended its processes, kills
the run's processes (and only those) when its orchestrator goes without saying so, and holds the
run's claim until it has."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from awoc_scripts import processes
from awoc_scripts.execution.watchdog import Watchdog
from awoc_scripts.processes import MARKER_ENV, process_gone
from awoc_scripts.state.store import CLEANING_UP, OWNER_DIED, Run, claim_holder, take_claim


def marked_sleep(run_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKER_ENV: f"{run_id}/t1"}
    return subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)


@pytest.fixture
def run_id() -> str:
    return f"watchdog-test-{uuid.uuid4().hex[:8]}"


def test_told_that_everything_ended_it_leaves_and_kills_nothing(tmp_path: Path, run_id: str) -> None:
    claim = take_claim(tmp_path / "owner.lock", "run x", "executed")
    task = marked_sleep(run_id)
    try:
        watchdog = Watchdog.start(Run(tmp_path, run_id), claim.fd)
        assert watchdog is not None
        watchdog.end(everything_ended=True)
        assert process_gone(watchdog.pid)
        assert task.poll() is None  # nothing was killed
        claim.release()
        assert claim_holder(tmp_path / "owner.lock") is None  # and it let go of the claim
    finally:
        task.kill()
        task.wait()


def test_without_that_word_it_kills_the_runs_processes_only(tmp_path: Path, run_id: str) -> None:
    claim = take_claim(tmp_path / "owner.lock", "run x", "executed")
    task, other = marked_sleep(run_id), marked_sleep(run_id + "-other")
    try:
        run = Run(tmp_path, run_id)
        run.dir.mkdir(parents=True)
        watchdog = Watchdog.start(run, claim.fd)
        assert watchdog is not None
        watchdog.end(everything_ended=False)  # as if the orchestrator had died
        assert task.wait(timeout=5) == -9
        assert other.poll() is None
        # and it says so in the run's events, for status to tell
        (said,) = run.read_events(only=(OWNER_DIED,))
        assert said["killed"] == [task.pid]
    finally:
        for proc in (task, other):
            proc.kill()
            proc.wait()
        claim.release()


def test_after_its_orchestrator_died_it_holds_the_claim_and_says_why(tmp_path: Path, run_id: str) -> None:
    # a stand-in orchestrator: takes the claim, starts the watchdog, and is killed
    script = (
        "import sys, time; from pathlib import Path; from awoc_scripts.state.store import take_claim; "
        "from awoc_scripts.execution.watchdog import Watchdog; from awoc_scripts.state.store import Run; "
        f"claim = take_claim(Path({str(tmp_path / 'owner.lock')!r}), 'run x', 'executed'); "
        f"Watchdog.start(Run(Path({str(tmp_path)!r}), {run_id!r}), claim.fd); "
        "print('ready', flush=True); time.sleep(60)"
    )
    orchestrator = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    task = marked_sleep(run_id)
    try:
        assert orchestrator.stdout is not None and orchestrator.stdout.readline() == b"ready\n"
        assert claim_holder(tmp_path / "owner.lock") == "executed"
        orchestrator.kill()
        orchestrator.wait()
        # held on while the watchdog kills what is left, and not as "executed": a resume waits
        held = claim_holder(tmp_path / "owner.lock")
        assert held in (CLEANING_UP, None)
        assert task.wait(timeout=5) == -9
        again = take_claim(tmp_path / "owner.lock", "run x", "executed")  # waits for it, is not refused
        again.release()
    finally:
        for proc in (orchestrator, task):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(processes._cgroups() is None, reason="no writable cgroup v2 on this machine")
def test_its_shell_ends_the_runs_cgroups_before_python_starts(
    tmp_path: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python takes a tenth of a second to start: a task that finished meanwhile would have its end
    seen by nobody, and run again on resume. The shell kills the task cgroups itself, at once: here
    its Python cannot even start, and the task still ends."""
    claim = take_claim(tmp_path / "owner.lock", "run x", "executed")
    marker = processes.task_marker(run_id, "t1")
    with processes.contained(marker) as entered:
        assert entered
        task = processes.spawn(
            ["sleep", "30"], cwd=Path.cwd(), stdin=None, stdout=tmp_path / "out", stderr=tmp_path / "err",
            env=os.environ, marker=marker,
        )  # fmt: skip
    try:
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
        watchdog = Watchdog.start(Run(tmp_path, run_id), claim.fd)
        assert watchdog is not None
        watchdog.end(everything_ended=False)
        assert task.wait(5) == -9
    finally:
        processes.kill_cgroups(run_id)
        task.wait(5)
        claim.release()
