#!/usr/bin/env python3
"""Fake ``claude`` CLI (print mode only) for awoc tests.  Stdlib only, starts fast.

It parses the real CLI's flags the way the real CLI (commander.js) does and prints the same
JSON shapes as ``claude`` 2.1.197 (see REAL_CLI_FINDINGS.md next to this file).

Behaviour is scripted by directives anywhere in the prompt (stdin and/or the prompt argument),
then in ``--system-prompt``/``--append-system-prompt``, then in env ``FAKE_CLAUDE_DIRECTIVES``
(first occurrence of a key wins).  Syntax ``[[fake:NAME]]`` or ``[[fake:NAME=VALUE]]``;
``FAKE_CLAUDE_DIRECTIVES`` may also be ``name=value;name2``.

  sleep=S              sleep S seconds before the (first) model answer
  turn_sleep=S         sleep S seconds before each later turn
  hang                 sleep forever (after the init line in stream-json); signals act normally
  ignore_sigterm       ignore SIGTERM (to test SIGKILL escalation)
  crash                stack trace on stderr, nothing on stdout, exit 2
  fail                 API error 500 (is_error true, api_error_status 500), exit 1
  rate_limit           API error 429, exit 1
  overloaded           API error 529, exit 1
  api_error=N          API error with HTTP status N, exit 1
  usage_limit          subscription usage limit message (api_error_status 429), exit 1
  resets_in=S          with usage_limit: the message names a reset S seconds ahead, as an epoch
  not_logged_in        "Not logged in · Please run /login", exit 1
  fail_times=N         the first N calls with the same key fail (needs env FAKE_CLAUDE_STATE_DIR)
  fail_kind=K          how fail_times fails: fail (default), rate_limit, overloaded, usage_limit, crash
  key=K                key for fail_times (default: sha256 of the prompt)
  turns=N              N model calls (N-1 tool-use turns, then the answer)
  tokens=IN,OUT[,CR[,CW]]  usage per call: input, output, cache read, cache creation tokens
  grows=G              each call's input is the last one's plus its output and G (a tool result),
                       as a conversation grows (without it, every call sends the same input)
  stream_usage=M       usage in stream-json assistant lines: start (default, like the real CLI:
                       that call's input tokens and output_tokens 1), per_turn (that call's full
                       usage) or cumulative (running totals)
  max_turns            end with subtype error_max_turns (limit = --max-turns or turns)
  result=TEXT          result text (default "Done: <task line>\\nprompt_sha256: <hex>")
  child=S              spawn `sleep S` in our process group (stdio to /dev/null)
  detached_child=S     spawn `sleep S` in a new session (leaves the group)

Defaults: input_tokens = len(prompt)//4, output_tokens = 50 per call, model claude-sonnet-5
(env FAKE_CLAUDE_DEFAULT_MODEL), cost from per-model prices (sonnet $3/$15 per M tokens).

Env FAKE_CLAUDE_LOG_DIR: append one JSON line per invocation to calls.jsonl (at exit, or on
SIGTERM/SIGINT) and one to started.jsonl at start-up, each with a single O_APPEND write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
import uuid
from typing import Any, NoReturn

VERSION = "2.1.197"
DEFAULT_MODEL = "claude-sonnet-5"
MODEL_ALIASES = {
    "sonnet": "claude-sonnet-5",
    "opus": "claude-opus-4-8",
    "haiku": "claude-haiku-4-5-20251001",
    "sonnet[1m]": "claude-sonnet-5[1m]",
    "opus[1m]": "claude-opus-4-8[1m]",
}
# $ per million tokens: input, output, cache read, cache creation (5 min).
PRICES = {
    "opus": (5.0, 25.0, 0.5, 6.25),
    "sonnet": (3.0, 15.0, 0.3, 3.75),
    "haiku": (1.0, 5.0, 0.1, 1.25),
}
DEFAULT_TOOLS = [
    "Task",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
]
SKILLS = [
    "deep-research",
    "update-config",
    "verify",
    "debug",
    "code-review",
    "simplify",
    "batch",
    "fewer-permission-prompts",
    "loop",
    "claude-api",
    "run",
    "run-skill-generator",
]
SLASH_COMMANDS = [
    *SKILLS,
    "clear",
    "compact",
    "config",
    "context",
    "heapdump",
    "init",
    "reload-skills",
    "review",
    "security-review",
    "usage",
    "insights",
    "goal",
    "team-onboarding",
]
AGENTS = ["claude", "Explore", "general-purpose", "Plan", "statusline-setup"]
PERMISSION_MODES = ["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]

# flag -> (key, kind, placeholder, choices); kind: bool | value | variadic | optional
_OPT = tuple[str, str, str, list[str] | None]
OPTIONS: dict[str, _OPT] = {}


def _opt(names: str, key: str, kind: str, placeholder: str = "", choices: list[str] | None = None) -> None:
    for n in names.split():
        OPTIONS[n] = (key, kind, f"{names.replace(' ', ', ')}{' ' + placeholder if placeholder else ''}", choices)


_opt("-p --print", "print", "bool")
_opt("--verbose", "verbose", "bool")
_opt("--no-session-persistence", "no_session_persistence", "bool")
_opt("--bare", "bare", "bool")
_opt("--dangerously-skip-permissions", "dangerously_skip_permissions", "bool")
_opt("--allow-dangerously-skip-permissions", "allow_dsp", "bool")
_opt("--include-partial-messages", "include_partial_messages", "bool")
_opt("--include-hook-events", "include_hook_events", "bool")
_opt("--strict-mcp-config", "strict_mcp_config", "bool")
_opt("--disable-slash-commands", "disable_slash_commands", "bool")
_opt("--exclude-dynamic-system-prompt-sections", "exclude_dynamic", "bool")
_opt("--safe-mode", "safe_mode", "bool")
_opt("-h --help", "help", "bool")
_opt("-v --version", "version", "bool")
_opt("--output-format", "output_format", "value", "<format>", ["text", "json", "stream-json"])
_opt("--input-format", "input_format", "value", "<format>", ["text", "stream-json"])
_opt("--model", "model", "value", "<model>")
_opt("--fallback-model", "fallback_model", "value", "<model>")
_opt("--append-system-prompt", "append_system_prompt", "value", "<prompt>")
_opt("--system-prompt", "system_prompt", "value", "<prompt>")
_opt("--max-turns", "max_turns", "value", "<turns>")
_opt("--max-budget-usd", "max_budget_usd", "value", "<amount>")
_opt("--permission-mode", "permission_mode", "value", "<mode>", PERMISSION_MODES)
_opt("--session-id", "session_id", "value", "<uuid>")
_opt("--json-schema", "json_schema", "value", "<schema>")
_opt("--agents", "agents", "value", "<json>")
_opt("--agent", "agent", "value", "<agent>")
_opt("--settings", "settings", "value", "<file-or-json>")
_opt("--setting-sources", "setting_sources", "value", "<sources>")
_opt("--effort", "effort", "value", "<level>")
_opt("--debug-file", "debug_file", "value", "<path>")
_opt("-n --name", "name", "value", "<name>")
_opt("--tools", "tools", "variadic", "<tools...>")
_opt("--allowedTools --allowed-tools", "allowed_tools", "variadic", "<tools...>")
_opt("--disallowedTools --disallowed-tools", "disallowed_tools", "variadic", "<tools...>")
_opt("--add-dir", "add_dir", "variadic", "<directories...>")
_opt("--mcp-config", "mcp_config", "variadic", "<configs...>")
_opt("--betas", "betas", "variadic", "<betas...>")
_opt("-d --debug", "debug", "optional", "[filter]")

DIRECTIVE_RE = re.compile(r"\[\[fake:([A-Za-z_]+)(?:=(.*?))?\]\]", re.S)
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LOGGED_ENV_PREFIXES = ("AWOC_", "FAKE_CLAUDE_", "CLAUDE_CODE_")
LOGGED_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER", "HOME")


class CliExit(Exception):
    def __init__(self, code: int, stderr: str = "", stdout: str = "", outcome: str = "") -> None:
        super().__init__(stderr)
        self.code = code
        self.outcome = outcome
        self.stderr = stderr
        self.stdout = stdout


# --------------------------------------------------------------------------------------------
# argument parsing (commander.js semantics)
# --------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {}
    positionals: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if len(arg) < 2 or not arg.startswith("-"):
            positionals.append(arg)
            continue
        name, inline = arg, None
        if arg.startswith("--") and "=" in arg:
            name, inline = arg.split("=", 1)
        spec = OPTIONS.get(name)
        if spec is None:
            raise CliExit(1, f"error: unknown option '{arg}'\n")
        key, kind, desc, choices = spec
        if kind == "bool":
            if inline is not None:
                raise CliExit(1, f"error: unknown option '{arg}'\n")
            opts[key] = True
        elif kind == "value":
            if inline is not None:
                value = inline
            elif i < n:
                value = argv[i]
                i += 1
            else:
                raise CliExit(1, f"error: option '{desc}' argument missing\n")
            if choices is not None and value not in choices:
                raise CliExit(
                    1,
                    f"error: option '{desc}' argument '{value}' is invalid. "
                    f"Allowed choices are {', '.join(choices)}.\n",
                )
            opts[key] = value
        elif kind == "variadic":
            # `--tools A B` takes every following non-option word (even the prompt); `--tools=A` only A.
            values = [] if inline is None else [inline]
            while inline is None and i < n and not (len(argv[i]) > 1 and argv[i].startswith("-")):
                values.append(argv[i])
                i += 1
            if not values:
                raise CliExit(1, f"error: option '{desc}' argument missing\n")
            opts.setdefault(key, []).extend(values)
        else:  # optional value
            if inline is not None:
                opts[key] = inline
            elif i < n and not argv[i].startswith("-"):
                opts[key] = argv[i]
                i += 1
            else:
                opts[key] = True
    return opts, positionals


def parse_directives(*texts: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for text in texts:
        if not text:
            continue
        for m in DIRECTIVE_RE.finditer(text):
            found.setdefault(m.group(1).lower(), m.group(2) if m.group(2) is not None else "")
    return found


def env_directives() -> dict[str, str]:
    raw = os.environ.get("FAKE_CLAUDE_DIRECTIVES", "")
    if not raw:
        return {}
    if "[[fake:" in raw:
        return parse_directives(raw)
    found: dict[str, str] = {}
    for part in raw.split(";"):
        part = part.strip()
        if part:
            k, _, v = part.partition("=")
            found.setdefault(k.strip().lower(), v)
    return found


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def out_line(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape") + b"\n")
    sys.stdout.buffer.flush()


def new_uuid() -> str:
    return str(uuid.uuid4())


def resolve_model(name: str | None) -> str:
    if not name or name == "default":
        return os.environ.get("FAKE_CLAUDE_DEFAULT_MODEL") or DEFAULT_MODEL
    return MODEL_ALIASES.get(name, name)


def prices_for(model: str) -> tuple[float, float, float, float]:
    for family, p in PRICES.items():
        if family in model:
            return p
    return PRICES["sonnet"]


def call_cost(model: str, u: dict[str, int]) -> float:
    pin, pout, pread, pwrite = prices_for(model)
    return (
        u["input_tokens"] * pin / 1e6
        + u["output_tokens"] * pout / 1e6
        + u["cache_read_input_tokens"] * pread / 1e6
        + u["cache_creation_input_tokens"] * pwrite / 1e6
    )


def model_limits(model: str) -> tuple[int, int]:
    context = 1000000 if "[1m]" in model else 200000
    max_out = 32000 if ("haiku" in model or re.search(r"-4-[0-5](?:\b|-)", model)) else 64000
    return context, max_out


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def js_number(x: float) -> float | int:
    """JSON numbers the way JavaScript prints them: 0 not 0.0."""
    return int(x) if float(x).is_integer() else x


def fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def task_line(prompt: str) -> str:
    """First line of the prompt's task section (directives removed)."""
    lines = [ln.strip() for ln in DIRECTIVE_RE.sub("", prompt).splitlines()]
    for idx, line in enumerate(lines):
        m = re.match(r"^(?:#{1,6}\s*task\b|<task\b[^>]*>|\*\*task\*\*|task\b)\s*[:\-]?\s*(.*)$", line, re.I)
        if not m:
            continue
        is_heading = line.startswith(("#", "<", "**"))
        rest = m.group(1).strip()
        if rest and not rest.startswith("#"):
            return rest
        if is_heading:
            for nxt in lines[idx + 1 :]:
                if nxt and not nxt.startswith("#"):
                    return nxt
    for line in lines:
        if line:
            return line
    return ""


