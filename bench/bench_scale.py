"""Scale: validate, plan and simulate DAGs of 1,000, 10,000 and 100,000 tasks, in-process.

Each size is a seeded random config from ``bench_validate.make_config`` (twice as many
dependencies as tasks, each to an earlier task; mixed agents and priorities; the default
``batch_token_limit``), written to a file. A fresh subprocess per size imports awoc, warms up on a
tiny config (schema compilation is not counted), then times
``awoc_scripts.planning.validation.validate_request([path])`` and
``awoc_scripts.planning.execution_plan.plan_execution(plan)`` (budgets, critical path and the simulated
schedule), median of ``--repeat`` runs, and reads its peak RSS growth (``ru_maxrss``) over the
two, and times ``json.load`` of the same file (the baseline: what reading it costs at all). A step
that takes longer than ``--limit`` seconds is stopped and reported as at least that.

Goals: linear growth (at most 12x per tenfold: 10x with 20% slack), and validate + plan of
100,000 tasks at most 10x json.load of the same file.
"""

from __future__ import annotations

import itertools
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, bench_parser, emit, median, spread

GOAL_GROWTH = 12.0
GOAL_VS_JSON_LOAD = 10.0  # validate + plan of the largest size, against json.load of its file
SEED = 20240601


class StepTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise StepTimeout


