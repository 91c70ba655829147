#!/usr/bin/env bash
# parallel-to-sequential: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/parallel-to-sequential
[ -x "$cmd" ] || cmd=$(command -v parallel-to-sequential) || { echo "error: parallel-to-sequential is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
