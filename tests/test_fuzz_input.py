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
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["qa", "a\n", "critical", "partial", "worktree", "x\x00y", "", "qa-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)
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
