"""What runs a task, and what its output means.

Three runners: the `claude` CLI in print mode (agent tasks), a replaceable agent command
(`AWOC_AGENT_COMMAND` or `parallel_config.runner.command`), and a task's own `command`.
All get the prompt on stdin, never through a shell. Output is read the same way for all: a
claude-style result object if there is one (text, tokens, cost, errors), else plain text.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from awoc_scripts.errors import InputError
from awoc_scripts.execution.attempt_report import (
    MAX_PLAUSIBLE_COST_USD,
    USAGE_KEYS,
    Outcome,
    Tokens,
    count_of,
    stream_messages,
)
from awoc_scripts.planning.permissions import resolve_permissions, sandbox_available

if TYPE_CHECKING:
    from awoc_scripts.input.agents import AgentDefinition
    from awoc_scripts.plan_types import JsonObject, Permissions, Task

AGENT_COMMAND_ENV = "AWOC_AGENT_COMMAND"
CLAUDE_BIN_ENV = "AWOC_CLAUDE_BIN"
TRANSIENT_STATUSES = (429, 529)
TRANSIENT_TEXT = re.compile(r"rate.?limit|overloaded|usage limit|too many requests", re.IGNORECASE)


@dataclass(frozen=True)
class Invocation:
    """The program an attempt runs: its argv, environment and what kind of runner it is."""

    argv: list[str]
    env: dict[str, str]
    kind: str  # "claude", "agent-command" or "command"
    role_in_prompt: bool  # the runner has no system prompt: the role goes into the prompt
    stream: bool = False  # stdout is stream-json: tokens can be counted per turn


MESSAGE_INPUT = ["--input-format", "stream-json"]  # with stream-json output only


def as_user_message(prompt: bytes) -> bytes:
    """The prompt as the one stream-json input line the CLI reads as the user's message."""
    message = {"type": "user", "message": {"role": "user", "content": prompt.decode("utf-8", "replace")}}
    return orjson.dumps(message) + b"\n"


def claude_binary(environ: Mapping[str, str]) -> str | None:
    return environ.get(CLAUDE_BIN_ENV) or shutil.which("claude", path=environ.get("PATH"))


def agent_command(config: Mapping[str, Any], environ: Mapping[str, str]) -> list[str] | None:
    if environ.get(AGENT_COMMAND_ENV):
        try:
            return shlex.split(environ[AGENT_COMMAND_ENV])
        except ValueError as exc:
            raise InputError(f"{AGENT_COMMAND_ENV}: cannot split into a command: {exc}") from None
    command = (config.get("runner") or {}).get("command")
    return list(command) if command else None


