"""A state.json of the wrong shape (a hand edit, another program) is one clear exit 2 for every
command that reads it, and nothing is written; never an internal error halfway through a resume."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awoc_scripts.errors import StateError
from awoc_scripts.state.shapes import check_state, requested_controls, result_problem

CONFIG = orjson.dumps(
    {
        "parallel_config": {"max_concurrent": 1},
        "tasks": [
            {"task_id": "a", "agent": "qa", "description": "x", "command": ["true"]},
            {"task_id": "b", "agent": "qa", "description": "y", "command": ["true"], "dependencies": ["a"]},
        ],
    }
).decode()


def run_dir(cli, state_dir: Path) -> Path:
    result = cli("delegate-parallel", "run", "-q", CONFIG)
    assert result.code == 0, result.stderr
    return state_dir / "runs" / (state_dir / "current").read_text().strip()


def set_in(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


MUTATIONS: dict[str, tuple[tuple[Any, ...], Any, str]] = {
    "tasks as a list": (("tasks",), [], "$.tasks: expected an object, found a list"),
    "a task that is null": (("tasks", "a"), None, "$.tasks.a: expected an object, found null"),
    "an unknown status": (("tasks", "a", "status"), "weird", "$.tasks.a.status: expected one of"),
    "attempts as text": (("tasks", "a", "attempts"), "many", "$.tasks.a.attempts: expected an integer"),
    "a budget that is true": (("tasks", "b", "token_budget"), True, "expected an integer, found true or false"),
    "controls as an object": (("controls",), {"x": 1}, "$.controls: expected a list, found an object"),
    "a control that is a number": (("controls",), [5], "$.controls[0]: expected an object"),
    "a control without an id": (("controls",), [{"action": "x", "args": {}}], "$.controls[0].id: missing"),
    "executions as text": (("executions",), "x", "$.executions: expected a list"),
    "revision as text": (("revision",), "x", "$.revision: expected an integer"),
    "no concurrency": (("max_concurrent",), 0, "$.max_concurrent: expected at least 1"),
    "a pid as text": (("orchestrator",), {"pid": "1", "create_time": 1.5}, "$.orchestrator.pid: expected an integer"),
    "an orchestrator without its start": (("orchestrator",), {"pid": 1}, "$.orchestrator.create_time: missing"),
    "start ticks as text": (
        ("orchestrator",),
        {"pid": 1, "create_time": 1.5, "start_ticks": "9"},
        "$.orchestrator.start_ticks: expected an integer or null",
    ),
    "a task without its status": (("tasks", "a"), {"token_budget": 5}, "$.tasks.a.status: missing"),
    "a missing task": (("tasks",), {}, "$.tasks: task 'a' of the plan is missing"),
    "a stranger task": (
        ("tasks", "zz"),
        {"status": "pending", "token_budget": 5},
        "$.tasks: 'zz' is no task of the plan",
    ),
    "the whole file a list": ((), [], "$: expected an object, found a list"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_misshapen_state_is_one_clear_exit_2_and_nothing_written(cli, state_dir: Path, name: str) -> None:
    where, value, message = MUTATIONS[name]
    directory = run_dir(cli, state_dir)
    state = orjson.loads((directory / "state.json").read_bytes())
    for task in state["tasks"].values():
        task["status"] = "pending"  # so that resume has work to do
    if where:
        set_in(state, where, value)
    else:
        state = value
    (directory / "state.json").write_bytes(orjson.dumps(state))
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    # status shows the state's own tasks, so only what acts on the run holds them against the plan
    readers = [("delegate-parallel", "resume", "-q")] + ([] if "plan" in message else [("delegate-parallel", "status")])
    for command in readers:
        result = cli(*command)
        assert result.code == 2, (command, result.stdout, result.stderr)
        assert message in result.stderr and str(directory / "state.json") in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    lever = cli("parallel-to-sequential", "convert-remaining-tasks")
    assert lever.code == 2 and message in lever.stderr
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before


def test_a_well_formed_state_of_an_older_version_still_resumes(cli, state_dir: Path) -> None:
    directory = run_dir(cli, state_dir)
    state = orjson.loads((directory / "state.json").read_bytes())
    for key in ("effective_concurrency", "paused_until", "warm_agents", "executions", "stop_reason"):
        state.pop(key, None)  # fields later versions added
    state["tasks"]["b"] = {"status": "pending", "token_budget": 1000, "attempts": 0}
    (directory / "state.json").write_bytes(orjson.dumps(state))
    result = cli("delegate-parallel", "resume", "-q")
    assert result.code == 0, result.stderr
    assert orjson.loads((directory / "state.json").read_bytes())["tasks"]["b"]["status"] == "succeeded"


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += paths_of(value, (*prefix, i))
    return found


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["pid", "id", "status", "x"]), st.integers() | st.text(max_size=3), max_size=2),
)


@pytest.fixture(scope="module")
def finished_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real state.json, of a run with a lever applied, for the fuzzer to damage."""
    from awoc_scripts.cli import delegate_parallel, levers

    root = tmp_path_factory.mktemp("shape") / "state"
    with pytest.raises(SystemExit):  # a lever on the prepared run, which holds when it starts
        delegate_parallel.main(["prepare", "--state-dir", str(root), CONFIG])
    with pytest.raises(SystemExit):
        levers.sequential_main(["convert-remaining-tasks", "--state-dir", str(root)])
    with pytest.raises(SystemExit):
        delegate_parallel.main(["start", "-q", "--state-dir", str(root)])
    run = root / "runs" / (root / "current").read_text().strip()
    state: dict[str, Any] = orjson.loads((run / "state.json").read_bytes())
    assert state["controls"] and state["executions"]
    return state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_is_refused_by_name_or_leaves_a_state_its_readers_can_use(finished_state, data) -> None:
    state = copy.deepcopy(finished_state)
    where = data.draw(st.sampled_from(paths_of(state)))
    if data.draw(st.booleans()):
        set_in(state, where, data.draw(junk))
    else:  # or the key (or list item) is gone
        parent = state
        for key in where[:-1]:
            parent = parent[key]
        del parent[where[-1]]
    try:
        checked = check_state(state, Path("state.json"), ["a", "b"])
    except StateError as exc:
        assert str(exc).startswith("state.json: $") and "\n" not in str(exc)
        return
    # what passes is what the readers rely on, read the way they read it
    from builders import config, numbered, task

    from awoc_scripts.execution.machine.saved import saved_machine
    from awoc_scripts.state.owner import orchestrator_alive

    orchestrator_alive(checked)
    plan = {"parallel_config": config(), "tasks": numbered([task("a", priority="high"), task("b", priority="high")])}
    target = saved_machine("r", plan, checked)  # as the levers load a saved run
    for task_id in ("a", "b"):
        target.status_of(task_id), target.budget_of(task_id), target.error_of(task_id)
    target.pending()
    int(checked["max_concurrent"])
    for saved in checked["tasks"].values():  # as status sums them
        int(saved.get("tokens_used", {}).get("total", 0)) + float(saved.get("cost_usd") or 0) + saved.get("attempts", 0)
    assert requested_controls(checked, []) == checked.get("controls", [])


