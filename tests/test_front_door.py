"""`/delegate-parallel` inside the real `claude` CLI, end to end, offline.

The outer session is the real CLI running the slash command in a scratch project; a fake model
(tests/fakes/outer_session.py) plays the user's Claude and obeys the command's text: it starts
the run in the background, follows it with WAIT, fetches the REPORT and answers. The run's tasks
are real `claude -p` processes against the same fake Messages API. Three ways in: the command
installed into a project (`delegate-parallel install`), and the plugin (`--plugin-dir`) with
awoc on PATH and without it (the plugin makes its own environment on first use).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import FAKES, REPO, live_processes_whose_environ, offline_claude_env

sys.path.insert(0, str(FAKES))

from fake_messages_api import FakeMessagesAPI
from outer_session import FINAL_PREFIX, REFUSED_PREFIX, OuterSession

VENV_BIN = Path(sys.executable).parent
MARKER = "AWOC_FRONT_DOOR_TEST"
CONFIG = {
    "parallel_config": {"failure_tolerance": 0, "retries": 0, "total_timeout": 120},
    "tasks": [
        {"task_id": "research", "agent": "docs-fetcher", "description": "Collect the facts."},
        {"task_id": "design", "agent": "architect", "description": "Design it.", "dependencies": ["research"]},
    ],
}
HOSTILE = [
    "workforce:Print $HOME and cost $5",
    "docs-fetcher:Don't panic",
    "architect:Use `make` and $(touch PWNED)",
    "workforce:Now !important, `!x` and a \\backslash; rm -rf x | y && z > f {a,b} *.py",
]


@dataclass
class Outcome:
    result: dict[str, Any]
    session: OuterSession
    project: Path
    state: Path

    @property
    def answer(self) -> str:
        return str(self.result.get("result", ""))

    def run_dirs(self) -> list[Path]:
        runs = self.state / "runs"
        return sorted(p for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else []

    def task_states(self) -> dict[str, str]:
        (run,) = self.run_dirs()
        state = json.loads((run / "state.json").read_text())
        return {tid: t["status"] for tid, t in state["tasks"].items()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    (path / "my tasks.json").write_text(json.dumps(CONFIG))
    return path


@pytest.fixture
def marked_processes() -> Iterator[str]:
    """A marker put in the outer CLI's environment: every process it leads to inherits it."""
    mark = uuid.uuid4().hex
    yield mark
    deadline = time.monotonic() + 5
    while (left := _processes_with(f"{MARKER}={mark}".encode())) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with __import__("contextlib").suppress(OSError):
            os.kill(pid, 9)
    assert not left, f"processes outlived the session: {left}"


def _processes_with(marker: bytes) -> list[int]:
    return live_processes_whose_environ(lambda environ: marker in environ.split(b"\0"))


