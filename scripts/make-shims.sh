#!/usr/bin/env bash
# Writes, for every console script in pyproject.toml (run after adding one or editing the command):
#   scripts/<name>.sh  the repository's shims (the seed's scripts),
#   bin/<name>         the Claude Code plugin's launchers (its bin/ is on PATH for its commands),
# and renders the /delegate-parallel command for this repository and for the plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
names=$(sed -n '/^\[project.scripts\]/,/^\[/p' pyproject.toml | sed -n 's/^\([a-z-]*\) = .*/\1/p')
mkdir -p bin
for name in $names; do
  cat > "scripts/$name.sh" <<SHIM
#!/usr/bin/env bash
# $name: the console script from this project's virtualenv, else the one on PATH.
# (bash builtins only: every script call pays for this, and the slash command makes several)
src=\${BASH_SOURCE[0]}
[[ \$src == */* ]] || src=./\$src
# the commands awoc prints (retry, wait, report...) are named the way this one was called
[ -n "\${AWOC_LAUNCHER:-}" ] || export AWOC_LAUNCHER="\${src%/*}/{name}.sh"
[[ -L \$src ]] && src=\$(readlink -f -- "\$src")
cmd=\${src%/*}/../.venv/bin/$name
[ -x "\$cmd" ] || cmd=\$(command -v $name) || { echo "error: $name is not installed (run: make install)" >&2; exit 4; }
exec "\$cmd" "\$@"
SHIM
  cat > "bin/$name" <<LAUNCHER
#!/usr/bin/env bash
# $name for the awoc Claude Code plugin: this checkout's virtualenv if it has one, else
# scripts/plugin-launch.sh (an awoc on PATH, or the plugin's own environment, made on first use).
src=\${BASH_SOURCE[0]}
[[ -L \$src ]] && src=\$(readlink -f -- "\$src")
[[ \$src == */* ]] || src=./\$src
root=\${src%/*}/..
[ -x "\$root/.venv/bin/$name" ] && exec "\$root/.venv/bin/$name" "\$@"
exec "\$root/scripts/plugin-launch.sh" $name "\$@"
LAUNCHER
  chmod +x "scripts/$name.sh" "bin/$name"
done
template=awoc_scripts/claude_code/claude_command/delegate-parallel.md
sed 's/{cmd:\([a-z-]*\)}/scripts\/\1.sh/g' "$template" > .claude/commands/delegate-parallel.md
sed 's/{cmd:\([a-z-]*\)}/\1/g' "$template" > claude_plugin/commands/delegate-parallel.md
echo "shims: $names" | tr '\n' ' '; echo
