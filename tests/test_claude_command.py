"""The /delegate-parallel command for Claude Code, the plugin, the agents, and `delegate-parallel install`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from awoc_scripts.claude_code.install import (
    CONSOLE_SCRIPTS,
    INSTALLED_LAUNCHER,
    PLUGIN_LAUNCHER,
    REPO_LAUNCHER,
    render_command,
)
from awoc_scripts.input.agents import BUILTIN_DIR, find_agent, parse_agent_file

from conftest import REPO

COMMAND = REPO / ".claude" / "commands" / "delegate-parallel.md"
PLUGIN_COMMAND = REPO / "claude_plugin" / "commands" / "delegate-parallel.md"
PYPROJECT_SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
SHELL_BLOCK = re.compile(r"^```!\n(.*?)\n```$", re.M | re.S)


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


def test_committed_commands_are_the_rendered_template() -> None:
    assert COMMAND.read_text() == render_command(REPO_LAUNCHER)
    assert PLUGIN_COMMAND.read_text() == render_command(PLUGIN_LAUNCHER)


@pytest.mark.parametrize("path", [COMMAND, PLUGIN_COMMAND])
def test_one_shell_step_with_the_arguments_in_a_quoted_heredoc(path: Path) -> None:
    text = path.read_text()
    fields = frontmatter(text)
    assert {"description", "argument-hint", "allowed-tools"} <= set(fields)
    for key, value in fields.items():  # plain YAML scalars: nothing a YAML parser would read as more
        assert value[:1] not in "[{&*!|>'%@`" or value.startswith('"'), key
        assert " #" not in value, key
    # Claude Code runs a command's shell steps concurrently: there must be exactly one
    assert "!`" not in text
    blocks = SHELL_BLOCK.findall(text)
    assert len(blocks) == 1
    guidance, first, *middle, last = blocks[0].splitlines()
    # what Claude Code shows when its permission check refuses the step: what to type instead
    assert guidance.startswith("# If Claude Code refused this step") and "config file" in guidance
    assert first.endswith("prepare --for-claude --args-on-stdin <<'AWOC_ARGUMENTS_END'")
    assert middle == ["$ARGUMENTS"] and last == "AWOC_ARGUMENTS_END"
    assert text.count("$ARGUMENTS") == 1


def _prepared_commands(project: Path, launcher: str, env: dict[str, str]) -> list[str]:
    """The commands `prepare` lists for a run, run as the command's shell step would."""
    block = SHELL_BLOCK.findall(render_command(launcher))[0]
    script = block.replace("$ARGUMENTS", '"architect:Design it" --then "workforce:Build it"')
    out = subprocess.run(["bash", "-c", script], cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "prepared, not started" in out.stdout, out.stdout
    return re.findall(r"^- [A-Z]+ [^`]*`([^`]+)`", out.stdout, re.M)


def test_every_command_the_repo_command_names_is_allowed_and_works(tmp_path: Path) -> None:
    fields = frontmatter(COMMAND.read_text())
    prefixes = allowed_prefixes(fields)
    assert prefixes == [REPO_LAUNCHER.replace("{name}", n) for n in _COMMANDS_ALLOWED]
    env = {**os.environ, "AWOC_AGENT_COMMAND": "cat"}
    env.pop("AWOC_LAUNCHER", None)
    commands = _prepared_commands(REPO, REPO_LAUNCHER, env | {"AWOC_STATE_DIR": str(tmp_path / "state")})
    assert [c.split()[1] for c in commands] == ["start", "wait", "report", "status", "resume"]
    for command in commands:
        program = shlex.split(command)[0]
        assert program in prefixes, command
        assert (REPO / program).is_file() and os.access(REPO / program, os.X_OK)


_COMMANDS_ALLOWED = (
    "delegate-parallel",
    "parallel-task-retry",
    "token-budget-reducer",
    "parallel-to-sequential",
    "task-prioritizer",
    "parallel-execution-aborter",
)


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
    assert text == render_command(INSTALLED_LAUNCHER)
    for name in CONSOLE_SCRIPTS:  # every command awoc may tell the user to run, not only the allowed ones
        launcher = project / INSTALLED_LAUNCHER.replace("{name}", name)
        assert launcher.is_file() and os.access(launcher, os.X_OK), name
    for prefix in allowed_prefixes(frontmatter(text)):
        assert (project / prefix).is_file(), prefix
    assert (project / ".claude" / "agents" / "workforce.md").exists()
    assert "theirs" in (project / ".claude" / "agents" / "architect.md").read_text()
    forced = cli("delegate-parallel", "install", str(project), "--force")
    assert ".claude/agents/architect.md" in forced.json()["written"]


def test_installed_launchers_cover_every_console_script() -> None:
    assert set(CONSOLE_SCRIPTS) == set(PYPROJECT_SCRIPTS)


def test_installed_command_prepares_from_the_project_root(cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert cli("delegate-parallel", "install", str(project)).code == 0
    env = {**os.environ, "AWOC_AGENT_COMMAND": "cat", "AWOC_STATE_DIR": str(tmp_path / "state")}
    env.pop("AWOC_LAUNCHER", None)
    commands = _prepared_commands(project, INSTALLED_LAUNCHER, env)
    for command in commands:
        assert shlex.split(command)[0].startswith(".claude/awoc/"), command
    status = subprocess.run(shlex.split(commands[3]), cwd=project, capture_output=True, text=True, env=env)
    assert status.returncode == 0 and "planned" in status.stdout, status.stderr


def test_installed_launcher_whose_installation_is_gone(cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert cli("delegate-parallel", "install", str(project)).code == 0
    launcher = project / ".claude" / "awoc" / "delegate-parallel.sh"
    moved = re.sub(
        r"^installed=.*$", "installed=/nonexistent/awoc/bin/delegate-parallel", launcher.read_text(), flags=re.M
    )
    launcher.write_text(moved)
    no_awoc = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    gone = subprocess.run(["bash", str(launcher), "status"], cwd=project, capture_output=True, text=True, env=no_awoc)
    assert gone.returncode == 127
    assert "no longer at /nonexistent/awoc/bin/delegate-parallel" in gone.stderr
    assert "install awoc again" in gone.stderr and "delegate-parallel install" in gone.stderr
    # in the slash command's shell step the message must be the text, or the user gets nothing
    step = subprocess.run(
        ["bash", str(launcher), "prepare", "--for-claude"], cwd=project, capture_output=True, text=True, env=no_awoc
    )
    assert step.returncode == 0 and "install awoc again" in step.stdout
    # an awoc on PATH is used instead
    on_path = {**no_awoc, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    found = subprocess.run(["bash", str(launcher), "--help"], cwd=project, capture_output=True, text=True, env=on_path)
    assert found.returncode == 0 and "prepare" in found.stdout


def test_install_into_a_missing_directory(cli, tmp_path: Path) -> None:
    result = cli("delegate-parallel", "install", str(tmp_path / "nope"))
    assert result.code == 2 and "not a directory" in result.stderr


@pytest.mark.parametrize("name", sorted(PYPROJECT_SCRIPTS))
def test_shims_and_plugin_launchers_exist(name: str) -> None:
    for path in (REPO / "scripts" / f"{name}.sh", REPO / "bin" / name):
        assert path.is_file() and os.access(path, os.X_OK), path


def test_plugin_and_marketplace_manifests() -> None:
    marketplace = json.loads((REPO / ".claude-plugin" / "marketplace.json").read_text())
    plugin = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text())
    assert [p["name"] for p in marketplace["plugins"]] == [plugin["name"]] == ["awoc"]
    assert marketplace["plugins"][0]["source"] == "./" and marketplace["owner"]["name"]
    assert plugin["version"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    # what it reaches: the Messages API (its agents) and PyPI (its first use makes a Python environment)
    assert plugin["network"]["hosts"] == ["api.anthropic.com", "pypi.org", "files.pythonhosted.org"]
    for path in [*plugin["commands"], *plugin["agents"], *plugin["skills"]]:
        assert (REPO / path).exists(), path
    assert sorted(Path(a).stem for a in plugin["agents"]) == ["architect", "docs-fetcher", "workforce"]
    skill = (REPO / "claude_plugin" / "skills" / "delegate-parallel" / "SKILL.md").read_text()
    fields = frontmatter(skill)
    assert fields["name"] == "delegate-parallel" and "parallel" in fields["description"]
    for prefix in allowed_prefixes(fields):
        assert (REPO / "bin" / prefix).is_file(), prefix


def test_state_root_keeps_itself_out_of_git(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWOC_STATE_DIR")
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    monkeypatch.chdir(tmp_path / "repo")
    assert cli("parallel-task-parser", "validate", "architect:Design it").code == 0
    assert (tmp_path / "repo" / ".awoc" / "parallel" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True)
    assert status.stdout == ""


def test_commands_the_report_prints_are_allowed_in_an_installed_project(monkeypatch: pytest.MonkeyPatch) -> None:
    from awoc_scripts.launcher import command_for
    from awoc_scripts.results.aggregate import retry_command

    monkeypatch.setenv("AWOC_LAUNCHER", INSTALLED_LAUNCHER)
    allowed = allowed_prefixes(frontmatter(render_command(INSTALLED_LAUNCHER)))
    printed = [
        retry_command("20261201-000000-000000-abcdef", "build"),
        command_for("delegate-parallel", "resume", "20261201-000000-000000-abcdef"),
        command_for("token-budget-reducer", "reduce-remaining-tasks", "20%"),
        command_for("parallel-to-sequential", "convert-remaining-tasks"),
        command_for("task-prioritizer", "emergency-prioritization"),
        command_for("parallel-execution-aborter", "abort-with-partial-results"),
    ]
    for command in printed:
        assert shlex.split(command)[0] in allowed, command


def test_install_keeps_a_command_of_the_projects_own_and_updates_its_own(cli, tmp_path: Path) -> None:
    command = tmp_path / ".claude" / "commands" / "delegate-parallel.md"
    command.parent.mkdir(parents=True)
    command.write_text("my own /delegate-parallel\n")
    kept = cli("delegate-parallel", "install", str(tmp_path))
    assert kept.code == 0, kept.stderr
    assert ".claude/commands/delegate-parallel.md" in kept.json()["kept_existing"]
    assert command.read_text() == "my own /delegate-parallel\n"
    forced = cli("delegate-parallel", "install", str(tmp_path), "--force")
    assert ".claude/commands/delegate-parallel.md" in forced.json()["written"]
    command.write_text(command.read_text() + "\nan older awoc's text\n")  # an earlier install: awoc's to update
    again = cli("delegate-parallel", "install", str(tmp_path))
    assert ".claude/commands/delegate-parallel.md" in again.json()["written"]
    assert command.read_text() == render_command(INSTALLED_LAUNCHER)
