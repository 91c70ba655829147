"""`delegate-parallel wait`: block until a run has ended or a timeout passes, then say where it stands.

It lets Claude follow a background run with one allowed command instead of sleeps. A run that
was prepared but whose orchestrator has not started yet counts as not ended.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from awoc_scripts.errors import INTERRUPTED
from awoc_scripts.state.status_command import RunStatus, run_status
from awoc_scripts.state.statuses import RUN_EXIT_CODES

if TYPE_CHECKING:
    from awoc_scripts.state.store import StateStore

POLL_S = 0.2
RECHECK_S = 1.0
STILL_RUNNING = 124  # as timeout(1): the time ran out before the run ended


@dataclass
class WaitOutcome:
    """How `delegate-parallel wait` ended."""

    ended: bool
    exit_code: int
    status: RunStatus


def run_has_ended(status: RunStatus) -> bool:
    return not status["executing"] and status["status"] not in ("planned", None)


def wait_for_run(store: StateStore, run_id: str | None, timeout_s: float) -> WaitOutcome:
    run = store.open_run(run_id)
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, float] | None = None
    while True:
        try:
            mtime = os.stat(run.state_file).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        now = time.monotonic()
        # read again when state.json changed, and every second anyway: an orchestrator killed
        # with SIGKILL never writes its end, and only its missing process tells
        if seen is None or seen[0] != mtime or now - seen[1] >= RECHECK_S:
            status = run_status(store, run.run_id)
            seen = (mtime, now)
            if run_has_ended(status):
                return WaitOutcome(True, _exit_code(status), status)
        if now >= deadline:
            return WaitOutcome(False, STILL_RUNNING, status)
        time.sleep(POLL_S)


def _exit_code(status: RunStatus) -> int:
    # "running" with no live orchestrator: it died without writing its end (SIGKILL, a crash)
    return RUN_EXIT_CODES.get(status["status"] or "", INTERRUPTED)
