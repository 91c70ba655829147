"""`delegate-parallel install DIR`: the /delegate-parallel command and the agents in a project's .claude/.

The command file is the package's template with its scripts at `.claude/awoc/`, where small
shims call this installation's console scripts, so the command works from that project's root.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from awoc_scripts.agents import BUILTIN_DIR
from awoc_scripts.errors import InputError

TEMPLATE = Path(__file__).resolve().parent / "claude_command" / "delegate-parallel.md"
COMMAND_SCRIPTS = ("parallel-task-parser", "parallel-resource-planner", "delegate-parallel")
INSTALLED_BIN = ".claude/awoc"
REPO_BIN = "scripts"


def render_command(bin_dir: str) -> str:
    return TEMPLATE.read_text(encoding="utf-8").replace("{bin}", bin_dir)


def console_script(name: str) -> str:
    """This installation's console script: beside the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InputError(f"cannot find the {name} console script of this installation (is awoc installed?)")
    return found


def shim_text(name: str) -> str:
    return (
        "#!/usr/bin/env bash\n"
        f"# Installed by `delegate-parallel install`: runs awoc's {name}.\n"
        f'exec {_quote(console_script(name))} "$@"\n'
    )


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def install(target: Path, force: bool = False) -> dict[str, Any]:
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

    for name in COMMAND_SCRIPTS:
        put(claude / "awoc" / f"{name}.sh", shim_text(name), executable=True)
    put(claude / "commands" / "delegate-parallel.md", render_command(INSTALLED_BIN))
    for agent in sorted(BUILTIN_DIR.glob("*.md")):
        put(claude / "agents" / agent.name, agent.read_text(encoding="utf-8"), overwrite=force)
    return {
        "installed_into": str(target.resolve()),
        "written": written,
        "kept_existing": kept,
        "next": 'In Claude Code, in that project: /delegate-parallel "docs-fetcher:Research X" "architect:Design Y"',
    }
