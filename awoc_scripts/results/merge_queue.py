"""`delegate-parallel merge`: the succeeded tasks' branches into the branch the run started from,
one at a time, in dependency order then priority. A branch that conflicts, that the gate rejects,
or whose dependency was set aside is set aside with the reason, and merging goes on: every good
change lands, the checkout always ends at a commit where the gate passes, and never half-merged."""

from __future__ import annotations

import heapq
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awoc_scripts import PLAN_SCHEMA, git
from awoc_scripts.errors import OK, TASKS_FAILED, InputError
from awoc_scripts.execution.watchdog import Watchdog
from awoc_scripts.launcher import command_for
from awoc_scripts.planning.scheduling import PRIORITY_RANK
from awoc_scripts.processes import children_marked, task_marker
from awoc_scripts.results.aggregate import run_results
from awoc_scripts.results.conflict_resolver import Resolver, Side, resolve
from awoc_scripts.results.overlap import worktree_overlap
from awoc_scripts.state.reconcile import reconcile_saved_run
from awoc_scripts.state.statuses import SUCCEEDED
from awoc_scripts.state.store import Run, atomic_write_json, now_iso, read_json, take_claim

if TYPE_CHECKING:
    from awoc_scripts.plan_types import Plan
    from awoc_scripts.results.documents import MergeStep, MergeSummary
    from awoc_scripts.run_documents import ChangedFile

GATE_TIMEOUT_S = 600.0
GATE_OUTPUT_CHARS = 4000
MERGE_MARKER = "MERGE"  # the task part of the gates' and resolvers' marker: upper case, so no task's id
STEP_FILE = "merge-step.json"  # written while a merge step changes the checkout
MERGE_FILE = "merge.json"
MERGES_KEPT = 50
CONFLICT, GATE_FAILED, DEPENDENCY, BLOCKED, LOST = "conflict", "gate failed", "dependency set aside", "blocked", "lost"
SET_ASIDE = (CONFLICT, GATE_FAILED, DEPENDENCY, BLOCKED, LOST)
RESOLVED = "merged after resolving"
LANDED = ("merged", "would merge", RESOLVED)
NO_CHANGES = "no changes"
RESOLVE_TIMEOUT_S = 900.0
RESOLVE_TOKEN_BUDGET = 50_000


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


@dataclass(frozen=True)
class MergeOptions:
    """How `delegate-parallel merge` merges."""

    dry_run: bool = False
    gate: str | None = None  # `sh -c GATE` at the checkout's root after each merge must pass
    gate_timeout_s: float = GATE_TIMEOUT_S
    into: str | None = None  # the branch to merge into when it is not the one the run started from
    resolver: Resolver | None = None  # an agent for the branches set aside by a conflict or the gate


def merge_options(
    plan: Plan, dry_run: bool, gate: str | None, into: str | None, resolve_with: str | None = None
) -> MergeOptions:
    """The command line's, else parallel_config.merge's."""
    saved = plan["parallel_config"].get("merge") or {}
    timeout = float(saved.get("gate_timeout_s") or GATE_TIMEOUT_S)
    agent = resolve_with or saved.get("resolve_with")
    resolver = None
    if agent:
        resolver = Resolver(
            agent,
            float(saved.get("resolve_timeout_s") or RESOLVE_TIMEOUT_S),
            int(saved.get("resolve_token_budget") or RESOLVE_TOKEN_BUDGET),
            saved.get("resolve_cost_budget_usd"),
        )
    return MergeOptions(dry_run, gate or saved.get("gate"), timeout, into or saved.get("into"), resolver)


def merge_run(run: Run, options: MergeOptions) -> tuple[int, MergeSummary]:
    """Merge the run's succeeded branches, holding the run's claim (a run being executed is
    refused) and the repository's (two merges into one checkout never interleave)."""
    plan = run.read_plan()
    base = plan.get("git")
    if base is None:
        raise InputError(f"run {run.run_id} has no worktree tasks: nothing to merge")
    repo = Path(base["repo"])
    run_claim = run.claim("merged")
    # the gates and resolvers carry the run's marker: if this process is killed, they end with it
    watchdog = Watchdog.start(run, run_claim.fd)
    everything_ended = False
    try:
        reconcile_saved_run(run, holding_claim=True)
        common = Path(git.run_git(repo, "rev-parse", "--git-common-dir").strip())
        repo_claim = take_claim(repo / common / "awoc-merge.lock", f"repository {repo}", "merged")
        try:
            # its git commands (and their hooks) too: killed with it, never left writing the checkout
            # while the next merge repairs it
            with children_marked(task_marker(run.run_id, MERGE_MARKER)):
                outcome = MergeQueue(run, plan, repo, options).merge_all()
        finally:
            repo_claim.release()
        everything_ended = True  # each git, gate and resolver ended before it returned
        return outcome
    finally:
        if watchdog is not None:
            watchdog.end(everything_ended)
        run_claim.release()


