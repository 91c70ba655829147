#!/usr/bin/env bash
# Writes scripts/<name>.sh for every console script in pyproject.toml (run after adding one).
set -euo pipefail
cd "$(dirname "$0")/.."
names=$(sed -n '/^\[project.scripts\]/,/^\[/p' pyproject.toml | sed -n 's/^\([a-z-]*\) = .*/\1/p')
for name in $names; do
  cat > "scripts/$name.sh" <<SHIM
#!/usr/bin/env bash
# $name: the console script from this project's virtualenv, else the one on PATH.
# (bash builtins only: every script call pays for this, and the slash command makes several)
src=\${BASH_SOURCE[0]}
[[ -L \$src ]] && src=\$(readlink -f -- "\$src")
[[ \$src == */* ]] || src=./\$src
cmd=\${src%/*}/../.venv/bin/$name
[ -x "\$cmd" ] || cmd=\$(command -v $name) || { echo "error: $name is not installed (run: make install)" >&2; exit 4; }
exec "\$cmd" "\$@"
SHIM
  chmod +x "scripts/$name.sh"
done
echo "shims: $names" | tr '\n' ' '; echo
