"""What the benchmark modules share: figures, timing of subprocesses, the machine, the table.

A figure is one number with the baseline it was measured against in the same run, the ratio,
the goal and whether it is met. Every module prints its own detail and, with ``--json PATH``,
writes its figures there for ``bench/run_all.py``. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    key: str  # stable name, e.g. "schedule.makespan_over_lower_bound"
    label: str  # what the table shows
    value: float | None
    unit: str
    spread: tuple[float, float] | None = None  # min-max of `value` over the runs
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None  # value / baseline (or the figure's own ratio)
    ratio_spread: tuple[float, float] | None = None
    goal: str = ""
    met: bool | None = None  # None: no goal, or it could not be measured
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def command_config(workflow: str, slots: int, timeout_s: float, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """A config of `command` tasks with nothing but `slots` limiting them: no token bound, no
    retries, no failure tolerated."""
    return {
        "workflow": workflow,
        "parallel_config": {
            "max_concurrent": slots,
            "total_token_budget": 1_000_000_000,
            "batch_token_limit": 1_000_000_000,
            "failure_tolerance": 0,
            "retries": 0,
            "total_timeout": timeout_s,
        },
        "tasks": tasks,
    }


def figure_from_dict(data: dict[str, Any]) -> Figure:
    known = {k: v for k, v in data.items() if k in Figure.__dataclass_fields__}
    for key in ("spread", "ratio_spread"):
        if known.get(key) is not None:
            known[key] = tuple(known[key])
    return Figure(**known)


def spread(values: Sequence[float]) -> tuple[float, float]:
    return (min(values), max(values))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- command line --------------------------------------------------------------------------


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs (a smoke test of the benchmark)")
    parser.add_argument("--json", metavar="PATH", help="write the figures here (used by bench/run_all.py)")
    return parser


def emit(figures: Sequence[Figure], json_path: str | None, extra: dict[str, Any] | None = None) -> None:
    """Print the module's figures as a table, and write them for run_all."""
    print()
    print_table(figures, sys.stdout)
    if json_path:
        Path(json_path).write_bytes(
            orjson.dumps(
                {"figures": [f.as_dict() for f in figures], **(extra or {})},
                option=orjson.OPT_INDENT_2,
            )
        )


# -- formatting ----------------------------------------------------------------------------


def fmt_num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 0.1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def fmt_spread(values: tuple[float, float] | None, unit: str = "") -> str:
    if values is None:
        return ""
    low, high = values
    if unit == "x":
        return f"[{fmt_ratio(low)}-{fmt_ratio(high)}]"
    return f"[{fmt_num(low)}-{fmt_num(high)}]"


def table_rows(figures: Iterable[Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        value = fmt_num(f.value, f.unit)
        if f.spread:
            value += " " + fmt_spread(f.spread, f.unit)
        baseline = "-"
        if f.baseline is not None:
            baseline = fmt_num(f.baseline, f.unit if f.unit != "x" else "")
        if f.baseline_label:
            baseline = f"{baseline} ({f.baseline_label})" if f.baseline is not None else f.baseline_label
        ratio = "-" if f.ratio is None else f"{fmt_ratio(f.ratio)}x"
        if f.ratio_spread:
            ratio += " " + fmt_spread(f.ratio_spread, "x")
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        if f.note:
            met = f"{met} ({f.note})"
        rows.append([f.label, value, baseline, ratio, f.goal or "-", met])
    return rows


def print_table(figures: Sequence[Figure], out: IO[str]) -> None:
    header = ["figure", "value [min-max]", "baseline", "ratio [min-max]", "goal", "met?"]
    rows = [header, *table_rows(figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()


# -- running things ------------------------------------------------------------------------


def find_cli(name: str) -> str | None:
    """The console script beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def shim(name: str) -> str | None:
    path = ROOT / "scripts" / f"{name}.sh"
    return str(path) if path.exists() else None


@dataclass
class Measured:
    wall_s: float
    exit_code: int
    self_cpu_s: float  # user + system of the process itself
    children_cpu_s: float  # user + system of the children it waited for
    max_rss_kb: int  # the largest resident set of the process or any child it waited for


def measure(
    argv: Sequence[str],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Measured:
    """Run a program to its end; wall time, its own and its children's CPU, and peak RSS.

    The process is waited for without being reaped first (waitid WNOWAIT), so its own CPU can
    be read from /proc while it is a zombie; then wait4 reaps it and gives the peak RSS.
    """
    stdin_fh = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115 - closed below
    stdout_fh = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin_fh, stdout=stdout_fh, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
        deadline = None if timeout is None else start + timeout
        while True:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | (os.WNOHANG if deadline else 0))
            if info is not None:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                deadline = None
            time.sleep(0.002)
        wall = time.perf_counter() - start
        self_cpu, children_cpu = _zombie_cpu(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for fh in (stdin_fh, stdout_fh):
            if not isinstance(fh, int):
                fh.close()
    return Measured(wall, proc.returncode, self_cpu, children_cpu, int(usage.ru_maxrss))


def _zombie_cpu(pid: int) -> tuple[float, float]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return (float("nan"), float("nan"))
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ((utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS)


def time_call(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Wall time of one call whose output is thrown away; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-1500:]}"
        )
    return elapsed


# -- the machine and the tools -------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = mem_available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) // 1024
            elif line.startswith("MemAvailable:"):
                mem_available = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_total_mb": mem_total,
        "memory_available_mb": mem_available,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "system_python3": _first_line(["python3", "--version"]),
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def tool_versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        awoc = version("awoc")
    except PackageNotFoundError:
        awoc = None
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "awoc_scripts"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "gnu_parallel": _first_line(["parallel", "--version"]) if shutil.which("parallel") else None,
        "make": _first_line(["make", "--version"]) if shutil.which("make") else None,
        "xargs": _first_line(["xargs", "--version"]) if shutil.which("xargs") else None,
        "awoc": awoc,
        "awoc_git_commit": commit,
        "awoc_scripts_uncommitted_changes": bool(dirty),
    }
