"""Every exit-code row of the README, through `delegate-parallel run`, and what a terminal shows.

0 every task succeeded; 1 the run finished but some task did not succeed; 2 bad input; 3 aborted;
130 interrupted (tests/test_engine.py signals a running orchestrator); 4 is kept for bugs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import command_task as task

from conftest import REPO


def sleep(seconds: float) -> list[str]:
    return [sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))", str(seconds)]


FAIL = [sys.executable, "-c", "raise SystemExit(3)"]


def run_config(cli, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    return result.code, (result.json() if result.stdout.strip() else {})


CASES = {
    "all succeeded": (0, "succeeded", {"tasks": [task("a", sleep(0)), task("b", sleep(0))]}),
    "one failed within the tolerance": (
        1,
        "finished_with_failures",
        {
            "parallel_config": {"failure_tolerance": 1, "retries": 0},
            "tasks": [task("a", sleep(0)), task("b", FAIL)],
        },
    ),
    "one skipped after a failure": (
        1,
        "finished_with_failures",
        {
            "parallel_config": {"failure_tolerance": 1, "retries": 0},
            "tasks": [task("a", FAIL), task("b", sleep(0), dependencies=["a"])],
        },
    ),
    "one timed out within the tolerance": (
        1,
        "finished_with_failures",
        {"parallel_config": {"failure_tolerance": 1, "retries": 0}, "tasks": [task("a", sleep(5), timeout=0.5)]},
    ),
    # the case, shorter: at 80% of the total timeout, what has not started is cancelled
    "cancelled by the time pressure policy": (
        1,
        "incomplete",
        {
            "parallel_config": {"max_concurrent": 1, "total_timeout": 5, "failure_tolerance": 0},
            "tasks": [task("vital", sleep(4.2), priority="critical")] + [task(f"t{i}", sleep(0.1)) for i in range(4)],
        },
    ),
    "tolerance exceeded": (
        3,
        "aborted",
        {
            "parallel_config": {"failure_tolerance": 0, "retries": 0},
            "tasks": [task("a", FAIL), task("b", sleep(3))],
        },
    ),
    "total timeout": (3, "aborted", {"parallel_config": {"total_timeout": 1}, "tasks": [task("a", sleep(10))]}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exit_code_and_status(cli, case: str) -> None:
    code, status, config = CASES[case]
    got, summary = run_config(cli, config)
    assert (got, summary.get("status")) == (code, status), summary


def test_cancelled_run_reports_no_time_saved_for_work_not_done(cli, state_dir: Path) -> None:
    _, summary = run_config(cli, CASES["cancelled by the time pressure policy"][2])
    report = orjson.loads(Path(summary["report_json"]).read_bytes())
    done = report["execution_summary"]
    succeeded = [t for t in report["task_results"] if t["status"] == "succeeded"]
    assert done["sequential_estimate_s"] == pytest.approx(sum(t["duration_s"] for t in succeeded), abs=0.01)
    assert done["time_saved_counts"] == "succeeded tasks only"
    assert [a["action"] for a in report["policy_actions"]] == ["emergency-prioritization"]


def test_an_aborted_run_where_nothing_succeeded_claims_no_time_saved(cli) -> None:
    config = {"parallel_config": {"total_timeout": 1}, "tasks": [task("a", sleep(10)), task("b", sleep(10))]}
    code, summary = run_config(cli, config)
    report = orjson.loads(Path(summary["report_json"]).read_bytes())
    assert code == 3 and report["execution_summary"]["time_saved"] == "n/a"
    assert report["execution_summary"]["time_saved_s"] is None
    assert "n/a (no task succeeded)" in Path(summary["report_md"]).read_text()


def test_the_critical_path_is_the_one_that_happened(cli) -> None:
    # equal timeouts plan the file order; the real long pole is the slow chain
    config = {
        "tasks": [
            task("quick", sleep(0)),
            task("quick-next", sleep(0), dependencies=["quick"]),
            task("slow", sleep(1)),
            task("slow-next", sleep(0.3), dependencies=["slow"]),
        ]
    }
    code, summary = run_config(cli, config)
    report = orjson.loads(Path(summary["report_json"]).read_bytes())
    assert code == 0
    assert report["critical_path_planned"] == ["quick", "quick-next"]
    assert report["critical_path_actual"] == ["slow", "slow-next"] and report["critical_path_actual_s"] >= 1.3
    assert "| Critical path | slow → slow-next (" in Path(summary["report_md"]).read_text()


def test_total_time_after_resume_leaves_out_the_idle_gap(cli, state_dir: Path) -> None:
    import time

    config = {"tasks": [task("a", sleep(0.2))]}
    code, summary = run_config(cli, {"parallel_config": {"total_timeout": 0.5}, "tasks": [task("a", sleep(5))]})
    assert code == 3
    time.sleep(2)  # the idle gap
    run_id = summary["run_id"]
    plan_file = state_dir / "runs" / run_id / "plan.json"
    plan = orjson.loads(plan_file.read_bytes())
    plan["tasks"][0]["command"] = config["tasks"][0]["command"]
    plan["tasks"][0]["timeout"] = 10
    plan["parallel_config"]["total_timeout"] = 10
    plan_file.write_bytes(orjson.dumps(plan))
    (state_dir / "runs" / run_id / "plan.json.crc32").unlink()  # changed on purpose: no seal to refuse it
    (state_dir / "runs" / run_id / "execution.json").unlink()
    again = cli("delegate-parallel", "resume", run_id, "-q")
    assert again.code == 0, again.stderr
    done = orjson.loads(Path(again.json()["report_json"]).read_bytes())["execution_summary"]
    assert done["total_time_s"] < 1.8, done  # two executions of about 0.5 s and 0.2 s, not the 2 s between
    assert done["wall_clock_time_s"] >= 2.5, done


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    main, sub = os.openpty()
    proc = subprocess.Popen(args, stdin=sub, stdout=sub, stderr=sub, env=env, close_fds=True)
    os.close(sub)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_text_not_json(state_dir: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    dp = str(REPO / "scripts" / "delegate-parallel.sh")
    config = orjson.dumps({"tasks": [task("a", sleep(0.3))]}).decode()
    code, screen = _on_a_terminal(["bash", dp, "run", config], env)
    assert code == 0, screen
    assert "run " in screen and " succeeded: 1 succeeded" in screen and "report: " in screen
    assert '"execution_summary"' not in screen
    code, screen = _on_a_terminal(["bash", dp, "status"], env)
    assert code == 0 and "succeeded;" in screen and '"run_id"' not in screen
    piped = subprocess.run(["bash", dp, "status"], capture_output=True, text=True, env=env)
    assert orjson.loads(piped.stdout)["status"] == "succeeded"


@pytest.mark.parametrize(
    "args, message",
    [
        (("delegate-parallel", "wait", "--timeout", "nan"), "--timeout: expected a number of seconds, got nan"),
        (("delegate-parallel", "wait", "--format", "xml"), "--format: 'xml' is not one of text, json"),
        (("delegate-parallel", "status", "--format", "xml"), "--format: 'xml' is not one of text, json"),
        (("delegate-parallel", "report", "--format", "xml"), "'xml' is not one of markdown, json, research_report"),
        (
            ("parallel-report-generator", "create-report", "--format", "xml"),
            "'xml' is not one of json, markdown, research_report",
        ),
        (("parallel-task-monitor", "monitor", "--interval", "nan", "a"), "--interval: expected seconds > 0"),
    ],
)
def test_an_option_outside_its_values_is_exit_2_not_a_default(cli, state_dir: Path, args, message: str) -> None:
    code, _ = run_config(cli, {"tasks": [task("a", ["true"])]})
    assert code == 0
    result = cli(*args)
    assert result.code == 2 and message in result.stderr, result.stderr


def test_a_state_directory_that_cannot_be_made_is_exit_2(cli) -> None:
    result = cli(
        "delegate-parallel",
        "run",
        "-q",
        "--state-dir",
        "/proc/self/awoc-state",
        '{"tasks": [{"agent": "qa", "description": "x", "command": ["true"]}]}',
    )
    assert result.code == 2, result.stderr
    assert "cannot make the state directory /proc/self/awoc-state" in result.stderr


# -- inputs that crashed with exit 4 ----------------------------------------------------------------


def test_a_task_that_runs_only_when_its_dependency_fails_is_planned(cli, state_dir: Path) -> None:
    config = {
        "parallel_config": {"failure_tolerance": 1},
        "tasks": [
            task("a", sleep(0)),
            task("b", sleep(0), dependencies=["a"], dependency_mode="conditional", condition={"when": "failure"}),
        ],
    }
    text = orjson.dumps(config).decode()
    planned = cli("parallel-resource-planner", "plan-execution", text)
    assert planned.code == 0, planned.stderr
    assert {t["task_id"]: t["estimated_start_s"] for t in planned.json()["tasks"]}["b"] is None
    assert cli("delegate-parallel", "prepare", text).code == 0
    ran = cli("delegate-parallel", "run", "-q", text)
    assert ran.code == 1 and ran.json()["counts"] == {"succeeded": 1, "skipped": 1}, ran.stderr


@pytest.mark.parametrize("name", ["current", "history.json"])
def test_a_folder_where_awoc_keeps_a_file_is_exit_2_and_writes_nothing(cli, state_dir: Path, name: str) -> None:
    (state_dir / name).mkdir(parents=True)
    result = cli("delegate-parallel", "run", "-q", orjson.dumps({"tasks": [task("a", sleep(0))]}).decode())
    assert result.code == 2 and f"{state_dir / name} is not a file" in result.stderr, result.stderr
    assert sorted(p.name for p in state_dir.iterdir()) == [name]


def test_an_over_long_path_is_exit_2_named_shortly(cli, tmp_path: Path) -> None:
    long_dir = str(tmp_path / ("d" * 5000))
    config = orjson.dumps({"tasks": [task("a", sleep(0))]}).decode()
    result = cli("delegate-parallel", "run", "-q", "--state-dir", long_dir, config)
    assert result.code == 2 and "File name too long" in result.stderr and len(result.stderr) < 1000, result.stderr
    install = cli("delegate-parallel", "install", str(tmp_path / ("p/" * 3000)))
    assert install.code == 2 and len(install.stderr) < 1000, install.stderr


@pytest.mark.parametrize("address", ["tcp://", "tcp://[::1", "inproc://x", "tcp://" + "h" * 300 + ":8786", "ucx://h:1"])
def test_a_malformed_scheduler_is_exit_2(cli, state_dir: Path, address: str) -> None:
    config = orjson.dumps({"tasks": [task("a", sleep(0))]}).decode()
    result = cli("delegate-parallel", "run", "-q", "--executor", "dask", "--scheduler", address, config)
    assert result.code == 2 and "--scheduler" in result.stderr and len(result.stderr) < 500, result.stderr
    assert not state_dir.exists()


def test_a_huge_bad_argument_is_not_echoed_back_whole(cli, state_dir: Path) -> None:
    result = cli("delegate-parallel", "run", "-q", "--bogus=" + "x" * 100_000)
    assert result.code == 2 and len(result.stderr) < 5000, len(result.stderr)


def test_every_command_that_names_a_run_takes_dash_dash_run(cli, state_dir: Path) -> None:
    prepared = cli("delegate-parallel", "prepare", orjson.dumps({"tasks": [task("a", sleep(0))]}).decode())
    run_id = prepared.json()["run_id"]
    cli("delegate-parallel", "prepare", orjson.dumps({"tasks": [task("b", sleep(0))]}).decode())  # now current
    assert cli("delegate-parallel", "status", "--run", run_id, "--format", "json").json()["run_id"] == run_id
    started = cli("delegate-parallel", "start", "--run", run_id, "-q")
    assert started.code == 0 and started.json()["run_id"] == run_id, started.stderr
    assert cli("delegate-parallel", "wait", "--run", run_id, "--timeout", "5").code == 0
    assert cli("delegate-parallel", "resume", "--run", run_id, "-q").code == 0
    assert f"`{run_id}`" in cli("delegate-parallel", "report", "--run", run_id).stdout
    both = cli("delegate-parallel", "status", run_id, "--run", "other")
    assert both.code == 2 and "two runs named" in both.stderr


def test_a_call_builds_only_the_subcommand_it_names() -> None:
    """Typer builds the parameters of every subcommand (about 1 ms each) before it runs one: a call
    that names its subcommand gets a group of that one alone, with the same parameters."""
    from awoc_scripts.cli import common
    from awoc_scripts.cli.delegate_parallel import app

    assert common._named_subcommand(app, ["status", "--format", "json"]) == "status"
    for words in ([], ["--help"], ["-h"], ["bogus"], ["--run", "status"]):
        assert common._named_subcommand(app, words) is None, words  # the whole group answers these
    whole = common._command(app)
    assert len(whole.commands) == len(app.registered_commands) > 1
    for name, command in whole.commands.items():
        alone = common._command(app, name)
        assert list(alone.commands) == [name]
        assert _described(alone.commands[name].params) == _described(command.params), name


def _described(params: list[Any]) -> list[tuple[Any, ...]]:
    return [(p.name, p.opts, p.secondary_opts, p.required, getattr(p, "help", None), repr(p.default)) for p in params]


def _read_only(path: Path) -> bool:
    for command in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,bind,ro", str(path)]):
        try:
            done = subprocess.run(command, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            subprocess.run(["umount", str(path)], capture_output=True, timeout=10)
            return False
    return True


def test_a_read_only_state_directory_is_exit_2_naming_the_file(cli, state_dir: Path) -> None:
    assert cli("delegate-parallel", "run", "-q", orjson.dumps({"tasks": [task("a", FAIL)]}).decode()).code == 1
    if not _read_only(state_dir):
        pytest.skip("cannot mount a read-only state directory here")
    try:
        for command in [
            ("delegate-parallel", "resume", "-q"),
            ("token-budget-reducer", "reduce-remaining-tasks", "10"),
            ("parallel-execution-aborter", "abort-with-partial-results"),
            ("parallel-report-generator", "create-report"),
            ("parallel-result-aggregator", "aggregate"),
        ]:
            result = cli(*command)
            assert result.code == 2 and "Read-only file system" in result.stderr, (command, result.stderr)
            assert "internal error" not in result.stderr
    finally:
        subprocess.run(["umount", str(state_dir)], capture_output=True, timeout=10)


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_task_that_deletes_the_runs_folder_stops_the_run_with_exit_3_and_says_so(cli, state_dir: Path) -> None:
    # as `git clean -x` in the project would; the other task's process must not outlive the run
    cleaner = ["sh", "-c", f'sleep 0.3; rm -rf "{state_dir}"']
    tasks = {"tasks": [task("cleaner", cleaner), task("long", sleep(30))]}
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(tasks).decode())
    assert result.code == 3, result.stderr
    assert "was deleted while the run executed" in result.stderr and "internal error" not in result.stderr


def test_ctrl_c_while_a_command_starts_ends_it_without_a_traceback(tmp_path: Path) -> None:
    """The signal lands while the command's modules load (the first tenth of a second)."""
    code = (
        "import os, signal; import awoc_scripts.cli; os.kill(os.getpid(), signal.SIGINT); "
        "from awoc_scripts.cli.delegate_parallel import main; main(['--help'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == -2 and "Traceback" not in done.stderr, done.stderr


def test_a_stop_signal_during_an_import_comes_after_it(tmp_path: Path) -> None:
    """Raised inside an import, Interrupted reaches the C code of the module being loaded, which may
    not survive it (orjson's module init crashed the interpreter: SIGSEGV). It comes once the
    import is done."""
    (tmp_path / "slow_module.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nTOTAL = sum(range(10**5))\n"
    )
    code = (
        "import signal, sys, time\n"
        "from awoc_scripts.cli import common\n"
        "signal.signal(signal.SIGTERM, common._raise_interrupted)\n"
        "signal.signal(signal.SIGALRM, common._redeliver)\n"
        "try:\n    import slow_module\nexcept common.Interrupted:\n    sys.exit('during the import')\n"
        "try:\n    time.sleep(10)\nexcept common.Interrupted:\n    print('after the import')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stdout == "after the import\n" and done.returncode == 0, done.stderr


def test_a_stop_signal_as_a_command_exits_leaves_its_exit_code(tmp_path: Path) -> None:
    """Its work is done: SIGTERM in the last milliseconds would make a finished merge exit -15."""
    code = (
        "import atexit, signal, sys\n"
        "atexit.register(lambda: print(signal.getsignal(signal.SIGTERM).name, signal.getsignal(signal.SIGINT).name))\n"
        "sys.argv = ['parallel-task-parser', '--help']\n"
        "from awoc_scripts.cli.task_parser import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "SIG_IGN SIG_IGN", done.stdout + done.stderr
