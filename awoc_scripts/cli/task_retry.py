"""parallel-task-retry: run a failed task again with reduced scope."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-task-retry", "Run a failed task again with 80% of its budget and its error quoted.")

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr while the run resumes.")]


@app.command("retry-reduced")
def retry_reduced(
    agent_or_task: Annotated[
        str, typer.Argument(metavar="AGENT_OR_TASK", help="A task id, or an agent (its failed tasks).")
    ],
    message: Annotated[
        str | None, typer.Argument(metavar="[MESSAGE]", help="The previous error, for the prompt.")
    ] = None,
    run: RunOption = None,
    state_dir: StateDirOption = None,
    quiet: QuietOption = False,
) -> None:
    """Requeue the task (and the tasks skipped because of it) with its budget x 0.8 and MESSAGE as the previous error.

    A running orchestrator picks it up; otherwise the run is resumed now. Exit codes: the resumed run's
    (0, 1, 3), 0 when a running orchestrator takes it, 2 nothing to retry.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.levers.retry import retry_reduced as retry
    from awoc_scripts.state.store import StateStore

    store = StateStore(state_dir)
    code, data = retry(store, store.open_run(run), agent_or_task, message, quiet=quiet)
    print_json(data)
    retried = ", ".join(f"{t['task_id']} (budget {t['token_budget']})" for t in data["retried"])
    sys.stderr.write(f"retried {retried}; run by {data['executed_by']}\n")
    raise typer.Exit(code)


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
