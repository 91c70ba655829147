"""Reading what the user asked for: arguments and config files, the schema, dependencies, agent definitions."""
