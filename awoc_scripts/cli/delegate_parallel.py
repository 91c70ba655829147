"""delegate-parallel: the whole flow in one process (run, resume, status)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from awoc_scripts.cli.common import (
    RAW_ARGS,
    RunOption,
    StateDirOption,
    finite_seconds,
    new_app,
    one_of,
    run_app,
    unless_nobody_reads,
)

if TYPE_CHECKING:
    from awoc_scripts.flow.runs import RunSummary

app = new_app("delegate-parallel", "Run many agent tasks at once: dependencies, budgets, timeouts, one report.")

ExecutorOption = Annotated[
    str | None, typer.Option("--executor", help="Where tasks run: local or dask (default: the config's, else local).")
]
SchedulerOption = Annotated[
    str | None, typer.Option("--scheduler", help="The Dask scheduler, tcp://HOST:PORT (with --executor dask).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


def one_run(argument: str | None, option: str | None) -> str | None:
    """RUN as an argument or as --run RUN (as every other script takes it); not two different ones."""
    from awoc_scripts.errors import InputError

    if argument and option and argument != option:
        raise InputError(f"two runs named: {argument} and --run {option}; name one")
    return argument or option


RunArgument = Annotated[str | None, typer.Argument(help="Run id (default: the current run).", show_default=False)]
FormatOption = Annotated[str, typer.Option("--format", help="json or text.")]
StatusFormatOption = Annotated[
    str | None, typer.Option("--format", help="json or text (default: text on a terminal, else json).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON even on a terminal.")]


@app.command(context_settings=RAW_ARGS)
def prepare(
    ctx: typer.Context,
    state_dir: StateDirOption = None,
    args_on_stdin: Annotated[
        bool,
        typer.Option(
            "--args-on-stdin",
            help="Read the arguments as one line of text from stdin and split it as a shell would, "
            "expanding nothing ($HOME, $(...) and backticks stay text).",
        ),
    ] = False,
    for_claude: Annotated[
        bool,
        typer.Option(
            "--for-claude",
            help="Markdown for the slash command, and exit 0 even when refused (the refusal is the text).",
        ),
    ] = False,
) -> None:
    """Validate, plan and save a run without starting it; print its summary and the commands that follow.

    ARGS as for `run`. The slash command's only shell step: `start RUN` executes the run afterwards.
    """
    from awoc_scripts.errors import AwocError
    from awoc_scripts.flow.prepare import prepare_run, prepared_summary, refusal_markdown, summary_markdown
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.state.store import StateStore

    try:
        args = ctx.args
        if args_on_stdin:
            from awoc_scripts.input.command_arguments import split_command_arguments

            args = [*split_command_arguments(sys.stdin.read()), *args]
        run_files, plan, execution = prepare_run(StateStore(state_dir), args)
    except AwocError as exc:
        if not for_claude:
            raise
        # a shell step that exits non-zero ends the slash command with no word to the user
        print(refusal_markdown(exc.message))
        raise typer.Exit(0) from None
    summary = prepared_summary(run_files, plan, execution)
    if for_claude:
        print(summary_markdown(summary))
    else:
        print_json(summary)
        for warning in execution["warnings"]:
            sys.stderr.write(f"warning: {warning}\n")


@app.command()
def wait(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait at most.", min=0, max=86400)] = 100,
    state_dir: StateDirOption = None,
    output: FormatOption = "text",
) -> None:
    """Block until RUN has ended or TIMEOUT seconds passed, then print where it stands.

    Exit codes: the run's own once it ended (0 succeeded, 1 some failed, 3 aborted, 130 interrupted),
    124 when the timeout passed first (run `wait` again).
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.launcher import command_for
    from awoc_scripts.state.status_command import status_text
    from awoc_scripts.state.store import StateStore
    from awoc_scripts.state.wait_command import wait_for_run

    finite_seconds("--timeout", timeout)
    one_of("--format", output, ("text", "json"))
    outcome = wait_for_run(StateStore(state_dir), one_run(run_id, run_option), timeout)
    data = outcome.status
    if output == "json":
        print_json({**data, "ended": outcome.ended})
    else:
        print(status_text(data))
        rid = data["run_id"]
        report = command_for("delegate-parallel", "report", rid)
        if outcome.ended and data.get("next"):
            status = data["status"]
            print(f"The run has ended ({status}) before its tasks did. Continue it: {data['next']}; so far: {report}")
        elif outcome.ended:
            print(f"The run has ended ({data['status']}). Next: {report}")
        else:
            again = command_for("delegate-parallel", "wait", rid, "--timeout", f"{timeout:g}")
            print(f"Still not ended after {timeout:g} s. Wait again: {again}")
    raise typer.Exit(outcome.exit_code)


