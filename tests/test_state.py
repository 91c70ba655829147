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
