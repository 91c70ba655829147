"""Everything on disk: paths, atomic writes and locks, a run's state.json, task states, events."""
