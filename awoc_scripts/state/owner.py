"""Who executes a run (state.json's orchestrator, checked against the live process), and the
state.json a run has before anything ran.

The run loop keeps the live copy in memory (execution/state_file.py) and writes it back under
the lock; how levers reach it is in levers/requests.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.state.statuses import PENDING

if TYPE_CHECKING:
    from awoc_scripts.plan_types import ExecutionPlan, Plan
    from awoc_scripts.run_documents import RunState
    from awoc_scripts.state.store import Run


def initial_state(run: Run, source: Plan | ExecutionPlan | None = None) -> RunState:
    """state.json before anything ran, from SOURCE where the caller holds it, else from
    execution.json if planned, else from plan.json."""
    source = source or run.read_execution() or run.read_plan()
    config = source["parallel_config"]
    return {
        "schema": PLAN_SCHEMA,
        "kind": "state",
        "run_id": run.run_id,
        "status": "planned",
        "orchestrator": None,
        "max_concurrent": int(config["max_concurrent"]),
        "tasks": {
            t["task_id"]: {"status": PENDING, "token_budget": t["token_budget"], "attempts": 0} for t in source["tasks"]
        },
        "controls": [],
        "revision": 0,
    }


def orchestrator_alive(state: RunState) -> bool:
    info = state.get("orchestrator")
    if not info:
        return False
    from awoc_scripts.processes import same_process_alive  # subprocess is not needed until here

    return same_process_alive(int(info["pid"]), float(info["create_time"]), info.get("start_ticks"))


def run_executing(run: Run, state: RunState) -> bool:
    """An orchestrator executes RUN right now: the kernel says it holds the run's claim. For a run
    saved before claims existed (no claim file), its recorded orchestrator is alive."""
    holder = run.claimed_for()
    if holder is not None:
        return holder == "executed"
    return not run.claim_file.exists() and orchestrator_alive(state)
