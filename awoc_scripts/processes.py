"""The one wrapper for child processes: start each in its own session, and the one place that kills.

Every task process carries `AWOC_TASK=<run_id>/<task_id>` in its environment, so processes
that left their process group (or outlived a crashed orchestrator) are still found and killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from awoc_scripts.process_stat import process_gone, stat_fields

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    import psutil

MARKER_ENV = "AWOC_TASK"
KILL_GRACE_S = 2.0


def task_marker(run_id: str, task_id: str) -> str:
    return f"{run_id}/{task_id}"


@contextlib.contextmanager
def children_marked(marker: str) -> Iterator[None]:
    """Every process started meanwhile inherits MARKER from our environment (run_bounded's own
    marker aside): found and killed with its run, by the run's watchdog too."""
    before = os.environ.get(MARKER_ENV)
    os.environ[MARKER_ENV] = marker
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MARKER_ENV, None)
        else:
            os.environ[MARKER_ENV] = before


class Child:
    """A started task process. Reaped with waitpid; `returncode` is -N when signal N ended it."""

    def __init__(self, pid: int, marker: str, stdin_fd: int | None = None) -> None:
        self.pid = pid
        self.marker = marker
        self.stdin_fd = stdin_fd  # the write end of its stdin, when started with its prompt withheld
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (not by us): nothing more to learn
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode


# the CPUs this process may run on (its affinity, not the machine's count)
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def spawn(
    argv: list[str],
    *,
    cwd: Path,
    stdin: Path | None,
    stdout: Path,
    stderr: Path,
    env: Mapping[str, str],
    marker: str,
    stdin_pipe: bool = False,
) -> Child:
    """Start argv in a new session (its own process group) with files for its standard streams.

    With STDIN_PIPE its stdin is a pipe instead (Child.stdin_fd is our end): the process starts
    now and gets its input later (a warm agent waiting for its prompt).

    No shell is involved: task text reaches the program as data. A missing program raises
    FileNotFoundError / PermissionError for the caller to turn into a failed attempt.
    posix_spawn lets the child open its own files and costs a third of subprocess.Popen; it
    cannot change directory, so a task that runs elsewhere goes through Popen.
    """
    full_env = {**env, MARKER_ENV: marker}
    read_end, write_end = os.pipe() if stdin_pipe else (None, None)  # both close on exec
    try:
        if os.fspath(cwd) != os.getcwd():
            child = _spawn_elsewhere(argv, cwd, stdin, stdout, stderr, full_env, marker, read_end)
        else:
            first: tuple[int | str, ...] = (
                (os.POSIX_SPAWN_DUP2, read_end, 0)
                if read_end is not None
                else (os.POSIX_SPAWN_OPEN, 0, str(stdin) if stdin else os.devnull, os.O_RDONLY, 0)
            )
            actions = [
                first,
                (os.POSIX_SPAWN_OPEN, 1, str(stdout), _WRITE_FLAGS, 0o644),
                (os.POSIX_SPAWN_OPEN, 2, str(stderr), _WRITE_FLAGS, 0o644),
            ]
            pid = os.posix_spawn(_executable(argv[0]), argv, full_env, file_actions=actions, setsid=True)
            child = Child(pid, marker)
    except BaseException:
        if write_end is not None:
            os.close(write_end)
        raise
    finally:
        if read_end is not None:
            os.close(read_end)
    child.stdin_fd = write_end
    return child


_found: dict[tuple[str, str | None], str] = {}


def _executable(name: str) -> str:
    """The program's path, looked up in PATH once (posix_spawnp would try every PATH entry each time)."""
    if "/" in name:
        return name
    key = (name, os.environ.get("PATH"))
    if key not in _found:
        import shutil

        path = shutil.which(name)
        if path is None:
            raise FileNotFoundError(2, "No such file or directory", name)
        _found[key] = path
    return _found[key]


def _spawn_elsewhere(
    argv: list[str],
    cwd: Path,
    stdin: Path | None,
    stdout: Path,
    stderr: Path,
    env: dict[str, str],
    marker: str,
    stdin_fd: int | None = None,
) -> Child:
    with (
        open(os.dup(stdin_fd), "rb") if stdin_fd is not None else open(stdin or os.devnull, "rb") as in_fh,
        open(stdout, "wb") as out_fh,
        open(stderr, "wb") as err_fh,
    ):
        popen = subprocess.Popen(
            argv, cwd=cwd, stdin=in_fh, stdout=out_fh, stderr=err_fh, env=env, start_new_session=True
        )
    popen.returncode = 0  # from now on Child reaps it; keep Popen's finalizer from trying
    return Child(popen.pid, marker)


