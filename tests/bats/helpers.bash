# Common set-up for the shell tests: a test file says `load helpers` at its top, and gets the
# setup_file, setup and teardown below (a file that needs more defines its own and calls these).
#
# Every test gets its own temporary HOME, AWOC_STATE_DIR and working directory (never the real
# home or the repository's .awoc/), and runs the shims by absolute path through bash from that
# directory, as the slash command would and as a new user would from another project.

# The repository root (this file is tests/bats/helpers.bash).
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
SCRIPTS=$REPO/scripts
EXAMPLES=$REPO/examples
REAL_HOME=$HOME

# For reading JSON in the tests: python3 resolved once per file (a pyenv or asdf shim costs
# ~0.1 s a call), call common_setup_file from setup_file.
common_setup_file() {
  PYTHON=$(python3 -c 'import sys; print(sys.executable)') || return 1
  export PYTHON
}

common_setup() {
  bats_require_minimum_version 1.5.0 # run --separate-stderr
  TEST_HOME=$BATS_TEST_TMPDIR/home
  WORK=$BATS_TEST_TMPDIR/work
  STATE=$BATS_TEST_TMPDIR/state
  mkdir -p "$TEST_HOME" "$WORK"
  export HOME=$TEST_HOME
  export AWOC_STATE_DIR=$STATE
  unset AWOC_AGENT_COMMAND
  cd "$WORK" || return 1
  _guarded_before=$(_guarded_listing)
}

common_teardown() {
  [ "$(_guarded_listing)" = "$_guarded_before" ] || {
    echo "a test wrote into the real home directory or the repository's own .awoc/" >&2
    return 1
  }
}

_guarded_listing() {
  local dir
  for dir in "$REAL_HOME/.awoc" "$REAL_HOME/.claude" "$REPO/.awoc" "$REPO/.awoc/parallel" "$REPO/.awoc/parallel/runs"; do
    echo "== $dir"
    ls -A -- "$dir" 2>/dev/null || true
  done
}

# The shims, called through bash by absolute path.
ptp() { bash "$SCRIPTS/parallel-task-parser.sh" "$@"; }
depval() { bash "$SCRIPTS/dependency-validator.sh" "$@"; }
ctxmon() { bash "$SCRIPTS/context-monitor.sh" "$@"; }
taskmon() { bash "$SCRIPTS/parallel-task-monitor.sh" "$@"; }
errhandler() { bash "$SCRIPTS/parallel-error-handler.sh" "$@"; }
retry() { bash "$SCRIPTS/parallel-task-retry.sh" "$@"; }
aborter() { bash "$SCRIPTS/parallel-execution-aborter.sh" "$@"; }
planner() { bash "$SCRIPTS/parallel-resource-planner.sh" "$@"; }
aggregator() { bash "$SCRIPTS/parallel-result-aggregator.sh" "$@"; }
reporter() { bash "$SCRIPTS/parallel-report-generator.sh" "$@"; }
reducer() { bash "$SCRIPTS/token-budget-reducer.sh" "$@"; }
sequential() { bash "$SCRIPTS/parallel-to-sequential.sh" "$@"; }
prioritizer() { bash "$SCRIPTS/task-prioritizer.sh" "$@"; }
dp() { bash "$SCRIPTS/delegate-parallel.sh" "$@"; }

# json_eval EXPR: evaluate a Python expression with `d` bound to the JSON in $output; print it.
json_eval() {
  "${PYTHON:-python3}" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$output" "$1"
}

# json_assert EXPR: fail (showing the document) unless the Python expression is true for `d`.
json_assert() {
  "${PYTHON:-python3}" -c '
import json, sys
d = json.loads(sys.argv[1])
if not eval(sys.argv[2]):
    sys.exit("json_assert failed: " + sys.argv[2] + "\n" + json.dumps(d, indent=1)[:2000])
' "$output" "$1"
}

# write_json NAME TEXT: a file in the working directory; prints its absolute path.
write_json() {
  printf '%s' "$2" >"$WORK/$1"
  echo "$WORK/$1"
}

# A run was saved: exit 0, JSON on stdout, plan.json and `current` in the state directory.
assert_saved_run() {
  [ "$status" -eq 0 ] || { echo "status $status, stderr: $stderr" >&2; return 1; }
  local run_id
  run_id=$(json_eval 'd["run_id"]')
  [ -f "$STATE/runs/$run_id/plan.json" ]
  [ "$(cat "$STATE/current")" = "$run_id" ]
}

# Bad input: exit exactly 2, nothing on stdout, one `error: ...` message on stderr, no traceback,
# and no run in the state directory. Extra arguments must each appear in the message.
assert_bad_input() {
  local fail=
  [ "$status" -eq 2 ] || fail+="exit status $status, expected 2; "
  [ -z "$output" ] || fail+="stdout not empty; "
  [[ $stderr == "error: "* ]] || fail+="stderr does not start with 'error: '; "
  [ "$(grep -c '^error:' <<<"$stderr")" -eq 1 ] || fail+="not exactly one error: line; "
  [[ $stderr != *Traceback* ]] || fail+="traceback on stderr; "
  [ ! -e "$STATE/current" ] || fail+="state: current written; "
  [ -z "$(ls -A "$STATE/runs" 2>/dev/null)" ] || fail+="state: a run was saved; "
  local want
  for want in "$@"; do
    [[ $stderr == *"$want"* ]] || fail+="message lacks '$want'; "
  done
  if [ -n "$fail" ]; then
    printf '%s\n--- stdout:\n%s\n--- stderr:\n%s\n' "$fail" "$output" "$stderr" >&2
    return 1
  fi
}

setup_file() { common_setup_file; }
setup() { common_setup; }
teardown() { common_teardown; }
