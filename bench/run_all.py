"""Run every benchmark module, print one table, write bench/results.json.

Each module runs as its own process (``python bench/<module>.py --json TMP [--quick]``); its own
detailed output is kept in results.json (``modules.<name>.output``) and shown with ``--verbose``.
A module that fails does not stop the others: its row says so. The exit code is 0 whether goals
are met or not (benchmarks record, they do not gate); it is 1 only if a module crashed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from benchlib import BENCH_DIR, Figure, figure_from_dict, machine_info, print_table, tool_versions

MODULES = (
    "bench_schedule",
    "bench_overhead",
    "bench_startup",
    "bench_scale",
    "bench_events",
    "bench_validate",
    "bench_dask",
    "bench_abort",
    "bench_history",
    "bench_warm_pool",
    "bench_fan_out",
)
MODULE_TIMEOUT_S = 600


def run_module(name: str, quick: bool, verbose: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="awoc-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        argv = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--json", str(out), *(["--quick"] if quick else [])]
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=MODULE_TIMEOUT_S, check=False)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code = -1
            stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = f"timed out after {MODULE_TIMEOUT_S} s"
        elapsed = time.perf_counter() - start
        data = orjson.loads(out.read_bytes()) if out.exists() else {}
    if verbose:
        sys.stdout.write(f"\n== {name} ({elapsed:.1f} s, exit {code})\n{stdout}{stderr}")
    return {"seconds": round(elapsed, 1), "exit_code": code, "output": stdout, "stderr": stderr[-4000:], **data}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every module with --quick")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these modules")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each module's own output")
    parser.add_argument("--output", default=str(BENCH_DIR / "results.json"), help="default: bench/results.json")
    args = parser.parse_args()

    import compileall

    # start-up is measured: the package's bytecode must exist (PYTHONDONTWRITEBYTECODE may be set)
    compileall.compile_dir(str(BENCH_DIR.parent / "awoc_scripts"), quiet=1)
    started = datetime.now(UTC)
    machine = machine_info()
    tools = tool_versions()
    modules: dict[str, Any] = {}
    figures: list[Figure] = []
    crashed = False
    t0 = time.perf_counter()
    for name in args.only or MODULES:
        sys.stderr.write(f"{name}{' --quick' if args.quick else ''} ... ")
        sys.stderr.flush()
        result = run_module(name, args.quick, args.verbose)
        modules[name] = result
        got = [figure_from_dict(f) for f in result.get("figures", [])]
        if not got:
            crashed = True
            why = (result["stderr"].strip().splitlines() or [f"exit {result['exit_code']}"])[-1][:100]
            got = [Figure(f"{name}.crashed", f"{name}: no figures", None, "", note=f"crashed: {why}")]
        figures += got
        sys.stderr.write(f"{result['seconds']:.0f} s\n")
    total = time.perf_counter() - t0
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

    print(
        f"\nawoc benchmarks{' (quick)' if args.quick else ''}: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_total_mb']} MB, Python {machine['python']}, kernel {machine['kernel']}; "
        f"load {machine['load_average']} -> {machine['load_average_after']}; {total:.0f} s in all"
    )
    print("values: medians with [min-max] over the runs; ratios against baselines measured in the same run\n")
    print_table(figures, sys.stdout)
    goals = [f for f in figures if f.met is not None]
    print(f"\n{sum(1 for f in goals if f.met)} of {len(goals)} goals met")
    for name, result in modules.items():
        for skipped in result.get("skipped", []):
            print(f"skipped in {name}: {skipped}")

    doc = {
        "schema": "awoc-bench-v1",
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seconds": round(total, 1),
        "quick": args.quick,
        "machine": machine,
        "tools": tools,
        "figures": [f.as_dict() for f in figures],
        "modules": {name: {k: v for k, v in result.items() if k != "figures"} for name, result in modules.items()},
    }
    output = Path(args.output)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, output)
    print(f"wrote {args.output}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
