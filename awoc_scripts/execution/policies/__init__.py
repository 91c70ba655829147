"""Pressure policies: each looks at the live run and pulls levers."""