def timed_step(fn: Any, limit: float) -> tuple[float, bool, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    start = time.perf_counter()
    try:
        value = fn()
        return time.perf_counter() - start, False, value
    except StepTimeout:
        return time.perf_counter() - start, True, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def worker(config: str, repeat: int, limit: float) -> dict[str, Any]:
    from bench_validate import make_config

    from awoc_scripts.planning.execution_plan import plan_execution
    from awoc_scripts.planning.validation import validate_request

    with tempfile.TemporaryDirectory(prefix="awoc-bench-scale-") as tmp:
        tiny = Path(tmp) / "tiny.json"
        tiny.write_bytes(orjson.dumps(make_config(10, 10, 1)))
        plan_execution(validate_request([str(tiny)]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, Any] = {"validate_s": [], "plan_s": [], "timed_out": None, "json_load_s": []}
    for _ in range(max(3, repeat)):  # the baseline: the standard library reading the same file
        start = time.perf_counter()
        with open(config, "rb") as fh:
            json.load(fh)
        out["json_load_s"].append(time.perf_counter() - start)
    for _ in range(repeat):
        elapsed, timed_out, plan = timed_step(lambda: validate_request([config]), limit)
        out["validate_s"].append(elapsed)
        if timed_out:
            out["timed_out"] = "validate"
            break
        elapsed, timed_out, execution = timed_step(lambda plan=plan: plan_execution(plan), limit)
        out["plan_s"].append(elapsed)
        if timed_out:
            out["timed_out"] = "plan"
            break
        out["tasks"] = len(plan["tasks"])
        out["dependencies"] = sum(len(t["dependencies"]) for t in plan["tasks"])
        out["estimated_makespan_s"] = execution["estimated_makespan_s"]
        out["peak_concurrency"] = execution["peak_concurrency"]
        del plan, execution
    out["rss_before_mb"] = rss_before / 1024
    out["peak_rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return out


def run_size(n: int, tmp: Path, repeat: int, limit: float) -> dict[str, Any]:
    from bench_validate import make_config

    path = tmp / f"config-{n}.json"
    start = time.perf_counter()
    path.write_bytes(orjson.dumps(make_config(n, 2 * n, SEED)))
    generated = time.perf_counter() - start
    argv = [sys.executable, __file__, "--worker", str(path), "--repeat", str(repeat), "--limit", str(limit)]
    proc = subprocess.run(argv, capture_output=True, timeout=limit * repeat * 3 + 120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {n} tasks exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    result: dict[str, Any] = orjson.loads(proc.stdout)
    result["size"] = n
    result["config_mb"] = path.stat().st_size / 1e6
    result["generate_s"] = generated
    path.unlink()
    return result


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default 1000 10000 100000 (quick: 2)")
    parser.add_argument("--repeat", type=int, nargs="+", default=None, help="runs per size (default 5 3 3)")
    parser.add_argument("--limit", type=float, default=30.0, help="seconds before a step is stopped (default 30)")
    parser.add_argument("--worker", metavar="CONFIG", help=argparse_hidden())
    args = parser.parse_args()
    if args.worker:
        sys.stdout.buffer.write(orjson.dumps(worker(args.worker, args.repeat[0], args.limit)))
        return 0
    sizes = args.sizes or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    repeats = args.repeat or ([3, 1] if args.quick else [5, 3, 3])
    repeats = (repeats + [repeats[-1]] * len(sizes))[: len(sizes)]

    rows = []
    with tempfile.TemporaryDirectory(prefix="awoc-bench-scale-") as tmp:
        for n, repeat in zip(sizes, repeats, strict=True):
            r = run_size(n, Path(tmp), repeat, args.limit)
            r["validate_med_s"] = median(r["validate_s"])
            r["plan_med_s"] = median(r["plan_s"]) if r["plan_s"] else None
            r["total_s"] = r["validate_med_s"] + (r["plan_med_s"] or 0.0)
            rows.append(r)
            plan_text = "-" if r["plan_med_s"] is None else f"{r['plan_med_s']:.3f}"
            stopped = f" (stopped: {r['timed_out']} over {args.limit:g} s)" if r["timed_out"] else ""
            print(
                f"{n:>7} tasks ({r['config_mb']:.1f} MB): validate {r['validate_med_s']:.3f} s, plan {plan_text} s"
                f"{stopped}; peak RSS +{r['peak_rss_growth_mb']:.0f} MB; median of {len(r['validate_s'])}",
                flush=True,
            )

    def growth(key: str) -> list[float]:
        out = []
        for small, big in itertools.pairwise(rows):
            if small.get(key) and big.get(key) is not None:
                out.append(big[key] / small[key] * (small["size"] * 10 / big["size"]))
        return out

    largest, previous = rows[-1], rows[-2] if len(rows) > 1 else None
    any_timeout = any(r["timed_out"] for r in rows)
    figures = []
    for key, step, what in (("validate_med_s", "validate", "validate"), ("plan_med_s", "plan", "plan + simulate")):
        g = growth(key)
        stopped = largest["timed_out"] == step
        not_reached = largest["timed_out"] == "validate" and step == "plan"
        value: float | None = args.limit if stopped else largest[key]
        ratio = None
        if previous is not None and value is not None and previous[key]:
            ratio = value / previous[key] * (previous["size"] * 10 / largest["size"])
        note = f"stopped at {args.limit:g} s: a lower bound" if stopped else ("not reached" if not_reached else "")
        figures.append(
            Figure(
                f"scale.{step}_growth",
                f"scale: {what} {largest['size']:,} tasks, growth per 10x",
                value,
                "s",
                baseline=previous[key] if previous else None,
                baseline_label=f"{previous['size']:,} tasks" if previous else "",
                ratio=ratio,
                ratio_spread=spread(g) if len(g) > 1 else None,
                goal=f"<= {GOAL_GROWTH:.0f}x",
                met=None if ratio is None else (ratio <= GOAL_GROWTH and not stopped),
                note=note,
                details={"growth_per_tenfold": g, "stopped": stopped},
            )
        )
    total = largest["total_s"] if not largest["timed_out"] else None
    lower_bound_total = args.limit if largest["timed_out"] == "validate" else largest["validate_med_s"] + args.limit
    value = total if total is not None else lower_bound_total
    json_load = median(largest["json_load_s"])
    figures.append(
        Figure(
            "scale.largest_total",
            f"scale: validate + plan {largest['size']:,} tasks, vs json.load of the file",
            value,
            "s",
            baseline=json_load,
            baseline_label="json.load",
            ratio=value / json_load,
            goal=f"<= {GOAL_VS_JSON_LOAD:.0f}x" if largest["size"] >= 100_000 else "",
            met=(total is not None and total / json_load <= GOAL_VS_JSON_LOAD) if largest["size"] >= 100_000 else None,
            note=f"{largest['timed_out']} stopped at {args.limit:g} s: a lower bound" if largest["timed_out"] else "",
            details={"sizes": rows, "any_timeout": any_timeout, "limit_s": args.limit},
        )
    )
    g = growth("peak_rss_growth_mb")
    mem_ratio = g[-1] if g else None
    figures.append(
        Figure(
            "scale.memory",
            f"scale: peak RSS growth, {largest['size']:,} tasks, per 10x",
            largest["peak_rss_growth_mb"],
            "MB",
            baseline=previous["peak_rss_growth_mb"] if previous else None,
            baseline_label=f"{previous['size']:,} tasks" if previous else "",
            ratio=mem_ratio,
            ratio_spread=spread(g) if len(g) > 1 else None,
            goal=f"<= {GOAL_GROWTH:.0f}x",
            met=None if mem_ratio is None else mem_ratio <= GOAL_GROWTH,
            note=f"{largest['timed_out']} stopped early" if largest["timed_out"] else "",
        )
    )
    if previous is not None:
        small, big = (dict_update_ns(previous["size"]), dict_update_ns(largest["size"]))
        figures.append(
            Figure(
                "scale.memory_hierarchy_reference",
                f"scale: reference, one dict update per task in random order, {largest['size']:,} tasks",
                big * largest["size"] / 1e9,
                "s",
                baseline=small * previous["size"] / 1e9,
                baseline_label=f"{previous['size']:,} tasks",
                ratio=(big * largest["size"]) / (small * previous["size"]) * (previous["size"] * 10 / largest["size"]),
                note="the machine's floor for growth per 10x: caches, not code",
                details={"ns_per_update": {str(previous["size"]): small, str(largest["size"]): big}},
            )
        )
    emit(figures, args.json)
    return 0


def dict_update_ns(n: int) -> float:
    """Nanoseconds per update of a dict of n task-id keys, visited in random order: what any
    code keyed by task id pays once its tables outgrow the CPU caches."""
    import gc
    import random
    import time

    keys = [f"task-{i:06d}" for i in range(n)]
    table = dict.fromkeys(keys, 0)
    random.Random(1).shuffle(keys)
    gc.disable()
    try:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for key in keys:
                table[key] += 1
            best = min(best, (time.perf_counter() - start) / n * 1e9)
    finally:
        gc.enable()
    return best


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
