#!/usr/bin/env bash
# parallel-task-parser: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-task-parser
[ -x "$cmd" ] || cmd=$(command -v parallel-task-parser) || { echo "error: parallel-task-parser is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
