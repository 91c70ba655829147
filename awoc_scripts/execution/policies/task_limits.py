"""Each running task's own limits: its timeout, and (with stream-json) its token budget, counted
per model turn while it runs."""

from __future__ import annotations

from awoc_scripts.execution.outcomes import read_from
from awoc_scripts.execution.policies.base import LiveRun
from awoc_scripts.plan_types import Task
from awoc_scripts.state.task_states import BUDGET_EXCEEDED, TIMED_OUT

STREAM_CHECK_INTERVAL_S = 0.2


class TaskLimits:
    name = "task_limits"
    interval_s = 0.0  # deadlines on every pass; streams are read every STREAM_CHECK_INTERVAL_S

    def __init__(self, by_id: dict[str, Task]) -> None:
        self.by_id = by_id
        self._last_stream_check = 0.0

    def check(self, run: LiveRun, now: float) -> None:
        check_streams = now - self._last_stream_check >= STREAM_CHECK_INTERVAL_S
        if check_streams:
            self._last_stream_check = now
        for tid in run.running():
            rec = run.records[tid]
            if rec.stop_status:
                continue
            if rec.deadline is not None and now >= rec.deadline:
                run.stop_task(tid, TIMED_OUT, f"timed out after {self.by_id[tid]['timeout']:g} s")
            elif check_streams and rec.stream is not None and rec.files is not None:
                used = rec.stream.feed(read_from(rec.files.stdout, rec.stream.offset)).total
                if used > rec.budget:
                    run.stop_task(tid, BUDGET_EXCEEDED, f"used {used} tokens, over its budget of {rec.budget}")
