"""A fake model for the real `claude` CLI that plays both sides of `/delegate-parallel`.

- The outer session (the user's Claude Code, running the slash command): it obeys the command's
  text. It reads the commands that `prepare` listed (START, WAIT, REPORT), starts the run with
  the Bash tool in the background, runs WAIT until it says the run has ended, runs REPORT, and
  answers with the report. When the text says the request was refused, it answers with that.
- The run's tasks (`claude -p` processes that awoc starts): each answers `RESULT-OF-<task id>`,
  and the prompt it was given is kept for the test to check.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

from fake_messages_api import Reply
from tool_model import ToolModel, tool_results

TASK_HEADING = re.compile(r"^# Task (\S+) \(", re.MULTILINE)
LISTED_COMMAND = re.compile(r"^- (START|WAIT|REPORT|MERGE-DRY-RUN)\b[^`]*`([^`]+)`", re.MULTILINE)
FINAL_PREFIX = "FINAL ANSWER FROM THE OUTER SESSION"
REFUSED_PREFIX = "REFUSED, AS THE COMMAND SAID"
MAX_WAITS = 20
TASK_USAGE = {"input_tokens": 900, "output_tokens": 100}


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, dict))


class OuterSession:
    def __init__(self, command_name: str = "delegate-parallel", tools: ToolModel | None = None) -> None:
        self.command_name = command_name
        self.tools = tools  # plays the tasks whose prompt holds a tool script
        self.lock = threading.Lock()
        self.task_prompts: dict[str, list[str]] = {}
        self.outer_calls = 0
        self.command_text = ""  # what the outer session was given: the command with its shell step's output
        self.unexpected: list[str] = []

    def respond(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages", [])
        user_text = "\n".join(t for m in messages if m.get("role") == "user" for t in _texts(m))
        if f"<command-name>/{self.command_name}</command-name>" in user_text:
            with self.lock:
                self.outer_calls += 1
                self.command_text = user_text
            return self._outer(messages, user_text)
        task = TASK_HEADING.search(user_text)
        if task:
            if self.tools is not None and self.tools.handles(body):
                if not tool_results(body):
                    with self.lock:
                        self.task_prompts.setdefault(task.group(1), []).append(user_text)
                return self.tools.respond(body)
            with self.lock:
                self.task_prompts.setdefault(task.group(1), []).append(user_text)
            # a small fixed usage: the CLI's own system prompt is large and differs between versions
            return Reply(f"RESULT-OF-{task.group(1)}", TASK_USAGE)
        with self.lock:
            self.unexpected.append(user_text[:2000])
        return Reply("UNEXPECTED CALL")

    def _outer(self, messages: list[dict[str, Any]], user_text: str) -> Reply:
        listed = dict(LISTED_COMMAND.findall(user_text))
        if "START" not in listed:
            return Reply(f"{REFUSED_PREFIX}:\n{user_text}")
        steps = self._steps(messages)  # (command, its output) so far, in order
        if not steps:
            return self._bash(listed["START"], background=True)
        command, output = steps[-1]
        waits = sum(1 for c, _ in steps if c == listed["WAIT"])
        if command == listed["REPORT"] and "MERGE-DRY-RUN" in listed:
            return self._bash(listed["MERGE-DRY-RUN"])  # the command says: offer the merge
        if command == listed["REPORT"]:
            return Reply(f"{FINAL_PREFIX}\n{output}")
        if command == listed.get("MERGE-DRY-RUN"):
            return Reply(f"{FINAL_PREFIX}\n{steps[-2][1]}\n{output}")
        if command == listed["WAIT"] and "has ended" in output:
            return self._bash(listed["REPORT"])
        if waits >= MAX_WAITS:
            return Reply(f"{FINAL_PREFIX}: gave up waiting\n{output}")
        return self._bash(listed["WAIT"])

    @staticmethod
    def _steps(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
        commands: dict[str, str] = {}
        steps = []
        for message in messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_use":
                    commands[block["id"]] = block.get("input", {}).get("command", "")
                elif block.get("type") == "tool_result" and block.get("tool_use_id") in commands:
                    steps.append((commands[block["tool_use_id"]], _tool_result_text(block)))
        return steps

    @staticmethod
    def _bash(command: str, background: bool = False) -> Reply:
        tool_input: dict[str, Any] = {"command": command, "description": "awoc"}
        if background:
            tool_input["run_in_background"] = True
        return Reply(
            content=[{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": "Bash", "input": tool_input}],
            stop_reason="tool_use",
        )