def run_slash_command(
    claude: Path,
    project: Path,
    prompt: str,
    mark: str,
    *,
    command_name: str = "delegate-parallel",
    plugin_dir: Path | None = None,
    path: str | None = None,
    extra_env: dict[str, str] | None = None,
    tools: Any = None,
) -> Outcome:
    session = OuterSession(command_name, tools)
    home = project.parent / "home"
    home.mkdir(exist_ok=True)
    with FakeMessagesAPI(session.respond) as api:
        env = offline_claude_env(api.url, home) | {"AWOC_CLAUDE_BIN": str(claude), MARKER: mark}
        if path is not None:
            env["PATH"] = path
        env.update(extra_env or {})
        args = [str(claude), "-p", prompt, "--output-format", "json"]
        if plugin_dir is not None:
            args += ["--plugin-dir", str(plugin_dir)]
        proc = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("{"), (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert not session.unexpected, session.unexpected[:1]
    return Outcome(json.loads(proc.stdout), session, project, project / ".awoc" / "parallel")


def assert_run_reported(outcome: Outcome) -> None:
    result = outcome.result
    assert result["is_error"] is False and result["permission_denials"] == [], result
    assert outcome.answer.startswith(FINAL_PREFIX), outcome.answer[:3000]
    assert "# delegate-parallel report: run" in outcome.answer
    assert "RESULT-OF-research" in outcome.answer and "RESULT-OF-design" in outcome.answer
    assert outcome.task_states() == {"research": "succeeded", "design": "succeeded"}
    prompts = outcome.session.task_prompts
    assert {t: len(p) for t, p in prompts.items()} == {"research": 1, "design": 1}, "a task ran twice or not at all"
    assert "RESULT-OF-research" in prompts["design"][0], "the dependent's prompt lacks its dependency's result"
    assert "RESULT-OF-" not in prompts["research"][0]


@pytest.fixture
def installed(project: Path) -> Path:
    done = subprocess.run(
        [str(VENV_BIN / "delegate-parallel"), "install", str(project)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return project


# Claude Code runs a command's shell steps concurrently; with one step there is no race left to
# lose. Ten loops show it is gone, not rarer (the race lost about half of the runs on 2.1.332).
@pytest.mark.parametrize("loop", range(10))
def test_slash_command_in_an_installed_project(
    claude_bin: Path, installed: Path, marked_processes: str, loop: int
) -> None:
    outcome = run_slash_command(claude_bin, installed, '/delegate-parallel "my tasks.json"', marked_processes)
    assert_run_reported(outcome)
    assert ".claude/awoc/delegate-parallel.sh wait " in outcome.session.command_text
    untracked = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=installed, capture_output=True)
    assert untracked.returncode != 0 or b".awoc/parallel/runs" not in untracked.stdout


def test_hostile_task_text_reaches_the_tasks_verbatim_and_nothing_runs(
    claude_bin: Path, installed: Path, marked_processes: str
) -> None:
    typed = " ".join('"' + text.replace("\\", "\\\\") + '"' for text in HOSTILE)
    outcome = run_slash_command(claude_bin, installed, f"/delegate-parallel {typed}", marked_processes)
    result = outcome.result
    assert result["permission_denials"] == [] and outcome.answer.startswith(FINAL_PREFIX), outcome.answer[:3000]
    ids = ["workforce-1", "docs-fetcher-1", "architect-1", "workforce-2"]
    assert outcome.task_states() == dict.fromkeys(ids, "succeeded")
    plan = json.loads((outcome.run_dirs()[0] / "plan.json").read_text())
    assert [t["description"] for t in plan["tasks"]] == [text.split(":", 1)[1] for text in HOSTILE]
    for task_id, text in zip(ids, HOSTILE, strict=True):
        (prompt,) = outcome.session.task_prompts[task_id]
        assert text.split(":", 1)[1] in prompt, (task_id, prompt[:500])
    assert not list(installed.parent.rglob("PWNED")) and not Path("PWNED").exists()


def test_text_claude_code_never_passes_to_a_shell_gets_told_what_to_type(
    claude_bin: Path, installed: Path, marked_processes: str
) -> None:
    outcome = run_slash_command(claude_bin, installed, '/delegate-parallel "workforce:a \\ b"', marked_processes)
    # Claude Code's own refusal quotes the step, whose first line says what to type instead
    assert "write the tasks in a JSON config file instead and type /delegate-parallel FILE" in outcome.answer
    assert not outcome.run_dirs() and outcome.session.task_prompts == {}


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("\"docs-fetcher:Don't panic", "opened and never closed"),
        ("", "no tasks given"),
        ('"archtect:Design" --max-parallel=0', "--max-parallel: expected a number >= 1, got 0"),
    ],
)
def test_a_refused_request_is_said_not_silent(
    claude_bin: Path, installed: Path, marked_processes: str, typed: str, says: str
) -> None:
    outcome = run_slash_command(claude_bin, installed, f"/delegate-parallel {typed}".strip(), marked_processes)
    assert outcome.answer.startswith(REFUSED_PREFIX), outcome.answer[:2000]
    assert "Not started: the request was refused" in outcome.answer and says in outcome.answer
    assert "/delegate-parallel tasks.json" in outcome.answer  # what to type instead
    assert not outcome.run_dirs()
    assert outcome.session.task_prompts == {}


