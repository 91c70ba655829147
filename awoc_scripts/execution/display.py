"""What a person sees while a run executes: a live view on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from awoc_scripts.state.statuses import PENDING, RUNNING, SUCCEEDED
from awoc_scripts.terminal_text import shown_safely

if TYPE_CHECKING:
    from collections.abc import Callable

LIVE_REFRESH_S = 0.25


class PlainDisplay:
    """One line per event on stderr: readable in CI logs and when piped."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.lost = False  # where it writes went away (a closed window, a dropped connection, a full disk)

    def _write(self, write: Callable[[], object]) -> None:
        """Every write goes through here. One that fails loses the display, never the run: from
        then on it shows nothing, and the run still ends as it should."""
        if self.lost:
            return
        try:
            write()
        except OSError:
            self.lost = True

    def _line(self, text: str) -> None:
        if not self.quiet:
            self._write(lambda: self._print(f"[{time.monotonic() - self.t0:7.2f}s] {shown_safely(text)}\n"))

    def _print(self, line: str) -> None:
        self.stream.write(line)
        self.stream.flush()

    def begin(self, orch: Any) -> None:
        machine = orch.machine
        self.t0 = machine.started_mono
        self._line(
            f"run {orch.run.run_id}: {len(orch.tasks)} task(s), {machine.max_concurrent} at a time, "
            f"{machine.settings.total_token_budget} tokens in total"
        )

    def task_started(self, tid: str, rec: Any) -> None:
        self._line(f"start {tid} (attempt {rec.attempts}, pid {rec.pid}, budget {rec.budget})")

    def task_ended(self, tid: str, status: str, rec: Any) -> None:
        detail = f", {rec.tokens.total} tokens" if rec.tokens.total else ""
        why = (
            f": {(rec.error or rec.reason or '').splitlines()[0][:160]}"
            if status != SUCCEEDED and (rec.error or rec.reason)
            else ""
        )
        self._line(f"{status:<15} {tid}{detail}{why}")

    def note(self, text: str) -> None:
        self._line(text)

    def tick(self, orch: Any) -> None:
        pass

    def end(self, orch: Any) -> None:
        summary = orch.summary()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
        self._line(
            f"run {summary['status']} in {summary['elapsed_s']:.1f} s: {counts}; {summary['tokens_used']} tokens"
        )


class LiveDisplay(PlainDisplay):
    """rich: one line per running task, the counts, tokens and elapsed time, redrawn in place."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True)
        # redrawn by tick() in the loop's own thread, not by rich's thread: every write is guarded
        self.live = Live(
            console=self.console, auto_refresh=False, transient=True, redirect_stdout=False, redirect_stderr=False
        )
        self._last = 0.0

    def _line(self, text: str) -> None:
        from rich.text import Text

        line = Text.assemble((f"{time.monotonic() - self.t0:7.2f}s ", "dim"), shown_safely(text))
        self._write(lambda: self.console.print(line, highlight=False))

    def begin(self, orch: Any) -> None:
        self._write(self.live.start)
        super().begin(orch)

    def task_started(self, tid: str, rec: Any) -> None:
        pass  # the live table shows it

    def tick(self, orch: Any) -> None:
        now = time.monotonic()
        if now - self._last >= LIVE_REFRESH_S:
            self._last = now
            self._write(lambda: self.live.update(self._render(orch), refresh=True))

    def _render(self, orch: Any) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        status = orch.machine.scheduler.status
        counts: dict[str, int] = {}
        for s in status.values():
            counts[s] = counts.get(s, 0) + 1
        spent = sum(r.counted for r in orch.records.values())
        now = time.monotonic()
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("task", "agent", "elapsed", "tokens", "budget"):
            table.add_column(column, justify="left" if column in ("task", "agent") else "right")
        for tid in orch.executor.running():
            rec = orch.records[tid]
            used = rec.stream.counted() if rec.stream else rec.counted  # what counts against its budget
            table.add_row(
                tid, orch.by_id[tid]["agent"], f"{now - (rec.start_mono or now):.1f}s", str(used), str(rec.budget)
            )
        other = sum(n for s, n in counts.items() if s not in (RUNNING, PENDING, SUCCEEDED))
        parts = [
            f"{counts.get(RUNNING, 0)} running",
            f"{counts.get(PENDING, 0)} waiting",
            f"{counts.get(SUCCEEDED, 0)} done",
            f"{other} other",
            f"tokens {spent}/{orch.machine.settings.total_token_budget}",
            f"{now - orch.machine.started_mono:.1f}s",
        ]
        return Group(table, Text(fit_footer(parts, self.console.width), no_wrap=True, overflow="ellipsis"))

    def end(self, orch: Any) -> None:
        self._write(self.live.stop)
        super().end(orch)


def fit_footer(parts: list[str], width: int) -> str:
    """The live view's footer in one line of WIDTH: whole parts only, the last ones dropped first."""
    shown: list[str] = []
    for part in parts:
        if len(" | ".join([*shown, part])) > width:
            break
        shown.append(part)
    return " | ".join(shown)


def make_display(quiet: bool = False) -> PlainDisplay:
    if not quiet and sys.stderr.isatty():
        return LiveDisplay()
    return PlainDisplay(quiet=quiet)
