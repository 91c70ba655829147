"""A run paused by a usage limit: nothing starts until the limit resets, and the time paused does
not count toward `total_timeout`. The reset is a wall-clock time (it comes from the provider and
must survive the orchestrator: state.json keeps it for `resume`)."""

from __future__ import annotations

from awoc_scripts.state.store import iso_of

DEFAULT_PAUSE_S = 300.0  # a usage limit that names no reset (or a past one): look again then
# a limit that never names its reset (a monthly spend limit, say) may need a person: after this
# many such pauses in a row it is an ordinary error, and total_timeout and retries apply again
MAX_BLIND_PAUSES = 3
LONGEST_PAUSE_S = 8 * 86400.0  # a weekly limit, with room; beyond that the text was misread


class RunPause:
    def __init__(self) -> None:
        self.until: float | None = None  # Unix time
        self._began_mono: float | None = None
        self._paused_before_s = 0.0
        self._blind_pauses = 0

    def note_success(self) -> None:
        self._blind_pauses = 0

    def may_pause(self, resets_at: float | None) -> bool:
        """Pause for this limit? Always when it says when it resets; else a few times in a row."""
        if resets_at is not None:
            self._blind_pauses = 0
            return True
        if self.until is not None:
            return True  # already paused: it only joins the pause
        self._blind_pauses += 1
        return self._blind_pauses <= MAX_BLIND_PAUSES

    @property
    def active(self) -> bool:
        return self.until is not None

    def begin(self, resets_at: float | None, now: float, now_mono: float, default_s: float = DEFAULT_PAUSE_S) -> bool:
        """Pause until RESETS_AT (or DEFAULT_S from now); True if this starts or extends the pause."""
        until = resets_at if resets_at is not None and now < resets_at <= now + LONGEST_PAUSE_S else now + default_s
        if self.until is not None and until <= self.until:
            return False
        if self._began_mono is None:
            self._began_mono = now_mono
        self.until = until
        return True

    def end_if_due(self, now: float, now_mono: float) -> bool:
        if self.until is None or now < self.until:
            return False
        self._paused_before_s += now_mono - (self._began_mono or now_mono)
        self.until, self._began_mono = None, None
        return True

    def paused_s(self, now_mono: float) -> float:
        current = now_mono - self._began_mono if self._began_mono is not None else 0.0
        return self._paused_before_s + current

    def until_iso(self) -> str | None:
        return iso_of(self.until) if self.until is not None else None
