"""What a task prints is not taken on trust: output of any size (bounded memory and documents, the
whole of it once in stdout.log), of any shape (no escape sequence reaches a terminal or a report),
and usage numbers only from agents, never absurd ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.state.store import StateStore

from conftest import task_results

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

MB = 1024 * 1024


def command_task(task_id: str, script: str, **more: Any) -> dict[str, Any]:
    return {"task_id": task_id, "agent": "workforce", "description": task_id, "command": ["sh", "-c", script], **more}


def run_config(*tasks: dict[str, Any]) -> str:
    return orjson.dumps({"parallel_config": {"retries": 0, "failure_tolerance": 5}, "tasks": list(tasks)}).decode()


def peak_rss_mb(*args: str) -> tuple[int, float]:
    """`delegate-parallel ARGS` in a process of its own: its exit code and its peak RSS."""
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run([sys.executable, '-c', "
        "'from awoc_scripts.cli.delegate_parallel import main; main()', *sys.argv[1:]], "
        "stdout=subprocess.DEVNULL).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", measure, *args], capture_output=True, text=True, check=True)
    code, kilobytes = done.stdout.split()
    return int(code), int(kilobytes) / 1024


def test_a_task_printing_200_mb_keeps_memory_and_documents_bounded(state_dir: Path) -> None:
    tasks = [command_task("big", "yes 'a line of output' | head -c 200000000; echo; echo THE-END")]
    code, orchestrator_mb = peak_rss_mb("run", "-q", run_config(*tasks))
    assert code == 0
    run = StateStore().open_run()
    stdout = run.task_files("big").stdout
    assert stdout.stat().st_size > 200_000_000  # the whole output, once
    result = orjson.loads(run.task_files("big").result.read_bytes())
    assert (
        result["result"].endswith("THE-END") and f"the whole {stdout.stat().st_size} bytes are in" in result["result"]
    )
    assert len(result["result"]) < 70_000
    for document in ("aggregate.json", "report.json", "report.md"):
        assert (run.dir / document).stat().st_size < 1 * MB, document
    assert orchestrator_mb < 150, f"peak RSS {orchestrator_mb:.0f} MB with a task printing 200 MB"
    (run.dir / "report.json").unlink()  # made anew from the results
    code, report_mb = peak_rss_mb("report", "--format", "json")
    assert code == 0 and report_mb < 150, f"report: peak RSS {report_mb:.0f} MB"


def test_control_characters_never_reach_a_terminal_or_the_report(cli, state_dir: Path) -> None:
    script = r"printf 'clear\033[2J title\033]0;pwned\007 nul\000 del\177 end\n'; printf 'bad\033[31m\n' >&2; exit 3"
    tasks = [command_task("shouty", script), command_task("ok", r"printf 'fine\033[0m\n'")]
    result = cli("delegate-parallel", "run", run_config(*tasks))
    assert result.code == 1
    run = StateStore().open_run()
    markdown = (run.dir / "report.md").read_text()
    for raw in ("\x1b", "\x07", "\x00", "\x7f"):
        assert raw not in markdown and raw not in result.stderr, repr(raw)
    assert "\\x1b[2J" in markdown or "\\x1b[0m" in markdown
    status = cli("delegate-parallel", "status", "--format", "text")
    assert "\x1b" not in status.stdout
    shown = cli("delegate-parallel", "report")
    assert "\x1b" not in shown.stdout and "\x00" not in shown.stdout


CLAIMS = '{"type":"result","subtype":"success","is_error":false,"result":"I did it","total_cost_usd":1e308,' + (
    '"usage":{"input_tokens":999999999,"output_tokens":5}}'
)


def test_a_command_task_claiming_absurd_usage_spends_nothing(cli, state_dir: Path) -> None:
    config = {
        "parallel_config": {"total_token_budget": 1000, "total_cost_budget_usd": 1},
        "tasks": [command_task("liar", f"echo '{CLAIMS}'")],
    }
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    assert result.code == 0, result.stderr
    (done,) = task_results(StateStore().open_run().dir).values()
    assert done["status"] == "succeeded" and done["tokens_used"]["total"] == 0 and done["cost_usd"] == 0
    report = (StateStore().open_run().dir / "report.md").read_text()
    assert "e+308" not in report and "1" * 50 not in report


def test_an_agent_claiming_impossible_usage_fails_and_its_numbers_are_not_counted(
    cli, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text(f"#!/bin/sh\ncat > /dev/null\necho '{CLAIMS}'\n")
    agent.chmod(0o755)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", str(agent))
    config = {"parallel_config": {"retries": 0, "failure_tolerance": 5}, "tasks": [{"agent": "a", "description": "x"}]}
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    assert result.code == 1, result.stderr
    (done,) = task_results(StateStore().open_run().dir).values()
    assert done["status"] == "failed" and "usage that cannot be true" in done["error"]
    assert done["tokens_used"]["total"] == 0 and done["cost_usd"] == 0
