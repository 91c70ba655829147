#!/usr/bin/env bash
# parallel-report-generator: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-report-generator
[ -x "$cmd" ] || cmd=$(command -v parallel-report-generator) || { echo "error: parallel-report-generator is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
