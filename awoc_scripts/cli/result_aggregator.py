"""parallel-result-aggregator: task results into one aggregate.json."""

from __future__ import annotations

from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-result-aggregator", "Merge task results into aggregate.json.")


@app.command("aggregate")
def aggregate_command(
    results: Annotated[
        list[str] | None,
        typer.Argument(help="Result files, directories of them, - or JSON text; default: the run's results."),
    ] = None,
    run: RunOption = None,
    state_dir: StateDirOption = None,
    output: Annotated[str | None, typer.Option("--output", help="Where to write aggregate.json.")] = None,
) -> None:
    """Merge results in dependency order, grouped by agent; list failures with their retry command."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.results.aggregate import aggregate_command as run_aggregate
    from awoc_scripts.state.store import StateStore

    print_json(run_aggregate(StateStore(state_dir), run, results or [], output))


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
