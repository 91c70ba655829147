"""Property-based fuzzing of the validator: whatever the config or the arguments, the answer is
exit 0 or exit 2 (never an internal error, never a hang), and exit 2 writes no state."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEYS = [
    *("agent", "description", "task_id", "priority", "token_budget", "dependencies", "dependency_mode"),
    *("critical_dependencies", "condition", "timeout", "estimated_duration", "retries", "command", "model"),
    *("tools", "context", "isolation", "max_concurrent", "total_timeout", "total_token_budget", "agents", "when"),
    *("cost_budget_usd", "total_cost_budget_usd", "ramp_up_s", "warm_agents", "runner", "warm_start", "executor"),
    *("dask", "scheduler", "resources", "connect_timeout_s", "keep_worktrees", "max_turns", "min_free_memory_mb"),
    *("permission_mode", "allowed_tools", "disallowed_tools", "add_dirs", "on_permission_denied", "verify"),
    *("verify_timeout", "for_each", "items", "glob", "lines", "cache", "merge", "gate", "auto", "resolve_with"),
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["qa", "a\n", "critical", "partial", "worktree", "x\x00y", "", "qa-1", "acceptEdits", "warn"]),
)


def nested(leaves: st.SearchStrategy[Any], keys: list[str], width: int, max_leaves: int) -> st.SearchStrategy[Any]:
    """JSON-like documents of LEAVES: lists and objects up to WIDTH wide, keyed mostly by KEYS."""
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=width)
            | st.dictionaries(st.sampled_from(keys) | st.text(max_size=width + 2), inner, max_size=width + 1)
        ),
        max_leaves=max_leaves,
    )


values = nested(scalars, KEYS, width=4, max_leaves=20)
task = st.fixed_dictionaries(
    {"agent": st.sampled_from(["qa", "architect", "BAD", "a\n"]), "description": st.text(max_size=20)},
    optional={k: values for k in KEYS if k not in ("agent", "description")},
)
configs = st.fixed_dictionaries(
    {"tasks": st.lists(task, min_size=0, max_size=4)},
    optional={"parallel_config": st.dictionaries(st.sampled_from(KEYS), values, max_size=4), "workflow": values},
)
flags = st.sampled_from(["--max-parallel", "--timeout", "--total-budget", "--failure-tolerance", "--priority",
                         "--then", "--isolation", "--retries", "--format", "--bogus"])  # fmt: skip
arguments = st.lists(
    st.one_of(
        st.builds(lambda a, d: f"{a}:{d}", st.sampled_from(["qa", "architect", "X", ""]), st.text(max_size=10)),
        st.builds(
            lambda f, v: f"{f}={v}", flags, st.sampled_from(["1", "0", "-3", "inf", "nan", "1e400", "high", "x"])
        ),
        flags,
        st.text(max_size=8),
    ),
    max_size=6,
)


def _validate(cli, args: list[str]) -> tuple[int, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        result = cli("parallel-task-parser", "validate", "--state-dir", str(state), *args)
        assert result.code in (0, 2), result.stderr
        assert "internal error" not in result.stderr
        if result.code == 2:
            assert not state.exists(), "a refused request wrote state"
            assert len(result.stderr.strip().splitlines()) <= 7
        return result.code, state.exists()


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(configs)
def test_any_config_is_accepted_or_refused_cleanly(cli, config: dict[str, Any]) -> None:
    _validate(cli, ["--", json.dumps(config)])  # the standard library writes integers of any size


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arguments)
def test_any_argument_list_is_accepted_or_refused_cleanly(cli, args: list[str]) -> None:
    _validate(cli, args)


RESULT_KEYS = [
    *("task_id", "agent", "status", "result", "exit_code", "attempts", "tokens_used", "cost_usd", "duration_s"),
    *("started_at", "finished_at", "error", "reason", "dependencies", "warnings", "task", "duration", "total"),
    *("permission_denials", "tool", "input", "verify", "cached", "cached_from", "saved", "worktree"),
]
result_scalars = scalars | st.sampled_from(["succeeded", "failed", "qa", "2026-12-02T10:00:00Z", "a"])
junk = nested(result_scalars, RESULT_KEYS, width=3, max_leaves=10)
# mostly well-formed documents with a few fields of anything: the checks must let the first
# through to the report and refuse the rest by name
results = st.fixed_dictionaries(
    {"agent": st.sampled_from(["qa", "dev"])},
    optional={
        "task_id": st.sampled_from(["a", "b", "c"]),
        "status": st.sampled_from(["succeeded", "failed", "skipped", "weird"]),
        "duration_s": st.floats(min_value=0, max_value=100) | junk,
        "started_at": st.sampled_from(["2026-12-02T10:00:00Z", "2026-12-02T10:00:03Z", "soon"]) | junk,
        "finished_at": st.sampled_from(["2026-12-02T10:00:05Z"]) | junk,
        "tokens_used": st.fixed_dictionaries({"total": st.integers(0, 10**6), "input": st.integers(0, 9)}) | junk,
        **{k: junk for k in ("result", "exit_code", "attempts", "cost_usd", "error", "dependencies", "duration")},
    },
)
GOOD_METADATA: dict[str, Any] = {
    "status": "succeeded",
    "result_format": "research_report",
    "total_time_s": 3.0,
    "total_token_budget": 1000,
    "estimated_makespan_s": 2.0,
    "executions": [{"started_at": "2026-12-02T10:00:00Z", "active_s": 1.5}],
    "dependencies": {"b": ["a"]},
    "critical_path": ["a", "b"],
    "concurrency": {"max_concurrent": 4, "lowest": 2, "final": 4, "cuts": 1, "raises": 2},
    "expected_usage": {"tokens": [1, 2], "cost_usd": [0.1, 0.2], "tasks_with_history": 1},
    "policy_actions": [{"at": "then", "action": "cut", "by": "orchestrator", "why": "tokens"}],
    "warm_events": [{"event": "task-warm-used", "task_id": "a", "warm_s": 0.5}],
}
metadata = st.fixed_dictionaries({}, optional={k: st.just(v) | junk for k, v in GOOD_METADATA.items()})


def _clean_exit(cli, *args: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = cli(*args, "--state-dir", str(Path(tmp) / "state"))
    assert result.code in (0, 2), result.stderr
    assert "internal error" not in result.stderr
    return result.code


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(results, min_size=1, max_size=3))
def test_any_result_files_are_aggregated_or_refused_cleanly(cli, given_results: list[dict[str, Any]]) -> None:
    _clean_exit(cli, "parallel-result-aggregator", "aggregate", *(json.dumps(r) for r in given_results))


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(results, max_size=3), metadata, st.sampled_from(["json", "markdown", "research_report"]))
def test_any_aggregate_and_metadata_are_reported_or_refused_cleanly(cli, tasks, given_metadata, output: str) -> None:
    aggregated = json.dumps({"tasks": tasks})
    _clean_exit(
        cli, "parallel-report-generator", "create-report", aggregated, json.dumps(given_metadata), "--format", output
    )


def test_well_formed_results_and_metadata_make_a_report(cli) -> None:
    done = {
        "agent": "qa",
        "task_id": "a",
        "status": "succeeded",
        "duration_s": 1.0,
        "started_at": "2026-12-02T10:00:00Z",
    }
    then = {**done, "task_id": "b", "dependencies": ["a"]}
    code = _clean_exit(
        cli,
        "parallel-report-generator",
        "create-report",
        json.dumps({"tasks": [done, then]}),
        json.dumps(GOOD_METADATA),
    )
    assert code == 0


odd_texts = st.sampled_from(["", "qa", "é", "x\x00y", "\x00", "caf\udcff", "a\udcffb", "ok ok", "名前"])
odd_scalars = st.one_of(
    scalars,
    odd_texts,
    st.sampled_from([2**63 - 1, 2**63, -(2**63), 2**64, 1e300, float("inf"), float("nan"), -0.0]),
)


@settings(max_examples=400, deadline=None)
@given(nested(odd_scalars, ["qa", "é", "x\x00y", "caf\udcff", "tasks"], 3, 12))
def test_the_quick_sanity_walk_agrees_with_the_one_that_names_problems(document: Any) -> None:
    # the quick walk judges most values without a path (dict keys and lists of names in one
    # join): it must call a document clean exactly when the naming walk finds nothing
    from awoc_scripts.input.sanity import _clean, _problems

    assert _clean(document, 0) == (not _problems(document))
