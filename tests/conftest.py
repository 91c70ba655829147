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


def task_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every task's result as readers get it: from its file, or (never started) from state.json."""
    from awoc_scripts.results.aggregate import run_results
    from awoc_scripts.state.store import Run

    return {r["task_id"]: r for r in run_results(Run(run_dir.parent.parent, run_dir.name))}


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
    return live_processes_whose_environ(lambda environ: any(m in environ for m in markers))


def live_processes_whose_environ(test: Callable[[bytes], bool]) -> list[int]:
    """Pids of the live (not zombie) processes, other than this one, whose environment passes `test`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if test(environ) and stat.rsplit(b")", 1)[1].split()[0] != b"Z":
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


def start_orchestrator(config: dict[str, Any], own_group: bool = False) -> subprocess.Popen[bytes]:
    """`delegate-parallel run -q CONFIG` as its own process (for signals, crashes, outside levers);
    with OWN_GROUP, the leader of a session and process group of its own."""
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
        start_new_session=own_group,
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.03)


# ------------------------------------------------------------------------------------------------
# The real claude CLI: the version package.json pins, or AWOC_CLAUDE_VERSION=X.Y.Z for another one
# (installed with npm under build/claude-X.Y.Z/ on first use). What differs between the versions
# tested here is written down once, below.
# ------------------------------------------------------------------------------------------------
PINNED_CLAUDE = orjson.loads((REPO / "package.json").read_bytes())["devDependencies"]["@anthropic-ai/claude-code"]
CLAUDE_VERSION = os.environ.get("AWOC_CLAUDE_VERSION") or PINNED_CLAUDE


@dataclass(frozen=True)
class ClaudeFacts:
    models: dict[str, str]  # --model alias -> the id the CLI sends
    # $ per million tokens at small volumes: input, output, cache read, cache write
    prices: dict[str, tuple[float, float, float, float]]


CLAUDE_FACTS = {
    "2.1.197": ClaudeFacts(
        {"sonnet": "claude-sonnet-5", "haiku": "claude-haiku-4-5-20251001"},
        {"claude-sonnet-5": (3.0, 15.0, 0.30, 3.75), "claude-haiku-4-5-20251001": (1.0, 5.0, 0.10, 1.25)},
    ),
    "2.1.332": ClaudeFacts(
        {"sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"},
        {"claude-sonnet-5-5": (2.0, 10.0, 0.10, 2.50), "claude-haiku-5-5": (0.10, 0.50, 0.01, 0.125)},
    ),
}


def claude_facts() -> ClaudeFacts:
    try:
        return CLAUDE_FACTS[CLAUDE_VERSION]
    except KeyError:
        pytest.fail(f"no recorded facts for claude {CLAUDE_VERSION}: add them to CLAUDE_FACTS in tests/conftest.py")


def _claude_version_of(binary: Path) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "DISABLE_AUTOUPDATER": "1"}
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env, timeout=60)
    except OSError:
        return ""
    return proc.stdout.split(" ", 1)[0].strip()


def claude_binary_path() -> Path:
    if CLAUDE_VERSION == PINNED_CLAUDE:
        return REPO / "node_modules" / ".bin" / "claude"
    return REPO / "build" / f"claude-{CLAUDE_VERSION}" / "node_modules" / ".bin" / "claude"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The real claude CLI of CLAUDE_VERSION, installed with npm if missing. Skipped only without npm."""
    import shutil

    binary = claude_binary_path()
    if binary.exists() and _claude_version_of(binary) == CLAUDE_VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not available: cannot install the claude CLI")
    if CLAUDE_VERSION == PINNED_CLAUDE:
        command, where = [npm, "install", "--no-audit", "--no-fund"], REPO
    else:
        where = binary.parents[2]
        where.mkdir(parents=True, exist_ok=True)
        command = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(where),
            f"@anthropic-ai/claude-code@{CLAUDE_VERSION}",
        ]
    proc = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"npm install failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    version = _claude_version_of(binary)
    if version != CLAUDE_VERSION:
        pytest.fail(f"{binary} is version {version!r} after npm install, expected {CLAUDE_VERSION}")
    return binary


def offline_claude_env(api_url: str, home: Path) -> dict[str, str]:
    """The environment that runs the real CLI offline against the fake Messages API."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "sk-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def git(repo: Path, *args: str) -> str:
    """A git command in REPO with an identity, failing the test if git fails; its stdout."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def use_fake_api(monkeypatch: pytest.MonkeyPatch, api_url: str, claude: Path) -> None:
    """Agent tasks of this test run the real claude CLI offline, against the fake Messages API at API_URL."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE")):
            monkeypatch.delenv(name)
    env = offline_claude_env(api_url, Path(os.environ["HOME"])) | {"AWOC_CLAUDE_BIN": str(claude)}
    for name, value in env.items():
        if name not in ("PATH", "HOME"):
            monkeypatch.setenv(name, value)
