"""The Dask executor: each attempt is one Dask task on a worker of an existing cluster.

The orchestrator writes the task's files from what the worker returns (no shared filesystem is
assumed). A stop request sets a distributed.Event the worker-side function watches (cancelling
a future does not stop a subprocess that already runs). A worker lost mid-attempt: Dask runs the
attempt again on another worker, up to its `distributed.scheduler.allowed-failures` (3 by
default); after that the attempt fails with the reason Dask gives (KilledWorker).
`distributed` is imported only when this executor is chosen.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import InputError, shorten
from awoc_scripts.execution.executors.base import Attempt, Ended, Executor, Started
from awoc_scripts.processes import KILL_GRACE_S

if TYPE_CHECKING:
    from awoc_scripts.execution.executors.dask_worker import AttemptReport, AttemptSpec
    from awoc_scripts.run_documents import WhereRan

CONNECT_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def check_scheduler_address(address: str) -> None:
    """A scheduler this process can reach: tcp:// or tls://, a host and a port."""
    shown = shorten(address, 100)
    found = _ADDRESS.match(address)
    if found is None:
        raise InputError(f"--scheduler {shown!r}: expected tcp://HOST:PORT or tls://HOST:PORT (IPv6: tcp://[::1]:PORT)")
    host, port = found.group(2), int(found.group(3))
    labels = host.strip("[]").split(".")
    if len(host) > 253 or any(len(label) > 63 for label in labels) or not 0 < port < 65536:
        raise InputError(f"--scheduler {shown!r}: not a host name and port that can be reached")


# a stop its worker does not confirm within this (past the grace) ends the attempt here: the worker
# is gone, or cannot be reached, and nothing else would ever end it
STOP_CONFIRM_S = 5.0
# with no worker at all for this long, what runs cannot run anywhere: it fails
NO_WORKER_S = 10.0
WORKER_CHECK_S = 1.0


@dataclass
class _Remote:
    """An attempt running on a Dask worker."""

    attempt: Attempt
    future: Any
    stop_event: str
    stop_requested: bool = False
    stop_requested_at: float | None = None


