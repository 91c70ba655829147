"""Each task in its own git worktree, on its own branch awoc/<run id>/<task id>, under the run's folder.

A task without worktree dependencies starts from the HEAD recorded in the plan; one whose
dependencies ran in worktrees starts from a merge of their branches, made in the object store
(a conflict there means it cannot start: it is skipped, naming the files). Every attempt starts
from that base: what an earlier attempt left (a failure, a timeout, a run killed) is committed and
set aside under refs/awoc/<run id>/<task id>/attempt-<n>, never lost, and the branch holds only
the work of the attempt that ended the task. Whatever a task leaves uncommitted is committed on
its branch when it ends. Worktrees are removed when the run's
execution ends (the branches stay), never one that holds uncommitted work; a later run sweeps
the worktrees of dead runs the same way, committing their leftovers first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from awoc_scripts import git
from awoc_scripts.errors import AwocError, StateError
from awoc_scripts.execution.isolation.base import CannotStart
from awoc_scripts.planning.git_base import branch_name
from awoc_scripts.state.owner import run_executing
from awoc_scripts.state.reconcile import GONE
from awoc_scripts.state.statuses import SUCCEEDED
from awoc_scripts.state.store import EventBuffer, Run, atomic_write_json, read_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from awoc_scripts.plan_types import GitBase, Task
    from awoc_scripts.run_documents import IsolationExtras, WorktreeRecord

RECORD_FILE = "worktree.json"
KILLED = ("running", "paused")  # what state.json says of a run whose orchestrator died mid-way


class WorktreeIsolation:
    def __init__(
        self,
        run: Run,
        base: GitBase,
        by_id: dict[str, Task],
        status_of: Callable[[str], str],
        events: EventBuffer,
        keep: bool,
    ) -> None:
        self.run = run
        self.repo = Path(base["repo"])
        self.head = base["head"]
        self.subdir = base["subdir"]
        self.by_id = by_id
        self.status_of = status_of
        self.events = events
        self.keep = keep
        self._checkout: tuple[str, str, str] | None = None  # the user's checkout, as last seen

    # -- where a task runs -----------------------------------------------------------------

    def path_of(self, task_id: str) -> Path:
        return self.run.dir.resolve() / "worktrees" / task_id

    def _record_file(self, task_id: str) -> Path:
        return self.run.task_dir(task_id) / RECORD_FILE

    def record(self, task_id: str) -> WorktreeRecord | None:
        """What worktree.json says of the task's branch, or None before its first attempt."""
        path = self._record_file(task_id)
        if not path.exists():
            return None
        found: WorktreeRecord = read_json(path)
        return found

    def workdir(self, task: Task) -> Path:
        tid = task["task_id"]
        path = self.path_of(tid)
        branch = branch_name(self.run.run_id, tid)
        record = self.record(tid)
        if record is not None and git.branch_commit(self.repo, branch) is not None:
            self._set_aside_earlier_attempt(tid, record, path)
        if not (path / ".git").exists():
            if git.branch_commit(self.repo, branch) is None:
                base, merged = self._base_for(task)
                git.run_git(self.repo, "branch", branch, base)
                self._save_record(tid, {"branch": branch, "base": base, "merged": merged, "path": str(path)})
            self._add_worktree(path, branch)
            self._copy_included(path)
            self.events.add("worktree-created", task_id=tid, branch=branch, path=str(path))
        return path / self.subdir if self.subdir not in ("", ".") else path

    def starting_point(self, task: Task) -> str:
        """The commit the task would start from (CannotStart when its dependencies conflict)."""
        record = self.record(task["task_id"])
        return str(record["base"]) if record is not None else self._base_for(task)[0]

    def adopt(self, task: Task, cached: WorktreeRecord) -> bool:
        """A result reused from an earlier run: its branch in this run, at the same head. False
        when that head is no longer in the repository (then the task runs)."""
        tid, head = task["task_id"], cached.get("head")
        if not isinstance(head, str) or not git.has_commit(self.repo, head):
            return False
        base, merged = self._base_for(task)
        branch = branch_name(self.run.run_id, tid)
        git.run_git(self.repo, "branch", "--force", branch, head)
        self._save_record(tid, {"branch": branch, "base": base, "merged": merged, "path": str(self.path_of(tid))})
        return True

    def _set_aside_earlier_attempt(self, tid: str, record: WorktreeRecord, path: Path) -> None:
        """A later attempt starts from the same base as the first: the earlier one's work (its commits
        and what it left uncommitted) goes to a ref of its own, and the branch goes back to the base."""
        checked_out = (path / ".git").exists()
        if checked_out:
            git.commit_all(path, f"awoc: run {self.run.run_id}, task {tid}: left uncommitted by an earlier attempt")
        head = git.branch_commit(self.repo, record["branch"])
        if head is None or head == record["base"]:
            return
        earlier = record.setdefault("earlier_attempts", [])
        number = len(earlier) + 1
        # a ref made just before a kill may be missing from the record: never overwrite one
        while git.run_git(self.repo, "rev-parse", "--verify", "--quiet", self._attempt_ref(tid, number), check=False):
            number += 1
        ref = self._attempt_ref(tid, number)
        git.run_git(self.repo, "update-ref", ref, head)
        if checked_out:
            git.run_git(path, "reset", "--quiet", "--hard", record["base"])
        else:
            git.run_git(self.repo, "branch", "--force", record["branch"], record["base"])
        earlier.append({"ref": ref, "head": head})
        self._save_record(tid, record)
        self.events.add("worktree-attempt-set-aside", task_id=tid, ref=ref, head=head)

    def _attempt_ref(self, tid: str, number: int) -> str:
        return f"refs/awoc/{self.run.run_id}/{tid}/attempt-{number}"

    def _save_record(self, tid: str, record: WorktreeRecord) -> None:
        self.run.task_dir(tid).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._record_file(tid), record)

    def _add_worktree(self, path: Path, branch: str) -> None:
        git.run_git(self.repo, "worktree", "prune")
        if path.exists() and not any(path.iterdir()):
            path.rmdir()
        path.parent.mkdir(parents=True, exist_ok=True)
        git.run_git(self.repo, "worktree", "add", "--quiet", str(path), branch)

    def _base_for(self, task: Task) -> tuple[str, list[str]]:
        """The plan's HEAD, or a merge of the branches of the dependencies that succeeded in worktrees."""
        branches = []
        for dep in task["dependencies"]:
            if self.by_id[dep]["isolation"] != "worktree" or self.status_of(dep) != SUCCEEDED:
                continue
            commit = git.branch_commit(self.repo, branch_name(self.run.run_id, dep))
            if commit is not None:
                branches.append((dep, commit))
        if not branches:
            return self.head, []
        base = branches[0][1]
        for _dep, commit in branches[1:]:
            if git.is_ancestor(self.repo, commit, base):
                continue
            check = git.merge_check(self.repo, base, commit)
            if check.tree is None:
                raise CannotStart(
                    f"the changes of its dependencies ({merged_names(branches)}) conflict in: "
                    f"{', '.join(check.conflicts[:10])}"
                )
            message = f"awoc: run {self.run.run_id}, base of {task['task_id']}: merge of {merged_names(branches)}"
            base = git.commit_tree(self.repo, check.tree, [base, commit], message)
        return base, [d for d, _ in branches]

    def _copy_included(self, path: Path) -> None:
        """Ignored files named by .worktreeinclude (Claude Code's convention) are copied in."""
        patterns = self.repo / ".worktreeinclude"
        if not patterns.is_file():
            return
        ignored = set(
            _nul_list(git.run_git(self.repo, "ls-files", "-z", "--others", "--ignored", "--exclude-standard"))
        )
        wanted = _nul_list(
            git.run_git(self.repo, "ls-files", "-z", "--others", "--ignored", f"--exclude-from={patterns}")
        )
        for name in wanted:
            if name in ignored and (self.repo / name).is_file():
                target = path / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.repo / name, target)

    # -- ends ------------------------------------------------------------------------------

    def task_ended(self, task: Task, status: str) -> IsolationExtras:
        """Commit what the task left; its result records branch, base, head, commits and files."""
        tid = task["task_id"]
        record = self.record(tid)
        if record is None:
            return {}
        path = Path(record["path"])
        notes = []
        if (path / ".git").exists():
            committed = git.commit_all(path, f"awoc: run {self.run.run_id}, task {tid} ({status}): left uncommitted")
            if committed:
                self.events.add("worktree-committed", task_id=tid, commit=committed)
            moved = self._keep_moved_head(tid, record, path)
            if moved:
                notes.append(moved)
        changed = self._checkout_changed()
        if changed:
            notes.append(changed)
            self.events.add("user-checkout-changed", task_id=tid, change=changed)
        head = git.branch_commit(self.repo, record["branch"]) or record["base"]
        files = git.files_changed(self.repo, record["base"], head)
        return {
            "worktree": {
                **record,
                "head": head,
                "commits": git.commits_between(self.repo, record["base"], head),
                "files_changed": [{"path": f.path, "added": f.added, "removed": f.removed} for f in files],
                "notes": notes,
            }
        }

    def _keep_moved_head(self, tid: str, record: WorktreeRecord, path: Path) -> str | None:
        """A task that detached its worktree's HEAD or switched it to another branch: what it
        committed there goes on its branch (or, not descending from it, under a ref of its own), so
        nothing it made is unreachable, and the worktree is put back on its branch."""
        branch_ref = f"refs/heads/{record['branch']}"
        on = git.run_git(path, "symbolic-ref", "--quiet", "HEAD", check=False).strip()
        if on == branch_ref:
            return None
        head = git.run_git(path, "rev-parse", "HEAD").strip()
        tip = git.branch_commit(self.repo, record["branch"])
        where = f"branch {on.removeprefix('refs/heads/')}" if on else "a detached HEAD"
        if tip is None or git.is_ancestor(self.repo, tip, head):
            git.run_git(self.repo, "update-ref", branch_ref, head)
            note = f"it moved its worktree to {where}; its commits ({head[:12]}) are on {record['branch']}"
        else:
            number = 1
            while git.run_git(self.repo, "rev-parse", "--verify", "--quiet", self._moved_ref(tid, number), check=False):
                number += 1
            git.run_git(self.repo, "update-ref", self._moved_ref(tid, number), head)
            note = (
                f"it moved its worktree to {where}, at {head[:12]}, which does not build on its branch: "
                f"kept under {self._moved_ref(tid, number)}, not merged"
            )
        git.run_git(path, "checkout", "--quiet", "--force", record["branch"])
        self.events.add("worktree-head-moved", task_id=tid, to=on or "detached", head=head)
        return note

    def _moved_ref(self, tid: str, number: int) -> str:
        return f"refs/awoc/{self.run.run_id}/{tid}/moved-{number}"

    def checkout_state(self) -> tuple[str, str, str]:
        """The user's own checkout: its branch, its HEAD and what is changed in it."""
        on = git.run_git(self.repo, "symbolic-ref", "--quiet", "HEAD", check=False).strip()
        head = git.head_commit(self.repo) or ""
        changed = git.run_git(self.repo, "status", "--porcelain=v1", "--untracked-files=all", check=False)
        return on, head, changed

    def _checkout_changed(self) -> str | None:
        """What changed in the user's checkout since the last look (a task in a worktree must not
        touch it), or None."""
        now = self.checkout_state()
        before, self._checkout = self._checkout, now
        if before is None or now == before:
            return None
        parts = []
        if now[0] != before[0]:
            parts.append(f"its branch went from {before[0] or 'detached'} to {now[0] or 'detached'}")
        if now[1] != before[1]:
            parts.append(f"HEAD went from {before[1][:12]} to {now[1][:12]}")
        if now[2] != before[2]:
            files = sorted({line[3:] for line in (set(now[2].splitlines()) ^ set(before[2].splitlines()))})
            parts.append("files changed: " + ", ".join(files[:10]) + (" ..." if len(files) > 10 else ""))
        return f"the checkout {self.repo} changed while it ran (it, or a task beside it): " + "; ".join(parts)

    def run_ended(self) -> list[str]:
        """Remove this run's worktrees (the branches stay), unless kept or holding uncommitted work."""
        notes = []
        for tree in self._registered(self.run.dir / "worktrees"):
            if self.keep:
                notes.append(f"kept {tree.path} (--keep-worktrees)")
            elif git.uncommitted(tree.path):
                notes.append(f"kept {tree.path}: it holds uncommitted work")
            else:
                git.run_git(self.repo, "worktree", "remove", str(tree.path))
                notes.append(f"removed {tree.path}")
        git.run_git(self.repo, "worktree", "prune")
        return notes

    def run_starting(self) -> list[str]:
        self._checkout = self.checkout_state()
        return self.sweep_dead_runs()

    def sweep_dead_runs(self) -> list[str]:
        """Worktrees left registered by runs whose orchestrator died: their leftovers are committed on
        their branches, then they are removed. A run that is alive, that ended (its worktrees were
        kept on purpose, and what a person edits in them is theirs), or this one, is left alone."""
        notes = []
        runs_dir = self.run.root / "runs"
        git.run_git(self.repo, "worktree", "prune")
        for tree in self._registered(runs_dir):
            parts = tree.path.resolve().relative_to(runs_dir.resolve()).parts
            if len(parts) != 3 or parts[0] == self.run.run_id or parts[1] != "worktrees":
                continue
            owner = Run(self.run.root, parts[0])
            saved = read_json(owner.state_file, default={})
            died = saved.get("status") in KILLED or saved.get("stop_reason") == GONE
            if not died or run_executing(owner, saved) or _kept(owner):
                continue  # a run that ended kept these on purpose (kept, or holding uncommitted work)
            try:  # held while sweeping: a resume of that run cannot start making worktrees meanwhile
                claim = owner.claim("cleaned up")
            except StateError:
                continue  # being executed or merged right now: never touched
            try:
                committed = git.commit_all(tree.path, f"awoc: run {parts[0]}, task {parts[2]}: left uncommitted")
                git.run_git(self.repo, "worktree", "remove", str(tree.path))
            finally:
                claim.release()
            notes.append(
                f"removed {tree.path} of run {parts[0]}" + (f", leftovers in {committed[:12]}" if committed else "")
            )
        return notes

    def _registered(self, under: Path) -> list[git.Worktree]:
        under = under.resolve()
        return [t for t in git.worktrees(self.repo) if t.path.resolve().is_relative_to(under) and t.path.is_dir()]


def _kept(run: Run) -> bool:
    """The run asked for its worktrees to be kept (--keep-worktrees): no other run touches them."""
    try:
        return bool(run.read_plan()["parallel_config"].get("keep_worktrees"))
    except AwocError:
        return True  # unreadable: leave its worktrees alone


def merged_names(branches: list[tuple[str, str]]) -> str:
    return ", ".join(dep for dep, _ in branches)


def _nul_list(text: str) -> list[str]:
    return [name for name in text.split("\0") if name]
