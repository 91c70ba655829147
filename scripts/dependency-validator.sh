#!/usr/bin/env bash
# dependency-validator: the console script from this project's virtualenv, else the one on PATH.
here=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
cmd=$here/../.venv/bin/dependency-validator
[ -x "$cmd" ] || cmd=$(command -v dependency-validator) || { echo "error: dependency-validator is not installed (run: make install)" >&2; exit 4; }
exec "$cmd" "$@"