# --------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------
def append_jsonl(path: str, obj: dict[str, Any]) -> None:
    data = (json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class CallLog:
    def __init__(self, argv: list[str]) -> None:
        self.dir = os.environ.get("FAKE_CLAUDE_LOG_DIR") or ""
        self.done = False
        self.entry: dict[str, Any] = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "sid": os.getsid(0),
            "argv": argv,
            "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith(LOGGED_ENV_PREFIXES) or k in LOGGED_ENV},
            "start": time.time(),
        }

    def started(self) -> None:
        if self.dir:
            keys = ("pid", "pgid", "argv", "cwd", "start", "prompt_sha256", "children")
            os.makedirs(self.dir, exist_ok=True)
            append_jsonl(
                os.path.join(self.dir, "started.jsonl"),
                {k: self.entry[k] for k in keys if k in self.entry} | {"task_id": os.environ.get("AWOC_TASK_ID")},
            )

    def finish(self, exit_code: int | None, outcome: str) -> None:
        if self.done:
            return
        self.done = True
        if not self.dir:
            return
        self.entry["end"] = time.time()
        self.entry["exit_code"] = exit_code
        self.entry["outcome"] = outcome
        os.makedirs(self.dir, exist_ok=True)
        append_jsonl(os.path.join(self.dir, "calls.jsonl"), self.entry)