class MergeQueue:
    """One merge of a run's branches: each lands, or is set aside with the reason."""

    def __init__(self, run: Run, plan: Plan, repo: Path, options: MergeOptions) -> None:
        self.run, self.plan, self.repo, self.options = run, plan, repo, options
        self.by_id = {t["task_id"]: t for t in plan["tasks"]}
        self.step_file = run.dir / STEP_FILE
        self.marker = task_marker(run.run_id, MERGE_MARKER)

    def merge_all(self) -> tuple[int, MergeSummary]:
        dry = self.options.dry_run
        if not dry:
            self._undo_interrupted_step()
            _require_clean(self.repo)
        into = self._target_branch()
        results = run_results(self.run)
        self.results = {str(r["task_id"]): r for r in results}
        heads = {
            str(r["task_id"]): (str(r["worktree"]["branch"]), str(r["worktree"]["head"]))
            for r in results
            if r.get("status") == SUCCEEDED and isinstance(r.get("worktree"), dict) and r["worktree"].get("head")
        }
        current = git.head_commit(self.repo)
        if current is None:
            raise InputError(f"{self.repo} has no commit to merge into")
        if self.options.gate:
            passed, output = self._gate(current)
            if not passed:
                raise InputError(f"the gate fails before anything is merged, at {current[:12]}: {output[-500:]}")
        steps: list[MergeStep] = []
        set_aside: set[str] = set()
        for tid in merge_order(self.plan, set(heads)):
            branch, head = heads[tid]
            step: MergeStep = {"task_id": tid, "branch": branch, "head": head}
            steps.append(step)
            current = self._step(step, current, set_aside)
            if step["outcome"] in (CONFLICT, GATE_FAILED) and self.options.resolver is not None:
                current = self._resolve(step, current, [s["task_id"] for s in steps if s["outcome"] in LANDED])
            if step["outcome"] in SET_ASIDE:
                set_aside.add(tid)
        summary: MergeSummary = {
            "run_id": self.run.run_id,
            "repo": str(self.repo),
            "into": into,
            "dry_run": dry,
            "gate": self.options.gate,
            "finished_at": now_iso(),
            "head": current,
            "steps": steps,
            "landed": [s["task_id"] for s in steps if s["outcome"] in LANDED],
            "set_aside": [s["task_id"] for s in steps if s["outcome"] in SET_ASIDE],
            "overlap": worktree_overlap(self.plan, results),
        }
        if not dry:
            record_merge(self.run, summary)
        return (TASKS_FAILED if summary["set_aside"] else OK), summary

    def _target_branch(self) -> str | None:
        """Merges go into the branch the run started from, unless told another (--into)."""
        started_on = self.plan.get("git", {}).get("branch")
        now_on = git.current_branch(self.repo)
        wanted = self.options.into or started_on
        if wanted is not None and now_on != wanted:
            told = "" if self.options.into else f" (the run started from {started_on})"
            raise InputError(
                f"{self.repo} is on {now_on or 'a detached HEAD'}, not {wanted}{told}: switch to it "
                f"(git switch {wanted}), or merge into {now_on or 'a branch'} with --into {now_on or 'BRANCH'}"
            )
        return now_on

    def _step(self, step: MergeStep, current: str, set_aside: set[str]) -> str:
        """Merge one branch onto CURRENT; returns the new current commit."""
        tid, branch, head = step["task_id"], step["branch"], step["head"]
        held_back = [d for d in self.by_id[tid]["dependencies"] if d in set_aside]
        if held_back:
            step["outcome"], step["why"] = DEPENDENCY, f"its dependency {', '.join(held_back)} was set aside"
            return current
        tip = git.branch_commit(self.repo, branch)
        if tip is None:
            step["note"] = f"branch {branch} is gone; merging the head the task recorded, {head[:12]}"
        elif tip != head:
            step["note"] = f"branch {branch} moved to {tip[:12]} after the task ended; merging its recorded head"
        if not git.has_commit(self.repo, head):
            step["outcome"], step["why"] = LOST, f"its recorded head {head[:12]} is not in the repository"
            return current
        worktree = self.results[tid].get("worktree")
        if isinstance(worktree, dict) and head == worktree.get("base"):
            step["outcome"] = NO_CHANGES  # the task committed nothing: there is nothing of its own to land
            return current
        if git.is_ancestor(self.repo, head, current):
            step["outcome"] = "already merged"
            return current
        if self.options.dry_run:
            return self._try_in_object_store(step, current)
        return self._merge_in_checkout(step, current)

    def _try_in_object_store(self, step: MergeStep, current: str) -> str:
        check = git.merge_check(self.repo, current, step["head"])
        if check.tree is None:
            step["outcome"], step["conflicting_files"] = CONFLICT, check.conflicts
            return current
        merged = git.commit_tree(self.repo, check.tree, [current, step["head"]], f"awoc dry run: {step['task_id']}")
        if self.options.gate:
            passed, output = self._gate(merged)
            if not passed:
                step["outcome"], step["gate_output"] = GATE_FAILED, output
                return current
        step["outcome"] = "would merge"
        return merged

    def _merge_in_checkout(self, step: MergeStep, current: str) -> str:
        """The step in the checkout, its marker on disk meanwhile: a merge killed in the middle
        leaves it for the next one, which puts the checkout back first."""
        atomic_write_json(self.step_file, {"task_id": step["task_id"], "before": current, "head": step["head"]})
        try:
            merged = self._merge_and_gate(step, current)
        except BaseException:
            # Ctrl-C or a failure in the middle: never half-merged. If even that fails, the marker
            # stays and the next merge tries again
            git.remove_locks_of_killed_git(self.repo)  # its git is dead: nobody else writes here now
            self._undo_step(current, step["head"])
            self.step_file.unlink(missing_ok=True)
            raise
        self.step_file.unlink(missing_ok=True)
        return merged

    def _merge_and_gate(self, step: MergeStep, current: str) -> str:
        message = f"awoc: merge task {step['task_id']} of run {self.run.run_id}"
        done = git.attempt(
            self.repo, "merge", "--no-ff", "--no-edit", "-m", message, step["head"], env=git.identity_env(self.repo)
        )
        if done.returncode != 0:
            self._set_aside_failed_merge(step, done, current)
            return current
        if self.options.gate:
            passed, output = self._gate(None)
            if not passed:
                git.run_git(self.repo, "reset", "--quiet", "--hard", current)
                step["outcome"], step["gate_output"] = GATE_FAILED, output
                return current
        step["outcome"] = "merged"
        return git.head_commit(self.repo) or current

    def _set_aside_failed_merge(self, step: MergeStep, done: Any, current: str) -> None:
        if git.run_git(self.repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).strip():
            files = git.run_git(self.repo, "diff", "--name-only", "--diff-filter=U").split()
            git.run_git(self.repo, "merge", "--abort")
            step["outcome"], step["conflicting_files"] = CONFLICT, files
            return
        self._undo_step(current)
        blocking = _files_in_the_way(done.stderr)
        if blocking:
            again = command_for("delegate-parallel", "merge", self.run.run_id)
            step["outcome"], step["blocking_files"] = BLOCKED, blocking
            step["why"] = f"files in the checkout that git will not overwrite: {', '.join(blocking[:10])}"
            step["to_fix"] = (
                f"move or delete them (they are not committed here, and the branch has its own), then: {again}"
            )
            return
        step["outcome"], step["why"] = BLOCKED, (done.stderr.strip() or done.stdout.strip())[-500:]

    def _resolve(self, step: MergeStep, current: str, landed: list[str]) -> str:
        """Give the branch to the resolver; on success the checkout moves forward to its merge commit."""
        resolver = self.options.resolver
        assert resolver is not None
        if self.options.dry_run:
            step["resolution"] = f"not tried in a dry run (a merge would ask {resolver.agent})"
            return current
        tid = step["task_id"]
        touched = {f["path"] for f in self._files_of(tid)}
        ours = [self._side(t) for t in landed if touched & {f["path"] for f in self._files_of(t)}]
        why = step.get("why") or (
            f"conflict in {', '.join(step.get('conflicting_files') or [])}"
            if step["outcome"] == CONFLICT
            else f"the gate failed after the merge: {str(step.get('gate_output') or '')[-1500:]}"
        )
        gate = (lambda commit: self._gate(commit)) if self.options.gate else None
        message = f"awoc: merge task {tid} of run {self.run.run_id} (conflict resolved by {resolver.agent})"
        commit, said = resolve(
            self.repo, current, step["head"], ours, self._side(tid), why, resolver, gate, message, self.marker
        )
        step["resolution"] = said
        if commit is None:
            return current
        atomic_write_json(self.step_file, {"task_id": tid, "before": current})
        try:
            git.run_git(self.repo, "merge", "--quiet", "--ff-only", commit)
        except BaseException:
            self._undo_step(current)
            raise
        finally:
            self.step_file.unlink(missing_ok=True)
        step["outcome"] = RESOLVED
        return commit

    def _files_of(self, tid: str) -> list[ChangedFile]:
        result = self.results.get(tid)
        worktree = result.get("worktree") if result else None
        changed = worktree.get("files_changed") if worktree else None
        return [f for f in changed or [] if isinstance(f, dict)]

    def _side(self, tid: str) -> Side:
        result = self.results.get(tid)
        return Side(tid, str(self.by_id[tid]["description"]), str(result.get("result") or "") if result else "")

    def _undo_step(self, before: str, head: str | None = None) -> None:
        """The checkout back at BEFORE. With HEAD, the step merging it was interrupted, and its git
        may have been killed half-way (Ctrl-C kills it, and a killed merge's watchdog): the merge's
        files written, staged or not (its lock files are the caller's to remove)."""
        if git.run_git(self.repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).strip():
            git.attempt(self.repo, "merge", "--abort")
        if head is None and git.head_commit(self.repo) == before:
            return
        git.run_git(self.repo, "reset", "--quiet", "--hard", before)
        if head is not None:  # the files it added, written but never staged, are untracked now
            untracked = git.run_git(self.repo, "ls-files", "-z", "--others", "--exclude-standard").split("\0")
            for path in self._written_by(before, head, [p for p in untracked if p]):
                (self.repo / path).unlink(missing_ok=True)

    def _written_by(self, before: str, head: str, paths: list[str]) -> list[str]:
        """Those of PATHS that merging HEAD onto BEFORE writes, holding what it writes there (the
        merge's version, HEAD's, or BEFORE's for a file not written yet)."""
        theirs = set(
            git.run_git(self.repo, "diff", "--name-only", "-z", "--no-renames", f"{before}...{head}").split("\0")
        )
        merged = git.merge_check(self.repo, before, head).tree
        versions = [commit for commit in (merged, head, before) if commit]
        return [p for p in paths if p in theirs and any(_holds(self.repo, p, v) for v in versions)]

    def _undo_interrupted_step(self) -> None:
        """A merge killed in the middle of a step left its marker: the checkout goes back to before
        it, if all it holds is what that step wrote (its watchdog killed its git: nobody writes it
        now). Anything else changed since is never thrown away: the merge refuses, and the marker
        stays until it can put the step back."""
        marker = read_json(self.step_file, default={})
        if not isinstance(marker, dict) or not isinstance(marker.get("before"), str):
            self.step_file.unlink(missing_ok=True)
            return
        git.remove_locks_of_killed_git(self.repo)
        before, head = marker["before"], marker.get("head")
        if not isinstance(head, str) or not git.has_commit(self.repo, head):
            self._undo_step(before)
        elif self._left_by_step(before, head):
            self._undo_step(before, head)
        else:
            raise InputError(
                f"{self.repo} has uncommitted changes or commits made after a merge of task "
                f"{marker.get('task_id')} was killed halfway: put them aside (git stash, or a branch), "
                f"and this merge puts the checkout back to {before[:12]} first"
            )
        self.step_file.unlink(missing_ok=True)

    def _left_by_step(self, before: str, head: str) -> bool:
        """Is the checkout at BEFORE, or at the merge commit of HEAD onto it, with nothing changed
        but what merging HEAD writes?"""
        at = git.head_commit(self.repo)
        parents = git.run_git(self.repo, "rev-list", "--parents", "-n", "1", "HEAD", check=False).split()[1:]
        if at != before and parents != [before, head]:
            return False
        changed = git.uncommitted(self.repo)
        return len(self._written_by(before, head, changed)) == len(changed)

    def _gate(self, commit: str | None) -> tuple[bool, str]:
        """`sh -c GATE` at the checkout's root (COMMIT None), or in a scratch worktree at COMMIT."""
        gate = str(self.options.gate)
        if commit is None:
            return run_gate(gate, self.repo, self.options.gate_timeout_s, self.marker)
        with tempfile.TemporaryDirectory(prefix="awoc-gate-") as scratch:
            where = Path(scratch) / "checkout"
            git.run_git(self.repo, "worktree", "add", "--quiet", "--detach", str(where), commit)
            try:
                return run_gate(gate, where, self.options.gate_timeout_s, self.marker)
            finally:
                git.run_git(self.repo, "worktree", "remove", "--force", str(where), check=False)


