"""The result cache: finished work is never paid for twice, and never reused when anything that
decides it changed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.state.store import StateStore

from conftest import task_results

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def counting(task_id: str, counts: Path, script: str = "true", **more: Any) -> dict[str, Any]:
    """A command task that notes each time it really runs."""
    return {
        "task_id": task_id,
        "agent": "workforce",
        "description": f"task {task_id}",
        "command": ["sh", "-c", f'echo x >> "{counts}/{task_id}"; {script}'],
        **more,
    }


def run(cli, tasks: list[dict[str, Any]], **settings: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    config = {"parallel_config": {"cache": True, "failure_tolerance": 5, "retries": 0, **settings}, "tasks": tasks}
    done = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    return done, task_results(StateStore().open_run().dir)


def runs_of(counts: Path, task_id: str) -> int:
    path = counts / task_id
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def counts(tmp_path: Path) -> Path:
    path = tmp_path / "counts"
    path.mkdir()
    return path


def test_a_rerun_starts_nothing_and_every_task_is_reused(cli, counts: Path) -> None:
    tasks = [
        counting("a", counts, "echo A"),
        counting("b", counts, "echo B", dependencies=["a"]),
        counting("c", counts),
    ]
    first, _ = run(cli, tasks)
    assert first.code == 0, first.stderr
    first_run = StateStore().open_run().run_id
    second, results = run(cli, tasks)
    assert second.code == 0 and second.json()["status"] == "succeeded", second.stderr
    assert [runs_of(counts, t) for t in "abc"] == [1, 1, 1]
    for tid in "abc":
        assert results[tid]["status"] == "succeeded" and results[tid]["cached"] is True
        assert results[tid]["cached_from"] == first_run
    assert results["a"]["result"] == "A"
    run_dir = StateStore().open_run().dir
    assert not (run_dir / "events.jsonl").read_text().count('"task-start"')
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["resource_usage"]["reused_tasks"] == 3
    markdown = (run_dir / "report.md").read_text()
    assert "Reused from earlier runs | 3 task(s)" in markdown
    # nothing ran, so nothing was saved by running in parallel, and the report says why
    assert "Time saved | n/a (every task that succeeded was reused from an earlier run) |" in markdown


def test_a_changed_description_reruns_that_task_alone(cli, counts: Path) -> None:
    tasks = [counting("a", counts), counting("b", counts)]
    run(cli, tasks)
    tasks[1]["description"] = "task b, said better"
    _, results = run(cli, tasks)
    assert [runs_of(counts, t) for t in "ab"] == [1, 2]
    assert results["a"].get("cached") and not results["b"].get("cached")


def test_a_changed_file_committed_or_not_reruns_what_sees_it_and_its_dependents(
    cli, counts: Path, isolated: Path
) -> None:
    work = isolated / "work"
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        (work / "data.txt").write_text("one\n") if args == ["init", "-q"] else None
        subprocess.run(["git", *args], cwd=work, check=True)
    tasks = [counting("reader", counts, "cat data.txt"), counting("after", counts, "true", dependencies=["reader"])]
    run(cli, tasks)
    (work / "data.txt").write_text("two\n")  # not committed
    _, results = run(cli, tasks)
    assert [runs_of(counts, t) for t in ("reader", "after")] == [2, 2] and results["reader"]["result"] == "two"
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two"], cwd=work, check=True)
    _, results = run(cli, tasks)  # the same files, committed now: nothing to do again
    misses = [e for e in StateStore().open_run().read_events(only=("task-cache-miss",))]
    assert [runs_of(counts, t) for t in ("reader", "after")] == [2, 2] and results["after"]["cached"], misses
    (work / "new.txt").write_text("untracked\n")
    run(cli, tasks)
    assert runs_of(counts, "reader") == 3


RESULT_LINE = orjson.dumps(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "agent answer",
        "total_cost_usd": 0.0125,
        "usage": {"input_tokens": 300, "output_tokens": 40},
    }
).decode()
AGENT = (
    '#!/bin/sh\ncat > /dev/null\necho x >> "{counts}/agent"\necho \''
    + RESULT_LINE.replace("{", "{{").replace("}", "}}")
    + "'\n"
)


def agent_task(**more: Any) -> dict[str, Any]:
    return {"task_id": "t", "agent": "workforce", "description": "Think about it.", **more}


def _new_agent_file(work: Path) -> None:
    (work / ".claude" / "agents").mkdir(parents=True)
    (work / ".claude" / "agents" / "workforce.md").write_text("---\nname: workforce\ndescription: d\n---\nNew role.\n")


# each changes one thing that decides the task's result: (task, work dir, agent program, monkeypatch)
INGREDIENTS: dict[str, Callable[[dict[str, Any], Path, Path, pytest.MonkeyPatch], object]] = {
    "description": lambda task, work, agent, mp: task.update(description="Think harder."),
    "context": lambda task, work, agent, mp: task.update(context="Some context."),
    "model": lambda task, work, agent, mp: task.update(model="opus"),
    "tools": lambda task, work, agent, mp: task.update(tools=["Read"]),
    "permissions": lambda task, work, agent, mp: task.update(allowed_tools=["Bash(make:*)"]),
    "token budget": lambda task, work, agent, mp: task.update(token_budget=1234),
    "verify": lambda task, work, agent, mp: task.update(verify=["true"]),
    "agent definition": lambda task, work, agent, mp: _new_agent_file(work),
    "runner": lambda task, work, agent, mp: mp.setenv("AWOC_AGENT_COMMAND", f"{agent} --another-runner"),
    "files": lambda task, work, agent, mp: (work / "input.txt").write_text("changed\n"),
}


@pytest.mark.parametrize("ingredient", sorted(INGREDIENTS))
def test_each_ingredient_of_the_key_alone_reruns_the_task(
    cli, counts: Path, isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ingredient: str
) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text(AGENT.format(counts=counts))
    agent.chmod(0o755)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", str(agent))
    work = isolated / "work"
    (work / "input.txt").write_text("original\n")
    run(cli, [agent_task()])
    _, results = run(cli, [agent_task()])
    assert runs_of(counts, "agent") == 1 and results["t"]["cached"]
    task = agent_task()
    INGREDIENTS[ingredient](task, work, agent, monkeypatch)
    done, results = run(cli, [task])
    assert done.code == 0, done.stderr
    assert runs_of(counts, "agent") == 2 and not results["t"].get("cached"), ingredient


def test_a_reused_agent_task_counts_its_tokens_and_cost_as_saved(
    cli, counts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text(AGENT.format(counts=counts))
    agent.chmod(0o755)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", str(agent))
    run(cli, [agent_task()])
    _, results = run(cli, [agent_task()])
    assert results["t"]["saved"] == {"tokens": 340, "cost_usd": 0.0125}
    assert results["t"]["tokens_used"]["total"] == 0 and results["t"]["cost_usd"] == 0
    usage = orjson.loads((StateStore().open_run().dir / "report.json").read_bytes())["resource_usage"]
    assert (usage["total_tokens"], usage["cost_usd"]) == (0, 0)
    assert (usage["reused_tasks"], usage["tokens_saved"], usage["cost_saved_usd"]) == (1, 340, 0.0125)


def test_a_task_with_cache_false_always_runs_and_a_run_without_cache_reuses_nothing(cli, counts: Path) -> None:
    tasks = [counting("a", counts), counting("never", counts, cache=False)]
    run(cli, tasks)
    run(cli, tasks)
    assert [runs_of(counts, t) for t in ("a", "never")] == [1, 2]
    run(cli, tasks, cache=False)
    assert runs_of(counts, "a") == 2


def test_a_damaged_entry_costs_only_itself(cli, counts: Path, state_dir: Path) -> None:
    tasks = [counting("a", counts), counting("b", counts)]
    run(cli, tasks)
    entries = sorted((state_dir / "cache").glob("??/*.json"))
    assert len(entries) == 2
    damaged = next(p for p in entries if '"task_id":"a"' in p.read_text().replace(" ", "").replace("\n", ""))
    damaged.write_text("{not json")
    done, _ = run(cli, tasks)
    assert done.code == 0 and [runs_of(counts, t) for t in "ab"] == [2, 1]


def test_a_reused_worktree_task_has_its_branch_at_the_same_head(cli, counts: Path, isolated: Path) -> None:
    work = isolated / "work"
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
        cwd=work,
        check=True,
    )
    tasks = [counting("w", counts, "echo made > made.txt", isolation="worktree")]
    _, first = run(cli, tasks)
    _, second = run(cli, tasks)
    assert runs_of(counts, "w") == 1 and second["w"]["cached"]
    old, new = first["w"]["worktree"], second["w"]["worktree"]
    assert new["branch"] != old["branch"] and new["head"] == old["head"]
    branch_head = subprocess.run(["git", "rev-parse", new["branch"]], cwd=work, capture_output=True, text=True)
    assert branch_head.stdout.strip() == old["head"]
    assert cli("delegate-parallel", "merge").code == 0 and (work / "made.txt").read_text() == "made\n"


def test_inline_cache_flag(cli, counts: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text(AGENT.format(counts=counts))
    agent.chmod(0o755)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", str(agent))
    for _ in range(2):
        assert cli("delegate-parallel", "run", "-q", "--cache", "architect:Look at it").code == 0
    assert runs_of(counts, "agent") == 1


def test_an_entry_of_the_wrong_shape_costs_only_itself(cli, counts: Path, state_dir: Path) -> None:
    tasks = [counting("a", counts), counting("b", counts)]
    run(cli, tasks)
    for path in (state_dir / "cache").glob("??/*.json"):
        entry = orjson.loads(path.read_bytes())
        if entry["result"]["task_id"] == "a":
            entry["result"]["tokens_used"] = "many"
            path.write_bytes(orjson.dumps(entry))
    done, results = run(cli, tasks)
    assert done.code == 0, done.stderr
    assert [runs_of(counts, t) for t in "ab"] == [2, 1] and results["b"]["cached"]
