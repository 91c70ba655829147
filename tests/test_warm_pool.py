"""Warm agents: a task's CLI process starts before the task, its prompt withheld until it starts."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.execution.display import PlainDisplay
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.execution.run_options import Options
from awoc_scripts.flow.prepare import prepare_run
from awoc_scripts.flow.runs import execute_run
from awoc_scripts.state.store import StateStore

from conftest import FAKES, awoc_processes, start_orchestrator, task_results, use_fake_api, wait_for

sys.path.insert(0, str(FAKES))
from fake_messages_api import FakeMessagesAPI, Reply


def run(config: dict[str, Any], **options: Any) -> tuple[int, Path]:
    run_files, plan, execution = prepare_run(StateStore(), [orjson.dumps(config).decode()])
    executor = LocalExecutor(grace_s=0.5)
    code, _ = execute_run(run_files, plan, execution, executor, PlainDisplay(quiet=True), options=Options(**options))
    return code, run_files.dir


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]


def started(log_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (log_dir / "started.jsonl").read_bytes().splitlines() if (log_dir / "started.jsonl").exists() else []
    return {e["task_id"]: e for e in map(orjson.loads, lines)}


def test_a_dependent_task_starts_on_a_warm_process_and_its_clock_starts_at_the_prompt(
    fake_claude: Path, state_dir: Path
) -> None:
    # "after" has a 1 s timeout and waits warm for over 1 s: it succeeds, since its time
    # counts from its prompt, which is written only once "first" has ended
    config = {
        "parallel_config": {"max_concurrent": 2, "warm_agents": 2, "retries": 0},
        "tasks": [
            {"task_id": "first", "agent": "qa", "description": "x [[fake:sleep=2]]"},
            {"task_id": "after", "agent": "qa", "description": "y", "dependencies": ["first"], "timeout": 1},
        ],
    }
    code, run_dir = run(config)
    assert code == 0
    seen = events(run_dir)
    used = next(e for e in seen if e["event"] == "task-warm-used")
    assert used["task_id"] == "after" and used["warm_s"] >= 1.0
    done = task_results(run_dir)
    assert done["after"]["status"] == "succeeded" and done["after"]["duration_s"] < 1.0
    assert done["after"]["started_at"] >= done["first"]["finished_at"]
    # the CLI process itself started while "first" still ran
    procs = started(fake_claude)
    assert procs["after"]["start"] < procs["first"]["start"] + 1.8  # first works 2 s
    # its prompt is the whole prompt, with its dependency's result in it
    prompt = (run_dir / "tasks" / "after" / "prompt.md").read_text()
    assert "## first" in prompt
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["warm_pool"]["used"] == 1 and report["warm_pool"]["critical_path_warm_s"] >= 1.0
    assert not awoc_processes(state_dir)


def test_warm_processes_of_tasks_that_will_not_run_are_stopped_and_leave_nothing(
    fake_claude: Path, state_dir: Path
) -> None:
    # "broken" fails and the run aborts: "next" (its dependent) is skipped and "waiting" (ready,
    # no slot while "broken" and "other" run) cancelled; both had warm processes, which are
    # stopped without ever getting a prompt
    config = {
        "parallel_config": {"max_concurrent": 2, "warm_agents": 2, "retries": 0, "failure_tolerance": 0},
        "tasks": [
            {"task_id": "broken", "agent": "qa", "description": "x [[fake:sleep=1]] [[fake:fail]]", "priority": "high"},
            {"task_id": "other", "agent": "qa", "description": "w [[fake:sleep=5]]", "priority": "high"},
            {"task_id": "next", "agent": "qa", "description": "y", "dependencies": ["broken"]},
            {"task_id": "waiting", "agent": "qa", "description": "z"},
        ],
    }
    code, run_dir = run(config)
    assert code == 3
    seen = events(run_dir)
    assert {e["task_id"] for e in seen if e["event"] == "task-warmed"} == {"next", "waiting"}
    assert {e["task_id"] for e in seen if e["event"] == "task-warm-discarded"} == {"next", "waiting"}
    assert not any(e["event"] == "task-warm-used" for e in seen)
    calls = [orjson.loads(line) for line in (fake_claude / "calls.jsonl").read_bytes().splitlines()]
    assert sorted(c["env"]["AWOC_TASK_ID"] for c in calls) == ["broken", "other"]  # only they got prompts
    assert not awoc_processes(state_dir)


def test_an_interrupted_run_leaves_no_warm_process(fake_claude: Path, state_dir: Path) -> None:
    config = {
        "parallel_config": {"max_concurrent": 1, "warm_agents": 1},
        "tasks": [
            {"task_id": "long", "agent": "qa", "description": "x [[fake:sleep=30]]", "priority": "high"},
            {"task_id": "later", "agent": "qa", "description": "y"},
        ],
    }
    proc = start_orchestrator(config)

    def warmed() -> list[int]:
        found = list(state_dir.glob("runs/*/events.jsonl"))
        lines = found[0].read_bytes().splitlines() if found else []
        return [e["pid"] for e in map(orjson.loads, lines) if e["event"] == "task-warmed"]

    try:
        wait_for(lambda: bool(warmed()) and "long" in started(fake_claude), timeout=20)
        assert Path(f"/proc/{warmed()[0]}").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
    wait_for(lambda: not awoc_processes(state_dir), timeout=3)


@pytest.mark.parametrize(
    "parallel_config",
    [
        pytest.param({"warm_agents": 0}, id="without warm agents"),
        # its late prompt could only be text, which the CLI stops waiting for after 3 s
        pytest.param({"warm_agents": 2, "runner": {"output_format": "json"}}, id="a runner writing json"),
    ],
)
def test_nothing_starts_early(fake_claude: Path, parallel_config: dict[str, Any]) -> None:
    config = {
        "parallel_config": parallel_config,
        "tasks": [
            {"task_id": "a", "agent": "qa", "description": "x [[fake:sleep=0.5]]"},
            {"task_id": "b", "agent": "qa", "description": "y", "dependencies": ["a"]},
        ],
    }
    code, run_dir = run(config)
    assert code == 0
    assert not any(e["event"].startswith("task-warm") for e in events(run_dir))


def test_memory_short_stops_warm_processes_first(fake_claude: Path, state_dir: Path) -> None:
    # free memory drops (400 MB: above min_free_memory_mb 256, so no task is touched) once "after"
    # is warm: its warm process is stopped, and it starts cold when its dependency ends
    free = [10_000.0]

    def probe() -> float:
        found = list(state_dir.glob("runs/*/events.jsonl"))
        if found and b"task-warmed" in found[0].read_bytes():
            free[0] = 400.0
        return free[0]

    config = {
        "parallel_config": {"max_concurrent": 2, "warm_agents": 1, "retries": 0},
        "tasks": [
            {"task_id": "first", "agent": "qa", "description": "x [[fake:sleep=1.5]]"},
            {"task_id": "after", "agent": "qa", "description": "y", "dependencies": ["first"]},
        ],
    }
    code, run_dir = run(config, memory_probe=probe)
    assert code == 0
    seen = events(run_dir)
    discarded = [e for e in seen if e["event"] == "task-warm-discarded"]
    assert [(e["task_id"], e["why"]) for e in discarded] == [("after", "memory short")]
    assert not any(e["event"] == "task-warm-used" for e in seen)
    assert task_results(run_dir)["after"]["status"] == "succeeded"


def test_an_agent_command_is_warmed_only_when_it_says_it_reads_its_prompt_late(fake_claude: Path) -> None:
    def config(warm_start: bool) -> dict[str, Any]:
        return {
            "parallel_config": {"warm_agents": 1, "runner": {"command": ["cat"], "warm_start": warm_start}},
            "tasks": [
                {"task_id": "first", "agent": "qa", "description": "x", "command": ["sleep", "1.5"]},
                {"task_id": "after", "agent": "qa", "description": "echo me", "dependencies": ["first"]},
            ],
        }

    code, run_dir = run(config(True))
    assert code == 0
    assert [e["task_id"] for e in events(run_dir) if e["event"] == "task-warm-used"] == ["after"]
    assert "echo me" in task_results(run_dir)["after"]["result"]  # cat got the whole prompt, late
    code, run_dir = run(config(False))
    assert code == 0
    assert not any(e["event"].startswith("task-warm") for e in events(run_dir))


def test_the_real_cli_kept_warm_longer_than_its_stdin_wait_takes_its_prompt(
    claude_bin: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI gives up on a text stdin that stays empty for 3 s; a warm one waits for its
    prompt as a stream-json message, here for 4 s, and its task runs on it."""
    seen: list[str] = []

    def respond(body: dict[str, Any]) -> Reply:
        text = orjson.dumps(body.get("messages")).decode()
        seen.append(text)
        if "WARM-FIRST" in text:
            return Reply("RESULT-OF-first", {"input_tokens": 10, "output_tokens": 2}, delay=4.0)
        return Reply("done", {"input_tokens": 10, "output_tokens": 2})

    config = {
        "parallel_config": {"max_concurrent": 2, "warm_agents": 2, "retries": 0},
        "tasks": [
            {"task_id": "first", "agent": "architect", "description": "WARM-FIRST"},
            {"task_id": "after", "agent": "architect", "description": "WARM-AFTER", "dependencies": ["first"]},
        ],
    }
    with FakeMessagesAPI(respond) as api:
        use_fake_api(monkeypatch, api.url, claude_bin)
        code, run_dir = run(config)
    used = [e for e in events(run_dir) if e["event"] == "task-warm-used"]
    done = task_results(run_dir)
    assert code == 0, done
    assert [e["task_id"] for e in used] == ["after"] and used[0]["warm_s"] >= 3.5, used
    assert done["after"]["status"] == "succeeded" and done["after"]["result"] == "done"
    after = [text for text in seen if "WARM-AFTER" in text]
    assert after and "RESULT-OF-first" in after[0]  # the whole prompt reached it, its dependency's result too
    assert not awoc_processes(state_dir)
