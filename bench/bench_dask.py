"""Per-task overhead of the Dask executor against the local one: 500 no-op tasks, same run.

Starts a local cluster (``dask scheduler`` and two ``dask worker --nthreads 4 --no-nanny`` on
127.0.0.1), then, interleaved ``--repeat`` times: ``delegate-parallel run`` of 500
``command: ["true"]`` tasks at 8 at a time with the local executor, and the same with
``--executor dask``. Reports the per-task wall time of each (after the fixed cost of a
one-task run with the same executor) and their ratio. Goal: at most 5x the local executor per
task (what a remote attempt adds: round trips to the scheduler and a worker, and a message each way
to the worker's long-lived supervisor).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from benchlib import Figure, bench_parser, command_config, emit, find_cli, median, spread

SLOTS = 8
GOAL_RATIO = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(log_dir: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    log = open(log_dir / "cluster.log", "wb")  # noqa: SIM115 - shared by the cluster's processes
    procs.append(
        subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                         stdout=log, stderr=log, start_new_session=True)
    )  # fmt: skip
    for _ in range(2):
        procs.append(
            subprocess.Popen([dask, "worker", address, "--nthreads", "4", "--no-nanny", "--no-dashboard"],
                             stdout=log, stderr=log, start_new_session=True)
        )  # fmt: skip
    from distributed import Client

    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(address, timeout=10, set_as_default=False) as client:
                if len(client.scheduler_info()["workers"]) == 2:
                    return address, procs
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the local Dask cluster did not come up")
        time.sleep(0.3)


def timed_run(cli: str, state: Path, config: Path, *flags: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([cli, "run", "--quiet", "--state-dir", str(state), *flags, str(config)],
                          capture_output=True, check=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        failed = [p.read_text()[-600:] for p in state.glob("runs/*/tasks/*/stderr.log") if p.stat().st_size]
        raise RuntimeError(f"run {' '.join(flags) or 'local'} exited {proc.returncode}: {failed[:3]}")
    return elapsed


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=None, help="default 500 (quick: 100)")
    parser.add_argument("--repeat", type=int, default=None, help="default 3 (quick: 1)")
    args = parser.parse_args()
    n = args.tasks or (100 if args.quick else 500)
    repeat = args.repeat or (1 if args.quick else 3)
    cli = find_cli("delegate-parallel")
    if cli is None:
        sys.exit("delegate-parallel is not installed (run: make install)")
    tasks = [{"task_id": f"t{i:04d}", "agent": "bench", "description": "no-op", "command": ["true"]} for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="awoc-bench-dask-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "many.json").write_bytes(orjson.dumps(command_config("bench-dask", SLOTS, 3600, tasks)))
        (tmp / "one.json").write_bytes(orjson.dumps(command_config("bench-dask", SLOTS, 3600, tasks[:1])))
        address, procs = start_cluster(tmp)
        remote = ("--executor", "dask", "--scheduler", address)
        per_task: dict[str, list[float]] = {"local": [], "dask": []}
        try:
            for rep in range(repeat):
                for name, flags in (("local", ()), ("dask", remote)):
                    many = timed_run(cli, tmp / f"{name}-many-{rep}", tmp / "many.json", *flags)
                    one = timed_run(cli, tmp / f"{name}-one-{rep}", tmp / "one.json", *flags)
                    per_task[name].append((many - one) / max(1, n - 1) * 1000)
                    print(f"run {rep + 1}/{repeat} {name}: {many:.2f} s for {n} tasks, {one:.2f} s for one", flush=True)
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    local, dask = median(per_task["local"]), median(per_task["dask"])
    figure = Figure(
        key="dask.per_task_overhead",
        label=f"Dask executor per-task overhead, {n} no-op tasks at {SLOTS} at a time",
        value=round(dask, 2),
        unit="ms",
        spread=spread(per_task["dask"]),
        baseline=round(local, 2),
        baseline_label="local executor",
        ratio=round(dask / local, 2) if local > 0 else None,
        goal=f"<= {GOAL_RATIO:g}x",
        met=local > 0 and dask / local <= GOAL_RATIO,
        note="two workers on this machine",
        details={"per_task_ms": per_task},
    )
    emit([figure], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
