"""The arguments of `/delegate-parallel` (and `validate`, `run`) to one config document.

Three forms: a config file (or `-`, or JSON text), inline `"agent:description"` tasks, and
inline tasks with `--priority=LEVEL` switching the priority of the tasks that follow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import InputError
from awoc_scripts.input.documents import load_document, looks_like_json_text

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from awoc_scripts.plan_types import JsonObject

PRIORITIES = ("critical", "high", "medium", "low")
_TASK_PREFIX = re.compile(r"^tasks\[\d+\](?=$|[.\[])")
RESEARCH_AGENT = "docs-fetcher"


def _whole_number(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{flag}: expected a whole number, got {text!r}") from None


def _seconds(flag: str, text: str) -> int | float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise InputError(f"{flag}: expected a number of seconds, got {text!r}") from None
    return int(value) if value.is_integer() else value


def _text(flag: str, text: str) -> str:
    return text


# flag -> (parallel_config key, value parser)
CONFIG_FLAGS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "--max-parallel": ("max_concurrent", _whole_number),
    "--timeout": ("total_timeout", _seconds),
    "--format": ("result_format", _text),
    "--total-budget": ("total_token_budget", _whole_number),
    "--failure-tolerance": ("failure_tolerance", _whole_number),
    "--batch-token-limit": ("batch_token_limit", _whole_number),
    "--retries": ("retries", _whole_number),
    "--isolation": ("isolation", _text),
}
# switches that set a parallel_config value, for inline tasks and config files alike (a dotted
# key sets a value inside one of its objects)
CONFIG_SWITCHES = {"--keep-worktrees": "keep_worktrees", "--merge": "merge.auto", "--cache": "cache"}
INLINE_FLAGS_WITH_VALUE = ("--priority", "--for-each")
INLINE_SWITCHES = ("--then", "--wait-for-research")
KNOWN_FLAGS = (*CONFIG_FLAGS, *CONFIG_SWITCHES, *INLINE_FLAGS_WITH_VALUE, *INLINE_SWITCHES)


@dataclass
class Request:
    """A config, from a file or from inline tasks, with how to name its parts to the user."""

    config: JsonObject
    source: str  # the config's name in messages, or "inline tasks"
    # json path prefix -> how to name it to the user (`tasks[1]` -> `task 2 "architect:x"`)
    path_names: dict[str, str] = field(default_factory=dict)
    inline: bool = False

    def describe_path(self, path: str) -> str:
        task = _TASK_PREFIX.match(path)
        if task and task.group() in self.path_names:  # one look-up: a fan-out names 100,000 of them
            return self.path_names[task.group()] + path[task.end() :]
        for prefix, name in self.path_names.items():
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                return name + path[len(prefix) :]
        return path


@dataclass
class _Arguments:
    """What the arguments said so far, read left to right."""

    overrides: JsonObject = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    tasks: list[JsonObject] = field(default_factory=list)
    arg_of_task: list[str] = field(default_factory=list)
    inline_flags_used: list[str] = field(default_factory=list)
    config_flags_used: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  # what every following inline task depends on
    priority: str | None = None
    for_each: str | None = None  # --for-each=GLOB: the next inline task becomes one task per file
    research_wait_from: int | None = None  # tasks from this index on (but research) wait for research
    counts: dict[str, int] = field(default_factory=dict)


def parse_request(args: Sequence[str]) -> Request:
    for n, arg in enumerate(args, 1):
        if "\x00" in arg:  # not on a real command line, but text split from stdin can hold one
            raise InputError(f"argument {n}: contains a NUL character")
    parsed = _Arguments()
    only_positional = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not only_positional and arg == "--":
            only_positional = True
        elif not only_positional and arg.startswith("--"):
            i = _flag(parsed, arg, args, i)
        elif _is_document(arg):
            parsed.documents.append(arg)
        else:
            _inline_task(parsed, arg)
    return _request(parsed)


def _flag(parsed: _Arguments, arg: str, args: Sequence[str], i: int) -> int:
    """One --flag (its value the next argument, unless given with =); returns where reading goes on."""
    name, has_value, value = arg.partition("=")
    if name not in KNOWN_FLAGS:
        raise InputError(f"unknown option {name!r}{_did_you_mean(name)} (known: {', '.join(KNOWN_FLAGS)})")
    if name in CONFIG_SWITCHES or name in INLINE_SWITCHES:
        if has_value:
            raise InputError(f"{name} takes no value")
        _switch(parsed, name)
        return i
    if not has_value:
        if i >= len(args):
            raise InputError(f"{name} needs a value ({name}=VALUE or {name} VALUE)")
        value = args[i]
        i += 1
    if name == "--for-each":
        if not value:
            raise InputError("--for-each needs a glob, e.g. --for-each='src/**/*.py'")
        parsed.for_each = value
        parsed.inline_flags_used.append(name)
    elif name == "--priority":
        if value not in PRIORITIES:
            raise InputError(f"--priority: {value!r} is not one of {', '.join(PRIORITIES)}")
        parsed.priority = value
        parsed.inline_flags_used.append(name)
    else:
        key, parse = CONFIG_FLAGS[name]
        parsed.overrides[key] = parse(name, value)
        parsed.config_flags_used.append(name)
    return i


def _switch(parsed: _Arguments, name: str) -> None:
    if name in CONFIG_SWITCHES:
        key, _, inner = CONFIG_SWITCHES[name].partition(".")
        parsed.overrides[key] = {**parsed.overrides.get(key, {}), inner: True} if inner else True
        return
    parsed.inline_flags_used.append(name)
    if name == "--then":
        parsed.waits = list(dict.fromkeys([*parsed.waits, *parsed.ids]))
    elif parsed.research_wait_from is None:
        parsed.research_wait_from = len(parsed.tasks)


def _inline_task(parsed: _Arguments, arg: str) -> None:
    agent, _, description = arg.partition(":")
    parsed.counts[agent] = parsed.counts.get(agent, 0) + 1
    # no task_id: normalization gives the same default id, `<agent>-<n>`, that --then uses
    task: JsonObject = {"agent": agent, "description": description}
    parsed.ids.append(default_task_id(agent, parsed.counts[agent]))
    if parsed.priority:
        task["priority"] = parsed.priority
    if parsed.for_each is not None:  # the next task only
        task["for_each"] = {"glob": parsed.for_each}
        parsed.for_each = None
    if parsed.waits:
        task["dependencies"] = list(parsed.waits)
    parsed.tasks.append(task)
    parsed.arg_of_task.append(arg)


def _request(parsed: _Arguments) -> Request:
    if parsed.for_each is not None:
        raise InputError("--for-each applies to the agent:task after it, and none follows")
    if parsed.documents and parsed.tasks:
        raise InputError("give either one config file or inline agent:description tasks, not both")
    if len(parsed.documents) > 1:
        raise InputError(f"expected one config file, got {len(parsed.documents)}: {', '.join(parsed.documents)}")
    flag_paths = {f"parallel_config.{CONFIG_FLAGS[flag][0]}": flag for flag in parsed.config_flags_used}
    if parsed.documents:
        if parsed.inline_flags_used:
            raise InputError(f"{parsed.inline_flags_used[0]} applies to inline tasks, not to a config file")
        return _config_request(parsed.documents[0], parsed.overrides, flag_paths)
    if not parsed.tasks:
        raise InputError('no tasks given: pass a config file or "agent:description" arguments')
    if parsed.research_wait_from is not None:
        _wait_for_research(parsed.tasks, parsed.ids, parsed.research_wait_from)
    config: JsonObject = {"tasks": parsed.tasks}
    if parsed.overrides:
        config["parallel_config"] = parsed.overrides
    path_names = {f"tasks[{n}]": f"task {n + 1} {arg!r}" for n, arg in enumerate(parsed.arg_of_task)}
    return Request(config, "inline tasks", {**path_names, **flag_paths}, inline=True)


def _did_you_mean(flag: str) -> str:
    import difflib

    close = difflib.get_close_matches(flag, KNOWN_FLAGS, n=1, cutoff=0.6)
    return f": did you mean {close[0]}?" if close else ""


def _is_document(arg: str) -> bool:
    return arg == "-" or looks_like_json_text(arg) or ":" not in arg or os.path.isfile(arg)


def _config_request(doc_arg: str, overrides: JsonObject, flag_paths: dict[str, str]) -> Request:
    doc = load_document(doc_arg, what="config")
    config = doc.data
    if not isinstance(config, dict):
        kind = "a list" if isinstance(config, list) else type(config).__name__
        raise InputError(f'{doc.source}: expected a JSON object with a "tasks" list, got {kind}')
    if overrides:
        base = config.get("parallel_config")
        merged = {**(base if isinstance(base, dict) else {})}
        for key, value in overrides.items():
            given = merged.get(key)
            merged[key] = {**given, **value} if isinstance(value, dict) and isinstance(given, dict) else value
        config["parallel_config"] = merged
    return Request(config, doc.source, flag_paths)


def default_task_id(agent: str, n: int) -> str:
    return f"{agent}-{n}"


def _wait_for_research(tasks: list[JsonObject], ids: list[str], start: int) -> None:
    """--wait-for-research: every task after it that is not research waits for every research
    (docs-fetcher) task of the request, before the flag or after it."""
    research = [tid for t, tid in zip(tasks, ids, strict=True) if t["agent"] == RESEARCH_AGENT]
    if not research:
        raise InputError(
            f"--wait-for-research: no {RESEARCH_AGENT} task to wait for (research tasks are {RESEARCH_AGENT}:...)"
        )
    for task in tasks[start:]:
        if task["agent"] != RESEARCH_AGENT:
            task["dependencies"] = list(dict.fromkeys([*task.get("dependencies", []), *research]))
