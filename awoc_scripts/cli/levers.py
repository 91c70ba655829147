"""token-budget-reducer, parallel-to-sequential, task-prioritizer: the emergency levers.

Safe while a run executes: the orchestrator applies the change between two starts and
confirms what it changed.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app
from awoc_scripts.plan_types import JsonObject

budget_app = new_app("token-budget-reducer", "Reduce the token budgets of the tasks that have not started.")
sequential_app = new_app("parallel-to-sequential", "Run the remaining tasks one at a time.")
prioritizer_app = new_app("task-prioritizer", "Cancel not-started low and medium tasks; keep critical and high.")


def _apply(action: str, args: JsonObject, run_id: str | None, state_dir: str | None) -> None:
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.levers.requests import request_lever
    from awoc_scripts.state.store import StateStore

    run = StateStore(state_dir).open_run(run_id)
    control = request_lever(run, action, args)
    print_json({"run_id": run.run_id, **control})
    sys.stderr.write(f"{action} applied to run {run.run_id} by {control['applied_by']}\n")


@budget_app.command("reduce-remaining-tasks")
def reduce_remaining_tasks(
    percent: Annotated[str, typer.Argument(help="How much to cut, e.g. 20% or 20.")],
    run: RunOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Cut the budget of every task not yet started by PERCENT."""
    from awoc_scripts.execution.machine.levers import REDUCE, parse_percent

    _apply(REDUCE, {"percent": parse_percent(percent)}, run, state_dir)


@sequential_app.command("convert-remaining-tasks")
def convert_remaining_tasks(run: RunOption = None, state_dir: StateDirOption = None) -> None:
    """From now on, start the remaining tasks one at a time."""
    from awoc_scripts.execution.machine.levers import SEQUENTIAL

    _apply(SEQUENTIAL, {}, run, state_dir)


@prioritizer_app.command("emergency-prioritization")
def emergency_prioritization(run: RunOption = None, state_dir: StateDirOption = None) -> None:
    """Cancel every not-started low and medium task (and what depends on it); print what was cancelled."""
    from awoc_scripts.execution.machine.levers import EMERGENCY

    _apply(EMERGENCY, {}, run, state_dir)


def budget_main(args: list[str] | None = None) -> None:
    run_app(budget_app, args)


def sequential_main(args: list[str] | None = None) -> None:
    run_app(sequential_app, args)


def prioritizer_main(args: list[str] | None = None) -> None:
    run_app(prioritizer_app, args)