_boot_time: float | None = None
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _read_boot_time() -> float:
    """What psutil.boot_time() reads on Linux (`btime` of /proc/stat), without importing psutil."""
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    import psutil

    return float(psutil.boot_time())


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: unlike a wall-clock start time, no step
    of the clock changes it. None when it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def process_create_time(pid: int) -> float:
    """The same start time psutil gives (so same_process_alive can compare), read cheaply.
    For a child not yet reaped, the pid cannot have been reused, so any time before that will do."""
    global _boot_time
    start_ticks = process_start_ticks(pid)
    if start_ticks is None:  # already gone: any stamp will do, it will not match
        return 0.0
    try:
        if _boot_time is None:
            _boot_time = _read_boot_time()
    except (OSError, ValueError, IndexError):
        return 0.0
    return _boot_time + start_ticks / TICKS_PER_S


def available_memory_mb() -> float:
    """MemAvailable of /proc/meminfo (what psutil.virtual_memory().available reports on Linux)."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return float(psutil.virtual_memory().available) / 2**20


def same_process_alive(pid: int, create_time: float, start_ticks: int | None = None) -> bool:
    """Is `pid` still the process we started (and not a later one that reused the number)?

    With START_TICKS (process_start_ticks when it started) that is what identifies it: the boot
    time that turns ticks into a wall-clock create time moves whenever the clock is stepped (a
    virtual machine resumed from a snapshot, say), and a live process would look like another."""
    if start_ticks is not None:
        fields = stat_fields(pid)
        return fields is not None and fields[0] != b"Z" and int(fields[19]) == start_ticks
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marked_processes(run_id: str, task_id: str | None = None) -> list[int]:
    """Live processes carrying the marker of this run (or of this one task of it)."""
    exact = f"{MARKER_ENV}={task_marker(run_id, task_id)}".encode() if task_id else None
    prefix = f"{MARKER_ENV}={run_id}/".encode()
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if prefix not in environ:
            continue
        entries = environ.split(b"\0")
        hit = exact in entries if exact else any(e.startswith(prefix) for e in entries)
        if hit and not process_gone(int(name)):
            found.append(int(name))
    return found


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_marked(run_id: str, task_id: str | None = None) -> list[int]:
    """SIGKILL every live process of the run (or of one task of it): its cgroups, where this
    machine lets us make them, then whatever carries its marker. Returns the pids killed."""
    in_groups = kill_cgroups(run_id, task_id)
    pids = marked_processes(run_id, task_id)
    _signal_pids(pids, signal.SIGKILL)
    return sorted({*in_groups, *pids})


# A cgroup (v2) per task, where the machine lets us make one under our own: every process the task
# starts stays in it, even one that leaves its session and clears its environment, and writing
# cgroup.kill ends them all. Elsewhere (or with AWOC_CGROUPS=0) the process group and the
# environment marker do the job.
_cgroup_base: Path | None = None
_cgroup_looked = False


def _cgroups() -> Path | None:
    global _cgroup_base, _cgroup_looked
    if not _cgroup_looked:
        _cgroup_looked = True
        if os.environ.get("AWOC_CGROUPS") == "0":
            return None
        try:
            cgroup_lines = Path("/proc/self/cgroup").read_text().splitlines()
            mount_lines = Path("/proc/self/mounts").read_text().splitlines()
            own = next(line[3:].strip() for line in cgroup_lines if line.startswith("0::"))
            mount = next(m.split()[1] for m in mount_lines if m.split()[2] == "cgroup2")
        except (OSError, StopIteration, IndexError):
            return None
        base = Path(mount) / own.lstrip("/")
        if os.access(base, os.W_OK) and (base / "cgroup.procs").exists():
            _cgroup_base = base
    return _cgroup_base


def _cgroup_name(run_id: str, task_id: str) -> str:
    return f"awoc-{run_id}-{task_id}"


def run_cgroups_prefix(run_id: str) -> str | None:
    """What the paths of the run's task cgroups start with (None where there are none), for a
    shell that must kill them without Python: `for g in PREFIX*; do echo 1 > $g/cgroup.kill; done`."""
    base = _cgroups()
    return None if base is None else f"{base}/{_cgroup_name(run_id, '')}"


@contextlib.contextmanager
def contained(marker: str) -> Iterator[bool]:
    """Around a spawn: the child starts inside its task's cgroup. (We step into the cgroup to start
    it and step back out: moving the child after it started would race with its first fork.)
    Yields False where cgroups cannot be used."""
    global _cgroup_base
    base = _cgroups()
    entered = False
    if base is not None:
        group = f"{base}/{_cgroup_name(*marker.split('/', 1))}"
        try:
            for _ in range(3):  # another run's sweep may remove it between the two steps
                with contextlib.suppress(FileExistsError):
                    os.mkdir(group)
                with contextlib.suppress(FileNotFoundError):
                    _move_here_into(group)
                    entered = True
                    break
        except OSError:
            _cgroup_base = None  # not allowed here after all: markers and groups only, from now on
    try:
        yield entered
    finally:
        if entered and base is not None:
            _move_here_into(str(base))


def _move_here_into(group: str) -> None:
    # os-level calls: one task start does two of these, and Path.write_text costs 6 times as much
    fd = os.open(f"{group}/cgroup.procs", os.O_WRONLY)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)


def sweep_empty_cgroups() -> None:
    """Remove the empty task cgroups that runs killed with SIGKILL left (rmdir fails on a busy one)."""
    base = _cgroups()
    if base is None:
        return
    for group in base.glob("awoc-*"):
        with contextlib.suppress(OSError):
            os.rmdir(group)


def kill_cgroups(run_id: str, task_id: str | None = None) -> list[int]:
    """End every process in the run's (or the task's) cgroups, and remove the emptied cgroups.
    Returns the pids that were in them."""
    base = _cgroups()
    if base is None:
        return []
    killed: list[int] = []
    if task_id is not None:
        groups = [base / _cgroup_name(run_id, task_id)]
    else:
        groups = list(base.glob(_cgroup_name(run_id, "*")))
    for group in groups:
        try:
            os.rmdir(group)  # an empty cgroup (the usual end of a task) needs no more
            continue
        except FileNotFoundError:
            continue
        except OSError:
            pass
        with contextlib.suppress(OSError, ValueError):
            killed += [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        with contextlib.suppress(OSError):
            (group / "cgroup.kill").write_text("1")
        for _ in range(100):  # the kernel empties it within moments
            try:
                os.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.002)
    return killed


def kill_process_tree(pid: int, create_time: float | None = None, grace_s: float = KILL_GRACE_S) -> list[int]:
    """Stop a process we did not start, with everything it started: SIGTERM to it, to its process
    group when it leads one (never our own), and to every descendant; SIGKILL what is left after
    `grace_s`. `create_time` guards against a reused pid. Returns the pids that were signalled."""
    import psutil

    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) >= 0.05:
            return []
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    own_group = os.getpgrp()
    groups = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            pgid = os.getpgid(proc.pid)
            if pgid == proc.pid and pgid != own_group:
                groups.add(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            signal_group(pgid, sig)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)  # psutil checks it is still the same process, not a reused pid
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else grace_s / 2)
        while time.monotonic() < deadline and not all(process_ended(p) for p in procs):
            time.sleep(0.02)
        if all(process_ended(p) for p in procs):
            break
    return [p.pid for p in procs]


def process_ended(proc: psutil.Process) -> bool:
    """Gone (or its pid reused), or a zombie waiting for its parent to collect it: it runs no more."""
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def run_bounded(
    argv: list[str],
    cwd: Path,
    timeout_s: float,
    tail_chars: int,
    stdin: Path | None = None,
    env: Mapping[str, str] | None = None,
    marker: str | None = None,
) -> tuple[int | None, str]:
    """Run ARGV in a process group of its own (STDIN: a file for its input); its exit code (None
    when it outlived TIMEOUT_S and its whole group was killed) and the last TAIL_CHARS of its
    output, stdout and stderr together. MARKER, as a task's: found and killed with its run."""
    import sys
    import tempfile

    if marker is not None:
        env = {**(os.environ if env is None else env), MARKER_ENV: marker}

    with tempfile.TemporaryFile() as output, open(stdin or os.devnull, "rb") as given:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=given,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except BaseException:  # the timeout, or Ctrl-C: nothing it started lives on
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
        signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - 4 * tail_chars))
        text = output.read().decode("utf-8", "replace")
    return code, text[-tail_chars:]