# --------------------------------------------------------------------------------------------
# the simulated session
# --------------------------------------------------------------------------------------------
ZERO_USAGE_SYNTHETIC = {
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    "service_tier": None,
    "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
    "inference_geo": None,
    "iterations": None,
    "speed": None,
}


def result_usage(t: dict[str, int]) -> dict[str, Any]:
    return {
        "input_tokens": t["input_tokens"],
        "cache_creation_input_tokens": t["cache_creation_input_tokens"],
        "cache_read_input_tokens": t["cache_read_input_tokens"],
        "output_tokens": t["output_tokens"],
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {
            "ephemeral_1h_input_tokens": 0,
            "ephemeral_5m_input_tokens": t["cache_creation_input_tokens"],
        },
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
    }


def gateway_hint() -> str:
    base = os.environ.get("ANTHROPIC_BASE_URL", "")
    if base:
        host = re.sub(r"^[a-z]+://", "", base).split("/")[0]
        if not host.endswith("anthropic.com"):
            return f" If it persists, check your inference gateway ({host or base})."
    return " If it persists, check https://status.claude.com."


def api_error_text(status: int) -> tuple[str, str]:
    """(result text, assistant-line error code) like the real CLI prints them."""
    if status == 429:
        return (
            "API Error: Request rejected (429) · This request would exceed your organization's rate "
            "limit of 30,000 input tokens per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits.",
            "rate_limit",
        )
    if status >= 500:
        msg = {500: "Internal server error", 529: "Overloaded", 503: "Service unavailable"}.get(status, "Error")
        return (
            f"API Error: {status} {msg}. This is a server-side issue, usually temporary — "
            f"try again in a moment.{gateway_hint()}",
            "server_error",
        )
    if status == 401:
        return ("Invalid API key · Fix external API key", "authentication_failed")
    return (f"API Error: {status} Request failed", "unknown")


