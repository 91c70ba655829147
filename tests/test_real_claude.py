"""Integration: the real, pinned `claude` CLI against the fake Messages API, driven by awoc.

The CLI is `@anthropic-ai/claude-code` as pinned in package.json, at node_modules/.bin/claude;
if it is missing (or another version), the set-up runs `npm install`. The test is skipped only
when npm is not available; a failing install fails it.

One 3-task run (research -> design, and an independent build that takes two model turns with a
real Read tool call), checked against what the server saw and what it reported: system prompts,
models, the dependency's result in the dependent's prompt, tokens and cost in report.json, and
awoc's per-turn stream-json token counting while a task runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import FAKES, claude_facts

sys.path.insert(0, str(FAKES))

from fake_messages_api import FakeMessagesAPI, Reply

from awoc_scripts.execution.attempt_report import Tokens, TurnCounter
from awoc_scripts.execution.display import PlainDisplay
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.flow.prepare import prepare_run
from awoc_scripts.flow.runs import execute_run
from awoc_scripts.input.agents import find_agent
from awoc_scripts.state.store import StateStore

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

FACTS = claude_facts()
PRICES = FACTS.prices
# What the agent definitions ask for (--model sonnet / haiku), as the CLI sends it
MODELS = {"research": FACTS.models["haiku"], "design": FACTS.models["sonnet"], "build": FACTS.models["sonnet"]}
AGENTS = {"research": "docs-fetcher", "design": "architect", "build": "workforce"}

# Server-reported usage per call. Cache reads are multiples of 10 and cache writes of 4, so every
# call costs a whole number of micro-dollars: report.json rounds the run's cost to 6 decimals.
USAGE = {
    "research": {
        "input_tokens": 1200,
        "output_tokens": 150,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 80,
    },
    "design": {
        "input_tokens": 2100,
        "output_tokens": 320,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 160,
    },
    # build, turn 1: text + a Read tool call; turn 2 (after the tool result): the answer
    "build-1": {
        "input_tokens": 1900,
        "output_tokens": 40,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 100,
    },
    "build-2": {
        "input_tokens": 700,
        "output_tokens": 60,
        "cache_read_input_tokens": 200,
        "cache_creation_input_tokens": 40,
    },
}
# build's budget is over its true usage (4040) and over what the stream shows after turn 1 (3001),
# but not over turn 1 counted once per content block (2 x 3001): the totals read while it runs
# must count each message once. (Its budget itself counts less: what it wrote and added.)
BUILD_BUDGET = 5000
TURN_2_DELAY_S = 1.2  # the CLI waits for turn 2 while awoc reads turn 1's stream-json lines
NOTES = "NOTES-CONTENT-7f3a"

TASK_HEADING = re.compile(r"^# Task (\S+) \(", re.MULTILINE)


def _user_texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]


def _task_of(body: dict[str, Any]) -> str | None:
    first_user = next((m for m in body.get("messages", []) if m.get("role") == "user"), None)
    if first_user is None:
        return None
    found = TASK_HEADING.search("\n".join(_user_texts(first_user)))
    return found.group(1) if found else None


def _prompt_of(body: dict[str, Any]) -> str:
    """awoc's prompt: the user text block that holds the task heading (not the <system-reminder>)."""
    first_user = next(m for m in body["messages"] if m.get("role") == "user")
    return next(t for t in _user_texts(first_user) if TASK_HEADING.search(t))


def _has_tool_result(body: dict[str, Any]) -> bool:
    return any(
        isinstance(b, dict) and b.get("type") == "tool_result"
        for m in body.get("messages", [])
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for b in m["content"]
    )


def _cost(model: str, usage: dict[str, int]) -> float:
    p_in, p_out, p_read, p_write = PRICES[model]
    return (
        usage["input_tokens"] * p_in / 1e6
        + usage["output_tokens"] * p_out / 1e6
        + usage["cache_read_input_tokens"] * p_read / 1e6
        + usage["cache_creation_input_tokens"] * p_write / 1e6
    )


