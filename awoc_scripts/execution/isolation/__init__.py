"""How a task's working directory is made for each attempt (base.py has the interface)."""
