"""`delegate-parallel status`: where a run stands, read from its files (no orchestrator needed)."""

from __future__ import annotations

from typing import Any

from awoc_scripts.state import StateStore, read_json


def run_status(store: StateStore, run_id: str | None) -> dict[str, Any]:
    from awoc_scripts.run_state import initial_state, orchestrator_alive

    run = store.open_run(run_id)
    state = run.read_state() or initial_state(run)
    tasks = state["tasks"]
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    used = sum(t.get("tokens_used", {}).get("total", 0) for t in tasks.values())
    execution = read_json(run.execution_file, default={})
    total = (execution.get("parallel_config") or run.read_plan()["parallel_config"])["total_token_budget"]
    return {
        "run_id": run.run_id,
        "status": state.get("status"),
        "executing": orchestrator_alive(state),
        "stop_reason": state.get("stop_reason"),
        "counts": counts,
        "tokens_used": used,
        "total_token_budget": total,
        "updated_at": state.get("updated_at"),
        "tasks": [
            {
                "task_id": tid,
                "status": t["status"],
                "attempts": t.get("attempts", 0),
                "tokens_used": t.get("tokens_used", {}).get("total", 0),
                "token_budget": t["token_budget"],
                "reason": t.get("reason") or t.get("error"),
            }
            for tid, t in tasks.items()
        ],
        "run_dir": str(run.dir),
    }
