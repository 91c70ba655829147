"""isolation "worktree": real git repositories, command tasks as the agents."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import script_task as task

from conftest import awoc_processes, git, start_orchestrator, task_results, wait_for


@pytest.fixture
def repo(isolated: Path) -> Path:
    """The test's working directory as a repository with one commit."""
    work = isolated / "work"
    git(work, "init", "-q", "-b", "main")
    (work / "shared.txt").write_text("one\ntwo\nthree\n")
    (work / "readme.txt").write_text("hello\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "start")
    return work


def worktree_config(*tasks: dict[str, Any], **settings: Any) -> str:
    config = {"parallel_config": {"isolation": "worktree", "max_concurrent": 5, **settings}, "tasks": list(tasks)}
    return orjson.dumps(config).decode()


def registered_worktrees(repo: Path) -> list[str]:
    return [
        line[9:] for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")
    ]


def results(state_dir: Path) -> dict[str, dict[str, Any]]:
    run_dir = next((state_dir / "runs").iterdir())
    return task_results(run_dir)


def run_id_of(state_dir: Path) -> str:
    return (state_dir / "current").read_text().strip()


def test_parallel_changes_their_overlap_and_the_merge_queue(cli, repo: Path, state_dir: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    # every task also notes what the user's checkout looks like while it runs
    look = (
        f'git -C "{repo}" status --porcelain > "$AWOC_TASK_DIR/seen"; cat "{repo}/shared.txt" >> "$AWOC_TASK_DIR/seen"'
    )
    config = worktree_config(
        task("a", f"{look}; echo a > a.txt"),
        task("b", f"{look}; echo b > b.txt; echo more >> readme.txt"),
        task("c", f"{look}; mkdir -p sub && echo c > sub/c.txt"),
        task("d", f"{look}; sed -i s/two/TWO-D/ shared.txt", priority="high"),
        task("e", f"{look}; sed -i s/two/TWO-E/ shared.txt"),
    )
    result = cli("delegate-parallel", "run", "-q", config)
    assert result.code == 0, result.stderr

    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "shared.txt").read_text() == "one\ntwo\nthree\n"
    for tid in "abcde":
        assert (state_dir / "runs" / run_id_of(state_dir) / "tasks" / tid / "seen").read_text() == "one\ntwo\nthree\n"
    assert registered_worktrees(repo) == [str(repo)]  # removed at the end; the branches stay

    done = results(state_dir)
    run_id = run_id_of(state_dir)
    for tid in "abcde":
        tree = done[tid]["worktree"]
        assert tree["branch"] == f"awoc/{run_id}/{tid}"
        assert tree["base"] == head and len(tree["commits"]) == 1
        assert git(repo, "rev-parse", tree["branch"]).strip() == tree["head"]
        assert run_id in git(repo, "log", "-1", "--format=%s", tree["head"])
    assert done["b"]["worktree"]["files_changed"] == [
        {"path": "b.txt", "added": 1, "removed": 0},
        {"path": "readme.txt", "added": 1, "removed": 0},
    ]
    assert done["d"]["worktree"]["files_changed"] == [{"path": "shared.txt", "added": 1, "removed": 1}]

    report = orjson.loads((state_dir / "runs" / run_id / "report.json").read_bytes())
    overlaps = report["worktrees"]["overlaps"]
    assert overlaps == [
        {"tasks": ["d", "e"], "files": ["shared.txt"], "conflict": True, "conflicting_files": ["shared.txt"]}
    ]
    markdown = (state_dir / "runs" / run_id / "report.md").read_text()
    assert "## Code changes (worktrees)" in markdown and "d and e: `shared.txt`: **conflict**" in markdown
    assert f"`delegate-parallel merge {run_id} --dry-run`" in markdown

    refs_before = git(repo, "for-each-ref")
    dry = cli("delegate-parallel", "merge", "--dry-run")
    assert dry.code == 1, dry.stderr
    steps = {s["task_id"]: s["outcome"] for s in dry.json()["steps"]}
    assert steps == {
        "d": "would merge",
        "a": "would merge",
        "b": "would merge",
        "c": "would merge",
        "e": "conflict",
    }
    assert "overlap: d and e changed shared.txt (conflict)" in dry.stderr
    assert git(repo, "for-each-ref") == refs_before and git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain") == ""

    merged = cli("delegate-parallel", "merge")
    assert merged.code == 1
    summary = merged.json()
    assert [s["task_id"] for s in summary["steps"]] == ["d", "a", "b", "c", "e"]  # high priority first
    assert summary["landed"] == ["d", "a", "b", "c"] and summary["set_aside"] == ["e"]
    assert summary["steps"][-1]["conflicting_files"] == ["shared.txt"]
    assert (repo / "a.txt").read_text() == "a\n" and (repo / "sub" / "c.txt").exists()
    assert git(repo, "status", "--porcelain") == ""  # the conflicting merge was undone, not left half-done
    assert "e: conflict" in merged.stderr and "set aside: e" in merged.stderr
    merge_json = orjson.loads((state_dir / "runs" / run_id / "merge.json").read_bytes())
    assert merge_json["merges"][-1]["set_aside"] == ["e"]
    assert "## Merge" in (state_dir / "runs" / run_id / "report.md").read_text()
    again = cli("delegate-parallel", "merge", "--dry-run")
    assert [s["outcome"] for s in again.json()["steps"]] == ["already merged"] * 4 + ["conflict"]


def test_a_dependent_sees_its_dependencies_and_conflicting_ones_skip_it(cli, repo: Path, state_dir: Path) -> None:
    config = worktree_config(
        task("make", "echo made > made.txt"),
        task("other", "echo other > other.txt"),
        task("use", "cat made.txt other.txt", dependencies=["make", "other"]),
        task("left", "sed -i s/one/LEFT/ shared.txt"),
        task("right", "sed -i s/one/RIGHT/ shared.txt"),
        task("both", "true", dependencies=["left", "right"]),
    )
    result = cli("delegate-parallel", "run", "-q", config)
    assert result.code == 1, result.stderr
    done = results(state_dir)
    assert done["use"]["status"] == "succeeded" and done["use"]["result"] == "made\nother"
    assert sorted(done["use"]["worktree"]["merged"]) == ["make", "other"]
    assert done["both"]["status"] == "skipped"
    assert "conflict in: shared.txt" in done["both"]["reason"]
    assert registered_worktrees(repo) == [str(repo)]


def test_the_merge_names_no_overlap_with_a_task_whose_changes_do_not_land(cli, repo: Path) -> None:
    config = worktree_config(
        task("good", "sed -i s/one/GOOD/ shared.txt"),
        task("broken", "sed -i s/two/BROKEN/ shared.txt; exit 1"),  # changed the same file, then failed
        retries=0,
    )
    assert cli("delegate-parallel", "run", "-q", config).code == 1
    merged = cli("delegate-parallel", "merge")
    assert merged.code == 0, merged.stderr
    assert merged.json()["landed"] == ["good"]
    assert "overlap" not in merged.stderr, merged.stderr
    assert (repo / "shared.txt").read_text() == "GOOD\ntwo\nthree\n"


def test_ignored_files_named_in_worktreeinclude_are_copied_and_uncommitted_work_is_not_seen(
    cli, repo: Path, state_dir: Path
) -> None:
    (repo / ".gitignore").write_text(".env\nbuild/\n")
    (repo / ".worktreeinclude").write_text(".env\n")
    git(repo, "add", ".gitignore", ".worktreeinclude")
    git(repo, "commit", "-qm", "ignore")
    (repo / ".env").write_text("SECRET=1\n")
    (repo / "build").mkdir()
    (repo / "build" / "big.o").write_text("x")
    (repo / "readme.txt").write_text("changed, not committed\n")
    result = cli(
        "delegate-parallel", "run", "-q", worktree_config(task("t", "cat .env readme.txt; ls build 2>&1 || true"))
    )
    assert result.code == 0, result.stderr
    out = results(state_dir)["t"]["result"]
    assert "SECRET=1" in out and "hello" in out and "changed" not in out and "big.o" not in out
    plan = orjson.loads((state_dir / "runs" / run_id_of(state_dir) / "plan.json").read_bytes())
    assert any("1 uncommitted change(s)" in w for w in plan["warnings"]) and plan["git"]["uncommitted"] == 1


def test_worktrees_are_gone_after_an_abort(cli, repo: Path) -> None:
    config = worktree_config(task("bad", "exit 1"), task("slow", "sleep 30"), failure_tolerance=0, retries=0)
    result = cli("delegate-parallel", "run", "-q", config)
    assert result.code == 3
    assert registered_worktrees(repo) == [str(repo)]


def _worktree_of(state_dir: Path, tid: str) -> Path:
    return state_dir / "runs" / run_id_of(state_dir) / "worktrees" / tid


def test_ctrl_c_commits_what_the_task_left_and_removes_its_worktree(repo: Path, state_dir: Path) -> None:
    config = orjson.loads(worktree_config(task("t", "echo partial > part.txt; sleep 30")))
    proc = start_orchestrator(config)
    try:
        wait_for(lambda: (state_dir / "current").exists() and (_worktree_of(state_dir, "t") / "part.txt").exists())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
        proc.wait()
    assert registered_worktrees(repo) == [str(repo)]
    branch = f"awoc/{run_id_of(state_dir)}/t"
    assert git(repo, "show", f"{branch}:part.txt") == "partial\n"


def test_sigkill_then_resume_and_a_second_run_leave_no_stale_worktree(
    cli, repo: Path, state_dir: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    script = f"if [ -f {started} ]; then echo second; else touch {started}; echo wip > wip.txt; sleep 30; fi"
    proc = start_orchestrator(orjson.loads(worktree_config(task("t", script))))
    try:
        wait_for(lambda: (state_dir / "current").exists() and (_worktree_of(state_dir, "t") / "wip.txt").exists())
    finally:
        proc.kill()
        proc.wait()
    assert len(registered_worktrees(repo)) == 2  # the dead run's worktree, with its uncommitted work
    resumed = cli("delegate-parallel", "resume", "-q")
    assert resumed.code == 0, resumed.stderr
    first_run = run_id_of(state_dir)
    assert results(state_dir)["t"]["result"] == "second"
    assert registered_worktrees(repo) == [str(repo)]
    # the killed attempt's work is kept beside the branch, which holds only the attempt that ended the task
    assert git(repo, "show", f"refs/awoc/{first_run}/t/attempt-1:wip.txt") == "wip\n"
    assert "wip.txt" not in git(repo, "ls-tree", "--name-only", f"awoc/{first_run}/t")
    assert not awoc_processes(state_dir)

    # a run killed and never resumed: the next run commits its leftovers on its branch and removes it
    proc = start_orchestrator(orjson.loads(worktree_config(task("k", "echo lost? > keep.txt; sleep 30"))))
    try:
        wait_for(lambda: run_id_of(state_dir) != first_run and (_worktree_of(state_dir, "k") / "keep.txt").exists())
    finally:
        proc.kill()
        proc.wait()
    dead_run = run_id_of(state_dir)
    for pid in awoc_processes(state_dir):
        os.kill(pid, signal.SIGKILL)
    third = cli("delegate-parallel", "run", "-q", worktree_config(task("z", "true")))
    assert third.code == 0, third.stderr
    assert registered_worktrees(repo) == [str(repo)]
    assert git(repo, "show", f"awoc/{dead_run}/k:keep.txt") == "lost?\n"


def test_a_worktree_holding_uncommitted_work_is_never_removed(cli, repo: Path, state_dir: Path) -> None:
    from awoc_scripts.execution.isolation.worktree import WorktreeIsolation
    from awoc_scripts.state.store import StateStore

    result = cli("delegate-parallel", "run", "-q", worktree_config(task("t", "echo x > x.txt"), keep_worktrees=True))
    assert result.code == 0, result.stderr
    path = _worktree_of(state_dir, "t")
    assert str(path) in registered_worktrees(repo)  # kept, as asked
    (path / "unsaved.txt").write_text("work in progress\n")
    run = StateStore().open_run()
    plan = run.read_plan()
    isolation = WorktreeIsolation(
        run, plan["git"], {t["task_id"]: t for t in plan["tasks"]}, lambda _: "succeeded", run.buffered_events(), False
    )
    notes = isolation.run_ended()
    assert notes == [f"kept {path}: it holds uncommitted work"]
    assert (path / "unsaved.txt").read_text() == "work in progress\n"
    (path / "unsaved.txt").unlink()
    assert isolation.run_ended() == [f"removed {path}"] and not path.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "is not inside a git repository"),
        ("empty", "has no commit yet"),
        ("awoc-branch", "a branch named 'awoc' exists"),
    ],
)
def test_bad_worktree_setups_exit_2_and_write_nothing(
    cli, isolated: Path, state_dir: Path, setup: str, message: str
) -> None:
    work = isolated / "work"
    if setup != "none":
        git(work, "init", "-q")
    if setup == "awoc-branch":
        (work / "f").write_text("f")
        git(work, "add", "f")
        git(work, "commit", "-qm", "f")
        git(work, "branch", "awoc")
    result = cli("delegate-parallel", "run", "-q", worktree_config(task("t", "true")))
    assert result.code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not state_dir.exists()