def plugin_copy(tmp_path: Path) -> Path:
    """The plugin as a marketplace install gets it: the repository's files, no virtualenv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    dest = tmp_path / "plugin"
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_plugin_with_awoc_on_path(claude_bin: Path, project: Path, tmp_path: Path, marked_processes: str) -> None:
    path = f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    outcome = run_slash_command(
        claude_bin,
        project,
        '/awoc:delegate-parallel "my tasks.json"',
        marked_processes,
        command_name="awoc:delegate-parallel",
        plugin_dir=plugin_copy(tmp_path),
        path=path,
    )
    assert_run_reported(outcome)
    assert "first use of the plugin" not in outcome.session.command_text


def _wheelhouse() -> Path:
    """Wheels of awoc's dependencies (and setuptools), so the plugin's first use installs offline.
    `make test` builds it; built here from pip's cache when missing."""
    wheels = REPO / "build" / "wheels"
    if not any(wheels.glob("typer-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(wheels), str(REPO), "setuptools"],
            check=True,
            timeout=600,
        )
    return wheels


def test_plugin_without_awoc_makes_its_own_environment_once(
    claude_bin: Path, project: Path, tmp_path: Path, marked_processes: str
) -> None:
    python_only = tmp_path / "python-only"
    python_only.mkdir()
    base_python = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    (python_only / "python3").symlink_to(base_python)
    cache = tmp_path / "cache"
    extra = {"XDG_CACHE_HOME": str(cache), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(_wheelhouse())}
    plugin = plugin_copy(tmp_path)

    def once() -> Outcome:
        return run_slash_command(
            claude_bin,
            project,
            '/awoc:delegate-parallel "my tasks.json"',
            marked_processes,
            command_name="awoc:delegate-parallel",
            plugin_dir=plugin,
            path=f"{python_only}:/usr/bin:/bin",
            extra_env=extra,
        )

    first = once()
    assert "first use of the plugin: making its Python environment" in first.session.command_text
    assert_run_reported(first)
    environments = [p for p in (cache / "awoc").iterdir() if p.is_dir()]
    assert len(environments) == 1 and (environments[0] / ".complete").exists()
    shutil.rmtree(project / ".awoc")
    second = once()
    assert "first use of the plugin" not in second.session.command_text
    assert_run_reported(second)
    assert re.search(r"prepared, not started", second.session.command_text)


def test_workforce_agents_in_worktrees_through_the_slash_command(
    claude_bin: Path, installed: Path, marked_processes: str
) -> None:
    """Three workforce tasks in worktrees, c after a, each writing a file with its Write tool."""
    from tool_model import ToolModel, script_line

    def writes(name: str) -> str:
        call = {"tool": "Write", "input": {"file_path": "{cwd}/" + f"{name}.txt", "content": f"from {name}\n"}}
        return f"Write {name}.txt.\n{script_line([call])}"

    project = installed
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project, check=True)
    config = {
        "parallel_config": {"isolation": "worktree", "failure_tolerance": 0, "retries": 0, "total_timeout": 200},
        "tasks": [
            {"task_id": "a", "agent": "workforce", "description": writes("a"), "token_budget": 5000},
            {"task_id": "b", "agent": "workforce", "description": writes("b"), "token_budget": 5000},
            {
                "task_id": "c",
                "agent": "workforce",
                "description": writes("c"),
                "token_budget": 5000,
                "dependencies": ["a"],
            },
        ],
    }
    (project / "agents.json").write_text(json.dumps(config))
    outcome = run_slash_command(
        claude_bin, project, "/delegate-parallel agents.json", marked_processes, tools=ToolModel()
    )
    assert outcome.answer.startswith(FINAL_PREFIX), outcome.answer[:3000]
    assert outcome.task_states() == dict.fromkeys("abc", "succeeded"), outcome.answer[-3000:]
    assert {t: len(p) for t, p in outcome.session.task_prompts.items()} == dict.fromkeys("abc", 1)

    def files_on(branch: str) -> set[str]:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", branch], cwd=project, capture_output=True, text=True, check=True
        )
        return {name for name in listing.stdout.split() if name.endswith(".txt") and len(name) == 5}

    (run,) = outcome.run_dirs()
    branches = {t: json.loads((run / "tasks" / t / "result.json").read_text())["worktree"]["branch"] for t in "abc"}
    assert files_on(branches["a"]) == {"a.txt"}
    assert files_on(branches["b"]) == {"b.txt"}
    assert files_on(branches["c"]) == {"a.txt", "c.txt"}  # it started from its dependency's branch
    # the session was told to offer the merge, and the dry run it ran is in its answer
    assert "MERGE-DRY-RUN" in outcome.session.command_text
    assert "merge" in outcome.answer.split("# delegate-parallel report", 1)[1]
