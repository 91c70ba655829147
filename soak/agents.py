"""Many real agents at once in worktrees of one repository, then a merge: every good change lands.

Each seed makes a git repository and a run of 20-40 agent tasks run by the real claude CLI (the
pin in node_modules) against the tests' fake Messages API, whose model calls the tools a task's
description scripts: Write a new file, Read then Edit the task's own file or a shared one (those
may conflict), or Bash. 10-25 run at
once, so their sandboxes meet on the repository's one `.git` (anthropics/claude-code#79248).
Then `delegate-parallel merge`. It checks what a user is promised: no traceback, exit codes from
the README's table; a task that succeeded has its change on its branch, and it lands unless it
edited the shared file and conflicts (or depends on one that does); a task that did not succeed
says why; the checkout ends clean; nothing of the run is left running.

Usage: .venv/bin/python soak/agents.py [--seeds FIRST COUNT]   (about a minute a seed on 2 cores)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fakes"))

from fake_messages_api import FakeMessagesAPI  # noqa: E402
from races import marked, soak  # noqa: E402
from tool_model import ToolModel, script_line  # noqa: E402

BIN = Path(sys.executable).parent
# the pinned CLI, or AWOC_CLAUDE_VERSION's where `AWOC_CLAUDE_VERSION=X.Y.Z make test` installs it
VERSION = os.environ.get("AWOC_CLAUDE_VERSION")
CLAUDE = (
    REPO / "build" / f"claude-{VERSION}" / "node_modules" / ".bin" / "claude"
    if VERSION
    else REPO / "node_modules" / ".bin" / "claude"
)
INSTALL = f"AWOC_CLAUDE_VERSION={VERSION} make test" if VERSION else "make node_modules/.installed"
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
MODEL = ToolModel()
API: FakeMessagesAPI | None = None


def tasks(rng: random.Random, count: int) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The tasks, and what each one's change is: (file, text it holds afterwards)."""
    made, change = [], {}
    for i in range(count):
        tid = f"t{i:02d}"
        kind = rng.choice(["write", "edit", "bash", "write", "edit", "bash", "shared"])
        if kind == "write":
            calls = [{"tool": "Write", "input": {"file_path": "{cwd}/" + f"new-{tid}.txt", "content": f"by {tid}\n"}}]
            change[tid] = (f"new-{tid}.txt", f"by {tid}\n")
        elif kind == "edit":
            line = rng.randrange(4)
            edit = {"old_string": f"line{line}\n", "new_string": f"line{line} {tid}\n"}
            calls = [
                {"tool": "Read", "input": {"file_path": "{cwd}/" + f"f{i}.txt"}},
                {"tool": "Edit", "input": {"file_path": "{cwd}/" + f"f{i}.txt", **edit}},
            ]
            change[tid] = (f"f{i}.txt", f"line{line} {tid}\n")
        elif kind == "shared":
            line = rng.randrange(4)
            edit = {"old_string": f"line{line}\n", "new_string": f"line{line} {tid}\n"}
            calls = [
                {"tool": "Read", "input": {"file_path": "{cwd}/shared.txt"}},
                {"tool": "Edit", "input": {"file_path": "{cwd}/shared.txt", **edit}},
            ]
            change[tid] = ("shared.txt", f"line{line} {tid}\n")
        else:
            command = f"mkdir -p out && echo {tid} > out/{tid}.txt"
            calls = [{"tool": "Bash", "input": {"command": command, "description": "write out"}}]
            change[tid] = (f"out/{tid}.txt", f"{tid}\n")
        task: dict[str, Any] = {"task_id": tid, "agent": "workforce", "description": f"Do {tid}.\n{script_line(calls)}"}
        if kind != "shared" and i and rng.random() < 0.2:  # on the merged shared edit, the scripted Edit misses
            task["dependencies"] = [f"t{rng.randrange(i):02d}"]
        if rng.random() < 0.3:
            task["verify"] = ["test", "-e", change[tid][0]]
        made.append(task)
    return made, change


