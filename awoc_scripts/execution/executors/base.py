"""Executors run task attempts. The run loop talks only to this interface, so another executor
(a distributed one, say) is a new module beside local.py, not an edit of the loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from awoc_scripts.execution.runners import Invocation


@dataclass(frozen=True)
class Attempt:
    task_id: str
    invocation: Invocation
    cwd: Path
    prompt_file: Path
    stdout_file: Path
    stderr_file: Path
    marker: str  # AWOC_TASK=<run_id>/<task_id>, to find the task's processes wherever they went


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class Ended:
    task_id: str
    exit_code: int
    stopped: bool  # it ended because stop() was called


class Executor(ABC):
    @abstractmethod
    def start(self, attempt: Attempt) -> Started:
        """Start the attempt. Raises OSError when its program cannot be started."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Ended]:
        """Block up to `timeout` seconds; return the attempts that ended meanwhile."""

    @abstractmethod
    def stop(self, task_id: str) -> None:
        """Begin stopping an attempt (it is reported by wait() once it is gone)."""

    @abstractmethod
    def running(self) -> list[str]: ...

    @abstractmethod
    def shutdown(self) -> None:
        """Stop everything still running and wait until it is gone."""