def run_gate(gate: str, where: Path, timeout_s: float, marker: str | None = None) -> tuple[bool, str]:
    """Whether GATE passes at WHERE, and the tail of what it printed (MARKER: as run_bounded's)."""
    from awoc_scripts.processes import run_bounded

    code, output = run_bounded(["sh", "-c", gate], where, timeout_s, GATE_OUTPUT_CHARS, marker=marker)
    if code is None:
        return False, f"{output}\n[the gate did not end within {timeout_s:g} s]"
    return code == 0, output


def _files_in_the_way(stderr: str) -> list[str]:
    """The files git names when a merge would overwrite untracked or changed files."""
    files, listing = [], False
    for line in stderr.splitlines():
        if "would be overwritten by merge" in line:
            listing = True
        elif listing and line.startswith("\t"):
            files.append(line.strip())
        elif listing and line.strip():
            listing = False
    return files


def record_merge(run: Run, summary: MergeSummary) -> None:
    """merge.json: every merge of the run, the latest last; the report's Merge section reads it."""
    path = run.dir / MERGE_FILE
    history = read_json(path, default={}) or {}
    merges = [m for m in history.get("merges", []) if isinstance(m, dict)] if isinstance(history, dict) else []
    merges.append({k: v for k, v in summary.items() if k != "overlap"})
    atomic_write_json(path, {"schema": PLAN_SCHEMA, "kind": "merge", "merges": merges[-MERGES_KEPT:]})


