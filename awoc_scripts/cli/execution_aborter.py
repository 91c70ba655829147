"""parallel-execution-aborter: stop a run and print its partial results."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-execution-aborter", "Abort a run: stop its tasks, cancel the rest, print partial results.")


@app.command("abort-with-partial-results")
def abort_with_partial_results(
    reason: Annotated[str, typer.Option("--reason", help="Why, for the state and the report.")] = "",
    run: RunOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Abort the run (a running orchestrator is asked to, and confirms); print which tasks succeeded and which did not.

    Exit codes: 3 the run was aborted; 0 nothing was left to abort (every task had ended, or it was
    stopping already); 2 the run had ended before (a finished run is kept as it is), or bad input.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.levers.abort import ABORT_REASON
    from awoc_scripts.levers.abort import abort_with_partial_results as abort
    from awoc_scripts.state.store import StateStore

    code, data = abort(StateStore(state_dir).open_run(run), reason or ABORT_REASON)
    print_json(data)
    partial = data["partial_results"]
    if data["aborted"]:
        stopped = data.get("stopping", [])  # running when the orchestrator took the abort: it stopped them
        also = f", {len(stopped)} running task(s) stopped" if stopped else ""
        sys.stderr.write(f"run {partial['run_id']} aborted: {len(data['cancelled'])} task(s) cancelled{also}\n")
    else:
        sys.stderr.write(f"run {partial['run_id']}: nothing to abort ({data.get('why_not')})\n")
    sys.stderr.write(f"{partial['completed_successfully']} of {partial['total_tasks']} task(s) succeeded\n")
    for task in partial["not_succeeded"]:
        sys.stderr.write(f"  {task['task_id']}: {task['status']}: {task['why']}\n")
    raise typer.Exit(code)


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