class Server:
    """The fake API with a responder that answers per task and records what it reported."""

    def __init__(self, notes_file: Path) -> None:
        self.notes_file = notes_file
        self.lock = threading.Lock()
        self.served: list[dict[str, Any]] = []  # one entry per /v1/messages call: task, model, usage, body
        self.api = FakeMessagesAPI(self.respond)

    def respond(self, body: dict[str, Any]) -> Reply:
        task = _task_of(body)
        if task == "build" and not _has_tool_result(body):
            key = "build-1"
            reply = Reply(
                content=[
                    {"type": "text", "text": "Reading the notes first."},
                    {
                        "type": "tool_use",
                        "id": "toolu_" + uuid.uuid4().hex[:24],
                        "name": "Read",
                        "input": {"file_path": str(self.notes_file)},
                    },
                ],
                usage=USAGE["build-1"],
                stop_reason="tool_use",
            )
        elif task == "build":
            key = "build-2"
            reply = Reply(f"RESULT-OF-{task}", USAGE[key], delay=TURN_2_DELAY_S)
        elif task in USAGE:
            key = task
            reply = Reply(f"RESULT-OF-{task}", USAGE[key])
        else:  # not one of ours: recorded, and the checks below fail on it
            key = None
            reply = Reply("UNEXPECTED", {"input_tokens": 1, "output_tokens": 1})
        with self.lock:
            self.served.append(
                {"task": task, "call": key, "model": body.get("model"), "usage": reply.usage, "body": body}
            )
        return reply


@pytest.fixture
def server(isolated: Path) -> Any:
    notes = isolated / "work" / "notes.txt"
    notes.write_text(NOTES + "\n")
    srv = Server(notes)
    with srv.api:
        yield srv


