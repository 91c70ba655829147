"""`delegate-parallel merge` in real git repositories: every good change lands, each one left out
is named with its reason, the checkout is never left half-merged; and git state a task changes
(its own HEAD, a sibling's branch, the user's checkout) never loses or fakes work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import script_task as task

from awoc_scripts.processes import marked_processes

from conftest import git, task_results, use_fake_api, wait_for

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

GATE = "test ! -e BROKEN"
MERGE = [sys.executable, "-c", "from awoc_scripts.cli.delegate_parallel import main; main()", "merge"]


@pytest.fixture
def repo(isolated: Path) -> Path:
    work = isolated / "work"
    git(work, "init", "-q", "-b", "main")
    (work / "shared.txt").write_text("one\ntwo\nthree\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "start")
    return work


def run_tasks(cli, *tasks: dict[str, Any], **settings: Any) -> Any:
    parallel = {"isolation": "worktree", "max_concurrent": 4, "failure_tolerance": 5, "retries": 0, **settings}
    result = cli(
        "delegate-parallel", "run", "-q", orjson.dumps({"parallel_config": parallel, "tasks": list(tasks)}).decode()
    )
    return result


def run_dir(state_dir: Path) -> Path:
    return state_dir / "runs" / (state_dir / "current").read_text().strip()


FIVE_KINDS = [
    task("first", "echo first > first.txt", priority="critical"),
    task("clean", "echo clean > clean.txt"),
    task("c1", "sed -i s/two/C1/ shared.txt", priority="high"),
    task("c2", "sed -i s/two/C2/ shared.txt"),
    task("breaks", "touch BROKEN; echo x > breaks.txt"),
    task("after-first", "echo d > after.txt", dependencies=["first"]),
    task("after-c2", "echo e > after-c2.txt", dependencies=["c2"]),
]


def test_every_good_branch_lands_and_each_other_is_named_with_its_reason(cli, repo: Path, state_dir: Path) -> None:
    assert run_tasks(cli, *FIVE_KINDS).code == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    refs = git(repo, "for-each-ref")

    dry = cli("delegate-parallel", "merge", "--dry-run", "--gate", GATE)
    assert dry.code == 1, dry.stderr
    assert git(repo, "rev-parse", "HEAD").strip() == head and git(repo, "for-each-ref") == refs
    assert git(repo, "status", "--porcelain") == "" and not (run_dir(state_dir) / "merge.json").exists()

    merged = cli("delegate-parallel", "merge", "--gate", GATE)
    assert merged.code == 1, merged.stderr
    summary = merged.json()
    outcomes = {s["task_id"]: s["outcome"] for s in summary["steps"]}
    assert outcomes == {
        "first": "merged",
        "c1": "merged",
        "clean": "merged",
        "c2": "conflict",
        "breaks": "gate failed",
        "after-first": "merged",
        "after-c2": "dependency set aside",
    }
    assert {s["task_id"]: s["outcome"].replace("would merge", "merged") for s in dry.json()["steps"]} == outcomes
    steps = {s["task_id"]: s for s in summary["steps"]}
    assert steps["c2"]["conflicting_files"] == ["shared.txt"]
    assert "after-c2" in summary["set_aside"] and "c2" in steps["after-c2"]["why"]
    # the checkout ends where the gate passes, with exactly the good changes, and nothing half-done
    assert git(repo, "status", "--porcelain") == "" and not (repo / "BROKEN").exists()
    for name in ("first.txt", "clean.txt", "after.txt"):
        assert (repo / name).exists(), name
    assert (repo / "shared.txt").read_text() == "one\nC1\nthree\n" and not (repo / "after-c2.txt").exists()
    assert "c2: conflict (" in merged.stderr and "breaks: gate failed" in merged.stderr
    markdown = (run_dir(state_dir) / "report.md").read_text()
    assert "## Merge" in markdown and "- breaks: **gate failed**" in markdown

    again = cli("delegate-parallel", "merge", "--gate", GATE)
    assert again.code == 1
    assert [s["outcome"] for s in again.json()["steps"]].count("already merged") == 4


def test_a_task_that_changed_nothing_is_named_so_not_merged(cli, repo: Path, state_dir: Path) -> None:
    assert run_tasks(cli, task("idle", "true"), task("busy", "echo b > b.txt")).code == 0
    merged = cli("delegate-parallel", "merge")
    assert merged.code == 0, merged.stderr
    assert {s["task_id"]: s["outcome"] for s in merged.json()["steps"]} == {"idle": "no changes", "busy": "merged"}
    assert merged.json()["landed"] == ["busy"] and merged.json()["set_aside"] == []
    assert "idle: no changes" in merged.stderr


def merging_in_a_slow_gate(cli, repo: Path, isolated: Path) -> tuple[str, subprocess.Popen[bytes], int]:
    """A run with one branch, and a merge of it waiting in its gate: the head before, the merge, the gate's group."""
    assert run_tasks(cli, task("a", "echo a > a.txt")).code == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    marker = isolated / "gate-started"
    merge = subprocess.Popen(
        [*MERGE, "--gate", f"echo $$ > {marker}.tmp && mv {marker}.tmp {marker}; sleep 30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(marker.exists)
    return head, merge, int(marker.read_text())


def group_gone(pgid: int) -> bool:
    """No process of group PGID runs any more (a zombie does not run)."""
    from awoc_scripts.process_stat import stat_fields

    fields = [stat_fields(int(name)) for name in os.listdir("/proc") if name.isdigit()]
    return not any(f is not None and f[0] != b"Z" and int(f[2]) == pgid for f in fields)


def test_a_merge_killed_in_its_gate_leaves_a_clean_checkout_and_the_next_one_finishes(
    cli, repo: Path, state_dir: Path, isolated: Path
) -> None:
    head, merge, gate_group = merging_in_a_slow_gate(cli, repo, isolated)
    merge.send_signal(signal.SIGKILL)
    merge.wait(timeout=10)
    # the gate, in a session of its own, ends with the merge all the same: its watchdog kills it
    wait_for(lambda: group_gone(gate_group), timeout=5)
    assert git(repo, "status", "--porcelain") == ""  # a whole merge commit at most, never a half-merge
    # the next merge undoes the step that was never gated, then merges it again with its own gate
    again = cli("delegate-parallel", "merge", "--gate", "true")
    assert again.code == 0, again.stderr
    assert git(repo, "rev-list", "--count", f"{head}..HEAD").strip() == "2"  # one merge commit and a's commit
    assert (repo / "a.txt").exists() and git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_or_a_termination_during_the_gate_puts_the_checkout_back(
    cli, repo: Path, state_dir: Path, isolated: Path, signum: int
) -> None:
    head, merge, _ = merging_in_a_slow_gate(cli, repo, isolated)
    merge.send_signal(signum)
    assert merge.wait(timeout=20) == 130
    assert git(repo, "rev-parse", "HEAD").strip() == head and git(repo, "status", "--porcelain") == ""


def test_a_merge_killed_in_its_gate_never_keeps_its_ungated_commit_past_an_edit(
    cli, repo: Path, state_dir: Path, isolated: Path
) -> None:
    """Killed in the gate after its merge commit, the merge left that commit ungated; an edit made
    since blocks the repair, which still comes once the edit is put aside, and the gate decides."""
    assert run_tasks(cli, task("a", "echo a > a.txt")).code == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    checked, waiting = isolated / "checked-before", isolated / "gate-waits"
    # the gate passes before anything is merged, and waits after the merge
    wait_after = f"echo $$ > {waiting}.tmp && mv {waiting}.tmp {waiting}; sleep 30"
    gate = f"if [ -e {checked} ]; then {wait_after}; fi; touch {checked}"
    merge = subprocess.Popen([*MERGE, "--gate", gate], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(waiting.exists)
    assert git(repo, "rev-parse", "HEAD").strip() != head  # its merge commit, not gated yet
    merge.send_signal(signal.SIGKILL)
    merge.wait(timeout=10)
    wait_for(lambda: group_gone(int(waiting.read_text())), timeout=5)
    (repo / "shared.txt").write_text("one\nmine\nthree\n")
    refused = cli("delegate-parallel", "merge", "--gate", "false")
    assert refused.code == 2 and "uncommitted changes" in refused.stderr
    git(repo, "stash")
    again = cli("delegate-parallel", "merge", "--gate", "test ! -e a.txt")
    assert again.code == 1, again.stderr  # put back, merged again, and this time its gate fails
    assert git(repo, "rev-parse", "HEAD").strip() == head and git(repo, "status", "--porcelain") == ""


def merging_inside_git(cli, repo: Path, isolated: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A merge stopped inside `git merge` itself: the merge written to the checkout, staged, not
    committed yet (git's pre-merge-commit hook waits, the first time), git's locks taken. The head
    before, the merge."""
    assert run_tasks(cli, task("a", "echo a > a.txt; sed -i s/two/A/ shared.txt")).code == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    inside = isolated / "inside-git"
    hook = repo / ".git" / "hooks" / "pre-merge-commit"
    # and the locks git holds when it is killed further on (HEAD's, its branch's, the index's)
    locks = "touch .git/HEAD.lock .git/refs/heads/main.lock .git/index.lock"
    hook.write_text(f"#!/bin/sh\n[ -e {inside} ] && exit 0\n{locks}\ntouch {inside}\nexec sleep 30\n")
    hook.chmod(0o755)
    merge = subprocess.Popen(MERGE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(inside.exists)
    assert git(repo, "status", "--porcelain", "--untracked-files=no") != ""  # half-merged right now
    return head, merge


def test_a_merge_killed_inside_git_is_undone_by_the_next_one(cli, repo: Path, state_dir: Path, isolated: Path) -> None:
    head, merge = merging_inside_git(cli, repo, isolated)
    merge.send_signal(signal.SIGKILL)
    merge.wait(timeout=10)
    run_id = (state_dir / "current").read_text().strip()
    # its git and the hook carry the merge's marker: its watchdog ends them, so nothing writes the
    # checkout while the next merge puts it back
    wait_for(lambda: not marked_processes(run_id), timeout=5)
    again = cli("delegate-parallel", "merge")
    assert again.code == 0, again.stderr
    assert git(repo, "rev-list", "--count", f"{head}..HEAD").strip() == "2"
    assert (repo / "shared.txt").read_text() == "one\nA\nthree\n" and git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_inside_git_puts_the_checkout_back(
    cli, repo: Path, state_dir: Path, isolated: Path, signum: int
) -> None:
    head, merge = merging_inside_git(cli, repo, isolated)
    merge.send_signal(signum)
    assert merge.wait(timeout=20) == 130
    assert git(repo, "rev-parse", "HEAD").strip() == head and git(repo, "status", "--porcelain") == ""
    assert not marked_processes((state_dir / "current").read_text().strip())  # the hook did not outlive it


def test_what_else_changed_after_a_killed_merge_is_never_thrown_away(
    cli, repo: Path, state_dir: Path, isolated: Path
) -> None:
    _head, merge = merging_inside_git(cli, repo, isolated)
    merge.send_signal(signal.SIGKILL)
    merge.wait(timeout=10)
    wait_for(lambda: not marked_processes((state_dir / "current").read_text().strip()), timeout=5)
    (repo / "shared.txt").write_text("one\nmine\nthree\n")  # someone's own edit, meanwhile
    again = cli("delegate-parallel", "merge")
    assert again.code == 2 and "uncommitted changes" in again.stderr
    assert (repo / "shared.txt").read_text() == "one\nmine\nthree\n"
    # nothing of the killed git stands in the way of a commit (awoc's own claim file aside)
    assert [lock.name for lock in (repo / ".git").rglob("*.lock")] == ["awoc-merge.lock"]
    # once the edit is put aside, the next merge puts the killed step back and lands it
    git(repo, "stash")
    landed = cli("delegate-parallel", "merge")
    assert landed.code == 0, landed.stderr
    assert (repo / "shared.txt").read_text() == "one\nA\nthree\n" and git(repo, "status", "--porcelain") == ""
    assert git(repo, "stash", "list").count("stash@") == 1  # the edit, kept


def test_an_untracked_file_in_the_way_is_named_with_advice_that_works(cli, repo: Path, state_dir: Path) -> None:
    assert run_tasks(cli, task("adds", "echo from-task > new.txt")).code == 0
    (repo / "new.txt").write_text("mine\n")
    merged = cli("delegate-parallel", "merge")
    assert merged.code == 1, merged.stderr
    (step,) = merged.json()["steps"]
    assert step["outcome"] == "blocked" and step["blocking_files"] == ["new.txt"]
    assert "move or delete them" in step["to_fix"] and "git merge --abort" not in merged.stderr
    assert (repo / "new.txt").read_text() == "mine\n" and git(repo, "status", "--porcelain") == "?? new.txt\n"
    (repo / "new.txt").unlink()
    assert cli("delegate-parallel", "merge").code == 0 and (repo / "new.txt").read_text() == "from-task\n"


# -- git state a task changes -------------------------------------------------------------------------


def test_a_task_that_detaches_head_or_switches_branch_keeps_its_commits(cli, repo: Path, state_dir: Path) -> None:
    commit = "git add -A && git -c user.name=t -c user.email=t@t commit -qm"
    tasks = [
        task("detached", f"git checkout -q --detach && echo d > d.txt && {commit} d"),
        task("switched", f"git checkout -q -b elsewhere && echo s > s.txt && {commit} s"),
    ]
    assert run_tasks(cli, *tasks).code == 0
    done = task_results(run_dir(state_dir))
    for tid, name in (("detached", "d.txt"), ("switched", "s.txt")):
        tree = done[tid]["worktree"]
        assert len(tree["commits"]) == 1 and tree["files_changed"][0]["path"] == name, tree
        assert git(repo, "show", f"{tree['branch']}:{name}").strip() == name[0]
        assert any("moved its worktree" in note for note in tree["notes"]), tree["notes"]
    assert cli("delegate-parallel", "merge").code == 0
    assert (repo / "d.txt").exists() and (repo / "s.txt").exists()


def test_merge_takes_the_recorded_head_when_a_sibling_deletes_or_resets_a_branch(
    cli, repo: Path, state_dir: Path
) -> None:
    assert run_tasks(cli, task("victim", "echo v > v.txt"), task("other", "echo o > o.txt")).code == 0
    done = task_results(run_dir(state_dir))
    git(repo, "update-ref", "-d", f"refs/heads/{done['victim']['worktree']['branch']}")  # deleted by a sibling
    git(repo, "branch", "-f", done["other"]["worktree"]["branch"], done["other"]["worktree"]["base"])  # reset
    merged = cli("delegate-parallel", "merge")
    assert merged.code == 0, merged.stderr
    steps = {s["task_id"]: s for s in merged.json()["steps"]}
    assert steps["victim"]["outcome"] == "merged" and "is gone" in steps["victim"]["note"]
    assert steps["other"]["outcome"] == "merged" and "moved" in steps["other"]["note"]
    assert (repo / "v.txt").exists() and (repo / "o.txt").exists()


def test_a_task_that_switches_the_users_checkout_is_named_and_merge_will_not_follow_it(
    cli, repo: Path, state_dir: Path
) -> None:
    assert run_tasks(cli, task("hijack", f'git -C "{repo}" checkout -q -b hijacked; echo h > h.txt')).code == 0
    (result,) = task_results(run_dir(state_dir)).values()
    notes = result["worktree"]["notes"]
    assert any("its branch went from refs/heads/main to refs/heads/hijacked" in n for n in notes), notes
    markdown = (run_dir(state_dir) / "report.md").read_text()
    assert "## Warnings" in markdown and "- hijack: the checkout" in markdown
    refused = cli("delegate-parallel", "merge")
    assert refused.code == 2 and "is on hijacked, not main" in refused.stderr and "--into" in refused.stderr
    assert cli("delegate-parallel", "merge", "--into", "hijacked").code == 0
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "hijacked" and (repo / "h.txt").exists()


def test_kept_worktrees_are_never_removed_or_committed_by_another_run(cli, repo: Path, state_dir: Path) -> None:
    assert run_tasks(cli, task("kept", "echo k > k.txt"), keep_worktrees=True).code == 0
    first = run_dir(state_dir)
    kept = first / "worktrees" / "kept"
    branch = task_results(first)["kept"]["worktree"]["branch"]
    head = git(repo, "rev-parse", branch).strip()
    (kept / "k.txt").write_text("edited by a person\n")
    assert run_tasks(cli, task("next", "echo n > n.txt")).code == 0
    assert kept.is_dir() and (kept / "k.txt").read_text() == "edited by a person\n"
    assert git(repo, "rev-parse", branch).strip() == head


# -- --resolve-with: an agent resolves what conflicts -----------------------------------------------

# passes before any merge, and after one only where no marker is left and C2 came with C1
BOTH_SIDES_GATE = "! grep -q '<<<<<<<' shared.txt && { ! grep -q C2 shared.txt || grep -q C1 shared.txt; }"
KEEP_BOTH = """
import re, sys
prompt = sys.stdin.read()
files = re.findall(r"^- (/.*)$", prompt.split("## Conflicted files", 1)[1].split("##", 1)[0], re.MULTILINE)
for name in files:
    lines = open(name).read().splitlines(keepends=True)
    open(name, "w").writelines(l for l in lines if not re.match(r"^(<{7}|={7}|>{7})( |$)", l))
print("kept both sides in", ", ".join(files))
"""


def conflicting_pair(cli) -> None:
    tasks = [task("c1", "sed -i s/two/C1/ shared.txt", priority="high"), task("c2", "sed -i s/two/C2/ shared.txt")]
    assert run_tasks(cli, *tasks).code == 0


def test_an_agent_command_resolves_a_conflict_keeping_both_sides(
    cli, repo: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conflicting_pair(cli)
    resolver = tmp_path / "resolver.py"
    resolver.write_text(KEEP_BOTH)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", f"{sys.executable} {resolver}")
    merged = cli("delegate-parallel", "merge", "--gate", BOTH_SIDES_GATE, "--resolve-with", "workforce")
    assert merged.code == 0, merged.stderr
    steps = {s["task_id"]: s for s in merged.json()["steps"]}
    assert steps["c1"]["outcome"] == "merged" and steps["c2"]["outcome"] == "merged after resolving"
    assert "kept both sides" in steps["c2"]["resolution"]
    assert (repo / "shared.txt").read_text() == "one\nC1\nC2\nthree\n"
    assert git(repo, "status", "--porcelain") == "" and len(git(repo, "worktree", "list").splitlines()) == 1


def test_a_resolver_that_leaves_markers_keeps_the_branch_set_aside(
    cli, repo: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conflicting_pair(cli)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", "cat")
    merged = cli("delegate-parallel", "merge", "--resolve-with", "workforce")
    assert merged.code == 1
    step = merged.json()["steps"][-1]
    assert step["outcome"] == "conflict" and "left conflict markers in shared.txt" in step["resolution"]
    assert (repo / "shared.txt").read_text() == "one\nC1\nthree\n" and git(repo, "status", "--porcelain") == ""


def test_the_real_cli_resolves_a_conflict_with_its_edit_tool(
    cli, repo: Path, state_dir: Path, claude_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import FAKES

    sys.path.insert(0, str(FAKES))
    from fake_messages_api import FakeMessagesAPI, Reply
    from tool_model import tool_results

    conflicting_pair(cli)

    def respond(body: dict[str, Any]) -> Reply:
        text = orjson.dumps(body).decode()
        found = re.search(r"- (/[^\s\\\\\"]+/shared\.txt)", text)
        if found is None:
            return Reply("no conflict found")
        path = found.group(1)
        done = tool_results(body)
        if not done:
            read = {"type": "tool_use", "id": _tool_id(), "name": "Read", "input": {"file_path": path}}
            return Reply(content=[read], stop_reason="tool_use")
        if len(done) == 1:
            merged = {"file_path": path, "content": "one\nC1\nC2\nthree\n"}
            write = {"type": "tool_use", "id": _tool_id(), "name": "Write", "input": merged}
            return Reply(content=[write], stop_reason="tool_use")
        return Reply("Resolved: kept C1 and C2.")

    with FakeMessagesAPI(respond) as api:
        use_fake_api(monkeypatch, api.url, claude_bin)
        merged = cli("delegate-parallel", "merge", "--gate", BOTH_SIDES_GATE, "--resolve-with", "workforce")
    assert merged.code == 0, merged.stderr
    step = merged.json()["steps"][-1]
    assert step["outcome"] == "merged after resolving" and "kept C1 and C2" in step["resolution"]
    assert (repo / "shared.txt").read_text() == "one\nC1\nC2\nthree\n"


def _tool_id() -> str:
    import uuid

    return "toolu_" + uuid.uuid4().hex[:24]


def test_run_with_merge_lands_the_good_branches_when_it_ends(cli, repo: Path, state_dir: Path) -> None:
    tasks = [task("good", "echo g > g.txt"), task("breaks", "touch BROKEN")]
    parallel = {"isolation": "worktree", "failure_tolerance": 5, "retries": 0, "merge": {"gate": GATE}}
    config = orjson.dumps({"parallel_config": parallel, "tasks": tasks}).decode()
    done = cli("delegate-parallel", "run", "-q", "--merge", config)
    assert done.code == 1, done.stderr  # every task succeeded, but one branch stayed out
    assert done.json()["merge"]["landed"] == ["good"] and done.json()["merge"]["set_aside"] == ["breaks"]
    assert (repo / "g.txt").exists() and not (repo / "BROKEN").exists()
    assert "breaks: gate failed" in done.stderr
    assert "## Merge" in (run_dir(state_dir) / "report.md").read_text()
