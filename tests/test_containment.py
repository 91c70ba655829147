"""Processes that leave their task's session and clear their environment (no marker to find them
by) still end with their task: each task runs in a cgroup of its own where the machine allows it,
and elsewhere the orchestrator, a child subreaper, inherits them as orphans and kills them."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest

from awoc_scripts import processes
from awoc_scripts.execution.executors import orphans

from conftest import start_orchestrator, wait_for

CGROUPS_HERE = processes._cgroups() is not None  # before any test switches them off
needs_cgroups = pytest.mark.skipif(not CGROUPS_HERE, reason="no writable cgroup v2 on this machine")


@pytest.fixture(params=["cgroup", "subreaper", "subreaper-unlisted"])
def containment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once with a cgroup per task, once without (AWOC_CGROUPS=0): the subreaper alone,
    and once more with the subreaper on a kernel that does not list a process's children in /proc
    (CONFIG_PROC_CHILDREN off), in-process only."""
    if request.param == "cgroup" and processes._cgroups() is None:
        pytest.skip("no writable cgroup v2 on this machine")
    if request.param.startswith("subreaper"):
        if not orphans.set_subreaper(True) or not orphans.set_subreaper(False):
            pytest.skip("this machine refuses prctl(PR_SET_CHILD_SUBREAPER)")
        monkeypatch.setenv("AWOC_CGROUPS", "0")  # for orchestrators started as processes
        monkeypatch.setattr(processes, "_cgroup_base", None)
        monkeypatch.setattr(processes, "_cgroup_looked", True)
    if request.param == "subreaper-unlisted":
        monkeypatch.setattr(orphans, "children_listed", lambda: False)
    return str(request.param)


def daemon_script(tag: str, then: str = "true") -> str:
    # the daemon: a new session, an empty environment, its parent gone at once; it leaves a file to
    # prove it started
    return f"( setsid env -i sh -c 'touch /tmp/awoc-daemon-{tag}; exec sleep 3000.{tag}' & ) ; {then}"


def new_tag() -> str:
    return str(uuid.uuid4().int)[:9]  # digits: sleep takes 3000.<tag> as a number


def started(tag: str) -> bool:
    marker = Path(f"/tmp/awoc-daemon-{tag}")
    if marker.exists():
        marker.unlink()
        return True
    return False


def daemons(tag: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if cmdline == f"sleep\0003000.{tag}\0".encode() and b") Z" not in stat:
                found.append(int(name))
    return found


def machine_facts(containment: str) -> str:
    """What decides containment here, for a failure's message: CI runs on machines unlike ours."""
    return (
        f"containment={containment} kernel={os.uname().release} "
        f"children_listed={orphans.children_listed()} cgroups_here={CGROUPS_HERE} "
        f"session={os.getsid(0)} pid={os.getpid()}"
    )


def all_gone(tag: str, containment: str) -> None:
    deadline = time.monotonic() + 3
    while daemons(tag):
        assert time.monotonic() < deadline, f"the daemon outlived its task: {machine_facts(containment)}"
        time.sleep(0.05)


def config(tag: str, then: str = "true", total_timeout: int | None = None, **task: object) -> str:
    one = {"task_id": "d", "agent": "qa", "description": "x", "command": ["sh", "-c", daemon_script(tag, then)], **task}
    parallel: dict[str, object] = {"retries": 0}
    if total_timeout:
        parallel["total_timeout"] = total_timeout
    return orjson.dumps({"parallel_config": parallel, "tasks": [one]}).decode()


def config_with_a_later_task(tag: str) -> dict[str, object]:
    """A daemon's task, then a task that fails if the daemon is still there a second after its task
    ended: the daemon must die with its own task, not with the run."""
    config_doc = orjson.loads(config(tag, "sleep 0.3"))
    config_doc["tasks"].append(
        {
            "task_id": "later",
            "agent": "qa",
            "description": "y",
            "dependencies": ["d"],
            "command": ["sh", "-c", f"sleep 1; ! pgrep -f '^sleep 3000[.]{tag}$'"],
        }
    )
    return dict(config_doc)


def test_a_daemon_dies_when_its_task_ends_by_itself(cli, containment: str) -> None:
    tag = new_tag()
    config_doc = config_with_a_later_task(tag)
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config_doc).decode())
    assert result.code == 0, machine_facts(containment)
    assert started(tag)
    all_gone(tag, containment)


def test_a_daemon_dies_when_its_task_times_out(cli, containment: str) -> None:
    tag = new_tag()
    result = cli("delegate-parallel", "run", "-q", config(tag, "sleep 30", timeout=1))
    assert result.code == 1, result.stderr
    all_gone(tag, containment)
    assert started(tag)


