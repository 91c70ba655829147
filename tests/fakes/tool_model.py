"""A fake model that calls tools: it plays the script written in the task's own prompt.

A task description holds a line ``TOOL-SCRIPT: [...]``, a JSON list of tool calls
(``{"tool": "Write", "input": {"file_path": "{cwd}/hello.txt", "content": "hi"}}``). The model
answers the first request with the first call, the request carrying one tool result with the
second, and so on; then it answers ``DONE-<task id>`` with what each tool answered, so a test can
see what the agent's tools did. ``{cwd}`` is the working directory the CLI tells the model it is in.

    api = FakeMessagesAPI(ToolModel().respond)
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

from fake_messages_api import Reply

SCRIPT_LINE = re.compile(r"^TOOL-SCRIPT: (\[.*\])\s*$", re.MULTILINE)
TASK_HEADING = re.compile(r"^# Task (\S+) \(", re.MULTILINE)
WORKING_DIRECTORY = re.compile(r"Primary working directory: ([^\s\\\"]+)")
USAGE = {"input_tokens": 900, "output_tokens": 100}


def script_line(calls: list[dict[str, Any]]) -> str:
    """The line that makes a task's agent call CALLS in order."""
    return "TOOL-SCRIPT: " + json.dumps(calls)


def _user_text(body: dict[str, Any]) -> str:
    texts = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        texts += [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(texts)


def tool_results(body: dict[str, Any]) -> list[tuple[bool, str]]:
    """(is_error, text) of each tool result the request carries, in order."""
    out = []
    for message in body.get("messages", []):
        if message.get("role") != "user" or not isinstance(message.get("content"), list):
            continue
        for block in message["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                text = content if isinstance(content, str) else json.dumps(content)
                out.append((bool(block.get("is_error")), text))
    return out


def working_directory(body: dict[str, Any]) -> str:
    found = WORKING_DIRECTORY.search(json.dumps(body))
    return found.group(1) if found else ""


class ToolModel:
    def __init__(self, usage: dict[str, int] | None = USAGE) -> None:
        """USAGE: what each answer says it used; None: the size of the request, as the API counts
        it (the CLI's own system prompt and tools included: over 10,000 tokens a request)."""
        self.usage = usage
        self.lock = threading.Lock()
        self.calls: dict[str, list[dict[str, Any]]] = {}  # task id -> the tool calls made
        self.finals: dict[str, list[str]] = {}  # task id -> the final answer of each attempt
        self.prompts: dict[str, list[str]] = {}  # task id -> the prompt of each attempt

    def handles(self, body: dict[str, Any]) -> bool:
        return SCRIPT_LINE.search(_user_text(body)) is not None

    def respond(self, body: dict[str, Any]) -> Reply:
        text = _user_text(body)
        script = SCRIPT_LINE.search(text)
        heading = TASK_HEADING.search(text)
        task = heading.group(1) if heading else "?"
        if script is None:
            return Reply(f"DONE-{task}: no tool script", self.usage)
        steps = json.loads(script.group(1))
        results = tool_results(body)
        if not results:
            with self.lock:
                self.prompts.setdefault(task, []).append(text)
        if len(results) < len(steps):
            step = steps[len(results)]
            cwd = working_directory(body)
            tool_input = json.loads(json.dumps(step["input"]).replace("{cwd}", cwd))
            with self.lock:
                self.calls.setdefault(task, []).append({"tool": step["tool"], "input": tool_input})
            call_id = "toolu_" + uuid.uuid4().hex[:24]
            block = {"type": "tool_use", "id": call_id, "name": step["tool"], "input": tool_input}
            return Reply(content=[block], stop_reason="tool_use", usage=self.usage)
        final = f"DONE-{task}: " + " | ".join(("ERROR " if err else "OK ") + out[:200] for err, out in results)
        with self.lock:
            self.finals.setdefault(task, []).append(final)
        return Reply(final, self.usage)
