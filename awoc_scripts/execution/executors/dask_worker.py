"""What runs on a Dask worker: one attempt as a subprocess tree, stopped on request, on its timeout,
when its future is cancelled (the orchestrator went away) and when the worker itself dies.

Imported by the workers (awoc must be installed there); nothing here imports distributed at
module level, so the orchestrator's side can import it cheaply too.

The attempt's leader is a small supervisor (`python -m ...dask_worker SUPERVISE`) that the kernel
signals when the worker thread that started it dies (PR_SET_PDEATHSIG); it runs the task in a
session of its own and, on SIGTERM or when the task ends, kills the task's whole process group.
Processes that left the group are found by the task's environment marker, as locally.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

POLL_S = 0.1
EVENT_POLL_S = 0.5
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
PR_SET_PDEATHSIG = 1
SCRATCH_PREFIX = "awoc-attempt-"  # then the worker's pid: what a killed worker left is found by it


class AttemptSpec(TypedDict):
    """What the orchestrator sends a worker: one attempt, and the Dask event that stops it."""

    task_id: str
    argv: list[str]
    prompt: bytes
    env: dict[str, str]  # only what the task adds to the worker's own environment
    marker: str
    stop_event: str
    timeout_s: float
    cwd: NotRequired[str | None]


class AttemptReport(TypedDict):
    """What a worker sends back when the attempt ended: its output travels with it (no shared filesystem)."""

    task_id: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    started: float
    ended: float
    stopped: bool
    worker: str
    host: str
    pid: int | None


def run_attempt(spec: AttemptSpec) -> AttemptReport:
    """Run one attempt on this worker; returns exit code, output, timing and where it ran."""
    from distributed import Event, get_worker
    from distributed.worker import thread_state

    from awoc_scripts.processes import MARKER_ENV, kill_marked

    worker = get_worker()
    key = getattr(thread_state, "key", None)
    stop_event = Event(spec["stop_event"])
    env = {**os.environ, **spec["env"], MARKER_ENV: spec["marker"]}
    sweep_dead_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
        out_path, err_path = Path(scratch, "stdout"), Path(scratch, "stderr")
        started = time.time()
        with open(out_path, "wb") as out_fh, open(err_path, "wb") as err_fh:
            try:
                leader = subprocess.Popen(
                    [sys.executable, "-m", __name__, "SUPERVISE", str(os.getpid()), *spec["argv"]],
                    stdin=subprocess.PIPE,
                    stdout=out_fh,
                    stderr=err_fh,
                    env=env,
                    cwd=spec.get("cwd") or None,
                )
            except OSError as exc:
                return _ended(spec, 127, b"", f"cannot start: {exc}".encode(), started, worker, None, False)
        assert leader.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a program that ends without reading its prompt
            leader.stdin.write(spec["prompt"])
        with contextlib.suppress(BrokenPipeError):  # closing flushes what is left, and may find it gone
            leader.stdin.close()
        stopped = False
        deadline = time.monotonic() + float(spec["timeout_s"])
        next_event_check = 0.0
        while _still_running(leader, POLL_S):
            now = time.monotonic()
            if stopped:
                continue
            why = None
            if now >= deadline:
                why = "timeout"
            elif now >= next_event_check:
                next_event_check = now + EVENT_POLL_S
                if _cancelled(worker, key) or _is_set(stop_event):
                    why = "stop"
            if why:
                stopped = True
                leader.send_signal(signal.SIGTERM)  # the supervisor stops the whole group
        kill_marked(*spec["marker"].split("/", 1))  # whatever left the group
        return _ended(
            spec, leader.returncode, _bounded(out_path), _bounded(err_path), started, worker, leader.pid, stopped
        )


def sweep_dead_scratch(tmp: str | None = None) -> list[str]:
    """Scratch folders of attempts whose worker was killed (its pid is in the name) go."""
    import shutil

    from awoc_scripts.processes import process_gone

    removed = []
    base = Path(tmp or tempfile.gettempdir())
    for folder in base.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if pid.isdigit() and process_gone(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _still_running(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait up to TIMEOUT_S for PROC to end (returning as soon as it does)."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return True
    return False


def _ended(
    spec: AttemptSpec, code: int, out: bytes, err: bytes, started: float, worker: Any, pid: int | None, stopped: bool
) -> AttemptReport:
    return {
        "task_id": spec["task_id"],
        "exit_code": code,
        "stdout": out,
        "stderr": err,
        "started": started,
        "ended": time.time(),
        "stopped": stopped,
        "worker": str(worker.address),
        "host": socket.gethostname(),
        "pid": pid,
    }


def _is_set(event: Any) -> bool:
    try:
        return bool(event.is_set())
    except Exception:  # noqa: BLE001 - the scheduler unreachable: keep running until told otherwise
        return False


def _cancelled(worker: Any, key: Any) -> bool:
    """The orchestrator released or cancelled the future (it stopped, or died and its client went away)."""
    if key is None:
        return False
    task = worker.state.tasks.get(key)
    return task is not None and task.state in ("cancelled", "released", "forgotten")


def _bounded(path: Path) -> bytes:
    """What comes back through Dask: the output, or its last MAX_OUTPUT_BYTES (an agent's result
    line is at the end) after a line saying how much stayed on the worker."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - MAX_OUTPUT_BYTES))
        data = fh.read()
    if size > MAX_OUTPUT_BYTES:
        return f"[awoc: the first {size - MAX_OUTPUT_BYTES} of {size} bytes stayed on the worker]\n".encode() + data
    return data


def _die_with_parent(parent: int) -> bool:
    """SIGTERM to us when the worker dies; False if it has died already. (Set here, after exec: a
    preexec_fn is not safe in the worker's threads.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent


def supervise(parent: int, argv: list[str], grace_s: float = 2.0) -> int:
    """The attempt's leader: run ARGV in its own session; on SIGTERM (a stop, or the worker's death)
    or when it ends, kill its process group."""
    if not _die_with_parent(parent):
        return 129
    try:
        child = subprocess.Popen(argv, start_new_session=True)
    except OSError as exc:
        sys.stderr.write(f"cannot start {argv[0]!r}: {exc.strerror or exc}\n")
        return 127
    stopping = {"at": 0.0}

    def on_term(signum: int, frame: Any) -> None:
        stopping["at"] = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while _still_running(child, 0.05):
        if stopping["at"] and time.monotonic() - stopping["at"] > grace_s:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # leftovers of the group, whether it ended or was stopped
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "SUPERVISE":
    sys.exit(supervise(int(sys.argv[2]), sys.argv[3:]))
