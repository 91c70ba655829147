"""Tests for the test fakes: tests/fakes/fake_claude.py and tests/fakes/fake_messages_api.py.

The fake CLI's JSON lines are checked key for key (same keys, same order, same value kinds)
against shapes recorded from the real `claude` 2.1.197 (see tests/fakes/REAL_CLI_FINDINGS.md).
The real CLI (the pinned one, or AWOC_CLAUDE_VERSION's) also runs against the fake Messages API,
and the fake CLI's output is checked to stay within what the real one writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import claude_facts, offline_claude_env

FAKES = Path(__file__).resolve().parent / "fakes"
FAKE_CLAUDE = FAKES / "fake_claude.py"
sys.path.insert(0, str(FAKES))

from fake_messages_api import APIError, FakeMessagesAPI, Reply  # noqa: E402

# Shapes of the real CLI's lines: dicts keep key order, lists hold the shape of their first item,
# "str"/"number"/"bool"/null are value kinds, modelUsage's model key is "<model>".
REAL_SHAPES: dict[str, Any] = json.loads(
    r"""
{
 "json_success": {
  "type": "str",
  "subtype": "str",
  "is_error": "bool",
  "api_error_status": null,
  "duration_ms": "number",
  "duration_api_ms": "number",
  "ttft_ms": "number",
  "ttft_stream_ms": "number",
  "time_to_request_ms": "number",
  "num_turns": "number",
  "result": "str",
  "stop_reason": "str",
  "session_id": "str",
  "total_cost_usd": "number",
  "usage": {
   "input_tokens": "number",
   "cache_creation_input_tokens": "number",
   "cache_read_input_tokens": "number",
   "output_tokens": "number",
   "server_tool_use": {
    "web_search_requests": "number",
    "web_fetch_requests": "number"
   },
   "service_tier": "str",
   "cache_creation": {
    "ephemeral_1h_input_tokens": "number",
    "ephemeral_5m_input_tokens": "number"
   },
   "inference_geo": "str",
   "iterations": [],
   "speed": "str"
  },
  "modelUsage": {
   "<model>": {
    "inputTokens": "number",
    "outputTokens": "number",
    "cacheReadInputTokens": "number",
    "cacheCreationInputTokens": "number",
    "webSearchRequests": "number",
    "costUSD": "number",
    "contextWindow": "number",
    "maxOutputTokens": "number"
   }
  },
  "permission_denials": [],
  "terminal_reason": "str",
  "fast_mode_state": "str",
  "uuid": "str"
 },
 "json_api_error": {
  "type": "str",
  "subtype": "str",
  "is_error": "bool",
  "api_error_status": "number",
  "duration_ms": "number",
  "duration_api_ms": "number",
  "num_turns": "number",
  "result": "str",
  "stop_reason": "str",
  "session_id": "str",
  "total_cost_usd": "number",
  "usage": {
   "input_tokens": "number",
   "cache_creation_input_tokens": "number",
   "cache_read_input_tokens": "number",
   "output_tokens": "number",
   "server_tool_use": {
    "web_search_requests": "number",
    "web_fetch_requests": "number"
   },
   "service_tier": "str",
   "cache_creation": {
    "ephemeral_1h_input_tokens": "number",
    "ephemeral_5m_input_tokens": "number"
   },
   "inference_geo": "str",
   "iterations": [],
   "speed": "str"
  },
  "modelUsage": {},
  "permission_denials": [],
  "terminal_reason": "str",
  "fast_mode_state": "str",
  "uuid": "str"
 },
 "stream_init": {
  "type": "str",
  "subtype": "str",
  "cwd": "str",
  "session_id": "str",
  "tools": [
   "str"
  ],
  "mcp_servers": [],
  "model": "str",
  "permissionMode": "str",
  "slash_commands": [
   "str"
  ],
  "apiKeySource": "str",
  "claude_code_version": "str",
  "output_style": "str",
  "agents": [
   "str"
  ],
  "skills": [
   "str"
  ],
  "plugins": [],
  "analytics_disabled": "bool",
  "product_feedback_disabled": "bool",
  "uuid": "str",
  "memory_paths": {
   "auto": "str"
  },
  "fast_mode_state": "str"
 },
 "stream_assistant": {
  "type": "str",
  "message": {
   "id": "str",
   "type": "str",
   "role": "str",
   "model": "str",
   "content": [
    {
     "type": "str",
     "text": "str"
    }
   ],
   "stop_reason": null,
   "stop_sequence": null,
   "usage": {
    "input_tokens": "number",
    "cache_creation_input_tokens": "number",
    "cache_read_input_tokens": "number",
    "output_tokens": "number"
   },
   "context_management": null
  },
  "parent_tool_use_id": null,
  "session_id": "str",
  "uuid": "str",
  "request_id": "str"
 },
 "stream_assistant_tool_use": {
  "type": "str",
  "message": {
   "id": "str",
   "type": "str",
   "role": "str",
   "model": "str",
   "content": [
    {
     "type": "str",
     "id": "str",
     "name": "str",
     "input": {
      "file_path": "str"
     }
    }
   ],
   "stop_reason": null,
   "stop_sequence": null,
   "usage": {
    "input_tokens": "number",
    "cache_creation_input_tokens": "number",
    "cache_read_input_tokens": "number",
    "output_tokens": "number"
   },
   "context_management": null
  },
  "parent_tool_use_id": null,
  "session_id": "str",
  "uuid": "str",
  "request_id": "str"
 },
 "stream_assistant_api_error": {
  "type": "str",
  "message": {
   "id": "str",
   "container": null,
   "model": "str",
   "role": "str",
   "stop_details": null,
   "stop_reason": "str",
   "stop_sequence": "str",
   "type": "str",
   "usage": {
    "input_tokens": "number",
    "output_tokens": "number",
    "cache_creation_input_tokens": "number",
    "cache_read_input_tokens": "number",
    "server_tool_use": {
     "web_search_requests": "number",
     "web_fetch_requests": "number"
    },
    "service_tier": null,
    "cache_creation": {
     "ephemeral_1h_input_tokens": "number",
     "ephemeral_5m_input_tokens": "number"
    },
    "inference_geo": null,
    "iterations": null,
    "speed": null
   },
   "content": [
    {
     "type": "str",
     "text": "str"
    }
   ],
   "context_management": null
  },
  "parent_tool_use_id": null,
  "session_id": "str",
  "uuid": "str",
  "error": "str",
  "request_id": "str"
 },
 "stream_user_tool_result": {
  "type": "str",
  "message": {
   "role": "str",
   "content": [
    {
     "tool_use_id": "str",
     "type": "str",
     "content": "str"
    }
   ]
  },
  "parent_tool_use_id": null,
  "session_id": "str",
  "uuid": "str",
  "timestamp": "str",
  "tool_use_result": {
   "type": "str",
   "file": {
    "filePath": "str",
    "content": "str",
    "numLines": "number",
    "startLine": "number",
    "totalLines": "number"
   }
  }
 },
 "max_turns": {
  "type": "str",
  "subtype": "str",
  "duration_ms": "number",
  "duration_api_ms": "number",
  "is_error": "bool",
  "num_turns": "number",
  "stop_reason": "str",
  "session_id": "str",
  "total_cost_usd": "number",
  "usage": {
   "input_tokens": "number",
   "cache_creation_input_tokens": "number",
   "cache_read_input_tokens": "number",
   "output_tokens": "number",
   "server_tool_use": {
    "web_search_requests": "number",
    "web_fetch_requests": "number"
   },
   "service_tier": "str",
   "cache_creation": {
    "ephemeral_1h_input_tokens": "number",
    "ephemeral_5m_input_tokens": "number"
   },
   "inference_geo": "str",
   "iterations": [],
   "speed": "str"
  },
  "modelUsage": {
   "<model>": {
    "inputTokens": "number",
    "outputTokens": "number",
    "cacheReadInputTokens": "number",
    "cacheCreationInputTokens": "number",
    "webSearchRequests": "number",
    "costUSD": "number",
    "contextWindow": "number",
    "maxOutputTokens": "number"
   }
  },
  "permission_denials": [],
  "terminal_reason": "str",
  "fast_mode_state": "str",
  "uuid": "str",
  "errors": [
   "str"
  ]
 },
 "max_budget": {
  "type": "str",
  "subtype": "str",
  "duration_ms": "number",
  "duration_api_ms": "number",
  "is_error": "bool",
  "num_turns": "number",
  "stop_reason": "str",
  "session_id": "str",
  "total_cost_usd": "number",
  "usage": {
   "input_tokens": "number",
   "cache_creation_input_tokens": "number",
   "cache_read_input_tokens": "number",
   "output_tokens": "number",
   "server_tool_use": {
    "web_search_requests": "number",
    "web_fetch_requests": "number"
   },
   "service_tier": "str",
   "cache_creation": {
    "ephemeral_1h_input_tokens": "number",
    "ephemeral_5m_input_tokens": "number"
   },
   "inference_geo": "str",
   "iterations": [],
   "speed": "str"
  },
  "modelUsage": {
   "<model>": {
    "inputTokens": "number",
    "outputTokens": "number",
    "cacheReadInputTokens": "number",
    "cacheCreationInputTokens": "number",
    "webSearchRequests": "number",
    "costUSD": "number",
    "contextWindow": "number",
    "maxOutputTokens": "number"
   }
  },
  "permission_denials": [],
  "fast_mode_state": "str",
  "uuid": "str",
  "errors": [
   "str"
  ]
 },
 "not_logged_in_assistant": {
  "type": "str",
  "message": {
   "id": "str",
   "container": null,
   "model": "str",
   "role": "str",
   "stop_details": null,
   "stop_reason": "str",
   "stop_sequence": "str",
   "type": "str",
   "usage": {
    "input_tokens": "number",
    "output_tokens": "number",
    "cache_creation_input_tokens": "number",
    "cache_read_input_tokens": "number",
    "server_tool_use": {
     "web_search_requests": "number",
     "web_fetch_requests": "number"
    },
    "service_tier": null,
    "cache_creation": {
     "ephemeral_1h_input_tokens": "number",
     "ephemeral_5m_input_tokens": "number"
    },
    "inference_geo": null,
    "iterations": null,
    "speed": null
   },
   "content": [
    {
     "type": "str",
     "text": "str"
    }
   ],
   "context_management": null
  },
  "parent_tool_use_id": null,
  "session_id": "str",
  "uuid": "str",
  "error": "str"
 },
 "not_logged_in_result": {
  "type": "str",
  "subtype": "str",
  "is_error": "bool",
  "api_error_status": null,
  "duration_ms": "number",
  "duration_api_ms": "number",
  "num_turns": "number",
  "result": "str",
  "stop_reason": "str",
  "session_id": "str",
  "total_cost_usd": "number",
  "usage": {
   "input_tokens": "number",
   "cache_creation_input_tokens": "number",
   "cache_read_input_tokens": "number",
   "output_tokens": "number",
   "server_tool_use": {
    "web_search_requests": "number",
    "web_fetch_requests": "number"
   },
   "service_tier": "str",
   "cache_creation": {
    "ephemeral_1h_input_tokens": "number",
    "ephemeral_5m_input_tokens": "number"
   },
   "inference_geo": "str",
   "iterations": [],
   "speed": "str"
  },
  "modelUsage": {},
  "permission_denials": [],
  "terminal_reason": "str",
  "fast_mode_state": "str",
  "uuid": "str"
 }
}
"""
)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def shape(v: Any, parent: str | None = None) -> Any:
    if isinstance(v, dict):
        if parent == "modelUsage":
            return {"<model>": shape(next(iter(v.values())))} if v else {}
        return {k: shape(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "str"


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert list(actual) == list(expected), f"{path}: keys differ\n real: {list(expected)}\n fake: {list(actual)}"
        for k in expected:
            assert_same_shape(expected[k], actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if expected and actual:
            assert_same_shape(expected[0], actual[0], f"{path}[0]")
    else:
        assert expected == actual, f"{path}: value kind differs: real {expected!r}, fake {actual!r}"


def assert_fake_within_real(real: Any, fake: Any, path: str = "$") -> None:
    """Against the live CLI, which may be newer than the recording: every key the fake writes is in
    the real output with the same kind of value (newer CLIs add keys, and their order may change)."""
    if isinstance(real, dict):
        assert isinstance(fake, dict), f"{path}: expected an object, got {fake!r}"
        missing = [k for k in fake if k not in real]
        assert not missing, f"{path}: the fake writes keys the real CLI does not: {missing}"
        for k in fake:
            assert_fake_within_real(real[k], fake[k], f"{path}.{k}")
    elif isinstance(real, list):
        assert isinstance(fake, list), f"{path}: expected a list, got {fake!r}"
        if real and fake:
            assert_fake_within_real(real[0], fake[0], f"{path}[0]")
    else:
        assert real == fake, f"{path}: value kind differs: real {real!r}, fake {fake!r}"


def fake_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CLAUDE_")}
    env.update(extra)
    return env


def run_fake(
    *args: str,
    prompt: str | bytes | None = "Task: say hi",
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[bytes]:
    data = prompt.encode() if isinstance(prompt, str) else prompt
    return subprocess.run(
        [sys.executable, str(FAKE_CLAUDE), *args],
        input=data if data is not None else b"",
        capture_output=True,
        env=env if env is not None else fake_env(),
        timeout=timeout,
    )


def json_lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def sonnet_cost(tin: int, tout: int, cread: int = 0, cwrite: int = 0) -> float:
    return tin * 3 / 1e6 + tout * 15 / 1e6 + cread * 0.3 / 1e6 + cwrite * 3.75 / 1e6


JSON_ARGS = ("-p", "--output-format", "json", "--no-session-persistence")
STREAM_ARGS = ("-p", "--output-format", "stream-json", "--verbose", "--no-session-persistence")


# ------------------------------------------------------------------------------------------------
# fake_claude.py: output shapes
# ------------------------------------------------------------------------------------------------
def test_fake_claude_is_an_executable_script() -> None:
    assert os.access(FAKE_CLAUDE, os.X_OK)
    assert FAKE_CLAUDE.read_text().startswith("#!/usr/bin/env python3\n")


def test_json_success_matches_real_shape_and_values() -> None:
    prompt = "You are a worker.\n\n## Task\nWrite the parser\n\nmore text"
    p = run_fake(*JSON_ARGS, "--model", "sonnet", "--append-system-prompt", "ROLE", prompt=prompt)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(b"\n") == 1 and p.stderr == b""
    r = json.loads(p.stdout)
    assert_same_shape(REAL_SHAPES["json_success"], shape(r))
    assert r["subtype"] == "success" and r["is_error"] is False and r["api_error_status"] is None
    sha = hashlib.sha256(prompt.encode()).hexdigest()
    assert r["result"] == f"Done: Write the parser\nprompt_sha256: {sha}"
    assert r["usage"]["input_tokens"] == len(prompt) // 4
    assert r["usage"]["output_tokens"] == 50
    assert r["total_cost_usd"] == pytest.approx(sonnet_cost(len(prompt) // 4, 50))
    assert list(r["modelUsage"]) == ["claude-sonnet-5"]
    assert r["modelUsage"]["claude-sonnet-5"]["costUSD"] == r["total_cost_usd"]
    assert r["num_turns"] == 1 and r["stop_reason"] == "end_turn" and r["terminal_reason"] == "completed"


def test_result_directive_tokens_and_session_id() -> None:
    sid = "12345678-1234-1234-1234-123456789abc"
    p = run_fake(*JSON_ARGS, "--session-id", sid, prompt="[[fake:result=all good]] [[fake:tokens=1000,200,300,40]] go")
    r = json.loads(p.stdout)
    assert r["result"] == "all good" and r["session_id"] == sid
    u = r["usage"]
    assert (u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (
        1000,
        200,
        300,
        40,
    )
    # same figures as the real CLI for the same server-reported usage
    assert r["total_cost_usd"] == 0.00624


def test_stream_json_success_matches_real_shapes() -> None:
    p = run_fake(*STREAM_ARGS, "--model", "sonnet", prompt="[[fake:tokens=1000,200]] Task: go")
    assert p.returncode == 0, p.stderr
    lines = json_lines(p.stdout)
    assert [ln["type"] for ln in lines] == ["system", "assistant", "result"]
    assert_same_shape(REAL_SHAPES["stream_init"], shape(lines[0]))
    assert_same_shape(REAL_SHAPES["stream_assistant"], shape(lines[1]))
    assert_same_shape(REAL_SHAPES["json_success"], shape(lines[2]))
    assert lines[0]["model"] == lines[1]["message"]["model"] == "claude-sonnet-5"
    assert {ln["session_id"] for ln in lines} == {lines[0]["session_id"]}
    # like the real CLI: an assistant line carries the usage of the call's message_start
    assert lines[1]["message"]["usage"]["input_tokens"] == 1000
    assert lines[1]["message"]["usage"]["output_tokens"] == 1
    assert lines[2]["usage"]["output_tokens"] == 200 and lines[2]["total_cost_usd"] == 0.006


def test_stream_json_turns_tool_lines_and_usage_modes() -> None:
    p = run_fake(*STREAM_ARGS, prompt="[[fake:turns=3]] [[fake:tokens=100,10]] Task: go")
    lines = json_lines(p.stdout)
    kinds = [ln["type"] for ln in lines]
    assert kinds == ["system", *["assistant", "assistant", "user"] * 2, "assistant", "result"]
    users = [ln for ln in lines if ln["type"] == "user"]
    for u in users:
        assert_same_shape(REAL_SHAPES["stream_user_tool_result"], shape(u))
    assistants = [ln for ln in lines if ln["type"] == "assistant"]
    for a in assistants:
        kind = a["message"]["content"][0]["type"]
        assert_same_shape(REAL_SHAPES["stream_assistant" if kind == "text" else "stream_assistant_tool_use"], shape(a))
    # one message id per model call: the text and tool_use blocks of a call share it
    assert len({a["message"]["id"] for a in assistants}) == 3
    result = lines[-1]
    assert result["num_turns"] == 3
    assert result["usage"]["input_tokens"] == 300 and result["usage"]["output_tokens"] == 30

    cumulative = json_lines(
        run_fake(
            *STREAM_ARGS, prompt="[[fake:turns=3]] [[fake:tokens=100,10]] [[fake:stream_usage=cumulative]] x"
        ).stdout
    )
    per_call = {}
    for ln in cumulative:
        if ln["type"] == "assistant":
            per_call[ln["message"]["id"]] = ln["message"]["usage"]
    assert [u["input_tokens"] for u in per_call.values()] == [100, 200, 300]
    assert [u["output_tokens"] for u in per_call.values()] == [10, 20, 30]


def test_stream_json_lines_are_flushed_as_they_happen() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_CLAUDE), *STREAM_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=fake_env(),
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(b"[[fake:turns=2]] [[fake:turn_sleep=1.5]] go")
    proc.stdin.close()
    t0 = time.monotonic()
    first = proc.stdout.readline()
    assert json.loads(first)["type"] == "system"
    second = json.loads(proc.stdout.readline())
    assert second["type"] == "assistant"
    assert time.monotonic() - t0 < 1.2, "first turn was not flushed before the turn sleep"
    rest = proc.stdout.read()
    assert proc.wait(timeout=10) == 0
    assert json_lines(rest)[-1]["type"] == "result"


@pytest.mark.parametrize(
    ("directive", "status", "code", "text"),
    [
        ("rate_limit", 429, "rate_limit", "API Error: Request rejected (429) · "),
        ("overloaded", 529, "server_error", "API Error: 529 Overloaded. This is a server-side issue"),
        ("fail", 500, "server_error", "API Error: 500 Internal server error."),
        ("api_error=503", 503, "server_error", "API Error: 503 "),
    ],
)
def test_api_errors_match_real_shapes(directive: str, status: int, code: str, text: str) -> None:
    p = run_fake(*JSON_ARGS, prompt=f"[[fake:{directive}]] Task: go")
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert_same_shape(REAL_SHAPES["json_api_error"], shape(r))
    assert r["subtype"] == "success" and r["is_error"] is True and r["api_error_status"] == status
    assert r["result"].startswith(text)
    assert r["total_cost_usd"] == 0 and r["modelUsage"] == {} and r["stop_reason"] == "stop_sequence"
    assert b'"total_cost_usd":0,' in p.stdout  # a JavaScript 0, not 0.0

    s = run_fake(*STREAM_ARGS, prompt=f"[[fake:{directive}]] Task: go")
    assert s.returncode == 1
    lines = json_lines(s.stdout)
    assert [ln["type"] for ln in lines] == ["system", "assistant", "result"]
    assert_same_shape(REAL_SHAPES["stream_assistant_api_error"], shape(lines[1]))
    assert lines[1]["error"] == code and lines[1]["message"]["model"] == "<synthetic>"
    assert_same_shape(REAL_SHAPES["json_api_error"], shape(lines[2]))


def test_overloaded_text_names_the_gateway_like_the_real_cli() -> None:
    p = run_fake(*JSON_ARGS, prompt="[[fake:overloaded]]", env=fake_env(ANTHROPIC_BASE_URL="http://127.0.0.1:9999"))
    assert json.loads(p.stdout)["result"].endswith("check your inference gateway (127.0.0.1:9999).")


def test_not_logged_in_and_usage_limit() -> None:
    s = run_fake(*STREAM_ARGS, prompt="[[fake:not_logged_in]]")
    assert s.returncode == 1
    lines = json_lines(s.stdout)
    assert_same_shape(REAL_SHAPES["not_logged_in_assistant"], shape(lines[1]))
    assert_same_shape(REAL_SHAPES["not_logged_in_result"], shape(lines[2]))
    assert lines[2]["result"] == "Not logged in · Please run /login"
    u = json.loads(run_fake(*JSON_ARGS, prompt="[[fake:usage_limit]]").stdout)
    assert u["is_error"] is True and u["api_error_status"] == 429 and "limit" in u["result"]


def test_max_turns_matches_real_shape() -> None:
    # an explicit directive
    p = run_fake(*JSON_ARGS, prompt="[[fake:max_turns]] [[fake:turns=2]] go")
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert_same_shape(REAL_SHAPES["max_turns"], shape(r))
    assert r["subtype"] == "error_max_turns" and r["errors"] == ["Reached maximum number of turns (2)"]
    assert r["num_turns"] == 3 and r["terminal_reason"] == "max_turns"
    # or more turns than --max-turns allows
    s = run_fake(*STREAM_ARGS, "--max-turns", "1", prompt="[[fake:turns=4]] [[fake:tokens=1000,100]] go")
    assert s.returncode == 1
    lines = json_lines(s.stdout)
    assert_same_shape(REAL_SHAPES["max_turns"], shape(lines[-1]))
    assert lines[-1]["num_turns"] == 2 and lines[-1]["usage"]["input_tokens"] == 1000
    assert lines[-1]["total_cost_usd"] == 0.0045000000000000005  # the real CLI's figure for this usage


def test_max_budget_matches_real_shape() -> None:
    p = run_fake(*JSON_ARGS, "--max-budget-usd", "0.001", prompt="[[fake:turns=3]] [[fake:tokens=1000,100]] go")
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert_same_shape(REAL_SHAPES["max_budget"], shape(r))
    assert r["subtype"] == "error_max_budget_usd" and r["errors"] == ["Reached maximum budget ($0.001)"]
    assert r["usage"]["input_tokens"] == 0  # the real CLI's quirk; modelUsage holds the figures
    assert r["modelUsage"]["claude-sonnet-5"]["inputTokens"] == 1000


def test_json_with_verbose_prints_one_array() -> None:
    p = run_fake(*JSON_ARGS, "--verbose")
    assert p.returncode == 0
    assert p.stdout.count(b"\n") == 1
    arr = json.loads(p.stdout)
    assert [m["type"] for m in arr] == ["system", "assistant", "result"]


def test_text_output() -> None:
    p = run_fake("-p", prompt="[[fake:result=plain]]")
    assert (p.returncode, p.stdout) == (0, b"plain\n")
    e = run_fake("-p", prompt="[[fake:rate_limit]]")
    assert e.returncode == 1 and e.stdout.startswith(b"API Error: Request rejected (429)")


# ------------------------------------------------------------------------------------------------
# fake_claude.py: command line like the real CLI
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (("-p", "--x"), "error: unknown option '--x'\n"),
        (
            ("-p", "--output-format", "stream-json"),
            "Error: When using --print, --output-format=stream-json requires --verbose\n",
        ),
        (
            ("-p", "--output-format", "xml"),
            "error: option '--output-format <format>' argument 'xml' is invalid. "
            "Allowed choices are text, json, stream-json.\n",
        ),
        (("-p", "--model"), "error: option '--model <model>' argument missing\n"),
        (("-p", "--session-id", "nope"), "Error: Invalid session ID. Must be a valid UUID.\n"),
    ],
)
def test_cli_errors(args: tuple[str, ...], stderr: str) -> None:
    p = run_fake(*args)
    assert (p.returncode, p.stdout, p.stderr.decode()) == (1, b"", stderr)


def test_variadic_tools_swallow_the_prompt_argument_like_the_real_cli() -> None:
    p = run_fake("-p", "--tools", "Read", "the prompt", prompt=b"")
    assert p.returncode == 1
    assert p.stderr.startswith(b"Error: Input must be provided either through stdin or as a prompt argument")
    ok = run_fake("-p", "the prompt", "--output-format", "json", "--tools", "Read,Grep", prompt=b"")
    assert ok.returncode == 0 and json.loads(ok.stdout)["result"].startswith("Done: the prompt")
    for args in (("--tools=Read", "the prompt"), ("--tools", "Read", "--", "the prompt")):
        ok = run_fake("-p", "--output-format", "json", *args, prompt=b"")
        assert ok.returncode == 0 and json.loads(ok.stdout)["result"].startswith("Done: the prompt")
    # `--tools=Read Grep prompt`: Grep becomes the prompt (the real CLI does the same)
    odd = run_fake("-p", "--output-format", "json", "--tools=Read", "Grep", "the prompt", prompt=b"")
    assert json.loads(odd.stdout)["result"].startswith("Done: Grep")


def test_all_documented_flags_are_accepted() -> None:
    p = run_fake(
        "--print",
        "--output-format=stream-json",
        "--verbose",
        "--model",
        "haiku",
        "--append-system-prompt",
        "-starts with a dash",
        "--system-prompt",
        "S",
        "--tools",
        "Read,Grep",
        "--allowedTools",
        "Bash(git diff *)",
        "Edit",
        "--disallowedTools",
        "WebFetch",
        "--max-turns",
        "5",
        "--max-budget-usd",
        "2.5",
        "--permission-mode",
        "acceptEdits",
        "--no-session-persistence",
        "--session-id",
        "12345678-1234-1234-1234-123456789abc",
        "--add-dir",
        "/tmp",
        "--bare",
        "--json-schema",
        '{"type":"object"}',
        env=fake_env(IS_SANDBOX="1"),
    )
    assert p.returncode == 0, p.stderr
    init = json_lines(p.stdout)[0]
    assert init["tools"] == ["Grep", "Read"] and init["permissionMode"] == "acceptEdits"
    assert init["model"] == "claude-haiku-4-5-20251001"


def test_prompt_argument_and_stdin_are_joined() -> None:
    log = Path(tempfile.mkdtemp())
    p = run_fake("-p", "arg part", prompt="stdin part", env=fake_env(FAKE_CLAUDE_LOG_DIR=str(log)))
    assert p.returncode == 0
    entry = json.loads((log / "calls.jsonl").read_text())
    assert entry["prompt"] == "arg part\nstdin part" and entry["prompt_source"] == "arg+stdin"


def test_version() -> None:
    p = run_fake("--version")
    assert (p.returncode, p.stdout) == (0, b"2.1.197 (Claude Code)\n")


# ------------------------------------------------------------------------------------------------
# fake_claude.py: scripted behaviour, logging, processes
# ------------------------------------------------------------------------------------------------
def test_crash() -> None:
    p = run_fake(*JSON_ARGS, prompt="[[fake:crash]]")
    assert p.returncode == 2 and p.stdout == b""
    assert b"TypeError" in p.stderr and b"    at " not in p.stdout


def test_sleep() -> None:
    t0 = time.monotonic()
    p = run_fake(*JSON_ARGS, prompt="[[fake:sleep=0.5]] go")
    assert p.returncode == 0 and time.monotonic() - t0 >= 0.5


def test_directives_from_env_and_system_prompt() -> None:
    p = run_fake(*JSON_ARGS, env=fake_env(FAKE_CLAUDE_DIRECTIVES="result=from env;tokens=8,9"))
    r = json.loads(p.stdout)
    assert r["result"] == "from env" and r["usage"]["output_tokens"] == 9
    q = run_fake(*JSON_ARGS, "--append-system-prompt", "[[fake:result=from agent]]")
    assert json.loads(q.stdout)["result"] == "from agent"
    # the prompt wins over the environment
    w = run_fake(*JSON_ARGS, prompt="[[fake:result=prompt]]", env=fake_env(FAKE_CLAUDE_DIRECTIVES="result=env"))
    assert json.loads(w.stdout)["result"] == "prompt"


def test_default_result_does_not_echo_directives() -> None:
    r = json.loads(run_fake(*JSON_ARGS, prompt="Task: [[fake:tokens=5,5]] build it").stdout)
    assert r["result"].startswith("Done: build it\n") and "[[fake:" not in r["result"]


def test_fail_times_counts_per_key(tmp_path: Path) -> None:
    env = fake_env(FAKE_CLAUDE_STATE_DIR=str(tmp_path / "state"))
    prompt = "[[fake:fail_times=2]] [[fake:fail_kind=overloaded]] Task: retry me"
    codes = [run_fake(*JSON_ARGS, prompt=prompt, env=env) for _ in range(3)]
    assert [c.returncode for c in codes] == [1, 1, 0]
    assert json.loads(codes[0].stdout)["api_error_status"] == 529
    # an explicit key survives prompt changes (e.g. a retry quoting the previous error)
    keyed = [
        run_fake(*JSON_ARGS, prompt=f"[[fake:fail_times=1]] [[fake:key=k1]] attempt {i}", env=env).returncode
        for i in range(2)
    ]
    assert keyed == [1, 0]
    missing = run_fake(*JSON_ARGS, prompt="[[fake:fail_times=1]]")
    assert missing.returncode == 2 and b"FAKE_CLAUDE_STATE_DIR" in missing.stderr


def test_fail_times_is_safe_under_concurrency(tmp_path: Path) -> None:
    env = fake_env(FAKE_CLAUDE_STATE_DIR=str(tmp_path))
    procs = [
        subprocess.Popen(
            [sys.executable, str(FAKE_CLAUDE), *JSON_ARGS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(8)
    ]
    for p in procs:
        p.communicate(b"[[fake:fail_times=5]] same prompt")
    assert sorted(p.returncode for p in procs) == [0, 0, 0, 1, 1, 1, 1, 1]


TRICKY_PROMPTS = [
    "quotes ' \" `backticks` $(echo pwned) ${HOME} \\ \\n",
    "newlines\n\n\ttabs\r\nCRLF\n",
    "unicode: ünïcødé 日本語 🚀 \u200b zero-width",
    "  leading and trailing spaces  ",
]


@pytest.mark.parametrize("prompt", TRICKY_PROMPTS)
def test_log_records_prompt_byte_exact(prompt: str, tmp_path: Path) -> None:
    env = fake_env(FAKE_CLAUDE_LOG_DIR=str(tmp_path), AWOC_TASK_ID="t-1", ANTHROPIC_API_KEY="sk-secret")
    via_stdin = run_fake(*JSON_ARGS, prompt=prompt, env=env)
    via_arg = run_fake(*JSON_ARGS, prompt, prompt=b"", env=env)
    assert via_stdin.returncode == 0 and via_arg.returncode == 0
    entries = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [e["prompt"] for e in entries] == [prompt, prompt]
    sha = hashlib.sha256(prompt.encode()).hexdigest()
    assert all(e["prompt_sha256"] == sha for e in entries)
    e = entries[0]
    assert e["env"]["AWOC_TASK_ID"] == "t-1" and "ANTHROPIC_API_KEY" not in e["env"]
    assert e["argv"] == list(JSON_ARGS) and e["exit_code"] == 0 and e["end"] >= e["start"]
    assert e["cwd"] == os.getcwd() and isinstance(e["pid"], int)
    assert json.loads(via_stdin.stdout)["result"].endswith(sha)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=300).filter(lambda s: "[[fake:" not in s))
def test_log_prompt_roundtrip_property(prompt: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = run_fake(*JSON_ARGS, prompt=prompt.encode(), env=fake_env(FAKE_CLAUDE_LOG_DIR=d))
        assert p.returncode == 0
        entry = json.loads(Path(d, "calls.jsonl").read_text())
        assert entry["prompt"] == prompt


def test_invalid_utf8_prompt_bytes_are_recoverable(tmp_path: Path) -> None:
    raw = b"bad \xff\xfe bytes \xc3("
    run_fake(*JSON_ARGS, prompt=raw, env=fake_env(FAKE_CLAUDE_LOG_DIR=str(tmp_path)))
    entry = json.loads((tmp_path / "calls.jsonl").read_text())
    assert entry["prompt"].encode("utf-8", "surrogateescape") == raw
    assert entry["prompt_sha256"] == hashlib.sha256(raw).hexdigest()


def test_concurrent_calls_each_log_one_line(tmp_path: Path) -> None:
    env = fake_env(FAKE_CLAUDE_LOG_DIR=str(tmp_path))
    big = "x" * 200_000
    procs = [
        subprocess.Popen(
            [sys.executable, str(FAKE_CLAUDE), *JSON_ARGS],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        for _ in range(10)
    ]
    for i, p in enumerate(procs):
        p.communicate(f"call {i} {big}".encode())
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 10
    assert sorted(json.loads(line)["prompt"].split()[1] for line in lines) == sorted(str(i) for i in range(10))


def _popen_fake(prompt: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_CLAUDE), *STREAM_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(prompt.encode())
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["type"] == "system"
    return proc


def test_hang_dies_on_sigterm_and_logs_it(tmp_path: Path) -> None:
    proc = _popen_fake("[[fake:hang]]", fake_env(FAKE_CLAUDE_LOG_DIR=str(tmp_path)))
    time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == -signal.SIGTERM
    entry = json.loads((tmp_path / "calls.jsonl").read_text())
    assert entry["outcome"] == "signal:SIGTERM" and entry["exit_code"] is None
    started = json.loads((tmp_path / "started.jsonl").read_text())
    assert started["pid"] == proc.pid


def test_ignore_sigterm_needs_sigkill() -> None:
    proc = _popen_fake("[[fake:hang]] [[fake:ignore_sigterm]]", fake_env())
    proc.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    proc.kill()
    assert proc.wait(timeout=5) == -signal.SIGKILL


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_children_in_and_out_of_the_group(tmp_path: Path) -> None:
    p = run_fake(
        *JSON_ARGS,
        prompt="[[fake:child=30]] [[fake:detached_child=30]]",
        env=fake_env(FAKE_CLAUDE_LOG_DIR=str(tmp_path)),
    )
    assert p.returncode == 0
    entry = json.loads((tmp_path / "calls.jsonl").read_text())
    children = {c["detached"]: c["pid"] for c in entry["children"]}
    try:
        assert os.getpgid(children[False]) == entry["pgid"]
        assert os.getsid(children[True]) == children[True]
    finally:
        for pid in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# fake_messages_api.py
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def _post(url: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", "x-api-key": "sk-test"}
    )


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_server_streams_sse(api: FakeMessagesAPI) -> None:
    api.push(Reply("hello world", {"input_tokens": 42, "output_tokens": 7}))
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with urllib.request.urlopen(_post(api.url + "/v1/messages?beta=true", body), timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(resp.read().decode())
    names = [e for e, _ in events if e != "ping"]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["model"] == "claude-sonnet-5" and start["usage"]["input_tokens"] == 42
    text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
    assert text == "hello world"
    delta = next(d for e, d in events if e == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 7
    rec = api.messages_requests[-1]
    assert rec["query"] == "beta=true" and rec["body"] == body and rec["headers"]["x-api-key"] == "sk-test"


def test_server_plain_json_count_tokens_and_other_paths(api: FakeMessagesAPI) -> None:
    api2 = FakeMessagesAPI(lambda body: ("echo " + body["messages"][0]["content"], {"output_tokens": 3}))
    with api2:
        body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "abc"}]}
        with urllib.request.urlopen(_post(api2.url + "/v1/messages", body), timeout=10) as resp:
            msg = json.loads(resp.read())
        assert msg["type"] == "message" and msg["content"] == [{"type": "text", "text": "echo abc"}]
        assert msg["usage"]["output_tokens"] == 3 and msg["stop_reason"] == "end_turn"
    with urllib.request.urlopen(_post(api.url + "/v1/messages/count_tokens", body), timeout=10) as resp:
        assert set(json.loads(resp.read())) == {"input_tokens"}
    for method in ("HEAD", "GET"):
        with urllib.request.urlopen(urllib.request.Request(api.url + "/", method=method), timeout=10) as resp:
            assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(_post(api.url + "/v1/complete", {}), timeout=10)
    assert exc.value.code == 404 and json.loads(exc.value.read())["type"] == "error"


@pytest.mark.parametrize(
    ("status", "etype"), [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error")]
)
def test_server_errors(api: FakeMessagesAPI, status: int, etype: str) -> None:
    api.push(APIError(status))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(_post(api.url + "/v1/messages", {"stream": True, "messages": []}), timeout=10)
    assert exc.value.code == status
    assert json.loads(exc.value.read())["error"]["type"] == etype


def test_server_handles_concurrent_requests(api: FakeMessagesAPI) -> None:
    api.responder = lambda body: Reply("slow", delay=0.3)
    results: list[int] = []

    def call() -> None:
        with urllib.request.urlopen(_post(api.url + "/v1/messages", {"messages": []}), timeout=10) as resp:
            results.append(resp.status)

    threads = [threading.Thread(target=call) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8 and time.monotonic() - t0 < 2


# ------------------------------------------------------------------------------------------------
# The real CLI against the fake server: the one npm installed (make test), or AWOC_REAL_CLAUDE
# ------------------------------------------------------------------------------------------------
def run_real(
    claude: Path, api: FakeMessagesAPI, args: list[str], prompt: str, tmp: Path
) -> subprocess.CompletedProcess[bytes]:
    home = tmp / "real-home"
    home.mkdir(exist_ok=True)
    env = offline_claude_env(api.url, home)
    return subprocess.run([str(claude), *args], input=prompt.encode(), capture_output=True, env=env, timeout=120)


def test_real_cli_json_matches_fake(claude_bin: Path, api: FakeMessagesAPI, tmp_path: Path) -> None:
    prompt = "Task: compare\nwith $(quotes) 'and' \"more\" `ticks` ü\n"
    api.push(Reply("real answer", {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 300}))
    args = [*JSON_ARGS, "--model", "sonnet", "--append-system-prompt", "APPENDED ROLE", "--tools", "Read,Grep"]
    real = run_real(claude_bin, api, args, prompt, tmp_path)
    assert real.returncode == 0, real.stderr
    r = json.loads(real.stdout)
    fake = json.loads(run_fake(*args, prompt="[[fake:tokens=1000,200,300]] x").stdout)
    assert_fake_within_real(shape(r), shape(fake))
    p_in, p_out, p_read, _ = claude_facts().prices[claude_facts().models["sonnet"]]
    assert r["total_cost_usd"] == pytest.approx((1000 * p_in + 200 * p_out + 300 * p_read) / 1e6, abs=1e-12)
    assert r["usage"]["input_tokens"] == 1000 and r["usage"]["output_tokens"] == 200

    req = api.messages_requests[-1]
    body = req["body"]
    assert req["query"] == "beta=true" and body["stream"] is True and body["model"] == claude_facts().models["sonnet"]
    assert body["system"][-1]["text"].endswith("\n\nAPPENDED ROLE")
    # byte-exact, as a text block of its own (2.1.197 puts <system-reminder> text before it; 2.1.332 does not)
    user_blocks = [
        b if isinstance(b, dict) else {"type": "text", "text": b}
        for m in body["messages"]
        if m["role"] == "user"
        for b in (m["content"] if isinstance(m["content"], list) else [m["content"]])
    ]
    texts = [b["text"] for b in user_blocks if b.get("type") == "text"]
    assert prompt in texts, texts


@pytest.mark.parametrize("status", [429, 529])
def test_real_cli_stream_errors_match_fake(claude_bin: Path, api: FakeMessagesAPI, tmp_path: Path, status: int) -> None:
    api.push(APIError(status))
    real = run_real(claude_bin, api, [*STREAM_ARGS, "--tools", "Read"], "hi", tmp_path)
    assert real.returncode == 1
    rl = json_lines(real.stdout)
    directive = {429: "rate_limit", 529: "overloaded"}[status]
    fl = json_lines(run_fake(*STREAM_ARGS, "--tools", "Read", prompt=f"[[fake:{directive}]]").stdout)
    assert [x["type"] for x in rl] == [x["type"] for x in fl]
    for a, b in zip(rl, fl, strict=True):
        assert_fake_within_real(shape(a), shape(b))
    assert rl[-1]["api_error_status"] == fl[-1]["api_error_status"] == status


def test_real_cli_stream_success_matches_fake(claude_bin: Path, api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.push(Reply("ok", {"input_tokens": 10, "output_tokens": 5}))
    real = run_real(claude_bin, api, [*STREAM_ARGS, "--model", "haiku", "--tools", "Read"], "hi", tmp_path)
    assert real.returncode == 0, real.stderr
    rl = json_lines(real.stdout)
    fl = json_lines(run_fake(*STREAM_ARGS, "--model", "haiku", "--tools", "Read").stdout)
    for a, b in zip(rl, fl, strict=True):
        assert_fake_within_real(shape(a), shape(b))
    assert list(rl[-1]["modelUsage"]) == [claude_facts().models["haiku"]]