def check_runner_available(tasks: Sequence[Task], config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Before anything starts: agent tasks need a runner."""
    agent_tasks = [t["task_id"] for t in tasks if not t.get("command")]
    if agent_tasks and not agent_command(config, environ) and not claude_binary(environ):
        raise InputError(
            f"{len(agent_tasks)} agent task(s) ({', '.join(agent_tasks[:5])}) need the claude CLI, which is not on "
            f"PATH: install it (npm install -g @anthropic-ai/claude-code), set {CLAUDE_BIN_ENV}, or set "
            f"{AGENT_COMMAND_ENV} to another agent command"
        )


def build_invocation(
    task: Task,
    agent: AgentDefinition,
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    task_env: Mapping[str, str],
    cost_cap_usd: float | None = None,
) -> Invocation:
    """COST_CAP_USD: what this attempt may spend (its task's money budget left, within the run's)."""
    env = {**environ, **task_env}
    command = task.get("command")
    if command:  # a program, not an agent: no role to play
        return Invocation(list(command), env, "command", role_in_prompt=False)
    custom = agent_command(config, environ)
    model = task.get("model") or agent.model
    tools = task.get("tools") or agent.tools
    if isinstance(tools, list):
        tools = ",".join(tools)
    permissions = task_permissions(task, agent, environ)
    if custom:
        extra = {
            "AWOC_AGENT": task["agent"],
            "AWOC_MODEL": model or "",
            "AWOC_TOOLS": tools or "",
            **permission_environment(permissions),
        }
        return Invocation(custom, {**env, **extra}, "agent-command", role_in_prompt=True)
    binary = claude_binary(environ)
    if binary is None:
        raise InputError("the claude CLI is not on PATH")
    stream = (config.get("runner") or {}).get("output_format", "stream-json") == "stream-json"
    argv = [binary, "-p", "--output-format", "stream-json" if stream else "json"]
    if stream:
        argv.append("--verbose")  # the CLI refuses stream-json in print mode without it
    # --exclude-dynamic-system-prompt-sections keeps the system prompt identical across tasks
    # (working directory, git status... move to the user message), so the prompt cache is shared
    argv += ["--no-session-persistence", "--exclude-dynamic-system-prompt-sections"]
    argv += ["--append-system-prompt", agent.system_prompt]
    if model:
        argv += ["--model", model]
    if task.get("max_turns"):
        argv += ["--max-turns", str(task["max_turns"])]
    if tools:
        argv.append(f"--tools={tools}")  # `--tools X` would swallow every following word
    if cost_cap_usd is not None:
        argv += ["--max-budget-usd", money(cost_cap_usd)]
    argv += permission_arguments(permissions)
    return Invocation(argv, env, "claude", role_in_prompt=False, stream=stream)


# Claude Code's Bash sandbox: every command runs confined (writes only in the working directory),
# with no fall-back to running unconfined, and needs no approval
SANDBOX_SETTINGS = '{"sandbox":{"enabled":true,"autoAllowBashIfSandboxed":true,"allowUnsandboxedCommands":false}}'


def task_permissions(task: Task, agent: AgentDefinition, environ: Mapping[str, str]) -> Permissions:
    """The plan's; a plan saved before permissions existed gets the defaults."""
    saved = task.get("permissions")
    if saved is not None:
        return saved
    return resolve_permissions(task, {}, agent, "fail", sandbox_available(environ))


def permission_arguments(permissions: Permissions) -> list[str]:
    """The claude CLI's flags. The rule lists are variadic (they would swallow a prompt after
    them), so they come last, each rule its own word; the prompt goes on stdin."""
    argv = ["--permission-mode", permissions["mode"]]
    if permissions["sandbox"]:
        argv += ["--settings", SANDBOX_SETTINGS]
    for flag, key in (("--allowedTools", "allowed_tools"), ("--disallowedTools", "disallowed_tools")):
        rules = permissions[key]  # type: ignore[literal-required]
        if rules:
            argv += [flag, *rules]
    for directory in permissions["add_dirs"]:
        argv += ["--add-dir", directory]
    return argv


def permission_environment(permissions: Permissions) -> dict[str, str]:
    """The same for an agent command: lists one item a line."""
    return {
        "AWOC_PERMISSION_MODE": permissions["mode"],
        "AWOC_ALLOWED_TOOLS": "\n".join(permissions["allowed_tools"]),
        "AWOC_DISALLOWED_TOOLS": "\n".join(permissions["disallowed_tools"]),
        "AWOC_ADD_DIRS": "\n".join(permissions["add_dirs"]),
        "AWOC_BASH_SANDBOXED": "1" if permissions["sandbox"] else "0",
    }


def usage_problem(obj: Mapping[str, Any]) -> str | None:
    """What in a result object's usage and cost cannot be true, or None."""
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, Mapping):
        return f"usage is {str(usage)[:60]!r}"
    for key in USAGE_KEYS:
        value = (usage or {}).get(key)
        if value is not None and count_of(value) is None:
            return f"usage.{key} is {str(value)[:60]}"
    cost = obj.get("total_cost_usd")
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 <= cost <= MAX_PLAUSIBLE_COST_USD
    ):
        return f"total_cost_usd is {str(cost)[:60]}"
    return None