class Session:
    def __init__(self, opts: dict[str, Any], prompt: str, directives: dict[str, str], log: CallLog) -> None:
        self.opts = opts
        self.prompt = prompt
        self.d = directives
        self.log = log
        self.t0 = time.monotonic()
        self.fmt = opts.get("output_format", "text")
        self.verbose_json = self.fmt == "json" and bool(opts.get("verbose"))
        self.messages: list[dict[str, Any]] = []  # for json + --verbose
        self.session_id = opts.get("session_id") or new_uuid()
        self.model = resolve_model(opts.get("model"))
        self.totals = {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        self.cost = 0.0
        self.api_ms = 0
        self.calls_done = 0

    # -- output ---------------------------------------------------------------------------
    def emit(self, obj: dict[str, Any]) -> None:
        if self.fmt == "stream-json":
            out_line(dumps(obj))
        elif self.verbose_json:
            self.messages.append(obj)

    def finish(self, result: dict[str, Any], text: str) -> int:
        if self.fmt == "stream-json":
            out_line(dumps(result))
        elif self.fmt == "json":
            if self.verbose_json:
                self.messages.append(result)
                out_line(dumps(self.messages))
            else:
                out_line(dumps(result))
        else:
            out_line(text)
        return 1 if result.get("is_error") else 0

    def init_line(self) -> dict[str, Any]:
        tools = list(DEFAULT_TOOLS)
        if "tools" in self.opts:
            names = [t for t in re.split(r"[,\s]+", " ".join(self.opts["tools"])) if t]
            if names != ["default"]:
                tools = sorted({"Task" if t == "Agent" else t for t in names})
        agents = list(AGENTS)
        if self.opts.get("agents"):
            with contextlib.suppress(ValueError, TypeError):
                agents += [a for a in json.loads(self.opts["agents"]) if a not in agents]
        mode = self.opts.get("permission_mode") or (
            "bypassPermissions" if self.opts.get("dangerously_skip_permissions") else "default"
        )
        cwd = os.getcwd()
        home = os.environ.get("HOME", "")
        return {
            "type": "system",
            "subtype": "init",
            "cwd": cwd,
            "session_id": self.session_id,
            "tools": tools,
            "mcp_servers": [],
            "model": self.model,
            "permissionMode": mode,
            "slash_commands": list(SLASH_COMMANDS),
            "apiKeySource": "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none",
            "claude_code_version": VERSION,
            "output_style": "default",
            "agents": agents,
            "skills": list(SKILLS),
            "plugins": [],
            "analytics_disabled": True,
            "product_feedback_disabled": True,
            "uuid": new_uuid(),
            "memory_paths": {"auto": f"{home}/.claude/projects/{re.sub(r'[^A-Za-z0-9]', '-', cwd)}/memory/"},
            "fast_mode_state": "off",
        }

    def assistant_line(
        self, msg_id: str, request_id: str, block: dict[str, Any], usage: dict[str, int]
    ) -> dict[str, Any]:
        return {
            "type": "assistant",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [block],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
                "context_management": None,
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": new_uuid(),
            "request_id": request_id,
        }

    def model_usage(self) -> dict[str, Any]:
        if not self.calls_done:
            return {}
        context, max_out = model_limits(self.model)
        t = self.totals
        return {
            self.model: {
                "inputTokens": t["input_tokens"],
                "outputTokens": t["output_tokens"],
                "cacheReadInputTokens": t["cache_read_input_tokens"],
                "cacheCreationInputTokens": t["cache_creation_input_tokens"],
                "webSearchRequests": 0,
                "costUSD": js_number(self.cost),
                "contextWindow": context,
                "maxOutputTokens": max_out,
            }
        }

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    # -- scenario pieces ------------------------------------------------------------------
    def per_call_usage(self) -> dict[str, int]:
        spec = self.d.get("tokens")
        if spec:
            parts = [int(float(x)) for x in re.split(r"[,/ ]+", spec.strip()) if x]
            parts += [0] * (4 - len(parts))
            tin, tout, cread, cwrite = parts[:4]
        else:
            tin, tout, cread, cwrite = len(self.prompt) // 4, 50, 0, 0
        return {
            "input_tokens": tin,
            "cache_creation_input_tokens": cwrite,
            "cache_read_input_tokens": cread,
            "output_tokens": tout,
        }

    def final_text(self) -> str:
        if "result" in self.d:
            return self.d["result"]
        sha = hashlib.sha256(self.prompt.encode("utf-8", "surrogateescape")).hexdigest()
        return f"Done: {task_line(self.prompt)}\nprompt_sha256: {sha}"

    def error_result(self, text: str, status: int | None, code: str) -> int:
        synthetic: dict[str, Any] = {
            "type": "assistant",
            "message": {
                "id": new_uuid(),
                "container": None,
                "model": "<synthetic>",
                "role": "assistant",
                "stop_details": None,
                "stop_reason": "stop_sequence",
                "stop_sequence": "",
                "type": "message",
                "usage": ZERO_USAGE_SYNTHETIC,
                "content": [{"type": "text", "text": text}],
                "context_management": None,
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": new_uuid(),
            "error": code,
        }
        if status is not None:
            synthetic["request_id"] = "req_011" + uuid.uuid4().hex[:21]
        self.emit(synthetic)
        result: dict[str, Any] = {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "api_error_status": status,
            "duration_ms": self.elapsed_ms(),
            "duration_api_ms": self.api_ms,
            "num_turns": self.calls_done + 1,
            "result": text,
            "stop_reason": "stop_sequence",
            "session_id": self.session_id,
            "total_cost_usd": js_number(self.cost),
            "usage": result_usage(self.totals),
            "modelUsage": self.model_usage(),
            "permission_denials": [],
            "terminal_reason": "completed",
            "fast_mode_state": "off",
            "uuid": new_uuid(),
        }
        self.log.entry["outcome_detail"] = {"api_error_status": status, "error": code}
        return self.finish(result, text)

    def limit_result(self, subtype: str, num_turns: int, error: str) -> int:
        result: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "duration_ms": self.elapsed_ms(),
            "duration_api_ms": self.api_ms if subtype == "error_max_turns" else 0,
            "is_error": True,
            "num_turns": num_turns,
            "stop_reason": "tool_use",
            "session_id": self.session_id,
            "total_cost_usd": js_number(self.cost),
            # The real CLI reports zero usage (but filled modelUsage) when the budget stops it.
            "usage": result_usage(self.totals if subtype == "error_max_turns" else dict.fromkeys(self.totals, 0)),
            "modelUsage": self.model_usage(),
            "permission_denials": [],
        }
        if subtype == "error_max_turns":
            result["terminal_reason"] = "max_turns"
        result["fast_mode_state"] = "off"
        result["uuid"] = new_uuid()
        result["errors"] = [error]
        text = f"Error: {error}"
        return self.finish(result, text)

    def failure_kind(self) -> str | None:
        for kind in ("not_logged_in", "usage_limit", "rate_limit", "overloaded", "fail"):
            if kind in self.d:
                return kind
        if "api_error" in self.d:
            return "api_error"
        if "fail_times" in self.d:
            n = int(self.d["fail_times"] or 1)
            state_dir = os.environ.get("FAKE_CLAUDE_STATE_DIR")
            if not state_dir:
                raise CliExit(2, "fake_claude: [[fake:fail_times=N]] needs env FAKE_CLAUDE_STATE_DIR\n")
            key = self.d.get("key") or self.prompt
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
            count = bump_counter(os.path.join(state_dir, f"fail_times-{digest}.count"), n)
            self.log.entry["fail_times_count"] = count
            if count <= n:
                return self.d.get("fail_kind") or "fail"
        return None

    def run(self) -> int:
        first_sleep = float(self.d.get("sleep") or 0)
        kind = None if "hang" in self.d else self.failure_kind()
        if kind == "crash":  # fail_kind=crash: like [[fake:crash]], nothing on stdout
            time.sleep(first_sleep)
            raise CliExit(2, crash_trace(), outcome="crash")
        self.emit(self.init_line())
        if "hang" in self.d:
            while True:
                time.sleep(3600)
        if first_sleep > 0:
            time.sleep(first_sleep)
        if kind is not None:
            status: int | None
            if kind == "not_logged_in":
                return self.error_result("Not logged in · Please run /login", None, "authentication_failed")
            if kind == "usage_limit":
                if "resets_in" in self.d:  # the 1.0.x CLIs' form, the one that carries the exact reset
                    epoch = int(time.time() + float(self.d["resets_in"] or 0))
                    return self.error_result(f"Claude AI usage limit reached|{epoch}", 429, "rate_limit")
                return self.error_result("You've hit your session limit · resets 3pm (UTC)", 429, "rate_limit")
            status = {"rate_limit": 429, "overloaded": 529, "fail": 500}.get(kind)
            if status is None:
                status = int(self.d.get("api_error") or 500)
            text, code = api_error_text(status)
            return self.error_result(text, status, code)

        turns = max(1, int(self.d.get("turns") or 1))
        limit: int | None = None
        try:
            limit = int(self.opts["max_turns"]) if "max_turns" in self.opts else None
        except ValueError:
            limit = None  # the real CLI silently ignores a non-numeric --max-turns
        if "max_turns" in self.d:
            limit = limit if limit is not None else turns
            turns = max(turns, limit + 1)
        budget: float | None = None
        try:
            budget = float(self.opts["max_budget_usd"]) if "max_budget_usd" in self.opts else None
        except ValueError:
            budget = None
        stream_usage = self.d.get("stream_usage") or "start"
        turn_sleep = float(self.d.get("turn_sleep") or 0)
        per_call = self.per_call_usage()
        final_text = self.final_text()

        grows = int(self.d.get("grows") or 0)
        first_call = per_call
        for k in range(1, turns + 1):
            if limit is not None and k > limit:
                return self.limit_result("error_max_turns", k, f"Reached maximum number of turns ({limit})")
            if k > 1 and turn_sleep > 0:
                time.sleep(turn_sleep)
            if grows:  # each call sends the conversation so far: the last answer and tool result added
                per_call = dict(
                    first_call,
                    input_tokens=first_call["input_tokens"] + (k - 1) * (first_call["output_tokens"] + grows),
                )
            for key, v in per_call.items():
                self.totals[key] += v
            self.cost += call_cost(self.model, per_call)
            self.api_ms += 20 + int((first_sleep if k == 1 else turn_sleep) * 1000)
            self.calls_done = k
            if stream_usage == "cumulative":
                line_usage = dict(self.totals)
            elif stream_usage == "per_turn":
                line_usage = dict(per_call)
            else:
                line_usage = dict(per_call, output_tokens=1)
            msg_id = "msg_01" + uuid.uuid4().hex[:22]
            req_id = "req_011" + uuid.uuid4().hex[:21]
            if k == turns:
                self.emit(self.assistant_line(msg_id, req_id, {"type": "text", "text": final_text}, line_usage))
                break
            tool_id = "toolu_01" + uuid.uuid4().hex[:22]
            path = os.path.join(os.getcwd(), f"fake_turn_{k}.txt")
            working = {"type": "text", "text": f"Working (turn {k}/{turns})."}
            self.emit(self.assistant_line(msg_id, req_id, working, line_usage))
            self.emit(
                self.assistant_line(
                    msg_id,
                    req_id,
                    {"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": path}},
                    line_usage,
                )
            )
            content = f"turn {k}\n"
            self.emit(
                {
                    "type": "user",
                    "message": {
                        "role": "user",
                        "content": [{"tool_use_id": tool_id, "type": "tool_result", "content": f"1\tturn {k}\n2\t"}],
                    },
                    "parent_tool_use_id": None,
                    "session_id": self.session_id,
                    "uuid": new_uuid(),
                    "timestamp": iso_now(),
                    "tool_use_result": {
                        "type": "text",
                        "file": {"filePath": path, "content": content, "numLines": 2, "startLine": 1, "totalLines": 2},
                    },
                }
            )
            if budget is not None and self.cost >= budget:
                return self.limit_result(
                    "error_max_budget_usd", k + 1, f"Reached maximum budget (${fmt_number(budget)})"
                )

        dur = self.elapsed_ms()
        result: dict[str, Any] = {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "api_error_status": None,
            "duration_ms": dur,
            "duration_api_ms": self.api_ms,
            "ttft_ms": max(1, dur - 10),
            "ttft_stream_ms": max(1, dur - 12),
            "time_to_request_ms": max(1, dur - 30),
            "num_turns": turns,
            "result": final_text,
            "stop_reason": "end_turn",
            "session_id": self.session_id,
            "total_cost_usd": js_number(self.cost),
            "usage": result_usage(self.totals),
            "modelUsage": self.model_usage(),
            "permission_denials": [],
            "terminal_reason": "completed",
            "fast_mode_state": "off",
            "uuid": new_uuid(),
        }
        return self.finish(result, final_text)


