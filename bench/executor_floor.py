"""awoc's process layer alone: the floor under the cost of a task, with no run around it.

Starts N `true` processes, SLOTS at a time, through awoc's LocalExecutor exactly as a run starts a
`command` task (a session of its own, its standard streams in files under DIR, a cgroup per task
where the machine allows one, its end seen through a pidfd, its cgroup removed), and does nothing
else: no plan, no state, no events, no results, no report. bench_overhead.py runs it beside a
whole run: what a run costs above this is everything awoc does besides starting processes.

Usage: executor_floor.py N SLOTS DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from awoc_scripts.execution.claude_cli import Invocation
from awoc_scripts.execution.executors.base import Attempt
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.processes import task_marker


def main() -> int:
    n, slots, directory = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    run_id = f"floor-{os.getpid()}"
    invocation = Invocation(["true"], dict(os.environ), "command", role_in_prompt=False)
    executor = LocalExecutor()
    started = ended = 0
    try:
        while ended < n:
            while started < n and len(executor.running()) < slots:
                task_id = f"t{started:05d}"
                task_dir = directory / task_id
                task_dir.mkdir()
                prompt = task_dir / "prompt.md"
                prompt.write_bytes(b"no-op")
                attempt = Attempt(
                    task_id,
                    invocation,
                    Path.cwd(),
                    prompt,
                    task_dir / "stdout.log",
                    task_dir / "stderr.log",
                    task_marker(run_id, task_id),
                )
                executor.start(attempt)
                started += 1
            for end in executor.wait(1.0):
                if end.exit_code != 0:
                    raise SystemExit(f"{end.task_id} exited {end.exit_code}")
                ended += 1
    finally:
        executor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
