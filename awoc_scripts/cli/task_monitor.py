"""parallel-task-monitor: watch task processes until they end; stop whole trees past a timeout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from awoc_scripts.cli.common import RunOption, StateDirOption, new_app, run_app

app = new_app("parallel-task-monitor", "Watch task processes: CPU, memory, state; stop them past a timeout.")


@app.command()
def monitor(
    pids: Annotated[
        list[str],
        typer.Argument(help='Process ids, task ids or agents of the run; also the "PID PID" TIMEOUT form.'),
    ],
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds; then each process left is stopped with its tree.", show_default=False),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between two JSON lines.")] = 2.0,
    run: RunOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Print one JSON line per interval (CPU %, RSS MB and state of each process tree), then a summary line.

    Exit codes: 0 every process ended by itself, 3 some had to be stopped at the timeout, 2 unknown pid or name.
    """
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.monitors.process_monitor import check_interval, resolve, split_monitor_args
    from awoc_scripts.monitors.process_monitor import monitor as watch
    from awoc_scripts.state.store import StateStore

    names, seconds = split_monitor_args(pids, timeout)
    check_interval(interval)
    items = resolve(names, StateStore(state_dir), run)
    sys.stderr.write(
        f"watching {len(items)} process(es)"
        + (f", stopping them after {seconds:g} s" if seconds is not None else "")
        + "\n"
    )
    code, summary = watch(items, seconds, interval, lambda line: print_json(line, pretty=False))
    print_json(summary, pretty=False)
    for item in summary["processes"]:
        who = f"{item['task_id']} (pid {item['pid']})" if item.get("task_id") else f"pid {item['pid']}"
        sys.stderr.write(f"{who}: {item['ended']}\n")
    raise typer.Exit(code)


@app.command()
def status(run: RunOption = None, state_dir: StateDirOption = None) -> None:
    """The current run's running tasks: pid, CPU %, RSS MB and process state of each task's tree."""
    from awoc_scripts.input.documents import print_json
    from awoc_scripts.launcher import command_for
    from awoc_scripts.monitors.process_monitor import running_tasks
    from awoc_scripts.state.store import StateStore

    data = running_tasks(StateStore(state_dir).open_run(run))
    print_json(data)
    sys.stderr.write(f"run {data['run_id']} ({data['status']}): {len(data['tasks'])} running task(s)\n")
    for task in data["tasks"]:
        if task.get("status") == "ended":
            sys.stderr.write(f"  {task['task_id']}: pid {task['pid']} has just ended (its end is being recorded)\n")
        elif task.get("status") == "gone":
            resume = command_for("delegate-parallel", "resume", data["run_id"])
            sys.stderr.write(f"  {task['task_id']}: pid {task['pid']} is gone and no orchestrator runs it: {resume}\n")
        else:
            sys.stderr.write(
                f"  {task['task_id']}: pid {task['pid']} {task['status']}, {task.get('cpu_percent', 0):g}% CPU, "
                f"{task.get('rss_mb', 0):g} MB\n"
            )


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
