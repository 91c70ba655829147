"""Everything an attempt needs before it starts: its agent, program, environment, prompt and files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awoc_scripts.execution.claude_cli import Invocation, build_invocation, task_environment
from awoc_scripts.execution.executors.base import Attempt
from awoc_scripts.execution.prompts import DependencyResult, compose_prompt
from awoc_scripts.input.agents import AgentDefinition, find_agent
from awoc_scripts.processes import task_marker
from awoc_scripts.state.statuses import SUCCEEDED, TERMINAL

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from awoc_scripts.execution.run_options import Options
    from awoc_scripts.execution.task_record import TaskRecord
    from awoc_scripts.plan_types import Task
    from awoc_scripts.state.store import Run


class AttemptMaker:
    def __init__(self, run: Run, config: Mapping[str, Any], options: Options) -> None:
        self.run = run
        self.config = config
        self.options = options
        self.shared_context = str(config.get("shared_context") or "")
        self._agents: dict[str, AgentDefinition] = {}

    def make(
        self,
        task: Task,
        rec: TaskRecord,
        cwd: Path,
        dependencies: list[DependencyResult],
    ) -> tuple[Attempt, Invocation]:
        """Write the attempt's prompt file and return what the executor starts."""
        tid = task["task_id"]
        files = self.run.task_files(tid)
        invocation, prompt = self.invocation_and_prompt(task, rec, dependencies)
        files.prepare(prompt)
        marker = task_marker(self.run.run_id, tid)
        attempt = Attempt(
            tid, invocation, cwd, files.prompt, files.stdout, files.stderr, marker, float(task["timeout"])
        )
        return attempt, invocation

    def invocation_and_prompt(
        self, task: Task, rec: TaskRecord, dependencies: list[DependencyResult]
    ) -> tuple[Invocation, str]:
        """What the attempt would run, and the prompt it would be sent."""
        agent = self._agent(task["agent"])
        invocation = self._invocation(task, rec, agent)
        prompt = compose_prompt(
            task,
            shared_context=self.shared_context,
            role=agent.system_prompt if invocation.role_in_prompt else None,
            token_budget=rec.budget,
            dependencies=dependencies,
            previous_error=rec.previous_error,
        )
        return invocation, prompt

    def make_warm(self, task: Task, rec: TaskRecord, cwd: Path) -> Attempt | None:
        """The attempt as it will start, before its prompt exists: for an agent whose runner reads
        its prompt from stdin after it started (the claude CLI, or an agent command that says so
        with `runner.warm_start`). None for any other task."""
        if task.get("command"):
            return None
        invocation = self._invocation(task, rec, self._agent(task["agent"]))
        if invocation.kind == "claude" and not invocation.stream:
            return None  # its late prompt could only be text, which the CLI stops waiting for after 3 s
        if invocation.kind != "claude" and not (self.config.get("runner") or {}).get("warm_start"):
            return None
        files = self.run.task_files(task["task_id"])
        files.make_dir()
        marker = task_marker(self.run.run_id, task["task_id"])
        timeout = float(task["timeout"])
        as_message = invocation.kind == "claude"
        return Attempt(
            task["task_id"], invocation, cwd, files.prompt, files.stdout, files.stderr, marker, timeout, as_message
        )

    def _invocation(self, task: Task, rec: TaskRecord, agent: AgentDefinition) -> Invocation:
        files = self.run.task_files(task["task_id"])
        cap = rec.cost_cap_usd
        env = task_environment(self.run.run_id, task, rec.budget, str(files.prompt), str(files.dir), cap)
        return build_invocation(task, agent, self.config, self.options.environ, env, cap)

    def _agent(self, name: str) -> AgentDefinition:
        if name not in self._agents:
            self._agents[name] = find_agent(name, self.options.cwd, self.options.home)
        return self._agents[name]


def dependency_results(
    run: Run, task: Task, by_id: Mapping[str, Task], status: Mapping[str, str], records: Mapping[str, TaskRecord]
) -> list[DependencyResult]:
    """The dependencies whose results the task's prompt carries."""
    out = []
    for dep in task["dependencies"]:
        dep_status = status[dep]
        if dep_status in TERMINAL and (dep_status == SUCCEEDED or task["dependency_mode"] == "conditional"):
            dep_task = by_id[dep]
            text = records[dep].result or (records[dep].error or "")
            out.append(
                DependencyResult(dep, dep_task["agent"], dep_status, text, str(run.result_file(dep_task["agent"], dep)))
            )
    return out
