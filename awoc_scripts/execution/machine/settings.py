"""What the run machine needs of a run's parallel_config and options: plain numbers, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from awoc_scripts.plan_types import ParallelConfig
from awoc_scripts.planning.policy_settings import DEFAULT_MIN_FREE_MEMORY_MB

if TYPE_CHECKING:
    from awoc_scripts.execution.run_options import Options


@dataclass(eq=False)
class MachineSettings:
    """The run machine's settings: the run's parallel_config, and the loop's own."""

    max_concurrent: int
    batch_token_limit: int
    total_token_budget: int
    failure_tolerance: int
    ramp_up_s: float = 0.0
    min_free_mb: float = DEFAULT_MIN_FREE_MEMORY_MB
    cache: bool = False
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    usage_limit_pause_s: float = 300.0
    config: ParallelConfig = field(default_factory=lambda: ParallelConfig())  # the policies read their own settings

    @classmethod
    def of(cls, config: ParallelConfig, options: Options | None = None) -> MachineSettings:
        min_free = config.get("min_free_memory_mb", DEFAULT_MIN_FREE_MEMORY_MB)
        timing: dict[str, float] = {}  # a saved run's machine starts nothing: the defaults do
        if options is not None:
            min_free = min_free if options.min_free_memory_mb is None else options.min_free_memory_mb
            timing = {
                "backoff_base_s": options.backoff_base_s,
                "backoff_max_s": options.backoff_max_s,
                "usage_limit_pause_s": options.usage_limit_pause_s,
            }
        return cls(
            max_concurrent=int(config["max_concurrent"]),
            batch_token_limit=int(config["batch_token_limit"]),
            total_token_budget=int(config["total_token_budget"]),
            failure_tolerance=int(config["failure_tolerance"]),
            ramp_up_s=float(config.get("ramp_up_s") or 0),
            min_free_mb=float(min_free),
            cache=bool(config.get("cache")),
            config=config,
            **timing,
        )
