#!/usr/bin/env bash
# parallel-task-retry: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-task-retry
[ -x "$cmd" ] || cmd=$(command -v parallel-task-retry) || { echo "error: parallel-task-retry is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
