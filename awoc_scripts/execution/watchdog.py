"""The run's watchdog: ends the run's processes when the process that owns the run (its
orchestrator, or a merge with its gates and resolvers) dies without ending them itself (SIGKILL,
the OOM killer, a kill of its process group, a crash of the interpreter).

While the owner works, a small shell waits beside it, in a session of its own (a signal to the
owner's group or terminal does not reach it), on a pipe whose write end only the owner holds. At
a normal end the owner says `done` and the shell leaves. If the pipe ends without it, the owner
is gone: the shell kills the run's task cgroups at once, then becomes `clean_up()` below, which
kills every process of the run (its cgroups, its environment marker) the way `resume` would, and
records what it killed in the run's events (`owner-died`), for `status` to say.

The watchdog holds the run's claim too (the same open file: the kernel's lock stays until both
have let go), and says in it that it is cleaning up. So a `resume` started right after the kill
waits for it instead of starting tasks it would then kill, and `status` does not show the run as
executing meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from awoc_scripts.state.store import Run

DONE = b"done\n"
CLEAN_UP_FOR_S = 5.0  # a task forking as it is killed: look again until nothing of the run is left

_CLEAN_UP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from awoc_scripts.execution.watchdog import clean_up; clean_up()"
)
KILLED_ENV = "AWOC_WATCHDOG_KILLED"
# $0: this Python; $1: what the paths of the run's cgroups start with (or nothing); then for
# clean_up: the package root, the claim's fd, the state root, the run id. The shell kills the
# cgroups itself, at once: Python takes a tenth of a second to start, and a task that finishes
# meanwhile, its end seen by nobody, would run again on resume.
_SHELL = f"""trap '' INT TERM HUP
read -r said
[ "$said" = done ] && exit 0
groups=$1
shift
killed=
if [ -n "$groups" ]; then
  for group in "$groups"*; do
    [ -f "$group/cgroup.kill" ] || continue
    while read -r pid; do killed="$killed $pid"; done < "$group/cgroup.procs"
    echo 1 > "$group/cgroup.kill"
  done 2>/dev/null
fi
{KILLED_ENV}=$killed exec "$0" -c '{_CLEAN_UP}' "$@"
"""


class Watchdog:
    """The owner's side: start it with the claim taken, end it once the processes it started have ended."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: int) -> None:
        self.pid = process.pid
        self._process = process
        self._pipe: int | None = pipe

    @classmethod
    def start(cls, run: Run, claim_fd: int) -> Watchdog | None:
        """None where it cannot be started: the run goes on, as runs did before watchdogs."""
        from awoc_scripts.processes import run_cgroups_prefix

        read_end, write_end = os.pipe()
        package_root = str(Path(__file__).resolve().parents[2])
        groups = run_cgroups_prefix(run.run_id) or ""
        argv = [sys.executable, groups, package_root, str(claim_fd), str(run.root), run.run_id]
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", _SHELL, *argv],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(claim_fd,),
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            return None
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def end(self, everything_ended: bool) -> None:
        """Once the run has ended its processes (EVERYTHING_ENDED), the watchdog leaves at once;
        otherwise it kills what is left of the run first. Returns when it has gone (and let go
        of the claim)."""
        if self._pipe is None:
            return
        pipe, self._pipe = self._pipe, None
        try:
            if everything_ended:
                os.write(pipe, DONE)
        except OSError:
            pass  # it is gone already
        finally:
            os.close(pipe)
        self._process.wait()


def clean_up() -> None:
    """The watchdog once the run's owner has died: kill every process of the run, say so in its
    events, then leave (which lets go of the claim). argv: package root, the claim's fd, the state
    root, the run id."""
    from awoc_scripts.processes import kill_marked
    from awoc_scripts.state.store import CLEANING_UP, OWNER_DIED, Run

    claim_fd, run = int(sys.argv[2]), Run(Path(sys.argv[3]), sys.argv[4])
    os.ftruncate(claim_fd, 0)
    os.pwrite(claim_fd, f"{os.getpid()} {CLEANING_UP}\n".encode(), 0)
    killed = {int(pid) for pid in os.environ.get(KILLED_ENV, "").split()}  # by the shell, in the cgroups
    deadline = time.monotonic() + CLEAN_UP_FOR_S
    while (found := kill_marked(run.run_id)) and time.monotonic() < deadline:
        killed.update(found)
        time.sleep(0.05)
    with contextlib.suppress(Exception):  # its folder may be gone: the killing is what mattered
        run.append_event(OWNER_DIED, killed=sorted(killed))
