#!/usr/bin/env bash
# parallel-task-monitor: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-task-monitor
[ -x "$cmd" ] || cmd=$(command -v parallel-task-monitor) || { echo "error: parallel-task-monitor is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
