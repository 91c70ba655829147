import itertools

import pytest

from awoc_scripts.errors import InputError
from awoc_scripts.input.dependencies import check_graph, find_cycle


def test_find_cycle_reports_the_path_in_execution_order() -> None:
    graph = {"design": ["test"], "build": ["design"], "test": ["build"]}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert len(cycle) == 4
    for before, after in itertools.pairwise(cycle):
        assert before in graph[after]


def test_no_cycle_in_a_dag() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_deep_chain_does_not_overflow_the_stack() -> None:
    graph = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(50000)}
    assert find_cycle(graph) is None
    graph["t0"] = ["t49999"]
    cycle = find_cycle(graph)
    assert cycle is not None and len(cycle) == 50001


def test_check_graph_on_a_mapping() -> None:
    assert check_graph({"a": [], "b": ["a"]}, "<argument>") == {"ok": True, "tasks": 2, "dependencies": 1}
    with pytest.raises(InputError, match="a -> b -> a"):
        check_graph({"a": ["b"], "b": ["a"]}, "<argument>")
    with pytest.raises(InputError, match="unknown dependency 'zz'"):
        check_graph({"a": ["zz"]}, "<argument>")


def test_check_graph_on_a_config_resolves_agent_names() -> None:
    config = {"tasks": [{"agent": "architect"}, {"agent": "workforce", "dependencies": ["architect"]}]}
    assert check_graph(config, "x.json")["dependencies"] == 1
    with pytest.raises(InputError, match="depends on itself"):
        check_graph({"tasks": [{"agent": "a", "task_id": "t", "dependencies": ["t"]}]}, "x.json")
