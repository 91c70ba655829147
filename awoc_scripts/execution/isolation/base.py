"""How a task's working directory is made. The run loop asks its task's isolation for a directory
before each attempt and tells it when the task has ended; each mode is a module beside this one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from awoc_scripts.plan_types import Task
    from awoc_scripts.run_documents import IsolationExtras


class CannotStart(Exception):
    """The task cannot run in this isolation (its dependencies' changes conflict, say): it is skipped."""


class Isolation(Protocol):
    def run_starting(self) -> list[str]:
        """An execution of the run begins; returns notes for the events."""

    def workdir(self, task: Task) -> Path:
        """The directory the task's next attempt runs in. Raises CannotStart."""

    def task_ended(self, task: Task, status: str) -> IsolationExtras:
        """The task's last attempt ended: what its result records of its working directory."""

    def run_ended(self) -> list[str]:
        """The run's executions end: clean up; returns notes for the events."""
