"""The pressure policies that may act on a run by themselves, named with their thresholds.

Each is on by default and can be turned off in `parallel_config.policies`; the plan, the
`prepare` summary and the report name the ones that may act, and every action is an event.
Token pressure counts tokens spent; the budgets of running tasks count too only with
`token_pressure_counts_in_flight` (they are reservations, not spending).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.plan_types import PolicyDescription

TOKEN_PRESSURE = 0.8
COST_PRESSURE = 0.8
TIME_PRESSURE = 0.8
DEFAULT_MIN_FREE_MEMORY_MB = 256  # under it the rest runs one at a time; under half, the youngest task waits
DEFAULT_POLICIES: dict[str, bool] = {
    "token_pressure": True,
    "token_pressure_counts_in_flight": False,
    "time_pressure": True,
    "memory_pressure": True,
}


def policy_settings(config: Mapping[str, Any]) -> dict[str, bool]:
    return {**DEFAULT_POLICIES, **(config.get("policies") or {})}


def describe_policies(config: Mapping[str, Any]) -> list[PolicyDescription]:
    """Every policy, whether it may act in this run, and when."""
    on = policy_settings(config)
    total = config["total_token_budget"]
    timeout = config["total_timeout"]
    counted = "spent + budgets of running tasks" if on["token_pressure_counts_in_flight"] else "tokens spent"
    free_mb = config.get("min_free_memory_mb", DEFAULT_MIN_FREE_MEMORY_MB)
    return [
        {
            "policy": "token_pressure",
            "enabled": on["token_pressure"],
            "when": f"{counted} pass {int(TOKEN_PRESSURE * 100)}% of the total budget ({int(TOKEN_PRESSURE * total)} "
            f"of {total} tokens)",
            "action": "the budgets of tasks not started yet are cut by 20%",
        },
        {
            "policy": "token_budget_exhausted",
            "enabled": True,
            "when": f"{total} tokens spent",
            "action": "nothing new starts; the run ends aborted (exit 3)",
        },
        *_cost_policies(config.get("total_cost_budget_usd")),
        {
            "policy": "time_pressure",
            "enabled": on["time_pressure"],
            "when": f"{TIME_PRESSURE * timeout:g} s of the {timeout:g} s total timeout have passed",
            "action": "not-started low and medium priority tasks are cancelled",
        },
        {
            "policy": "total_timeout",
            "enabled": True,
            "when": f"{timeout:g} s have passed",
            "action": "running tasks are stopped, the rest cancelled; the run ends aborted (exit 3)",
        },
        {
            "policy": "memory_pressure",
            "enabled": on["memory_pressure"] and free_mb > 0,
            "when": f"free memory under {free_mb} MB (under {free_mb // 2} MB: the youngest task is stopped and "
            "requeued)",
            "action": "the remaining tasks run one at a time",
        },
    ]


def _cost_policies(total_usd: float | None) -> list[PolicyDescription]:
    if total_usd is None:
        return []
    return [
        {
            "policy": "cost_pressure",
            "enabled": True,
            "when": f"over {int(COST_PRESSURE * 100)}% of the money budget is spent (${COST_PRESSURE * total_usd:g} "
            f"of ${total_usd:g})",
            "action": "the money budgets of tasks not started yet are cut by 20%",
        },
        {
            "policy": "cost_budget_exhausted",
            "enabled": True,
            "when": f"${total_usd:g} spent",
            "action": "nothing new starts; the run ends aborted (exit 3)",
        },
    ]


def policy_lines(policies: list[PolicyDescription]) -> list[str]:
    return [f"{p['policy']}: when {p['when']}, {p['action']}" + ("" if p["enabled"] else " (off)") for p in policies]
