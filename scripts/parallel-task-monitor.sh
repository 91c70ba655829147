#!/usr/bin/env bash
# parallel-task-monitor: the console script from this project's virtualenv, else the one on PATH.
# (bash builtins only: every script call pays for this, and the slash command makes several)
src=${BASH_SOURCE[0]}
[[ $src == */* ]] || src=./$src
# the commands awoc prints (retry, wait, report...) are named the way this one was called
[ -n "${AWOC_LAUNCHER:-}" ] || export AWOC_LAUNCHER="${src%/*}/{name}.sh"
[[ -L $src ]] && src=$(readlink -f -- "$src")
cmd=${src%/*}/../.venv/bin/parallel-task-monitor
[ -x "$cmd" ] || cmd=$(command -v parallel-task-monitor) || { echo "error: parallel-task-monitor is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
