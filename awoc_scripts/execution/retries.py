"""Tasks waiting out a rate limit or an overload: not their fault, so the wait does not count."""

from __future__ import annotations

MAX_TRANSIENT_WAITS = 8
RETRY_BUDGET_FACTOR_TENTHS = 8  # a retry after a failure gets 80% of the previous budget


def reduced_budget(budget: int) -> int:
    return max(1, budget * RETRY_BUDGET_FACTOR_TENTHS // 10)


class TransientWaits:
    def __init__(self, base_s: float, max_s: float) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.until: dict[str, float] = {}  # task id: when it may start again

    def can_wait(self, waits_so_far: int) -> bool:
        return waits_so_far < MAX_TRANSIENT_WAITS

    def wait(self, tid: str, waits_so_far: int, now: float) -> float:
        """Back off exponentially. Returns the delay."""
        delay = min(self.max_s, self.base_s * float(2**waits_so_far))
        self.until[tid] = now + delay
        return delay

    def due(self, now: float) -> list[str]:
        ready = [tid for tid, moment in self.until.items() if now >= moment]
        for tid in ready:
            del self.until[tid]
        return ready

    def release_all(self) -> list[str]:
        waiting = list(self.until)
        self.until.clear()
        return waiting
