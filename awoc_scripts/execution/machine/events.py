"""What happens to a run (events, fed to the machine) and what the machine asks for (effects).

Every event carries the moment it happened (`at`): the machine never reads a clock. Effects are
plain data the run loop carries out in order: start or stop a process, write a result, append
an event, say something to the person watching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from awoc_scripts.execution.claude_cli import Outcome, Tokens
from awoc_scripts.plan_types import JsonObject
from awoc_scripts.run_documents import LeverAnswer, TaskResult
from awoc_scripts.state.store import TaskFiles


@dataclass(frozen=True)
class Moment:
    now: float  # monotonic seconds: durations, deadlines, intervals
    wall: float  # Unix time: what the state files and reports show

    @classmethod
    def of_now(cls) -> Moment:
        """The clocks read: only the run loop does, never the machine."""
        return cls(time.monotonic(), time.time())


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: Moment = field(kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    """The execution begins (a fresh run or a resume)."""


@dataclass(frozen=True)
class Tick(Event):
    """Time passed: deadlines, due retries, the end of a pause, the policies, and what may start."""

    free_memory_mb: float | None = None  # None: not measured this time


@dataclass(frozen=True)
class Spawned(Event):
    """A Start was carried out: the attempt's process runs."""

    task_id: str
    pid: int | None
    files: TaskFiles
    streams: bool  # its output is stream-json, read while it runs to count tokens per turn
    warm_s: float | None = None


@dataclass(frozen=True)
class CannotStart(Event):
    """A Start could not be carried out for a reason that is not the task's fault (a dependency's
    branch is missing, say): the task is skipped."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class StartFailed(Event):
    """A Start or Verify could not be carried out because of the task (its program is missing)."""

    task_id: str
    error: str
    files: TaskFiles | None = None  # the attempt was made (its prompt written) but its program did not start


@dataclass(frozen=True)
class CacheHit(Event):
    task_id: str
    run_id: str  # the earlier run whose result it reuses
    result: TaskResult


@dataclass(frozen=True)
class CacheMiss(Event):
    task_id: str
    key: str | None  # None: the task's files could not be keyed, so its result is not stored
    files: str | None = None


@dataclass(frozen=True)
class OutputRead(Event):
    """New stream-json output of a running attempt (from the offset the machine gave)."""

    task_id: str
    data: bytes


@dataclass(frozen=True)
class AttemptEnded(Event):
    task_id: str
    exit_code: int
    stopped: bool  # it ended because the machine asked for a Stop
    outcome: Outcome
    tokens: Tokens


@dataclass(frozen=True)
class VerificationEnded(Event):
    task_id: str
    exit_code: int
    stopped: bool
    output: str  # the end of what it printed


@dataclass(frozen=True)
class SignalReceived(Event):
    name: str  # SIGINT, SIGTERM


@dataclass(frozen=True)
class LeverPulled(Event):
    """A lever asked by a person or a script (a control in state.json), or given to a saved run."""

    action: str
    args: JsonObject
    request_id: str = ""
    applied_by: str = "orchestrator"


@dataclass(frozen=True)
class Failed(Event):
    """parallel-error-handler: a task failed where the machine could not see it (a saved run)."""

    task_id: str
    error: str
    exit_code: int


@dataclass(frozen=True)
class Crashed(Event):
    """The loop itself failed (a full disk, a bug): the run stops."""

    reason: str
    interrupted: bool = False


@dataclass(frozen=True)
class Shutdown(Event):
    """Every process is gone: whatever has not ended ends now, and the run with it."""


# -- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    task_id: str


@dataclass(frozen=True)
class LookUpCache:
    """Before its first attempt: has an earlier run done exactly this task? (CacheHit / CacheMiss)"""

    task_id: str


@dataclass(frozen=True)
class Verify:
    task_id: str


@dataclass(frozen=True)
class Stop:
    task_id: str


@dataclass(frozen=True)
class TaskEnded:
    """Write the task's result (merged with what its isolation adds, if it started)."""

    task_id: str
    status: str
    result: TaskResult
    started: bool
    cache_key: str | None = None  # store the result under it: a success this run produced


@dataclass(frozen=True)
class Record:
    """Append an event to events.jsonl."""

    kind: str
    fields: JsonObject


@dataclass(frozen=True)
class Note:
    """Say it to the person watching."""

    text: str


@dataclass(frozen=True)
class LeverAnswered:
    request_id: str
    changed: LeverAnswer


Effect = Start | LookUpCache | Verify | Stop | TaskEnded | Record | Note | LeverAnswered
