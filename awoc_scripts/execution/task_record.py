"""What the run knows of each task while it executes: one record per task, owned by the run machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from awoc_scripts.execution.attempt_report import Outcome, Tokens, TurnCounter
from awoc_scripts.state.store import TaskFiles, iso_of

if TYPE_CHECKING:
    from awoc_scripts.run_documents import Denial, Saving, Verification


@dataclass(eq=False)
class TaskRecord:
    """Everything the run knows of one task while it executes."""

    budget: int
    attempts: int = 0
    pid: int | None = None
    pid_create_time: float | None = None
    pid_start_ticks: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    start_mono: float | None = None
    first_start_mono: float | None = None
    deadline: float | None = None
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    result: str = ""
    tokens: Tokens = field(default_factory=Tokens)
    counted: int = 0  # of those, what counts against its token budget (TurnCounter.counted)
    cost_usd: float = 0.0
    stop_status: str | None = None  # why we stopped it: timed_out, budget_exceeded, cancelled, requeue
    previous_error: str | None = None
    transient_waits: int = 0
    stream: TurnCounter | None = None
    warnings: list[str] = field(default_factory=list)
    files: TaskFiles | None = None
    session_id: str | None = None
    cost_budget: float | None = None  # dollars for the whole task (all attempts), when it has a budget
    cost_cap_usd: float | None = None  # what the current attempt may spend: set at its start
    on_denied: str = "fail"  # what a refused tool call does to it: "fail" or "warn"
    verifying_since: float | None = None  # its verification runs (monotonic start)
    verify: Verification | None = None  # what its last verification did
    cache_key: str | None = None  # under which its result is stored once it succeeds
    cached_from: str | None = None  # the earlier run whose result it reuses
    saved: Saving | None = None  # what reusing it saved
    denials: list[Denial] = field(default_factory=list)  # refused tool calls of every attempt

    def cost_left(self) -> float | None:
        return None if self.cost_budget is None else self.cost_budget - self.cost_usd

    def begin_attempt(self, timeout_s: float, stream: bool, now: float, wall: float) -> None:
        """Its clock starts; the first attempt's start stays the task's start."""
        self.started_at = self.started_at if self.attempts > 1 and self.started_at else iso_of(wall)
        self.start_mono = now
        self.first_start_mono = self.first_start_mono or self.start_mono
        self.deadline = self.start_mono + timeout_s
        self.stream = TurnCounter() if stream else None

    def absorb(self, exit_code: int, outcome: Outcome, tokens: Tokens, counted: int) -> None:
        """What an attempt that ended produced and spent."""
        self.exit_code = exit_code
        self.deadline = None
        self.tokens = self.tokens + tokens
        self.counted += counted
        self.cost_usd += float(outcome.cost_usd or 0)
        self.result = outcome.result
        self.session_id = outcome.session_id or self.session_id
        self.denials += [{"tool": d["tool"], "input": d["input"], "attempt": self.attempts} for d in outcome.denials]
