"""parallel-task-monitor: watch processes (or a run's tasks) with psutil until they end or time runs out.

Each watched process counts with its descendants: CPU and memory are the tree's. When the
timeout passes, every process still running is stopped with its whole tree.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from awoc_scripts.errors import ABORTED, OK, InputError, StateError
from awoc_scripts.processes import (
    KILL_GRACE_S,
    kill_marked,
    kill_process_tree,
    process_ended,
    same_process_alive,
)
from awoc_scripts.state.task_results import known_names, tasks_named

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import psutil

    from awoc_scripts.state.store import Run, StateStore

NUMBER = re.compile(r"^\d+(\.\d+)?$")
POLL_S = 0.05
MB = 2**20


class ProcessReading(TypedDict, total=False):
    """One process (and its descendants) as the process monitor sees it: sampled, or at its end."""

    pid: int | None
    task_id: str
    status: str
    cpu_percent: float
    rss_mb: float
    processes: int
    ended: str | None
    task_status: str | None
    runtime_s: float
    peak_rss_mb: float
    cpu_seconds: float
    killed_pids: list[int]


class MonitorLine(TypedDict, total=False):
    """A line the process monitor prints: a sample while they run, then the summary."""

    type: str
    elapsed_s: float
    timeout_s: float | None
    timed_out: bool
    exit_code: int
    processes: list[ProcessReading]


class Owner(TypedDict):
    pid: int
    alive: bool


class RunningTasks(TypedDict):
    run_id: str
    status: str | None
    orchestrator: Owner | None
    tasks: list[ProcessReading]


@dataclass
class Watched:
    """A process the monitor watches, and the task it belongs to."""

    pid: int
    proc: psutil.Process | None
    task_id: str | None = None
    run_id: str | None = None
    task_status: str | None = None  # for a task without a live process
    ended: str | None = None  # exited, killed, not-running
    ended_at: float | None = None
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    killed_pids: list[int] = field(default_factory=list)
    tree: dict[int, psutil.Process] = field(default_factory=dict)  # kept so cpu_percent has a previous call

    def label(self) -> ProcessReading:
        return {"pid": self.pid, "task_id": self.task_id} if self.task_id else {"pid": self.pid}


def split_monitor_args(args: Sequence[str], timeout: float | None) -> tuple[list[str], float | None]:
    """PIDS... as given, or the `"PID PID" TIMEOUT` form: an argument with spaces is a list,
    and a bare number after a list or a name (which cannot be a pid) is the timeout."""
    args = list(args)
    if timeout is None and len(args) >= 2 and NUMBER.match(args[-1].strip()):
        earlier = args[:-1]
        listy = any(len(a.split()) != 1 or not a.strip().isdigit() for a in earlier)
        if listy or not args[-1].strip().isdigit():
            timeout = float(args.pop())
    names = [word for arg in args for word in arg.split()]
    if not names:
        raise InputError("PIDS: no process id, task id or agent given")
    if timeout is not None and timeout < 0:
        raise InputError(f"--timeout: expected seconds >= 0, got {timeout:g}")
    return names, timeout


def check_interval(interval: float) -> None:
    if not 0 < interval <= 3600:  # nan fails this too
        raise InputError(f"--interval: expected seconds > 0 and at most 3600, got {interval:g}")


def resolve(names: Sequence[str], store: StateStore, run_id: str | None) -> list[Watched]:
    """Numbers are pids; other names are task ids or agents of the run (their live task processes)."""
    import psutil

    watched: list[Watched] = []
    run: Run | None = None
    for name in names:
        if name.isdigit():
            try:
                proc = psutil.Process(int(name))
                proc.cpu_percent()
            except psutil.Error:
                raise InputError(f"no process with pid {name}") from None
            if process_ended(proc):
                raise InputError(f"process {name} has already ended (a zombie waiting for its parent)")
            watched.append(Watched(proc.pid, proc))
            continue
        if run is None:
            try:
                run = store.open_run(run_id)
            except StateError as exc:
                raise InputError(f"{name!r} is not a process id, and there is no run to find it in: {exc}") from None
        watched += _task_processes(run, name)
    seen: set[tuple[int, str | None]] = set()
    unique = []
    for item in watched:  # `monitor 123 architect` may name one process twice
        key = (item.pid, None) if item.proc is not None else (0, item.task_id)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _task_processes(run: Run, name: str) -> list[Watched]:
    import psutil

    plan = run.read_plan()
    ids, _ = tasks_named(plan, name)
    if not ids:
        raise InputError(
            f"{name!r} is neither a process id nor a task id or agent of run {run.run_id} ({known_names(plan)})"
        )
    tasks = run.read_state().get("tasks", {})
    found = []
    for tid in ids:
        saved: Mapping[str, Any] = tasks.get(tid, {})
        pid, created = saved.get("pid"), saved.get("pid_create_time")
        if pid and created and saved.get("status") == "running" and _still_the_task(saved):
            try:
                proc = psutil.Process(int(pid))
                proc.cpu_percent()
            except psutil.Error:
                proc = None
            if proc is not None:
                found.append(Watched(int(pid), proc, tid, run.run_id))
                continue
        found.append(Watched(int(pid or 0), None, tid, run.run_id, task_status=saved.get("status", "pending")))
    return found


def _sample(item: Watched) -> ProcessReading:
    """One reading of a live process and its descendants."""
    import psutil

    assert item.proc is not None
    proc = item.proc
    try:
        status = proc.status()
        children = proc.children(recursive=True)
    except psutil.Error:
        gone = item.label()
        gone["status"] = "gone"
        return gone
    current = {proc.pid: proc}
    for child in children:
        current[child.pid] = item.tree.get(child.pid, child)
    cpu = rss = 0.0
    for member in current.values():
        try:
            with member.oneshot():
                cpu += member.cpu_percent()
                rss += member.memory_info().rss
        except psutil.Error:
            continue
    item.tree = current
    try:
        times = proc.cpu_times()
        item.cpu_seconds = round(times.user + times.system + times.children_user + times.children_system, 3)
    except psutil.Error:
        pass
    rss_mb = round(rss / MB, 1)
    item.peak_rss_mb = max(item.peak_rss_mb, rss_mb)
    reading = item.label()
    reading["status"], reading["cpu_percent"], reading["rss_mb"] = status, round(cpu, 1), rss_mb
    reading["processes"] = len(current)
    return reading


def _check_ended(items: Sequence[Watched], now: float) -> None:
    for item in items:
        if item.ended is None and item.proc is not None and process_ended(item.proc):
            item.ended, item.ended_at = "exited", now


def monitor(
    items: list[Watched],
    timeout: float | None,
    interval: float,
    emit: Callable[[MonitorLine], None],
    grace_s: float = KILL_GRACE_S,
) -> tuple[int, MonitorLine]:
    """Sample every `interval` s until all have ended; past `timeout` s, stop what is left.

    Returns (0 if all ended by themselves, else 3; the summary)."""
    check_interval(interval)
    started = time.monotonic()
    wall_start = time.time()
    for item in items:
        if item.proc is None:
            item.ended = "not-running"
    timed_out = False
    next_sample = started
    while True:
        now = time.monotonic()
        _check_ended(items, time.time())
        live = [i for i in items if i.ended is None]
        if not live:
            break
        if timeout is not None and now - started >= timeout:
            timed_out = True
            for item in live:
                assert item.proc is not None
                item.killed_pids = kill_process_tree(item.pid, item.proc.create_time(), grace_s)
                if item.task_id and item.run_id:
                    item.killed_pids += kill_marked(item.run_id, item.task_id)
                item.ended, item.ended_at = "killed", time.time()
            break
        if now >= next_sample:
            emit(
                {
                    "type": "sample",
                    "elapsed_s": round(now - started, 2),
                    "processes": [_sample(i) for i in live],
                }
            )
            next_sample += interval
        _check_ended(items, time.time())
        time.sleep(POLL_S)
    summary: MonitorLine = {
        "type": "summary",
        "elapsed_s": round(time.monotonic() - started, 2),
        "timeout_s": timeout,
        "timed_out": timed_out,
        "processes": [_ending(i, wall_start) for i in items],
    }
    code = ABORTED if any(i.ended == "killed" for i in items) else OK
    summary["exit_code"] = code
    return code, summary


def _ending(item: Watched, wall_start: float) -> ProcessReading:
    out = item.label()
    out["ended"] = item.ended
    if item.proc is None:
        out["task_status"] = item.task_status
        return out
    try:
        born = item.proc.create_time()
    except Exception:  # noqa: BLE001 - psutil cached it when the process was found; any failure: from the start
        born = wall_start
    out["runtime_s"] = round((item.ended_at or time.time()) - born, 2)
    out["peak_rss_mb"], out["cpu_seconds"] = item.peak_rss_mb, item.cpu_seconds
    if item.killed_pids:
        out["killed_pids"] = sorted(set(item.killed_pids))
    return out


def running_tasks(run: Run, sample_s: float = 0.2) -> RunningTasks:
    """The run's running tasks: their pids, CPU, memory and process state (and the orchestrator's)."""
    import psutil

    from awoc_scripts.state.owner import run_executing

    state = run.read_state()
    executing = run_executing(run, state)
    items = []
    stale: list[ProcessReading] = []
    for tid, saved in state.get("tasks", {}).items():
        if saved.get("status") != "running":
            continue
        pid, created = saved.get("pid"), saved.get("pid_create_time")
        if pid and created and _still_the_task(saved):
            try:
                proc = psutil.Process(int(pid))
                proc.cpu_percent()
                items.append(Watched(int(pid), proc, tid, run.run_id))
                continue
            except psutil.Error:
                pass
        # with its orchestrator alive, a task whose process is gone has just ended: its end is on the
        # way to state.json. Without it, nothing will record it: resume does
        stale.append({"task_id": tid, "pid": pid, "status": "ended" if executing else "gone"})
    for item in items:  # prime every process of every tree, then measure over one short span
        _sample(item)
    if items:
        time.sleep(sample_s)
    tasks: list[ProcessReading] = []
    for item in items:
        reading = _sample(item)
        with contextlib.suppress(psutil.Error):
            reading["runtime_s"] = round(time.time() - item.proc.create_time(), 1)  # type: ignore[union-attr]
        tasks.append(reading)
    orchestrator = state.get("orchestrator")
    return {
        "run_id": run.run_id,
        "status": state.get("status"),
        "orchestrator": {"pid": orchestrator["pid"], "alive": executing} if orchestrator else None,
        "tasks": tasks + stale,
    }


def _still_the_task(saved: Mapping[str, Any]) -> bool:
    """Is the saved task's process still the one it started (by start ticks where state.json has them)?"""
    return same_process_alive(int(saved["pid"]), float(saved["pid_create_time"]), saved.get("pid_start_ticks"))