def bump_counter(path: str, _limit: int) -> int:
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).strip()
        count = (int(raw) if raw else 0) + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(count).encode())
        return count
    finally:
        os.close(fd)


def crash_trace() -> str:
    return (
        "file:///$bunfs/root/claude:4120\n"
        "        let r = t.message.content.at(-1);\n"
        "                              ^\n"
        "TypeError: undefined is not an object (evaluating 't.message.content')\n"
        "      at processResponse (/$bunfs/root/claude:4120:31)\n"
        "      at async runLoop (/$bunfs/root/claude:5530:17)\n"
        "      at async main (/$bunfs/root/claude:9012:5)\n"
        "\n"
        "Bun v1.3.0 (Linux x64)\n"
    )


def spawn_children(directives: dict[str, str]) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = []
    for key, new_session in (("child", False), ("detached_child", True)):
        if key not in directives:
            continue
        import subprocess

        seconds = directives[key] or "3600"
        p = subprocess.Popen(
            ["sleep", seconds],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=new_session,
        )
        children.append({"pid": p.pid, "detached": new_session, "seconds": seconds})
    return children


HELP = (
    """Usage: claude [options] [command] [prompt]

Fake Claude Code (awoc tests) - print mode only.

Options:
"""
    + "\n".join(f"  {desc}" for desc in sorted({v[2] for v in OPTIONS.values()}))
    + "\n"
)


