import multiprocessing
from pathlib import Path

import pytest

from awoc_scripts.errors import StateError
from awoc_scripts.state.store import RUN_ID_PATTERN, Run, StateStore, atomic_write_json, make_run_id


def _make_runs(root: str, count: int) -> list[str]:
    store = StateStore(root)
    return [store.create_run(lambda run: atomic_write_json(run.plan_file, {"x": 1})).run_id for _ in range(count)]


def test_run_ids_sort_by_time_and_never_collide(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(8) as pool:
        batches = pool.starmap(_make_runs, [(str(tmp_path), 25)] * 8)
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == 200
    assert all(RUN_ID_PATTERN.match(i) for i in ids)
    assert sorted(StateStore(tmp_path).list_runs()) == sorted(ids)
    for batch in batches:
        assert batch == sorted(batch)  # within a process, later runs sort later


def test_failed_creation_leaves_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)

    def explode(run: Run) -> None:
        atomic_write_json(run.plan_file, {})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.create_run(explode)
    assert list((tmp_path / "runs").iterdir()) == []
    assert not store.current_file.exists()


def test_open_run_errors(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with pytest.raises(StateError, match="no runs yet"):
        store.open_run()
    with pytest.raises(StateError, match="not a run id"):
        store.open_run("../../etc")
    with pytest.raises(StateError, match="no run"):
        store.open_run(make_run_id())


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWOC_STATE_DIR", str(tmp_path / "env"))
    assert StateStore().root == tmp_path / "env"
    assert StateStore(tmp_path / "opt").root == tmp_path / "opt"
    monkeypatch.delenv("AWOC_STATE_DIR")
    assert StateStore().root == Path(".awoc/parallel")


def test_a_state_root_that_is_a_file_or_links_runs_elsewhere_is_refused(cli, tmp_path: Path) -> None:
    as_file = tmp_path / "file-state"
    as_file.write_text("x")
    result = cli("parallel-task-parser", "validate", "--state-dir", str(as_file), "qa:x")
    assert result.code == 2 and "is not a folder" in result.stderr, result.stderr
    linked = tmp_path / "linked-state"
    linked.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (linked / "runs").symlink_to(elsewhere)
    result = cli("parallel-task-parser", "validate", "--state-dir", str(linked), "qa:x")
    assert result.code == 2 and "is a symbolic link" in result.stderr, result.stderr
    assert list(elsewhere.iterdir()) == []
    (linked / "runs").unlink()
    (linked / "runs").symlink_to(tmp_path / "nowhere")
    result = cli("parallel-task-parser", "validate", "--state-dir", str(linked), "qa:x")
    assert result.code == 2 and "is a symbolic link" in result.stderr, result.stderr


def test_leftovers_of_killed_writers_are_swept(cli, state_dir: Path) -> None:
    import os

    first = cli("parallel-task-parser", "validate", "qa:x")
    assert first.code == 0
    runs = state_dir / "runs"
    stale = runs / ".new-20000101-000000-000000-abcdef"
    stale.mkdir()
    os.utime(stale, (0, 0))
    fresh = runs / ".new-20990101-000000-000000-abcdef"
    fresh.mkdir()
    run_dir = next(p for p in runs.iterdir() if not p.name.startswith("."))
    (run_dir / "tasks").mkdir(exist_ok=True)
    (run_dir / "tasks" / "qa-1").mkdir()
    dead_tmp = run_dir / "tasks" / "qa-1" / ".prompt.md.999999999.0.tmp"
    dead_tmp.write_text("half")
    live_tmp = run_dir / f".state.json.{os.getpid()}.7.tmp"
    live_tmp.write_text("mine")
    assert cli("parallel-task-parser", "validate", "qa:y").code == 0
    assert not stale.exists() and fresh.exists()
    from awoc_scripts.state.store import Run

    Run(state_dir, run_dir.name).make_dirs()
    assert not dead_tmp.exists() and live_tmp.exists()
