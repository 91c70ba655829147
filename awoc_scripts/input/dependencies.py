"""Dependency names to task ids, and the graph checks (self-dependencies, cycles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class TaskRef:
    """A task as a dependency names it: its id, or its agent."""

    task_id: str
    agent: str


def resolve_names(
    names: Sequence[str], me: TaskRef, ids: set[str], by_agent: Mapping[str, list[str]], where: str, problems: Problems
) -> list[str]:
    """A name is a task id; failing that, an agent, meaning every other task of that agent."""
    resolved: list[str] = []
    for i, name in enumerate(names):
        if name == me.task_id:
            problems.append((f"{where}[{i}]", f"task {me.task_id!r} depends on itself"))
        elif name in ids:
            resolved.append(name)
        elif name in by_agent:
            others = [t for t in by_agent[name] if t != me.task_id]
            if not others:
                problems.append((f"{where}[{i}]", f"agent {name!r} has no task other than {me.task_id!r}"))
            resolved.extend(others)
        else:
            problems.append((f"{where}[{i}]", f"unknown dependency {name!r}: {_known_names(ids, by_agent)}"))
    return list(dict.fromkeys(resolved))


def _known_names(ids: set[str], by_agent: Mapping[str, list[str]]) -> str:
    def listing(names: list[str]) -> str:
        shown = ", ".join(names[:15])
        return shown + (f" and {len(names) - 15} more" if len(names) > 15 else "")

    return f"no task or agent has that name (task ids: {listing(sorted(ids))}; agents: {listing(sorted(by_agent))})"


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle in execution order (each entry must finish before the next), or None.

    `graph` maps a task to the tasks it depends on. Iterative, so 100,000 tasks cannot overflow
    the stack.
    """
    if _in_file_order(graph):
        return None
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in graph:
        if color[start] != WHITE:
            continue
        color[start] = GREY
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack[-1]
            deps = graph.get(node, ())
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                state = color.get(dep, BLACK)
                if state == GREY:
                    path = [n for n, _ in stack]
                    cycle = [*path[path.index(dep) :], dep]
                    cycle.reverse()  # dependency before dependent
                    return cycle
                if state == WHITE:
                    color[dep] = GREY
                    stack.append((dep, 0))
            else:
                color[node] = BLACK
                stack.pop()
    return None


def _in_file_order(graph: Mapping[str, Sequence[str]]) -> bool:
    """Whether every dependency comes before its dependent (as configs mostly list them): then
    there is no cycle, and one pass over the edges says so."""
    position = {node: i for i, node in enumerate(graph)}
    for i, deps in enumerate(graph.values()):
        for dep in deps:
            if position.get(dep, -1) >= i:
                return False
    return True


CYCLE_SHOWN = 5  # tasks shown at each end of a long cycle


def format_cycle(cycle: Sequence[str]) -> str:
    if len(cycle) > 2 * CYCLE_SHOWN + 1:
        left = len(cycle) - 2 * CYCLE_SHOWN
        shown = [*cycle[:CYCLE_SHOWN], f"... {left} more ...", *cycle[-CYCLE_SHOWN:]]
        return f"dependency cycle of {len(cycle) - 1} tasks: {' -> '.join(shown)} (each must finish before the next)"
    return f"dependency cycle: {' -> '.join(cycle)} (each must finish before the next)"


def check_graph(document: object, source: str) -> dict[str, object]:
    """The graph checks alone, for a config, a plan, or a `{"task": ["dependency", ...]}` map."""
    from awoc_scripts.errors import InputError, problems_error

    problems: Problems = []
    if isinstance(document, dict) and isinstance(document.get("tasks"), list):
        refs: list[TaskRef] = []
        names: list[tuple[str, list[str]]] = []
        counts: dict[str, int] = {}
        for i, task in enumerate(document["tasks"]):
            agent = task.get("agent") if isinstance(task, dict) else None
            deps = task.get("dependencies", []) if isinstance(task, dict) else None
            if not isinstance(agent, str) or not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise InputError(f"{source}: tasks[{i}]: expected an object with an agent and a list of dependencies")
            counts[agent] = counts.get(agent, 0) + 1
            task_id = task.get("task_id") or f"{agent}-{counts[agent]}"
            refs.append(TaskRef(str(task_id), agent))
            names.append((f"tasks[{i}].dependencies", deps))
        ids = {r.task_id for r in refs}
        by_agent: dict[str, list[str]] = {}
        for ref in refs:
            by_agent.setdefault(ref.agent, []).append(ref.task_id)
        graph = {
            ref.task_id: resolve_names(deps, ref, ids, by_agent, where, problems)
            for ref, (where, deps) in zip(refs, names, strict=True)
        }
    elif isinstance(document, dict) and all(
        isinstance(v, list) and all(isinstance(d, str) for d in v) for v in document.values()
    ):
        graph = {}
        ids = set(document)
        for task_id, deps in document.items():
            graph[task_id] = resolve_names(deps, TaskRef(task_id, ""), ids, {}, json_key(task_id), problems)
    else:
        raise InputError(
            f'{source}: expected a config with "tasks", or an object mapping each task to its list of dependencies'
        )
    if problems:
        raise problems_error(source, problems)
    cycle = find_cycle(graph)
    if cycle:
        raise InputError(f"{source}: {format_cycle(cycle)}")
    return {"ok": True, "tasks": len(graph), "dependencies": sum(len(d) for d in graph.values())}


def json_key(key: str) -> str:
    import orjson

    return f"[{orjson.dumps(key).decode()}]"
