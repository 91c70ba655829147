"""The quick schema check agrees with jsonschema on every document, valid or not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from awoc_scripts.input.config_schema import load_schema
from awoc_scripts.input.fast_schema import compile_schema

SCHEMA = load_schema()
QUICK = compile_schema(SCHEMA)
JUDGE = Draft202012Validator(SCHEMA)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 200001), st.floats(-2, 1e6, allow_nan=False),
    st.sampled_from(["", " ", "x", "qa", "../x", "A", "critical", "low", "partial", "conditional", "success",
                     "any", "worktree", "process", "structured", "json", "stream-json", "Read,Grep", "a" * 70]),
)  # fmt: skip
names = st.sampled_from(["qa", "architect", "docs-fetcher", "x_1", "Bad", "../x", "a b", ""])
task_keys = st.sampled_from([*sorted(SCHEMA["$defs"]["task"]["properties"]), "prority", "extra"])
config_keys = st.sampled_from([*sorted(SCHEMA["$defs"]["parallel_config"]["properties"]), "max_parallel"])


def values(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return scalars
    inner = values(depth - 1)
    return st.one_of(scalars, st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3))


GOOD_TASK_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "task_id": names,
    "priority": st.sampled_from(["critical", "high", "medium", "low"]),
    "token_budget": st.integers(1, 10000),
    "dependencies": st.lists(names, max_size=2),
    "dependency_mode": st.sampled_from(["all_complete", "partial", "conditional"]),
    "critical_dependencies": st.lists(names, max_size=2),
    "condition": st.fixed_dictionaries({"when": st.sampled_from(["success", "failure", "any"])}),
    "timeout": st.integers(1, 900),
    "estimated_duration": st.floats(0, 100),
    "retries": st.integers(0, 10),
    "command": st.lists(st.sampled_from(["echo", "x"]), min_size=1, max_size=2),
    "model": st.sampled_from(["sonnet", "opus"]),
    "tools": st.one_of(st.just("Read,Grep"), st.lists(st.sampled_from(["Read", "Grep"]), max_size=2)),
    "max_turns": st.integers(1, 5),
    "context": st.sampled_from(["", "some context"]),
    "isolation": st.sampled_from(["process", "worktree"]),
}


@st.composite
def tasks(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid tasks, each with a fair chance of one thing wrong."""
    task: dict[str, Any] = {"agent": draw(st.sampled_from(["qa", "architect", "x_1"])), "description": "do it"}
    for key in draw(st.lists(st.sampled_from(sorted(GOOD_TASK_VALUES)), max_size=5, unique=True)):
        task[key] = draw(GOOD_TASK_VALUES[key])
    mutation = draw(st.integers(0, 5))
    if mutation == 1:
        task[draw(task_keys)] = draw(values())
    elif mutation == 2:
        del task[draw(st.sampled_from(["agent", "description"]))]
    elif mutation == 3:
        task[draw(st.sampled_from(sorted(task)))] = draw(scalars)
    return task


@st.composite
def documents(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(values())
    doc: dict[str, Any] = {"tasks": draw(st.lists(tasks(), min_size=1, max_size=4))}
    if draw(st.integers(0, 8)) == 0:
        doc["tasks"] = draw(values(1))
    if draw(st.booleans()):
        doc["parallel_config"] = {
            "max_concurrent": draw(st.integers(0, 101)),
            "retries": draw(st.integers(0, 11)),
            "result_format": draw(st.sampled_from(["structured", "markdown", "research_report", "pdf"])),
        }
        if draw(st.booleans()):
            doc["parallel_config"][draw(config_keys)] = draw(values())
        if draw(st.booleans()):
            doc["parallel_config"]["agents"] = {draw(names): {"base_budget": draw(scalars)}}
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["workflow", "schema", "$schema", "description", "wrokflow"]))] = draw(scalars)
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_quick_check_agrees_with_jsonschema(document: Any) -> None:
    assert QUICK(document) == JUDGE.is_valid(document), document


@pytest.mark.parametrize("document", [
    {"tasks": [{"agent": "qa", "description": "x"}]},
    {"tasks": [{"agent": "qa", "description": "x", "token_budget": 1.0}]},
    {"tasks": [{"agent": "qa", "description": "x", "token_budget": True}]},
    {"tasks": [{"agent": "qa", "description": "x", "tools": ["Read", ""]}]},
    {"tasks": [{"agent": "qa", "description": "x", "condition": {"when": "any"}}]},
    {"parallel_config": {"agents": {"Bad": {}}}, "tasks": [{"agent": "qa", "description": "x"}]},
    {"parallel_config": {"runner": {"command": []}}, "tasks": [{"agent": "qa", "description": "x"}]},
    {"schema": "delegate-parallel-v1.0", "tasks": [{"agent": "qa", "description": "x", "timeout": 0}]},
])  # fmt: skip
def test_edge_cases(document: Any) -> None:
    assert QUICK(document) == JUDGE.is_valid(document)


def test_the_examples_pass_both() -> None:
    import orjson

    from conftest import EXAMPLES

    for path in EXAMPLES.glob("*.json"):
        doc = orjson.loads(path.read_bytes())
        assert QUICK(doc) and JUDGE.is_valid(doc), path
