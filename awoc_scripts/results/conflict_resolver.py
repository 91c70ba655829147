"""`merge --resolve-with AGENT`: a branch set aside by a conflict (or by its gate) goes to an agent.

In a scratch worktree at the merge so far, the merge is attempted again, so the conflicted files
hold git's markers. The agent (the claude CLI, or AWOC_AGENT_COMMAND, as for any task) gets the
conflict, both sides' task descriptions and results and the gate's output, with a budget and a
timeout; what it leaves, free of markers, becomes the merge commit if the gate passes there.
The checkout itself only ever moves forward to a resolution that passed.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awoc_scripts import git
from awoc_scripts.execution.claude_cli import build_invocation, read_outcome
from awoc_scripts.input.agents import find_agent
from awoc_scripts.processes import run_bounded

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.plan_types import Task

MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)
RESULT_CHARS = 3000


@dataclass(frozen=True)
class Resolver:
    """The agent that resolves merge conflicts, and its limits."""

    agent: str
    timeout_s: float
    token_budget: int
    cost_budget_usd: float | None


@dataclass(frozen=True)
class Side:
    """One of the tasks whose changes meet in the conflict."""

    task_id: str
    description: str
    result: str


def resolve(
    repo: Path,
    current: str,
    head: str,
    ours: list[Side],
    theirs: Side,
    why: str,
    resolver: Resolver,
    gate: Any,
    message: str,
    marker: str | None = None,
) -> tuple[str | None, str]:
    """The resolution commit (its first parent CURRENT, its second HEAD), or None; and what happened.
    GATE(commit) -> (passed, output) checks it. The resolver carries MARKER, as a task does."""
    with tempfile.TemporaryDirectory(prefix="awoc-resolve-") as scratch:
        where = Path(scratch) / "checkout"
        git.run_git(repo, "worktree", "add", "--quiet", "--detach", str(where), current)
        try:
            attempt = git.attempt(where, "merge", "--no-ff", "--no-commit", head, env=git.identity_env(repo))
            conflicted = git.run_git(where, "diff", "--name-only", "--diff-filter=U").split()
            if attempt.returncode != 0 and not conflicted:
                return None, f"the merge could not even be attempted: {attempt.stderr.strip()[-300:]}"
            prompt = resolution_prompt(where, conflicted, ours, theirs, why)
            ok, said = _run_agent(where, prompt, resolver, marker)
            if not ok:
                return None, f"the resolver did not finish: {said}"
            left = [name for name in conflicted if _has_markers(where / name)]
            if left:
                return None, f"the resolver left conflict markers in {', '.join(left)}"
            git.run_git(where, "add", "-A")
            if not git.run_git(where, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).strip():
                return None, "the resolver ended the merge itself (no merge left to commit)"
            git.run_git(where, "commit", "--quiet", "--no-verify", "-m", message, env=git.identity_env(repo))
            commit = git.run_git(where, "rev-parse", "HEAD").strip()
            if gate is not None:
                passed, output = gate(commit)
                if not passed:
                    return None, f"the gate fails on the resolution: {output.strip()[-500:]}"
            return commit, f"resolved by {resolver.agent}: {said}"
        finally:
            git.run_git(repo, "worktree", "remove", "--force", str(where), check=False)


def resolution_prompt(where: Path, conflicted: list[str], ours: list[Side], theirs: Side, why: str) -> str:
    lines = [
        f"# Task resolve-{theirs.task_id} (high priority)",
        "",
        f"Resolve a merge conflict in the git checkout {where}. The branch of task {theirs.task_id} is being",
        "merged into work that already holds the changes of the tasks below. Edit the conflicted files so",
        "that both sides' intents are kept, remove every conflict marker (<<<<<<<, =======, >>>>>>>),",
        "and do not commit: the merge is committed for you once the files are free of markers.",
        "",
        f"Why it was set aside: {why}",
        "",
        "## Conflicted files",
        *[f"- {where / name}" for name in conflicted],
        "",
        f"## The incoming task: {theirs.task_id}",
        theirs.description,
        "",
        "Its result:",
        theirs.result[-RESULT_CHARS:],
    ]
    for side in ours:
        lines += ["", f"## Already merged: {side.task_id}", side.description, ""]
        lines += ["Its result:", side.result[-RESULT_CHARS:]]
    return "\n".join(lines) + "\n"


def _run_agent(where: Path, prompt: str, resolver: Resolver, marker: str | None) -> tuple[bool, str]:
    """The resolver, as any agent task runs: its definition, permissions, runner; in WHERE."""
    agent = find_agent(resolver.agent, Path.cwd(), Path.home())
    task: Task = {  # what the runners read of a task
        "task_id": "resolve",
        "agent": resolver.agent,
        "description": "resolve a merge conflict",
        "priority": "high",
        "token_budget": resolver.token_budget,
        "budget_source": "explicit",
        "dependencies": [],
        "dependency_mode": "all_complete",
        "critical_dependencies": [],
        "condition": None,
        "timeout": resolver.timeout_s,
        "estimated_duration": None,
        "retries": 0,
        "command": None,
        "model": None,
        "tools": None,
        "max_turns": None,
        "context": None,
        "isolation": "process",
        "index": 0,
    }
    environ: Mapping[str, str] = dict(os.environ)
    invocation = build_invocation(task, agent, {}, environ, {}, resolver.cost_budget_usd)
    argv = invocation.argv
    if invocation.role_in_prompt:
        prompt = f"# Your role: {resolver.agent}\n\n{agent.system_prompt.strip()}\n\n{prompt}"
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as handle:
        handle.write(prompt)
    try:
        prompt_file = Path(handle.name)
        code, output = run_bounded(
            argv, where, resolver.timeout_s, 200_000, stdin=prompt_file, env=invocation.env, marker=marker
        )
    finally:
        os.unlink(handle.name)
    if code is None:
        return False, f"it did not end within {resolver.timeout_s:g} s"
    outcome = read_outcome(code, output.encode(), output[-2000:], invocation.kind != "command")
    if not outcome.ok:
        return False, (outcome.error or f"exit code {code}")[:500]
    if outcome.denials:
        return False, f"tool calls were refused: {outcome.denials[:3]}"
    if outcome.unrun:
        from awoc_scripts.execution.outcomes import unrun_text

        return False, (unrun_text(outcome.unrun) or "")[:500]
    return True, outcome.result.strip()[-300:] or "done"


def _has_markers(path: Path) -> bool:
    try:
        return MARKER.search(path.read_text(errors="replace")) is not None
    except (FileNotFoundError, IsADirectoryError):
        return False
