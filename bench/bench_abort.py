"""Abort at scale: how long a run takes to end once its abort is decided, by number of pending tasks.

`delegate-parallel run --quiet` on N `sleep 10` tasks at 50 at a time with `total_timeout` 3 s:
the abort comes at 3 s with nearly all N tasks pending (priority high: the time-pressure rule, which
cancels low and medium tasks at 80% of the time, leaves them to the abort). From the run's events: abort decided
(`run-abort`) to the run's end recorded (`run-end`: every task ended, state.json final), and to
the command's exit (report written). The baseline is the same run with 100 tasks, measured in the
same process; the ratio shows how the end of an abort grows with the tasks still pending.

Goal: the run ends within 2 s of the abort at 100,000 tasks (10,000 with --quick).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, bench_parser, command_config, emit, find_cli

GOAL_S = 2.0
BASELINE_TASKS = 100


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_run(cli: str, tasks: int, tmp: Path) -> dict[str, Any]:
    config = command_config(
        "bench-abort",
        50,
        3,
        [
            {
                "task_id": f"t{i}",
                "agent": "qa",
                "description": f"task {i}",
                "priority": "high",
                "command": ["sleep", "10"],
            }
            for i in range(tasks)
        ],
    )
    config["parallel_config"]["failure_tolerance"] = tasks
    path = tmp / f"abort-{tasks}.json"
    path.write_bytes(orjson.dumps(config))
    state = tmp / f"state-{tasks}"
    start = time.time()
    proc = subprocess.run(
        [cli, "run", "--quiet", "--state-dir", str(state), str(path)], capture_output=True, text=True, check=False
    )
    exited = time.time()
    run_dir = next((state / "runs").iterdir())
    events = [orjson.loads(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]
    at = {e["event"]: _ts(e["ts"]) for e in events if e["event"] in ("run-start", "run-abort", "run-end")}
    started = sum(1 for e in events if e["event"] == "task-start")
    return {
        "tasks": tasks,
        "exit_code": proc.returncode,
        "start_to_run_start_s": at["run-start"] - start,
        "abort_to_run_end_s": at["run-end"] - at["run-abort"],
        "abort_to_exit_s": exited - at["run-abort"],
        "command_s": exited - start,
        "tasks_started": started,
    }


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (make install)")
    size = 10_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="awoc-bench-abort-") as tmp:
        base = one_run(cli, BASELINE_TASKS, Path(tmp))
        big = one_run(cli, size, Path(tmp))
    for row in (base, big):
        print(
            f"{row['tasks']:>7} tasks: exit {row['exit_code']}, abort -> run end {row['abort_to_run_end_s']:.2f} s, "
            f"abort -> exit {row['abort_to_exit_s']:.2f} s, command {row['command_s']:.2f} s "
            f"(planning {row['start_to_run_start_s']:.2f} s), {row['tasks_started']} tasks started"
        )
    value = big["abort_to_run_end_s"]
    figure = Figure(
        "abort.run_end_after_abort",
        f"abort: run ends after abort, {size:,} tasks pending",
        value,
        "s",
        baseline=base["abort_to_run_end_s"],
        baseline_label=f"same with {BASELINE_TASKS} tasks",
        ratio=value / base["abort_to_run_end_s"] if base["abort_to_run_end_s"] > 0 else None,
        goal=f"<= {GOAL_S:g} s",
        met=value <= GOAL_S and big["exit_code"] == 3,
        details={"baseline": base, "measured": big},
    )
    emit([figure], args.json)


if __name__ == "__main__":
    main()
