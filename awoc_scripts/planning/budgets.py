"""Token budgets: base by agent times the priority multiplier, scaled to the total.

Integer arithmetic throughout, so `floor(6000 * 1.1)` is exactly 6600 and a scaled sum can
never exceed the total by a rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

BASE_BUDGETS = {"architect": 6000, "docs-fetcher": 4000, "workforce": 8000}
DEFAULT_BASE_BUDGET = 5000
# multiplier as a fraction of ten: critical 1.3, high 1.1, medium 1.0, low 0.8
PRIORITY_TENTHS = {"critical": 13, "high": 11, "medium": 10, "low": 8}
DEFAULT_TOTAL_TOKEN_BUDGET = 25000


def base_budget(agent: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    override = (overrides or {}).get(agent, {})
    if "base_budget" in override:
        return int(override["base_budget"])
    return BASE_BUDGETS.get(agent, DEFAULT_BASE_BUDGET)


def computed_budget(agent: str, priority: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    return base_budget(agent, overrides) * PRIORITY_TENTHS[priority] // 10


@dataclass
class BudgetRequest:
    """What a task asks of the token budget."""

    task_id: str
    agent: str
    priority: str
    explicit: int | None  # the task's own token_budget, which always wins


@dataclass
class BudgetAllocation:
    """Every task's token budget, and how the total was shared."""

    budgets: dict[str, int]
    total: int
    scale_factor: float
    warnings: list[str] = field(default_factory=list)

    @property
    def allocated(self) -> int:
        return sum(self.budgets.values())


def allocate_budgets(
    requests: Sequence[BudgetRequest],
    total: int | None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> BudgetAllocation:
    """`total=None` means the user gave no total, so the default applies and may grow."""
    explicit = {r.task_id: r.explicit for r in requests if r.explicit is not None}
    by_kind: dict[tuple[str, str], int] = {}  # a few agents and priorities, many tasks
    computed: dict[str, int] = {}
    for r in requests:
        if r.explicit is None:
            kind = (r.agent, r.priority)
            if kind not in by_kind:
                by_kind[kind] = computed_budget(r.agent, r.priority, overrides)
            computed[r.task_id] = by_kind[kind]
    explicit_sum = sum(explicit.values())
    computed_sum = sum(computed.values())
    warnings: list[str] = []

    effective_total = DEFAULT_TOTAL_TOKEN_BUDGET if total is None else total
    if explicit_sum > effective_total or not _every_task_gets_a_token(computed, effective_total - explicit_sum):
        if total is not None and not computed:
            raise InputError(
                f"explicit token budgets add up to {explicit_sum}, more than the total token budget {total}; "
                "raise the total or lower the budgets"
            )
        if total is not None:
            raise InputError(
                f"explicit token budgets add up to {explicit_sum}, which leaves "
                f"{max(effective_total - explicit_sum, 0)} of the total token budget {total} "
                f"for {len(computed)} task(s) without one; raise the total or lower the budgets"
            )
        effective_total = explicit_sum + computed_sum
        default = DEFAULT_TOTAL_TOKEN_BUDGET
        if explicit_sum > default:
            why = f"explicit token budgets add up to {explicit_sum}, more than the default total {default}"
        else:
            why = f"the default total {default} cannot give each of the {len(requests)} tasks a token"
        warnings.append(
            f"{why}; the total is raised to {effective_total}, the sum of the tasks' "
            "budgets (set total_token_budget to choose another)"
        )

    available = effective_total - explicit_sum
    scale_factor = 1.0
    if computed_sum > available:
        scale_factor = available / computed_sum
        computed = {tid: b * available // computed_sum for tid, b in computed.items()}
        warnings.append(
            f"token budgets add up to {explicit_sum + computed_sum}, more than the total "
            f"{effective_total}; computed budgets scaled by {scale_factor:.4f}"
        )
    budgets = {r.task_id: explicit.get(r.task_id) or computed[r.task_id] for r in requests}
    return BudgetAllocation(budgets, effective_total, round(scale_factor, 6), warnings)


def _every_task_gets_a_token(computed: Mapping[str, int], available: int) -> bool:
    total = sum(computed.values())
    return not computed or total <= available or min(computed.values()) * available >= total
