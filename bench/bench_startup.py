"""Start-up of every script: the median wall time of each shim's most common call.

Each command runs through its shim (``scripts/<name>.sh``, as the slash command calls it) against
a state directory made for the benchmark, ``--repeat`` times, round-robin with the baselines
``python -c pass`` and ``python -c "import typer"`` (the project's interpreter), after one
warm-up call each. Goal: no script over 1.3x the bare ``import typer``. Commands whose shim or
console script does not exist yet are skipped with a note.

Then each command runs under ``python -X importtime`` (3 times; per module the minimum): the
total import time and the 5 heaviest imports, as disjoint subtrees (a module's own package
imports are not counted twice; ``awoc_scripts`` modules are looked through, not listed).

Last, side by side with the code of an earlier commit (``--against REV``; by default
REFERENCE_REV, the code when issue 28 asked for start-up "as today or better"): each command's
entry point, from this tree and from REV's (``git archive``), called alternately the same way
(``python -c``, PYTHONPATH set to the tree), ``--repeat`` times each. A ratio per script and
their geometric mean: one script's median moves by up to 15% between two rounds on this VM even
when both sides run the same code, the mean of nine by about 3%. Skipped where REV is not in the
clone.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import ROOT, Figure, bench_parser, emit, find_cli, median, shim, spread, time_call

GOAL = 1.3
EXAMPLES = ROOT / "examples"
REFERENCE_REV = "a417739"  # the code when issue 28 set "start-up ratios as today or better"
GOAL_AGAINST_REFERENCE = 1.03  # the geometric mean, within what two rounds of the same code differ by

# (console script, arguments): the call the seed's flow makes most often
COMMANDS: list[tuple[str, list[str]]] = [
    ("parallel-task-parser", ["validate", str(EXAMPLES / "tasks.json")]),
    ("dependency-validator", ["check-circular", str(EXAMPLES / "feature-development.json")]),
    ("parallel-resource-planner", ["plan-execution"]),
    ("context-monitor", ["track", "parallel-task-start", "architect", "x"]),
    ("context-monitor", ["status"]),
    ("token-budget-reducer", ["reduce-remaining-tasks", "20%"]),
    ("parallel-to-sequential", ["convert-remaining-tasks"]),
    ("task-prioritizer", ["emergency-prioritization"]),
    ("delegate-parallel", ["status"]),
]


def parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """`-X importtime` lines, in print order (children before their parent), with depth."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|", 2)
        depth = (len(name) - len(name.lstrip(" "))) // 2
        entries.append({"name": name.strip(), "self_us": int(self_us), "cum_us": int(cumulative_us), "depth": depth})
    return entries


