"""What happens to a run (events, fed to the machine) and what the machine asks for (effects).

Every event carries the moment it happened (`at`): the machine never reads a clock. Effects are
plain data the run loop carries out in order: start or stop a process, write a result, append
an event, say something to the person watching.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, dataclass_transform

if TYPE_CHECKING:
    from awoc_scripts.execution.attempt_report import Outcome, Tokens
    from awoc_scripts.plan_types import JsonObject
    from awoc_scripts.run_documents import LeverAnswer, TaskResult
    from awoc_scripts.state.store import TaskFiles


_MISSING: Any = object()


class _KeywordOnly:
    def __init__(self, default: Any) -> None:
        self.default = default


def keyword_only(*, default: Any = _MISSING, kw_only: bool = True) -> Any:
    """A field given by name only (`at=`), after the positional ones of every subclass."""
    return _KeywordOnly(default)


@dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(keyword_only,))
class Message:
    """A record with dataclass semantics for the type checker, made without dataclasses: generating
    the methods of some thirty dataclasses costs 20 ms at every start of a lever script."""

    _positional: ClassVar[tuple[str, ...]] = ()
    _keyword: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, object]] = {}

    def __init_subclass__(cls) -> None:
        cls.__init__ = Message.__init__  # type: ignore[method-assign]  # each kind makes its own
        positional, keyword, defaults = list(cls._positional), list(cls._keyword), dict(cls._defaults)
        for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063 - own fields only, as written
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, _KeywordOnly):
                keyword.append(name)
                value = value.default
            else:
                positional.append(name)
            if value is not _MISSING:
                defaults[name] = value
                delattr(cls, name)
        cls._positional, cls._keyword, cls._defaults = tuple(positional), tuple(keyword), defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # the first record of each kind makes its class's own __init__ (as dataclasses would, but
        # only for the kinds a process uses: a lever script makes five, not thirty)
        cls = type(self)
        cls.__init__ = _own_init(cls)  # type: ignore[method-assign]
        cls.__init__(self, *args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # equal by value, and some hold dicts

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"{type(self).__name__}({shown})"


def _own_init(cls: type[Message]) -> Any:
    namespace: dict[str, object] = {}

    def parameter(name: str) -> str:
        if name not in cls._defaults:
            return name
        namespace[f"_default_{name}"] = cls._defaults[name]
        return f"{name}=_default_{name}"

    parameters = ["self", *map(parameter, cls._positional)]
    if cls._keyword:
        parameters += ["*", *map(parameter, cls._keyword)]
    body = "".join(f"\n    self.{name} = {name}" for name in (*cls._positional, *cls._keyword)) or "\n    pass"
    exec(f"def __init__({', '.join(parameters)}):{body}", namespace)
    return namespace["__init__"]


class Moment(Message):
    now: float  # monotonic seconds: durations, deadlines, intervals
    wall: float  # Unix time: what the state files and reports show

    @classmethod
    def of_now(cls) -> Moment:
        """The clocks read: only the run loop does, never the machine."""
        return cls(time.monotonic(), time.time())


# -- events -------------------------------------------------------------------------------------


class Event(Message):
    at: Moment = keyword_only(kw_only=True)


class RunStarted(Event):
    """The execution begins (a fresh run or a resume)."""


class Tick(Event):
    """Time passed: deadlines, due retries, the end of a pause, the policies, and what may start."""

    free_memory_mb: float | None = None  # None: not measured this time


class Spawned(Event):
    """A Start was carried out: the attempt's process runs."""

    task_id: str
    pid: int | None
    files: TaskFiles
    streams: bool  # its output is stream-json, read while it runs to count tokens per turn
    warm_s: float | None = None


class CannotStart(Event):
    """A Start could not be carried out for a reason that is not the task's fault (a dependency's
    branch is missing, say): the task is skipped."""

    task_id: str
    reason: str


class StartFailed(Event):
    """A Start or Verify could not be carried out because of the task (its program is missing)."""

    task_id: str
    error: str
    files: TaskFiles | None = None  # the attempt was made (its prompt written) but its program did not start


class CacheHit(Event):
    task_id: str
    run_id: str  # the earlier run whose result it reuses
    result: TaskResult


class CacheMiss(Event):
    task_id: str
    key: str | None  # None: the task's files could not be keyed, so its result is not stored
    files: str | None = None


class OutputRead(Event):
    """New stream-json output of a running attempt (from the offset the machine gave)."""

    task_id: str
    data: bytes


class AttemptEnded(Event):
    task_id: str
    exit_code: int
    stopped: bool  # it ended because the machine asked for a Stop
    outcome: Outcome
    tokens: Tokens
    counted: int  # of TOKENS, those that count against the task's budget (TurnCounter.counted)


class VerificationEnded(Event):
    task_id: str
    exit_code: int
    stopped: bool
    output: str  # the end of what it printed


class SignalReceived(Event):
    name: str  # SIGINT, SIGTERM


class LeverPulled(Event):
    """A lever asked by a person or a script (a control in state.json), or given to a saved run."""

    action: str
    args: JsonObject
    request_id: str = ""
    applied_by: str = "orchestrator"


class Failed(Event):
    """parallel-error-handler: a task failed where the machine could not see it (a saved run)."""

    task_id: str
    error: str
    exit_code: int


class Crashed(Event):
    """The loop itself failed (a full disk, a bug): the run stops."""

    reason: str
    interrupted: bool = False


class Shutdown(Event):
    """Every process is gone: whatever has not ended ends now, and the run with it."""


# -- effects ------------------------------------------------------------------------------------


class Start(Message):
    task_id: str


class LookUpCache(Message):
    """Before its first attempt: has an earlier run done exactly this task? (CacheHit / CacheMiss)"""

    task_id: str


class Verify(Message):
    task_id: str


class Stop(Message):
    task_id: str


class TaskEnded(Message):
    """Write the task's result (merged with what its isolation adds, if it started)."""

    task_id: str
    status: str
    result: TaskResult | None  # None: it never started (TaskLedger.result_of makes it when needed)
    started: bool
    cache_key: str | None = None  # store the result under it: a success this run produced


class Record(Message):
    """Append an event to events.jsonl."""

    kind: str
    fields: JsonObject


class Note(Message):
    """Say it to the person watching."""

    text: str


class LeverAnswered(Message):
    request_id: str
    changed: LeverAnswer


Effect = Start | LookUpCache | Verify | Stop | TaskEnded | Record | Note | LeverAnswered