DENIAL_INPUT_CHARS = 300
UNAVAILABLE = "No such tool available"  # what the CLI answers a call of a tool the agent was not given
UNAVAILABLE_TOOL = UNAVAILABLE.encode()


def short_input(tool_input: Any) -> str:
    """What a denied call wanted, in a few words: the file or the command, else its arguments."""
    if isinstance(tool_input, dict):
        for key in ("file_path", "notebook_path", "command", "url", "query", "path", "pattern"):
            if isinstance(tool_input.get(key), str):
                text = tool_input[key]
                break
        else:
            text = orjson.dumps(tool_input).decode()
    else:
        text = str(tool_input)
    text = " ".join(text.split())
    return text if len(text) <= DENIAL_INPUT_CHARS else text[: DENIAL_INPUT_CHARS - 3] + "..."


def read_denials(obj: Mapping[str, Any] | None, stdout: bytes) -> list[dict[str, str]]:
    """The tool calls the agent was refused: what the CLI lists as permission denials, and (from a
    stream-json transcript) calls of a tool the agent was not given."""
    denials: list[dict[str, str]] = []
    listed = obj.get("permission_denials") if obj else None
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("tool_name"), str):
            denials.append({"tool": entry["tool_name"][:100], "input": short_input(entry.get("tool_input"))})
    if UNAVAILABLE_TOOL in stdout:
        denials += _unavailable_tool_calls(stdout)
    return denials


def _tool_results(stdout: bytes) -> Iterator[tuple[tuple[str, Any] | None, JsonObject]]:
    """Each tool result of a stream-json transcript, in order, with the call it answers: (tool,
    input), or None where the transcript does not hold that call."""
    calls: dict[str, tuple[str, Any]] = {}  # tool_use id -> (tool, input)
    for _line, message in stream_messages(stdout.splitlines(), b'"tool_'):
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                calls[str(block.get("id"))] = (str(block.get("name"))[:100], block.get("input"))
            elif block.get("type") == "tool_result":
                yield calls.get(str(block.get("tool_use_id"))), block


def _unavailable_tool_calls(stdout: bytes) -> list[dict[str, str]]:
    return [
        {"tool": call[0], "input": short_input(call[1])} if call else {"tool": "?", "input": ""}
        for call, result in _tool_results(stdout)
        if result.get("is_error") and UNAVAILABLE in str(result.get("content"))
    ]


# Claude Code's Bash sandbox (bubblewrap) failing to start the command: the call never ran. Under a
# repository's shared .git, agents in its worktrees race on the lock files their sandboxes protect
# (anthropics/claude-code#79248): one agent's sandbox removes .git/config.lock as another's mounts it.
BWRAP_ERROR = re.compile(r"\A(?:Exit code \d+\n)?bwrap: [^\n]*")
BWRAP_ERROR_TEXT = b"bwrap: "


@dataclass
class SandboxFailures:
    """The Bash calls whose sandbox failed to start them: those the agent never ran again with
    success (UNRUN: {"tool", "input", "error"}), and how many it did run again."""

    unrun: list[dict[str, str]]
    recovered: int


def read_sandbox_failures(stdout: bytes) -> SandboxFailures:
    if BWRAP_ERROR_TEXT not in stdout:
        return SandboxFailures([], 0)
    failed: dict[tuple[str, str], dict[str, str]] = {}  # (tool, command or file) -> what it failed with
    recovered = 0
    for call, result in _tool_results(stdout):
        if call is None:
            continue
        key = (call[0], short_input(call[1]))  # the same command again, whatever its description says
        text = result.get("content")
        text = text if isinstance(text, str) else orjson.dumps(text, default=str).decode()
        if result.get("is_error") and (found := BWRAP_ERROR.match(text)):
            failed[key] = {"tool": key[0], "input": key[1], "error": found.group(0).split("\n")[-1][:300]}
        elif not result.get("is_error") and failed.pop(key, None) is not None:
            recovered += 1
    return SandboxFailures(list(failed.values()), recovered)


