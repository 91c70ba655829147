"""The whole flow as the `delegate-parallel` command runs it: validate, plan, execute, report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

from awoc_scripts.errors import InputError
from awoc_scripts.execution.executors.local import LocalExecutor
from awoc_scripts.execution.run_loop import RunLoop
from awoc_scripts.flow.prepare import check_executable
from awoc_scripts.planning.execution_plan import plan_execution
from awoc_scripts.run_documents import LoopSummary
from awoc_scripts.state.history import History, record_run

if TYPE_CHECKING:
    from awoc_scripts.execution.display import PlainDisplay
    from awoc_scripts.execution.executors.base import Executor
    from awoc_scripts.execution.run_options import Options
    from awoc_scripts.plan_types import ExecutionPlan, Plan
    from awoc_scripts.results.documents import ExecutionSummary, ResourceUsage
    from awoc_scripts.state.store import Run, StateStore


@dataclass(frozen=True)
class ExecutorChoice:
    """--executor and --scheduler as given; unset, the run's parallel_config decides (else local)."""

    name: str | None = None
    scheduler: str | None = None


class MergeBrief(TypedDict, total=False):
    landed: list[str]
    set_aside: list[str]
    head: str
    error: str


class RunSummary(LoopSummary):
    """What `run`, `start` and `resume` print when the run ends (and, with --merge, what landed)."""

    execution_summary: ExecutionSummary
    resource_usage: ResourceUsage
    report_md: str
    report_json: str
    merge: NotRequired[MergeBrief]


def make_executor(choice: ExecutorChoice, plan: Plan) -> Executor:
    config = plan["parallel_config"]
    name = choice.name or config.get("executor") or "local"
    if name == "local":
        return LocalExecutor()
    if name == "dask":
        in_worktrees = [t["task_id"] for t in plan["tasks"] if t["isolation"] == "worktree"]
        if in_worktrees:
            more = f" and {len(in_worktrees) - 5} more" if len(in_worktrees) > 5 else ""
            shown = ", ".join(in_worktrees[:5]) + more
            raise InputError(
                f"{len(in_worktrees)} task(s) ({shown}) run in git worktrees, which the Dask executor cannot give "
                "them (a worker has no worktree of your repository, and its own directory is not one): run them "
                "with the local executor (--executor local), or without worktree isolation"
            )
        dask = config.get("dask") or {}
        scheduler = choice.scheduler or dask.get("scheduler")
        if not scheduler:
            raise InputError("--executor dask needs --scheduler tcp://HOST:PORT (or parallel_config.dask.scheduler)")
        from awoc_scripts.execution.executors.dask import CONNECT_TIMEOUT_S, DaskExecutor

        return DaskExecutor(scheduler, dask.get("resources"), float(dask.get("connect_timeout_s", CONNECT_TIMEOUT_S)))
    raise InputError(f"--executor: unknown executor {name!r} (available: local, dask)")


def execute_run(
    run: Run,
    plan: Plan,
    execution: ExecutionPlan,
    executor: Executor,
    display: PlainDisplay,
    resume: bool = False,
    options: Options | None = None,
    only: set[str] | None = None,
) -> tuple[int, RunSummary]:
    """Execute, then write aggregate.json, report.json and report.md (partial ones too).

    `only` (with resume): run just these tasks again; the others keep what they have."""
    from awoc_scripts.results.report import report_run

    orchestrator = RunLoop(run, plan, execution, executor, display, options, resume=resume, only=only)
    code = orchestrator.execute()
    report = report_run(run, orchestrator.results, orchestrator.state_file.data, (plan, execution))
    record_run(run.root, run.run_id, orchestrator.results.values())
    parts = {
        "execution_summary": report["execution_summary"],
        "resource_usage": report["resource_usage"],
        "report_md": str(run.report_md_file),
        "report_json": str(run.report_json_file),
    }
    summary = cast("RunSummary", {**orchestrator.summary(), **parts})  # the loop's summary and the report's parts
    return code, summary


def load_for_resume(store: StateStore, run_id: str | None) -> tuple[Run, Plan, ExecutionPlan]:
    """A saved run, to execute for the first time (`start`) or again (`resume`)."""
    run = store.open_run(run_id)
    plan = run.read_plan()
    check_executable(plan)
    execution = run.read_execution()
    if not execution:
        execution = plan_execution(plan, history=History.load(store.root))
        run.write_execution(execution)
    return run, plan, execution