class DaskExecutor(Executor):
    def __init__(
        self,
        scheduler: str,
        resources: dict[str, float] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        grace_s: float = KILL_GRACE_S,
    ) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--executor dask needs the dask extra: pip install 'awoc[dask]'") from None
        check_scheduler_address(scheduler)
        try:
            self.client = Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        self.resources = resources or None
        self.grace_s = grace_s
        self._running: dict[str, _Remote] = {}
        self.where: dict[str, WhereRan] = {}  # task id: where its last attempt ran
        self._last_worker_check = 0.0
        self._no_worker_since: float | None = None
        # the futures that are done, with their task ids, put there by the client's callbacks: wait()
        # blocks on this instead of asking about every future each time
        self._done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def start(self, attempt: Attempt) -> Started:
        inv = attempt.invocation
        own = os.environ
        spec: AttemptSpec = {
            "task_id": attempt.task_id,
            "argv": inv.argv,
            "prompt": attempt.prompt_file.read_bytes(),
            # only what the task adds: the worker's own environment is the base there
            "env": {k: v for k, v in inv.env.items() if own.get(k) != v},
            "marker": attempt.marker,
            "stop_event": f"awoc-stop-{attempt.marker}-{uuid.uuid4().hex}",
            "timeout_s": attempt.timeout_s + self.grace_s,
        }
        from awoc_scripts.execution.executors.dask_worker import run_attempt

        future = self.client.submit(
            run_attempt,
            spec,
            key=f"awoc-{attempt.marker}-{uuid.uuid4().hex[:8]}",
            pure=False,
            resources=self.resources,
        )
        self._running[attempt.task_id] = _Remote(attempt, future, spec["stop_event"])
        future.add_done_callback(lambda done, task_id=attempt.task_id: self._done.put((task_id, done)))
        return Started(None)

    def running(self) -> list[str]:
        return list(self._running)

    def wait(self, timeout: float) -> list[Ended]:
        if not self._running:
            time.sleep(min(timeout, 0.02))
            return []
        done = []
        with contextlib.suppress(queue.Empty):
            done.append(self._done.get(timeout=min(timeout, WORKER_CHECK_S)))
            while True:
                done.append(self._done.get_nowait())
        # a future ended here earlier (its task may run again by now) is no longer the task's
        ours = [tid for tid, future in done if tid in self._running and self._running[tid].future is future]
        ended = self._collect(list(dict.fromkeys(ours)))
        return ended + self._unconfirmed_stops() + self._stranded()

    def _unconfirmed_stops(self) -> list[Ended]:
        """Attempts asked to stop whose worker never said they did: ended here."""
        now = time.monotonic()
        late = [
            tid
            for tid, r in self._running.items()
            if r.stop_requested_at is not None and now - r.stop_requested_at > self.grace_s + STOP_CONFIRM_S
        ]
        why = "dask: its worker did not confirm the stop (the worker is gone or cannot be reached); ended here"
        return [self._end_here(tid, why, stopped=True) for tid in late]

    def _stranded(self) -> list[Ended]:
        """With no worker left for NO_WORKER_S, the running attempts fail: nothing can run them."""
        now = time.monotonic()
        if now - self._last_worker_check < WORKER_CHECK_S:
            return []
        self._last_worker_check = now
        try:
            workers = len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - a scheduler that cannot answer has no worker for us either
            workers = 0
        if workers:
            self._no_worker_since = None
            return []
        self._no_worker_since = self._no_worker_since or now
        if now - self._no_worker_since < NO_WORKER_S or not self._running:
            return []
        why = f"dask: no worker is left to run it (none for {NO_WORKER_S:g} s: its worker died, and none joined)"
        return [self._end_here(tid, why, stopped=False) for tid in list(self._running)]

    def _end_here(self, task_id: str, why: str, stopped: bool) -> Ended:
        remote = self._running.pop(task_id)
        remote.future.cancel()
        remote.attempt.stderr_file.write_text(why + "\n")
        remote.attempt.stdout_file.write_bytes(b"")
        return Ended(task_id, 1, stopped=stopped or remote.stop_requested)

    def _collect(self, task_ids: list[str]) -> list[Ended]:
        """The ended attempts' reports, fetched together: one round trip for all that finished."""
        remotes = {tid: self._running.pop(tid) for tid in task_ids}
        finished = [tid for tid, r in remotes.items() if r.future.status == "finished"]
        try:
            reports = dict(zip(finished, self.client.gather([remotes[t].future for t in finished]), strict=True))
        except Exception:  # noqa: BLE001 - one could not be fetched (its worker just died): each on its own
            reports = {}
        return [self._ended(tid, remote, reports.get(tid)) for tid, remote in remotes.items()]

    def _ended(self, task_id: str, remote: _Remote, out: AttemptReport | None) -> Ended:
        attempt = remote.attempt
        try:
            out = out or remote.future.result()
        except Exception as exc:  # noqa: BLE001 - the worker died too often, or the function raised
            attempt.stderr_file.write_text(f"dask: the attempt did not finish: {type(exc).__name__}: {exc}\n")
            attempt.stdout_file.write_bytes(b"")
            return Ended(task_id, 1, stopped=remote.stop_requested)
        attempt.stdout_file.write_bytes(out["stdout"])
        attempt.stderr_file.write_bytes(out["stderr"])
        self.where[task_id] = {"executor": "dask", "worker": out["worker"], "host": out["host"], "pid": out["pid"]}
        # the worker knows whether the stop reached the attempt or it had ended by itself
        return Ended(task_id, int(out["exit_code"]), stopped=bool(out["stopped"]))

    def stop(self, task_id: str) -> None:
        remote = self._running.get(task_id)
        if remote is None or remote.stop_requested:
            return
        from distributed import Event

        remote.stop_requested = True
        remote.stop_requested_at = time.monotonic()
        # a scheduler that is gone cannot pass it on: the attempt then ends here after the grace
        with contextlib.suppress(Exception):
            Event(remote.stop_event, client=self.client).set()

    def shutdown(self) -> None:
        for task_id in list(self._running):
            self.stop(task_id)
        deadline = time.monotonic() + self.grace_s * 3 + 2
        while self._running and time.monotonic() < deadline:
            self.wait(0.2)
        for remote in self._running.values():
            remote.future.cancel()
        with contextlib.suppress(Exception):  # a scheduler that is gone cannot be said goodbye to
            self.client.close(timeout=5)

    def where_ran(self, task_id: str) -> WhereRan | None:
        return self.where.get(task_id)
