"""The Dask executor against real `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import awoc_processes, start_orchestrator, task_results, wait_for

DASK = Path(sys.executable).parent / "dask"
TEST_MARK = "AWOC_DASK_TEST_CLUSTER=1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, log_dir: Path, workers: int) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.log_dir = log_dir
        self.env = {**os.environ, "AWOC_DASK_TEST_CLUSTER": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self.procs: list[subprocess.Popen[bytes]] = []
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"])
        self.workers = [self.add_worker() for _ in range(workers)]
        self.wait_for_workers(workers)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - kept open with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=self.env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def add_worker(self) -> subprocess.Popen[bytes]:
        argv = [str(DASK), "worker", self.address, "--nthreads", "2", "--no-nanny", "--no-dashboard"]
        return self._start("worker", [*argv, "--resources", "agent=2", "--death-timeout", "30"])

    def worker_count(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=20, set_as_default=False) as client:
            return len(client.scheduler_info()["workers"])

    def wait_for_workers(self, n: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.worker_count() >= n:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Dask cluster did not come up"
            time.sleep(0.3)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("dask"), workers=2)
    yield made
    made.stop()


def dask_settings(cluster: Cluster, **more: Any) -> dict[str, Any]:
    return {"executor": "dask", "dask": {"scheduler": cluster.address, "resources": {"agent": 1}}, **more}


def dag(**settings: Any) -> dict[str, Any]:
    return {
        "parallel_config": {"max_concurrent": 4, "total_token_budget": 20000, **settings},
        "tasks": [
            {"task_id": "design", "agent": "architect", "description": "d", "priority": "high",
             "command": ["sh", "-c", 'echo "design within $AWOC_TOKEN_BUDGET"']},
            {"task_id": "api", "agent": "workforce", "description": "a", "dependencies": ["design"],
             "command": ["sh", "-c", "grep -c design >/dev/null && echo api built"]},
            {"task_id": "ui", "agent": "workforce", "description": "u", "dependencies": ["design"],
             "token_budget": 3000, "command": ["sh", "-c", 'echo "ui within $AWOC_TOKEN_BUDGET"']},
            {"task_id": "broken", "agent": "qa", "description": "b", "retries": 0, "command": ["sh", "-c", "exit 3"]},
            {"task_id": "after-broken", "agent": "qa", "description": "c", "dependencies": ["broken"],
             "command": ["true"]},
            {"task_id": "check", "agent": "qa", "description": "c", "dependencies": ["api", "ui"],
             "command": ["sh", "-c", "wc -l | tr -d ' '"]},
        ],
    }  # fmt: skip


def run_config(cli, config: dict[str, Any], state_dir: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    result = cli("delegate-parallel", "run", "-q", "--state-dir", str(state_dir), *flags, orjson.dumps(config).decode())
    run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
    results = task_results(run_dir)
    report = orjson.loads((run_dir / "report.json").read_bytes())
    return result.code, {"results": results, "report": report, "stderr": result.stderr}


def test_a_dag_on_dask_ends_as_it_does_locally(cli, cluster: Cluster, isolated: Path) -> None:
    local_code, local = run_config(cli, dag(), isolated / "local")
    dask_code, remote = run_config(cli, dag(**dask_settings(cluster)), isolated / "dask")
    assert (local_code, dask_code) == (1, 1), remote["stderr"]
    for tid, mine in local["results"].items():
        theirs = remote["results"][tid]
        for key in ("status", "exit_code", "token_budget", "attempts", "reason", "dependencies"):
            assert theirs[key] == mine[key], (tid, key)
        assert theirs["result"] == mine["result"], tid
    assert remote["results"]["ui"]["result"] == "ui within 3000"
    assert remote["results"]["check"]["result"] == local["results"]["check"]["result"] != ""
    for key in ("total_tasks", "completed_successfully", "failed_tasks"):
        assert remote["report"]["execution_summary"][key] == local["report"]["execution_summary"][key]
    assert remote["report"]["critical_path"] == local["report"]["critical_path"]
    workers = {r["executed_on"]["worker"] for r in remote["results"].values() if "executed_on" in r}
    assert workers and workers <= {f"tcp://127.0.0.1:{p}" for p in _worker_ports(cluster)}
    assert all("executed_on" not in r for r in local["results"].values())


def _worker_ports(cluster: Cluster) -> list[str]:
    from distributed import Client

    with Client(cluster.address, timeout=20, set_as_default=False) as client:
        return [a.rsplit(":", 1)[1] for a in client.scheduler_info()["workers"]]


def test_a_timeout_kills_the_whole_tree_on_the_worker(cli, cluster: Cluster, isolated: Path) -> None:
    config = {
        "parallel_config": dask_settings(cluster),
        "tasks": [{"task_id": "slow", "agent": "qa", "description": "s", "timeout": 1, "retries": 0,
                   "command": ["sh", "-c", "sleep 60 & setsid sleep 61 & sleep 62"]}],
    }  # fmt: skip
    state = isolated / "state"
    code, out = run_config(cli, config, state)
    assert code == 1 and out["results"]["slow"]["status"] == "timed_out"
    wait_for(lambda: not awoc_processes(state), timeout=10)


def test_an_abort_stops_what_runs_on_the_workers(cli, cluster: Cluster, isolated: Path) -> None:
    config = {
        "parallel_config": dask_settings(cluster, failure_tolerance=0, retries=0),
        "tasks": [
            {"task_id": "bad", "agent": "qa", "description": "b", "command": ["sh", "-c", "sleep 0.5; exit 1"]},
            {"task_id": "slow", "agent": "qa", "description": "s", "command": ["sleep", "60"]},
        ],
    }
    state = isolated / "state"
    code, out = run_config(cli, config, state)
    assert code == 3 and out["results"]["slow"]["status"] == "cancelled"
    wait_for(lambda: not awoc_processes(state), timeout=10)


def test_sigkill_of_the_orchestrator_stops_remote_tasks_and_resume_finishes(
    cli, cluster: Cluster, isolated: Path, state_dir: Path
) -> None:
    flag = isolated / "ran-once"
    config = {
        "parallel_config": dask_settings(cluster),
        "tasks": [{"task_id": "t", "agent": "qa", "description": "t",
                   "command": ["sh", "-c", f'test -f "{flag}" && echo again || {{ touch "{flag}"; sleep 60; }}']}],
    }  # fmt: skip
    proc = start_orchestrator(config)
    try:
        wait_for(lambda: flag.exists() and awoc_processes(state_dir), timeout=30)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not awoc_processes(state_dir), timeout=15)  # the worker saw its future released
    resumed = cli("delegate-parallel", "resume", "-q")
    assert resumed.code == 0, resumed.stderr
    run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
    assert orjson.loads((run_dir / "tasks" / "t" / "result.json").read_bytes())["result"] == "again"


def test_a_supervisor_killed_mid_task_fails_the_attempt_and_the_next_gets_a_new_one(
    cli, cluster: Cluster, isolated: Path, state_dir: Path
) -> None:
    """Nothing is taken on trust from the worker's supervisor either: when it dies, the attempt it
    ran ends as failed with the reason, what it started is killed by its marker, and the retry
    runs under a supervisor started anew."""
    flag = isolated / "ran-once"
    config = {
        "parallel_config": {**dask_settings(cluster), "retries": 1},
        "tasks": [{"task_id": "t", "agent": "qa", "description": "t",
                   "command": ["sh", "-c",
                               f'test -f "{flag}" && {{ sleep 4; echo again; }} || {{ touch "{flag}"; sleep 60; }}']}],
    }  # fmt: skip
    proc = start_orchestrator(config)
    try:
        wait_for(lambda: flag.exists() and awoc_processes(state_dir), timeout=30)
        first = awoc_processes(state_dir)
        os.kill(_supervisor_of(first), signal.SIGKILL)
        # gone while the run still runs its retry: the worker killed them, not the run's end
        wait_for(lambda: all(_ended(pid) for pid in first), timeout=3)
        assert proc.poll() is None
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
    result = orjson.loads((run_dir / "tasks" / "t" / "result.json").read_bytes())
    assert result["status"] == "succeeded" and result["result"] == "again" and result["attempts"] == 2
    assert not awoc_processes(state_dir)


def _supervisor_of(pids: list[int]) -> int:
    """The worker's supervisor among the ancestors of an attempt's processes."""
    for pid in pids:
        current = pid
        while current > 1:
            if b"dask_worker\x00SERVE" in Path(f"/proc/{current}/cmdline").read_bytes():
                return current
            current = int(Path(f"/proc/{current}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    raise AssertionError(f"no supervisor among the ancestors of {pids}")


def test_a_worker_killed_mid_task_runs_it_again_elsewhere(cli, tmp_path: Path, state_dir: Path) -> None:
    own = Cluster(tmp_path, workers=2)
    try:
        config = {
            "parallel_config": {"executor": "dask", "dask": {"scheduler": own.address}},
            "tasks": [{"task_id": "t", "agent": "qa", "description": "t",
                       "command": ["sh", "-c", "sleep 8; echo done"]}],
        }  # fmt: skip
        proc = start_orchestrator(config)
        wait_for(lambda: awoc_processes(state_dir), timeout=30)
        first = awoc_processes(state_dir)
        victim = _worker_of(first, [w.pid for w in own.workers])
        os.kill(victim, signal.SIGKILL)

        def first_attempt_gone() -> bool:  # its supervisor learns of the worker's death when its command pipe ends
            return all(
                not Path(f"/proc/{pid}").exists() or b") Z" in Path(f"/proc/{pid}/stat").read_bytes() for pid in first
            )

        wait_for(first_attempt_gone, timeout=5)  # well before its `sleep 8` would have ended
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
        result = orjson.loads((run_dir / "tasks" / "t" / "result.json").read_bytes())
        assert result["status"] == "succeeded" and result["result"] == "done"
        assert result["attempts"] == 1  # Dask ran it again; for awoc it is the same attempt
        # the killed worker's scratch folder was removed by the worker that ran the task again
        assert not list(Path(tempfile.gettempdir()).glob(f"awoc-attempt-{victim}-*"))
        for pid in first:
            assert (
                not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
            )
        assert not awoc_processes(state_dir)
    finally:
        own.stop()


def _ended(pid: int) -> bool:
    try:
        return b") Z" in Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True


def _worker_of(pids: list[int], workers: list[int]) -> int:
    """The worker process an attempt's processes descend from."""
    for pid in pids:
        current = pid
        while current > 1:
            if current in workers:
                return current
            stat = Path(f"/proc/{current}/stat").read_bytes()
            current = int(stat.rsplit(b")", 1)[1].split()[1])
    raise AssertionError(f"no worker among the ancestors of {pids}")


