"""Time: past 80% of total_timeout, not-started low and medium tasks are cancelled; at 100% the run aborts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.machine.levers import EMERGENCY
from awoc_scripts.planning.policy_settings import TIME_PRESSURE
from awoc_scripts.state.statuses import TIMED_OUT

if TYPE_CHECKING:
    from awoc_scripts.execution.policies.base import LiveRun


class TimePressure:
    name = "time_pressure"
    interval_s = 0.0

    def __init__(self, total_timeout: float, pressure_on: bool) -> None:
        self.total_timeout = total_timeout
        self.pressure_on = pressure_on

    def check(self, run: LiveRun, now: float) -> None:
        elapsed = run.active_elapsed(now)  # time paused by a usage limit does not count
        if elapsed >= self.total_timeout:
            run.abort(f"total timeout of {self.total_timeout:g} s reached", TIMED_OUT)
        elif self.pressure_on and elapsed >= TIME_PRESSURE * self.total_timeout:
            why = f"time_pressure: {elapsed:.0f} s of the {self.total_timeout:g} s total timeout used"
            run.pull_lever(EMERGENCY, {}, why)
