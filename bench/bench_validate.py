"""Benchmark: validate a 10,000-task config with 20,000 dependencies.

Generates a seeded random DAG (dependencies only to earlier tasks, mixed agents and
priorities, explicit task ids) in a temporary directory, then times, each as the median of
5 runs in this one process:

- in-process: ``awoc_scripts.planning.validation.validate_request([path])`` (the core, no CLI, no state);
- full CLI: ``parallel-task-parser validate PATH --state-dir TMP`` as a subprocess;
- baseline: ``python -c pass`` with the same interpreter (the floor of any CLI call).

Prints a table with the ratios, and exits 1 if the in-process median is over 2 seconds.
Run it with ``.venv/bin/python bench/bench_validate.py``; ``make bench`` runs it through
``bench/run_all.py`` (``--json PATH`` writes the figures, ``--quick`` makes 2 runs instead of 5).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

AGENTS = ("architect", "docs-fetcher", "workforce", "qa", "reviewer", "security")
PRIORITIES = ("critical", "high", "medium", "medium", "low")  # medium twice: the usual case
LIMIT_S = 2.0


def make_config(n_tasks: int, n_deps: int, seed: int) -> dict[str, Any]:
    """A random DAG: each dependency points from a task to an earlier one, no duplicates."""
    if n_deps > n_tasks * (n_tasks - 1) // 2:
        raise ValueError(f"{n_tasks} tasks cannot have {n_deps} distinct forward dependencies")
    rng = random.Random(seed)
    ids = [f"t{i:05d}" for i in range(n_tasks)]
    edges: set[tuple[int, int]] = set()
    while len(edges) < n_deps:
        dependent = rng.randrange(1, n_tasks)
        edges.add((dependent, rng.randrange(dependent)))
    deps: list[list[int]] = [[] for _ in range(n_tasks)]
    for dependent, dep in sorted(edges):
        deps[dependent].append(dep)
    tasks = []
    for i, task_id in enumerate(ids):
        task: dict[str, Any] = {
            "task_id": task_id,
            "agent": AGENTS[rng.randrange(len(AGENTS))],
            "description": f"Task {i}: examine module {rng.randrange(1000)} and report what it needs, "
            f"with tests and a short summary for the next step.",
            "priority": PRIORITIES[rng.randrange(len(PRIORITIES))],
        }
        if deps[i]:
            task["dependencies"] = [ids[d] for d in deps[i]]
        if i % 10 == 0:
            task["token_budget"] = 3000 + rng.randrange(5000)
        tasks.append(task)
    return {
        "workflow": "benchmark",
        "parallel_config": {"max_concurrent": 100, "total_token_budget": 100_000_000, "total_timeout": 3600},
        "tasks": tasks,
    }


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run_ok(argv: list[str]) -> None:
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])}... exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")


def find_cli(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} is not installed (run: make install)")
    return found


def write_figures(
    path: str, n_tasks: int, n_deps: int, baseline: list[float], full_cli: list[float], in_process: list[float]
) -> None:
    from benchlib import Figure, emit

    base, cli, core = (statistics.median(x) for x in (baseline, full_cli, in_process))
    emit(
        [
            Figure(
                "validate.in_process",
                f"validate: {n_tasks:,} tasks, {n_deps:,} deps, in-process",
                core,
                "s",
                (min(in_process), max(in_process)),
                baseline=base,
                baseline_label="python -c pass",
                ratio=core / base,
                goal=f"< {LIMIT_S:.0f} s",
                met=core < LIMIT_S,
            ),
            Figure(
                "validate.cli",
                "validate: same, parallel-task-parser validate (CLI)",
                cli,
                "s",
                (min(full_cli), max(full_cli)),
                baseline=core,
                baseline_label="in-process",
                ratio=cli / core,
            ),
        ],
        path,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--deps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeat", type=int, default=None, help="runs of each (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 runs of each instead of 5")
    parser.add_argument("--json", metavar="PATH", help="write the figures here (for bench/run_all.py)")
    args = parser.parse_args()
    args.repeat = args.repeat or (2 if args.quick else 5)

    from awoc_scripts.planning.validation import validate_request

    cli = find_cli("parallel-task-parser")
    with tempfile.TemporaryDirectory(prefix="awoc-bench-") as tmp:
        path = Path(tmp) / "config.json"
        path.write_bytes(orjson.dumps(make_config(args.tasks, args.deps, args.seed)))
        size_mb = path.stat().st_size / 1e6

        plan = validate_request([str(path)])  # also a warm-up: lazy imports, schema compilation
        n_tasks = len(plan["tasks"])
        n_deps = sum(len(t["dependencies"]) for t in plan["tasks"])
        if (n_tasks, n_deps) != (args.tasks, args.deps):
            sys.exit(f"the plan has {n_tasks} tasks and {n_deps} dependencies, expected {args.tasks} and {args.deps}")

        baseline = timed(lambda: run_ok([sys.executable, "-c", "pass"]), args.repeat)
        state = str(Path(tmp) / "state")
        full_cli = timed(lambda: run_ok([cli, "validate", str(path), "--state-dir", state]), args.repeat)
        in_process = timed(lambda: validate_request([str(path)]), args.repeat)

    base = statistics.median(baseline)
    print(f"config: {n_tasks} tasks, {n_deps} dependencies, {size_mb:.1f} MB; median of {args.repeat} runs")
    print(f"{'what':<44} {'median s':>9} {'min s':>7} {'max s':>7} {'x baseline':>11}")
    for label, times in (
        ("baseline: python -c pass", baseline),
        ("full CLI: parallel-task-parser validate", full_cli),
        ("in-process: validate_request([path])", in_process),
    ):
        median = statistics.median(times)
        print(f"{label:<44} {median:>9.3f} {min(times):>7.3f} {max(times):>7.3f} {median / base:>10.1f}x")
    median_in = statistics.median(in_process)
    print(f"CLI overhead over in-process: {statistics.median(full_cli) - median_in:.3f} s")
    if args.json:
        write_figures(args.json, n_tasks, n_deps, baseline, full_cli, in_process)
    if median_in > LIMIT_S:
        print(f"FAIL: in-process validation median {median_in:.3f} s is over {LIMIT_S:.0f} s", file=sys.stderr)
        return 1
    print(f"ok: in-process validation median {median_in:.3f} s is under {LIMIT_S:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
