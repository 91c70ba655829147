"""Worktree tasks need a repository with a commit to start from: found and recorded in the plan."""

from __future__ import annotations

from pathlib import Path

from awoc_scripts.errors import InputError
from awoc_scripts.plan_types import GitBase, Plan

BRANCH_ROOT = "awoc"  # worktree branches are awoc/<run id>/<task id>


def branch_name(run_id: str, task_id: str) -> str:
    return f"{BRANCH_ROOT}/{run_id}/{task_id}"


def attach_git_base(plan: Plan, cwd: Path) -> None:
    """Record the repository and its HEAD in the plan when some task runs in a worktree."""
    ids = [t["task_id"] for t in plan["tasks"] if t["isolation"] == "worktree"]
    if not ids:
        return
    from awoc_scripts import git  # only plans with worktree tasks run git

    named = f'isolation "worktree" (tasks: {", ".join(ids[:5])}{", ..." if len(ids) > 5 else ""})'
    root = git.repo_root(cwd)
    if root is None:
        raise InputError(f'{named}: {cwd} is not inside a git repository; run from a repository or use "process"')
    head = git.head_commit(root)
    if head is None:
        raise InputError(f"{named}: the repository {root} has no commit yet; commit something first")
    if git.branch_commit(root, BRANCH_ROOT):
        raise InputError(
            f"{named}: a branch named {BRANCH_ROOT!r} exists in {root}, so no branch "
            f"{BRANCH_ROOT}/<run>/<task> can be made; rename it (git branch -m {BRANCH_ROOT} NEW-NAME)"
        )
    changed = git.uncommitted(root)
    plan["git"] = GitBase(
        repo=str(root),
        head=head,
        subdir=str(cwd.resolve().relative_to(root.resolve())),
        uncommitted=len(changed),
        branch=git.current_branch(root),
    )
    if changed:
        plan["warnings"].append(
            f"{len(changed)} uncommitted change(s) in {root} are not visible to worktree tasks: they start from "
            f"HEAD {head[:12]}; commit first to include them"
        )


def check_new_branches(plan: Plan, run_id: str) -> None:
    """Before a run is saved: none of its worktree branches may exist already."""
    base = plan.get("git")
    if base is None:
        return
    from awoc_scripts import git

    repo = Path(base["repo"])
    for task in plan["tasks"]:
        name = branch_name(run_id, task["task_id"])
        if task["isolation"] == "worktree" and git.branch_commit(repo, name):
            raise InputError(f"task {task['task_id']}: branch {name} already exists in {repo}")
