"""What /proc/<pid>/stat says about a process, with nothing but `os` imported: the run's claim
(state/store.py) asks whether its holder still runs, and must not load the process machinery."""

from __future__ import annotations

__all__ = ["process_gone", "stat_fields"]


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name, so that [0] is its state letter (the
    stat's third field), [1] its parent, [3] its session and [19] its start; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def process_gone(pid: int) -> bool:
    """Dead, or a zombie: it runs no more."""
    fields = stat_fields(pid)
    return fields is None or fields[0] == b"Z"
