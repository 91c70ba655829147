"""Which worktree tasks changed which files, and which pairs changed the same file, with whether
their branches really conflict: computed in the object store, the user's checkout untouched."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from awoc_scripts.plan_types import Plan
    from awoc_scripts.results.documents import Overlap, OverlapTask, WorktreeOverlap


def worktree_overlap(plan: Plan, results: Iterable[Mapping[str, Any]]) -> WorktreeOverlap | None:
    base = plan.get("git")
    if base is None:
        return None
    repo = Path(base["repo"])
    tasks: dict[str, OverlapTask] = {}
    for result in results:
        tree = result.get("worktree")
        if isinstance(tree, dict):
            tasks[str(result["task_id"])] = {
                "status": result["status"],
                "branch": tree["branch"],
                "base": tree["base"],
                "head": tree["head"],
                "commits": len(tree.get("commits", [])),
                "files": [f["path"] for f in tree.get("files_changed", [])],
                "files_changed": tree.get("files_changed", []),
                "earlier_attempts": [
                    str(a["ref"]) for a in tree.get("earlier_attempts", []) if isinstance(a, dict) and "ref" in a
                ],
            }
    ids = sorted(tasks, key=lambda tid: [t["task_id"] for t in plan["tasks"]].index(tid))
    pairs: list[Overlap] = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            shared = sorted(set(tasks[a]["files"]) & set(tasks[b]["files"]))
            if shared:
                pairs.append(_overlap([a, b], shared, repo, tasks[a]["head"], tasks[b]["head"]))
    return {
        "repo": str(repo),
        "base_head": base["head"],
        "uncommitted_at_start": base["uncommitted"],
        "tasks": tasks,
        "overlaps": pairs,
    }


def _overlap(tasks: list[str], files: list[str], repo: Path, head_a: str, head_b: str) -> Overlap:
    from awoc_scripts import git  # only runs whose worktrees touched the same file need it (2 ms at start-up)

    try:
        check = git.merge_check(repo, head_a, head_b)
    except git.GitError as exc:
        return {"tasks": tasks, "files": files, "conflict": None, "conflicting_files": [], "error": exc.message}
    return {"tasks": tasks, "files": files, "conflict": check.tree is None, "conflicting_files": check.conflicts}


def overlap_markdown(overlap: Mapping[str, Any], run_id: str) -> list[str]:
    from awoc_scripts.launcher import command_for

    lines = ["## Code changes (worktrees)", ""]
    if overlap["uncommitted_at_start"]:
        lines += [
            f"{overlap['uncommitted_at_start']} uncommitted change(s) in the checkout were not visible to the tasks: "
            f"they started from `{overlap['base_head'][:12]}`.",
            "",
        ]
    lines += ["| task | status | branch | commits | files changed |", "|---|---|---|---|---|"]
    for tid, task in overlap["tasks"].items():
        changed = ", ".join(
            f"`{f['path']}` +{_count(f['added'])}/-{_count(f['removed'])}" for f in task["files_changed"][:10]
        )
        more = f" and {len(task['files']) - 10} more" if len(task["files"]) > 10 else ""
        lines.append(f"| {tid} | {task['status']} | `{task['branch']}` | {task['commits']} | {changed or '-'}{more} |")
    lines.append("")
    set_aside = {
        tid: task["earlier_attempts"] for tid, task in overlap["tasks"].items() if task.get("earlier_attempts")
    }
    if set_aside:
        lines += ["Earlier attempts' work, kept out of the branches (each attempt starts from the task's base):", ""]
        lines += [f"- {tid}: {', '.join(f'`{ref}`' for ref in refs)}" for tid, refs in set_aside.items()]
        lines.append("")
    if overlap["overlaps"]:
        lines += ["Tasks that changed the same files:", ""]
        for pair in overlap["overlaps"]:
            a, b = pair["tasks"]
            verdict = (
                f"**conflict** in {', '.join(f'`{f}`' for f in pair['conflicting_files'])}"
                if pair["conflict"]
                else "merge cleanly"
                if pair["conflict"] is False
                else f"unknown ({pair.get('error')})"
            )
            lines.append(f"- {a} and {b}: {', '.join(f'`{f}`' for f in pair['files'])}: {verdict}")
        lines.append("")
    else:
        lines += ["No two tasks changed the same file.", ""]
    check = command_for("delegate-parallel", "merge", run_id, "--dry-run")
    merge = command_for("delegate-parallel", "merge", run_id)
    lines += [
        f"To land the succeeded branches in your checkout: `{check}` shows what would merge and what "
        f"conflicts, then `{merge}` merges them.",
        "",
    ]
    return lines


def _count(lines: int | None) -> str:
    return "?" if lines is None else str(lines)  # None: a binary file
