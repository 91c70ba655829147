#!/usr/bin/env bash
# parallel-result-aggregator: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-result-aggregator
[ -x "$cmd" ] || cmd=$(command -v parallel-result-aggregator) || { echo "error: parallel-result-aggregator is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
