"""Schedule quality: awoc's makespan on random DAGs of sleeps, against the lower bound and make -j4.

For each seed: a random DAG of 40 tasks (the first 4 without dependencies, every later one with
1 to 3 dependencies on earlier tasks; durations 0.10 to 0.50 s; mixed priorities), run

- by awoc: ``delegate-parallel run --quiet CONFIG`` with ``command: ["sleep", "<d>"]`` tasks,
  ``max_concurrent`` 4, ``estimated_duration`` set (so the planner may adopt a shorter start
  order than priority order: planning/start_order.py), state in a temporary directory. Its makespan
  is taken from the tasks' own result files (first ``started_at`` to last ``finished_at``); the
  end-to-end wall time (Python start-up, validation, planning, report) is recorded beside it;
- by ``make -j4`` on a Makefile of the same DAG (phony targets, dependencies as prerequisites,
  each recipe ``sleep <d>``), wall time.

Lower bound = max(critical path, total work / 4). Goals: mean makespan / lower bound <= 1.08,
and awoc's makespan never over make -j4's on any seed.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, bench_parser, command_config, emit, find_cli, median, spread

SLOTS = 4
N_TASKS = 40
N_ROOTS = 4
PRIORITIES = ("critical", "high", "medium", "low")
SEEDS = (11, 22, 33, 44, 55)
GOAL_LOWER_BOUND = 1.08


def make_dag(seed: int, n: int = N_TASKS) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = [] if i < N_ROOTS else sorted(rng.sample(range(i), rng.randint(1, min(3, i))))
        tasks.append(
            {
                "id": f"t{i:02d}",
                "duration": round(rng.uniform(0.10, 0.50), 2),
                "deps": [f"t{d:02d}" for d in deps],
                "priority": rng.choice(PRIORITIES),
            }
        )
    return tasks


def lower_bound(tasks: list[dict[str, Any]], slots: int) -> tuple[float, float, float]:
    """(lower bound, critical path, total work / slots)."""
    finish: dict[str, float] = {}
    for t in tasks:  # dependencies point to earlier tasks: file order is topological
        finish[t["id"]] = max((finish[d] for d in t["deps"]), default=0.0) + t["duration"]
    critical = max(finish.values())
    work = sum(t["duration"] for t in tasks) / slots
    return max(critical, work), critical, work


def list_schedule(tasks: list[dict[str, Any]], slots: int, order: str) -> float:
    """Makespan of a greedy list schedule with zero overhead: whenever a slot is free, start the
    first ready task by `order` ("critical-path": longest remaining path first; "priority": the
    priority, then the longest remaining path, as awoc orders; "file": file order)."""
    import heapq

    remaining: dict[str, float] = {}
    children: dict[str, list[str]] = {t["id"]: [] for t in tasks}
    for t in tasks:
        for d in t["deps"]:
            children[d].append(t["id"])
    by_id = {t["id"]: t for t in tasks}
    for t in reversed(tasks):
        remaining[t["id"]] = t["duration"] + max((remaining[c] for c in children[t["id"]]), default=0.0)
    rank = {p: i for i, p in enumerate(PRIORITIES)}

    def key(tid: str) -> tuple[float, ...]:
        index = float(tid[1:])
        if order == "critical-path":
            return (-remaining[tid], index)
        if order == "priority":
            return (rank[by_id[tid]["priority"]], -remaining[tid], index)
        return (index,)

    waiting = {t["id"]: len(t["deps"]) for t in tasks}
    ready = [(key(tid), tid) for tid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, tid = heapq.heappop(ready)
            heapq.heappush(running, (now + by_id[tid]["duration"], tid))
        now, done = heapq.heappop(running)
        for child in children[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (key(child), child))
    return now


def awoc_config(tasks: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    return command_config(
        f"bench-schedule-{seed}",
        SLOTS,
        600,
        [
            {
                "task_id": t["id"],
                "agent": "bench",
                "description": f"sleep {t['duration']} s",
                "command": ["sleep", f"{t['duration']:.2f}"],
                "estimated_duration": t["duration"],
                "priority": t["priority"],
                "dependencies": t["deps"],
            }
            for t in tasks
        ],
    )


def makefile(tasks: list[dict[str, Any]]) -> str:
    ids = [t["id"] for t in tasks]
    lines = [f".PHONY: all {' '.join(ids)}", f"all: {' '.join(ids)}", ""]
    for t in tasks:
        lines += [f"{t['id']}: {' '.join(t['deps'])}".rstrip(), f"\tsleep {t['duration']:.2f}", ""]
    return "\n".join(lines)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_awoc(cli: str, config: Path, state: Path, durations: dict[str, float]) -> dict[str, Any]:
    import subprocess

    start = time.perf_counter()
    proc = subprocess.run([cli, "run", "--quiet", "--state-dir", str(state), str(config)], capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"delegate-parallel run exited {proc.returncode}: {proc.stderr.decode()[-1500:]}")
    run_id = (state / "current").read_text().strip()
    run_dir = state / "runs" / run_id
    results = [orjson.loads(p.read_bytes()) for p in sorted((run_dir / "tasks").glob("*/result.json"))]
    bad = [r["task_id"] for r in results if r["status"] != "succeeded"]
    if len(results) != N_TASKS or bad:
        raise RuntimeError(f"expected {N_TASKS} succeeded tasks, got {len(results)} results, not succeeded: {bad}")
    starts = [_ts(r["started_at"]) for r in results]
    ends = [_ts(r["finished_at"]) for r in results]
    execution = orjson.loads((run_dir / "execution.json").read_bytes())
    # how long each task waited between its last dependency's end and its own start
    by_id = {r["task_id"]: r for r in results}
    lags = []
    for r in results:
        ready = max((_ts(by_id[d]["finished_at"]) for d in r.get("dependencies") or []), default=min(starts))
        lags.append(_ts(r["started_at"]) - ready)
    return {
        "makespan_s": max(ends) - min(starts),
        "wall_s": wall,
        "estimated_makespan_s": float(execution["estimated_makespan_s"]),
        "start_order": (execution.get("start_order") or {}).get("by", "priority"),
        "mean_start_lag_s": sum(lags) / len(lags),
        # recorded task time beyond its sleep: process start and end as the orchestrator sees them
        "task_overrun_s": median(
            [e - s - durations[r["task_id"]] for r, s, e in zip(results, starts, ends, strict=True)]
        ),
    }


def run_make(directory: Path) -> float:
    import subprocess

    start = time.perf_counter()
    proc = subprocess.run(["make", f"-j{SLOTS}", "-s", "-f", "Makefile", "all"], cwd=directory, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"make exited {proc.returncode}: {proc.stderr.decode()[-1500:]}")
    return wall


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default: {' '.join(map(str, SEEDS))}")
    parser.add_argument("--repeat", type=int, default=None, help="runs per seed and tool (default 2, quick 1)")
    args = parser.parse_args()
    seeds = args.seeds or (list(SEEDS[:2]) if args.quick else list(SEEDS))
    repeat = args.repeat or (1 if args.quick else 2)
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (run: make install)")
    import shutil

    have_make = shutil.which("make") is not None

    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="awoc-bench-schedule-") as tmp:
        for seed in seeds:
            tasks = make_dag(seed)
            lb, critical, work = lower_bound(tasks, SLOTS)
            durations = {t["id"]: t["duration"] for t in tasks}
            seed_dir = Path(tmp) / f"seed{seed}"
            seed_dir.mkdir()
            config = seed_dir / "config.json"
            config.write_bytes(orjson.dumps(awoc_config(tasks, seed)))
            (seed_dir / "Makefile").write_text(makefile(tasks))
            awoc_runs, make_runs = [], []
            for rep in range(repeat):
                awoc_runs.append(run_awoc(cli, config, seed_dir / f"state{rep}", durations))
                if have_make:
                    make_runs.append(run_make(seed_dir))
            row = {
                "seed": seed,
                "lower_bound_s": lb,
                "critical_path_s": critical,
                "work_over_slots_s": work,
                "makespan_s": median([r["makespan_s"] for r in awoc_runs]),
                "wall_s": median([r["wall_s"] for r in awoc_runs]),
                "estimated_makespan_s": awoc_runs[0]["estimated_makespan_s"],
                "start_order": awoc_runs[0]["start_order"],
                "mean_start_lag_s": median([r["mean_start_lag_s"] for r in awoc_runs]),
                "task_overrun_s": median([r["task_overrun_s"] for r in awoc_runs]),
                "make_s": median(make_runs) if make_runs else None,
                "sim_critical_path_first_s": list_schedule(tasks, SLOTS, "critical-path"),
                "sim_priority_then_critical_path_s": list_schedule(tasks, SLOTS, "priority"),
                "sim_file_order_s": list_schedule(tasks, SLOTS, "file"),
            }
            per_seed.append(row)
            make_text = f"{row['make_s']:.3f}" if row["make_s"] is not None else "-"
            print(
                f"seed {seed}: lower bound {lb:.3f} s (critical path {critical:.3f}, work/4 {work:.3f}); "
                f"awoc makespan {row['makespan_s']:.3f} s (own estimate {row['estimated_makespan_s']:.3f}, "
                f"order: {row['start_order']}), "
                f"end-to-end {row['wall_s']:.3f} s; make -j4 {make_text} s; "
                f"mean start lag {row['mean_start_lag_s'] * 1000:.1f} ms, "
                f"task time over its sleep {row['task_overrun_s'] * 1000:.1f} ms; zero-overhead list schedules: "
                f"critical-path first {row['sim_critical_path_first_s']:.3f}, "
                f"priority first {row['sim_priority_then_critical_path_s']:.3f}, "
                f"file order {row['sim_file_order_s']:.3f}",
                flush=True,
            )

    lb_ratios = [r["makespan_s"] / r["lower_bound_s"] for r in per_seed]
    est_ratios = [r["estimated_makespan_s"] / r["lower_bound_s"] for r in per_seed]
    cp_ratios = [r["sim_critical_path_first_s"] / r["lower_bound_s"] for r in per_seed]
    mean_lb = sum(lb_ratios) / len(lb_ratios)
    figures = [
        Figure(
            "schedule.makespan_over_lower_bound",
            f"schedule: awoc makespan / lower bound (mean of {len(seeds)} DAGs)",
            median([r["makespan_s"] for r in per_seed]),
            "s",
            spread([r["makespan_s"] for r in per_seed]),
            baseline=median([r["lower_bound_s"] for r in per_seed]),
            baseline_label="max(crit. path, work/4)",
            ratio=mean_lb,
            ratio_spread=spread(lb_ratios),
            goal=f"mean <= {GOAL_LOWER_BOUND}x",
            met=mean_lb <= GOAL_LOWER_BOUND,
            details={"per_seed": per_seed, "repeat": repeat, "slots": SLOTS, "tasks": N_TASKS},
        ),
        Figure(
            "schedule.estimate_over_lower_bound",
            "schedule: awoc's own plan estimate / lower bound",
            median([r["estimated_makespan_s"] for r in per_seed]),
            "s",
            spread([r["estimated_makespan_s"] for r in per_seed]),
            baseline=median([r["lower_bound_s"] for r in per_seed]),
            baseline_label="lower bound",
            ratio=sum(est_ratios) / len(est_ratios),
            ratio_spread=spread(est_ratios),
            note="policy only",
        ),
        Figure(
            "schedule.critical_path_first_over_lower_bound",
            "schedule: critical-path-first list schedule / lower bound",
            median([r["sim_critical_path_first_s"] for r in per_seed]),
            "s",
            spread([r["sim_critical_path_first_s"] for r in per_seed]),
            baseline=median([r["lower_bound_s"] for r in per_seed]),
            baseline_label="lower bound",
            ratio=sum(cp_ratios) / len(cp_ratios),
            ratio_spread=spread(cp_ratios),
            note="simulated, ignores priorities",
        ),
    ]
    if have_make:
        make_ratios = [r["makespan_s"] / r["make_s"] for r in per_seed]
        wall_ratios = [r["wall_s"] / r["make_s"] for r in per_seed]
        figures += [
            Figure(
                "schedule.makespan_over_make",
                "schedule: awoc makespan / make -j4 (every DAG)",
                median([r["makespan_s"] for r in per_seed]),
                "s",
                spread([r["makespan_s"] for r in per_seed]),
                baseline=median([r["make_s"] for r in per_seed]),
                baseline_label="make -j4",
                ratio=median(make_ratios),
                ratio_spread=spread(make_ratios),
                goal="max <= 1.00x",
                met=max(make_ratios) <= 1.0,
            ),
            Figure(
                "schedule.wall_over_make",
                "schedule: awoc end-to-end wall / make -j4",
                median([r["wall_s"] for r in per_seed]),
                "s",
                spread([r["wall_s"] for r in per_seed]),
                baseline=median([r["make_s"] for r in per_seed]),
                baseline_label="make -j4",
                ratio=median(wall_ratios),
                ratio_spread=spread(wall_ratios),
                note="incl. start-up",
            ),
        ]
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