@app.command(context_settings=RAW_ARGS)
def run(
    ctx: typer.Context,
    state_dir: StateDirOption = None,
    executor: ExecutorOption = None,
    scheduler: SchedulerOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Validate, plan and execute tasks: a config file or "agent:description" arguments (as the slash command).

    \b
    ARGS: one config file (or - or JSON text), or "agent:description" tasks, with these flags anywhere:
      --max-parallel=N       tasks at once (max_concurrent)
      --timeout=S            total timeout in seconds (also each task's default)
      --total-budget=N       total token budget
      --failure-tolerance=N  failed tasks tolerated before the run aborts
      --format=F             structured, markdown or research_report
      --batch-token-limit=N  token budgets in flight at once
      --retries=N            retries per failed task
      --isolation=MODE       process (default) or worktree: each task in its own git worktree and branch
      --keep-worktrees       keep the worktrees when the run ends (their branches always stay)
      --merge                when the run ends, merge the succeeded branches (parallel_config.merge)
      --priority=LEVEL       critical, high, medium or low for the inline tasks after it
      --then                 the tasks after it wait for every task before it
      --for-each=GLOB        the agent:task after it becomes one task per file ({item}, {index})
      --wait-for-research    the tasks after it that are not docs-fetcher wait for every docs-fetcher task
    Both --flag=value and --flag value work.

    \b
    Exit codes: 0 every task succeeded; 1 the run finished but some task did not succeed (failed,
    timed out, over budget, cancelled by a policy or a lever, skipped); 2 bad input; 3 aborted
    (failure tolerance exceeded, total timeout, token or money budget exhausted, disk full); 4 internal
    error; 130 interrupted.
    """
    from awoc_scripts.execution.display import make_display
    from awoc_scripts.execution.executors.base import Executor
    from awoc_scripts.flow.prepare import prepare_run
    from awoc_scripts.flow.runs import ExecutorChoice, execute_run, make_executor
    from awoc_scripts.state.store import StateStore

    made: list[Executor] = []  # connected (to a Dask scheduler, say) before the run is saved
    choice = ExecutorChoice(executor, scheduler)
    run_files, plan, execution = prepare_run(
        StateStore(state_dir), ctx.args, lambda p: made.append(make_executor(choice, p))
    )
    chosen = made[0]
    for warning in execution["warnings"]:
        sys.stderr.write(f"warning: {warning}\n")
    code, summary = execute_run(run_files, plan, execution, chosen, make_display(quiet))
    _finish(summary, _merged_if_asked(run_files, plan, summary, code), quiet, as_json)


def _merged_if_asked(run: Any, plan: Any, summary: RunSummary, code: int) -> int:
    """With merge.auto (run --merge), a run that finished merges: its exit code becomes 1 if a branch stayed out."""
    if not (plan["parallel_config"].get("merge") or {}).get("auto") or code not in (0, 1):
        return code
    return max(code, _merge_when_ended(run, plan, summary))


def _merge_when_ended(run: Any, plan: Any, summary: RunSummary) -> int:
    """`run --merge`: the succeeded branches land in the checkout, with the gate, as `merge` does."""
    from awoc_scripts.errors import AwocError
    from awoc_scripts.results.merge_queue import merge_options, merge_run, merge_text
    from awoc_scripts.results.report import report_run

    if plan.get("git") is None:
        return 0
    try:
        code, merged = merge_run(run, merge_options(plan, False, None, None))
    except AwocError as exc:
        summary["merge"] = {"error": exc.message}
        sys.stderr.write(f"merge: {exc.message}\n")
        return 1
    report_run(run)
    summary["merge"] = {"landed": merged["landed"], "set_aside": merged["set_aside"], "head": merged["head"]}
    sys.stderr.write(merge_text(merged) + "\n")
    return code


def _finish(summary: RunSummary, code: int, quiet: bool, as_json: bool) -> None:
    """JSON for programs; on a terminal, a few lines for people (the report has the rest)."""
    from awoc_scripts.input.documents import print_json

    with unless_nobody_reads():  # the run's own exit code still says how it ended
        if as_json or not sys.stdout.isatty():
            print_json(summary)
            if not quiet:
                sys.stderr.write(f"report: {summary['report_md']}\n")
        else:
            print(human_summary(summary), flush=True)
    raise typer.Exit(code)


def human_summary(summary: RunSummary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
    done = summary["execution_summary"]
    lines = [
        f"run {summary['run_id']} {summary['status']}: {counts}",
        f"time {done['total_time']}, time saved {done['time_saved']} ({done['efficiency_gain']}); "
        f"{summary['tokens_used']} tokens, ${summary['cost_usd']:.4f}",
    ]
    if summary.get("stop_reason"):
        lines.append(f"stopped because: {summary['stop_reason']}")
    lines.append(f"report: {summary['report_md']}")
    return "\n".join(lines)


@app.command()
def start(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    state_dir: StateDirOption = None,
    executor: ExecutorOption = None,
    scheduler: SchedulerOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Execute a run that `prepare` (or `parallel-task-parser validate`) saved. Exit codes as for `run`."""
    _execute_saved_run(one_run(run_id, run_option), state_dir, executor, scheduler, quiet, as_json, resume=False)


@app.command()
def resume(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    state_dir: StateDirOption = None,
    executor: ExecutorOption = None,
    scheduler: SchedulerOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Run again every task of RUN that did not succeed; finished tasks keep their results."""
    _execute_saved_run(one_run(run_id, run_option), state_dir, executor, scheduler, quiet, as_json, resume=True)


def _execute_saved_run(
    run_id: str | None,
    state_dir: str | None,
    executor: str | None,
    scheduler: str | None,
    quiet: bool,
    as_json: bool,
    resume: bool,
) -> None:
    from awoc_scripts.execution.display import make_display
    from awoc_scripts.flow.runs import ExecutorChoice, execute_run, load_for_resume, make_executor
    from awoc_scripts.state.store import StateStore

    run_files, plan, execution = load_for_resume(StateStore(state_dir), run_id)
    chosen = make_executor(ExecutorChoice(executor, scheduler), plan)
    code, summary = execute_run(run_files, plan, execution, chosen, make_display(quiet), resume=resume)
    _finish(summary, _merged_if_asked(run_files, plan, summary, code), quiet, as_json)


@app.command()
def status(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    state_dir: StateDirOption = None,
    output: StatusFormatOption = None,
) -> None:
    """Where a run stands: each task's state, tokens against budgets, whether it is executing."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.state.status_command import run_status, status_text
    from awoc_scripts.state.store import StateStore

    one_of("--format", output, ("text", "json"))
    data = run_status(StateStore(state_dir), one_run(run_id, run_option))
    if (output or ("text" if sys.stdout.isatty() else "json")) == "text":
        print(status_text(data))
    else:
        print_json(data)


@app.command()
def report(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    state_dir: StateDirOption = None,
    output: Annotated[str, typer.Option("--format", help="json, markdown or research_report.")] = "markdown",
) -> None:
    """Print a run's report again (written anew from its results if missing)."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.results.report import load_or_create_report, markdown_for
    from awoc_scripts.state.store import StateStore
    from awoc_scripts.terminal_text import shown_safely

    one_of("--format", output, ("markdown", "json", "research_report"))
    data, markdown = load_or_create_report(StateStore(state_dir).open_run(one_run(run_id, run_option)))
    if output == "json":
        print_json(data)
    else:
        text = markdown if output == "markdown" else markdown_for(data, output)
        sys.stdout.write(shown_safely(text) + "\n")


@app.command()
def merge(
    run_id: RunArgument = None,
    run_option: RunOption = None,
    state_dir: StateDirOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Work out the same result, gate included; change nothing.")
    ] = False,
    gate: Annotated[
        str | None, typer.Option("--gate", help="A shell command that must pass after each merge (sh -c).")
    ] = None,
    into: Annotated[
        str | None, typer.Option("--into", help="Merge into this branch, not the one the run started from.")
    ] = None,
    resolve_with: Annotated[
        str | None,
        typer.Option("--resolve-with", help="An agent that resolves each branch set aside by a conflict or the gate."),
    ] = None,
) -> None:
    """Merge the succeeded worktree tasks' branches into the branch the run started from, one at a time.

    \b
    In dependency order, then priority. A branch that conflicts, fails the gate, or depends on a
    branch set aside is set aside with the reason, and merging goes on; nothing is left half-merged.
    With --resolve-with AGENT, each branch set aside by a conflict or the gate goes to that agent in
    a scratch worktree holding the conflict; its resolution lands if the gate passes on it.
    Defaults from parallel_config.merge. A second merge tries again what was set aside and skips
    what landed.
    Exit codes: 0 every succeeded branch landed (or would); 1 some were set aside; 2 bad input
    (no worktree tasks, uncommitted changes, a merge in progress, another branch checked out).
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.results.merge_queue import merge_options, merge_run, merge_text
    from awoc_scripts.results.report import report_run
    from awoc_scripts.state.store import StateStore

    run = StateStore(state_dir).open_run(one_run(run_id, run_option))
    code, summary = merge_run(run, merge_options(run.read_plan(), dry_run, gate, into, resolve_with))
    if not dry_run:
        report_run(run)  # its Merge section
    print_json(summary)
    sys.stderr.write(merge_text(summary) + "\n")
    raise typer.Exit(code)


@app.command()
def install(
    directory: Annotated[str, typer.Argument(help="The project to install into.")] = ".",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace existing agent definitions and a /delegate-parallel command of the project's own.",
        ),
    ] = False,
) -> None:
    """Put the /delegate-parallel command and the architect, docs-fetcher and workforce agents into DIR/.claude/."""
    from pathlib import Path

    from awoc_scripts.claude_code.install import install as install_into
    from awoc_scripts.input.documents import print_json

    done = install_into(Path(directory), force)
    print_json(done)
    sys.stderr.write(
        f"installed /delegate-parallel into {done['installed_into']}/.claude ({len(done['written'])} files)\n"
    )


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
