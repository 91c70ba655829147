"""What runs on a Dask worker: one attempt as a subprocess tree, stopped on request, on its timeout,
when its future is cancelled (the orchestrator went away) and when the worker itself dies.

Imported by the workers (awoc must be installed there); nothing here imports distributed at
module level, so the orchestrator's side can import it cheaply too.

Each worker process has one long-lived supervisor (`python -m ...dask_worker SERVE`), started at
its first attempt: the local executor, run on the worker. It starts every attempt in a session (and,
where the machine allows, a cgroup) of its own, adopts what the attempt leaves behind, and on a
stop or at the attempt's end kills its whole tree. Its commands come on a pipe only the worker
holds: when the worker dies, however it dies, the pipe ends and the supervisor kills every attempt
it runs, then exits. An attempt costs a message each way instead of a Python start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import orjson

EVENT_POLL_S = 0.5
SWEEP_INTERVAL_S = 1.0
START_REPLY_S = 60.0
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
SCRATCH_PREFIX = "awoc-attempt-"  # then the worker's pid: what a killed worker left is found by it
LOST = "dask: the attempt's supervisor on the worker ended before the attempt did"


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

    from awoc_scripts.processes import kill_marked

    worker = get_worker()
    key = getattr(thread_state, "key", None)
    _sweep_now_and_then()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
        prompt, out_path, err_path = Path(scratch, "prompt"), Path(scratch, "stdout"), Path(scratch, "stderr")
        prompt.write_bytes(spec["prompt"])
        started = time.time()
        supervisor = Supervisor.of_this_worker()
        attempt = supervisor.start(spec, prompt, out_path, err_path)
        if attempt.error is not None:
            return _ended(spec, 127, b"", attempt.error.encode(), started, worker, None, False)
        stopped = False
        deadline = time.monotonic() + float(spec["timeout_s"])
        next_event_check = time.monotonic() + EVENT_POLL_S  # a check is a round trip: none for short attempts
        while not attempt.ended.wait(EVENT_POLL_S if stopped else min(EVENT_POLL_S, deadline - time.monotonic())):
            if stopped:
                continue  # the supervisor kills it after the grace, or its end reports it lost
            now = time.monotonic()
            stop = now >= deadline
            if not stop and now >= next_event_check:
                next_event_check = now + EVENT_POLL_S
                stop = _cancelled(worker, key) or _is_set(Event(spec["stop_event"]))
            if stop:
                stopped = True
                supervisor.stop(attempt.id)
        code = attempt.exit_code
        err = _bounded(err_path)
        if code is None:  # the supervisor died: what it started may be orphaned
            kill_marked(*spec["marker"].split("/", 1))
            code, err = 1, err + f"{LOST}\n".encode()
        else:  # the supervisor says whether our stop reached it, or it had ended by itself
            stopped = attempt.stopped
        return _ended(spec, code, _bounded(out_path), err, started, worker, attempt.pid, stopped)


@dataclass
class _Pending:
    """One attempt as the worker sees it, filled in from the supervisor's replies."""

    id: str
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    error: str | None = None
    exit_code: int | None = None  # None once ended: the supervisor was lost
    stopped: bool = False


