"""The local executor: subprocesses on this machine, each in its own session."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from dataclasses import dataclass, field, replace

from awoc_scripts.execution.executors.base import Attempt, Ended, Executor, Started
from awoc_scripts.execution.executors.orphans import Orphans
from awoc_scripts.processes import KILL_GRACE_S, Child, contained, kill_cgroups, kill_marked, signal_group, spawn


@dataclass
class _Warm:
    """A process started ahead of its task, waiting for its prompt."""

    attempt: Attempt  # as it was when warmed: a start with another program or environment starts cold
    child: Child
    since: float


def _feed(fd: int, data: bytes) -> None:
    """Write the prompt to a warm process's stdin and close it (in a thread: a prompt larger than
    the pipe's buffer waits for the process to read it)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # it died meanwhile: its end is seen like any other
    finally:
        os.close(fd)


@dataclass
class _Running:
    """An attempt's process on this machine, and how far its stopping has gone."""

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
        self._warm: dict[str, _Warm] = {}

    def warm(self, attempt: Attempt) -> int | None:
        if attempt.prompt_as_message:
            from awoc_scripts.execution.claude_cli import MESSAGE_INPUT

            invocation = replace(attempt.invocation, argv=[*attempt.invocation.argv, *MESSAGE_INPUT])
            child = self._spawn(replace(attempt, invocation=invocation), stdin_pipe=True)
        else:
            child = self._spawn(attempt, stdin_pipe=True)
        self._warm[attempt.task_id] = _Warm(attempt, child, time.monotonic())
        self.orphans.task_started(child.pid)
        return child.pid

    def warm_ids(self) -> list[str]:
        return list(self._warm)

    def keep(self, pid: int) -> None:
        self.orphans.keep(pid)

    def watch(self, fd: int) -> None:
        """wait() also returns as soon as FD is readable (a supervisor's command pipe, say)."""
        self._selector.register(fd, selectors.EVENT_READ, None)

    def discard_warm(self, task_id: str) -> None:
        warm = self._warm.pop(task_id, None)
        if warm is None:
            return
        # killed before its stdin closes: an end of input would let it run with an empty prompt
        signal_group(warm.child.pid, signal.SIGKILL)
        kill_cgroups(*warm.attempt.marker.split("/", 1))
        if warm.child.stdin_fd is not None:
            os.close(warm.child.stdin_fd)
        warm.child.wait(1.0)
        self.orphans.task_ended(warm.child.pid)

    def _spawn(self, attempt: Attempt, stdin_pipe: bool = False) -> Child:
        inv = attempt.invocation
        with contained(attempt.marker):
            return spawn(
                inv.argv,
                cwd=attempt.cwd,
                stdin=attempt.prompt_file,
                stdout=attempt.stdout_file,
                stderr=attempt.stderr_file,
                env=inv.env,
                marker=attempt.marker,
                stdin_pipe=stdin_pipe,
            )

    def _take_warm(self, attempt: Attempt) -> tuple[Child, float] | None:
        """The attempt's warm process, if it still waits and was started exactly as the attempt asks."""
        warm = self._warm.get(attempt.task_id)
        if warm is None:
            return None
        same = (warm.attempt.invocation.argv, warm.attempt.invocation.env, warm.attempt.cwd) == (
            attempt.invocation.argv,
            attempt.invocation.env,
            attempt.cwd,
        )
        if not same or warm.child.poll() is not None or warm.child.stdin_fd is None:
            self.discard_warm(attempt.task_id)
            return None
        del self._warm[attempt.task_id]
        prompt = attempt.prompt_file.read_bytes()
        if warm.attempt.prompt_as_message:
            from awoc_scripts.execution.claude_cli import as_user_message

            prompt = as_user_message(prompt)
        threading.Thread(target=_feed, args=(warm.child.stdin_fd, prompt), daemon=True).start()
        warm.child.stdin_fd = None
        return warm.child, time.monotonic() - warm.since

    def start(self, attempt: Attempt) -> Started:
        taken = self._take_warm(attempt)
        warm_s = None
        if taken is not None:
            child, warm_s = taken
        else:
            child = self._spawn(attempt)
            self.orphans.task_started(child.pid)
        pidfd = None
        if self._use_pidfd:
            try:
                pidfd = os.pidfd_open(child.pid)
                self._selector.register(pidfd, selectors.EVENT_READ, attempt.task_id)
            except OSError:
                self._use_pidfd = False
                pidfd = None
        self._running[attempt.task_id] = _Running(attempt, child, pidfd)
        return Started(child.pid, warm_s)

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
        if entry.child.poll() is not None:
            return  # it ended by itself before we asked: wait() reports that end as its own, not a stop
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
        for task_id in list(self._warm):
            self.discard_warm(task_id)
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
