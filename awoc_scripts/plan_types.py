"""The plan and its tasks as types, for every stage from planning to the report.

TypedDicts rather than dataclasses: plan.json is read and written as plain dicts (orjson, by
this process and by the other scripts acting on the same run), and a TypedDict types that very
dict with no conversion at each boundary and no cost at start-up. Levers also change a task's
budget in place, which a frozen dataclass would forbid.
"""

from typing import Any, Literal, NotRequired, TypedDict

Priority = Literal["critical", "high", "medium", "low"]
DependencyMode = Literal["all_complete", "partial", "conditional"]
Isolation = Literal["process", "worktree"]


class Condition(TypedDict):
    when: Literal["success", "failure", "any"]


class Permissions(TypedDict):
    """What an agent task may do with nobody to approve (planning/permissions.py decides)."""

    mode: str  # the claude CLI's --permission-mode
    allowed_tools: list[str]  # permission rules that need no approval
    disallowed_tools: list[str]  # rules that are always refused
    add_dirs: list[str]  # directories its file tools may work in besides its own
    on_denied: Literal["fail", "warn"]
    writes: bool  # its tools can change files
    sandbox: bool  # its Bash runs in Claude Code's sandbox: writes only in its directory


class Task(TypedDict):
    """One task of a normalized plan: every default filled in, dependencies resolved to task ids."""

    task_id: str
    agent: str
    description: str
    priority: Priority
    token_budget: int
    budget_source: str
    dependencies: list[str]
    dependency_mode: DependencyMode
    critical_dependencies: list[str]
    condition: Condition | None
    timeout: float
    estimated_duration: float | None
    retries: int
    command: list[str] | None
    model: str | None
    tools: list[str] | str | None
    max_turns: int | None
    context: str | None
    isolation: Isolation
    index: int
    cost_budget_usd: NotRequired[float | None]  # plans made before money budgets have none
    permissions: NotRequired[Permissions | None]  # None for a command task; plans made before have none
    verify: NotRequired[list[str] | None]  # a program that must pass in its directory after it ended with 0
    verify_timeout: NotRequired[float]
    cache: NotRequired[bool]  # false: never reused from an earlier run
    start_rank: NotRequired[int]  # set in a run from execution.json when it adopted a shorter order


class BudgetSummary(TypedDict):
    total: int
    total_given: bool
    allocated: int
    scale_factor: float


class GitBase(TypedDict):
    """Where worktree tasks start: the repository and its HEAD when the run was prepared."""

    repo: str
    head: str
    subdir: str  # the working directory inside the repository; worktree tasks run in the same one
    uncommitted: int  # changes in the user's checkout then, which worktree tasks do not see
    branch: NotRequired[str | None]  # the branch checked out then (None: detached); merge goes into it


# Free-form JSON: a request before it is validated, an event's fields, a lever's answer, what a
# command prints. The run's own documents have types of their own (here and in run_documents.py).
JsonObject = dict[str, Any]


class MergeSettings(TypedDict, total=False):
    """parallel_config.merge: how `merge` (or `run --merge`) lands the branches (results/merge_queue.py)."""

    auto: bool
    gate: str
    gate_timeout_s: float
    into: str
    resolve_with: str
    resolve_timeout_s: float
    resolve_token_budget: int
    resolve_cost_budget_usd: float


class DaskSettings(TypedDict, total=False):
    scheduler: str
    resources: dict[str, float]
    connect_timeout_s: float


class RunnerSettings(TypedDict, total=False):
    """parallel_config.runner: an agent command instead of the claude CLI."""

    command: list[str]
    output_format: str
    warm_start: bool


class AgentSettings(TypedDict, total=False):
    """parallel_config.agents.<name>: what every task of that agent gets unless it says otherwise."""

    base_budget: int
    model: str
    tools: list[str] | str
    command: list[str]
    max_turns: int
    permission_mode: str
    allowed_tools: list[str]
    disallowed_tools: list[str]
    add_dirs: list[str]
    on_permission_denied: str


class PolicyDescription(TypedDict):
    """One pressure policy as a plan describes it: whether it may act in this run, when, and what it does."""

    policy: str
    enabled: bool
    when: str
    action: str


class ExpectedUsage(TypedDict):
    """What past runs say the plan's tasks will take (state/history.py)."""

    tasks_with_history: int
    tasks_without_history: int
    tokens: list[int]  # [lowest, highest]
    cost_usd: list[float]


class FanOutSummary(TypedDict):
    template: str
    count: int
    first_items: list[str]


class ParallelConfig(TypedDict, total=False):
    """A plan's parallel_config: every setting, its defaults filled in (planning/plan.py's
    DEFAULT_CONFIG), the optional ones only when given."""

    max_concurrent: int
    total_timeout: float
    total_token_budget: int
    total_cost_budget_usd: float | None
    ramp_up_s: float
    warm_agents: int | None
    failure_tolerance: int
    result_format: str
    batch_token_limit: int
    retries: int
    shared_context: str
    min_free_memory_mb: int
    isolation: Isolation
    keep_worktrees: bool
    cache: bool
    verify: list[str] | None
    verify_timeout: float
    on_permission_denied: str
    merge: MergeSettings
    executor: str
    dask: DaskSettings
    policies: dict[str, bool]  # each policy on or off: planning/policy_settings.py
    agents: dict[str, AgentSettings]
    runner: RunnerSettings


class PlannedTask(TypedDict):
    """A task in execution.json: when the estimate has it start and end, and why."""

    task_id: str
    agent: str
    priority: str
    priority_rank: int
    level: int
    token_budget: int
    budget_source: str
    cost_budget_usd: float | None
    duration_s: float
    duration_source: str
    remaining_path_s: float
    estimated_start_s: float | None
    estimated_end_s: float | None
    start_rank: NotRequired[int]  # its place among ready tasks, when a shorter order than priority's was adopted


class StartOrder(TypedDict):
    """execution.json's start_order: what orders ready tasks (planning/start_order.py)."""

    by: Literal["priority", "shortest estimated run"]
    priority_order_makespan_s: float  # the estimate in priority order, for comparison


class ExecutionPlan(TypedDict):
    """execution.json: the plan as it will execute (budgets, the estimated schedule, policies)."""

    schema: str
    kind: str
    run_id: str | None
    parallel_config: ParallelConfig
    budget: BudgetSummary
    critical_path: list[str]
    critical_path_s: float
    waves: list[list[str]]
    sequential_estimate_s: float
    estimated_makespan_s: float
    estimated_speedup: float
    peak_concurrency: int
    peak_tokens_in_flight: int
    warnings: list[str]
    policies: list[PolicyDescription]
    expected_usage: ExpectedUsage
    start_order: NotRequired[StartOrder]  # plans made before it have none: priority order
    tasks: list[PlannedTask]


class Plan(TypedDict):
    """plan.json: the validated request. `parallel_config` holds every setting with its default."""

    schema: str
    kind: Literal["plan"]
    run_id: str | None
    created_at: str | None
    workflow: str | None
    source: str
    parallel_config: ParallelConfig
    budget: BudgetSummary
    warnings: list[str]
    tasks: list[Task]
    git: NotRequired[GitBase]  # only when some task runs in a worktree
    fan_out: NotRequired[list[FanOutSummary]]  # each for_each: its template id, count and first items
