"""Per-task overhead and orchestrator footprint: 600 no-op tasks at 8 at a time.

In the same run, interleaved, each ``--repeat`` times:

- awoc: ``delegate-parallel run --quiet CONFIG`` of 600 ``command: ["true"]`` tasks with
  ``max_concurrent`` 8 (``total_token_budget`` and ``batch_token_limit`` large enough), with all
  its state (plan, state, events, result files, report) in a fresh temporary directory in
  memory (tmpfs), and again on disk;
- ``seq 600 | parallel -j8 true`` (GNU parallel; the numbers come from a file on stdin);
- ``seq 600 | xargs -P8 -n1 true``;
- awoc with a single task, to separate its fixed cost (start-up, validation, report) from the
  cost per task;
- awoc's process layer alone (``executor_floor.py``: its LocalExecutor starting the same tasks, with
  their files and cgroups, and nothing else): the floor under the cost of a task, so that what a
  run adds above it is measured, not guessed;
- the same process layer starting no task (its interpreter and imports), so that a run's lower
  bound can be given: its fixed cost (the 1-task run) plus the floor's cost of the 600 tasks. When
  that bound is already over the goal, no saving in the run's own bookkeeping can meet it.

Reports medians and min-max of wall time, the peak RSS of the orchestrator (wait4), its own CPU
time (read while it is a zombie, so without its children) and the CPU of its children.
Goals: awoc <= 0.4x GNU parallel and <= 1.5x xargs in wall time, with a cgroup per task where the
machine allows one (the default); peak RSS under 80 MB.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from benchlib import Figure, Measured, bench_parser, command_config, emit, find_cli, measure, median, spread

SLOTS = 8
GOAL_VS_PARALLEL = 0.4
GOAL_VS_XARGS = 1.5
GOAL_RSS_MB = 80.0
FLOOR = Path(__file__).with_name("executor_floor.py")


def config(n: int) -> dict[str, Any]:
    tasks = [{"task_id": f"t{i:05d}", "agent": "bench", "description": "no-op", "command": ["true"]} for i in range(n)]
    return command_config("bench-overhead", SLOTS, 3600, tasks)


def check_awoc_run(state: Path, out: Path, n: int) -> dict[str, Any]:
    summary = orjson.loads(out.read_bytes())
    succeeded = summary.get("counts", {}).get("succeeded", 0)
    if succeeded != n:
        raise RuntimeError(f"awoc: {succeeded} of {n} tasks succeeded: {summary}")
    run_dir = state / "runs" / summary["run_id"]
    results = sum(1 for _ in (run_dir / "results").iterdir())
    events = sum(1 for _ in (run_dir / "events.jsonl").open("rb"))
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    return {
        "result_files": results,
        "events": events,
        "files_written": len(files),
        "bytes_written": sum(p.stat().st_size for p in files),
        "report": (run_dir / "report.json").exists(),
    }


def row(label: str, runs: list[Measured], n: int) -> dict[str, Any]:
    return {
        "label": label,
        "wall_s": median([r.wall_s for r in runs]),
        "wall_spread": spread([r.wall_s for r in runs]),
        "self_cpu_s": median([r.self_cpu_s for r in runs]),
        "children_cpu_s": median([r.children_cpu_s for r in runs]),
        "max_rss_mb": median([r.max_rss_kb / 1024 for r in runs]),
        "max_rss_spread_mb": spread([r.max_rss_kb / 1024 for r in runs]),
        "runs": [r.__dict__ for r in runs],
        "tasks": n,
    }


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=None, help="default 600 (quick: 300)")
    parser.add_argument("--repeat", type=int, default=None, help="default 3 (quick: 1)")
    args = parser.parse_args()
    n = args.tasks or (300 if args.quick else 600)
    repeat = args.repeat or (1 if args.quick else 3)
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (run: make install)")
    have_parallel = shutil.which("parallel") is not None
    runs: dict[str, list[Measured]] = {
        "awoc": [],
        "awoc-disk": [],
        "awoc-1": [],
        "floor": [],
        "floor-0": [],
        "parallel": [],
        "xargs": [],
    }
    state_info: dict[str, Any] = {}
    # The state goes to memory (tmpfs) for the main figures: this VM's disk makes each file
    # creation cost 0.1-0.7 ms and varies twofold between runs. The same run with the state on
    # disk is measured and reported beside it.
    memory = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with (
        tempfile.TemporaryDirectory(prefix="awoc-bench-overhead-") as tmp_name,
        tempfile.TemporaryDirectory(prefix="awoc-bench-state-", dir=memory) as memory_name,
    ):
        tmp = Path(tmp_name)
        fast = Path(memory_name)
        (tmp / "config.json").write_bytes(orjson.dumps(config(n)))
        (tmp / "one.json").write_bytes(orjson.dumps(config(1)))
        numbers = tmp / "seq.txt"
        numbers.write_text("".join(f"{i}\n" for i in range(1, n + 1)))
        out = tmp / "out.json"
        for rep in range(repeat):
            state = fast / f"state{rep}"
            m = measure([cli, "run", "--quiet", "--state-dir", str(state), str(tmp / "config.json")], stdout=out)
            if m.exit_code != 0:
                raise RuntimeError(f"delegate-parallel run exited {m.exit_code}")
            state_info = check_awoc_run(state, out, n)
            runs["awoc"].append(m)
            disk_state = tmp / f"state{rep}"
            m = measure([cli, "run", "--quiet", "--state-dir", str(disk_state), str(tmp / "config.json")], stdout=out)
            if m.exit_code != 0:
                raise RuntimeError(f"delegate-parallel run (state on disk) exited {m.exit_code}")
            runs["awoc-disk"].append(m)
            if have_parallel:
                m = measure(["parallel", f"-j{SLOTS}", "true"], stdin=numbers)
                if m.exit_code != 0:
                    raise RuntimeError(f"parallel exited {m.exit_code}")
                runs["parallel"].append(m)
            m = measure(["xargs", f"-P{SLOTS}", "-n1", "true"], stdin=numbers)
            if m.exit_code != 0:
                raise RuntimeError(f"xargs exited {m.exit_code}")
            runs["xargs"].append(m)
            one_state = fast / f"one{rep}"
            m = measure([cli, "run", "--quiet", "--state-dir", str(one_state), str(tmp / "one.json")], stdout=out)
            if m.exit_code != 0:
                raise RuntimeError(f"delegate-parallel run (1 task) exited {m.exit_code}")
            runs["awoc-1"].append(m)
            floor_dir = fast / f"floor{rep}"
            floor_dir.mkdir()
            m = measure([sys.executable, str(FLOOR), str(n), str(SLOTS), str(floor_dir)])
            if m.exit_code != 0:
                raise RuntimeError(f"executor_floor.py exited {m.exit_code}")
            runs["floor"].append(m)
            m = measure([sys.executable, str(FLOOR), "0", str(SLOTS), str(floor_dir)])
            if m.exit_code != 0:
                raise RuntimeError(f"executor_floor.py with no task exited {m.exit_code}")
            runs["floor-0"].append(m)
            print(
                f"run {rep + 1}/{repeat}: awoc {runs['awoc'][-1].wall_s:.3f} s "
                f"(state on disk {runs['awoc-disk'][-1].wall_s:.3f} s), "
                + (f"parallel {runs['parallel'][-1].wall_s:.3f} s, " if have_parallel else "")
                + f"xargs {runs['xargs'][-1].wall_s:.3f} s, awoc with 1 task {runs['awoc-1'][-1].wall_s:.3f} s, "
                f"its process layer alone {runs['floor'][-1].wall_s:.3f} s",
                flush=True,
            )

    awoc, one, xargs = row("awoc", runs["awoc"], n), row("awoc-1", runs["awoc-1"], 1), row("xargs", runs["xargs"], n)
    disk, floor = row("awoc-disk", runs["awoc-disk"], n), row("floor", runs["floor"], n)
    par = row("parallel", runs["parallel"], n) if have_parallel else None
    per_task_ms = (awoc["wall_s"] - one["wall_s"]) / max(1, n - 1) * 1000
    xargs_per_task_ms = xargs["wall_s"] / n * 1000
    own_cpu_ms = awoc["self_cpu_s"] / n * 1000
    own_cpu_fixed_ms = (awoc["self_cpu_s"] - one["self_cpu_s"]) / max(1, n - 1) * 1000
    details: dict[str, Any] = {"awoc": awoc, "awoc_one_task": one, "xargs": xargs, "parallel": par, "state": state_info}
    print(
        f"awoc: fixed cost {one['wall_s']:.3f} s (1 task); {per_task_ms:.2f} ms per extra task; own CPU "
        f"{own_cpu_ms:.2f} ms/task ({own_cpu_fixed_ms:.2f} ms/task without the fixed part), children's CPU "
        f"{awoc['children_cpu_s'] / n * 1000:.2f} ms/task; xargs total CPU "
        f"{(xargs['self_cpu_s'] + xargs['children_cpu_s']) / n * 1000:.2f} ms/task; state: {state_info}"
    )
    # what the goal leaves above the process layer, for everything else a run does (its start-up
    # included): the gap between the goal and the floor, against what a run takes there now
    goal_wall_s = GOAL_VS_XARGS * xargs["wall_s"]
    left_ms = (goal_wall_s - floor["wall_s"]) / n * 1000
    above_floor_ms = (awoc["wall_s"] - floor["wall_s"]) / n * 1000
    print(
        f"at {GOAL_VS_XARGS}x xargs ({goal_wall_s:.3f} s) the process layer alone ({floor['wall_s']:.3f} s) leaves "
        f"{left_ms:.2f} ms per task for the rest of a run (start-up, plan, state, events, results, report); "
        f"a run takes {above_floor_ms:.2f} ms"
    )
    # a run's lower bound: start-up, validation, plan and report (the 1-task run) plus what the
    # process layer alone takes for the tasks, without its own start-up
    bounds = [
        o.wall_s + f.wall_s - f0.wall_s for o, f, f0 in zip(runs["awoc-1"], runs["floor"], runs["floor-0"], strict=True)
    ]
    bound_s = median(bounds)
    print(
        f"a run's lower bound: its fixed cost {one['wall_s']:.3f} s + the process layer's "
        f"{floor['wall_s'] - median([f.wall_s for f in runs['floor-0']]):.3f} s for the tasks = {bound_s:.3f} s, "
        f"{bound_s / xargs['wall_s']:.2f}x xargs (the goal: {GOAL_VS_XARGS}x)"
    )
    figures = []
    if par is not None:
        ratios = [a.wall_s / p.wall_s for a, p in zip(runs["awoc"], runs["parallel"], strict=True)]
        figures.append(
            Figure(
                "overhead.wall_vs_parallel",
                f"overhead: {n} no-op tasks, -j{SLOTS}, awoc / GNU parallel",
                awoc["wall_s"],
                "s",
                awoc["wall_spread"],
                baseline=par["wall_s"],
                baseline_label="parallel -j8",
                ratio=awoc["wall_s"] / par["wall_s"],
                ratio_spread=spread(ratios),
                goal=f"<= {GOAL_VS_PARALLEL}x",
                met=awoc["wall_s"] / par["wall_s"] <= GOAL_VS_PARALLEL,
                details=details,
            )
        )
        figures.append(
            Figure(
                "overhead.wall_vs_parallel_state_on_disk",
                "overhead: same, state on this VM's disk / GNU parallel",
                disk["wall_s"],
                "s",
                disk["wall_spread"],
                baseline=par["wall_s"],
                baseline_label="parallel -j8",
                ratio=disk["wall_s"] / par["wall_s"],
                details={"awoc_state_on_disk": disk},
            )
        )
    else:
        details["note"] = "GNU parallel is not installed"
    ratios = [a.wall_s / x.wall_s for a, x in zip(runs["awoc"], runs["xargs"], strict=True)]
    figures += [
        Figure(
            "overhead.wall_vs_xargs",
            f"overhead: {n} no-op tasks, -P{SLOTS}, awoc / xargs",
            awoc["wall_s"],
            "s",
            awoc["wall_spread"],
            baseline=xargs["wall_s"],
            baseline_label="xargs -P8",
            ratio=awoc["wall_s"] / xargs["wall_s"],
            ratio_spread=spread(ratios),
            goal=f"<= {GOAL_VS_XARGS}x",
            met=awoc["wall_s"] / xargs["wall_s"] <= GOAL_VS_XARGS,
            details=details if par is None else {},
        ),
        Figure(
            "overhead.floor_vs_xargs",
            f"overhead: awoc's process layer alone, {n} no-op tasks / xargs",
            floor["wall_s"],
            "s",
            floor["wall_spread"],
            baseline=xargs["wall_s"],
            baseline_label="xargs -P8",
            ratio=floor["wall_s"] / xargs["wall_s"],
            ratio_spread=spread([f.wall_s / x.wall_s for f, x in zip(runs["floor"], runs["xargs"], strict=True)]),
            note="the floor: executor only",
            details={"floor": floor, "run_above_floor_ms_per_task": above_floor_ms, "goal_leaves_ms_per_task": left_ms},
        ),
        Figure(
            "overhead.lower_bound_vs_xargs",
            "overhead: a run's lower bound (fixed cost + process layer), / xargs",
            bound_s,
            "s",
            spread(bounds),
            baseline=xargs["wall_s"],
            baseline_label="xargs -P8",
            ratio=bound_s / xargs["wall_s"],
            ratio_spread=spread([b / x.wall_s for b, x in zip(bounds, runs["xargs"], strict=True)]),
            note="bound: 1-task run + floor",
            details={"bounds_s": bounds, "floor_start_s": [f.wall_s for f in runs["floor-0"]]},
        ),
        Figure(
            "overhead.time_per_task",
            "overhead: awoc wall per extra task (fixed cost removed)",
            per_task_ms,
            "ms",
            baseline=xargs_per_task_ms,
            baseline_label="xargs per task",
            ratio=per_task_ms / xargs_per_task_ms,
            details={"fixed_cost_s": one["wall_s"], "fixed_cost_spread": one["wall_spread"]},
        ),
        Figure(
            "overhead.peak_rss",
            f"footprint: orchestrator peak RSS, {n} tasks",
            awoc["max_rss_mb"],
            "MB",
            awoc["max_rss_spread_mb"],
            baseline=par["max_rss_mb"] if par else None,
            baseline_label="GNU parallel" if par else "",
            ratio=awoc["max_rss_mb"] / par["max_rss_mb"] if par else None,
            goal=f"< {GOAL_RSS_MB:.0f} MB",
            met=awoc["max_rss_mb"] < GOAL_RSS_MB,
            details={"one_task_max_rss_mb": one["max_rss_mb"]},
        ),
        Figure(
            "overhead.cpu_per_task",
            "footprint: orchestrator own CPU per task",
            own_cpu_ms,
            "ms",
            spread([r.self_cpu_s / n * 1000 for r in runs["awoc"]]),
            baseline=par["self_cpu_s"] / n * 1000 if par else None,
            baseline_label="GNU parallel's own" if par else "",
            ratio=own_cpu_ms / (par["self_cpu_s"] / n * 1000) if par and par["self_cpu_s"] else None,
            details={
                "own_cpu_per_extra_task_ms": own_cpu_fixed_ms,
                "children_cpu_per_task_ms": awoc["children_cpu_s"] / n * 1000,
                "xargs_own_cpu_per_task_ms": xargs["self_cpu_s"] / n * 1000,
            },
        ),
    ]
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
