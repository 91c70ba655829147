"""`validate`: arguments to a saved plan, the first step of every run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from awoc_scripts.plan import build_plan
from awoc_scripts.request import parse_request
from awoc_scripts.state import Run, StateStore, atomic_write_json, now_iso


def validate_request(args: Sequence[str]) -> dict[str, Any]:
    """The normalized plan for these arguments, without saving anything."""
    return build_plan(parse_request(args))


def save_new_run(store: StateStore, plan: dict[str, Any]) -> Run:
    """Save the plan as a new run and make it current. The plan gets its run id."""

    def write(run: Run) -> None:
        plan["run_id"] = run.run_id
        plan["created_at"] = now_iso()
        atomic_write_json(run.plan_file, plan)

    return store.create_run(write)
