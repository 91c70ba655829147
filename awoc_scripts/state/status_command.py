"""`delegate-parallel status`: where a run stands, read from its files (no orchestrator needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from awoc_scripts.run_documents import counted_tokens

if TYPE_CHECKING:
    from awoc_scripts.state.store import Run, StateStore


class TaskLine(TypedDict):
    task_id: str
    status: str
    attempts: int
    tokens_used: int
    tokens_counted: int  # of those, what counts against token_budget
    token_budget: int
    reason: str | None


class RunStatus(TypedDict):
    """What `delegate-parallel status` says of a run (and `wait` when it returns)."""

    run_id: str
    status: str | None
    executing: bool
    stop_reason: str | None
    next: str | None  # the command that continues an interrupted or aborted run
    counts: dict[str, int]
    tokens_used: int
    tokens_counted: int  # of those, what counts against the budget (what the tasks wrote and added)
    total_token_budget: int
    cost_usd: float
    max_concurrent: int | None
    effective_concurrency: float | None
    paused_until: str | None
    warm_agents: int
    updated_at: str | None
    tasks: list[TaskLine]
    run_dir: str


def _with_watchdog(run: Run, stop_reason: str | None) -> str | None:
    """STOP_REASON, and what the run's watchdog ended after its orchestrator died, if it did."""
    from awoc_scripts.state.store import OWNER_DIED

    killed = None
    for event in run.read_events(only=("run-start", OWNER_DIED)):
        killed = event.get("killed") if event["event"] == OWNER_DIED else None  # of the last execution only
    if not isinstance(killed, list) or stop_reason is None:
        return stop_reason
    if not killed:
        return f"{stop_reason}; its watchdog found none of its task processes still running"
    return f"{stop_reason}; its watchdog ended the {len(killed)} task process(es) it left running, at once"


def run_status(store: StateStore, run_id: str | None) -> RunStatus:
    from awoc_scripts.launcher import command_for
    from awoc_scripts.state.owner import initial_state, run_executing
    from awoc_scripts.state.reconcile import INTERRUPTED, reconcile
    from awoc_scripts.state.statuses import RUNNING

    run = store.open_run(run_id)
    state = run.read_state(against_plan=False) or initial_state(run)  # what it shows is the state's own
    executing = run_executing(run, state)
    if not executing:
        reconcile(run, state)  # as it stands, not as the last flush before a kill left it (nothing is written)
        for task in state["tasks"].values():
            if task["status"] == RUNNING:  # no process runs it: shown for what it is
                task["status"], task["reason"] = INTERRUPTED, "was running when its orchestrator stopped"
        if state.get("status") == INTERRUPTED:
            state["stop_reason"] = _with_watchdog(run, state.get("stop_reason"))
    tasks = state["tasks"]
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    used = sum(t.get("tokens_used", {}).get("total", 0) for t in tasks.values())
    counted = sum(counted_tokens(t) for t in tasks.values())
    execution = run.read_execution()
    total = (execution.get("parallel_config") or run.read_plan()["parallel_config"])["total_token_budget"]
    return {
        "run_id": run.run_id,
        "status": state.get("status"),
        "executing": executing,
        "stop_reason": state.get("stop_reason"),
        "next": command_for("delegate-parallel", "resume", run.run_id)
        if not executing and state.get("status") in (INTERRUPTED, "aborted")
        else None,
        "counts": counts,
        "tokens_used": used,
        "tokens_counted": counted,
        "total_token_budget": total,
        "cost_usd": round(sum(float(t.get("cost_usd") or 0) for t in tasks.values()), 9),
        "max_concurrent": state.get("max_concurrent"),
        "effective_concurrency": state.get("effective_concurrency"),
        "paused_until": state.get("paused_until"),
        "warm_agents": state.get("warm_agents") or 0,
        "updated_at": state.get("updated_at"),
        "tasks": [
            {
                "task_id": tid,
                "status": t["status"],
                "attempts": t.get("attempts", 0),
                "tokens_used": t.get("tokens_used", {}).get("total", 0),
                "tokens_counted": counted_tokens(t),
                "token_budget": t["token_budget"],
                "reason": t.get("reason") or t.get("error"),
            }
            for tid, t in tasks.items()
        ],
        "run_dir": str(run.dir),
    }


def _concurrency_text(data: RunStatus) -> str:
    effective, ceiling = data.get("effective_concurrency"), data.get("max_concurrent")
    if effective is None or not data["executing"]:
        return ""
    return f"; {effective} at once" + (f" (of {ceiling}: rate limited)" if ceiling and effective < ceiling else "")


def _tokens_text(data: RunStatus) -> str:
    counted = data["tokens_counted"]
    used = f" ({data['tokens_used']} used)" if counted != data["tokens_used"] else ""
    return f"tokens {counted}/{data['total_token_budget']}{used}"


def status_text(data: RunStatus) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(data["counts"].items()))
    lines = [
        f"run {data['run_id']}: {data['status']}{' (executing)' if data['executing'] else ''}; {counts}; "
        + _tokens_text(data)
        + f"; ${data['cost_usd']:.4f}"
        + _concurrency_text(data)
        + (f"; paused until {data['paused_until']}" if data.get("paused_until") else "")
        + (f"; {data['warm_agents']} warm" if data["executing"] and data.get("warm_agents") else "")
    ]
    if data.get("stop_reason") and not data["executing"]:
        lines.append(f"  stopped: {data['stop_reason']}")
    if data.get("next"):
        lines.append(f"  to continue it: {data['next']}")
    for task in data["tasks"]:
        lines.append(
            f"  {task['task_id']:<30} {task['status']:<16} {task['tokens_counted']:>7}/{task['token_budget']:<7} "
            f"{task['reason'] or ''}".rstrip()
        )
    from awoc_scripts.terminal_text import shown_safely

    return shown_safely("\n".join(lines))
