"""context-monitor: record the scripts' progress events; tokens used against budgets."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RAW_ARGS, RunOption, StateDirOption, new_app, run_app

app = new_app("context-monitor", "Record progress events of a run; show tokens used against budgets.")


@app.command(context_settings=RAW_ARGS)
def track(
    ctx: typer.Context,
    event: Annotated[str, typer.Argument(help="parallel-start, parallel-task-start, parallel-task-complete, ...")],
    run: RunOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Append EVENT [ARGS...] to the run's events.jsonl, with what those events mean:

    parallel-start [TOTAL_TASKS TOTAL_TOKEN_BUDGET] (default: the plan's);
    parallel-task-start AGENT_OR_TASK [DESCRIPTION...]; parallel-task-complete AGENT_OR_TASK TOKENS;
    parallel-task-failed AGENT_OR_TASK EXIT_CODE.
    Other events are recorded as given.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.monitors.context_monitor import track as track_event
    from awoc_scripts.state.store import StateStore

    print_json(track_event(StateStore(state_dir).open_run(run), event, list(ctx.args)), pretty=False)


@app.command()
def status(run: RunOption = None, state_dir: StateDirOption = None) -> None:
    """Tokens used against budgets, per task and in total; warnings past 70, 80 and 90%."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.monitors.context_monitor import token_status
    from awoc_scripts.state.store import StateStore

    data = token_status(StateStore(state_dir).open_run(run))
    print_json(data)
    total = data["total"]
    sys.stderr.write(
        f"run {data['run_id']}: {total['tokens_used']} of {total['token_budget']} tokens used ({total['percent']:g}%)\n"
    )
    for warning in data["warnings"]:
        sys.stderr.write(f"warning: {warning['message']}\n")


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
