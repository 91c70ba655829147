"""The /delegate-parallel command for Claude Code, the agents, and `delegate-parallel install`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from awoc_scripts.agents import BUILTIN_DIR, find_agent, parse_agent_file
from awoc_scripts.install import render_command

from conftest import REPO

COMMAND = REPO / ".claude" / "commands" / "delegate-parallel.md"


def frontmatter(text: str) -> dict[str, str]:
    assert text.startswith("---\n"), "frontmatter must be the very first thing in the file"
    end = text.index("\n---\n", 4)
    fields = {}
    for line in text[4:end].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def allowed_prefixes(fields: dict[str, str]) -> list[str]:
    return re.findall(r"Bash\(([^:)]+):\*\)", fields["allowed-tools"])


def commands_run(text: str) -> list[str]:
    """The commands of the `!` lines and of the backticked commands Claude is told to run."""
    body = text[text.index("\n---\n", 4) + 5 :]
    bang = re.findall(r"^!`([^`]+)`", body, re.M)
    told = [c for c in re.findall(r"`([^`]+)`", body) if c.split()[0].endswith(".sh")]
    return [*bang, *told]


def test_repo_command_is_the_rendered_template() -> None:
    assert COMMAND.read_text() == render_command("scripts")


def test_command_frontmatter_and_arguments() -> None:
    text = COMMAND.read_text()
    fields = frontmatter(text)
    assert {"description", "argument-hint", "allowed-tools"} <= set(fields)
    for key, value in fields.items():  # plain YAML scalars: nothing a YAML parser would read as more
        assert value[:1] not in "[{&*!|>'%@`" or value.startswith('"'), key
        assert ": " not in value.strip('"') and " #" not in value, key
    assert "$ARGUMENTS" in text
    bang_lines = re.findall(r"^!`([^`]+)`", text, re.M)
    assert [line.split()[0] for line in bang_lines] == [
        "scripts/parallel-task-parser.sh",
        "scripts/parallel-resource-planner.sh",
    ]


def test_every_command_it_runs_exists_and_is_allowed_exactly() -> None:
    text = COMMAND.read_text()
    prefixes = allowed_prefixes(frontmatter(text))
    used = {shlex.split(c.replace("$ARGUMENTS", ""))[0] for c in commands_run(text)}
    assert used == set(prefixes), "allowed-tools must allow exactly the commands the command runs"
    for script in used:
        assert (REPO / script).is_file() and (REPO / script).stat().st_mode & 0o111, script


def test_bundled_agents_are_valid_subagents_and_match_the_builtins() -> None:
    for name in ("architect", "docs-fetcher", "workforce"):
        text = (REPO / ".claude" / "agents" / f"{name}.md").read_text()
        assert text == (BUILTIN_DIR / f"{name}.md").read_text()
        agent = parse_agent_file(text, name)
        assert agent is not None and agent.name == name and agent.description and agent.system_prompt.strip()


def test_agent_lookup_order(tmp_path: Path) -> None:
    project = tmp_path / "project" / "sub"
    project.mkdir(parents=True)
    home = tmp_path / "home"
    (home / ".claude" / "agents").mkdir(parents=True)
    (home / ".claude" / "agents" / "architect.md").write_text(
        "---\nname: architect\ndescription: mine\n---\nHOME ROLE\n"
    )
    assert find_agent("architect", project, home).system_prompt == "HOME ROLE\n"
    (tmp_path / "project" / ".claude" / "agents").mkdir(parents=True)
    (tmp_path / "project" / ".claude" / "agents" / "architect.md").write_text(
        "---\nname: architect\ndescription: project\ntools:\n  - Read\n  - Grep\nmodel: opus\n---\nPROJECT ROLE\n"
    )
    agent = find_agent("architect", project, home)
    assert (agent.system_prompt, agent.tools, agent.model) == ("PROJECT ROLE\n", "Read,Grep", "opus")
    assert find_agent("docs-fetcher", project, home).source.endswith("builtin_agents/docs-fetcher.md")
    (tmp_path / "project" / ".claude" / "agents" / "broken.md").write_text("no frontmatter")
    assert find_agent("broken", project, home).source == "generic"


def test_install_into_a_project(cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".claude" / "agents").mkdir(parents=True)
    (project / ".claude" / "agents" / "architect.md").write_text("---\nname: architect\ndescription: theirs\n---\nx\n")
    result = cli("delegate-parallel", "install", str(project))
    assert result.code == 0, result.stderr
    done = result.json()
    assert ".claude/commands/delegate-parallel.md" in done["written"]
    assert done["kept_existing"] == [".claude/agents/architect.md"]
    text = (project / ".claude" / "commands" / "delegate-parallel.md").read_text()
    assert text == render_command(".claude/awoc")
    for script in allowed_prefixes(frontmatter(text)):
        shim = project / script
        assert shim.is_file() and shim.stat().st_mode & 0o111
        target = shlex.split(shim.read_text().splitlines()[-1])[1]
        assert Path(target).is_file(), target
    assert (project / ".claude" / "agents" / "workforce.md").exists()
    assert "theirs" in (project / ".claude" / "agents" / "architect.md").read_text()
    forced = cli("delegate-parallel", "install", str(project), "--force")
    assert ".claude/agents/architect.md" in forced.json()["written"]


def test_installed_command_validates_from_the_project_root(cli, tmp_path: Path, monkeypatch) -> None:
    import subprocess

    project = tmp_path / "project"
    project.mkdir()
    assert cli("delegate-parallel", "install", str(project)).code == 0
    out = subprocess.run(
        ["bash", ".claude/awoc/parallel-task-parser.sh", "validate", "--brief", "architect:Design it"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"task_count": 1' in out.stdout


def test_install_into_a_missing_directory(cli, tmp_path: Path) -> None:
    result = cli("delegate-parallel", "install", str(tmp_path / "nope"))
    assert result.code == 2 and "not a directory" in result.stderr


@pytest.mark.parametrize("script", ["parallel-task-parser.sh", "delegate-parallel.sh"])
def test_shims_exist(script: str) -> None:
    assert (REPO / "scripts" / script).is_file()
