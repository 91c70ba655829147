"""One line, many tasks: a task with `for_each` becomes one task per item.

`{"items": [...]}`, `{"glob": "PATTERN"}` (relative to the directory the run starts in, `**`
recursive, files only, sorted) or `{"lines": "FILE"}` (its non-empty lines). In each expansion
`{item}` and `{index}` (1-based) are replaced in the description, context, command and verify;
its id is `<task_id>-<n>`. A dependency on the template's id means every expansion; each
expansion keeps the template's own dependencies.
"""

from __future__ import annotations

import glob as globbing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import InputError, problems_error
from awoc_scripts.input.request import Request

if TYPE_CHECKING:
    from awoc_scripts.plan_types import FanOutSummary, JsonObject

MAX_TASKS = 100_000
SHOWN_ITEMS = 5
SUBSTITUTED = ("description", "context", "command", "verify")
DEPENDENCY_KEYS = ("dependencies", "critical_dependencies")


@dataclass(frozen=True)
class FanOut:
    """One for_each: the task template and the items it is made for."""

    template: str
    items: list[str]

    def summary(self) -> FanOutSummary:
        return {"template": self.template, "count": len(self.items), "first_items": self.items[:SHOWN_ITEMS]}


def fan_out_items(spec: JsonObject, where: str, cwd: Path) -> list[str]:
    """The items of one for_each; bad input (no kind, two kinds, a file that cannot be read) raises."""
    kinds = [k for k in ("items", "glob", "lines") if k in spec]
    if len(kinds) != 1:
        raise InputError(f"{where}: expected exactly one of items, glob or lines, got {', '.join(kinds) or 'none'}")
    if "items" in spec:
        return list(spec["items"])
    if "glob" in spec:
        found = globbing.glob(spec["glob"], root_dir=cwd, recursive=True)
        return sorted(name for name in found if (cwd / name).is_file())
    path = cwd / spec["lines"]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"{where}.lines: cannot read {path}: {reason}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _substitute(value: Any, item: str, index: int) -> Any:
    if isinstance(value, str):
        return value.replace("{item}", item).replace("{index}", str(index))
    if isinstance(value, list):
        return [_substitute(v, item, index) for v in value]
    return value


def expand_fan_outs(
    raw_tasks: list[JsonObject], ids: list[str], request: Request, cwd: Path
) -> tuple[list[JsonObject], list[str], Request, list[FanOut]]:
    """The tasks with every for_each expanded, their ids, a request that names each expansion in
    messages by its template, and what was fanned out."""
    if not any("for_each" in raw for raw in raw_tasks):
        return raw_tasks, ids, request, []
    tasks: list[JsonObject] = []
    new_ids: list[str] = []
    names: dict[str, str] = {}
    fans: list[FanOut] = []
    for n, (raw, tid) in enumerate(zip(raw_tasks, ids, strict=True)):
        where = request.describe_path(f"tasks[{n}]")
        if "for_each" not in raw:
            names[f"tasks[{len(tasks)}]"] = where
            tasks.append(raw)
            new_ids.append(tid)
            continue
        spec = f"{request.source}: {where}.for_each"  # as every input error names it: file, then path
        items = fan_out_items(raw["for_each"], spec, cwd)
        if not items:
            raise InputError(f"{spec}: {_kind(raw['for_each'])} gives no item: a fan-out over nothing")
        fans.append(FanOut(tid, items))
        if len(tasks) + len(items) > MAX_TASKS:
            raise InputError(f"{spec}: the tasks would number more than {MAX_TASKS:,}")
        base = {k: v for k, v in raw.items() if k not in ("for_each", "task_id")}
        for index, item in enumerate(items, 1):
            names[f"tasks[{len(tasks)}]"] = f"{where} (for_each item {index}, {item!r})"
            tasks.append({**base, **{k: _substitute(base[k], item, index) for k in SUBSTITUTED if k in base}})
            new_ids.append(f"{tid}-{index}")
    _check_unique(new_ids, names, request.source)
    expansions = {fan.template: [f"{fan.template}-{i}" for i in range(1, len(fan.items) + 1)] for fan in fans}
    for raw in tasks:
        for key in DEPENDENCY_KEYS:
            if any(name in expansions for name in raw.get(key) or []):
                raw[key] = [x for name in raw[key] for x in expansions.get(name, [name])]
    return tasks, new_ids, Request(request.config, request.source, names, request.inline), fans


def _check_unique(ids: list[str], names: dict[str, str], source: str) -> None:
    seen: dict[str, int] = {}
    problems = []
    for n, tid in enumerate(ids):
        if tid in seen:
            problems.append((names[f"tasks[{n}]"], f"task id {tid!r} is also {names[f'tasks[{seen[tid]}]']}"))
        seen.setdefault(tid, n)
    if problems:
        raise problems_error(source, problems)


def _kind(spec: JsonObject) -> str:
    if "glob" in spec:
        return f"glob {spec['glob']!r} (files only, from {Path.cwd()})"
    if "lines" in spec:
        return f"lines of {spec['lines']!r}"
    return "items"
