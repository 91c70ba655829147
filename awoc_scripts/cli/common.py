"""What every command shares: the error-to-exit-code mapping and the common options."""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.main
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # Typer vendors click (pinned <0.29)

from awoc_scripts.errors import INTERNAL_ERROR, INTERRUPTED, AwocError, InputError, disk_full, unwritable
from awoc_scripts.stop_signals import stopping_signals

if TYPE_CHECKING:
    from collections.abc import Iterator

StateDirOption = Annotated[
    str | None,
    typer.Option(
        "--state-dir", help="State directory (default: $AWOC_STATE_DIR or ./.awoc/parallel).", show_default=False
    ),
]
BriefOption = Annotated[bool, typer.Option("--brief", help="Print a short summary instead of the whole document.")]
RunOption = Annotated[str | None, typer.Option("--run", help="Run id (default: the current run).", show_default=False)]
# Commands whose arguments mix our flags with task text take them raw and parse them in the core.
RAW_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def new_app(name: str, help_text: str) -> typer.Typer:
    app = typer.Typer(
        name=name,
        help=help_text,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain usage errors and help: rich is imported only to draw the live view
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # A group even with one command: the scripts' words stay subcommands (`validate`, `track`...).
    app.callback()(_no_group_options)
    return app


def _no_group_options() -> None:
    """The command's subcommands take every option."""


def one_of(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    """An option with a few possible values: anything else is exit 2, not a silent default."""
    if value is not None and value not in allowed:
        raise InputError(f"{option}: {value!r} is not one of {', '.join(allowed)}")  # as --priority says it


def finite_seconds(option: str, value: float) -> None:
    """Typer's ranges let nan through (every comparison with it is false)."""
    if value != value:
        raise InputError(f"{option}: expected a number of seconds, got nan")


MESSAGE_LINE_CHARS = 2000


def fail(message: str, code: int) -> NoReturn:
    from awoc_scripts.errors import shorten
    from awoc_scripts.terminal_text import shown_safely

    # an argument of 100 KB is named, not echoed back whole; what it holds never drives the terminal
    message = "\n".join(shorten(line, MESSAGE_LINE_CHARS) for line in shown_safely(message).split("\n"))
    with contextlib.suppress(OSError):  # nobody to tell: the exit code still says it
        sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


# a pipe whose reader left (`| head`), a terminal that went away (EIO): exit 1, as click does for the first
OUTPUT_GONE_EXIT = 1


def output_gone(exc: BaseException) -> bool:
    """EXC says that what this process writes to has gone: nobody reads it any more."""
    return isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EIO)


def drop_output() -> None:
    """Point stdout and stderr at /dev/null: what is still written, the interpreter's last flush
    included, goes nowhere instead of failing again."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


@contextlib.contextmanager
def unless_nobody_reads() -> Iterator[None]:
    """Around what a command prints after its work is done: if nobody reads it any more, or a stop
    signal cuts it short, the rest is dropped and the command's own exit code still stands (a
    finished run that says `succeeded` does not exit 130)."""
    try:
        yield
    except Interrupted:
        pass
    except OSError as exc:
        if not output_gone(exc):
            raise
        drop_output()


class Interrupted(AwocError):
    exit_code = INTERRUPTED


IMPORT_RECHECK_S = 0.005
_deferred: list[int] = []  # a stopping signal that came during an import, delivered again on SIGALRM


def _raise_interrupted(signum: int, frame: Any) -> None:
    """SIGINT, SIGTERM, SIGHUP: Interrupted (not KeyboardInterrupt: the CLI framework would turn
    that into exit code 1). Not inside an import, though: raised there, it reaches the C code of
    a module being loaded, which may not survive it (orjson's crashes the interpreter). It comes
    again once the import is done."""
    if _importing(frame):
        _deferred[:] = [signum]
        signal.setitimer(signal.ITIMER_REAL, IMPORT_RECHECK_S)
        return
    raise Interrupted("interrupted")


def _redeliver(signum: int, frame: Any) -> None:
    """SIGALRM: the signal deferred during an import, again, to whoever handles it by now (this
    module, or a run's loop)."""
    if not _deferred:
        return
    if _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, IMPORT_RECHECK_S)
        return
    signal.raise_signal(_deferred.pop())


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@functools.cache
def _command(app: typer.Typer, only: str | None = None) -> Any:  # a Command of the click that Typer vendors
    """Built once per app (and subcommand). Typer builds every subcommand's parameters, about 1 ms
    each: a call that names its subcommand gets a group of that one alone (the same group,
    options and usage), which takes 7 ms off each start of delegate-parallel's nine."""
    if only is not None:
        app = copy.copy(app)
        app.registered_commands = [info for info in app.registered_commands if _command_name(info) == only]
    return typer.main.get_command(app)


def _command_name(info: typer.models.CommandInfo) -> str:
    return info.name or typer.main.get_command_name(info.callback.__name__ if info.callback else "")


def _named_subcommand(app: typer.Typer, args: list[str] | None) -> str | None:
    """The subcommand the call names as its first word (our groups take no options of their own);
    None for anything else (no words, --help, a mistyped name), which the whole group answers."""
    words = sys.argv[1:] if args is None else args
    if not words or len(app.registered_commands) < 2:
        return None
    return words[0] if words[0] in {_command_name(info) for info in app.registered_commands} else None


def run_app(app: typer.Typer, args: list[str] | None = None) -> NoReturn:
    """Run a Typer app, mapping expected failures to exit codes and hiding tracebacks.

    Usage errors (a missing argument, an unknown option) are one `error:` line and exit 2 too.
    """
    # SIGTERM and SIGHUP (a closed terminal) as Ctrl-C: a merge puts the checkout back, a run stops its tasks
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in stopping_signals()}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _redeliver)
    try:
        command = _command(app, _named_subcommand(app, args))
        code = command(args=args, prog_name=app.info.name, standalone_mode=False)
    except AwocError as exc:
        fail(exc.message, exc.exit_code)
    except NoArgsIsHelpError as exc:
        sys.stderr.write(exc.format_message() + "\n")  # the help, as the command was given no arguments
        raise SystemExit(exc.exit_code) from None
    except ClickException as exc:
        fail(f"{exc.format_message()} (see {app.info.name} --help)", exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one place a bug becomes exit code 4
        if output_gone(exc):
            drop_output()
            raise SystemExit(OUTPUT_GONE_EXIT) from None
        expected = disk_full(exc) or unwritable(exc)
        if expected is not None:
            fail(expected.message, expected.exit_code)
        _report_bug(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deferred.clear()
        for sig, handler in previous.items():
            if args is None and sig != signal.SIGALRM:
                # a command line's process ends now, its work done: a stop signal in its last
                # milliseconds would only replace the exit code that says how it went
                signal.signal(sig, signal.SIG_IGN)
            else:
                quiet_start = sig == signal.SIGINT and handler == signal.SIG_DFL  # as the package set it
                signal.signal(sig, signal.default_int_handler if quiet_start else handler)
    raise SystemExit(code if isinstance(code, int) else 0)


def _report_bug(exc: Exception) -> NoReturn:
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="awoc-crash-", suffix=".log", delete=False) as log:
        traceback.print_exception(exc, file=log)
    fail(f"internal error: {exc!r} (traceback in {log.name})", INTERNAL_ERROR)
