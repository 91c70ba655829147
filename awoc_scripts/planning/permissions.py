"""What each agent task may do with nobody there to approve: its permission mode, its allow and
deny rules, the directories it may work in besides its own, and whether a denial fails it.

Each setting comes from the first place that gives it: the task, the agent's entry in
`parallel_config.agents`, the agent file's frontmatter, then the default. The default depends on
the agent's tools: an agent that can change files (Write, Edit, Bash, or every tool) edits files
and runs commands in its working directory; a read-only agent stays read-only, and one with web
tools may use them.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import InputError

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping

    from awoc_scripts.input.agents import AgentDefinition
    from awoc_scripts.plan_types import JsonObject, Permissions, Task

PERMISSION_MODES = ("default", "acceptEdits", "auto", "dontAsk", "plan", "bypassPermissions")
WRITING_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit", "Bash"})
WEB_TOOLS = ("WebFetch", "WebSearch")
# a task's own keys that decide its permissions (the tools too: they decide the defaults)
TASK_KEYS = ("permission_mode", "allowed_tools", "disallowed_tools", "add_dirs", "on_permission_denied", "tools")
SANDBOX_ENV = "AWOC_SANDBOX"  # 0: never confine Bash with Claude Code's sandbox


def tool_names(tools: list[str] | str | None) -> list[str] | None:
    """The tools an agent has (None: every tool the runner offers)."""
    if tools is None:
        return None
    items = tools.split(",") if isinstance(tools, str) else tools
    return [t.strip() for t in items if t.strip()]


def sandbox_available(environ: Mapping[str, str]) -> bool:
    """Claude Code's Bash sandbox runs here: Linux with bubblewrap and socat, where bubblewrap can
    really make its namespaces (macOS has a sandbox of its own)."""
    if environ.get(SANDBOX_ENV) == "0":
        return False
    if sys.platform == "darwin":
        return True
    bwrap = _bubblewrap(environ)
    return bwrap is not None and _bubblewrap_works(bwrap)


def start_sandbox_probe(environ: Mapping[str, str]) -> None:
    """Start finding out whether bubblewrap works, so that its 5-10 ms pass while the request is
    read and planned; `sandbox_available` takes the answer, and `settle_sandbox_probe` reaps a
    probe nobody asked about."""
    if environ.get(SANDBOX_ENV) == "0" or not sys.platform.startswith("linux"):
        return
    bwrap = _bubblewrap(environ)
    if bwrap is None or bwrap in _probes or bwrap in _answers:
        return
    import contextlib
    import subprocess

    with contextlib.suppress(OSError):  # then it is asked again when needed, and answered then
        _probes[bwrap] = subprocess.Popen(
            _probe_command(bwrap), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def settle_sandbox_probe() -> None:
    """Wait for a started probe (it has had time to end) so that no process is left behind."""
    for bwrap in list(_probes):
        _bubblewrap_works(bwrap)


def _bubblewrap(environ: Mapping[str, str]) -> str | None:
    """bubblewrap's path, if it and socat (which the sandbox also needs) are both on PATH."""
    path = environ.get("PATH")
    found = [shutil.which(p, path=path) for p in ("bwrap", "socat")]
    return found[0] if sys.platform.startswith("linux") and found[0] and found[1] else None


def _probe_command(bwrap: str) -> list[str]:
    return [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "true"]


_probes: dict[str, subprocess.Popen[bytes]] = {}  # started ahead by start_sandbox_probe, by path
_answers: dict[str, bool] = {}  # each bubblewrap's answer, found once per process


def _bubblewrap_works(bwrap: str) -> bool:
    """A container may forbid the namespaces bubblewrap needs: then Bash would fail in the sandbox."""
    if bwrap not in _answers:
        _answers[bwrap] = _probe(bwrap)
    return _answers[bwrap]


