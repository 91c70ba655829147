"""Money: with `total_cost_budget_usd`, past 80% of it spent the money budgets of tasks not started
yet are cut by 20%; with all of it spent, nothing new starts. Each attempt may spend no more than
its task's budget left and the run's money left (`--max-budget-usd` for the claude CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.planning.policy_settings import COST_PRESSURE
from awoc_scripts.state.statuses import PENDING

if TYPE_CHECKING:
    from awoc_scripts.execution.policies.base import LiveRun
    from awoc_scripts.execution.task_record import TaskRecord


class CostPressure:
    name = "cost_pressure"
    interval_s = 0.5  # and after every task end, before anything new starts

    def __init__(self, total_usd: float | None) -> None:
        self.total_usd = total_usd
        self.exhausted = False
        self.pressed = False

    def cap_for(self, rec: TaskRecord, spent_usd: float) -> float | None:
        """What an attempt of this task may spend now: None when nothing bounds it."""
        caps = [c for c in (rec.cost_left(), self.left(spent_usd)) if c is not None]
        return max(0.0, min(caps)) if caps else None

    def left(self, spent_usd: float) -> float | None:
        return None if self.total_usd is None else self.total_usd - spent_usd

    def check(self, run: LiveRun, now: float) -> None:
        if self.total_usd is None:
            return
        spent = run.cost_spent()
        if spent >= self.total_usd:
            if not self.exhausted:
                self.exhausted = True
                why = f"money budget spent: ${spent:.4f} of ${self.total_usd:g}"
                run.events.add("cost-budget-exhausted", spent_usd=round(spent, 6), total_usd=self.total_usd)
                run.display.note(f"{why}; nothing new starts")
                run.stop_starting(why, "money budget spent")
        elif not self.pressed and spent > COST_PRESSURE * self.total_usd:
            self.pressed = True
            cut = []
            for tid, rec in run.records.items():
                if rec.cost_budget is not None and run.status_of(tid) == PENDING:
                    rec.cost_budget = rec.cost_budget * 0.8
                    cut.append(tid)
            run.events.add(
                "cost-pressure", spent_usd=round(spent, 6), total_usd=self.total_usd, budgets_cut=len(cut), percent=20
            )
            run.display.note(f"cost_pressure: ${spent:.4f} of ${self.total_usd:g} spent; {len(cut)} budgets cut by 20%")