STDIN_WAIT_S = 3.0  # the real CLI (2.1.332) proceeds without a text stdin that stays empty this long


def read_prompt(positionals: list[str], messages: bool = False) -> tuple[str, str]:
    """The prompt: the argument and stdin, or (MESSAGES, --input-format stream-json) the text of
    the user messages on stdin, one JSON object a line; the real CLI waits for those as long as it takes."""
    arg = positionals[0] if positionals else ""
    data = ""
    if messages:
        return _user_messages(sys.stdin.buffer.read()), "stdin-messages"
    if not sys.stdin.isatty():
        import select

        if select.select([sys.stdin.buffer], [], [], STDIN_WAIT_S)[0]:
            data = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        else:
            sys.stderr.write(f"Warning: no stdin data received in {STDIN_WAIT_S:g}s, proceeding without it.\n")
    if arg and data:
        return f"{arg}\n{data}", "arg+stdin"
    if arg:
        return arg, "arg"
    return data, "stdin"


def _user_messages(raw: bytes) -> str:
    texts = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("type") != "user":
            raise CliExit(1, f"Error: expected a user message on stdin, got {line[:80]!r}\n")
        content = message["message"]["content"]
        texts.append(content if isinstance(content, str) else "".join(b.get("text", "") for b in content))
    return "\n".join(texts)