def test_an_unreachable_scheduler_is_refused_before_anything_is_written(cli, state_dir: Path) -> None:
    config = {
        "parallel_config": {"executor": "dask", "dask": {"scheduler": f"tcp://127.0.0.1:{free_port()}",
                                                         "connect_timeout_s": 1}},
        "tasks": [{"agent": "qa", "description": "t", "command": ["true"]}],
    }  # fmt: skip
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    assert result.code == 2 and "cannot reach the Dask scheduler" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not state_dir.exists()
    missing = cli(
        "delegate-parallel",
        "run",
        "-q",
        "--executor",
        "dask",
        '{"tasks": [{"agent": "qa", "description": "t", "command": ["true"]}]}',
    )
    assert missing.code == 2 and "needs --scheduler" in missing.stderr and not state_dir.exists()


def test_resources_keep_a_worker_to_the_tasks_it_has_room_for(cli, cluster: Cluster, isolated: Path) -> None:
    # each worker offers agent=2; a task asking for agent=2 leaves room for one at a time per worker
    stamp = 'echo "$(date +%s.%N)"; sleep 0.3; echo "$(date +%s.%N)"'
    config = {
        "parallel_config": {
            "max_concurrent": 6, "executor": "dask", "dask": {"scheduler": cluster.address, "resources": {"agent": 2}}
        },
        "tasks": [{"task_id": f"t{i}", "agent": "qa", "description": "t", "command": ["sh", "-c", stamp]}
                  for i in range(6)],
    }  # fmt: skip
    code, out = run_config(cli, config, isolated / "state")
    assert code == 0, out["stderr"]
    spans: dict[str, list[tuple[float, float]]] = {}
    for result in out["results"].values():
        start, end = (float(x) for x in result["result"].split())
        spans.setdefault(result["executed_on"]["worker"], []).append((start, end))
    for worker_spans in spans.values():
        ordered = sorted(worker_spans)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(ordered))


