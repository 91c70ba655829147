"""Plain processes: every task runs in the run's working directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from awoc_scripts.plan_types import Task
    from awoc_scripts.run_documents import IsolationExtras


class ProcessIsolation:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def run_starting(self) -> list[str]:
        return []

    def workdir(self, task: Task) -> Path:
        return self.cwd

    def task_ended(self, task: Task, status: str) -> IsolationExtras:
        return {}

    def run_ended(self) -> list[str]:
        return []
