"""What past runs took, so that planning can expect it: `<state root>/history.json`.

Every run that ends records, for each task that succeeded, its duration, tokens and cost under a
stable key (its agent and its description, blanks normalized), and under its agent. Planning uses
the task's own record when it has one, else its agent's; a task's own `estimated_duration` always
wins. The file is written under its lock and bounded: the last RUNS_KEPT runs per key, at most
MAX_TASK_KEYS task keys (the least recently seen go first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, TypeGuard

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.state.statuses import SUCCEEDED
from awoc_scripts.state.store import atomic_write_json, file_lock, now_iso, read_json

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

HISTORY_FILE = "history.json"
RUNS_KEPT = 10
MAX_TASK_KEYS = 2000


class PastRun(TypedDict):
    """What one succeeded task took in one run."""

    run_id: str
    duration_s: float
    tokens: int
    cost_usd: float


class HistorySlot(TypedDict):
    """history.json's entry for a task (or an agent): its last runs."""

    runs: list[PastRun]
    seen_at: NotRequired[str]
    agent: NotRequired[str]


def task_key(agent: str, description: str) -> str:
    import hashlib  # 3 ms: only where there is a history to look in

    text = f"{agent}\0{' '.join(description.split())}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass(frozen=True)
class Expectation:
    """What earlier runs say a task will take: time, tokens and cost."""

    duration_s: float  # the median of the runs kept
    tokens: tuple[int, int]  # lowest and highest seen
    cost_usd: tuple[float, float]
    runs: int
    source: str  # "task" (this very task before) or "agent" (other tasks of its agent)


class History:
    def __init__(self, data: object) -> None:
        self.tasks, self.agents = _tables(data)

    @classmethod
    def load(cls, root: Path) -> History:
        return cls(_read(root / HISTORY_FILE))

    def expect(self, agent: str, description: str) -> Expectation | None:
        entry = self.tasks.get(task_key(agent, description)) if self.tasks else None
        if entry and entry.get("runs"):
            return _expectation(entry["runs"], "task")
        entry = self.agents.get(agent)
        if entry and entry.get("runs"):
            return _expectation(entry["runs"], "agent")
        return None


def _read(path: Path) -> object:
    try:
        return read_json(path, default={})
    except Exception:  # noqa: BLE001 - a damaged history only means no expectations
        return {}


def _tables(data: object) -> tuple[dict[str, HistorySlot], dict[str, HistorySlot]]:
    """The task and agent tables of a history file, keeping only well-formed entries: the file is
    ours, but a hand edit or another version must cost expectations, never a run."""
    found = data if isinstance(data, dict) else {}
    return _table(found.get("tasks")), _table(found.get("agents"))


def _table(table: object) -> dict[str, HistorySlot]:
    kept: dict[str, HistorySlot] = {}
    for name, slot in table.items() if isinstance(table, dict) else ():
        if not isinstance(slot, dict) or not isinstance(slot.get("runs"), list):
            continue
        runs = [run for run in (_run(r) for r in slot["runs"]) if run is not None]
        if runs:
            entry: HistorySlot = {"runs": runs[-RUNS_KEPT:]}
            kept[str(name)] = entry
            if isinstance(slot.get("seen_at"), str):
                entry["seen_at"] = slot["seen_at"]
            if isinstance(slot.get("agent"), str):
                entry["agent"] = slot["agent"]
    return kept


def _run(run: object) -> PastRun | None:
    if not isinstance(run, dict):
        return None
    duration, tokens, cost = run.get("duration_s"), run.get("tokens"), run.get("cost_usd")
    if not _amount(duration):
        return None
    return {
        "run_id": str(run.get("run_id", "")),
        "duration_s": float(duration),
        "tokens": int(tokens) if isinstance(tokens, int) and _amount(tokens) else 0,
        "cost_usd": float(cost) if _amount(cost) else 0.0,
    }


def _amount(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _expectation(runs: list[PastRun], source: str) -> Expectation:
    durations = [float(r["duration_s"]) for r in runs]
    tokens = [int(r.get("tokens") or 0) for r in runs]
    costs = [float(r.get("cost_usd") or 0) for r in runs]
    return Expectation(
        round(_median(durations), 3), (min(tokens), max(tokens)), (min(costs), max(costs)), len(runs), source
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)  # (statistics.median would cost 6 ms of imports on every plan)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def record_run(root: Path, run_id: str, results: Iterable[Mapping[str, Any]]) -> int:
    """Add what each succeeded task of a finished run took; returns how many were recorded."""
    done = [r for r in results if r.get("status") == SUCCEEDED and r.get("started_at") and r.get("duration_s")]
    if not done:
        return 0
    path = root / HISTORY_FILE
    with file_lock(path):
        tasks, agents = _tables(_read(path))  # what is damaged is dropped rather than never learn again
        seen = now_iso()
        for result in done:
            tokens_used = result.get("tokens_used")
            entry: PastRun = {
                "run_id": run_id,
                "duration_s": round(float(result["duration_s"]), 3),
                "tokens": int(tokens_used.get("total", 0) if isinstance(tokens_used, dict) else tokens_used or 0),
                "cost_usd": float(result.get("cost_usd") or 0),
            }
            key = task_key(str(result["agent"]), str(result.get("task", "")))
            for table, name in ((tasks, key), (agents, str(result["agent"]))):
                slot = table.setdefault(name, {"runs": []})
                slot["runs"] = [*slot["runs"], entry][-RUNS_KEPT:]
                slot["seen_at"] = seen
            tasks[key]["agent"] = result["agent"]
        if len(tasks) > MAX_TASK_KEYS:
            newest = sorted(tasks, key=lambda k: str(tasks[k].get("seen_at")), reverse=True)[:MAX_TASK_KEYS]
            tasks = {k: tasks[k] for k in newest}
        atomic_write_json(path, {"schema": PLAN_SCHEMA, "kind": "history", "tasks": tasks, "agents": agents})
    return len(done)
