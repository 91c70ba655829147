"""What the lever scripts print: the outcome of a retry, an abort, a failure handled."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from awoc_scripts.flow.runs import RunSummary
    from awoc_scripts.run_documents import NotRetried, RetriedTask


class PartialEntry(TypedDict, total=False):
    """A task in an abort's partial results: what it produced, or why it did not succeed."""

    task_id: str
    agent: str
    task: str
    result_excerpt: str
    result_chars: int
    result_file: str
    tokens_used: int
    status: str
    why: str
    exit_code: int | None
    retry: str


class PartialResults(TypedDict):
    run_id: str
    status: str | None
    executing: bool
    stop_reason: str | None
    total_tasks: int
    completed_successfully: int
    counts: dict[str, int]
    tokens_used: int
    succeeded: list[PartialEntry]
    not_succeeded: list[PartialEntry]


class AbortOutcome(TypedDict, total=False):
    aborted: bool
    reason: str
    applied_by: str
    cancelled: list[str]
    why_not: str | None
    stopping: list[str]
    orchestrator_finished: bool
    killed_pids: list[int]
    partial_results: PartialResults


class RetryOutcome(TypedDict, total=False):
    run_id: str
    name: str
    retried: list[RetriedTask]  # each requeued task: its budget before and after, the error it is told
    reopened_dependents: list[str]
    not_retried: list[NotRetried]
    applied_by: str
    executed_by: str | None
    run: RunSummary  # the resumed run's summary
    skipped: str  # not retried here: the orchestrator retries it itself


class Skipped(TypedDict):
    task_id: str
    reason: str


class FailureRecord(TypedDict):
    task_id: str
    status: str
    exit_code: int
    error: str
    recorded_in_state: bool
    skipped_as_a_result: list[Skipped]
    failed_tasks: list[str]


class FailureDecision(TypedDict, total=False):
    run_id: str
    failure: FailureRecord
    failed_count: int
    failure_tolerance: int
    decision: str
    why: str
    retry: RetryOutcome
    abort: AbortOutcome
