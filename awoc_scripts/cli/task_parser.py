"""parallel-task-parser: validate a request and save it as a new run's plan."""

from __future__ import annotations

import sys

import typer

from awoc_scripts.cli.common import RAW_ARGS, BriefOption, StateDirOption, new_app, run_app

app = new_app(
    "parallel-task-parser", "Validate delegate-parallel tasks (a config file or inline agent:description tasks)."
)


@app.command(context_settings=RAW_ARGS)
def validate(ctx: typer.Context, state_dir: StateDirOption = None, brief: BriefOption = False) -> None:
    """Validate a config file or inline tasks; print the normalized plan and save it as a new run.

    ARGS: a config file (or - or JSON text), or "agent:description" tasks with --max-parallel,
    --timeout, --format, --total-budget, --failure-tolerance, --priority, --wait-for-research, --then.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.planning.validation import brief_plan, save_new_run, validate_request
    from awoc_scripts.state.store import StateStore

    plan = validate_request(ctx.args)
    run = save_new_run(StateStore(state_dir), plan)
    print_json(brief_plan(plan) if brief else plan)
    for warning in plan["warnings"]:
        sys.stderr.write(f"warning: {warning}\n")
    for fan in plan.get("fan_out", []):
        first = ", ".join(fan["first_items"]) + (", ..." if fan["count"] > len(fan["first_items"]) else "")
        sys.stderr.write(f"fan-out: {fan['template']} is {fan['count']} task(s): {first}\n")
    sys.stderr.write(f"validated {len(plan['tasks'])} task(s); run {run.run_id} saved in {run.dir}\n")


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
