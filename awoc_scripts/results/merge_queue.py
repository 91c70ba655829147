"""`delegate-parallel merge`: the succeeded tasks' branches into the current branch, one at a time,
in dependency order then priority; it stops at the first conflict and says how to go on."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from awoc_scripts import git
from awoc_scripts.errors import OK, TASKS_FAILED, InputError
from awoc_scripts.launcher import command_for
from awoc_scripts.plan_types import Plan
from awoc_scripts.planning.scheduling import PRIORITY_RANK
from awoc_scripts.results.aggregate import run_results
from awoc_scripts.results.overlap import worktree_overlap
from awoc_scripts.state.reconcile import reconcile_saved_run
from awoc_scripts.state.store import Run, take_claim
from awoc_scripts.state.task_states import SUCCEEDED


def merge_order(plan: Plan, merge: set[str]) -> list[str]:
    """Dependencies first; among tasks free to go, higher priority, then file order."""
    tasks = {t["task_id"]: t for t in plan["tasks"] if t["task_id"] in merge}
    waiting = {tid: {d for d in t["dependencies"] if d in tasks} for tid, t in tasks.items()}
    ready = [(PRIORITY_RANK[t["priority"]], t["index"], tid) for tid, t in tasks.items() if not waiting[tid]]
    heapq.heapify(ready)
    order = []
    while ready:
        *_, tid = heapq.heappop(ready)
        order.append(tid)
        for other, deps in waiting.items():
            if tid in deps:
                deps.discard(tid)
                if not deps:
                    heapq.heappush(ready, (PRIORITY_RANK[tasks[other]["priority"]], tasks[other]["index"], other))
    return order


def merge_run(run: Run, dry_run: bool) -> tuple[int, dict[str, Any]]:
    """Merge the run's succeeded branches, holding the run's claim (a run being executed is
    refused) and the repository's (two merges into one checkout never interleave)."""
    plan = run.read_plan()
    base = plan.get("git")
    if base is None:
        raise InputError(f"run {run.run_id} has no worktree tasks: nothing to merge")
    repo = Path(base["repo"])
    run_claim = run.claim("merged")
    try:
        reconcile_saved_run(run, holding_claim=True)
        common = Path(git.run_git(repo, "rev-parse", "--git-common-dir").strip())
        repo_claim = take_claim(repo / common / "awoc-merge.lock", f"repository {repo}", "merged")
        try:
            return _merge(run, plan, repo, dry_run)
        finally:
            repo_claim.release()
    finally:
        run_claim.release()


def _merge(run: Run, plan: Plan, repo: Path, dry_run: bool) -> tuple[int, dict[str, Any]]:
    results = run_results(run)
    overlap = worktree_overlap(plan, results)
    branches = {
        str(r["task_id"]): str(r["worktree"]["branch"])
        for r in results
        if r.get("status") == SUCCEEDED and isinstance(r.get("worktree"), dict)
    }
    if not dry_run:
        _require_clean(repo)
    current = git.head_commit(repo)
    if current is None:
        raise InputError(f"{repo} has no commit to merge into")
    steps: list[dict[str, Any]] = []
    stopped = None
    for tid in merge_order(plan, set(branches)):
        step: dict[str, Any] = {"task_id": tid, "branch": branches[tid]}
        steps.append(step)
        head = git.branch_commit(repo, branches[tid])
        if head is None:
            step["outcome"] = "branch missing"
            continue
        if git.is_ancestor(repo, head, current):
            step["outcome"] = "already merged"
            continue
        if dry_run:
            check = git.merge_check(repo, current, head)
            if check.tree is None:
                step.update(outcome="would conflict", conflicting_files=check.conflicts)
                stopped = tid
                break
            current = git.commit_tree(repo, check.tree, [current, head], f"awoc dry run: {tid}")
            step["outcome"] = "would merge"
            continue
        message = f"awoc: merge task {tid} of run {run.run_id}"
        try:
            git.run_git(repo, "merge", "--no-ff", "--no-edit", "-m", message, branches[tid], env=git.identity_env(repo))
        except git.GitError:
            files = git.run_git(repo, "diff", "--name-only", "--diff-filter=U").split()
            again = command_for("delegate-parallel", "merge", run.run_id)
            step.update(
                outcome="conflict",
                conflicting_files=files,
                to_finish=f"fix the files, then: git add {' '.join(files)} && git commit --no-edit && {again}",
                to_abort="git merge --abort",
            )
            stopped = tid
            break
        current = git.head_commit(repo) or current
        step["outcome"] = "merged"
    summary = {
        "run_id": run.run_id,
        "repo": str(repo),
        "dry_run": dry_run,
        "steps": steps,
        "stopped_at": stopped,
        "not_reached": [t for t in merge_order(plan, set(branches)) if t not in {s["task_id"] for s in steps}],
        "overlap": overlap,
    }
    return (TASKS_FAILED if stopped else OK), summary


def _require_clean(repo: Path) -> None:
    if (repo / ".git" / "MERGE_HEAD").exists() or git.run_git(
        repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False
    ).strip():
        raise InputError(f"{repo} is in the middle of a merge: finish it (git commit) or abort it (git merge --abort)")
    changed = git.run_git(repo, "status", "--porcelain", "--untracked-files=no")
    if changed.strip():
        raise InputError(f"{repo} has uncommitted changes: commit or stash them before merging")


def merge_text(summary: dict[str, Any]) -> str:
    lines = []
    for step in summary["steps"]:
        line = f"{step['task_id']}: {step['outcome']} ({step['branch']})"
        if step.get("conflicting_files"):
            line += f" in {', '.join(step['conflicting_files'])}"
        lines.append(line)
        for key in ("to_finish", "to_abort"):
            if step.get(key):
                lines.append(f"  {key.replace('_', ' ')}: {step[key]}")
    if summary["not_reached"]:
        lines.append(f"not reached: {', '.join(summary['not_reached'])}")
    overlap = summary.get("overlap") or {}
    for pair in overlap.get("overlaps", []):
        verdict = "conflict" if pair["conflict"] else "no conflict"
        lines.append(f"overlap: {' and '.join(pair['tasks'])} changed {', '.join(pair['files'])} ({verdict})")
    return "\n".join(lines) or "nothing to merge"
