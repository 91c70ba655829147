"""Agent definitions: `.claude/agents/<agent>.md` from the working directory upward, then
`~/.claude/agents/`, then the built-in architect, docs-fetcher and workforce."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

# the files ship with the Claude Code integration (plugin and install use them too)
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "claude_code" / "builtin_agents"


@dataclass(frozen=True)
class AgentDefinition:
    """An agent: its role, tools, model and permissions, from its file or built in."""

    name: str
    description: str
    system_prompt: str
    tools: str | None = None  # comma-separated, as the claude CLI's --tools takes them
    model: str | None = None
    source: str = "generic"
    # what Claude Code's subagent frontmatter says the agent may do (None: the file does not say)
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    add_dirs: tuple[str, ...] | None = None


# frontmatter key -> AgentDefinition field, for the lists of permission rules
RULE_LISTS = {
    "allowedTools": "allowed_tools",
    "disallowedTools": "disallowed_tools",
    "additionalDirectories": "add_dirs",
}


def split_rules(text: str) -> tuple[str, ...]:
    """`Bash(git diff:*), Edit` -> its rules: commas inside a rule's parentheses do not split it."""
    rules, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth <= 0:
            rules.append(current)
            current, depth = "", 0
        else:
            current += char
    rules.append(current)
    return tuple(rule.strip().strip("'\"").strip() for rule in rules if rule.strip().strip("'\""))


def parse_agent_file(text: str, path: str) -> AgentDefinition | None:
    """Claude Code's subagent format: `---` frontmatter (name, description, tools, model,
    permissionMode, allowedTools, disallowedTools, additionalDirectories), then the body. Like
    Claude Code, a file without a name and description is not an agent definition."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    fields: dict[str, str] = {}
    last_key = None
    for line in text[3:end].splitlines():
        if line.strip().startswith("- ") and last_key:  # a YAML list item under the last key
            fields[last_key] = ", ".join(filter(None, [fields[last_key], line.strip()[2:].strip()]))
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith(" "):
            last_key = key.strip()
            fields[last_key] = value.strip().strip("[]").strip("'\"")
    if not fields.get("name") or not fields.get("description"):
        return None
    body = text[end + 4 :].lstrip("\n").rstrip() + "\n"
    tools = (
        ",".join(t.strip().strip("'\"") for t in fields["tools"].split(",") if t.strip())
        if fields.get("tools")
        else None
    )
    rule_lists = {field: split_rules(fields[key]) for key, field in RULE_LISTS.items() if key in fields}
    return AgentDefinition(
        fields["name"],
        fields["description"],
        body,
        tools,
        fields.get("model") or None,
        path,
        permission_mode=fields.get("permissionMode") or None,
        **rule_lists,
    )


def search_dirs(cwd: Path, home: Path) -> list[Path]:
    dirs = [parent / ".claude" / "agents" for parent in [cwd, *cwd.parents]]
    user = home / ".claude" / "agents"
    if user not in dirs:
        dirs.append(user)
    dirs.append(BUILTIN_DIR)
    return dirs


@cache
def _read_definition(path: Path) -> AgentDefinition | None:
    try:
        return parse_agent_file(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError):
        return None


def find_agent(name: str, cwd: Path, home: Path) -> AgentDefinition:
    for directory in search_dirs(cwd.resolve(), home):
        candidate = directory / f"{name}.md"
        if candidate.is_file():
            definition = _read_definition(candidate)
            if definition is not None:
                return definition
    return AgentDefinition(
        name,
        f"{name} agent",
        f"You are the {name} agent in a team of agents working in parallel on one goal. "
        "Work only on the task you are given and report the result concisely.\n",
    )


def known_agent_names(cwd: Path, home: Path) -> set[str]:
    """Every agent defined where `find_agent` looks."""
    names: set[str] = set()
    for directory in search_dirs(cwd.resolve(), home):
        try:
            names.update(p.stem for p in directory.glob("*.md"))
        except OSError:
            continue
    return names


def misspelled_agent_warnings(agents: list[str], cwd: Path, home: Path) -> list[str]:
    """A warning for each agent that is defined nowhere but is close to one that is."""
    known = known_agent_names(cwd, home)
    unknown = [name for name in dict.fromkeys(agents) if name not in known]
    if not unknown:
        return []
    import difflib  # only when some name is unknown: validation runs at every start

    warnings = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        if close:
            warnings.append(
                f'agent "{name}" is defined nowhere (it would run with a generic role): did you mean "{close[0]}"?'
            )
    return warnings
