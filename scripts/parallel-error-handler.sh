#!/usr/bin/env bash
# parallel-error-handler: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-error-handler
[ -x "$cmd" ] || cmd=$(command -v parallel-error-handler) || { echo "error: parallel-error-handler is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
