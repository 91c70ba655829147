"""`delegate-parallel prepare` (the slash command's one step), the argument text it reads, and `wait`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awoc_scripts.errors import InputError
from awoc_scripts.input.command_arguments import split_command_arguments, split_words, undo_bang_escapes

from conftest import awoc_processes, start_orchestrator


def claude_code_bang_escape(text: str) -> str:
    """What Claude Code 2.1.197 and 2.1.332 do to an argument pasted into a shell step (O6 in its source)."""
    text = text.replace("`!", "` !").replace("!`", "! `")
    return re.sub(r"(^|\s)!", r"\1\\!", text, flags=re.M)


@pytest.mark.parametrize(
    "text",
    ["Now !important", "`!x`", "a!`b`", "!start", "line\n!bang", "Don't panic!", "no bang at all", "!`!`!"],
)
def test_bang_escapes_are_undone(text: str) -> None:
    assert undo_bang_escapes(claude_code_bang_escape(text)) == text


def _bash_words(text: str) -> list[str]:
    script = 'set -f; eval "set -- $1"; for a in "$@"; do printf "%s\\0" "$a"; done'
    out = subprocess.run(["bash", "-c", script, "_", text], capture_output=True, check=True).stdout
    return out.decode().split("\0")[:-1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["plain", "single", "double"]),
            st.text(st.sampled_from(list("ab $`\\\"'!()*?;|&<>{}~#\n")), min_size=0, max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_words_split_as_bash_splits_them_with_nothing_expanded(parts: list[tuple[str, str]]) -> None:
    words = []
    for kind, raw in parts:
        if kind == "single":
            words.append("'" + raw.replace("'", "") + "'")
        elif kind == "double":
            words.append('"' + re.sub(r'(["\\$`])', r"\\\1", raw) + '"')
        else:
            words.append(re.sub(r"([^A-Za-z0-9])", r"\\\1", raw) if raw else "x")
    text = " ".join(words)
    assert split_words(text) == _bash_words(text)


def test_hostile_texts_are_words_not_code(tmp_path: Path) -> None:
    typed = (
        '"workforce:Print $HOME and cost $5" "docs-fetcher:Don\'t panic" "architect:Use `make` and $(touch PWNED)"\n'
    )
    assert split_command_arguments(typed) == [
        "workforce:Print $HOME and cost $5",
        "docs-fetcher:Don't panic",
        "architect:Use `make` and $(touch PWNED)",
    ]
    assert not (tmp_path / "PWNED").exists()


def test_a_config_path_with_a_space_typed_without_quotes(tmp_path: Path) -> None:
    config = tmp_path / "my tasks.json"
    config.write_text("{}")
    assert split_command_arguments(f"{config}\n") == [str(config)]
    assert split_command_arguments(f'"{config}" --max-parallel=2') == [str(config), "--max-parallel=2"]


@pytest.mark.parametrize(("typed", "quote"), [("\"docs-fetcher:Don't panic", '"'), ("'a:b", "'")])
def test_an_unclosed_quote_says_which(typed: str, quote: str) -> None:
    with pytest.raises(InputError, match=f"a {quote} was opened and never closed"):
        split_command_arguments(typed)


def test_prepare_for_claude_never_fails_silently(cli, state_dir: Path) -> None:
    result = cli("delegate-parallel", "prepare", "--for-claude", "--args-on-stdin", stdin='"a:b')
    assert result.code == 0 and "## Not started: the request was refused" in result.stdout
    assert "/delegate-parallel tasks.json" in result.stdout
    assert not state_dir.exists()
    plain = cli("delegate-parallel", "prepare", "--args-on-stdin", stdin='"a:b')
    assert plain.code == 2 and plain.stdout == "" and plain.stderr.startswith("error: ")


def test_prepare_saves_plan_and_execution_in_one_step(cli, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWOC_AGENT_COMMAND", "cat")
    result = cli("delegate-parallel", "prepare", "architect:Design it", "--then", "workforce:Build it")
    assert result.code == 0, result.stderr
    summary = result.json()
    run_dir = state_dir / "runs" / summary["run_id"]
    assert (run_dir / "plan.json").exists() and (run_dir / "execution.json").exists()
    assert summary["critical_path"] == ["architect-1", "workforce-1"]
    assert summary["next"]["start"] == f"delegate-parallel start {summary['run_id']} --quiet"
    assert summary["next"]["wait"] == f"delegate-parallel wait {summary['run_id']} --timeout 100"
    monkeypatch.setenv("AWOC_LAUNCHER", ".claude/awoc/{name}.sh")
    text = cli("delegate-parallel", "prepare", "--for-claude", "architect:Design it").stdout
    assert "- START (once, in the background): `.claude/awoc/delegate-parallel.sh start " in text
    assert "| architect-1 | architect | medium |" in text


def _prepared(cli) -> str:
    result = cli(
        "delegate-parallel",
        "prepare",
        json.dumps({"tasks": [{"agent": "a", "description": "x", "command": ["sleep", "1"]}]}),
    )
    assert result.code == 0, result.stderr
    return str(result.json()["run_id"])


def test_wait_on_a_run_not_started_yet_times_out_with_124(cli) -> None:
    run_id = _prepared(cli)
    started = time.monotonic()
    result = cli("delegate-parallel", "wait", run_id, "--timeout", "0.5")
    assert result.code == 124 and time.monotonic() - started >= 0.5
    assert f"run {run_id}: planned" in result.stdout
    assert f"Wait again: delegate-parallel wait {run_id} --timeout 0.5" in result.stdout


def test_wait_returns_when_the_run_ends_with_its_exit_code(cli) -> None:
    run_id = _prepared(cli)
    start = subprocess.Popen(
        [sys.executable, "-c", "from awoc_scripts.cli.delegate_parallel import main; main()", "start", run_id, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = cli("delegate-parallel", "wait", run_id, "--timeout", "60")
    finally:
        start.wait(timeout=60)
    assert result.code == 0, result.stdout
    assert "The run has ended (succeeded). Next: delegate-parallel report" in result.stdout


def test_wait_sees_an_orchestrator_killed_without_a_word(cli, state_dir: Path) -> None:
    config = {"tasks": [{"agent": "a", "description": "x", "command": ["sleep", "30"]}]}
    proc = start_orchestrator(config)
    current = state_dir / "current"
    deadline = time.monotonic() + 20
    while not current.exists() or "running" not in _state_text(state_dir, current):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    result = cli("delegate-parallel", "wait", current.read_text().strip(), "--timeout", "20")
    assert result.code == 130, result.stdout  # interrupted: resume continues it
    for pid in awoc_processes(state_dir):  # the task an orchestrator killed so leaves behind (resume kills it)
        os.kill(pid, 9)


def _state_text(state_dir: Path, current: Path) -> str:
    try:
        return (state_dir / "runs" / current.read_text().strip() / "state.json").read_text()
    except (FileNotFoundError, OSError):
        return ""


def test_wait_refuses_a_bad_timeout(cli) -> None:
    run_id = _prepared(cli)
    result = cli("delegate-parallel", "wait", run_id, "--timeout", "-1")
    assert result.code == 2 and "error:" in result.stderr