def _result_object(stdout: bytes) -> JsonObject | None:
    for line in reversed(stdout.splitlines()[-50:]):
        line = line.strip()
        if line.startswith(b"{") and b'"result"' in line:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj.get("type") == "result":
                return obj
    return None


def read_outcome(
    exit_code: int, stdout: bytes, stderr_tail: str, agent: bool = True, sandboxed: bool = True
) -> Outcome:
    """What an attempt's output means. A command's output is its text: only an agent runner's
    result object is read for its tokens, cost, errors and refused tool calls."""
    obj = _result_object(stdout) if agent else None
    outcome = _read_outcome(obj, exit_code, stdout, stderr_tail)
    outcome.denials = read_denials(obj, stdout) if agent else []
    if agent and sandboxed:  # without the sandbox, a bwrap error is the task's own command's
        sandbox = read_sandbox_failures(stdout)
        outcome.unrun, outcome.rerun_after_sandbox_failure = sandbox.unrun, sandbox.recovered
    return outcome


def _read_outcome(obj: JsonObject | None, exit_code: int, stdout: bytes, stderr_tail: str) -> Outcome:
    if obj is not None and (problem := usage_problem(obj)):
        text = str(obj.get("result") or "")
        return Outcome(False, text, error=f"the agent reported a usage that cannot be true ({problem}): not counted")
    if obj is None:
        text = stdout.decode("utf-8", "replace").strip("\n").rstrip()
        if exit_code == 0:
            return Outcome(True, text)
        detail = stderr_tail.strip() or text[-2000:]
        error = f"exit code {exit_code}: {detail}" if detail else f"exit code {exit_code}"
        from awoc_scripts.execution.usage_limits import is_usage_limit, reset_time  # failures only

        limited = is_usage_limit(detail)
        return Outcome(
            False,
            text,
            error=error,
            transient=bool(TRANSIENT_TEXT.search(detail)),
            usage_limit=limited,
            resets_at=reset_time(detail) if limited else None,
        )
    tokens = Tokens.from_usage(obj.get("usage"))
    cost = obj.get("total_cost_usd")
    session = str(obj["session_id"]) if obj.get("session_id") else None
    text = str(obj.get("result") or "")
    is_error = bool(obj.get("is_error")) or str(obj.get("subtype", "success")) != "success" or exit_code != 0
    if not is_error:
        return Outcome(True, text, tokens, cost, session_id=session)
    status = obj.get("api_error_status")
    details = "; ".join(str(e) for e in obj.get("errors") or [])
    error = text or details or str(obj.get("subtype"))
    if obj.get("subtype") not in (None, "success"):
        error = f"{obj.get('subtype')}: {details or text}"
    transient = status in TRANSIENT_STATUSES or bool(TRANSIENT_TEXT.search(text))
    capped = obj.get("subtype") == "error_max_budget_usd"
    from awoc_scripts.execution.usage_limits import is_usage_limit, reset_time  # failures only

    limited = is_usage_limit(text)
    return Outcome(
        False,
        text,
        tokens,
        cost,
        error=error,
        transient=transient,
        session_id=session,
        money_cap_reached=capped,
        usage_limit=limited,
        resets_at=reset_time(text) if limited else None,
    )


def task_environment(
    run_id: str, task: Task, budget: int, prompt_file: str, task_dir: str, cost_cap_usd: float | None = None
) -> dict[str, str]:
    env = {
        "AWOC_RUN_ID": run_id,
        "AWOC_TASK_ID": task["task_id"],
        "AWOC_AGENT": task["agent"],
        "AWOC_TOKEN_BUDGET": str(budget),
        "AWOC_PROMPT_FILE": prompt_file,
        "AWOC_TASK_DIR": task_dir,
    }
    if cost_cap_usd is not None:
        env["AWOC_COST_BUDGET_USD"] = money(cost_cap_usd)
    return env


def money(usd: float) -> str:
    """Dollars as the CLI takes them: plain decimal, no exponent, at most 6 places."""
    return f"{usd:.6f}".rstrip("0").rstrip(".") or "0"
