"""Tokens: past 80% of the total budget, budgets of tasks not started yet are cut by 20%;
with the budget spent, nothing new starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.machine.levers import REDUCE
from awoc_scripts.planning.policy_settings import TOKEN_PRESSURE

if TYPE_CHECKING:
    from awoc_scripts.execution.policies.base import LiveRun


class TokenPressure:
    name = "token_pressure"
    interval_s = 0.5  # and after every task end, before anything new starts

    def __init__(self, total_budget: int, pressure_on: bool, counts_in_flight: bool) -> None:
        self.total_budget = total_budget
        self.pressure_on = pressure_on
        self.counts_in_flight = counts_in_flight
        self.exhausted = False

    def check(self, run: LiveRun, now: float) -> None:
        spent = run.tokens_spent()
        in_flight = sum(run.budget_of(t) for t in run.running()) if self.counts_in_flight else 0
        if spent >= self.total_budget:
            if not self.exhausted:
                self.exhausted = True
                run.events.add("token-budget-exhausted", spent=spent, total=self.total_budget)
                run.display.note(f"token budget exhausted: {spent} of {self.total_budget} tokens; nothing new starts")
                run.stop_starting(
                    f"token budget exhausted: {spent} of {self.total_budget} tokens used", "token budget exhausted"
                )
        elif self.pressure_on and spent + in_flight > TOKEN_PRESSURE * self.total_budget:
            counted = (
                f"{spent} spent + {in_flight} reserved by running tasks" if self.counts_in_flight else f"{spent} spent"
            )
            run.pull_lever(REDUCE, {"percent": 20}, f"token_pressure: {counted} of {self.total_budget} tokens")
