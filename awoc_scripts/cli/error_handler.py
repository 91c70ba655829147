"""parallel-error-handler: a task failed; retry it within the failure tolerance, else abort the run."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-error-handler", "Handle a failed task: retry it with reduced scope, or abort the run.")

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr while a retry runs.")]


@app.command("handle-task-failure")
def handle_task_failure(
    agent_or_task: Annotated[str, typer.Argument(metavar="AGENT_OR_TASK", help="The task id, or its agent.")],
    exit_code: Annotated[str, typer.Argument(metavar="EXIT_CODE", help="The failed task's exit code.")],
    message: Annotated[str | None, typer.Argument(metavar="[MESSAGE]", help="What went wrong.")] = None,
    run: RunOption = None,
    state_dir: StateDirOption = None,
    quiet: QuietOption = False,
) -> None:
    """Record the failure; within failure_tolerance retry the task with reduced scope, beyond it abort the run.

    Exit codes: those of the retried run (0, 1, 3), 0 when a running orchestrator retries it, 3 aborted.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.levers.failure import handle_task_failure as handle
    from awoc_scripts.levers.failure import parse_exit_code
    from awoc_scripts.state.store import StateStore

    code_value = parse_exit_code(exit_code)
    store = StateStore(state_dir)
    code, data = handle(store, store.open_run(run), agent_or_task, code_value, message, quiet=quiet)
    print_json(data)
    sys.stderr.write(f"{data['failure']['task_id']} failed ({data['why']}): {data['decision']}\n")
    raise typer.Exit(code)


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
