"""The isolation modes of one run, each task sent to its own; failures of the clean-up become notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.errors import AwocError
from awoc_scripts.execution.isolation.process import ProcessIsolation

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from awoc_scripts.execution.isolation.base import Isolation
    from awoc_scripts.execution.isolation.worktree import WorktreeIsolation
    from awoc_scripts.plan_types import Plan, Task
    from awoc_scripts.run_documents import IsolationExtras, TaskResult
    from awoc_scripts.state.store import EventBuffer, Run


class Workspaces:
    def __init__(
        self,
        run: Run,
        plan: Plan,
        cwd: Path,
        by_id: dict[str, Task],
        status_of: Callable[[str], str],
        events: EventBuffer,
        keep_worktrees: bool,
    ) -> None:
        self.events = events
        self.modes: dict[str, Isolation] = {"process": ProcessIsolation(cwd)}
        # the shared directory's files as last seen, for cache keys: seen again once a process task ended
        self._directory_files: tuple[Path, str | None] | None = None
        self.worktrees: WorktreeIsolation | None = None
        base = plan.get("git")
        if base is not None:  # git is loaded only for a run with worktree tasks
            from awoc_scripts.execution.isolation.worktree import WorktreeIsolation

            self.worktrees = WorktreeIsolation(run, base, by_id, status_of, events, keep_worktrees)
            self.modes["worktree"] = self.worktrees

    def workdir(self, task: Task) -> Path:
        """Raises CannotStart (the task is skipped) or AwocError (it fails)."""
        return self.modes[task["isolation"]].workdir(task)

    def files_key(self, task: Task, cwd: Path) -> str | None:
        """What the files a task works on are, for its cache key (None: not cacheable)."""
        from awoc_scripts.execution.result_cache import directory_files, worktree_files

        worktrees = self._worktrees_of(task)
        if worktrees is not None:
            return worktree_files(worktrees.repo, worktrees.starting_point(task))
        if self._directory_files is None or self._directory_files[0] != cwd:
            self._directory_files = (cwd, directory_files(cwd))
        return self._directory_files[1]

    def adopt(self, task: Task, cached_result: TaskResult) -> bool:
        """Make what a reused result needs in this run (a worktree task's branch)."""
        worktrees = self._worktrees_of(task)
        if worktrees is None:
            return True
        worktree = cached_result.get("worktree")
        return isinstance(worktree, dict) and worktrees.adopt(task, worktree)

    def _worktrees_of(self, task: Task) -> WorktreeIsolation | None:
        """The worktree mode, for a task that runs in one (None for a process task)."""
        return self.worktrees if self.modes[task["isolation"]] is self.worktrees else None

    def task_ended(self, task: Task, status: str, session_id: str | None, ran: bool = True) -> IsolationExtras:
        if task["isolation"] == "process" and ran:
            # what it wrote in the shared directory changes the files the next tasks see
            self._directory_files = None
        try:
            extras = self.modes[task["isolation"]].task_ended(task, status)
        except AwocError as exc:  # a broken repository must not lose the task's result
            return {"isolation_error": exc.message}
        if session_id and "worktree" in extras:
            extras["worktree"]["session_id"] = session_id  # its transcript is found by the worktree's path
        return extras

    def run_starting(self) -> None:
        self._notes(lambda mode: mode.run_starting())

    def run_ended(self) -> None:
        self._notes(lambda mode: mode.run_ended())

    def _notes(self, step: Callable[[Isolation], list[str]]) -> None:
        for mode in self.modes.values():
            try:
                notes = step(mode)
            except AwocError as exc:
                notes = [f"clean-up failed: {exc.message}"]
            for note in notes:
                self.events.add("isolation", note=note)
