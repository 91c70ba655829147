import pytest
from hypothesis import given
from hypothesis import strategies as st

from awoc_scripts.errors import InputError
from awoc_scripts.planning.budgets import BudgetRequest, allocate_budgets, computed_budget


def req(task_id: str, agent: str, priority: str = "medium", explicit: int | None = None) -> BudgetRequest:
    return BudgetRequest(task_id, agent, priority, explicit)


def test_base_times_priority_rounded_down() -> None:
    assert computed_budget("architect", "high") == 6600
    assert computed_budget("docs-fetcher", "critical") == 5200
    assert computed_budget("workforce", "low") == 6400
    assert computed_budget("qa", "medium") == 5000
    assert computed_budget("qa", "low", {"qa": {"base_budget": 1001}}) == 800


def test_issue_example_scales_by_one_common_factor() -> None:
    tasks = [req("a", "architect", "high"), req("b", "docs-fetcher"), req("c", "workforce"), req("d", "qa")]
    assert allocate_budgets(tasks, None).budgets == {"a": 6600, "b": 4000, "c": 8000, "d": 5000}
    scaled = allocate_budgets(tasks, 15000)
    assert scaled.budgets == {"a": 4194, "b": 2542, "c": 5084, "d": 3177}
    assert scaled.scale_factor == pytest.approx(15000 / 23600, abs=1e-6)
    assert scaled.warnings


def test_explicit_budgets_win_and_are_not_scaled() -> None:
    tasks = [req("a", "architect", explicit=9000), req("b", "workforce")]
    result = allocate_budgets(tasks, 12000)
    assert result.budgets == {"a": 9000, "b": 3000}


def test_explicit_over_a_given_total_is_an_error() -> None:
    with pytest.raises(InputError, match="explicit token budgets add up to 30000"):
        allocate_budgets([req("a", "qa", explicit=30000)], 20000)


def test_explicit_over_the_default_total_raises_it_with_a_warning() -> None:
    result = allocate_budgets([req("a", "qa", explicit=30000), req("b", "qa")], None)
    assert result.total == 35000
    assert result.budgets == {"a": 30000, "b": 5000}
    assert "raised" in result.warnings[0]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["architect", "docs-fetcher", "workforce", "qa"]),
            st.sampled_from(["critical", "high", "medium", "low"]),
            st.one_of(st.none(), st.integers(1, 20000)),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 200000),
)
def test_scaled_sum_never_exceeds_the_total(specs: list[tuple[str, str, int | None]], total: int) -> None:
    tasks = [req(f"t{i}", agent, prio, explicit) for i, (agent, prio, explicit) in enumerate(specs)]
    try:
        result = allocate_budgets(tasks, total)
    except InputError:
        explicit_sum = sum(e for _, _, e in specs if e is not None)
        computed = [computed_budget(a, p) for a, p, e in specs if e is None]
        available = total - explicit_sum
        assert explicit_sum > total or (computed and min(computed) * available < sum(computed))
        return
    assert result.allocated <= total
    assert all(b >= 1 for b in result.budgets.values())
    for (_, _, explicit), (tid, budget) in zip(specs, result.budgets.items(), strict=True):
        assert explicit is None or budget == explicit, tid


def test_many_tasks_without_budgets_are_warned_about_truthfully() -> None:
    from awoc_scripts.planning.budgets import BudgetRequest, allocate_budgets

    allocation = allocate_budgets([BudgetRequest(f"t{i}", "x", "medium", None) for i in range(30000)], None, {})
    assert allocation.warnings == [
        "the default total 25000 cannot give each of the 30000 tasks a token; the total is raised to 150000000, "
        "the sum of the tasks' budgets (set total_token_budget to choose another)"
    ]
