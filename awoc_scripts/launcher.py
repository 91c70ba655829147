"""How to name awoc's own commands to the user, so that every command we print works where it is read.

A launcher (the repository's `scripts/*.sh`, a project's `.claude/awoc/*.sh`) exports
`AWOC_LAUNCHER`, a pattern such as `.claude/awoc/{name}.sh`; without one (a plugin's `bin/`
on PATH, or an installed awoc) the console script's own name is the command.
"""

from __future__ import annotations

import os
import shlex

LAUNCHER_ENV = "AWOC_LAUNCHER"


def command_for(script: str, *args: str) -> str:
    pattern = os.environ.get(LAUNCHER_ENV) or "{name}"
    program = pattern.replace("{name}", script) if "{name}" in pattern else script
    return " ".join([shlex.quote(program), *(shlex.quote(a) for a in args)])
