"""The states a task goes through, for modules that need the names and nothing else."""

PENDING, RUNNING = "pending", "running"
SUCCEEDED, FAILED, TIMED_OUT, BUDGET_EXCEEDED = "succeeded", "failed", "timed_out", "budget_exceeded"
CANCELLED, SKIPPED = "cancelled", "skipped"
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, BUDGET_EXCEEDED, CANCELLED, SKIPPED})
FAILURES = frozenset({FAILED, TIMED_OUT, BUDGET_EXCEEDED})
