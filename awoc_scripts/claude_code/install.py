"""`delegate-parallel install DIR`: the /delegate-parallel command and the agents in a project's .claude/.

The command file is the package's template with awoc's commands at `.claude/awoc/<name>.sh`:
small launchers that run this installation's console scripts, fall back to an awoc on PATH when
this installation has moved, and say what to do when there is none.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import TypedDict

from awoc_scripts.errors import InputError
from awoc_scripts.input.agents import BUILTIN_DIR

TEMPLATE = Path(__file__).resolve().parent / "claude_command" / "delegate-parallel.md"
CONSOLE_SCRIPTS = (
    "delegate-parallel",
    "parallel-task-parser",
    "dependency-validator",
    "parallel-resource-planner",
    "context-monitor",
    "parallel-task-monitor",
    "parallel-error-handler",
    "parallel-task-retry",
    "token-budget-reducer",
    "parallel-to-sequential",
    "task-prioritizer",
    "parallel-execution-aborter",
    "parallel-result-aggregator",
    "parallel-report-generator",
)
INSTALLED_LAUNCHER = ".claude/awoc/{name}.sh"
REPO_LAUNCHER = "scripts/{name}.sh"
PLUGIN_LAUNCHER = "{name}"  # the plugin's bin/ is on PATH
_PLACEHOLDER = re.compile(r"\{cmd:([a-z-]+)\}")


def render_command(launcher: str) -> str:
    """The command file with every `{cmd:NAME}` written as LAUNCHER names it."""
    text = TEMPLATE.read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: launcher.replace("{name}", m.group(1)), text)


def console_script(name: str) -> str:
    """This installation's console script: beside the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InputError(f"cannot find the {name} console script of this installation (is awoc installed?)")
    return found


def launcher_text(name: str) -> str:
    installed = console_script(name)
    gone = (
        f"error: awoc is no longer at $installed, where \\`delegate-parallel install\\` found it, and no {name} "
        "is on PATH: install awoc again (pip install awoc, or make install in its checkout), then run "
        "\\`delegate-parallel install\\` in this project"
    )
    return (
        "#!/usr/bin/env bash\n"
        f"# Installed by `delegate-parallel install`: runs awoc's {name} (that installation, else one on PATH).\n"
        '[ -n "${AWOC_LAUNCHER:-}" ] || export AWOC_LAUNCHER=' + shlex.quote(INSTALLED_LAUNCHER) + "\n"
        f"installed={shlex.quote(installed)}\n"
        "cmd=$installed\n"
        f'[ -x "$cmd" ] || cmd=$(command -v {name}) || {{\n'
        f'  message="{gone}"\n'
        '  for arg in "$@"; do [ "$arg" = --for-claude ] && { printf \'%s\\n\' "$message"; exit 0; }; done\n'
        '  echo "$message" >&2\n'
        "  exit 127\n"
        "}\n"
        'exec "$cmd" "$@"\n'
    )


def _installed_by_awoc(command: Path) -> bool:
    """An earlier install's command (it runs awoc's launchers), not one of the project's own."""
    try:
        return INSTALLED_LAUNCHER.replace("{name}", "delegate-parallel") in command.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


class Installed(TypedDict):
    installed_into: str
    written: list[str]
    kept_existing: list[str]
    next: str


def install(target: Path, force: bool = False) -> Installed:
    if not target.is_dir():
        raise InputError(f"{target}: not a directory")
    claude = target / ".claude"
    written: list[str] = []
    kept: list[str] = []

    def put(path: Path, text: str, executable: bool = False, overwrite: bool = True) -> None:
        if path.exists() and not overwrite:
            kept.append(str(path.relative_to(target)))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if executable:
            path.chmod(0o755)
        written.append(str(path.relative_to(target)))

    launchers = [(name, launcher_text(name)) for name in CONSOLE_SCRIPTS]  # all found before anything is written
    for name, text in launchers:
        put(target / INSTALLED_LAUNCHER.replace("{name}", name), text, executable=True)
    command = claude / "commands" / "delegate-parallel.md"
    put(command, render_command(INSTALLED_LAUNCHER), overwrite=force or _installed_by_awoc(command))
    for agent in sorted(BUILTIN_DIR.glob("*.md")):
        put(claude / "agents" / agent.name, agent.read_text(encoding="utf-8"), overwrite=force)
    return {
        "installed_into": str(target.resolve()),
        "written": written,
        "kept_existing": kept,
        "next": 'In Claude Code, in that project: /delegate-parallel "docs-fetcher:Research X" "architect:Design Y"',
    }