def test_a_kept_result_of_the_wrong_shape_stops_resume_by_name(cli, state_dir: Path) -> None:
    directory = run_dir(cli, state_dir)
    state = orjson.loads((directory / "state.json").read_bytes())
    state["tasks"]["a"]["status"] = state["tasks"]["b"]["status"] = "pending"  # killed before the state caught up
    (directory / "state.json").write_bytes(orjson.dumps(state))
    result_file = directory / "tasks" / "a" / "result.json"
    result = orjson.loads(result_file.read_bytes())
    result["tokens_used"] = 5
    result_file.write_bytes(orjson.dumps(result))
    resumed = cli("delegate-parallel", "resume", "-q")
    assert resumed.code == 2
    assert f"{result_file}: $.tokens_used: expected an object, found an integer" in resumed.stderr


def test_the_aggregator_refuses_a_result_of_the_wrong_shape_by_name(cli, tmp_path: Path) -> None:
    good = {"task_id": "a", "agent": "qa", "status": "succeeded", "result": "ok", "duration_s": 1.0}
    bad = {**good, "task_id": "b", "duration_s": "slow"}
    (tmp_path / "a.json").write_bytes(orjson.dumps(good))
    (tmp_path / "b.json").write_bytes(orjson.dumps(bad))
    result = cli("parallel-result-aggregator", "aggregate", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert result.code == 2
    assert f"{tmp_path / 'b.json'}: $.duration_s: expected a number or null, found a string" in result.stderr
    alone = cli("parallel-result-aggregator", "aggregate", str(tmp_path / "a.json"))
    assert alone.code == 0, alone.stderr


def test_a_plan_changed_after_it_was_saved_is_refused_and_an_unsealed_one_trusted(cli, state_dir: Path) -> None:
    directory = run_dir(cli, state_dir)
    plan_file = directory / "plan.json"
    original = plan_file.read_bytes()
    plan = orjson.loads(original)
    plan["tasks"][0] = None
    plan_file.write_bytes(orjson.dumps(plan))
    for command in (("delegate-parallel", "resume", "-q"), ("parallel-to-sequential", "convert-remaining-tasks")):
        result = cli(*command)
        assert result.code == 2, result.stderr
        assert f"{plan_file}: changed after awoc wrote it" in result.stderr
    plan_file.write_bytes(original)
    assert cli("delegate-parallel", "status").code == 0
    (directory / "plan.json.crc32").unlink()  # a run saved before plans were sealed
    assert cli("delegate-parallel", "status").code == 0


def test_a_changed_execution_plan_is_refused_and_made_again_once_deleted(cli, state_dir: Path) -> None:
    directory = run_dir(cli, state_dir)
    execution_file = directory / "execution.json"
    execution = orjson.loads(execution_file.read_bytes())
    execution["tasks"] = "x"
    execution_file.write_bytes(orjson.dumps(execution))
    refused = cli("delegate-parallel", "resume", "-q")
    assert refused.code == 2 and "Delete it, and the run is planned for execution again" in refused.stderr
    execution_file.unlink()
    assert cli("delegate-parallel", "resume", "-q").code == 0
    assert isinstance(orjson.loads(execution_file.read_bytes())["tasks"], list)


def test_a_torn_or_edited_event_line_is_left_out_of_the_report(cli, state_dir: Path) -> None:
    directory = run_dir(cli, state_dir)
    with (directory / "events.jsonl").open("ab") as fh:
        fh.write(b'[1,2]\n{"event":"concurrency-change","before":8}\n')  # as orjson writes them
        fh.write(b'{"event":"concurrency-change","before":8,"after":4,"why":"429"}\n')
        fh.write(b'{"event":"task-warm-used","task_id":"a","warm_s":"long"}\n{"event":"concurrency-ch')
    for name in ("report.json", "report.md", "aggregate.json"):
        (directory / name).unlink()
    result = cli("delegate-parallel", "report")
    assert result.code == 0, result.stderr
    report = orjson.loads((directory / "report.json").read_bytes())
    assert report["concurrency"]["cuts"] == 1 and report["concurrency"]["lowest"] == 4
    assert report.get("warm_pool") is None  # the one warm event was misshapen


def test_the_checks_are_read_from_the_document_types() -> None:
    from awoc_scripts.run_documents import LeverRequest, TaskResult, TaskState
    from awoc_scripts.state.shapes import kinds_of, required_of

    assert kinds_of(TaskResult)["duration_s"] == {int, float, type(None)}  # float | None: an integer is a number
    assert kinds_of(TaskResult)["verify"] == {dict, type(None)} and kinds_of(TaskResult)["cached"] == {bool}
    assert required_of(TaskState) == {"status", "token_budget"}  # the rest NotRequired
    assert required_of(LeverRequest) == {"id", "action", "args"}
    assert result_problem({"duration_s": "1s"}) == "$.duration_s: expected a number or null, found a string"
    assert result_problem({"cached": 1}) == "$.cached: expected true or false, found an integer"
