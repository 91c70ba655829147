"""What the run loop knows of each task while it executes, and the options it runs with."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from awoc_scripts.execution.runners import Outcome, Tokens, TurnCounter
from awoc_scripts.state.store import TaskFiles, now_iso


@dataclass
class Options:
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    usage_limit_pause_s: float = 300.0  # a usage limit that names no reset: try again after this
    min_free_memory_mb: int | None = None  # default: parallel_config's
    cwd: Path = field(default_factory=Path.cwd)
    home: Path = field(default_factory=Path.home)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    memory_probe: Callable[[], float] | None = None  # MB available; replaceable for tests


@dataclass
class TaskRecord:
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
    workdir: Path | None = None  # where its current attempt runs
    verifying_since: float | None = None  # its verification runs (monotonic start)
    verify: dict[str, object] | None = None  # what its last verification did
    cache_key: str | None = None  # under which its result is stored once it succeeds
    cached_from: str | None = None  # the earlier run whose result it reuses
    saved: dict[str, object] | None = None  # what reusing it saved: tokens, cost_usd
    denials: list[dict[str, object]] = field(default_factory=list)  # refused tool calls of every attempt

    def cost_left(self) -> float | None:
        return None if self.cost_budget is None else self.cost_budget - self.cost_usd

    def begin_attempt(self, timeout_s: float, stream: bool) -> None:
        """Its clock starts; the first attempt's start stays the task's start."""
        self.started_at = self.started_at if self.attempts > 1 and self.started_at else now_iso()
        self.start_mono = time.monotonic()
        self.first_start_mono = self.first_start_mono or self.start_mono
        self.deadline = self.start_mono + timeout_s
        self.stream = TurnCounter() if stream else None

    def absorb(self, exit_code: int, outcome: Outcome, tokens: Tokens) -> None:
        """What an attempt that ended produced and spent."""
        self.exit_code = exit_code
        self.deadline = None
        self.tokens = self.tokens + tokens
        self.cost_usd += float(outcome.cost_usd or 0)
        self.result = outcome.result
        self.session_id = outcome.session_id or self.session_id
        self.denials += [{**denial, "attempt": self.attempts} for denial in outcome.denials]
