"""The monitors: what a run used against its budgets (context monitor), and whether its
processes live (process monitor)."""
