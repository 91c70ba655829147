"""Prompt composition with context sharing.

Order: shared context (identical for every task, so the provider's prompt cache reuses it),
the agent's role when the runner has no system prompt (identical for every task of that agent),
then the task, then the results of its finished dependencies, each cut to a bounded size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from awoc_scripts.plan_types import Task

MAX_DEPENDENCY_RESULT_CHARS = 4000
VERIFICATION_FAILED = "verification"  # how the reason of an attempt whose verification failed starts
# how the reason of an attempt starts when its sandbox failed to start some of its calls: nothing the
# agent did was wrong, so its retry is the whole task again, at the same budget
SANDBOX_FAILED = "Claude Code's sandbox failed to start"
# how it starts when the provider refused its requests (429, 529) past the last wait a task gets
PROVIDER_REFUSED = "The provider kept refusing its requests"
NOT_ITS_FAULT = (SANDBOX_FAILED, PROVIDER_REFUSED)  # reasons whose retry is the whole task again


@dataclass(frozen=True)
class DependencyResult:
    """A dependency's result, as a dependent's prompt carries it."""

    task_id: str
    agent: str
    status: str
    result: str
    result_file: str


def cut(text: str, limit: int = MAX_DEPENDENCY_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters cut; the full result is in the file above]"


def compose_prompt(
    task: Task,
    *,
    shared_context: str,
    role: str | None,
    token_budget: int,
    dependencies: Sequence[DependencyResult],
    previous_error: str | None = None,
) -> str:
    parts: list[str] = []
    if shared_context.strip():
        parts.append(f"# Shared context\n\n{shared_context.strip()}\n")
    if role:
        parts.append(f"# Your role: {task['agent']}\n\n{role.strip()}\n")
    parts.append(f"# Task {task['task_id']} ({task['priority']} priority)\n\n{task['description']}\n")
    if task.get("context"):
        parts.append(f"## Context for this task\n\n{task['context']}\n")
    parts.append(f"Work within about {token_budget} tokens in total; keep the answer focused.\n")
    if previous_error is not None:
        if previous_error.startswith(VERIFICATION_FAILED):
            advice = "Its work did not pass the verification above: fix what it reports, then stop."
        elif previous_error.startswith(NOT_ITS_FAULT):
            advice = "This was not the task's fault: do the whole task again."
        else:
            advice = (
                "This time, deliver a narrower result: the essential part of the task only, and say what you left out."
            )
        parts.append(
            "## A previous attempt failed\n\n"
            + "\n".join(f"> {line}" for line in previous_error.strip().splitlines()[:20])
            + f"\n\n{advice}\n"
        )
    if dependencies:
        parts.append("# Results of the tasks this one depends on\n")
        for dep in dependencies:
            parts.append(
                f"## {dep.task_id} ({dep.agent}, {dep.status})\nFull result: {dep.result_file}\n\n{cut(dep.result)}\n"
            )
    return "\n".join(parts)
