"""What an attempt left behind: its outcome and tokens, read from the files it wrote."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from awoc_scripts.execution.attempt_report import Outcome, Tokens, TurnCounter, describe_denials
from awoc_scripts.execution.prompts import SANDBOX_FAILED
from awoc_scripts.state.statuses import BUDGET_EXCEEDED, FAILED, SUCCEEDED

if TYPE_CHECKING:
    from pathlib import Path

    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.state.store import TaskFiles

STDERR_TAIL_BYTES = 4000
# what of a task's output is read: its end, where an agent's result line is. The whole output
# stays in its stdout.log, however much a task prints; memory and the run's documents stay bounded.
OUTPUT_TAIL_BYTES = 4 * 1024 * 1024
RESULT_CHARS = 64_000


def attempt_outcome(
    exit_code: int, files: TaskFiles, stream: TurnCounter | None, agent: bool = True, sandboxed: bool = True
) -> tuple[Outcome, Tokens]:
    """What the attempt's files say. Token and cost numbers are an AGENT runner's alone: a
    command's output is its text, whatever it claims to have used."""
    stdout, size = _read_end(files.stdout, OUTPUT_TAIL_BYTES)
    from awoc_scripts.execution.claude_cli import read_outcome  # the protocol: not needed by the machine

    stderr_tail = read_tail(files.stderr, STDERR_TAIL_BYTES) if exit_code != 0 else ""
    outcome = read_outcome(exit_code, stdout, stderr_tail, agent, sandboxed)
    outcome.result = bounded_result(outcome.result, size, files.stdout)
    tokens = outcome.tokens
    if agent and stream is not None and stream.total().total > tokens.total:
        tokens = stream.total()  # stopped before its final result line
    return outcome, tokens


def attempt_counted(stream: TurnCounter | None, tokens: Tokens, files: TaskFiles) -> int:
    """Of an ended attempt's TOKENS, those that count against its task's budget
    (TurnCounter.counted). Without its turns to look at (a command, an agent command, the CLI's
    json output), every token it reports counts."""
    if stream is None:
        return tokens.total
    stream.feed(read_from(files.stdout, stream.offset))  # what it wrote since the last look
    return stream.counted(tokens.output)


def over_budget(counted: int, budget: int) -> str:
    return f"used {counted} tokens of its own (what it wrote and added to its context), over its budget of {budget}"


def bounded_result(text: str, output_bytes: int, path: Path) -> str:
    """TEXT, or its end with a line saying where the rest is, when it is longer than RESULT_CHARS
    or comes from an output too long to read whole."""
    if len(text) <= RESULT_CHARS and output_bytes <= OUTPUT_TAIL_BYTES:
        return text
    return f"[output cut: the whole {output_bytes} bytes are in {path}]\n" + text[-RESULT_CHARS:]


def _read_end(path: Path, size: int) -> tuple[bytes, int]:
    """The last SIZE bytes of PATH, and its whole size. (os-level: every attempt's end reads its
    output, and a file object costs three more system calls and its buffers.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b"", 0
    try:
        total = os.fstat(fd).st_size
        return (os.pread(fd, size, max(0, total - size)) if total else b""), total
    finally:
        os.close(fd)


def read_from(path: Path, offset: int) -> bytes:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read()
    return b""


def read_tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


REQUEUE = "requeue"  # stopped to make room: it runs again later, and the attempt does not count
WAIT = "wait"  # rate limited or overloaded: it waits with backoff, and the attempt does not count


def judge(stopped: bool, rec: TaskRecord, outcome: Outcome, counted: int, may_wait: bool) -> str:
    """What an ended attempt means: REQUEUE, WAIT, or the status it ends with (its error noted)."""
    if rec.stop_status == REQUEUE:
        return REQUEUE
    if stopped and rec.stop_status:
        rec.error = rec.error or outcome.error
        return rec.stop_status
    over_task_budget = rec.cost_budget is not None and rec.cost_usd > rec.cost_budget
    over_cap = rec.cost_cap_usd is not None and float(outcome.cost_usd or 0) > rec.cost_cap_usd
    if over_task_budget or over_cap or outcome.money_cap_reached:
        bound = f"its budget of ${rec.cost_budget:g}" if over_task_budget else f"its cap of ${rec.cost_cap_usd or 0:g}"
        rec.error = f"spent ${rec.cost_usd:.4f}, over {bound}" + (f" ({outcome.error})" if not outcome.ok else "")
        return BUDGET_EXCEEDED
    denied = denial_text(outcome.denials)
    unrun = unrun_text(outcome.unrun)
    if outcome.rerun_after_sandbox_failure:
        rec.warnings.append(
            f"attempt {rec.attempts}: {SANDBOX_FAILED} "
            f"{outcome.rerun_after_sandbox_failure} tool call(s); the agent ran them again"
        )
    if unrun:  # whatever the attempt says, part of its work never ran: kept in view past a retry
        rec.warnings.append(f"attempt {rec.attempts}: {unrun}")
    if outcome.ok:
        rec.error = None
        if counted > rec.budget:
            rec.warnings.append(over_budget(counted, rec.budget))
        refused = [text for text in (denied if rec.on_denied == "fail" else None, unrun) if text]
        if refused:
            rec.error = " ".join(refused)
            return FAILED
        if denied:
            rec.warnings.append(f"attempt {rec.attempts}: {denied}")
        return SUCCEEDED
    rec.error = "; ".join(text for text in (outcome.error, denied, unrun) if text)
    return WAIT if outcome.transient and may_wait else FAILED


def unrun_text(unrun: list[dict[str, str]]) -> str | None:
    """The reason a task whose tool calls its sandbox failed to start names (its retry's prompt quotes it)."""
    if not unrun:
        return None
    return (
        f"{SANDBOX_FAILED} {len(unrun)} tool call(s), which never ran: "
        f"{describe_denials(unrun)} ({unrun[0]['error']}; agents in worktrees of one repository race on "
        "the lock files of its .git, anthropics/claude-code#79248). Run them again."
    )


def denial_text(denials: list[dict[str, str]]) -> str | None:
    """The reason a task with refused tool calls names (and its retry's prompt quotes)."""
    if not denials:
        return None
    return (
        f"permission denied for {len(denials)} tool call(s), and nobody can approve in this run: "
        f"{describe_denials(denials)}. Work inside the task's directory with the tools it has."
    )
