"""Thin Typer adapters: parse arguments, call the core, render. No logic lives here."""

import signal as _signal

# Ctrl-C while a command starts ends it quietly, as it ends any program, not with the traceback of
# an import; run_app takes SIGINT over from there and gives Python's own handler back when done
try:
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
except ValueError:  # not the main thread: it cannot, and it has no Ctrl-C to take
    pass
