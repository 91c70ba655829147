"""awoc: run many agent tasks at once, with dependencies, budgets, timeouts and one report."""

__version__ = "0.1.0"
PLAN_SCHEMA = "delegate-parallel-v1.0"
