"""How many tasks may run at once right now: additive increase, multiplicative decrease (AIMD).

A rate-limit or overload answer from any task halves the run's effective concurrency (once per
episode: answers from attempts that started before the last cut do not cut again, they were
sent under the old limit); every success adds 1/limit, so a whole limit's worth of successes
adds one slot. The limit never exceeds `max_concurrent` (which levers may lower), never falls
under 1. With `ramp_up_s`, the first starts are spread: the limit grows from 1 to
`max_concurrent` over that many seconds, so a run does not open with a burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Change:
    """One change of the concurrency limit, and why."""

    before: int
    after: int
    why: str


class AdaptiveConcurrency:
    def __init__(self, ceiling: int, ramp_up_s: float, started_mono: float) -> None:
        self.window = float(ceiling)
        self.ramp_up_s = ramp_up_s
        self.started_mono = started_mono
        self.last_cut_mono = -math.inf
        self.lowest = ceiling
        self.changes = 0

    def limit(self, ceiling: int, now: float) -> int:
        allowed = min(ceiling, math.floor(self.window))
        if self.ramp_up_s > 0 and now - self.started_mono < self.ramp_up_s:
            ramp = 1 + (ceiling - 1) * (now - self.started_mono) / self.ramp_up_s
            allowed = min(allowed, math.floor(ramp))
        return max(1, allowed)

    def limited(self, ceiling: int) -> bool:
        """Is the limit under max_concurrent because of the provider (not counting the ramp)?"""
        return math.floor(self.window) < ceiling

    def on_overload(self, attempt_started_mono: float, ceiling: int, now: float, why: str) -> Change | None:
        if attempt_started_mono < self.last_cut_mono:
            return None  # sent under the limit before the last cut: that cut answered it already
        before = max(1, min(ceiling, math.floor(self.window)))
        self.window = max(1.0, min(self.window, float(ceiling)) / 2)
        self.last_cut_mono = now
        after = max(1, math.floor(self.window))
        self.lowest = min(self.lowest, after)
        return self._changed(before, after, why)

    def on_success(self, ceiling: int) -> Change | None:
        if self.window >= ceiling:
            self.window = float(ceiling)  # a lever may have lowered the ceiling meanwhile
            return None
        before = math.floor(self.window)
        self.window = min(float(ceiling), self.window + 1 / self.window)
        return self._changed(before, math.floor(self.window), "successes")

    def _changed(self, before: int, after: int, why: str) -> Change | None:
        if before == after:
            return None
        self.changes += 1
        return Change(before, after, why)
