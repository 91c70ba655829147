#!/usr/bin/env bash
# plugin-launch.sh NAME ARGS...: run awoc's console script NAME for the Claude Code plugin.
#
# 1. an awoc already on PATH (outside this plugin's bin/) is used as it is;
# 2. else the plugin's own Python environment, made from the plugin's source on first use
#    (once, under a lock) in ${AWOC_PLUGIN_ENV:-${XDG_CACHE_HOME:-~/.cache}/awoc/plugin-VERSION}.
#    Claude Code does not export ${CLAUDE_PLUGIN_DATA} to shell commands, hence a cache folder.
# With --for-claude among the arguments, a failure is printed on stdout and exits 0: a shell step
# of a slash command that exits non-zero ends the command without a word to the user.
set -uo pipefail
name=$1
shift
root=$(cd -- "${BASH_SOURCE[0]%/*}/.." && pwd -P)

say_failure() {
  local arg
  for arg in "$@"; do
    if [ "$arg" = --for-claude ]; then
      printf '## awoc could not start\n\n%s\n' "$message"
      exit 0
    fi
  done
  echo "error: $message" >&2
  exit 127
}

if [ -z "${AWOC_PLUGIN_LAUNCHED:-}" ]; then
  IFS=: read -ra path_dirs <<<"${PATH:-}"
  for dir in "${path_dirs[@]}"; do
    [ -n "$dir" ] && [ -x "$dir/$name" ] || continue
    [ "$(cd -- "$dir" 2>/dev/null && pwd -P)" = "$root/bin" ] && continue
    export AWOC_PLUGIN_LAUNCHED=1
    exec "$dir/$name" "$@"
  done
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
env_dir=${AWOC_PLUGIN_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/awoc/plugin-${version:-unknown}}
if [ ! -f "$env_dir/.complete" ]; then
  mkdir -p -- "${env_dir%/*}" || { message="cannot create ${env_dir%/*}"; say_failure "$@"; }
  exec 9>"$env_dir.lock"
  flock 9
  if [ ! -f "$env_dir/.complete" ]; then
    python=
    for candidate in python3 python3.14 python3.13 python3.12 python3.11; do
      if command -v "$candidate" >/dev/null &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python=$candidate
        break
      fi
    done
    [ -n "$python" ] || { message="awoc needs Python 3.11 or newer on PATH to make its environment (none found)"; say_failure "$@"; }
    note="awoc: first use of the plugin: making its Python environment in $env_dir from $root (once; this takes a minute)"
    if [[ " $* " == *" --for-claude "* ]]; then echo "$note"; echo; else echo "$note" >&2; fi
    rm -rf -- "$env_dir"
    if ! { "$python" -m venv "$env_dir" &&
      "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check "$root"; } >"$env_dir.log" 2>&1; then
      message="could not make awoc's environment in $env_dir (the log is $env_dir.log): $(tail -n 3 "$env_dir.log")"
      say_failure "$@"
    fi
    touch "$env_dir/.complete"
  fi
  exec 9>&-
fi
exec "$env_dir/bin/$name" "$@"
