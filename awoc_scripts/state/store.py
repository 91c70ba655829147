"""Every path under the state directory, and the only code that writes there.

Writes are atomic (temporary file in the same directory, then rename); every
read-modify-write of a shared file holds that file's lock, so any number of
processes can work on one run without losing an update.

The lock is `fcntl.flock` on `<file>.lock`, not the filelock package: importing filelock
costs 12-18 ms at every start of every script and about 240 us per lock (measured in
bench/), which a flow of short script calls pays again and again.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import struct
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from awoc_scripts.errors import StateError, disk_full
from awoc_scripts.process_stat import process_gone

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

    from awoc_scripts.plan_types import ExecutionPlan, JsonObject, Plan
    from awoc_scripts.run_documents import RunState

STATE_DIR_ENV = "AWOC_STATE_DIR"
DEFAULT_STATE_DIR = Path(".awoc") / "parallel"
STALE_STAGING_S = 60.0
RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{6}\Z")
LOCK_TIMEOUT_S = 60.0


def now_iso() -> str:
    return iso_of(time.time())


def iso_of(moment: float) -> str:
    """A Unix time as the state files write times: UTC, milliseconds, `Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"


def parse_iso(text: str | None) -> float | None:
    """The Unix time of such a text, or None."""
    if not text:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def state_root(state_dir: str | os.PathLike[str] | None = None) -> Path:
    if state_dir:
        return Path(state_dir)
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else DEFAULT_STATE_DIR


_temp_names = itertools.count()


def write_file(path: str, data: bytes) -> None:
    """PATH holds DATA (created, or emptied first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    # unique among writers: no two live processes share a pid, and the counter is this process's
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.{next(_temp_names)}.tmp"
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # never hides why the write failed
            os.unlink(tmp)
        if isinstance(exc, OSError):
            _raise_naming(exc, path)
        raise


def _raise_naming(exc: OSError, path: Path) -> NoReturn:
    """Raise EXC, naming PATH if it names no file (a write that fails on a full disk names none)."""
    if exc.filename is None:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    raise exc


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def read_json(path: Path, default: Any = None, sealed: str | None = None) -> Any:
    """PATH's JSON (DEFAULT when missing). SEALED: the file was written by write_sealed_json, and
    a change since then is a StateError saying this remedy."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        if default is not None:
            return default
        raise StateError(f"{path}: missing") from None
    if sealed is not None:
        _check_seal(path, raw, sealed)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"{path}: corrupt JSON ({exc})") from None


SEAL_SUFFIX = ".crc32"


def write_sealed_json(path: Path, data: Any) -> None:
    """A file written once that nothing should change afterwards (a run's plan): with a checksum
    beside it, so that a change is found when it is read rather than acted on."""
    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    seal = path.with_name(path.name + SEAL_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        seal.unlink()  # killed before the new seal is written, the file goes unchecked, not refused
    atomic_write_bytes(path, raw)
    atomic_write_bytes(seal, f"{zlib.crc32(raw):08x}\n".encode())


def _check_seal(path: Path, raw: bytes, remedy: str) -> None:
    try:
        seal = path.with_name(path.name + SEAL_SUFFIX).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return  # written before seals, or by a writer killed before its seal
    if seal != f"{zlib.crc32(raw):08x}":
        raise StateError(f"{path}: changed after awoc wrote it; awoc never changes this file. {remedy}")


@contextmanager
def file_lock(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive lock of `path` (on `<path>.lock`); it dies with its process."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout_s: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + timeout_s
    pause = 0.0005
    while True:
        time.sleep(pause)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StateError(f"{path}: another process has held its lock for over {timeout_s:g} s") from None
            pause = min(pause * 2, 0.02)


class RunClaim:
    """The exclusive right to execute a run (or merge it), held as a lock on an open file: the
    kernel lets go of it when the holder dies, however it dies, so a claim is never stale and
    never compared against a pid that may have been reused. Open-file-description locks, where
    the kernel has them, can be tested without being taken: a `status` that looks never gets in
    the way of a `start`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        """The open file that holds the claim: whoever shares it (the run's watchdog) holds it too."""
        if self._fd is None:
            raise ValueError("the claim was released")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the description lets go of its lock


_OFD_SET = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_GET = getattr(fcntl, "F_OFD_GETLK", None)


def _whole_file(kind: int) -> bytes:
    return struct.pack("@hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)  # struct flock: type, whence, start, len, pid


def _try_lock(fd: int) -> bool:
    try:
        if _OFD_SET is not None:
            fcntl.fcntl(fd, _OFD_SET, _whole_file(fcntl.F_WRLCK))
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


# claims held for as long as a run executes or merges: a second claimant is refused at once. Any
# other (a lever on a saved run, a sweep, one just taken whose holder has not said why yet) is
# held for a moment: a claimant waits for it to end.
LASTING_CLAIMS = ("executed", "merged")
CLEANING_UP = "cleaned up after its owner died"  # "run X is being <this> right now by process P"
OWNER_DIED = "owner-died"  # the event the run's watchdog appends once it has killed what a dead owner left
BRIEF_CLAIM_WAIT_S = 10.0


def take_claim(path: Path, what: str, doing: str) -> RunClaim:
    """The claim of PATH for DOING (executed, merged...). A second claimant gets exit 2 at once,
    naming the holder's pid and what it is doing; a claim held for a moment is waited for."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        _raise_naming(exc, path)
    deadline = time.monotonic() + BRIEF_CLAIM_WAIT_S
    while not _try_lock(fd):
        pid, their = _holder(fd)
        if their not in LASTING_CLAIMS and time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        os.close(fd)
        raise StateError(f"{what} is being {their} right now by process {pid}: wait for it to end") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {doing}\n".encode(), 0)
    return RunClaim(fd)


def _holder(fd: int) -> tuple[str, str]:
    """The pid the claim's holder wrote, and what it does. A lasting claim whose holder has died is
    held on for a moment by the run's watchdog (execution/watchdog.py), killing what it left."""
    words = os.pread(fd, 200, 0).decode("utf-8", "replace").split(maxsplit=1)
    pid, doing = (words[0], words[1].strip()) if len(words) >= 2 else ("?", "used")
    dead = pid.isdigit() and process_gone(int(pid))
    return pid, CLEANING_UP if doing in LASTING_CLAIMS and dead else doing


def claim_holder(path: Path) -> str | None:
    """What the holder of PATH's claim is doing ("executed", "merged"...), or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _OFD_GET is not None:
            answer = fcntl.fcntl(fd, _OFD_GET, _whole_file(fcntl.F_WRLCK))
            held = struct.unpack("@hhqqi4x", answer)[0] != fcntl.F_UNLCK
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held = False
            except BlockingIOError:
                held = True
        return _holder(fd)[1] if held else None
    finally:
        os.close(fd)


STATE_ROOT_FILES = ("current", "history.json")  # what the state root holds besides runs/


def make_run_id() -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now % 1 * 1e6):06d}-{os.urandom(3).hex()}"


def result_name(agent: str, task_id: str) -> str:
    """The name of a task's result in results/."""
    return f"task_{agent}_{task_id}_result.json"


def _names_in(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


class TaskFiles:
    """tasks/<task_id>/: what went in, what came out."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.prompt = directory / "prompt.md"
        self.stdout = directory / "stdout.log"
        self.stderr = directory / "stderr.log"
        self.result = directory / "result.json"
        self.verify_log = directory / "verify.log"  # what its verification printed (stdout)
        self.verify_errors = directory / "verify.err.log"

    def prepare(self, prompt: str) -> None:
        """The task's directory (its parent exists: see Run.make_dirs) and its prompt. Written in
        place: only the attempt about to start reads it, and each attempt writes it again."""
        self.make_dir()
        try:
            write_file(str(self.prompt), prompt.encode("utf-8"))
        except OSError as exc:
            _raise_naming(exc, self.prompt)

    def make_dir(self) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir)


class ReportFiles:
    """aggregate.json, report.json and report.md: a run's, or (results made outside any run,
    as a shell loop calling the scripts makes them) the state directory's."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.aggregate = directory / "aggregate.json"
        self.report_json = directory / "report.json"
        self.report_md = directory / "report.md"


class Run:
    """The files of one run: `runs/<run_id>/...`."""

    def __init__(self, root: Path, run_id: str, directory: Path | None = None) -> None:
        self.root = root
        self.run_id = run_id
        self.dir = directory or root / "runs" / run_id
        self.plan_file = self.dir / "plan.json"
        self.execution_file = self.dir / "execution.json"
        self.state_file = self.dir / "state.json"
        self.events_file = self.dir / "events.jsonl"
        self.tasks_dir = self.dir / "tasks"
        self.results_dir = self.dir / "results"
        self.reports = ReportFiles(self.dir)
        self.aggregate_file = self.reports.aggregate
        self.report_json_file = self.reports.report_json
        self.report_md_file = self.reports.report_md
        self._task_files: dict[str, TaskFiles] = {}
        self._plan: Plan | None = None

    @property
    def claim_file(self) -> Path:
        return self.dir / "owner.lock"

    def claim(self, doing: str = "executed") -> RunClaim:
        """Held by whoever executes the run (run, start, resume) or merges it, for as long as it does."""
        return take_claim(self.claim_file, f"run {self.run_id}", doing)

    def claimed_for(self) -> str | None:
        """What the run's owner is doing right now ("executed", "merged"...), or None."""
        return claim_holder(self.claim_file)

    def task_dir(self, task_id: str) -> Path:
        return self.tasks_dir / task_id

    def task_dirs(self) -> set[str]:
        """The tasks with a folder now: one listing instead of a look at each task's."""
        return _names_in(self.tasks_dir)

    def result_files(self) -> set[str]:
        """The names in results/ now."""
        return _names_in(self.results_dir)

    def result_file(self, agent: str, task_id: str) -> Path:
        return self.results_dir / result_name(agent, task_id)

    def task_files(self, task_id: str) -> TaskFiles:
        if task_id not in self._task_files:
            self._task_files[task_id] = TaskFiles(self.tasks_dir / task_id)
        return self._task_files[task_id]

    def write_task_result(self, agent: str, task_id: str, result: Mapping[str, Any]) -> None:
        """tasks/<id>/result.json, and the same file linked as results/task_<agent>_<id>_result.json."""
        files = self.task_files(task_id)
        if not files.dir.is_dir():  # a task ended outside the orchestrator before it started
            self.tasks_dir.mkdir(exist_ok=True)
            self.results_dir.mkdir(exist_ok=True)
            files.dir.mkdir(exist_ok=True)
        atomic_write_json(files.result, result)
        link = self.result_file(agent, task_id)
        try:
            os.link(files.result, link)
            return
        except FileExistsError:
            pass  # a rerun: replace the old link atomically below
        except OSError:
            atomic_write_bytes(link, files.result.read_bytes())  # no hard links here: copy
            return
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        os.link(files.result, tmp)
        os.replace(tmp, link)

    def make_dirs(self) -> None:
        """At the start of an execution: the run's folders, and no temporaries of killed writers."""
        self.tasks_dir.mkdir(exist_ok=True)
        self.results_dir.mkdir(exist_ok=True)
        self._sweep_temporaries()

    def _sweep_temporaries(self) -> None:
        """Temporary files of atomic writes whose writer was killed (its pid is in the name)."""
        for pattern in (".*.tmp", "tasks/*/.*.tmp", "results/.*.tmp"):
            for tmp in self.dir.glob(pattern):
                pid = tmp.name.rsplit(".", 3)[-3]
                if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()

    def write_plan(self, plan: Plan) -> None:
        write_sealed_json(self.plan_file, plan)

    def write_execution(self, execution: ExecutionPlan) -> None:
        write_sealed_json(self.execution_file, execution)

    def read_execution(self) -> ExecutionPlan:
        """execution.json, or {} before the run is planned for execution."""
        execution: ExecutionPlan = read_json(
            self.execution_file, {}, sealed="Delete it, and the run is planned for execution again from its plan."
        )
        return execution

    def exists(self) -> bool:
        return self.plan_file.is_file()

    def read_plan(self) -> Plan:
        """plan.json, read once: a plan never changes after its run is made."""
        if self._plan is None:
            self._plan = read_json(
                self.plan_file,
                sealed="A run is executed as it was planned: "
                "restore it, or start a new run with the change in its config.",
            )
        return self._plan

    def append_event(self, event: str, **fields: Any) -> JsonObject:
        record = {"ts": now_iso(), "event": event, **fields}
        self.append_event_lines([orjson.dumps(record) + b"\n"])
        return record

    def append_event_lines(self, lines: list[bytes]) -> None:
        try:
            with file_lock(self.events_file), open(self.events_file, "ab") as fh:
                fh.write(b"".join(lines))
        except OSError as exc:
            _raise_naming(exc, self.events_file)

    def buffered_events(self) -> EventBuffer:
        return EventBuffer(self)

    def read_events(self, only: Iterable[str] | None = None) -> list[JsonObject]:
        """The run's events, or just those named in ONLY (found without parsing the others)."""
        try:
            raw = self.events_file.read_bytes()
        except FileNotFoundError:
            return []
        from awoc_scripts.state.shapes import well_formed_event

        lines = raw.splitlines()
        if only is None:
            candidates = (_parsed(line) for line in lines if line.strip())
            return [event for event in candidates if well_formed_event(event)]
        names = set(only)
        wanted = tuple(b'"event":' + orjson.dumps(name) for name in names)  # as orjson writes it
        if not any(w in raw for w in wanted):
            return []  # one search of the whole file, rather than of each of its lines
        candidates = (_parsed(line) for line in lines if any(w in line for w in wanted))
        return [event for event in candidates if well_formed_event(event) and event["event"] in names]

    @contextmanager
    def locked_state(self) -> Iterator[RunState]:
        """Read-modify-write of state.json under its lock; the dict is written back on exit."""
        with file_lock(self.state_file):
            state = self.read_state()
            yield state
            state["revision"] = int(state.get("revision", 0)) + 1
            state["updated_at"] = now_iso()
            atomic_write_json(self.state_file, state)

    def read_state(self, against_plan: bool = True, task_ids: Collection[str] | None = None) -> RunState:
        """state.json ({} before the run first executes), checked to have its shape and, unless a
        reader goes by the state's own tasks alone (AGAINST_PLAN false), the plan's tasks
        (TASK_IDS where the caller holds them: reading the plan takes 0.7 s at 100,000 tasks)."""
        from awoc_scripts.state.shapes import check_state

        data = read_json(self.state_file, default={})
        if against_plan and data and task_ids is None:
            task_ids = self.task_ids()
        return check_state(data, self.state_file, task_ids if against_plan else None)

    def task_ids(self) -> list[str]:
        return [t["task_id"] for t in self.read_plan()["tasks"]]


def _parsed(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # torn by a writer killed mid-line, or edited: no event


class EventBuffer:
    """Events of a busy process, appended in one locked write per `flush()` instead of one each."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lines: list[bytes] = []

    def add(self, event: str, **fields: Any) -> None:
        self.lines.append(orjson.dumps({"ts": now_iso(), "event": event, **fields}) + b"\n")

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            self.run.append_event_lines(lines)


class StateStore:
    """The state directory: runs, and which one is current."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.root = state_root(state_dir)

    @property
    def current_file(self) -> Path:
        return self.root / "current"

    @property
    def loose_reports(self) -> ReportFiles:
        return ReportFiles(self.root)

    def create_run(self, write_files: Callable[[Run], None]) -> Run:
        """Make a new run whose first files are written by `write_files`, all or nothing.

        The run is built in a hidden directory and renamed into place, so a crash leaves no
        half-made run; `current` is updated last.
        """
        runs = self.root / "runs"
        self._check_layout(runs)
        if not runs.is_dir():
            self._make_root(runs)
        self._sweep_staging(runs)
        while True:
            run_id = make_run_id()
            staging = runs / f".new-{run_id}"
            try:
                staging.mkdir()
            except FileExistsError:
                continue
            break
        try:
            write_files(Run(self.root, run_id, staging))
            # run ids are unique (random suffix plus the exclusive mkdir above)
            os.rename(staging, runs / run_id)
        except BaseException:
            _remove_tree(staging)
            raise
        run = Run(self.root, run_id)
        atomic_write_bytes(self.current_file, run_id.encode() + b"\n")
        return run

    def _check_layout(self, runs: Path) -> None:
        """The state root and its runs/ are real folders: never a file, never a link that would
        send a run's files elsewhere."""
        if self.root.exists() and not self.root.is_dir():
            raise StateError(f"state directory {self.root} is not a folder (choose another with --state-dir)")
        if runs.is_symlink():
            raise StateError(
                f"{runs} is a symbolic link (to {os.readlink(runs)}); awoc writes runs only in a real folder"
            )
        if runs.exists() and not runs.is_dir():
            raise StateError(f"{runs} is not a folder")
        for name in STATE_ROOT_FILES:
            path = self.root / name
            if path.exists() and not path.is_file():
                raise StateError(f"{path} is not a file (awoc keeps a file there): move it away, or use --state-dir")

    def _sweep_staging(self, runs: Path) -> None:
        """Half-made runs of killed processes (a new run is renamed into place within milliseconds)."""
        now = time.time()
        for staging in runs.glob(".new-*"):
            with contextlib.suppress(OSError):
                if now - staging.stat().st_mtime > STALE_STAGING_S:
                    _remove_tree(staging)

    def _make_root(self, runs: Path) -> None:
        """The state root keeps itself out of git: a run's files are never a project's changes."""
        try:
            runs.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                atomic_write_bytes(ignore, b"# written by awoc: its run state is not part of the project\n*\n")
        except OSError as exc:
            full = disk_full(exc)
            if full is not None:  # not a directory to choose differently: room to make
                raise full from None
            raise StateError(
                f"cannot make the state directory {self.root} ({exc.strerror or exc}): choose another with --state-dir"
            ) from None

    def current_run_id(self) -> str:
        try:
            run_id = self.current_file.read_text().strip()
        except FileNotFoundError:
            raise StateError(f"no runs yet in {self.root} (validate or run a task list first)") from None
        except (IsADirectoryError, UnicodeDecodeError):
            raise StateError(f"{self.current_file} is not a run id: name the run (--run RUN_ID)") from None
        return run_id

    def open_run(self, run_id: str | None = None) -> Run:
        if run_id is None:
            run_id = self.current_run_id()
        if not RUN_ID_PATTERN.match(run_id):
            raise StateError(f"{run_id!r} is not a run id (expected like 20261128-050102-123456-a1b2c3)")
        run = Run(self.root, run_id)
        if not run.exists():
            raise StateError(f"no run {run_id} in {self.root}")
        return run

    def run_if_any(self, run_id: str | None, needed: bool) -> Run | None:
        """The run asked for (or the current one); None when there is none and none is `needed`.
        A run id that was given is always needed."""
        try:
            return self.open_run(run_id)
        except StateError:
            if run_id or needed:
                raise
            return None

    def list_runs(self) -> list[str]:
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(p.name for p in runs.iterdir() if RUN_ID_PATTERN.match(p.name))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
