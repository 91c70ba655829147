"""Expected failures and the exit codes they map to (one place, used by every command)."""

from __future__ import annotations

OK = 0
TASKS_FAILED = 1
BAD_INPUT = 2
ABORTED = 3
INTERNAL_ERROR = 4
INTERRUPTED = 130


class AwocError(Exception):
    """A failure the user can act on: printed as one line, never as a traceback."""

    exit_code = INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(AwocError):
    """Bad input or usage. Raised before any state is written."""

    exit_code = BAD_INPUT


class StateError(AwocError):
    """The run's files are missing or inconsistent (no current run, unknown run id...)."""

    exit_code = BAD_INPUT


class AbortedError(AwocError):
    exit_code = ABORTED


class DiskFull(AbortedError):
    """The disk (or quota) holding a file awoc writes is full: the run stops, and it is not a bug."""


class RunFolderGone(AbortedError):
    """Something removed the run's folder while it executed: the run stops, and it is not a bug."""


def disk_full(exc: BaseException) -> DiskFull | None:
    """EXC as a DiskFull when it is one (ENOSPC, EDQUOT), else None."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" (writing {exc.filename})" if exc.filename else ""
        return DiskFull(f"no space left on device{where}")
    return None


def unwritable(exc: BaseException) -> InputError | None:
    """EXC as bad input when it says a file cannot be written where the user put it (a read-only
    file system, no permission, a name too long), else None."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG):
        where = f" {shorten(str(exc.filename))}" if exc.filename else ""
        return InputError(f"cannot write{where}: {exc.strerror}")
    return None


def shorten(text: str, limit: int = 200) -> str:
    """TEXT for a message: a long one keeps its start and end, and says how much was left out."""
    if len(text) <= limit:
        return text
    half = (limit - 30) // 2
    return f"{text[:half]}[... {len(text) - 2 * half} characters ...]{text[-half:]}"


def located(source: str | None, path: str | None, message: str) -> str:
    """`file: json.path: message`, leaving out the parts that are unknown."""
    parts = [p for p in (source, path) if p]
    return ": ".join([*parts, message])


def problems_error(source: str, problems: list[tuple[str, str]], limit: int = 5) -> InputError:
    """One InputError naming a document's (json path, message) problems: the first few, and how many more."""
    if len(problems) == 1:
        path, message = problems[0]
        return InputError(located(source, path, message))
    lines = [f"{source}: {len(problems)} problems"]
    lines += [f"  {located(None, path, message)}" for path, message in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return InputError("\n".join(lines))