def test_a_daemon_dies_when_the_run_aborts(cli, containment: str) -> None:
    tag = new_tag()
    result = cli("delegate-parallel", "run", "-q", config(tag, "sleep 30", total_timeout=1))
    assert result.code == 3, result.stderr
    all_gone(tag, containment)
    assert started(tag)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_daemon_dies_when_the_run_is_interrupted(containment: str, signum: int) -> None:
    if containment == "subreaper-unlisted":
        pytest.skip("the orchestrator is a process of its own here: it uses what the kernel has")
    tag = new_tag()
    proc = start_orchestrator(orjson.loads(config(tag, "sleep 30")))
    try:
        wait_for(lambda: bool(daemons(tag)), timeout=20)
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
    all_gone(tag, containment)
    assert started(tag)


@needs_cgroups  # without cgroups a daemon with an empty environment escapes a killed orchestrator
@pytest.mark.parametrize("how", ["the orchestrator", "its process group"])
def test_a_killed_orchestrators_task_and_daemon_end_with_it_and_resume_goes_on(cli, state_dir: Path, how: str) -> None:
    tag = new_tag()
    again = f"/tmp/awoc-ran-{tag}"
    proc = start_orchestrator(
        orjson.loads(config(tag, f"[ -f {again} ] || {{ touch {again}; exec sleep 3000.{tag}; }}")), own_group=True
    )
    try:
        wait_for(lambda: len(daemons(tag)) == 2, timeout=20)  # the daemon, and the task's own process
    finally:
        if how == "its process group":  # the run's watchdog is in a session of its own
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert started(tag)
    # at once, not 10 s later: the run's watchdog holds the claim until it has killed what it must,
    # and a resume waits for that instead of being refused or having its tasks killed
    result = cli("delegate-parallel", "resume", "-q")
    assert result.code == 0, result.stderr
    assert not daemons(tag)  # ended before the resume started, and the resumed daemon with its task
    Path(again).unlink()


@pytest.mark.parametrize("cgroups", ["1", "0"])
def test_a_killed_orchestrators_tasks_end_without_a_resume(monkeypatch: pytest.MonkeyPatch, cgroups: str) -> None:
    if cgroups == "1" and not CGROUPS_HERE:
        pytest.skip("no writable cgroup v2 on this machine")
    monkeypatch.setenv("AWOC_CGROUPS", cgroups)
    tag = new_tag()
    tasks = [
        {"task_id": f"t{i}", "agent": "qa", "description": "x", "command": ["sh", "-c", f"sleep 3000.{tag} & wait"]}
        for i in range(3)
    ]
    proc = start_orchestrator({"parallel_config": {"retries": 0}, "tasks": tasks})
    try:
        wait_for(lambda: len(daemons(tag)) == 3, timeout=20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    all_gone(tag, f"cgroups={cgroups}, orchestrator killed")


def test_without_cgroups_the_marker_and_the_group_still_work(cli, monkeypatch) -> None:
    monkeypatch.setattr(processes, "_cgroup_base", None)
    monkeypatch.setattr(processes, "_cgroup_looked", True)
    result = cli("delegate-parallel", "run", "-q", '{"tasks":[{"agent":"qa","description":"x","command":["true"]}]}')
    assert result.code == 0, result.stderr


def test_children_are_found_with_or_without_the_kernels_list() -> None:
    import subprocess

    kids = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    try:
        by_parent = set(orphans.own_children(listed=False))
        assert {kid.pid for kid in kids} <= by_parent
        if orphans.children_listed():
            assert set(orphans.own_children(listed=True)) == by_parent
    finally:
        for kid in kids:
            kid.kill()
            kid.wait()


def test_a_process_session_is_read_from_its_stat() -> None:
    import subprocess

    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        seen = orphans._state_and_session(leader.pid)
        assert seen is not None and seen[1] == leader.pid
        assert orphans._state_and_session(os.getpid()) == (b"R", os.getsid(0))
    finally:
        leader.kill()
        leader.wait()


def in_new_pid_namespace() -> list[str] | None:
    """The argv prefix that runs a command as the first process of a new PID namespace with its own
    /proc, or None where this machine refuses it. CI runs the suite in such a namespace: there the
    orchestrator's session is one whose leader it cannot see (session 0)."""
    import shutil
    import subprocess

    prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    if shutil.which("unshare") is None:
        return None
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize("first", [True, False], ids=["orchestrator-first", "orchestrator-later"])
def test_a_daemon_dies_with_its_task_in_a_new_pid_namespace(first: bool, monkeypatch) -> None:
    import subprocess
    import sys

    prefix = in_new_pid_namespace()
    if prefix is None:
        pytest.skip("this machine refuses new PID namespaces")
    monkeypatch.setenv("AWOC_CGROUPS", "0")  # the subreaper alone
    tag = new_tag()
    config_doc = config_with_a_later_task(tag)
    orchestrator = [
        sys.executable,
        "-c",
        "from awoc_scripts.cli.delegate_parallel import main; main()",
        "run",
        "-q",
        orjson.dumps(config_doc).decode(),
    ]
    argv = [*prefix, *orchestrator] if first else [*prefix, "sh", "-c", '"$@"; exit $?', "sh", *orchestrator]
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert started(tag)
    all_gone(tag, "subreaper, new PID namespace")
