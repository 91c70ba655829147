"""`verify`: a task succeeds when its work passes its verification, not when its program exits 0."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import FAKES, task_results, use_fake_api

sys.path.insert(0, str(FAKES))

from tool_model import ToolModel, script_line

from awoc_scripts.state.store import StateStore

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def command_task(task_id: str, script: str, **more: Any) -> dict[str, Any]:
    return {"task_id": task_id, "agent": "workforce", "description": task_id, "command": ["sh", "-c", script], **more}


def run(cli, *tasks: dict[str, Any], **settings: Any) -> Any:
    parallel = {"retries": 1, "failure_tolerance": 5, **settings}
    return cli(
        "delegate-parallel", "run", "-q", orjson.dumps({"parallel_config": parallel, "tasks": list(tasks)}).decode()
    )


def results() -> dict[str, dict[str, Any]]:
    return task_results(StateStore().open_run().dir)


def test_a_verification_that_fails_first_and_passes_on_the_retry(cli, isolated: Path) -> None:
    # the task writes its attempt's mark; the verification passes from the second attempt on
    verify = ["sh", "-c", 'n=$(wc -l < marks); echo "checked $n marks"; test "$n" -ge 2']
    done = run(cli, command_task("t", "echo mark >> marks", verify=verify))
    assert done.code == 0, done.stderr
    result = results()["t"]
    assert result["status"] == "succeeded" and result["attempts"] == 2
    assert result["verify"]["passed"] and result["verify"]["command"] == verify
    assert "checked 2 marks" in result["verify"]["output"] and result["verify"]["duration_s"] >= 0
    markdown = (StateStore().open_run().dir / "report.md").read_text()
    assert "## Verification" in markdown and "- t: `sh -c" in markdown and "passed" in markdown


def test_a_verification_that_never_passes_fails_the_task_with_its_output(cli, isolated: Path) -> None:
    always_fails = ["sh", "-c", "echo 'TEST FAILED: expected 3, got 2'; exit 1"]
    done = run(cli, command_task("never", "echo work > w.txt"), command_task("ok", "true"), verify=always_fails)
    assert done.code == 1, done.stderr
    for tid in ("never", "ok"):  # parallel_config.verify is every task's default
        result = results()[tid]
        assert result["status"] == "failed" and result["attempts"] == 2, result
        assert result["error"].startswith("verification `sh -c") and "exited 1" in result["error"]
        assert "TEST FAILED: expected 3, got 2" in result["error"] and result["verify"]["exit_code"] == 1
    markdown = (StateStore().open_run().dir / "report.md").read_text()
    assert "`sh -c echo 'TEST FAILED" in markdown or "**failed** (exited 1)" in markdown
    assert "TEST FAILED: expected 3, got 2" in markdown


def test_a_verification_past_its_timeout_is_stopped_and_fails_the_attempt(cli, isolated: Path) -> None:
    done = run(cli, command_task("slow", "true", verify=["sleep", "30"], verify_timeout=0.5, retries=0))
    assert done.code == 1
    result = results()["slow"]
    assert result["status"] == "failed" and "did not end within 0.5 s" in result["error"]
    assert result["verify"]["exit_code"] is None


def test_an_agents_retry_prompt_quotes_the_verification_output(
    cli, isolated: Path, claude_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_messages_api import FakeMessagesAPI

    model = ToolModel()
    counter = isolated / "verifications"
    verify = [
        "sh",
        "-c",
        f'echo x >> "{counter}"; test $(wc -l < "{counter}") -ge 2 || {{ echo "VERIFY-SAYS: line 7"; exit 1; }}',
    ]
    write = {"tool": "Write", "input": {"file_path": "{cwd}/out.txt", "content": "done\n"}}
    task = {
        "task_id": "agent",
        "agent": "workforce",
        "description": "Write out.txt.\n" + script_line([write]),
        "token_budget": 5000,
        "verify": verify,
    }
    with FakeMessagesAPI(model.respond) as api:
        use_fake_api(monkeypatch, api.url, claude_bin)
        done = run(cli, task, total_timeout=200)
    assert done.code == 0, (done.stderr, results()["agent"].get("error"))
    prompts = model.prompts["agent"]
    assert len(prompts) == 2 and "VERIFY-SAYS" not in prompts[0]
    assert "VERIFY-SAYS: line 7" in prompts[1] and "fix what it reports" in prompts[1]
    assert (isolated / "work" / "out.txt").read_text() == "done\n"
