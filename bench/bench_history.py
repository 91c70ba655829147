"""Estimates from history: a second run of the same config plans from what the first one took.

A seeded random DAG of 16 `sleep` tasks (0.2-1.2 s, each after 0-2 earlier tasks, no
`estimated_duration`, the default timeouts) runs twice with `delegate-parallel run --quiet` at 3
at a time in one state directory. The first plan knows nothing (every task is expected to take
its timeout); the first run records what each task took in `history.json`; the second plan
expects that. Figure: the second plan's makespan against the first run's actual makespan
(`execution_summary.total_time_s`), beside the first plan's, in the same process.

Goal: the second plan within 25% of the first run's actual makespan.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, bench_parser, emit, find_cli

GOAL = 0.25
SEED = 20261202


def make_config(tasks: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    items = []
    for i in range(tasks):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i else []
        seconds = round(rng.uniform(0.2, 1.2), 2)
        items.append(
            {
                "task_id": f"t{i}",
                "agent": "qa",
                "description": f"step {i}",
                "command": ["sleep", str(seconds)],
                "dependencies": deps,
            }
        )
    return {"parallel_config": {"max_concurrent": 3, "retries": 0}, "tasks": items}


def run_once(cli: str, config: Path, state: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    proc = subprocess.run([cli, "run", "--quiet", "--state-dir", str(state), str(config)], capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    run_dir = state / "runs" / (state / "current").read_text().strip()
    return orjson.loads((run_dir / "execution.json").read_bytes()), orjson.loads((run_dir / "report.json").read_bytes())


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (make install)")
    with tempfile.TemporaryDirectory(prefix="awoc-bench-history-") as tmp:
        config = Path(tmp) / "dag.json"
        config.write_bytes(orjson.dumps(make_config(8 if args.quick else 16)))
        state = Path(tmp) / "state"
        plan1, report1 = run_once(cli, config, state)
        plan2, report2 = run_once(cli, config, state)
    actual1 = float(report1["execution_summary"]["total_time_s"])
    actual2 = float(report2["execution_summary"]["total_time_s"])
    planned1, planned2 = float(plan1["estimated_makespan_s"]), float(plan2["estimated_makespan_s"])
    error2 = abs(planned2 - actual1) / actual1
    error1 = abs(planned1 - actual1) / actual1
    print(
        f"first run: planned {planned1:.2f} s (from timeouts), took {actual1:.2f} s; "
        f"second run: planned {planned2:.2f} s (from history), took {actual2:.2f} s"
    )
    print(f"second plan vs first actual: {error2:.1%} off; first plan: {error1:.0%} off")
    figure = Figure(
        "history.second_plan_error",
        "history: second plan's makespan vs first run's actual",
        round(error2 * 100, 1),
        "% off",
        baseline=round(error1 * 100, 1),
        baseline_label="first plan (timeouts), % off",
        ratio=error2 / error1 if error1 else None,
        goal=f"<= {GOAL:.0%}",
        met=error2 <= GOAL,
        details={
            "planned_first_s": planned1,
            "actual_first_s": actual1,
            "planned_second_s": planned2,
            "actual_second_s": actual2,
            "duration_sources": sorted({t["duration_source"] for t in plan2["tasks"]}),
        },
    )
    emit([figure], args.json)


if __name__ == "__main__":
    main()
