"""Real agents stopped at a random moment (Ctrl-C, or SIGKILL of the orchestrator), then resumed.

Each seed makes a git repository and a run of 4-12 agent tasks run by the real claude CLI (the
pin in node_modules) against the tests' fake Messages API, whose model calls the tools a task's
description scripts: a Bash call that sleeps 0-4 s and then writes the task's file, after a Write
for some. Some tasks depend on others, some retry, some have a timeout shorter than their sleep,
some a verification that takes up to 1.5 s; they run 2-8 at once, in worktrees or in the
project. At 0.5-9 s the run gets SIGINT or SIGKILL (or nothing), then `delegate-parallel resume`
until the run has ended. It checks what a user is promised: no traceback, exit codes from the
README's table; nothing of the run left running after Ctrl-C or at the end; a task that had
succeeded before the resume is not run again (the model sees no new prompt for it); a task that
succeeded has its change where it ran; a task that did not succeed says why.

Usage: .venv/bin/python soak/interrupts.py [--seeds FIRST COUNT]   (10-20 s a seed on 2 cores)
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fakes"))

from agents import agent_env, on_branch, require_cli, run  # noqa: E402
from fake_messages_api import FakeMessagesAPI  # noqa: E402
from races import marked, soak  # noqa: E402
from tool_model import ToolModel, script_line  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = ToolModel()
API: FakeMessagesAPI | None = None
EXIT_CODES = {0, 1, 3, 130}  # README's table, less 2 (bad input) and 4 (a bug)


def tasks(rng: random.Random, count: int) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The tasks, and what each one's change is: (file, text it holds afterwards)."""
    made, change = [], {}
    for i in range(count):
        tid = f"t{i:02d}"
        command = f"sleep {rng.choice([0, 0.3, 1, 2.5, 4])} && mkdir -p out && echo {tid} > out/{tid}.txt"
        calls = [{"tool": "Bash", "input": {"command": command, "description": "work"}}]
        if rng.random() < 0.4:
            write = {"file_path": "{cwd}/" + f"w-{tid}.txt", "content": f"w {tid}\n"}
            calls.insert(0, {"tool": "Write", "input": write})
        change[tid] = (f"out/{tid}.txt", f"{tid}\n")
        task: dict[str, Any] = {"task_id": tid, "agent": "workforce", "description": f"Do {tid}.\n{script_line(calls)}"}
        if i and rng.random() < 0.3:
            task["dependencies"] = [f"t{rng.randrange(i):02d}"]
        if rng.random() < 0.25:
            task["timeout"] = rng.choice([2, 3.5])
        if rng.random() < 0.3:
            task["retries"] = 1
        if rng.random() < 0.3:  # a check that takes a moment, so that a stop may come during it
            task["verify"] = ["sh", "-c", f"sleep {rng.choice([0.2, 1.5])} && test -s {change[tid][0]}"]
        made.append(task)
    return made, change


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("tasks/*/result.json")}


def one(seed: int, folder: Path) -> tuple[str, list[str]]:
    assert API is not None
    rng = random.Random(seed)
    count, slots = rng.randint(4, 12), rng.randint(2, 8)
    repo = folder / "repo"
    repo.mkdir()
    (repo / "README").write_text("x\n")
    env = agent_env(folder, API)
    start = "git init -q -b main && git add -A && git commit -qm start"
    subprocess.run(start, shell=True, cwd=repo, env=env, check=True)
    made, change = tasks(rng, count)
    isolation = rng.choice(["worktree", "worktree", "process"])
    parallel = {"isolation": isolation, "max_concurrent": slots, "failure_tolerance": count}
    parallel |= {"batch_token_limit": 10**7, "total_timeout": 300}
    (folder / "tasks.json").write_text(json.dumps({"parallel_config": parallel, "tasks": made}))
    how, after = rng.choice(["SIGINT", "SIGINT", "SIGKILL", "nothing"]), rng.uniform(0.5, 9)
    what = f"{count} agents, {slots} at once, {isolation}, {how} at {after:.1f} s"
    problems: list[str] = []

    argv = [str(BIN / "delegate-parallel"), "run", "-q", str(folder / "tasks.json")]
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(after)
    except subprocess.TimeoutExpired:
        if how != "nothing":
            proc.send_signal(getattr(signal, how))
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        problems.append("the run did not end within 120 s of the signal")
    if "Traceback" in err or proc.returncode not in EXIT_CODES | {-signal.SIGKILL}:
        problems.append(f"run exited {proc.returncode}: {err[-600:]}")
    current = folder / "state" / "current"
    if not current.exists():
        return what, [*problems, "no current run"]
    run_dir = folder / "state" / "runs" / current.read_text().strip()
    if how == "SIGINT" and (left := marked(run_dir.name)):
        problems.append(f"left running after Ctrl-C: {left}")
    succeeded_before = {tid for tid, r in results(run_dir).items() if r["status"] == "succeeded"}
    prompted_before = {tid: len(MODEL.prompts.get(tid, [])) for tid in change}

    resumes = 0
    while resumes < 3:
        status = json.loads((run_dir / "state.json").read_text()).get("status")
        if status not in ("interrupted", "running"):
            break
        resumed = run(["delegate-parallel", "resume"], repo, env)
        resumes += 1
        if "Traceback" in resumed.stderr or resumed.returncode not in EXIT_CODES:
            problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-600:]}")
            break

    final = results(run_dir)
    for tid in sorted(succeeded_before):
        if len(MODEL.prompts.get(tid, [])) != prompted_before[tid]:
            problems.append(f"{tid} had succeeded before the resume and ran again")
    for tid, result in final.items():
        if result["status"] != "succeeded":
            if not (result.get("error") or result.get("reason")):
                problems.append(f"{tid} is {result['status']} and says no why")
            continue
        path, text = change[tid]
        if isolation == "worktree":
            shown = on_branch(repo, result, path)
        else:
            shown = (repo / path).read_text() if (repo / path).exists() else ""
        if text not in shown:
            problems.append(f"{tid} succeeded without its change to {path}")
    ended = json.loads((run_dir / "state.json").read_text()).get("status")
    counts: dict[str, int] = {}
    for result in final.values():
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    what += f"; {resumes} resume(s), {ended} {counts}"
    if ended in ("interrupted", "running"):
        problems.append(f"the run is still {ended} after {resumes} resumes")
    if left := marked(run_dir.name):
        problems.append(f"processes of the run left running: {left}")
    return what, problems


if __name__ == "__main__":
    require_cli()
    with FakeMessagesAPI(MODEL.respond) as API:
        sys.exit(soak("interrupts", __doc__, one))
