#!/usr/bin/env bash
# context-monitor: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/context-monitor
[ -x "$cmd" ] || cmd=$(command -v context-monitor) || { echo "error: context-monitor is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
