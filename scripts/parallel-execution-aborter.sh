#!/usr/bin/env bash
# parallel-execution-aborter: the console script from this project's virtualenv, else the one on PATH.
# (bash builtins only: every script call pays for this, and the slash command makes several)
src=${BASH_SOURCE[0]}
[[ -L $src ]] && src=$(readlink -f -- "$src")
[[ $src == */* ]] || src=./$src
cmd=${src%/*}/../.venv/bin/parallel-execution-aborter
[ -x "$cmd" ] || cmd=$(command -v parallel-execution-aborter) || { echo "error: parallel-execution-aborter is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
