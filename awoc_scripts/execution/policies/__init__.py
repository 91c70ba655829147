"""Pressure policies: each looks at the live run and pulls levers (base.py has the interface)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awoc_scripts.execution.policies.cost_pressure import CostPressure
from awoc_scripts.execution.policies.memory_pressure import MemoryPressure
from awoc_scripts.execution.policies.time_pressure import TimePressure
from awoc_scripts.execution.policies.token_pressure import TokenPressure
from awoc_scripts.planning.policy_settings import policy_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from awoc_scripts.execution.policies.base import Policy
    from awoc_scripts.plan_types import ParallelConfig


def run_policies(config: ParallelConfig, min_free_mb: float, free_memory_mb: Callable[[], float]) -> list[Policy]:
    """The policies a run's config turns on, in the order they look at the run."""
    on = policy_settings(config)
    return [
        TimePressure(float(config["total_timeout"]), on["time_pressure"]),
        TokenPressure(int(config["total_token_budget"]), on["token_pressure"], on["token_pressure_counts_in_flight"]),
        CostPressure(config.get("total_cost_budget_usd")),
        MemoryPressure(min_free_mb, on["memory_pressure"], free_memory_mb),
    ]
