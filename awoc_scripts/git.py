"""The one wrapper for git: every call awoc makes to a repository, with a plain C locale and no prompts.

Used by planning (which commit a run starts from), worktree isolation, the overlap report and
the merge queue. Nothing here changes the user's checkout except `merge`, which the merge
queue calls only when asked to merge.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from awoc_scripts.errors import AwocError

GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "awoc",
    "GIT_AUTHOR_EMAIL": "awoc@localhost",
    "GIT_COMMITTER_NAME": "awoc",
    "GIT_COMMITTER_EMAIL": "awoc@localhost",
}


class GitError(AwocError):
    pass


@dataclass(frozen=True)
class FileChange:
    """Lines added and removed in one file, as `git diff --numstat` counts them."""

    path: str
    added: int | None  # None for a binary file
    removed: int | None


@dataclass(frozen=True)
class MergeCheck:
    """Whether a branch would merge cleanly, without touching the checkout."""

    tree: str | None  # the merged tree when it merges cleanly
    conflicts: list[str]


def run_git(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    done = attempt(repo, *args, env=env)
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def attempt(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A git command that may fail for reasons the caller reads (a merge that conflicts, say)."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (isolation worktree needs it)") from None


# what a git command killed half-way can leave locked: the index, HEAD, the merge's state
_CHECKOUT_LOCKS = ("index", "HEAD", "ORIG_HEAD", "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "AUTO_MERGE")


def remove_locks_of_killed_git(repo: Path) -> None:
    """The lock files a git command killed half-way left in REPO's checkout, the current branch's
    ref and packed-refs included. Only after a git of ours was killed: a live one's locks are what
    keeps two from writing at once."""
    git_dir = Path(run_git(repo, "rev-parse", "--absolute-git-dir").strip())
    common = repo / run_git(repo, "rev-parse", "--git-common-dir").strip()
    branch_ref = run_git(repo, "symbolic-ref", "-q", "HEAD", check=False).strip()
    locks = [git_dir / f"{name}.lock" for name in _CHECKOUT_LOCKS] + [common / "packed-refs.lock"]
    if branch_ref:
        locks.append(common / f"{branch_ref}.lock")
    for lock in locks:
        lock.unlink(missing_ok=True)


def has_commit(repo: Path, commit: str) -> bool:
    return _ok(repo, "cat-file", "-e", f"{commit}^{{commit}}")


def current_branch(repo: Path) -> str | None:
    """The branch checked out at REPO, or None when its HEAD is detached."""
    ref = run_git(repo, "symbolic-ref", "--quiet", "HEAD", check=False).strip()
    return ref.removeprefix("refs/heads/") or None


def _ok(repo: Path, *args: str) -> bool:
    try:
        subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            env={**os.environ, **GIT_ENV},
            stdin=subprocess.DEVNULL,
            check=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    return True


def repo_root(path: Path) -> Path | None:
    try:
        out = run_git(path, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(out.strip())


def head_commit(repo: Path) -> str | None:
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip() or None
    except GitError:
        return None


def branch_commit(repo: Path, branch: str) -> str | None:
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}").strip() or None
    except GitError:
        return None


def uncommitted(path: Path) -> list[str]:
    """Changed, staged and untracked (not ignored) paths of the checkout at PATH."""
    out = run_git(path, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3]


def identity_env(repo: Path) -> dict[str, str]:
    """A committer identity when the repository has none configured (CI machines, fresh containers)."""
    if run_git(repo, "config", "user.email", check=False).strip():
        return {}
    return FALLBACK_IDENTITY


def commit_all(path: Path, message: str) -> str | None:
    """Commit everything changed or untracked in the checkout at PATH; the new commit, or None if clean."""
    if not uncommitted(path):
        return None
    run_git(path, "add", "-A")
    run_git(path, "commit", "--quiet", "--no-verify", "-m", message, env=identity_env(path))
    return run_git(path, "rev-parse", "HEAD").strip()


def commits_between(repo: Path, base: str, head: str) -> list[str]:
    return run_git(repo, "rev-list", "--reverse", f"{base}..{head}").split()


def files_changed(repo: Path, base: str, head: str) -> list[FileChange]:
    out = run_git(repo, "diff", "--numstat", "-z", "--no-renames", base, head)
    changes = []
    for entry in out.split("\0"):
        if not entry:
            continue
        added, removed, path = entry.split("\t", 2)
        changes.append(FileChange(path, None if added == "-" else int(added), None if removed == "-" else int(removed)))
    return changes


def merge_check(repo: Path, ours: str, theirs: str) -> MergeCheck:
    """Would THEIRS merge into OURS? Computed in the object store: no checkout changes."""
    done = subprocess.run(
        ["git", "-C", str(repo), "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = done.stdout.splitlines()
    if done.returncode == 0:
        return MergeCheck(lines[0].strip(), [])
    if done.returncode == 1:
        return MergeCheck(None, [line for line in lines[1:] if line.strip()])
    raise GitError(f"git merge-tree in {repo}: {done.stderr.strip()}")


def commit_tree(repo: Path, tree: str, parents: list[str], message: str) -> str:
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    return run_git(repo, *args, env=identity_env(repo)).strip()


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return _ok(repo, "merge-base", "--is-ancestor", ancestor, descendant)


@dataclass(frozen=True)
class Worktree:
    """One worktree of a repository, as `git worktree list` shows it."""

    path: Path
    branch: str | None
    head: str | None


def worktrees(repo: Path) -> list[Worktree]:
    found = []
    for block in run_git(repo, "worktree", "list", "--porcelain", "-z").split("\0\0"):
        fields = dict(line.partition(" ")[::2] for line in block.split("\0") if line)
        if "worktree" in fields:
            branch = fields.get("branch", "").removeprefix("refs/heads/") or None
            found.append(Worktree(Path(fields["worktree"]), branch, fields.get("HEAD")))
    return found
