"""A task's verification: after an attempt ended with 0, `verify` runs in the same directory, as
an attempt of its own through the same executor (its process tree, its timeout, stopped like
any attempt). A non-zero exit or a timeout fails the attempt, and the retry's prompt quotes what
the verification printed, so the agent can fix it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from awoc_scripts.execution.outcomes import read_tail
from awoc_scripts.execution.prompts import VERIFICATION_FAILED

if TYPE_CHECKING:
    from awoc_scripts.execution.executors.base import Attempt
    from awoc_scripts.plan_types import Task
    from awoc_scripts.run_documents import Verification
    from awoc_scripts.state.store import TaskFiles

OUTPUT_CHARS = 4000  # the tail of its output kept in the result
QUOTED_LINES = 15  # of it, quoted in the retry's prompt


def verify_attempt(task: Task, run_id: str, files: TaskFiles, cwd: Path, env: dict[str, str]) -> Attempt:
    # imported here: the run machine reads this module's rules without starting anything
    from awoc_scripts.execution.claude_cli import Invocation
    from awoc_scripts.execution.executors.base import Attempt
    from awoc_scripts.processes import task_marker

    argv = list(task.get("verify") or [])
    invocation = Invocation(argv, env, "command", role_in_prompt=False)
    marker = task_marker(run_id, task["task_id"])
    timeout = float(task.get("verify_timeout") or 600)
    return Attempt(
        task["task_id"], invocation, cwd, Path(os.devnull), files.verify_log, files.verify_errors, marker, timeout
    )


def verification_output(files: TaskFiles) -> str:
    return read_tail(files.verify_log, OUTPUT_CHARS) + read_tail(files.verify_errors, OUTPUT_CHARS)


def verification_record(task: Task, exit_code: int | None, output: str, duration_s: float) -> Verification:
    """What result.json says of it: command, exit code (None: stopped at its timeout), output, time."""
    return {
        "command": list(task.get("verify") or []),
        "exit_code": exit_code,
        "passed": exit_code == 0,
        "output": output[-OUTPUT_CHARS:],
        "duration_s": round(duration_s, 3),
    }


def failure_reason(verify: Verification, timeout_s: float) -> str:
    """The attempt's error: names the verification, and ends with the last lines it printed."""
    command = shlex.join(verify["command"])
    how = f"did not end within {timeout_s:g} s" if verify["exit_code"] is None else f"exited {verify['exit_code']}"
    tail = verify["output"].strip().splitlines()[-QUOTED_LINES:]
    quoted = ("; its output ends:\n" + "\n".join(tail)) if tail else " with no output"
    return f"{VERIFICATION_FAILED} `{command}` {how}{quoted}"