def _probe(bwrap: str) -> bool:
    import subprocess

    probe = _probes.pop(bwrap, None)
    if probe is None:
        try:
            probe = subprocess.Popen(
                _probe_command(bwrap), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError:
            return False
    try:
        return probe.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.wait()
        return False


def resolve_permissions(
    task: Mapping[str, Any],
    override: Mapping[str, Any],
    agent: AgentDefinition,
    run_on_denied: str,
    sandbox: bool,
) -> Permissions:
    """TASK's raw settings over OVERRIDE (parallel_config.agents[agent]) over AGENT's file."""
    if agent.permission_mode is not None and agent.permission_mode not in PERMISSION_MODES:
        raise InputError(
            f"{agent.source}: permissionMode {agent.permission_mode!r} is not one of {', '.join(PERMISSION_MODES)}"
        )
    tools = tool_names(task.get("tools") or override.get("tools") or agent.tools)
    writes = tools is None or bool(WRITING_TOOLS.intersection(tools))
    has_bash = tools is None or "Bash" in tools
    if writes:
        default_mode, default_allowed = "acceptEdits", ["Bash"] if has_bash else []
    else:
        default_mode, default_allowed = "default", [t for t in WEB_TOOLS if t in (tools or ())]

    def first(key: str, from_file: Any, default: Any) -> Any:
        for source in (task, override):
            if source.get(key) is not None:
                return source[key]
        return default if from_file is None else from_file

    mode = str(first("permission_mode", agent.permission_mode, default_mode))
    on_denied = task.get("on_permission_denied") or override.get("on_permission_denied") or run_on_denied
    return {
        "mode": mode,
        "allowed_tools": list(first("allowed_tools", agent.allowed_tools, default_allowed)),
        "disallowed_tools": list(first("disallowed_tools", agent.disallowed_tools, [])),
        "add_dirs": [os.path.abspath(d) for d in first("add_dirs", agent.add_dirs, [])],
        "on_denied": "warn" if on_denied == "warn" else "fail",
        "writes": writes and mode != "plan",
        "sandbox": sandbox and writes and has_bash,
    }


def describe_permissions(permissions: Permissions | None) -> str:
    """One line for the plan summary: what the task may do without asking."""
    if permissions is None:
        return "runs its command"
    mode = permissions["mode"]
    if not permissions["writes"]:
        parts = ["read-only"]
    elif mode in ("acceptEdits", "auto", "bypassPermissions"):
        parts = ["edits files in its directory"]
    else:
        parts = [f"asks to edit ({mode}: refused with nobody to approve)"]
    parts[0] += f" [{mode}]"
    allowed = permissions["allowed_tools"]
    if allowed:
        parts.append("may use " + ", ".join(allowed))
    if permissions["sandbox"]:
        parts.append("Bash writes only in its directory (sandboxed)")
    elif "Bash" in allowed:
        parts.append("Bash not confined (no sandbox here)")
    if permissions["disallowed_tools"]:
        parts.append("never " + ", ".join(permissions["disallowed_tools"]))
    if permissions["add_dirs"]:
        parts.append("also in " + ", ".join(permissions["add_dirs"]))
    if permissions["on_denied"] == "warn":
        parts.append("a denial only warns")
    return "; ".join(parts)


def with_permissions(tasks: list[Task], raw_tasks: list[JsonObject], settings: Mapping[str, Any]) -> None:
    """Give every agent task of the plan its permissions (a command task has none)."""
    from pathlib import Path

    from awoc_scripts.input.agents import find_agent

    sandbox: bool | None = None  # looked at once, and only when some agent task needs it
    agents: dict[str, AgentDefinition] = {}
    shared: dict[str, Permissions] = {}  # tasks that set nothing of their own share their agent's
    for task, raw in zip(tasks, raw_tasks, strict=True):
        if task["command"] is not None:
            task["permissions"] = None
            continue
        name = task["agent"]
        own = not raw.keys().isdisjoint(TASK_KEYS) and any(raw.get(key) is not None for key in TASK_KEYS)
        if not own and name in shared:
            task["permissions"] = shared[name]
            continue
        if name not in agents:
            agents[name] = find_agent(name, Path.cwd(), Path.home())
        override = settings["agents"].get(name, {})
        sandbox = sandbox_available(os.environ) if sandbox is None else sandbox
        permissions = resolve_permissions(raw, override, agents[name], settings["on_permission_denied"], sandbox)
        task["permissions"] = permissions
        if not own:
            shared[name] = permissions
