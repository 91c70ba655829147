"""Plain processes: every task runs in the run's working directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from awoc_scripts.plan_types import Task


class ProcessIsolation:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def run_starting(self) -> list[str]:
        return []

    def workdir(self, task: Task) -> Path:
        return self.cwd

    def task_ended(self, task: Task, status: str) -> dict[str, Any]:
        return {}

    def run_ended(self) -> list[str]:
        return []
