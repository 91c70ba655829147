#!/usr/bin/env bash
# token-budget-reducer: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/token-budget-reducer
[ -x "$cmd" ] || cmd=$(command -v token-budget-reducer) || { echo "error: token-budget-reducer is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
