"""Shared-state throughput: 8 processes appending events to one run's events.jsonl at once.

- In-process: 8 forked workers each call ``awoc_scripts.state.store.Run.append_event`` ``--events``
  times (one locked append each), started together. Baseline, in the same run: the same 8
  workers appending the same lines to another file with a bare ``O_APPEND`` write and no lock.
  For reference, also the same locked append done with a blocking ``fcntl.flock`` (what the
  lock costs when waiters sleep in the kernel instead of polling).
- CLI: if the ``context-monitor`` console script exists, 8 threads each run
  ``context-monitor track parallel-task-start architect <id>`` ``--calls`` times. Baseline: the
  same number of ``python -c "import typer"`` calls, 8 at a time.

Each check reads the events file back: every line parses, and every (worker, sequence) appears
exactly once. Reports events per second; goal: none lost, none torn, none duplicated.
"""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from benchlib import ROOT, Figure, bench_parser, emit, find_cli

WORKERS = 8


def _append_worker(kind: str, run_root: str, run_id: str, target: str, wid: int, count: int, barrier: Any) -> None:
    from awoc_scripts.state.store import Run

    run = Run(Path(run_root), run_id)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if kind == "raw" else -1
    barrier.wait()
    for seq in range(count):
        if kind == "raw":
            line = orjson.dumps({"ts": "", "event": "bench", "worker": wid, "seq": seq}) + b"\n"
            os.write(fd, line)
        elif kind == "flock":
            line = orjson.dumps({"ts": "", "event": "bench", "worker": wid, "seq": seq}) + b"\n"
            lock_fd = os.open(target + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with open(target, "ab") as fh:
                fh.write(line)
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
        else:
            run.append_event("bench", worker=wid, seq=seq)
    if fd >= 0:
        os.close(fd)


def check_lines(path: Path, expected: set[tuple[int, int]], key: Any) -> dict[str, int]:
    seen: Counter[tuple[int, int]] = Counter()
    torn = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            torn += 1
            continue
        k = key(record)
        if k is not None:
            seen[k] += 1
    lost = len(expected - set(seen))
    duplicated = sum(n - 1 for k, n in seen.items() if k in expected and n > 1)
    return {"lost": lost, "duplicated": duplicated, "torn": torn, "found": len(set(seen) & expected)}


def in_process(run_root: Path, run_id: str, events_file: Path, kind: str, count: int) -> float:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(WORKERS + 1)
    target = str(events_file) if kind in ("raw", "flock") else ""
    procs = [
        ctx.Process(target=_append_worker, args=(kind, str(run_root), run_id, target, wid, count, barrier))
        for wid in range(WORKERS)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{kind} workers failed: exit codes {bad}")
    return elapsed


def run_calls(argvs: list[list[str]], env: dict[str, str]) -> float:
    def call(argv: list[str]) -> int:
        return subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
        ).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        codes = list(pool.map(call, argvs))
    elapsed = time.perf_counter() - start
    failed = [c for c in codes if c != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(argvs)} calls failed (exit codes {sorted(set(failed))})")
    return elapsed


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--events", type=int, default=None, help="appends per worker (default 2000, quick 300)")
    parser.add_argument("--calls", type=int, default=None, help="context-monitor calls per worker (default 5, quick 2)")
    args = parser.parse_args()
    count = args.events or (300 if args.quick else 2000)
    calls = args.calls or (2 if args.quick else 5)
    from awoc_scripts.planning.validation import save_new_run, validate_request
    from awoc_scripts.state.store import StateStore

    figures = []
    with tempfile.TemporaryDirectory(prefix="awoc-bench-events-") as tmp:
        store = StateStore(Path(tmp) / "state")
        run = save_new_run(store, validate_request([str(ROOT / "examples" / "tasks.json")]))
        expected = {(w, s) for w in range(WORKERS) for s in range(count)}

        def key(record: dict[str, Any]) -> tuple[int, int] | None:
            return (record["worker"], record["seq"]) if record.get("event") == "bench" else None

        raw_file = Path(tmp) / "raw.jsonl"
        raw_s = in_process(store.root, run.run_id, raw_file, "raw", count)
        locked_s = in_process(store.root, run.run_id, run.events_file, "locked", count)
        flock_file = Path(tmp) / "flock.jsonl"
        flock_s = in_process(store.root, run.run_id, flock_file, "flock", count)
        flock_check = check_lines(flock_file, expected, key)
        locked_check = check_lines(run.events_file, expected, key)
        raw_check = check_lines(raw_file, expected, key)
        total = WORKERS * count
        ok = locked_check["lost"] == locked_check["duplicated"] == locked_check["torn"] == 0
        print(
            f"Run.append_event: {total} events from {WORKERS} processes in {locked_s:.3f} s "
            f"({total / locked_s:,.0f}/s, {locked_s / count * 1e6:.0f} us per append per process); "
            f"check {locked_check}; bare O_APPEND: {raw_s:.3f} s ({total / raw_s:,.0f}/s), check {raw_check}; "
            f"blocking fcntl.flock: {flock_s:.3f} s ({total / flock_s:,.0f}/s), check {flock_check}",
            flush=True,
        )
        figures.append(
            Figure(
                "events.append_event",
                f"events: Run.append_event, {WORKERS} processes x {count}",
                total / locked_s,
                "events/s",
                baseline=total / raw_s,
                baseline_label="bare O_APPEND, no lock",
                ratio=raw_s / locked_s,
                goal="0 lost/torn/duplicated",
                met=ok,
                details={
                    "check": locked_check,
                    "raw_check": raw_check,
                    "seconds": locked_s,
                    "raw_seconds": raw_s,
                    "blocking_flock_seconds": flock_s,
                    "blocking_flock_events_per_s": total / flock_s,
                    "blocking_flock_check": flock_check,
                },
            )
        )

        cli = find_cli("context-monitor")
        if cli is None:
            print("skipped: context-monitor track (console script missing)")
        else:
            env = {**os.environ, "AWOC_STATE_DIR": str(store.root)}
            argvs = [
                [cli, "track", "parallel-task-start", "architect", f"bench-{w}-{s}"]
                for s in range(calls)
                for w in range(WORKERS)
            ]
            base_s = run_calls([[sys.executable, "-c", "import typer"]] * len(argvs), env)
            cli_s = run_calls(argvs, env)
            cli_expected = {(w, s) for w in range(WORKERS) for s in range(calls)}

            def cli_key(record: dict[str, Any]) -> tuple[int, int] | None:
                if record.get("event") != "parallel-task-start":
                    return None
                text = record.get("description") or " ".join(record.get("args", [])[1:])
                if not str(text).startswith("bench-"):
                    return None
                _, w, s = str(text).split("-")
                return (int(w), int(s))

            cli_check = check_lines(run.events_file, cli_expected, cli_key)
            n = len(argvs)
            print(
                f"context-monitor track: {n} calls, {WORKERS} at a time, in {cli_s:.3f} s ({n / cli_s:.1f} events/s); "
                f"check {cli_check}; python -c 'import typer' the same way: {base_s:.3f} s ({n / base_s:.1f}/s)",
                flush=True,
            )
            figures.append(
                Figure(
                    "events.context_monitor_track",
                    f"events: context-monitor track, {WORKERS} at a time x {calls}",
                    n / cli_s,
                    "events/s",
                    baseline=n / base_s,
                    baseline_label="import typer calls/s",
                    ratio=base_s / cli_s,
                    goal="0 lost/torn/duplicated",
                    met=cli_check["lost"] == cli_check["duplicated"] == cli_check["torn"] == 0,
                    details={"check": cli_check, "seconds": cli_s, "baseline_seconds": base_s},
                )
            )
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
