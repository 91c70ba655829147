"""The options a run executes with that are not part of its plan: backoffs, where it runs, test hooks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass
class Options:
    """How the run loop runs: back-off, pauses, memory floor, directories and environment."""

    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    usage_limit_pause_s: float = 300.0  # a usage limit that names no reset: try again after this
    min_free_memory_mb: int | None = None  # default: parallel_config's
    cwd: Path = field(default_factory=Path.cwd)
    home: Path = field(default_factory=Path.home)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    memory_probe: Callable[[], float] | None = None  # MB available; replaceable for tests
