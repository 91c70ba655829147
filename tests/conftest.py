"""Every test runs in its own directory with its own HOME and state directory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FAKES = REPO / "tests" / "fakes"
REAL_HOME = Path(os.path.expanduser("~"))


def _listing(path: Path) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return None


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWOC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AWOC_AGENT_COMMAND", raising=False)
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture(autouse=True)
def _never_the_real_home_or_repo_state(isolated: Path) -> Any:
    watched = [
        REAL_HOME,
        REAL_HOME / ".claude",
        REAL_HOME / ".awoc",
        REPO / ".awoc",
        REPO / ".awoc" / "parallel" / "runs",
    ]
    before = [_listing(p) for p in watched]
    yield
    after = [_listing(p) for p in watched]
    assert before == after, "a test wrote into the real home directory or the repository's own .awoc/"


@pytest.fixture
def state_dir(isolated: Path) -> Path:
    return isolated / "state"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run a console script's main() in-process: `cli("parallel-task-parser", "validate", ...)`."""

    def run(script: str, *args: str, stdin: str | None = None) -> CliResult:
        import importlib

        module_name, function = SCRIPT_MODULES[script]
        main = getattr(importlib.import_module(f"awoc_scripts.cli.{module_name}"), function)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


SCRIPT_MODULES = {
    "parallel-task-parser": ("task_parser", "main"),
    "dependency-validator": ("dependency_validator", "main"),
    "parallel-resource-planner": ("resource_planner", "main"),
    "token-budget-reducer": ("levers", "budget_main"),
    "parallel-to-sequential": ("levers", "sequential_main"),
    "task-prioritizer": ("levers", "prioritizer_main"),
    "delegate-parallel": ("delegate_parallel", "main"),
    "parallel-result-aggregator": ("result_aggregator", "main"),
    "parallel-report-generator": ("report_generator", "main"),
    "context-monitor": ("context_monitor", "main"),
    "parallel-task-monitor": ("task_monitor", "main"),
    "parallel-error-handler": ("error_handler", "main"),
    "parallel-task-retry": ("task_retry", "main"),
    "parallel-execution-aborter": ("execution_aborter", "main"),
}


def write_json(path: Path, data: Any) -> Path:
    path.write_bytes(orjson.dumps(data))
    return path


@pytest.fixture
def fake_claude(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake claude CLI as AWOC_CLAUDE_BIN; its calls are logged in the returned directory."""
    log_dir = isolated / "claude-calls"
    log_dir.mkdir()
    wrapper = isolated / "bin" / "claude"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKES / "fake_claude.py"}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("AWOC_CLAUDE_BIN", str(wrapper))
    monkeypatch.setenv("FAKE_CLAUDE_LOG_DIR", str(log_dir))
    monkeypatch.setenv("FAKE_CLAUDE_STATE_DIR", str(isolated / "claude-state"))
    (isolated / "claude-state").mkdir()
    return log_dir


def claude_calls(log_dir: Path) -> list[dict[str, Any]]:
    path = log_dir / "calls.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def awoc_processes(state_dir: Path) -> list[int]:
    """Live task processes of the runs in `state_dir` (they carry the AWOC_TASK marker)."""
    runs = state_dir / "runs"
    markers = [f"AWOC_TASK={p.name}/".encode() for p in runs.iterdir()] if runs.is_dir() else []
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if any(m in environ for m in markers) and stat.rsplit(b")", 1)[1].split()[0] != b"Z":
            found.append(int(name))
    return found


@pytest.fixture
def no_leftover_processes(state_dir: Path) -> Any:
    """Fail the test if any task process outlives it."""
    yield
    import time

    deadline = time.monotonic() + 3
    while awoc_processes(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = awoc_processes(state_dir)
    for pid in left:
        with __import__("contextlib").suppress(OSError):
            os.kill(pid, 9)
    assert not left, f"task processes outlived the run: {left}"


def start_orchestrator(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    """`delegate-parallel run -q CONFIG` as its own process (for signals, crashes, outside levers)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from awoc_scripts.cli.delegate_parallel import main; main()",
            "run",
            "-q",
            orjson.dumps(config).decode(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.03)
