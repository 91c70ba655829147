#!/usr/bin/env bash
# parallel-execution-aborter: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-execution-aborter
[ -x "$cmd" ] || cmd=$(command -v parallel-execution-aborter) || { echo "error: parallel-execution-aborter is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
