"""dependency-validator: the dependency graph checks on their own."""

from __future__ import annotations

from typing import Annotated

import typer

from awoc_scripts.cli.common import new_app, run_app

app = new_app("dependency-validator", "Check a dependency graph for unknown names, self-dependencies and cycles.")


@app.command("check-circular")
def check_circular(
    doc: Annotated[
        str, typer.Argument(help='A config, a plan, or {"task": ["dependency", ...]}: a file, - or JSON text.')
    ],
) -> None:
    """Exit 0 when the graph is sound; 2 with the problem (a cycle is printed as its path)."""
    from awoc_scripts.input.dependencies import check_graph
    from awoc_scripts.input.documents import load_document, print_json

    document = load_document(doc, what="dependency document")
    print_json(check_graph(document.data, document.source))


def main(args: list[str] | None = None) -> None:
    run_app(app, args)
