"""Claude Code at the edge: the command template, the built-in agents, install into a project."""
