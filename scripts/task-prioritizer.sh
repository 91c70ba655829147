#!/usr/bin/env bash
# task-prioritizer: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/task-prioritizer
[ -x "$cmd" ] || cmd=$(command -v task-prioritizer) || { echo "error: task-prioritizer is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