class Supervisor:
    """The worker's side of its supervisor: commands go down one pipe, replies come up another and
    are read by a thread that wakes the attempt waiting for each."""

    _lock = threading.Lock()
    _current: Supervisor | None = None

    @classmethod
    def of_this_worker(cls) -> Supervisor:
        with cls._lock:
            if cls._current is None or not cls._current.alive:
                cls._current = cls()
            return cls._current

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "SERVE"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self.alive = True
        self._pending: dict[str, _Pending] = {}
        self._lock_pending = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = iter(range(1, sys.maxsize))
        threading.Thread(target=self._read_replies, name="awoc-supervisor-replies", daemon=True).start()

    def start(self, spec: AttemptSpec, stdin: Path, stdout: Path, stderr: Path) -> _Pending:
        pending = _Pending(f"{spec['marker']}#{next(self._ids)}")
        with self._lock_pending:
            self._pending[pending.id] = pending
        env = {**os.environ, **spec["env"]}
        files = {"stdin": str(stdin), "stdout": str(stdout), "stderr": str(stderr)}
        command = {"op": "start", "id": pending.id, "argv": spec["argv"], "env": env, "cwd": spec.get("cwd")}
        self._send({**command, **files, "marker": spec["marker"]})
        if not pending.started.wait(START_REPLY_S):  # it answers in milliseconds: one that does not is stuck
            self._lost()
        return pending

    def stop(self, attempt_id: str) -> None:
        self._send({"op": "stop", "id": attempt_id})

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            with self._write_lock:
                self.proc.stdin.write(orjson.dumps(command) + b"\n")
        except (BrokenPipeError, ValueError):
            self._lost()

    def _read_replies(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            reply = orjson.loads(line)
            with self._lock_pending:
                pending = self._pending.get(reply["id"])
                if pending is not None and "exit" in reply:
                    del self._pending[reply["id"]]
            if pending is None:
                continue
            if "pid" in reply:
                pending.pid = reply["pid"]
            if "error" in reply:
                pending.error = reply["error"]
            if "exit" in reply:
                pending.exit_code, pending.stopped = reply["exit"], reply["stopped"]
                pending.ended.set()
            pending.started.set()
        self._lost()

    def _lost(self) -> None:
        """The supervisor is gone: whatever waits on it ends (exit_code None), and the next attempt starts another."""
        self.alive = False
        with self._lock_pending:
            pending, self._pending = list(self._pending.values()), {}
        for attempt in pending:
            attempt.started.set()
            attempt.ended.set()
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(5)


def serve(grace_s: float = 2.0) -> int:
    """The supervisor: start and stop attempts as the worker asks (a JSON line each on stdin),
    and say when each started and ended (on stdout). When stdin ends (the worker is gone) or on
    SIGTERM, everything it runs is stopped and killed."""
    from awoc_scripts.execution.claude_cli import Invocation
    from awoc_scripts.execution.executors.base import Attempt
    from awoc_scripts.execution.executors.local import LocalExecutor

    commands, replies = os.dup(0), os.dup(1)  # off 0 and 1: no attempt may hold them open
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.set_blocking(commands, False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated = []
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    executor = LocalExecutor(grace_s=grace_s)
    executor.watch(commands)
    here = os.getcwd()

    def reply(message: dict[str, Any]) -> None:
        data = memoryview(orjson.dumps(message) + b"\n")
        while data:
            data = data[os.write(replies, data) :]

    def act(command: dict[str, Any]) -> None:
        if command["op"] == "stop":
            executor.stop(command["id"])
            return
        invocation = Invocation(command["argv"], command["env"], "command", False)
        attempt = Attempt(
            command["id"],
            invocation,
            Path(command["cwd"] or here),
            Path(command["stdin"]),
            Path(command["stdout"]),
            Path(command["stderr"]),
            command["marker"],
        )
        try:
            started = executor.start(attempt)
        except OSError as exc:
            reply({"id": command["id"], "error": f"cannot start {command['argv'][0]!r}: {exc.strerror or exc}"})
            reply({"id": command["id"], "exit": 127, "stopped": False})
            return
        reply({"id": command["id"], "pid": started.pid})

    buffer = b""
    try:
        while not terminated:
            for end in executor.wait(1.0):
                reply({"id": end.task_id, "exit": end.exit_code, "stopped": end.stopped})
            try:
                chunk = os.read(commands, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                break  # the worker is gone
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                act(orjson.loads(line))
    except BrokenPipeError:
        pass  # the worker is gone: nobody reads the replies
    finally:
        executor.shutdown()
    return 0


_last_sweep = [0.0]


def _sweep_now_and_then() -> None:
    """At most once a second: the sweep lists the temporary folder, and attempts come by the hundred."""
    if time.monotonic() - _last_sweep[0] >= SWEEP_INTERVAL_S:
        _last_sweep[0] = time.monotonic()
        sweep_dead_scratch()


def sweep_dead_scratch(tmp: str | None = None) -> list[str]:
    """Scratch folders of attempts whose worker was killed (its pid is in the name) go."""
    import shutil

    from awoc_scripts.process_stat import process_gone

    removed = []
    base = Path(tmp or tempfile.gettempdir())
    for folder in base.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if pid.isdigit() and process_gone(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


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
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:  # never started
        return b""
    with fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - MAX_OUTPUT_BYTES))
        data = fh.read()
    if size > MAX_OUTPUT_BYTES:
        return f"[awoc: the first {size - MAX_OUTPUT_BYTES} of {size} bytes stayed on the worker]\n".encode() + data
    return data


if __name__ == "__main__" and sys.argv[1:] == ["SERVE"]:
    sys.exit(serve())