def _holds(repo: Path, path: str, tree: str) -> bool:
    """Is the file at PATH of the checkout TREE's version of it (absent where TREE has none)?"""
    wanted = git.attempt(repo, "rev-parse", "-q", "--verify", f"{tree}:{path}").stdout.strip()
    if not (repo / path).is_file():
        return not wanted and not (repo / path).exists()
    return bool(wanted) and git.attempt(repo, "hash-object", "--", path).stdout.strip() == wanted


def _require_clean(repo: Path) -> None:
    if git.run_git(repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).strip():
        raise InputError(f"{repo} is in the middle of a merge: finish it (git commit) or abort it (git merge --abort)")
    changed = git.run_git(repo, "status", "--porcelain", "--untracked-files=no")
    if changed.strip():
        raise InputError(f"{repo} has uncommitted changes: commit or stash them before merging")


def merge_text(summary: MergeSummary) -> str:
    """What landed, what was set aside and why, for a person."""
    lines = []
    for step in summary["steps"]:
        line = f"{step['task_id']}: {step['outcome']} ({step['branch']})"
        if step.get("conflicting_files"):
            line += f" in {', '.join(step['conflicting_files'])}"
        if step.get("why"):
            line += f": {step['why']}"
        lines.append(line)
        if step.get("note"):
            lines.append(f"  note: {step['note']}")
        if step.get("gate_output"):
            tail = step["gate_output"].strip().splitlines()[-5:]
            lines += [f"  gate: {text}" for text in tail]
        if step.get("to_fix"):
            lines.append(f"  to fix: {step['to_fix']}")
        if step.get("resolution"):
            lines.append(f"  resolution: {step['resolution']}")
    if summary["set_aside"]:
        lines.append(f"set aside: {', '.join(summary['set_aside'])} (a second merge tries them again)")
    overlap = summary.get("overlap")
    candidates = {step["task_id"] for step in summary["steps"]}
    for pair in overlap["overlaps"] if overlap else []:
        if not candidates.issuperset(pair["tasks"]):
            continue  # a task that did not succeed: its changes are not merged, whatever they touched
        verdict = (
            "conflict" if pair["conflict"] else "no conflict" if pair["conflict"] is False else "could not be checked"
        )
        lines.append(f"overlap: {' and '.join(pair['tasks'])} changed {', '.join(pair['files'])} ({verdict})")
    return "\n".join(lines) or "nothing to merge"
