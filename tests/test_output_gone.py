"""Whoever reads a command's output may go away: a terminal closed with the run on it, an SSH
connection dropped, `| head` that has read enough. The run still ends as it should (its state,
results and exit code), and nothing turns that into an internal error."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from awoc_scripts.state.store import StateStore

from conftest import wait_for

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

CLI = [sys.executable, "-c", "from awoc_scripts.cli.delegate_parallel import main; main()"]


def tasks_config(seconds: float) -> str:
    tasks = [
        {"task_id": f"t{i}", "agent": "qa", "description": "x", "command": ["sleep", str(seconds)]} for i in range(2)
    ]
    return orjson.dumps({"parallel_config": {"retries": 0}, "tasks": tasks}).decode()


def test_a_run_whose_terminal_went_away_stops_on_sighup_and_writes_its_state(state_dir: Path) -> None:
    # the live view draws on a terminal; the terminal is closed, then SIGHUP comes, as on a hangup
    controller, terminal = pty.openpty()
    run = subprocess.Popen(
        [*CLI, "run", tasks_config(30)], stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True
    )
    os.close(terminal)
    try:
        wait_for(lambda: (state_dir / "current").exists() and len(StateStore().open_run().task_dirs()) == 2)
        os.close(controller)  # every write to it fails from now on (EIO)
        run.send_signal(signal.SIGHUP)
        assert run.wait(timeout=30) == 130
    finally:
        run.kill()
        run.wait()
    state = StateStore().open_run().read_state()
    assert state["status"] == "interrupted", state
    assert {t["status"] for t in state["tasks"].values()} == {"cancelled"}


def test_a_run_whose_reader_left_still_exits_with_its_own_code(state_dir: Path) -> None:
    # `delegate-parallel run ... | head -c 0`: the summary cannot be written, the run has succeeded
    run = subprocess.Popen([*CLI, "run", "-q", tasks_config(0.2)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()
    assert run.wait(timeout=60) == 0
    assert b"internal error" not in run.stderr.read()
    assert StateStore().open_run().read_state()["status"] == "succeeded"


@pytest.mark.parametrize("gone", ["a pipe", "a terminal"])
def test_status_whose_reader_left_is_no_internal_error(cli, state_dir: Path, gone: str) -> None:
    assert cli("delegate-parallel", "run", "-q", tasks_config(0)).code == 0
    if gone == "a pipe":
        status = subprocess.Popen([*CLI, "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert status.stdout is not None
        status.stdout.close()
    else:
        controller, terminal = pty.openpty()
        os.close(controller)  # the window closed before it wrote: every write fails (EIO)
        status = subprocess.Popen([*CLI, "status"], stdout=terminal, stderr=subprocess.PIPE)
        os.close(terminal)
    assert status.wait(timeout=30) == 1  # as click exits when its reader left; not 4, the internal error
    assert status.stderr is not None and status.stderr.read() == b""


def ignore_hangups() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_a_run_started_with_nohup_outlives_its_terminal(state_dir: Path) -> None:
    # `nohup delegate-parallel run ... &`: SIGHUP is ignored when it starts, and stays ignored
    run = subprocess.Popen(
        [*CLI, "run", "-q", tasks_config(1)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=ignore_hangups,
    )
    try:
        wait_for(lambda: (state_dir / "current").exists() and len(StateStore().open_run().task_dirs()) == 2)
        run.send_signal(signal.SIGHUP)
        assert run.wait(timeout=60) == 0
    finally:
        run.kill()
        run.wait()
    assert StateStore().open_run().read_state()["status"] == "succeeded"


def test_a_stop_signal_while_a_finished_run_prints_leaves_the_runs_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C as `run` prints its summary, once the run has ended: the summary is cut short, and
    the exit code is still the run's, not 130 over a run recorded as succeeded."""
    import typer

    import awoc_scripts.input.documents as documents
    from awoc_scripts.cli.common import Interrupted
    from awoc_scripts.cli.delegate_parallel import _finish

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise Interrupted("interrupted")

    monkeypatch.setattr(documents, "print_json", interrupted)
    with pytest.raises(typer.Exit) as ended:
        _finish({"report_md": "report.md"}, 0, quiet=True, as_json=True)  # type: ignore[typeddict-item]
    assert ended.value.exit_code == 0