def heaviest(entries: list[dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """The `top` heaviest disjoint import subtrees, looking through awoc_scripts' own modules."""
    # parent of each entry: the next entry printed after it with a smaller depth
    parent: list[int | None] = [None] * len(entries)
    stack: list[int] = []  # indices waiting for their parent
    for i, entry in enumerate(entries):
        while stack and entries[stack[-1]]["depth"] > entry["depth"]:
            parent[stack.pop()] = i
        stack.append(i)

    def ancestors(i: int) -> set[int]:
        out = set()
        p = parent[i]
        while p is not None:
            out.add(p)
            p = parent[p]
        return out

    order = sorted(range(len(entries)), key=lambda i: -entries[i]["cum_us"])
    picked: list[int] = []
    for i in order:
        if entries[i]["name"].startswith("awoc_scripts") or entries[i]["name"] in ("encodings", "site"):
            continue
        mine = ancestors(i)
        if any(p in mine for p in picked) or any(i in ancestors(p) for p in picked):
            continue
        picked.append(i)
        if len(picked) == top:
            break
    return [{"module": entries[i]["name"], "cumulative_ms": round(entries[i]["cum_us"] / 1000, 1)} for i in picked]


def importtime_profile(python: str, script: str, args: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    import subprocess

    best: dict[str, dict[str, Any]] = {}
    totals = []
    for _ in range(runs):
        proc = subprocess.run(
            [python, "-X", "importtime", script, *args], capture_output=True, text=True, env=env, check=False
        )
        entries = parse_importtime(proc.stderr)
        totals.append(sum(e["self_us"] for e in entries) / 1000)
        for e in entries:
            if e["name"] not in best or e["cum_us"] < best[e["name"]]["cum_us"]:
                best[e["name"]] = e
    # keep the last run's structure, with each module's minimum over the runs
    merged = [{**e, "cum_us": best[e["name"]]["cum_us"], "self_us": best[e["name"]]["self_us"]} for e in entries]
    return {
        "total_import_ms": round(min(totals), 1),
        "modules_imported": len(merged),
        "top5": heaviest(merged),
        "awoc_modules": sorted(e["name"] for e in merged if e["name"].startswith("awoc_scripts")),
    }


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=None, help="calls per command (default 25, quick 5)")
    parser.add_argument("--against", metavar="REV", default=REFERENCE_REV, help=f"default {REFERENCE_REV}")
    args = parser.parse_args()
    repeat = args.repeat or (5 if args.quick else 25)
    python = sys.executable
    import subprocess

    with tempfile.TemporaryDirectory(prefix="awoc-bench-startup-") as tmp:
        env = {**os.environ, "AWOC_STATE_DIR": str(Path(tmp) / "state")}
        available: list[tuple[str, str, str, list[str]]] = []  # label, shim, console script, args
        skipped: list[str] = []
        for name, cmd_args in COMMANDS:
            label = f"{name} {cmd_args[0]}"
            script, console = shim(name), find_cli(name)
            if script is None or console is None:
                skipped.append(f"{label}: {'shim' if script is None else 'console script'} missing")
                continue
            available.append((label, script, console, cmd_args))
        parser_cli = find_cli("parallel-task-parser")
        if parser_cli is None:
            sys.exit("parallel-task-parser is not installed (run: make install)")
        subprocess.run(
            [parser_cli, "validate", str(EXAMPLES / "tasks.json")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        calls: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            "python -c 'import typer'": [python, "-c", "import typer"],
        }
        for label, script, _, cmd_args in available:
            calls[label] = [script, *cmd_args]
        times: dict[str, list[float]] = {label: [] for label in calls}
        failed: dict[str, str] = {}
        for rep in range(repeat + 1):  # the first round warms the caches and is not counted
            for label, argv in calls.items():
                if label in failed:
                    continue
                try:
                    elapsed = time_call(argv, env=env, cwd=ROOT)
                except RuntimeError as exc:
                    failed[label] = str(exc)
                    continue
                if rep:
                    times[label].append(elapsed)
        profiles = {}
        for label, _, console, cmd_args in available:
            if label not in failed:
                profiles[label] = importtime_profile(python, console, cmd_args, env, 1 if args.quick else 3)
        profiles["python -c 'import typer'"] = importtime_profile(python, "-c", ["import typer"], env, 1)

    base = median(times["python -c pass"])
    typer_med = median(times["python -c 'import typer'"])
    print(
        f"median of {repeat} calls each; baselines: python -c pass {base * 1000:.1f} ms, import typer "
        f"{typer_med * 1000:.1f} ms"
    )
    figures = [
        Figure(
            "startup.import_typer",
            "startup: python -c 'import typer'",
            typer_med * 1000,
            "ms",
            spread([t * 1000 for t in times["python -c 'import typer'"]]),
            baseline=base * 1000,
            baseline_label="python -c pass",
            ratio=typer_med / base,
            note="baseline",
            details={"importtime": profiles["python -c 'import typer'"]},
        )
    ]
    for label, _, _, cmd_args in available:
        if label in failed:
            figures.append(
                Figure(
                    f"startup.{label.replace(' ', '.')}",
                    f"startup: {label}",
                    None,
                    "ms",
                    note="failed",
                    details={"error": failed[label]},
                )
            )
            print(f"{label}: FAILED: {failed[label]}")
            continue
        t = times[label]
        ratio = median(t) / typer_med
        profile = profiles[label]
        top = ", ".join(f"{m['module']} {m['cumulative_ms']:.0f}" for m in profile["top5"])
        print(
            f"{label}: {median(t) * 1000:.1f} ms ({ratio:.2f}x import typer); imports "
            f"{profile['total_import_ms']:.0f} ms in {profile['modules_imported']} modules; heaviest (ms): {top}"
        )
        figures.append(
            Figure(
                f"startup.{label.replace(' ', '.')}",
                f"startup: {label}",
                median(t) * 1000,
                "ms",
                spread([x * 1000 for x in t]),
                baseline=typer_med * 1000,
                baseline_label="import typer",
                ratio=ratio,
                ratio_spread=spread([x / typer_med for x in t]),
                goal=f"<= {GOAL}x",
                met=ratio <= GOAL,
                details={"argv": [Path(calls[label][0]).name, *cmd_args], "importtime": profile},
            )
        )
    try:
        figures += against_reference(args.against, repeat, skipped)
    except (RuntimeError, OSError, KeyError, subprocess.CalledProcessError) as exc:  # the other figures stand
        skipped.append(f"start-up against {args.against}: {exc}")
    for note in skipped:
        print(f"skipped: {note}")
    emit(figures, args.json, {"skipped": skipped, "python_pass_ms": base * 1000})
    return 0


def entry_points(tree: Path) -> dict[str, str]:
    """Console script name -> "module:function", from TREE's pyproject.toml."""
    import tomllib

    return dict(tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"])


def against_reference(rev: str, repeat: int, skipped: list[str]) -> list[Figure]:
    """Each command timed beside the same command in the code of REV (see the module's doc)."""
    import compileall
    import subprocess

    git = ["git", "-C", str(ROOT)]
    known = subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        skipped.append(f"start-up against {rev}: not in this clone")
        return []
    with tempfile.TemporaryDirectory(prefix="awoc-bench-reference-") as tmp:
        reference = Path(tmp) / "reference"
        reference.mkdir()
        archive = subprocess.run([*git, "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(reference)], input=archive, check=True)
        # both sides from bytecode: where PYTHONDONTWRITEBYTECODE is set, a module edited since its
        # last compile is compiled again at every call (6 ms for store.py)
        for tree in (reference, ROOT):
            compileall.compile_dir(str(tree / "awoc_scripts"), quiet=1)
        trees = {"now": ROOT, rev: reference}
        scripts = {name: entry_points(tree) for name, tree in trees.items()}
        envs = {
            name: {**os.environ, "PYTHONPATH": str(tree), "AWOC_STATE_DIR": f"{tmp}/state-{i}"}
            for i, (name, tree) in enumerate(trees.items())
        }

        def call(side: str, console: str, cmd_args: list[str]) -> list[str]:
            module, function = scripts[side][console].split(":")
            code = f"import sys; sys.argv[0] = {console!r}; from {module} import {function}; sys.exit({function}())"
            # -P: `python -c` would put the working directory first on sys.path, and from the
            # repository that is this tree's code, whatever PYTHONPATH says
            return [sys.executable, "-P", "-c", code, *cmd_args]

        for side, tree in trees.items():  # each side must run its own code, or the ratio says nothing
            where = subprocess.run(
                [sys.executable, "-P", "-c", "import awoc_scripts; print(awoc_scripts.__file__)"],
                env=envs[side],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if not Path(where).resolve().is_relative_to(tree.resolve()):
                raise RuntimeError(f"the {side} side imports awoc_scripts from {where}, not from {tree}")
        for side in trees:  # each side's own state, made by its own code
            time_call(call(side, "parallel-task-parser", ["validate", str(EXAMPLES / "tasks.json")]), envs[side])
        commands = [(n, a) for n, a in COMMANDS if all(n in scripts[side] for side in trees)]
        times: dict[tuple[str, str], list[float]] = {(side, n + a[0]): [] for side in trees for n, a in commands}
        for rep in range(repeat + 1):  # the first round warms the caches and is not counted
            for name, cmd_args in commands:
                sides = list(trees) if rep % 2 else list(reversed(trees))
                for side in sides:
                    elapsed = time_call(call(side, name, cmd_args), envs[side], ROOT)
                    if rep:
                        times[(side, name + cmd_args[0])].append(elapsed)
    figures = []
    ratios = []
    for name, cmd_args in commands:
        now, then = times[("now", name + cmd_args[0])], times[(rev, name + cmd_args[0])]
        ratio = median(now) / median(then)
        ratios.append(ratio)
        label = f"{name} {cmd_args[0]}"
        print(f"{label}: {median(now) * 1000:.1f} ms, at {rev} {median(then) * 1000:.1f} ms ({ratio:.2f}x)")
        figures.append(
            Figure(
                f"startup_against_reference.{label.replace(' ', '.')}",
                f"startup against {rev}: {label}",
                median(now) * 1000,
                "ms",
                spread([t * 1000 for t in now]),
                baseline=median(then) * 1000,
                baseline_label=f"the code at {rev}",
                ratio=ratio,
                ratio_spread=spread([a / b for a, b in zip(now, then, strict=True)]),
            )
        )
    if not ratios:
        skipped.append(f"start-up against {rev}: none of the scripts exists there")
        return figures
    mean = math.prod(ratios) ** (1 / len(ratios))
    figures.append(
        Figure(
            "startup_against_reference.geometric_mean",
            f"startup against {rev}: geometric mean of {len(ratios)} scripts",
            None,
            "",
            ratio=mean,
            ratio_spread=spread(ratios),
            baseline_label=f"the code at {rev}",
            goal=f"<= {GOAL_AGAINST_REFERENCE}x",
            met=mean <= GOAL_AGAINST_REFERENCE,
        )
    )
    print(f"start-up against {rev}: geometric mean {mean:.3f}x over {len(ratios)} scripts")
    return figures


if __name__ == "__main__":
    sys.exit(main())
