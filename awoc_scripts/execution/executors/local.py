"""The local executor: subprocesses on this machine, each in its own session."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import time
from dataclasses import dataclass, field

from awoc_scripts.execution.executors.base import Attempt, Ended, Executor, Started
from awoc_scripts.execution.executors.orphans import Orphans
from awoc_scripts.processes import KILL_GRACE_S, Child, contained, kill_cgroups, kill_marked, signal_group, spawn


@dataclass
class _Running:
    attempt: Attempt
    child: Child
    pidfd: int | None
    stop_deadline: float | None = None
    descendants: list[object] = field(default_factory=list)


class LocalExecutor(Executor):
    """Subprocesses on this machine, each in its own session; exits are watched with pidfds."""

    def __init__(self, grace_s: float = KILL_GRACE_S) -> None:
        self.grace_s = grace_s
        self._running: dict[str, _Running] = {}
        self._selector = selectors.DefaultSelector()
        self._use_pidfd = hasattr(os, "pidfd_open")
        self.orphans = Orphans()

    def start(self, attempt: Attempt) -> Started:
        inv = attempt.invocation
        with contained(attempt.marker):
            child = spawn(
                inv.argv,
                cwd=attempt.cwd,
                stdin=attempt.prompt_file,
                stdout=attempt.stdout_file,
                stderr=attempt.stderr_file,
                env=inv.env,
                marker=attempt.marker,
            )
        pidfd = None
        if self._use_pidfd:
            try:
                pidfd = os.pidfd_open(child.pid)
                self._selector.register(pidfd, selectors.EVENT_READ, attempt.task_id)
            except OSError:
                self._use_pidfd = False
                pidfd = None
        self._running[attempt.task_id] = _Running(attempt, child, pidfd)
        self.orphans.task_started(child.pid)
        return Started(child.pid)

    def running(self) -> list[str]:
        return list(self._running)

    def wait(self, timeout: float) -> list[Ended]:
        now = time.monotonic()
        deadlines = [r.stop_deadline for r in self._running.values() if r.stop_deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - now))
        candidates: list[str]
        if self._use_pidfd and self._selector.get_map():
            candidates = [key.data for key, _ in self._selector.select(timeout)]
        else:
            time.sleep(min(timeout, 0.02))
            candidates = list(self._running)
        ended = []
        for task_id in candidates:
            entry = self._running.get(task_id)
            if entry is None:
                continue
            code = entry.child.poll()
            if code is not None:
                ended.append(self._reap(task_id, entry, code))
        now = time.monotonic()
        for entry in list(self._running.values()):
            if entry.stop_deadline is not None and now >= entry.stop_deadline:
                self._kill_hard(entry)
                entry.stop_deadline = now + self.grace_s  # keep trying until the leader is reaped
        self.orphans.sweep()
        return ended

    def _reap(self, task_id: str, entry: _Running, code: int) -> Ended:
        if entry.pidfd is not None:
            self._selector.unregister(entry.pidfd)
            os.close(entry.pidfd)
        del self._running[task_id]
        if entry.stop_deadline is not None:
            self._kill_hard(entry)  # whatever of a stopped task is left, including what left its group
        else:  # leftovers of a task that ended by itself, daemons that left its session included
            signal_group(entry.child.pid, signal.SIGKILL)
            kill_cgroups(*entry.attempt.marker.split("/", 1))
        self.orphans.task_ended(entry.child.pid)
        return Ended(task_id, code, stopped=entry.stop_deadline is not None)

    def stop(self, task_id: str) -> None:
        import psutil

        entry = self._running.get(task_id)
        if entry is None or entry.stop_deadline is not None:
            return
        try:
            entry.descendants = list(psutil.Process(entry.child.pid).children(recursive=True))
        except psutil.Error:
            entry.descendants = []
        signal_group(entry.child.pid, signal.SIGTERM)
        for proc in entry.descendants:
            with contextlib.suppress(psutil.Error):
                proc.terminate()  # type: ignore[attr-defined]
        entry.stop_deadline = time.monotonic() + self.grace_s

    def _kill_hard(self, entry: _Running) -> None:
        import psutil

        signal_group(entry.child.pid, signal.SIGKILL)
        for proc in entry.descendants:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # type: ignore[attr-defined]
        kill_marked(*entry.attempt.marker.split("/", 1))

    def shutdown(self) -> None:
        for task_id in list(self._running):
            self.stop(task_id)
        deadline = time.monotonic() + self.grace_s * 3
        while self._running and time.monotonic() < deadline:
            self.wait(0.05)
        for entry in list(self._running.values()):
            self._kill_hard(entry)
            with contextlib.suppress(Exception):
                entry.child.wait(1)
        self.orphans.close()
        self._selector.close()
