"""Never pay twice for the same work: a task that succeeded in an earlier run with the same key
is not started again; its result is reused.

The key is a hash of everything that decides a task's result: the runner and the agent's
definition as the command line carries them (program, system prompt, model, tools, permissions),
the prompt as it would be sent (shared context, description, context, dependency results), the
command and verify argv, awoc's variables for the task, and the files it works on: for a worktree
task the tree of the commit it starts from; for a process task in a git repository HEAD's tree
with every uncommitted change (tracked or not, ignored files aside); outside git, the names, sizes
and modification times of the files under its directory (past MAX_LISTED files it is not cached).

Entries live in <state root>/cache/, one file each, written under the cache's lock; at most
MAX_ENTRIES are kept (the oldest go). An entry that cannot be read costs only itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import orjson

from awoc_scripts import PLAN_SCHEMA
from awoc_scripts.state.shapes import result_problem
from awoc_scripts.state.store import atomic_write_json, file_lock, now_iso, read_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from awoc_scripts.execution.claude_cli import Invocation
    from awoc_scripts.plan_types import Task
    from awoc_scripts.run_documents import TaskResult

MAX_ENTRIES = 10_000
BOUND_EVERY = 500  # stores between two counts of the entries (a count lists the whole folder)
MAX_LISTED = 20_000
KEY_VERSION = 1
# awoc's variables that name this run's files, not what the task is asked: left out of the key
PER_RUN_VARIABLES = frozenset(
    {"AWOC_RUN_ID", "AWOC_TASK_ID", "AWOC_PROMPT_FILE", "AWOC_TASK_DIR", "AWOC_COST_BUDGET_USD"}
)


class CachedResult(TypedDict):
    """<state>/cache/<key>.json: a succeeded task's result, under the key of what made it."""

    schema: str
    kind: str
    key: str
    run_id: str  # the run that produced it
    stored_at: str
    result: TaskResult


class ResultCache:
    def __init__(self, state_root: Path) -> None:
        self.dir = state_root / "cache"
        self._stored = 0  # by this process: the bound is checked at the first store and every BOUND_EVERY

    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def lookup(self, key: str) -> CachedResult | None:
        path = self._entry(key)
        try:
            entry = read_json(path, default=None) if path.exists() else None
        except Exception:  # noqa: BLE001 - a damaged entry costs only itself
            entry = None
            with contextlib.suppress(OSError):
                path.unlink()
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("run_id"), str):
            return None
        if result_problem(entry.get("result")) is not None or entry["result"].get("status") != "succeeded":
            return None  # damaged: it costs only itself
        return cast("CachedResult", entry)  # checked: it has the shape

    def store(self, key: str, run_id: str, result: Mapping[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.dir / "index"):
            path = self._entry(key)
            path.parent.mkdir(exist_ok=True)
            entry = {
                "schema": PLAN_SCHEMA,
                "kind": "cached-result",
                "key": key,
                "run_id": run_id,
                "stored_at": now_iso(),
            }
            atomic_write_json(path, {**entry, "result": result})
            if self._stored % BOUND_EVERY == 0:
                self._bound()
            self._stored += 1

    def _bound(self) -> None:
        entries = list(self.dir.glob("??/*.json"))
        if len(entries) <= MAX_ENTRIES:
            return

        def age(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                return 0.0

        for old in sorted(entries, key=age)[: len(entries) - MAX_ENTRIES + MAX_ENTRIES // 10]:
            with contextlib.suppress(OSError):
                old.unlink()


def cache_key(task: Task, invocation: Invocation, prompt: str, files: str) -> str:
    """The hash of what decides the task's result (see the module's docstring)."""
    import hashlib  # here and below: a run without the cache does not load OpenSSL (3 ms at start-up)

    argv = list(invocation.argv)
    if "--max-budget-usd" in argv:  # what is left of the money changes from run to run
        at = argv.index("--max-budget-usd")
        del argv[at : at + 2]
    variables = {k: v for k, v in invocation.env.items() if k.startswith("AWOC_") and k not in PER_RUN_VARIABLES}
    parts = {
        "version": KEY_VERSION,
        "runner": invocation.kind,
        "program": _program(argv[0]) if argv else None,
        "argv": argv,
        "prompt": prompt,
        "verify": task.get("verify"),
        "variables": variables,
        "files": files,
    }
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _program(name: str) -> list[Any]:
    """The program as a file: its path, size and time (a new version of the CLI is another runner)."""
    path = shutil.which(name) or name
    try:
        info = os.stat(path)
    except OSError:
        return [path]
    return [path, info.st_size, info.st_mtime_ns]


def worktree_files(repo: Path, base: str) -> str:
    from awoc_scripts import git

    return "tree " + git.run_git(repo, "rev-parse", f"{base}^{{tree}}").strip()


def directory_files(cwd: Path) -> str | None:
    """What the files a process task sees are: a git tree where it is a repository, else a listing.
    None: too many files to list (such a task is not cached)."""
    import hashlib

    from awoc_scripts import git

    root = git.repo_root(cwd)
    if root is not None:
        return f"worktree {_working_tree(root)} at {os.path.relpath(cwd, root)}"
    listing = []
    for folder, dirs, names in os.walk(cwd):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                listing.append((str(path.relative_to(cwd)), info.st_size, info.st_mtime_ns))
            if len(listing) > MAX_LISTED:
                return None
    return "listing " + hashlib.sha256(orjson.dumps(listing)).hexdigest()


def _working_tree(root: Path) -> str:
    """The tree of the checkout as it is: HEAD with every change, untracked files too (not ignored
    ones), from an index of its own that knows no file's size or time, so every file is read
    (trusting what the checkout's index remembers of sizes and times missed changes made in the
    same instant), and the checkout's own index is never touched."""
    import tempfile

    from awoc_scripts import git

    with tempfile.TemporaryDirectory(prefix="awoc-cache-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if git.head_commit(root) is not None:
            git.run_git(root, "read-tree", "HEAD", env=env)
        git.run_git(root, "add", "-A", env=env)
        return git.run_git(root, "write-tree", env=env).strip()
