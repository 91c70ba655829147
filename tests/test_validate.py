"""parallel-task-parser validate: the three input forms, the plan, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import EXAMPLES, write_json

THREE = ["docs-fetcher:Research API docs", "architect:Design system", "workforce:Setup tests"]


def tasks_by_id(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in plan["tasks"]}


def test_inline_tasks_get_default_ids_and_budgets(cli, state_dir: Path) -> None:
    result = cli("parallel-task-parser", "validate", *THREE)
    assert result.code == 0, result.stderr
    plan = result.json()
    assert [t["task_id"] for t in plan["tasks"]] == ["docs-fetcher-1", "architect-1", "workforce-1"]
    assert [t["token_budget"] for t in plan["tasks"]] == [4000, 6000, 8000]
    assert plan["schema"] == "delegate-parallel-v1.0"
    assert plan["parallel_config"]["max_concurrent"] == 5
    saved = orjson.loads((state_dir / "runs" / plan["run_id"] / "plan.json").read_bytes())
    assert saved == plan
    assert (state_dir / "current").read_text().strip() == plan["run_id"]


def test_mixed_priorities_and_both_flag_forms(cli) -> None:
    result = cli(
        "parallel-task-parser",
        "validate",
        "--priority=high",
        "architect:Critical security review",
        "--priority",
        "medium",
        "docs-fetcher:Performance research",
        "workforce:c",
        "--max-parallel",
        "3",
        "--timeout=300",
        "--format=research_report",
        "--total-budget",
        "50000",
    )
    assert result.code == 0, result.stderr
    plan = result.json()
    assert [t["priority"] for t in plan["tasks"]] == ["high", "medium", "medium"]
    assert plan["tasks"][0]["token_budget"] == 6600
    config = plan["parallel_config"]
    assert (config["max_concurrent"], config["total_timeout"], config["result_format"]) == (3, 300, "research_report")
    assert config["total_token_budget"] == 50000
    assert all(t["timeout"] == 300 for t in plan["tasks"])


def test_then_and_wait_for_research(cli) -> None:
    result = cli(
        "parallel-task-parser",
        "validate",
        "docs-fetcher:Stripe",
        "docs-fetcher:SendGrid",
        "architect:Design",
        "--wait-for-research",
        "workforce:Stripe",
        "workforce:Email",
        "--then",
        "qa:Check all",
    )
    assert result.code == 0, result.stderr
    tasks = tasks_by_id(result.json())
    assert tasks["architect-1"]["dependencies"] == []
    assert tasks["workforce-1"]["dependencies"] == ["docs-fetcher-1", "docs-fetcher-2"]
    assert tasks["workforce-2"]["dependencies"] == ["docs-fetcher-1", "docs-fetcher-2"]
    assert set(tasks["qa-1"]["dependencies"]) == {
        "docs-fetcher-1",
        "docs-fetcher-2",
        "architect-1",
        "workforce-1",
        "workforce-2",
    }


def test_wait_for_research_before_the_tasks_means_the_same(cli) -> None:
    result = cli(
        "parallel-task-parser",
        "validate",
        "--wait-for-research",
        "architect:Design",
        "docs-fetcher:Stripe",
        "workforce:Build",
        "docs-fetcher:SendGrid",
    )
    assert result.code == 0, result.stderr
    tasks = tasks_by_id(result.json())
    research = ["docs-fetcher-1", "docs-fetcher-2"]
    assert tasks["architect-1"]["dependencies"] == research and tasks["workforce-1"]["dependencies"] == research
    assert tasks["docs-fetcher-1"]["dependencies"] == tasks["docs-fetcher-2"]["dependencies"] == []


def test_wait_for_research_without_research_is_refused(cli) -> None:
    result = cli("parallel-task-parser", "validate", "--wait-for-research", "architect:Design")
    assert result.code == 2 and "--wait-for-research: no docs-fetcher task to wait for" in result.stderr


@pytest.mark.parametrize("name", ["tasks.json", "feature-development.json", "bug-investigation.json"])
def test_shipped_examples_validate(cli, name: str) -> None:
    result = cli("parallel-task-parser", "validate", str(EXAMPLES / name))
    assert result.code == 0, result.stderr


def test_feature_development_keeps_explicit_budgets_and_resolves_agents(cli) -> None:
    plan = cli("parallel-task-parser", "validate", str(EXAMPLES / "feature-development.json")).json()
    assert [t["token_budget"] for t in plan["tasks"]] == [3500, 6000, 8000, 4000]
    assert all(t["budget_source"] == "explicit" for t in plan["tasks"])
    tasks = tasks_by_id(plan)
    assert tasks["architect-1"]["dependencies"] == ["docs-fetcher-1"]
    assert tasks["workforce-2"]["dependencies"] == ["architect-1"]
    assert plan["workflow"] == "feature_development"


def test_config_from_stdin_and_json_text_with_flag_override(cli) -> None:
    config = orjson.dumps({"tasks": [{"agent": "qa", "description": "x"}]}).decode()
    assert cli("parallel-task-parser", "validate", "-", stdin=config).code == 0
    result = cli("parallel-task-parser", "validate", config, "--max-parallel=7")
    assert result.json()["parallel_config"]["max_concurrent"] == 7


def test_partial_and_conditional_defaults(cli, tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "c.json",
        {
            "tasks": [
                {"task_id": "a", "agent": "qa", "description": "x", "priority": "high"},
                {"task_id": "b", "agent": "qa", "description": "x", "priority": "low"},
                {
                    "task_id": "c",
                    "agent": "qa",
                    "description": "x",
                    "dependencies": ["a", "b"],
                    "dependency_mode": "partial",
                },
                {
                    "task_id": "d",
                    "agent": "qa",
                    "description": "x",
                    "dependencies": ["a"],
                    "dependency_mode": "conditional",
                },
            ]
        },
    )
    tasks = tasks_by_id(cli("parallel-task-parser", "validate", str(path)).json())
    assert tasks["c"]["critical_dependencies"] == ["a"]
    assert tasks["d"]["condition"] == {"when": "success"}


def test_hostile_task_text_is_kept_byte_for_byte(cli) -> None:
    text = "say \"hi\" 'there' $(touch /tmp/pwned) `id` ; rm -rf / && echo\nnew line ünïcødé 🚀"
    result = cli("parallel-task-parser", "validate", f"qa:{text}")
    assert result.code == 0, result.stderr
    assert result.json()["tasks"][0]["description"] == text
    assert not Path("/tmp/pwned").exists()


# ---- bad input: exit 2, one message naming the problem, no traceback, no state ----


def bad(cli, state_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = cli("parallel-task-parser", "validate", *args, stdin=stdin)
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())
    assert not (state_dir / "current").exists()
    return result.stderr


def config_file(tmp_path: Path, data: Any) -> str:
    return str(write_json(tmp_path / "bad.json", data))


def test_missing_file(cli, state_dir) -> None:
    assert "no such config file" in bad(cli, state_dir, "nope.json")


def test_directory(cli, state_dir, tmp_path) -> None:
    assert "is a directory" in bad(cli, state_dir, str(tmp_path))


def test_malformed_json(cli, state_dir, tmp_path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"tasks": [\n  {"agent": "qa",}\n]}')
    err = bad(cli, state_dir, str(path))
    assert str(path) in err and "malformed JSON" in err and "line 2" in err


def test_not_an_object(cli, state_dir, tmp_path) -> None:
    assert "expected a JSON object" in bad(cli, state_dir, config_file(tmp_path, [1, 2]))


def test_empty_task_list(cli, state_dir, tmp_path) -> None:
    assert "tasks: expected at least one task" in bad(cli, state_dir, config_file(tmp_path, {"tasks": []}))


def test_wrong_types_are_all_reported_with_paths(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli,
        state_dir,
        config_file(
            tmp_path,
            {
                "parallel_config": {"max_concurrent": "5"},
                "tasks": [
                    {"agent": "qa", "description": "x"},
                    {"agent": "qa", "description": "y"},
                    {"agent": "qa", "description": "z", "priority": "urgent", "token_budget": 1.5},
                ],
            },
        ),
    )
    assert "parallel_config.max_concurrent: expected an integer, got string '5'" in err
    assert "tasks[2].priority: 'urgent' is not one of critical, high, medium, low" in err
    assert "tasks[2].token_budget: expected an integer" in err


def test_unknown_keys_suggest_the_right_one(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli, state_dir, config_file(tmp_path, {"tasks": [{"agent": "qa", "description": "x", "prority": "high"}]})
    )
    assert "tasks[0].prority: unknown key 'prority' (did you mean 'priority'?)" in err


@pytest.mark.parametrize("task_id", ["../x", "a/b", "has space", "UPPER", "", "x" * 65])
def test_path_like_and_bad_ids(cli, state_dir, tmp_path, task_id: str) -> None:
    err = bad(
        cli, state_dir, config_file(tmp_path, {"tasks": [{"task_id": task_id, "agent": "qa", "description": "x"}]})
    )
    assert "tasks[0].task_id" in err


def test_path_like_inline_agent(cli, state_dir) -> None:
    err = bad(cli, state_dir, "../x:escape")
    assert "task 1 '../x:escape'.agent" in err and "not a valid name" in err


def test_duplicate_ids(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli,
        state_dir,
        config_file(
            tmp_path,
            {
                "tasks": [
                    {"agent": "qa", "description": "x"},
                    {"task_id": "qa-1", "agent": "architect", "description": "y"},
                ]
            },
        ),
    )
    assert "tasks[1]: duplicate task id 'qa-1' (also tasks[0])" in err


def test_inline_argument_without_agent(cli, state_dir) -> None:
    err = bad(cli, state_dir, "Research the API")
    assert "Research the API: no such config file" in err


def test_unknown_flag(cli, state_dir) -> None:
    assert "unknown option '--paralel'" in bad(cli, state_dir, "--paralel=3", "qa:x")


def test_bad_flag_values(cli, state_dir) -> None:
    assert "--max-parallel: expected a whole number, got 'many'" in bad(cli, state_dir, "--max-parallel=many", "qa:x")
    assert "--priority: 'urgent' is not one of" in bad(cli, state_dir, "--priority=urgent", "qa:x")
    assert "--max-parallel" in bad(cli, state_dir, "--max-parallel=500", "qa:x")
    assert "needs a value" in bad(cli, state_dir, "qa:x", "--timeout")


def test_cycle_is_printed_as_its_path(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli,
        state_dir,
        config_file(
            tmp_path,
            {
                "tasks": [
                    {"task_id": "design", "agent": "architect", "description": "x", "dependencies": ["test"]},
                    {"task_id": "build", "agent": "workforce", "description": "x", "dependencies": ["design"]},
                    {"task_id": "test", "agent": "qa", "description": "x", "dependencies": ["build"]},
                ]
            },
        ),
    )
    assert "dependency cycle: design -> build -> test -> design" in err


def test_unknown_dependency_lists_what_exists(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli,
        state_dir,
        config_file(
            tmp_path,
            {
                "tasks": [
                    {"agent": "architect", "description": "x"},
                    {"agent": "workforce", "description": "x", "dependencies": ["architekt"]},
                ]
            },
        ),
    )
    assert "tasks[1].dependencies[0]: unknown dependency 'architekt'" in err
    assert "architect-1" in err and "agents: architect, workforce" in err


def test_self_dependency(cli, state_dir, tmp_path) -> None:
    err = bad(
        cli,
        state_dir,
        config_file(tmp_path, {"tasks": [{"task_id": "a", "agent": "qa", "description": "x", "dependencies": ["a"]}]}),
    )
    assert "depends on itself" in err


def test_explicit_budgets_over_given_total(cli, state_dir) -> None:
    config = orjson.dumps(
        {
            "parallel_config": {"total_token_budget": 100},
            "tasks": [{"agent": "qa", "description": "x", "token_budget": 500}],
        }
    ).decode()
    assert "explicit token budgets add up to 500" in bad(cli, state_dir, config)


def test_config_and_inline_together(cli, state_dir) -> None:
    assert "not both" in bad(cli, state_dir, str(EXAMPLES / "tasks.json"), "qa:x")


def test_no_tasks(cli, state_dir) -> None:
    assert "no tasks given" in bad(cli, state_dir, "--max-parallel=3")


def test_fifty_megabyte_file_is_refused_quickly(cli, state_dir, tmp_path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.write(b'{"tasks": [' + b'{"agent": "qa", "description": "' + b"x" * (50 * 1024 * 1024) + b'"}]}')
    assert "larger than the 32 MiB limit" in bad(cli, state_dir, str(path))


def test_huge_description_is_a_clear_error(cli, state_dir, tmp_path) -> None:
    err = bad(cli, state_dir, config_file(tmp_path, {"tasks": [{"agent": "qa", "description": "x" * 300000}]}))
    assert "tasks[0].description: longer than 200000 characters" in err


def test_dependency_validator(cli) -> None:
    ok = cli("dependency-validator", "check-circular", '{"a": [], "b": ["a"]}')
    assert ok.code == 0 and ok.json()["ok"] is True
    cyc = cli("dependency-validator", "check-circular", '{"a": ["b"], "b": ["a"]}')
    assert cyc.code == 2 and "dependency cycle" in cyc.stderr
    assert cli("dependency-validator", "check-circular", str(EXAMPLES / "feature-development.json")).code == 0
    assert cli("dependency-validator", "check-circular", "[1]").code == 2


def test_a_mistyped_agent_gets_a_suggestion(cli, tmp_path: Path) -> None:
    result = cli("parallel-task-parser", "validate", "archtect:Design", "docs-fetcher:Research")
    assert result.code == 0
    assert result.json()["warnings"] == [
        'agent "archtect" is defined nowhere (it would run with a generic role): did you mean "architect"?'
    ]
    assert 'warning: agent "archtect"' in result.stderr
    # one defined in the project's .claude/agents counts as known, and typos of it are caught too
    agents = Path(".claude/agents")
    agents.mkdir(parents=True)
    (agents / "security-reviewer.md").write_text("---\nname: security-reviewer\ndescription: x\n---\nReview.\n")
    again = cli("parallel-task-parser", "validate", "security-reviewer:Look", "security-reviewr:Look")
    assert again.json()["warnings"] == [
        'agent "security-reviewr" is defined nowhere (it would run with a generic role): '
        'did you mean "security-reviewer"?'
    ]


def test_a_mistyped_flag_gets_a_suggestion(cli) -> None:
    result = cli("parallel-task-parser", "validate", "architect:Design", "--max-paralel=3")
    assert result.code == 2 and "unknown option '--max-paralel': did you mean --max-parallel?" in result.stderr


def test_a_fifo_is_refused_not_read(cli, tmp_path: Path, state_dir: Path) -> None:
    import os

    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    result = cli("parallel-task-parser", "validate", str(fifo))
    assert result.code == 2 and "not a regular file" in result.stderr and not state_dir.exists()


HOSTILE = [
    ('{"tasks":[{"agent":"a","description":"x","token_budget":99999999999999999999999}]}', "out of range"),
    ('{"tasks":[{"agent":"a","description":"x","token_budget":9223372036854775808}]}', "out of range"),
    ('{"tasks":[{"agent":"a","description":"x","command":["a\\u0000b"]}]}', "tasks[0].command[0]: contains a NUL"),
    ('{"tasks":[{"agent":"a","description":"x","model":"m\\u0000"}]}', "tasks[0].model: contains a NUL"),
    ('{"tasks":[{"agent":"a\\n","description":"x"}]}', "is not a valid name"),
    ('{"tasks":[{"agent":"a","task_id":"b\\n","description":"x"}]}', "is not a valid name"),
    ('{"tasks":[{"agent":"a","description":"x","context":' + "[" * 600 + "]" * 600 + "}]}", "nested deeper than"),
    ('{"parallel_config":{"total_timeout":1e300},"tasks":[{"agent":"a","description":"x"}]}', "out of range"),
    ('{"tasks":[{"agent":"a","description":"x","agent":"b"}]}', "tasks[0]: key 'agent' appears more than once"),
    ('{"tasks":[],"tasks":[{"agent":"a","description":"x"}]}', "top-level object: key 'tasks' appears more than once"),
]


@pytest.mark.parametrize(("config", "expected"), HOSTILE)
def test_hostile_configs_get_one_clear_message_and_exit_2(cli, state_dir, config: str, expected: str) -> None:
    result = cli("parallel-task-parser", "validate", config)
    assert result.code == 2 and expected in result.stderr, result.stderr
    assert "internal error" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not state_dir.exists()


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--timeout=nan", "--timeout: a number that is not finite"),
        ("--timeout=inf", "--timeout: a number that is not finite"),
        ("--timeout=1e400", "--timeout: a number that is not finite"),
        ("--total-budget=99999999999999999999999", "--total-budget: an integer out of range"),
    ],
)
def test_hostile_inline_flags_exit_2(cli, state_dir, flag: str, expected: str) -> None:
    result = cli("parallel-task-parser", "validate", "qa:x", flag)
    assert result.code == 2 and expected in result.stderr, result.stderr
    assert not state_dir.exists()


def test_invalid_utf8_on_the_command_line_exits_2(cli, state_dir) -> None:
    result = cli("parallel-task-parser", "validate", b"qa:caf\xff".decode("utf-8", "surrogateescape"))
    assert result.code == 2 and "is not valid UTF-8" in result.stderr, result.stderr
    assert not state_dir.exists()


def test_a_long_cycle_and_many_problems_are_told_briefly(cli) -> None:
    n = 5000
    tasks = [
        {"task_id": f"t{i}", "agent": "qa", "description": "x", "dependencies": [f"t{(i + 1) % n}"]} for i in range(n)
    ]
    result = cli("dependency-validator", "check-circular", orjson.dumps({"tasks": tasks}).decode())
    assert result.code == 2 and f"dependency cycle of {n} tasks" in result.stderr and "more ..." in result.stderr
    assert len(result.stderr) < 400
    bad = [{"agent": "BAD", "description": ""} for _ in range(50)]
    many = cli("parallel-task-parser", "validate", orjson.dumps({"tasks": bad}).decode())
    assert many.code == 2 and len(many.stderr.strip().splitlines()) <= 7 and "more" in many.stderr
