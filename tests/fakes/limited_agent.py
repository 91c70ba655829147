#!/usr/bin/env python3
"""An agent command (AWOC_AGENT_COMMAND) behind a provider that takes at most K calls at once.

Env LIMITED_AGENT_DIR (a folder shared by all copies) and LIMITED_AGENT_K. A copy that would be
the K+1th running answers at once as the claude CLI does on HTTP 429 (is_error, api_error_status
429, exit 1); the others work for LIMITED_AGENT_WORK_S (default 0.3 s) and succeed. Every call
appends a line to calls.jsonl in the folder: its outcome and how many ran with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time

folder = os.environ["LIMITED_AGENT_DIR"]
limit = int(os.environ["LIMITED_AGENT_K"])
work_s = float(os.environ.get("LIMITED_AGENT_WORK_S", "0.3"))
sys.stdin.read()


def change(delta: int, only_below: int | None = None) -> int | None:
    """Add DELTA to the count of copies at work, under a lock; None if ONLY_BELOW forbids it."""
    with open(os.path.join(folder, "count"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        count = int(fh.read() or 0)
        if only_below is not None and count >= only_below:
            return None
        fh.seek(0)
        fh.truncate()
        fh.write(str(count + delta))
        return count + delta


def log(outcome: str, running: int) -> None:
    line = json.dumps({"task": os.environ.get("AWOC_TASK_ID"), "outcome": outcome, "running": running}) + "\n"
    fd = os.open(os.path.join(folder, "calls.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)


running = change(+1, only_below=limit)
if running is None:
    log("429", limit + 1)
    print(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": 429,
                "result": "API Error: Request rejected (429) · rate limited",
            }
        )
    )
    sys.exit(1)
try:
    time.sleep(work_s)
    log("ok", running)
    print(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "done",
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        )
    )
finally:
    change(-1)
