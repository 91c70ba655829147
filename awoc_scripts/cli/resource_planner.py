"""parallel-resource-planner: budgets, critical path, waves and the estimated schedule of a run."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import BriefOption, StateDirOption, new_app, run_app
from awoc_scripts.errors import InputError

app = new_app("parallel-resource-planner", "Plan a run's execution: token budgets, order and estimated schedule.")


def _whole(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}: expected a whole number, got {text!r}") from None


@app.command("plan-execution")
def plan_execution_command(
    plan: Annotated[str | None, typer.Argument(help="Run id, plan or config; default: current run.")] = None,
    max_parallel: Annotated[str | None, typer.Argument(help="Tasks at once (overrides max_concurrent).")] = None,
    total_token_budget: Annotated[str | None, typer.Argument(help="Total token budget to fit.")] = None,
    state_dir: StateDirOption = None,
    brief: BriefOption = False,
) -> None:
    """Write the run's execution.json and print it."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.planning.execution_plan import brief_execution, describe_start_order, plan_run
    from awoc_scripts.state.store import StateStore

    limit = _whole("MAX_PARALLEL", max_parallel)
    total = _whole("TOTAL_TOKEN_BUDGET", total_token_budget)
    run, execution = plan_run(StateStore(state_dir), plan or None, limit, total)
    print_json(brief_execution(execution) if brief else execution)
    for warning in execution["warnings"]:
        sys.stderr.write(f"warning: {warning}\n")
    sys.stderr.write(
        f"run {run.run_id}: {len(execution['tasks'])} task(s), critical path "
        f"{' -> '.join(execution['critical_path'])}, estimated {execution['estimated_makespan_s']:g} s "
        f"(sequential {execution['sequential_estimate_s']:g} s)\n"
    )
    order = describe_start_order(execution.get("start_order"))
    if order is not None:
        sys.stderr.write(f"start order: {order}\n")


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