@pytest.fixture
def real_claude_env(claude_bin: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE")) or name in ("AWOC_AGENT_COMMAND",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
    monkeypatch.setenv("DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")
    monkeypatch.setenv("AWOC_CLAUDE_BIN", str(claude_bin))


class RecordingCounter(TurnCounter):
    """awoc's TurnCounter, recording every total it reports while tasks run."""

    seen: list[Tokens]

    def feed(self, data: bytes) -> Tokens:
        total = super().feed(data)
        RecordingCounter.seen.append(total)
        return total


def _stream_usages(stdout: bytes) -> list[tuple[str, dict[str, int]]]:
    out = []
    for line in stdout.splitlines():
        obj = orjson.loads(line) if line.strip().startswith(b"{") else None
        if isinstance(obj, dict) and obj.get("type") == "assistant":
            out.append((obj["message"]["id"], obj["message"]["usage"]))
    return out


@pytest.mark.usefixtures("real_claude_env")
def test_real_claude_three_tasks_with_a_dependency(
    server: Server, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    RecordingCounter.seen = []
    monkeypatch.setattr("awoc_scripts.execution.task_record.TurnCounter", RecordingCounter)
    config = {
        "parallel_config": {
            "max_concurrent": 2,
            "total_token_budget": 100000,
            "batch_token_limit": 100000,
            "total_timeout": 180,
            "failure_tolerance": 0,
            "retries": 0,
        },
        "tasks": [
            {"task_id": "research", "agent": "docs-fetcher", "description": "Collect the facts.", "token_budget": 8000},
            {
                "task_id": "design",
                "agent": "architect",
                "description": "Design it from the research.",
                "token_budget": 8000,
                "dependencies": ["research"],
            },
            {
                "task_id": "build",
                "agent": "workforce",
                "description": "Build it; read notes.txt first.",
                "token_budget": BUILD_BUDGET,
            },
        ],
    }
    run, plan, execution = prepare_run(StateStore(), [orjson.dumps(config).decode()])
    code, summary = execute_run(run, plan, execution, LocalExecutor(grace_s=0.5), PlainDisplay(quiet=True))
    stderr_logs = {
        t: run.task_files(t).stderr.read_text(errors="replace")[-2000:]
        for t in AGENTS
        if run.task_files(t).stderr.exists()
    }
    assert code == 0, (summary, stderr_logs)

    # -- what reached the API ------------------------------------------------------------------
    messages_requests = server.api.messages_requests
    assert len(messages_requests) == len(server.served) == 4, [s["task"] for s in server.served]
    assert [s["call"] for s in server.served if s["task"] == "build"] == ["build-1", "build-2"]
    assert sorted(s["call"] for s in server.served) == sorted(USAGE), "a call that belongs to no task"
    home = isolated / "home"
    for served in server.served:
        task, body = served["task"], served["body"]
        assert body["model"] == MODELS[task], (task, body["model"])
        system = "\n".join(b["text"] for b in body["system"])
        own = find_agent(AGENTS[task], Path.cwd(), home).system_prompt.strip()
        assert own in body["system"][-1]["text"], f"{task}: its agent's system prompt is not in the request"
        for other_task, other_agent in AGENTS.items():
            if other_agent != AGENTS[task]:
                assert find_agent(other_agent, Path.cwd(), home).system_prompt.strip() not in system, (task, other_task)
        # --exclude-dynamic-system-prompt-sections: the working directory stays out of the system prompt
        assert str(isolated / "work") not in system, task
        assert f"# Task {task} (" in _prompt_of(body)
    design = next(s["body"] for s in server.served if s["task"] == "design")
    assert "RESULT-OF-research" in _prompt_of(design)
    research = next(s["body"] for s in server.served if s["task"] == "research")
    assert "RESULT-OF-" not in json.dumps(research["messages"])
    # the Read tool really ran: turn 2 carries the file's content as a tool result
    build_2 = next(s["body"] for s in server.served if s["call"] == "build-2")
    assert NOTES in json.dumps(build_2["messages"])

    # -- tokens and cost -------------------------------------------------------------------------
    per_task: dict[str, Tokens] = defaultdict(Tokens)
    cost_by_task: dict[str, float] = defaultdict(float)
    for served in server.served:
        per_task[served["task"]] = per_task[served["task"]] + Tokens.from_usage(served["usage"])
        cost_by_task[served["task"]] += _cost(served["model"], served["usage"])
    server_total = sum(t.total for t in per_task.values())
    server_cost = sum(cost_by_task.values())

    report = orjson.loads(run.report_json_file.read_bytes())
    usage = report["resource_usage"]
    assert usage["total_tokens"] == server_total == 9_350
    assert usage["tokens_by_kind"] == {
        "input": sum(t.input for t in per_task.values()),
        "output": sum(t.output for t in per_task.values()),
        "cache_read": sum(t.cache_read for t in per_task.values()),
        "cache_creation": sum(t.cache_creation for t in per_task.values()),
    }
    rows = {r["task_id"]: r for r in report["task_results"]}
    assert {t: r["status"] for t, r in rows.items()} == dict.fromkeys(AGENTS, "succeeded")
    assert {t: r["result"] for t, r in rows.items()} == {t: f"RESULT-OF-{t}" for t in AGENTS}
    for task in AGENTS:
        assert rows[task]["tokens_used"] == per_task[task].total, task
        result = orjson.loads((run.dir / "tasks" / task / "result.json").read_bytes())
        assert result["tokens_used"] == per_task[task].as_dict(), task
        assert abs(rows[task]["cost_usd"] - cost_by_task[task]) < 1e-9, (task, rows[task]["cost_usd"])

    # the CLI computes the cost itself: its total_cost_usd over the tasks is what the report says
    cli_costs = {}
    for task in AGENTS:
        final = orjson.loads(run.task_files(task).stdout.read_bytes().splitlines()[-1])
        assert final["type"] == "result" and not final["is_error"], final
        cli_costs[task] = final["total_cost_usd"]
    assert abs(sum(cli_costs.values()) - usage["cost_usd"]) < 1e-9, (cli_costs, usage["cost_usd"])
    assert abs(usage["cost_usd"] - server_cost) < 1e-9, (usage["cost_usd"], server_cost)

    # -- per-turn token counting with the real stream-json lines ---------------------------------
    # turn 1 of build printed one assistant line per content block, with the same id and usage
    lines = _stream_usages(run.task_files("build").stdout.read_bytes())
    assert len(lines) == 3 and lines[0][0] == lines[1][0] != lines[2][0], [i for i, _ in lines]
    turn_1 = Tokens.from_usage(lines[0][1])
    assert turn_1.total == 3001  # input and cache tokens of the call, output_tokens 1 at its start
    # awoc read turn 1 while turn 2 was pending, counted it once, and let the task run on
    assert turn_1 in RecordingCounter.seen, RecordingCounter.seen
    assert max(t.total for t in RecordingCounter.seen) <= BUILD_BUDGET
    assert rows["build"]["token_budget"] == BUILD_BUDGET
    build_result = orjson.loads((run.dir / "tasks" / "build" / "result.json").read_bytes())
    assert not build_result.get("warnings"), build_result