def main(argv: list[str], log: CallLog) -> int:
    opts, positionals = parse_args(argv)
    if opts.get("version"):
        raise CliExit(0, stdout=f"{VERSION} (Claude Code)\n")
    if opts.get("help"):
        raise CliExit(0, stdout=HELP)
    if not opts.get("print"):
        raise CliExit(2, "fake_claude: only print mode (-p/--print) is supported\n")
    fmt = opts.get("output_format", "text")
    if fmt == "stream-json" and not opts.get("verbose"):
        raise CliExit(1, "Error: When using --print, --output-format=stream-json requires --verbose\n")
    messages = opts.get("input_format") == "stream-json"
    if messages and fmt != "stream-json":
        raise CliExit(1, "Error: --input-format=stream-json requires output-format=stream-json.\n")
    if "session_id" in opts and not UUID_RE.match(opts["session_id"]):
        raise CliExit(1, "Error: Invalid session ID. Must be a valid UUID.\n")
    if opts.get("dangerously_skip_permissions") and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        raise CliExit(
            1, "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n"
        )
    prompt, source = read_prompt(positionals, messages)
    log.entry["prompt"] = prompt
    log.entry["prompt_source"] = source
    log.entry["prompt_sha256"] = hashlib.sha256(prompt.encode("utf-8", "surrogateescape")).hexdigest()
    if not prompt:
        raise CliExit(
            1, "Error: Input must be provided either through stdin or as a prompt argument when using --print\n"
        )

    directives = parse_directives(prompt, opts.get("system_prompt", ""), opts.get("append_system_prompt", ""))
    for k, v in env_directives().items():
        directives.setdefault(k, v)
    log.entry["directives"] = directives
    log.entry["output_format"] = fmt
    log.entry["model"] = resolve_model(opts.get("model"))

    if "ignore_sigterm" in directives:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.entry["children"] = spawn_children(directives)
    log.started()

    if "crash" in directives:
        time.sleep(float(directives.get("sleep") or 0))
        raise CliExit(2, crash_trace(), outcome="crash")
    session = Session(opts, prompt, directives, log)
    return session.run()


def _install_signal_logging(log: CallLog) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.finish(None, f"signal:{signal.Signals(signum).name}")
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)


def entry() -> NoReturn:
    argv = sys.argv[1:]
    log = CallLog(argv)
    _install_signal_logging(log)
    try:
        code = main(argv, log)
        outcome = "success" if code == 0 else "is_error"
    except CliExit as e:
        if e.stdout:
            sys.stdout.write(e.stdout)
            sys.stdout.flush()
        if e.stderr:
            sys.stderr.write(e.stderr)
            sys.stderr.flush()
        code = e.code
        outcome = e.outcome or ("cli_error" if code else "success")
    except BrokenPipeError:
        code, outcome = 1, "broken_pipe"
    log.finish(code, outcome)
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