def test_scratch_folders_of_dead_workers_are_swept(tmp_path: Path) -> None:
    from awoc_scripts.execution.executors.dask_worker import sweep_dead_scratch

    dead = tmp_path / "awoc-attempt-999999999-abc"  # no such pid
    live = tmp_path / f"awoc-attempt-{os.getpid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "stdout").write_text("x")
    assert sweep_dead_scratch(str(tmp_path)) == [dead.name]
    assert live.exists() and not dead.exists()


def test_worktree_tasks_on_dask_are_refused_before_anything_is_written(
    cli, state_dir: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker has no worktree of the repository: never run such a task in its own directory."""
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=isolated / "work", check=True)
    monkeypatch.setenv("AWOC_AGENT_COMMAND", "true")
    config = {
        "parallel_config": {"executor": "dask", "dask": {"scheduler": f"tcp://127.0.0.1:{free_port()}"}},
        "tasks": [
            {"task_id": "edit", "agent": "qa", "description": "t", "command": ["true"], "isolation": "worktree"},
            {"task_id": "look", "agent": "qa", "description": "t", "command": ["true"]},
        ],
    }
    result = cli("delegate-parallel", "run", "-q", orjson.dumps(config).decode())
    assert result.code == 2 and "1 task(s) (edit) run in git worktrees" in result.stderr, result.stderr
    assert "--executor local" in result.stderr and not state_dir.exists()
    inline = cli(
        "delegate-parallel", "run", "-q", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1",
        "--isolation=worktree", "qa:t",
    )  # fmt: skip
    assert inline.code == 2 and "run in git worktrees" in inline.stderr and not state_dir.exists()


def test_a_run_whose_only_worker_dies_ends_by_timeout_sigterm_or_no_worker(
    cli, tmp_path: Path, state_dir: Path
) -> None:
    """Its only worker SIGKILLed mid-task: the task's timeout, a SIGTERM, or the lack of any worker
    ends the run, with its exit code, never a hang."""
    for case in ("timeout", "sigterm", "no worker"):
        logs = tmp_path / case.replace(" ", "-")
        logs.mkdir()
        own = Cluster(logs, workers=1)
        try:
            timeout = 4 if case == "timeout" else 300
            config = {
                "parallel_config": {"executor": "dask", "dask": {"scheduler": own.address}, "retries": 0},
                "tasks": [{"task_id": "t", "agent": "qa", "description": "t", "timeout": timeout,
                           "command": ["sh", "-c", "sleep 60"]}],
            }  # fmt: skip
            proc = start_orchestrator(config)
            wait_for(lambda: awoc_processes(state_dir), timeout=30)
            os.kill(own.workers[0].pid, signal.SIGKILL)
            started = time.monotonic()
            if case == "sigterm":
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            assert time.monotonic() - started < 45, case
            run_dir = state_dir / "runs" / (state_dir / "current").read_text().strip()
            result = orjson.loads((run_dir / "tasks" / "t" / "result.json").read_bytes())
            if case == "timeout":
                assert code in (1, 3) and result["status"] == "timed_out", (case, result)
            elif case == "sigterm":
                assert code == 130 and result["status"] == "cancelled", (case, result)
            else:
                assert code in (1, 3) and result["status"] == "failed", (case, result)
                assert "no worker is left" in result["error"], result["error"]
            assert not awoc_processes(state_dir)
        finally:
            own.stop()
