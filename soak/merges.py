"""Merges interrupted at random moments: never half-merged, and the next merge finishes the job.

Each seed makes a git repository and a run of 2-6 worktree tasks (appends, one-line edits that may
conflict, new files; some depend on others), then starts `delegate-parallel merge` (with a gate
or without) and sends it SIGINT, SIGTERM, SIGHUP or SIGKILL at a random moment, or nothing. It
checks: no traceback and no exit code outside the README's; after any signal but SIGKILL, the
checkout is on its branch, clean, with no merge in progress; then a second merge exits 0 or 1
and leaves the checkout clean (it puts back what a killed merge left), and nothing of the run is
left running.

Usage: .venv/bin/python soak/merges.py [--seeds FIRST COUNT]   (2-4 s a seed)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from races import marked, soak

BIN = Path(sys.executable).parent
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
GATES = [None, "true", "sleep 0.5", "test ! -e new1.txt"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL, None]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **IDENTITY}
    ).stdout


def tasks(rng: random.Random) -> list[dict]:
    made = []
    for i in range(rng.randint(2, 6)):
        name, line = rng.choice("abcd"), rng.randrange(10)
        body = rng.choice(
            [
                f"echo task{i} >> {name}.txt",
                f"sed -i 's/^{name}{line}$/{name}{line} by task{i}/' {name}.txt",
                f"echo {i} > new{i}.txt",
            ]
        )
        task = {"task_id": f"t{i}", "agent": "workforce", "description": f"t{i}", "command": ["sh", "-c", body]}
        if i and rng.random() < 0.3:
            task["dependencies"] = [f"t{rng.randrange(i)}"]
        made.append(task)
    return made


def half_merged(repo: Path) -> str | None:
    status = git(repo, "status", "--porcelain")
    if (repo / ".git" / "MERGE_HEAD").exists() or status.strip():
        return status or "MERGE_HEAD"
    return None


def one(seed: int, folder: Path) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    repo = folder / "repo"
    repo.mkdir()
    for name in "abcd":
        (repo / f"{name}.txt").write_text("".join(f"{name}{i}\n" for i in range(10)))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    config = {"parallel_config": {"isolation": "worktree", "failure_tolerance": 10}, "tasks": tasks(rng)}
    (folder / "tasks.json").write_text(json.dumps(config))
    env = {**os.environ, **IDENTITY, "HOME": str(folder / "home"), "AWOC_STATE_DIR": str(folder / "state")}
    problems: list[str] = []
    ran = subprocess.run([str(BIN / "delegate-parallel"), "run", "-q", str(folder / "tasks.json")], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    if ran.returncode not in (0, 1):
        return "run", [f"run exit {ran.returncode}: {ran.stderr[-300:]}"]
    run_id = json.loads(ran.stdout)["run_id"]
    gate, sig = rng.choice(GATES), rng.choice(SIGNALS)
    merge = [str(BIN / "delegate-parallel"), "merge", *(["--gate", gate] if gate else [])]
    first = subprocess.Popen(merge, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0.05, 1.0))
    if sig is not None:
        first.send_signal(sig)
    out, err = first.communicate(timeout=120)
    early = first.returncode in (-1, -2, -15) and not out.strip()  # before its handlers: nothing done
    if (first.returncode not in (0, 1, 130, -9) and not early) or "Traceback" in err or "internal error" in err:
        problems.append(f"merge exit {first.returncode}: {err[-400:]}")
    time.sleep(0.2)
    if sig != signal.SIGKILL and (left := half_merged(repo)):
        problems.append(f"after {sig}: not clean: {left}")
    if sig != signal.SIGKILL and git(repo, "branch", "--show-current").strip() != "main":
        problems.append(f"after {sig}: not on main")
    second = subprocess.run(merge, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    if second.returncode not in (0, 1) or "Traceback" in second.stderr:
        problems.append(f"second merge exit {second.returncode}: {second.stderr[-400:]}")
    if left := half_merged(repo):
        problems.append(f"after the second merge: not clean: {left}")
    if marked(run_id):
        problems.append(f"processes left: {marked(run_id)}")
    return f"{sig.name if sig else 'no signal'}, gate {gate}", problems


if __name__ == "__main__":
    sys.exit(soak("merges", __doc__, one))
