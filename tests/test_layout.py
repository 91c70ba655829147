"""The package is a pipeline, and its folders say so: imports only go from a later stage to an earlier one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "awoc_scripts"

# earliest first; a module may import from its own layer and the ones before it, never after
LAYERS = [
    ("",),  # awoc_scripts/*.py: errors, launcher, gc_pause, the plan and run document types, git and processes
    ("state",),
    ("input",),
    ("planning",),
    ("execution",),
    ("results",),
    ("flow",),
    ("monitors", "levers"),
    ("claude_code",),
    ("cli",),
]
RANK = {folder: rank for rank, names in enumerate(LAYERS) for folder in names}


def _layer_of_module(dotted: str) -> str:
    parts = dotted.split(".")
    if parts[0] != "awoc_scripts":
        raise ValueError(dotted)
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").is_file():
        return ""
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("awoc_scripts"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("awoc_scripts")]
    return found


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - {"schemas"} <= set(RANK), folders - set(RANK)


def test_imports_never_reach_into_a_later_stage() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0] if len(relative.parts) > 1 else ""
        for line, module in _imports(path):
            target = _layer_of_module(module)
            if RANK[target] > RANK[own]:
                wrong.append(f"{relative}:{line} imports {module} ({target or 'top'} comes after {own or 'top'})")
    assert not wrong, "\n".join(wrong)


def test_the_top_level_holds_only_shared_basics() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == [
        "__init__.py",
        "errors.py",
        "gc_pause.py",
        "git.py",
        "launcher.py",
        "plan_types.py",
        "process_stat.py",
        "processes.py",
        "run_documents.py",
        "stop_signals.py",
        "terminal_text.py",
    ]
