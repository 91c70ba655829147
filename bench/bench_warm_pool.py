"""Warm agents: how much of the claude CLI's start-up leaves the critical path.

A chain of 4 dependent agent tasks plus 4 independent ones, run by `delegate-parallel run
--quiet` with the real claude CLI (the pinned one, or `--claude PATH`) against the fake Messages
API of the tests (each answer after 0.3 s), 4 at a time: with `warm_agents: 0` (the baseline)
and with `warm_agents: 4`, alternated, `--repeat` times each, in the same process. Figures: the
makespan (the report's total time), and for each dependent task the latency from its dependency's
end (its task-end event) to its first request reaching the API, median over the dependent tasks
and runs.

Goal: under 0.3 s from "dependencies done" to "prompt sent" with the pool.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from benchlib import ROOT, Figure, bench_parser, emit, find_cli

sys.path.insert(0, str(ROOT / "tests" / "fakes"))
from fake_messages_api import FakeMessagesAPI, Reply

GOAL_S = 0.3
TAG = re.compile(r"BENCHTASK-(\w+)")
CHAIN = ["c1", "c2", "c3", "c4"]


def config(warm: int) -> dict[str, Any]:
    tasks = [
        {
            "task_id": tid,
            "agent": "workforce",
            "description": f"BENCHTASK-{tid}: answer in one word",
            "dependencies": [CHAIN[i - 1]] if i else [],
            "priority": "high",
        }
        for i, tid in enumerate(CHAIN)
    ]
    tasks += [{"task_id": f"i{i}", "agent": "workforce", "description": f"BENCHTASK-i{i}: one word"} for i in range(4)]
    return {
        "parallel_config": {"max_concurrent": 4, "warm_agents": warm, "retries": 0, "total_timeout": 300},
        "tasks": tasks,
    }


class Api:
    def __init__(self) -> None:
        self.first_request: dict[str, float] = {}
        self.lock = threading.Lock()
        self.api = FakeMessagesAPI(self.respond)

    def respond(self, body: dict[str, Any]) -> Reply:
        found = TAG.search(orjson.dumps(body.get("messages")).decode())
        with self.lock:
            if found:
                self.first_request.setdefault(found.group(1), time.time())
        return Reply("done", {"input_tokens": 100, "output_tokens": 5}, delay=0.3)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_run(cli: str, claude: str, warm: int, tmp: Path) -> dict[str, Any]:
    api = Api()
    home = Path(tempfile.mkdtemp(dir=tmp))
    state = Path(tempfile.mkdtemp(dir=tmp))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_API_KEY": "sk-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "AWOC_CLAUDE_BIN": claude,
        "AWOC_STATE_DIR": str(state),
    }
    with api.api:
        env["ANTHROPIC_BASE_URL"] = api.api.url
        proc = subprocess.run(
            [cli, "run", "--quiet", orjson.dumps(config(warm)).decode()], env=env, cwd=tmp, capture_output=True
        )
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    run_dir = next((state / "runs").iterdir())
    events = [orjson.loads(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]
    ended = {e["task_id"]: _ts(e["ts"]) for e in events if e["event"] == "task-end"}
    latency = [api.first_request[tid] - ended[CHAIN[i - 1]] for i, tid in enumerate(CHAIN) if i]
    report = orjson.loads((run_dir / "report.json").read_bytes())
    return {
        "makespan_s": float(report["execution_summary"]["total_time_s"]),
        "latency_s": latency,
        "warm_used": sum(1 for e in events if e["event"] == "task-warm-used"),
    }


def claude_version(claude: str) -> str:
    out = subprocess.run([claude, "--version"], capture_output=True, text=True, timeout=60).stdout
    return out.split(" ", 1)[0].strip()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--claude", default=str(ROOT / "node_modules" / ".bin" / "claude"))
    args = parser.parse_args()
    cli = find_cli("delegate-parallel")
    if cli is None or not Path(args.claude).exists():
        sys.exit("needs delegate-parallel (make install) and the claude CLI (npm install)")
    repeat = 1 if args.quick else args.repeat
    runs: dict[int, list[dict[str, Any]]] = {0: [], 4: []}
    with tempfile.TemporaryDirectory(prefix="awoc-bench-warm-") as tmp:
        for _ in range(repeat):
            for warm in (0, 4):
                runs[warm].append(one_run(cli, args.claude, warm, Path(tmp)))
    version = claude_version(args.claude)
    cold_make = statistics.median(r["makespan_s"] for r in runs[0])
    warm_make = statistics.median(r["makespan_s"] for r in runs[4])
    cold_lat = statistics.median(x for r in runs[0] for x in r["latency_s"])
    warm_lat = statistics.median(x for r in runs[4] for x in r["latency_s"])
    print(f"claude {version}, {repeat} run(s) each")
    print(f"makespan: {cold_make:.2f} s without the pool, {warm_make:.2f} s with it")
    print(f"dependency end -> first API request: {cold_lat:.2f} s without, {warm_lat:.2f} s with (median)")
    print(f"warm processes used per run: {[r['warm_used'] for r in runs[4]]}")
    figures = [
        Figure(
            "warm_pool.dependent_latency",
            f"warm pool: dependency end -> prompt at the API (claude {version})",
            round(warm_lat, 3),
            "s",
            baseline=round(cold_lat, 3),
            baseline_label="the same without the pool",
            ratio=warm_lat / cold_lat if cold_lat else None,
            goal=f"< {GOAL_S:g} s",
            met=warm_lat < GOAL_S,
            details={"runs": {f"warm_agents={k}": v for k, v in runs.items()}},
        ),
        Figure(
            "warm_pool.makespan",
            f"warm pool: makespan, chain of 4 + 4 (claude {version})",
            round(warm_make, 3),
            "s",
            baseline=round(cold_make, 3),
            baseline_label="the same without the pool",
            ratio=warm_make / cold_make if cold_make else None,
            goal="< baseline",
            met=warm_make < cold_make,
        ),
    ]
    emit(figures, args.json)


if __name__ == "__main__":
    main()
