"""Executors run task attempts. The run loop talks only to this interface, so another executor
(a distributed one, say) is a new module beside local.py, not an edit of the loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from awoc_scripts.execution.claude_cli import Invocation
    from awoc_scripts.run_documents import WhereRan


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task, as an executor starts it."""

    task_id: str
    invocation: Invocation
    cwd: Path
    prompt_file: Path
    stdout_file: Path
    stderr_file: Path
    marker: str  # AWOC_TASK=<run_id>/<task_id>, to find the task's processes wherever they went
    timeout_s: float = 0.0  # the loop enforces it; an executor may enforce it where the task runs too
    # started warm, the program reads its late prompt as one stream-json user message (the claude
    # CLI gives up on a text stdin that stays empty for 3 s, and then ends without a prompt)
    prompt_as_message: bool = False


@dataclass(frozen=True)
class Started:
    """What start() tells the loop about the process it started."""

    pid: int | None  # None when the process is on another machine
    warm_s: float | None = None  # how long its process had been started, waiting for the prompt


@dataclass(frozen=True)
class Ended:
    """An attempt whose process has ended, and its exit code."""

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

    def warm(self, attempt: Attempt) -> int | None:
        """Start the attempt's process now with its prompt withheld: start() of the same attempt
        then only writes the prompt to its stdin. Returns its pid; None where this executor
        cannot (then nothing was started)."""
        return None

    def discard_warm(self, task_id: str) -> None:  # noqa: B027 - nothing to discard where warm() starts nothing
        """Stop a warm process that will not be used, with everything it started."""

    def warm_ids(self) -> list[str]:
        return []

    def keep(self, pid: int) -> None:  # noqa: B027 - only an executor that kills orphans needs to know
        """PID is a child of this process that belongs to no task (the run's watchdog): it is
        never taken for an orphan a task left."""

    def where_ran(self, task_id: str) -> WhereRan | None:
        """Where the task's last attempt ran, for its result (None: this machine, as its pid says)."""
        return None
