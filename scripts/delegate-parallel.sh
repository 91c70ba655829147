#!/usr/bin/env bash
# delegate-parallel: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/delegate-parallel
[ -x "$cmd" ] || cmd=$(command -v delegate-parallel) || { echo "error: delegate-parallel is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
