"""Orphans of tasks, kept as the orchestrator's own children.

A process a task leaves behind after its parent died (`( setsid env -i daemon & )`) has left the
task's process group and may carry no environment marker; where no cgroup holds it, nothing else
would find it. As a child subreaper (prctl PR_SET_CHILD_SUBREAPER) the orchestrator inherits such
orphans instead of init. Which task an orphan came from is not written anywhere, so it is judged by
time: it was created while some tasks were running, and it is killed at the first sweep (a few
tenths of a second) after every one of them has ended. At the end, every orphan left is killed and
reaped. Where the kernel does not list a process's children in /proc, finding orphans reads every
process's stat, so sweeps with no task ended since the last come less often.

Only processes outside the orchestrator's own session count (tasks start in sessions of their
own, while its other children, git say, stay in its session), and none it had before the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

from awoc_scripts.process_stat import stat_fields
from awoc_scripts.processes import TICKS_PER_S, process_start_ticks

PR_SET_CHILD_SUBREAPER = 36
# start times come from /proc in clock ticks since boot (10 ms), which no step of the wall clock
# moves: an orphan made right at a task's start or end still counts as made while it ran
TICK_SLACK = int(0.05 * TICKS_PER_S)
SWEEP_INTERVAL_S = 0.2
SCAN_INTERVAL_S = 1.0


def set_subreaper(on: bool) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def children_listed() -> bool:
    """Whether the kernel lists a task's children in /proc (CONFIG_PROC_CHILDREN; compact kernels
    of some virtual machines leave it out)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def own_children(listed: bool) -> list[int]:
    """This process's children: from the kernel's lists when LISTED (children_listed()), else by
    reading every process's parent."""
    if not listed:
        return _children_by_parent(os.getpid())
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for thread in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{thread}/children", "rb") as fh:
                pids.extend(int(p) for p in fh.read().split())
    return pids


def _children_by_parent(parent: int) -> list[int]:
    """Every process whose parent is PARENT, read from each /proc/<pid>/stat."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            fields = stat_fields(int(name))
            if fields is not None and int(fields[1]) == parent:
                pids.append(int(name))
    return pids


def _ticks_now() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * TICKS_PER_S)


def _state_and_session(pid: int) -> tuple[bytes, int] | None:
    """The process's state letter and session id."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[3]))


class Orphans:
    """The orphans of tasks this process runs: adopted, attributed by time, killed, reaped."""

    def __init__(self) -> None:
        self.enabled = set_subreaper(True)
        self.session = os.getsid(0)
        self._listed = children_listed()
        self._due = False  # a task ended since the last sweep
        self._before = set(own_children(self._listed))  # children this process had already: none is an orphan
        self._running: dict[int, int] = {}  # task root pid -> its start (ticks since boot)
        self._last_sweep = 0.0
        self.killed: list[int] = []

    def keep(self, pid: int) -> None:
        """A child started for the run itself, not by a task: no orphan."""
        self._before.add(pid)

    def task_started(self, pid: int) -> None:
        """Called right after PID was started: now is its start, within TICK_SLACK (and no /proc read)."""
        if self.enabled:
            self._running[pid] = _ticks_now()

    def task_ended(self, pid: int) -> None:
        """After the task's root was reaped: what it left is judged at the next sweep (within
        SWEEP_INTERVAL_S), so that many tasks ending together cost one look."""
        if self._running.pop(pid, None) is not None:
            self._due = True

    def sweep(self, everything: bool = False) -> None:
        """Reap adopted zombies; kill the orphans that no running task can have made (an orphan
        made before a task started is not that task's), or, with EVERYTHING, all of them."""
        now = time.monotonic()
        # without the kernel's list of children, a sweep reads every process's stat: less often
        interval = SWEEP_INTERVAL_S if self._listed or self._due else SCAN_INTERVAL_S
        if not self.enabled or not (everything or now - self._last_sweep >= interval):
            return
        self._last_sweep = now
        self._due = False
        for pid in self._adopted():
            seen = _state_and_session(pid)
            if seen is None:
                continue
            if seen[0] == b"Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            elif everything or not self._made_while_running(process_start_ticks(pid)):
                self._kill_tree(pid)

    def _adopted(self) -> list[int]:
        """Our children that are no task's own process and not in our session."""
        found = []
        for pid in own_children(self._listed):
            if pid in self._running or pid in self._before:
                continue  # a task's own process (its executor reaps it), or one we had before
            seen = _state_and_session(pid)
            if seen is not None and seen[1] != self.session:
                found.append(pid)
        return found

    def _made_while_running(self, created: int | None) -> bool:
        if created is None:  # gone already
            return True
        return any(start - TICK_SLACK <= created for start in self._running.values())

    def _kill_tree(self, pid: int) -> None:
        import psutil

        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)  # psutil checks the pid was not reused meanwhile
        self.killed.append(pid)

    def close(self) -> None:
        """At the end of the run: no orphan is left, none is a zombie, and we reap no more."""
        if not self.enabled:
            return
        self._running.clear()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.sweep(everything=True)
            if not self._adopted():
                break
            time.sleep(0.01)
        set_subreaper(False)
        self.enabled = False
