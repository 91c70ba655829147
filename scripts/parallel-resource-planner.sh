#!/usr/bin/env bash
# parallel-resource-planner: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-resource-planner
[ -x "$cmd" ] || cmd=$(command -v parallel-resource-planner) || { echo "error: parallel-resource-planner is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
