"""Fan-out and the cache: one `for_each` line over 10,000 items, and what a cache look-up costs.

1. Validate and plan: `validate_request` + `plan_execution` of one `for_each` task over 10,000
   items, against the same 10,000 tasks written out (the baseline), in this process; median of 3.
2. Run: `delegate-parallel run --quiet` of a `for_each` over N `true` tasks (N = 2,000; 500 with
   --quick) at 8 at a time, without the cache and with it (the first run with the cache fills it,
   the second finds every task there): per-task time of each, as a ratio to the run without it.
   The state folder is on /dev/shm where it exists.

Goals: expansion costs at most 1.2x the written-out plan; a cache look-up (the filled run) costs
less than running the task. Filling the cache is reported: a process task's key reads every file
of the checkout again once another process task has run (no-op tasks make that the whole cost).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, bench_parser, command_config, emit, find_cli, median

ITEMS = 10_000


def fanned(n: int) -> dict[str, Any]:
    task = {"task_id": "each", "agent": "qa", "description": "touch {item}", "command": ["true", "{item}"]}
    return command_config("fan-out", 8, 3600, [{**task, "for_each": {"items": [f"item-{i}" for i in range(n)]}}])


def written_out(n: int) -> dict[str, Any]:
    tasks = [
        {"task_id": f"each-{i + 1}", "agent": "qa", "description": f"touch item-{i}", "command": ["true", f"item-{i}"]}
        for i in range(n)
    ]
    return command_config("written out", 8, 3600, tasks)


def plan_seconds(config: dict[str, Any], tmp: Path, repeat: int) -> float:
    from awoc_scripts.planning.execution_plan import plan_execution
    from awoc_scripts.planning.validation import validate_request

    path = tmp / "config.json"
    path.write_bytes(orjson.dumps(config))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        plan_execution(validate_request([str(path)]))
        times.append(time.perf_counter() - start)
    return median(times)


def run_seconds(cli: str, config: dict[str, Any], state: Path, tmp: Path) -> float:
    path = tmp / "run.json"
    path.write_bytes(orjson.dumps(config))
    start = time.perf_counter()
    proc = subprocess.run([cli, "run", "--quiet", "--state-dir", str(state), str(path)], capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (make install)")
    n_run = 500 if args.quick else 2000
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    with (
        tempfile.TemporaryDirectory(prefix="awoc-bench-fan-") as tmp_name,
        tempfile.TemporaryDirectory(prefix="awoc-bench-fan-state-", dir=shm) as state_name,
    ):
        tmp, state = Path(tmp_name), Path(state_name)
        repeat = 1 if args.quick else 3
        fan_s = plan_seconds(fanned(ITEMS), tmp, repeat)
        flat_s = plan_seconds(written_out(ITEMS), tmp, repeat)
        plain = run_seconds(cli, fanned(n_run), state / "plain", tmp)
        cached_config = fanned(n_run)
        cached_config["parallel_config"]["cache"] = True
        filling = run_seconds(cli, cached_config, state / "cache", tmp)
        reusing = run_seconds(cli, cached_config, state / "cache", tmp)
    print(f"validate + plan of {ITEMS} items: fan-out {fan_s:.2f} s, written out {flat_s:.2f} s")
    print(
        f"run of {n_run} no-op tasks: {plain:.2f} s; with the cache: filling {filling:.2f} s, reusing {reusing:.2f} s"
    )
    per = {name: 1000 * s / n_run for name, s in (("plain", plain), ("filling", filling), ("reusing", reusing))}
    figures = [
        Figure(
            "fan_out.plan_10000",
            f"validate + plan, one for_each over {ITEMS} items",
            round(fan_s, 3),
            "s",
            baseline=round(flat_s, 3),
            baseline_label="the same tasks written out",
            ratio=fan_s / flat_s,
            goal="<= 1.2x",
            met=fan_s / flat_s <= 1.2,
        ),
        Figure(
            "cache.fill_per_task",
            f"run of {n_run} no-op tasks with the cache, filling it (per task)",
            round(per["filling"], 2),
            "ms",
            baseline=round(per["plain"], 2),
            baseline_label="the same run without the cache",
            ratio=filling / plain,
            note="each process task's key reads the whole checkout again once another has run",
        ),
        Figure(
            "cache.reuse_per_task",
            f"run of {n_run} no-op tasks, every one reused from the cache (per task)",
            round(per["reusing"], 2),
            "ms",
            baseline=round(per["plain"], 2),
            baseline_label="the same run without the cache",
            ratio=reusing / plain,
            goal="< 1x",
            met=reusing < plain,
        ),
    ]
    emit(figures, args.json)


if __name__ == "__main__":
    main()
