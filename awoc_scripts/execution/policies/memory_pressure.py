"""Memory: under min_free_memory_mb free, the rest runs one at a time; under half of it, the
youngest running task is stopped and requeued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.machine.levers import SEQUENTIAL

if TYPE_CHECKING:
    from collections.abc import Callable

    from awoc_scripts.execution.policies.base import LiveRun


class MemoryPressure:
    name = "memory_pressure"
    interval_s = 0.5

    def __init__(self, min_free_mb: float, on: bool, free_memory_mb: Callable[[], float]) -> None:
        self.min_free_mb = min_free_mb
        self.on = on
        self.free_memory_mb = free_memory_mb

    def check(self, run: LiveRun, now: float) -> None:
        running = run.running()
        free_mb = self.free_memory_mb()
        if not (self.on and free_mb < self.min_free_mb):
            return
        run.pull_lever(SEQUENTIAL, {}, f"memory_pressure: {free_mb:.0f} MB free, under {self.min_free_mb:g} MB")
        if free_mb < self.min_free_mb / 2 and len(running) > 1:
            youngest = max(running, key=lambda t: run.records[t].start_mono or 0)
            run.events.add("memory-pressure", free_mb=round(free_mb), stopped=youngest)
            run.display.note(f"memory_pressure: {free_mb:.0f} MB free, {youngest} stopped to run again later")
            run.requeue(youngest, "low memory")