def test_isolation_inline_flag_and_task_default(cli, repo: Path) -> None:
    result = cli("parallel-task-parser", "validate", "workforce:one", "--isolation=worktree", "--keep-worktrees")
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["tasks"][0]["isolation"] == "worktree" and plan["parallel_config"]["keep_worktrees"] is True
    assert plan["git"]["head"] == git(repo, "rev-parse", "HEAD").strip()
    bad = cli("parallel-task-parser", "validate", "workforce:one", "--isolation=container")
    assert bad.code == 2 and "--isolation" in bad.stderr


def test_agent_tasks_run_claude_in_their_worktree(cli, repo: Path, state_dir: Path, fake_claude: Path) -> None:
    from conftest import claude_calls

    config = orjson.dumps(
        {"parallel_config": {"isolation": "worktree"}, "tasks": [{"agent": "workforce", "description": "Fix it"}]}
    ).decode()
    result = cli("delegate-parallel", "run", "-q", config)
    assert result.code == 0, result.stderr
    calls = claude_calls(fake_claude)
    tree = results(state_dir)["workforce-1"]["worktree"]
    assert [c["cwd"] for c in calls] == [tree["path"]]
    assert tree["session_id"] and len(tree["session_id"]) == 36


def test_a_retry_starts_from_the_base_and_the_failed_attempts_work_is_kept(
    cli, repo: Path, state_dir: Path, tmp_path: Path
) -> None:
    """A failed attempt's commits and leftovers would otherwise be on the branch of a task that
    "succeeded", and a script that is not idempotent would meet its own half-done work."""
    tried = tmp_path / "tried"
    first = (
        f"touch {tried}; echo half > half.txt; git add half.txt; "
        "git -c user.name=a -c user.email=a@a commit -qm half; echo edited >> shared.txt; exit 1"
    )
    script = f"if [ -f {tried} ]; then test ! -e half.txt && echo done > done.txt; else {first}; fi"
    result = cli("delegate-parallel", "run", "-q", worktree_config(task("t", script), retries=1))
    assert result.code == 0, result.stdout + result.stderr
    run_id = run_id_of(state_dir)
    tree = results(state_dir)["t"]["worktree"]
    assert [f["path"] for f in tree["files_changed"]] == ["done.txt"] and len(tree["commits"]) == 1
    (earlier,) = tree["earlier_attempts"]
    assert earlier["ref"] == f"refs/awoc/{run_id}/t/attempt-1"
    assert git(repo, "show", f"{earlier['ref']}:half.txt") == "half\n"
    assert git(repo, "show", f"{earlier['ref']}:shared.txt").endswith("edited\n")  # its uncommitted edit too
    report = (state_dir / "runs" / run_id / "report.md").read_text()
    assert f"`{earlier['ref']}`" in report


def test_setting_aside_never_overwrites_an_attempt_ref_the_record_missed(
    cli, repo: Path, state_dir: Path, tmp_path: Path
) -> None:
    """An orchestrator killed between making attempt-1 and recording it leaves a ref the record does not
    name: the next attempt set aside goes to attempt-2, and attempt-1 keeps what it held."""
    tried = tmp_path / "tried"
    first = f'touch {tried}; git update-ref "refs/awoc/$AWOC_RUN_ID/t/attempt-1" HEAD; echo half > half.txt; exit 1'
    script = f"if [ -f {tried} ]; then echo done > done.txt; else {first}; fi"
    result = cli("delegate-parallel", "run", "-q", worktree_config(task("t", script), retries=1))
    assert result.code == 0, result.stdout + result.stderr
    run_id = run_id_of(state_dir)
    (earlier,) = results(state_dir)["t"]["worktree"]["earlier_attempts"]
    assert earlier["ref"] == f"refs/awoc/{run_id}/t/attempt-2"
    assert git(repo, "show", f"{earlier['ref']}:half.txt") == "half\n"
    assert git(repo, "rev-parse", f"refs/awoc/{run_id}/t/attempt-1") == git(repo, "rev-parse", "main")
