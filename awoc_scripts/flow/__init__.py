"""The whole flow in one call: prepare a run, execute it and write its report, load it for resume."""
