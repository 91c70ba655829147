"""for_each: one task over many files, list items or lines; a reduce step after all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from awoc_scripts.state.store import StateStore

from conftest import task_results


def echo_task(task_id: str, for_each: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    task = {
        "task_id": task_id,
        "agent": "workforce",
        "description": "Handle {item} ({index})",
        "command": ["sh", "-c", 'echo "{index}:{item}" > "$AWOC_TASK_DIR/seen"; echo "{item}"'],
        **more,
    }
    if for_each is not None:
        task["for_each"] = for_each
    return task


def run(cli, *tasks: dict[str, Any]) -> Any:
    return cli("delegate-parallel", "run", "-q", orjson.dumps({"tasks": list(tasks)}).decode())


def test_a_glob_a_list_and_a_files_lines_each_become_tasks_and_a_reduce_waits_for_all(
    cli, isolated: Path, state_dir: Path
) -> None:
    work = isolated / "work"
    for name in ("src/a.py", "src/pkg/b.py", "src/pkg/deep/c.py", "src/notes.txt"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("x\n")
    (work / "src" / "dir.py").mkdir()  # a folder is no file
    (work / "names.txt").write_text("alpha\n\n  beta  \n")
    reduce = {
        "task_id": "sum",
        "agent": "workforce",
        "description": "sum up",
        "command": ["sh", "-c", "echo reduced"],
        "dependencies": ["py", "words", "lines"],
    }
    done = run(
        cli,
        echo_task("py", {"glob": "src/**/*.py"}),
        echo_task("words", {"items": ["one", "two"]}, priority="high"),
        echo_task("lines", {"lines": "names.txt"}),
        reduce,
    )
    assert done.code == 0, done.stderr
    run_dir = StateStore().open_run().dir
    results = task_results(run_dir)
    expected = {
        "py-1": "src/a.py",
        "py-2": "src/pkg/b.py",
        "py-3": "src/pkg/deep/c.py",
        "words-1": "one",
        "words-2": "two",
        "lines-1": "alpha",
        "lines-2": "beta",
    }
    for tid, item in expected.items():
        assert results[tid]["status"] == "succeeded" and results[tid]["result"] == item, tid
        assert results[tid]["task"] == f"Handle {item} ({tid.rsplit('-', 1)[1]})"
        assert (run_dir / "tasks" / tid / "seen").read_text() == f"{tid.rsplit('-', 1)[1]}:{item}\n"
    assert "py" not in results and results["sum"]["dependencies"] == [*expected]
    assert results["words-1"]["priority"] == "high"
    plan = orjson.loads((run_dir / "plan.json").read_bytes())
    assert plan["fan_out"][0] == {"template": "py", "count": 3, "first_items": list(expected.values())[:3]}


def test_inline_for_each_applies_to_the_next_task(cli, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWOC_AGENT_COMMAND", "cat")
    for name in ("a.md", "b.md"):
        (isolated / "work" / name).write_text("x\n")
    done = cli("delegate-parallel", "run", "-q", "--for-each=*.md", "workforce:Review {item}", "architect:Once")
    assert done.code == 0, done.stderr
    results = task_results(StateStore().open_run().dir)
    assert sorted(results) == ["architect-1", "workforce-1-1", "workforce-1-2"]
    assert "Review b.md" in results["workforce-1-2"]["result"]


def test_validate_and_the_prepare_summary_show_each_fan_out(cli, isolated: Path) -> None:
    config = orjson.dumps({"tasks": [echo_task("w", {"items": [f"i{n}" for n in range(8)]})]}).decode()
    validated = cli("parallel-task-parser", "validate", config)
    assert validated.code == 0 and "fan-out: w is 8 task(s): i0, i1, i2, i3, i4, ..." in validated.stderr
    prepared = cli("delegate-parallel", "prepare", "--for-claude", config)
    assert "Fan-out: w is 8 task(s), one per item: i0, i1, i2, i3, i4, ..." in prepared.stdout


@pytest.mark.parametrize(
    ("for_each", "message"),
    [
        ({"glob": "nothing/**/*.zz"}, "gives no item: a fan-out over nothing"),
        ({"items": []}, "gives no item: a fan-out over nothing"),
        ({"lines": "missing.txt"}, "for_each.lines: cannot read"),
        ({"items": ["a"], "glob": "*"}, "expected exactly one of items, glob or lines"),
        ({}, "expected exactly one of items, glob or lines, got none"),
        ({"items": ["x"] * 100_001}, "more than 100,000"),
        ({"each": "x"}, "unknown key 'each'"),
    ],
)
def test_a_bad_fan_out_is_exit_2_and_writes_nothing(cli, state_dir: Path, for_each: Any, message: str) -> None:
    result = cli("delegate-parallel", "run", "-q", orjson.dumps({"tasks": [echo_task("t", for_each)]}).decode())
    assert result.code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2 and not state_dir.exists()


def test_a_bad_fan_out_in_a_file_names_the_file_first(cli, state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tasks.json"
    config.write_bytes(orjson.dumps({"tasks": [echo_task("t", {"items": []})]}))
    result = cli("delegate-parallel", "run", "-q", str(config))
    assert result.code == 2 and result.stderr.startswith(f"error: {config}: tasks[0].for_each: "), result.stderr
    config.write_bytes(orjson.dumps({"tasks": [echo_task("t", {"items": ["a", "b"]}), echo_task("t-2")]}))
    result = cli("delegate-parallel", "run", "-q", str(config))
    assert result.code == 2 and result.stderr.startswith(f"error: {config}: tasks[1]: task id 't-2'"), result.stderr
    assert not state_dir.exists()


def test_an_expansion_id_that_clashes_is_exit_2(cli, state_dir: Path) -> None:
    tasks = [echo_task("t", {"items": ["a", "b"]}), echo_task("t-2")]
    result = cli("delegate-parallel", "run", "-q", orjson.dumps({"tasks": tasks}).decode())
    assert result.code == 2 and "task id 't-2'" in result.stderr, result.stderr
    assert not state_dir.exists()
