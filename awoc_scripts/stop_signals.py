"""The signals that stop a command as Ctrl-C does: SIGINT, SIGTERM, and SIGHUP (its terminal or
connection went away), unless SIGHUP is ignored, as `nohup` leaves it: then the command outlives
its terminal, as it was asked to."""

from __future__ import annotations

import signal


def stopping_signals() -> tuple[signal.Signals, ...]:
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)
