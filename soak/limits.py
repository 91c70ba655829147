"""agents.py's runs with a provider that refuses a quarter of the model's requests (429 or 529).

The same seeds as agents.py (20-40 real agents at once in worktrees, then a merge, and the same
checks), but the fake Messages API answers each of the model's requests, the first of an
attempt or one in the middle of its tool calls, with a rate-limit (429) or overload (529) error
one time in four. The CLI gives up at once (CLAUDE_CODE_MAX_RETRIES=0), so awoc meets every one:
the run must slow down, retry those attempts without counting them, and still land every good
change. Prints a task that did not succeed with its error.

Usage: .venv/bin/python soak/limits.py [--seeds FIRST COUNT]   (3-5 minutes a seed on 2 cores)
"""

from __future__ import annotations

import json
import random
import sys
import threading
from pathlib import Path
from typing import Any

import agents
from fake_messages_api import APIError, FakeMessagesAPI, Response
from races import soak

REFUSED = 0.25
_lock = threading.Lock()
_rng = random.Random(7)
refusals = {"refused": 0, "requests": 0}


def respond(body: dict[str, Any]) -> Response:
    with _lock:
        refusals["requests"] += 1
        refuse = agents.MODEL.handles(body) and _rng.random() < REFUSED
        refusals["refused"] += refuse
        status = _rng.choice([429, 529])
    if refuse:
        return APIError(status, headers={"retry-after": "1"})
    return agents.MODEL.respond(body)


def one(seed: int, folder: Path) -> tuple[str, list[str]]:
    what, problems = agents.one(seed, folder)
    state = folder / "state"
    if (state / "current").exists():
        run_dir = state / "runs" / (state / "current").read_text().strip()
        for path in sorted(run_dir.glob("tasks/*/result.json")):
            result = json.loads(path.read_text())
            if result["status"] != "succeeded":
                print(f"  seed {seed}: {result['task_id']} {result['status']}: {result.get('error')}", flush=True)
    return what, problems


if __name__ == "__main__":
    agents.require_cli()
    with FakeMessagesAPI(respond) as agents.API:
        code = soak("limits", __doc__, one)
    print(f"the API refused {refusals['refused']} of {refusals['requests']} requests")
    sys.exit(code)