def agent_env(folder: Path, api: FakeMessagesAPI) -> dict[str, str]:
    """What the commands run with: a home and state of the seed's own, the pinned CLI, the fake API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDECODE"))}
    return (
        env
        | IDENTITY
        | {
            "HOME": str(folder),
            "AWOC_STATE_DIR": str(folder / "state"),
            "AWOC_CLAUDE_BIN": str(CLAUDE),
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_API_KEY": "sk-test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
    )


def on_branch(repo: Path, result: dict[str, Any], path: str) -> str:
    """What PATH holds on the branch of a task that ran in a worktree ("" without such a file)."""
    at = f"{result['worktree']['head']}:{path}"
    return subprocess.run(["git", "show", at], cwd=repo, capture_output=True, text=True).stdout


def require_cli() -> None:
    if not CLAUDE.exists():
        sys.exit(f"{CLAUDE} is missing: run {INSTALL}")


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)


def one(seed: int, folder: Path) -> tuple[str, list[str]]:
    assert API is not None
    rng = random.Random(seed)
    count, slots = rng.randint(20, 40), rng.randint(10, 25)
    repo = folder / "repo"
    repo.mkdir()
    for name in [*(f"f{i}.txt" for i in range(count)), "shared.txt"]:
        (repo / name).write_text("".join(f"line{j}\n" for j in range(4)))
    env = agent_env(folder, API)
    start = "git init -q -b main && git add -A && git commit -qm start"
    subprocess.run(start, shell=True, cwd=repo, env=env, check=True)
    made, change = tasks(rng, count)
    parallel = {"isolation": "worktree", "max_concurrent": slots, "retries": 1, "failure_tolerance": count}
    parallel |= {"batch_token_limit": 10**7, "total_timeout": 900}
    (folder / "tasks.json").write_text(json.dumps({"parallel_config": parallel, "tasks": made}))
    what = f"{count} agents, {slots} at once"
    problems: list[str] = []

    ran = run(["delegate-parallel", "run", "-q", str(folder / "tasks.json")], repo, env)
    if ran.returncode not in (0, 1) or "Traceback" in ran.stderr:
        return what, [f"run exited {ran.returncode}: {ran.stderr[-800:]}"]
    run_dir = folder / "state" / "runs" / (folder / "state" / "current").read_text().strip()
    results = {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("tasks/*/result.json")}
    succeeded = {tid for tid, r in results.items() if r["status"] == "succeeded"}
    for tid, result in results.items():
        if tid not in succeeded and not result.get("error"):
            problems.append(f"{tid} is {result['status']} and says no why")
        if tid in succeeded:
            path, text = change[tid]
            if text not in on_branch(repo, result, path):
                problems.append(f"{tid} succeeded without its change to {path}")
    sandbox = sum("sandbox failed to start" in " ".join(r.get("warnings") or []) for r in results.values())
    what += f", {len(succeeded)} succeeded, {sandbox} met a sandbox that failed to start"

    merged = run(["delegate-parallel", "merge"], repo, env)
    if merged.returncode not in (0, 1) or "Traceback" in merged.stderr:
        problems.append(f"merge exited {merged.returncode}: {merged.stderr[-800:]}")
    else:
        summary = json.loads(merged.stdout)
        landed, set_aside = set(summary["landed"]), {s["task_id"]: s for s in summary["steps"]}
        for tid in sorted(succeeded - landed):
            step = set_aside.get(tid, {})
            conflict = change[tid][0] == "shared.txt" and step.get("outcome") == "conflict"
            if not conflict and step.get("outcome") != "dependency set aside":
                problems.append(f"{tid} succeeded but did not land: {step}")
        if landed - succeeded:
            problems.append(f"landed {sorted(landed - succeeded)}, which did not succeed")
        for tid in landed:
            path, text = change[tid]
            if text not in (repo / path).read_text() if (repo / path).exists() else True:
                problems.append(f"{tid} landed without its change to {path}")
    if subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout:
        problems.append("the checkout is not clean after the merge")
    if left := marked(run_dir.name):
        problems.append(f"processes of the run left running: {left}")
    return what, problems


if __name__ == "__main__":
    require_cli()
    with FakeMessagesAPI(MODEL.respond) as API:
        sys.exit(soak("agents", __doc__, one))
