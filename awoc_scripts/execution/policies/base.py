"""The interface every pressure policy has: look at the live run, and pull its levers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.plan_types import JsonObject


class Note(Protocol):
    def note(self, text: str) -> None: ...


class Events(Protocol):
    def add(self, kind: str, **fields: Any) -> None: ...


class LiveRun(Protocol):
    """What a policy may see of the run and do to it."""

    @property
    def started_mono(self) -> float: ...
    @property
    def events(self) -> Events: ...
    @property
    def display(self) -> Note: ...
    @property
    def records(self) -> dict[str, TaskRecord]: ...

    def running(self) -> list[str]: ...
    def budget_of(self, task_id: str) -> int: ...
    def tokens_spent(self) -> int: ...
    def active_elapsed(self, now: float) -> float: ...
    def cost_spent(self) -> float: ...
    def status_of(self, task_id: str) -> str: ...
    def pull_lever(self, action: str, args: JsonObject, why: str) -> None: ...
    def abort(self, reason: str, running_status: str) -> None: ...
    def stop_starting(self, reason: str, cancel_reason: str) -> None:
        """Nothing new starts; what is pending is cancelled; running tasks finish."""

    def stop_task(self, task_id: str, status: str, error: str) -> None:
        """Stop a running task; it ends with STATUS."""

    def requeue(self, task_id: str, why: str) -> None:
        """Stop a running task; it runs again later, and the stopped attempt does not count."""


class Policy(Protocol):
    name: str
    interval_s: float  # how often it looks (0: on every pass of the loop)

    def check(self, run: LiveRun, now: float) -> None: ...
