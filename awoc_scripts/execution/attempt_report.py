"""What an attempt reports: the tokens it used (counted per turn while it runs, from stream-json)
and its outcome, as the run machine reads them. The claude CLI's protocol that produces them is
claude_cli.py; this module stays light, for the machine and the levers that load it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from awoc_scripts.plan_types import JsonObject
    from awoc_scripts.run_documents import TokenCounts

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
# more than any one agent session can use: a number past these is a report that cannot be true
MAX_PLAUSIBLE_TOKENS = 100_000_000
MAX_PLAUSIBLE_COST_USD = 100_000.0


def count_of(value: Any) -> int | None:
    """VALUE as a token count, or None when it is none (missing, not a whole number, negative, absurd)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or not 0 <= value <= MAX_PLAUSIBLE_TOKENS or int(value) != value:
        return None
    return int(value)


@dataclass
class Tokens:
    """Tokens an attempt used, as the API counts them."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_creation

    @property
    def prompt(self) -> int:
        """The size of the request these tokens answer: everything sent, cached or not."""
        return self.input + self.cache_read + self.cache_creation

    def as_dict(self) -> TokenCounts:
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_creation": self.cache_creation,
            "total": self.total,
        }

    @classmethod
    def from_usage(cls, usage: Mapping[str, Any] | None) -> Tokens:
        """The counts of an API usage object; a count that is no plausible number counts 0
        (usage_problem says which, where it matters)."""
        usage = usage if isinstance(usage, Mapping) else {}
        return cls(*(count_of(usage.get(key)) or 0 for key in USAGE_KEYS))

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_creation + other.cache_creation,
        )


@dataclass
class Outcome:
    """What an attempt's output says: whether it worked, its result, tokens and cost."""

    ok: bool
    result: str
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: float | None = None
    error: str | None = None
    transient: bool = False  # rate limit or overload: wait and retry, not a failure
    session_id: str | None = None  # the agent CLI's session (Claude Code keys sessions by working directory)
    money_cap_reached: bool = False  # the CLI stopped at --max-budget-usd
    usage_limit: bool = False  # a subscription's usage limit: the whole run pauses
    resets_at: float | None = None  # when that limit resets (Unix time), if the text says
    denials: list[dict[str, str]] = field(default_factory=list)  # refused tool calls: {"tool", "input"}
    # calls whose sandbox failed to start them and that the agent never ran again: {"tool", "input", "error"}
    unrun: list[dict[str, str]] = field(default_factory=list)
    rerun_after_sandbox_failure: int = 0  # such calls the agent did run again, with success


def stream_messages(lines: Iterable[bytes], marker: bytes) -> Iterator[tuple[JsonObject, JsonObject]]:
    """(line object, its message) of each stream-json line holding MARKER (the others are not parsed)."""
    for line in lines:
        if marker not in line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        message = obj.get("message") if isinstance(obj, dict) else None
        if isinstance(message, dict):
            yield obj, message


def describe_denials(denials: list[dict[str, str]]) -> str:
    shown = [f"{d['tool']}({d['input']})" if d["input"] else d["tool"] for d in denials[:5]]
    more = f" and {len(denials) - 5} more" if len(denials) > 5 else ""
    return ", ".join(shown) + more


class TurnCounter:
    """Tokens so far from a stream-json stdout, read as it grows (one usage per message id), and
    how many of them count against the task's token budget (see `counted`)."""

    def __init__(self) -> None:
        self._partial = b""
        self._by_message: dict[str, Tokens] = {}
        # per conversation (the agent's own, or a subagent's: its parent_tool_use_id), in order:
        # the prompt of its first request and of its last
        self._prompts: dict[str, tuple[int, int]] = {}
        self.offset = 0

    def feed(self, data: bytes) -> Tokens:
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for obj, message in stream_messages(lines, b'"assistant"'):
            if obj.get("type") == "assistant" and message.get("usage"):
                tokens = Tokens.from_usage(message["usage"])
                self._by_message[str(message.get("id") or len(self._by_message))] = tokens
                conversation = str(obj.get("parent_tool_use_id") or "")
                first = self._prompts.get(conversation, (tokens.prompt, 0))[0]
                self._prompts[conversation] = (first, tokens.prompt)
        return self.total()

    def total(self) -> Tokens:
        total = Tokens()
        for tokens in self._by_message.values():
            total = total + tokens
        return total

    def counted(self, output: int = 0) -> int:
        """The tokens that count against the task's budget: what it wrote (OUTPUT when its final
        report says more than the stream: the stream shows each answer's size before it was
        written), and what each of its conversations grew by from its first request to its last
        (tool calls and their results, earlier answers). Not the prompt each request sends again:
        the CLI's own system prompt and tools alone come to over 10,000 tokens a request, more
        than most budgets, and most of them are cache reads."""
        grown = sum(max(0, last - first) for first, last in self._prompts.values())
        return grown + max(output, self.total().output)
