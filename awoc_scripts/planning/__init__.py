"""From a request to a plan: budgets, the normalized plan, the execution plan, estimates and the scheduling order."""
