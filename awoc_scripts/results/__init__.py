"""What a run produced: aggregated results and the report."""
