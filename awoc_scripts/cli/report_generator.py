"""parallel-report-generator: report.json and report.md from aggregated results."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-report-generator", "Write report.json and report.md for a run.")


@app.command("create-report")
def create_report_command(
    aggregated: Annotated[
        str | None, typer.Argument(help="aggregate.json (file, - or JSON); default: the run's.")
    ] = None,
    metadata: Annotated[str | None, typer.Argument(help="Run metadata (file, - or JSON); default: the run's.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="json, markdown or research_report.")] = "json",
    run: RunOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Print the report in the chosen format; report.json and report.md are written beside the results."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.results.report import generate_report_command
    from awoc_scripts.state.store import StateStore

    report, markdown, written = generate_report_command(StateStore(state_dir), run, aggregated, metadata, output_format)
    if output_format == "json":
        print_json(report)
    else:
        sys.stdout.write(markdown + "\n")
    sys.stderr.write(f"report written to {written}\n")


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
