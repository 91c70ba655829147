#!/usr/bin/env bats
# scripts/parallel-resource-planner.sh plan-execution and the emergency levers
# (token-budget-reducer, parallel-to-sequential, task-prioritizer), called through bash from an
# unrelated directory, as the slash command and the seed's resource-exhaustion handler call them.

load helpers


# The seed's mixed-priority example: budgets 6600, 4000, 8000, 5000 (23600 in all).
INLINE=(--priority=high "architect:a" --priority=medium "docs-fetcher:b" "workforce:c" "qa:d")

# validate_run ARGS...: a saved run; sets RUN_ID and PARSED_TASKS (the printed plan).
validate_run() {
  run --separate-stderr ptp validate "$@"
  assert_saved_run
  RUN_ID=$(json_eval 'd["run_id"]')
  PARSED_TASKS=$output
}

run_file() { echo "$STATE/runs/$RUN_ID/$1"; }

# Exit 2, nothing on stdout, one `error:` line, no traceback (a run may exist: it was made first).
assert_usage_error() {
  [ "$status" -eq 2 ] || { echo "status $status: $stderr" >&2; return 1; }
  [ -z "$output" ] || { echo "stdout: $output" >&2; return 1; }
  [ "$(grep -c '^error:' <<<"$stderr")" -eq 1 ] || { echo "stderr: $stderr" >&2; return 1; }
  [[ $stderr != *Traceback* ]]
  local want
  for want in "$@"; do [[ $stderr == *"$want"* ]] || { echo "no '$want' in: $stderr" >&2; return 1; }; done
}

# Usage errors (a missing or extra argument): exit 2, one error line pointing at --help, no stdout.
assert_cli_usage_error() {
  [ "$status" -eq 2 ] || { echo "status $status: $stderr" >&2; return 1; }
  [ -z "$output" ]
  [ "$(grep -c '^error:' <<<"$stderr")" -eq 1 ] || { echo "stderr: $stderr" >&2; return 1; }
  [[ $stderr == *"--help)"* ]]
  [[ $stderr != *Traceback* ]]
}

# ---- plan-execution ----

@test "plan-execution on the current run: budgets as validated, execution.json written, a summary on stderr" {
  validate_run "${INLINE[@]}"
  run --separate-stderr planner plan-execution
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["kind"] == "execution"'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [6600, 4000, 8000, 5000]'
  json_assert '[t["priority_rank"] for t in d["tasks"]] == [1, 2, 2, 2]'
  json_assert 'all(t["level"] == 0 for t in d["tasks"]) and len(d["waves"]) == 1'
  json_assert 'd["parallel_config"]["max_concurrent"] == 5 and d["peak_concurrency"] == 4'
  json_assert 'd["sequential_estimate_s"] == 2400 and d["estimated_makespan_s"] == 600'
  [ -f "$(run_file execution.json)" ]
  [[ $stderr == *"run $RUN_ID: 4 task(s)"* ]]
  # execution.json is what was printed
  "$PYTHON" -c 'import json, sys; assert json.load(open(sys.argv[1])) == json.loads(sys.argv[2])' \
    "$(run_file execution.json)" "$output"
}

@test "plan-execution \"\${PARSED_TASKS}\" MAX_PARALLEL TOTAL_TOKEN_BUDGET: scaled budgets, the same run" {
  validate_run "${INLINE[@]}"
  run --separate-stderr planner plan-execution "$PARSED_TASKS" 3 15000
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["run_id"] == "'"$RUN_ID"'"'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [4194, 2542, 5084, 3177]'
  json_assert 'd["budget"]["total"] == 15000 and d["budget"]["allocated"] == 14997'
  json_assert '0.63 < d["budget"]["scale_factor"] < 0.64'
  json_assert 'd["parallel_config"]["max_concurrent"] == 3 and d["parallel_config"]["total_token_budget"] == 15000'
  json_assert 'd["peak_concurrency"] == 3 and d["estimated_makespan_s"] == 1200'
  [[ $stderr == *"warning: token budgets add up to 23600, more than the total 15000"* ]]
  [ "$(ls "$STATE/runs")" = "$RUN_ID" ] # no second run
  [ "$(cat "$STATE/current")" = "$RUN_ID" ]
  # the seed passes an unset PARSED_TASKS as "": the current run
  run --separate-stderr planner plan-execution "" 2
  [ "$status" -eq 0 ]
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["parallel_config"]["max_concurrent"] == 2'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [6600, 4000, 8000, 5000]'
}

@test "plan-execution of the feature-development example: critical path, levels, execution.json in the run dir" {
  run --separate-stderr planner plan-execution "$EXAMPLES/feature-development.json"
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  RUN_ID=$(json_eval 'd["run_id"]')
  [ "$(cat "$STATE/current")" = "$RUN_ID" ]
  json_assert 'd["critical_path"] == ["docs-fetcher-1", "architect-1", "workforce-1"]'
  json_assert 'd["waves"] == [["docs-fetcher-1"], ["architect-1"], ["workforce-1", "workforce-2"]]'
  json_assert '{t["task_id"]: t["level"] for t in d["tasks"]} == {"docs-fetcher-1": 0, "architect-1": 1, "workforce-1": 2, "workforce-2": 2}'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [3500, 6000, 8000, 4000]'
  json_assert 'd["sequential_estimate_s"] == 2400 and d["estimated_makespan_s"] == 1800'
  [ -f "$(run_file plan.json)" ]
  [ -f "$(run_file execution.json)" ]
  [[ $stderr == *"critical path docs-fetcher-1 -> architect-1 -> workforce-1"* ]]
}

@test "plan-execution with a config on standard input" {
  run --separate-stderr planner plan-execution - 1 <"$EXAMPLES/feature-development.json"
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["parallel_config"]["max_concurrent"] == 1 and d["peak_concurrency"] == 1'
  json_assert 'd["estimated_makespan_s"] == d["sequential_estimate_s"]'
}

# ---- plan-execution: bad input ----

@test "plan-execution with no run yet" {
  run --separate-stderr planner plan-execution
  assert_bad_input "no runs yet"
}

@test "plan-execution: MAX_PARALLEL not a number, or 0; TOTAL_TOKEN_BUDGET not a number, or 0" {
  run --separate-stderr planner plan-execution "" many
  assert_bad_input "MAX_PARALLEL: expected a whole number, got 'many'"
  validate_run "${INLINE[@]}"
  run --separate-stderr planner plan-execution "" 0
  assert_usage_error "MAX_PARALLEL: expected a whole number from 1 to 100, got 0"
  run --separate-stderr planner plan-execution "$PARSED_TASKS" 3.5
  assert_usage_error "MAX_PARALLEL: expected a whole number, got '3.5'"
  run --separate-stderr planner plan-execution "" 3 lots
  assert_usage_error "TOTAL_TOKEN_BUDGET: expected a whole number, got 'lots'"
  run --separate-stderr planner plan-execution "" 3 0
  assert_usage_error "TOTAL_TOKEN_BUDGET: expected a positive whole number, got 0"
  [ ! -e "$(run_file execution.json)" ] # nothing planned on bad input
  [ "$(ls "$STATE/runs")" = "$RUN_ID" ]
}

@test "plan-execution: a missing plan file, an empty task list" {
  run --separate-stderr planner plan-execution nope.json 3
  assert_bad_input "nope.json: no such plan file"
  run --separate-stderr planner plan-execution '{"tasks": []}'
  assert_bad_input "tasks: expected at least one task"
}

@test "plan-execution: a config given as JSON text with a bad MAX_PARALLEL saves no run" {
  run --separate-stderr planner plan-execution '{"tasks": [{"agent": "qa", "description": "x"}]}' 0
  assert_bad_input "MAX_PARALLEL: expected a whole number from 1 to 100, got 0"
}

# ---- the levers ----

@test "token-budget-reducer reduce-remaining-tasks 20%: every not-started task loses 20%" {
  validate_run "${INLINE[@]}"
  run --separate-stderr reducer reduce-remaining-tasks 20%
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["action"] == "reduce-remaining-tasks"'
  json_assert 'd["changed"]["reduced_by_percent"] == 20'
  json_assert '[(t["task_id"], t["token_budget_before"], t["token_budget"]) for t in d["changed"]["tasks"]] == [("architect-1", 6600, 5280), ("docs-fetcher-1", 4000, 3200), ("workforce-1", 8000, 6400), ("qa-1", 5000, 4000)]'
  [[ $stderr == *"reduce-remaining-tasks applied to run $RUN_ID"* ]]
  # 20 works too, and applies to the budgets already reduced
  run --separate-stderr reducer reduce-remaining-tasks 20
  [ "$status" -eq 0 ]
  json_assert 'd["changed"]["tasks"][0]["token_budget"] == 4224'
  "$PYTHON" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["tasks"]["qa-1"]["token_budget"] == 3200, s["tasks"]["qa-1"]' \
    "$(run_file state.json)"
}

@test "parallel-to-sequential convert-remaining-tasks: one at a time from now on" {
  validate_run "${INLINE[@]}" --max-parallel=4
  run --separate-stderr sequential convert-remaining-tasks
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["changed"]["max_concurrent_before"] == 4 and d["changed"]["max_concurrent"] == 1'
  json_assert 'd["changed"]["remaining_tasks"] == ["architect-1", "docs-fetcher-1", "workforce-1", "qa-1"]'
  "$PYTHON" -c 'import json, sys; assert json.load(open(sys.argv[1]))["max_concurrent"] == 1' "$(run_file state.json)"
}

@test "task-prioritizer emergency-prioritization prints what it cancelled and what it kept" {
  validate_run --priority=critical "architect:a" --priority=high "workforce:b" --priority=medium "docs-fetcher:c" \
    --priority=low "qa:d" --then --priority=high "qa:e"
  run --separate-stderr prioritizer emergency-prioritization
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["changed"]["cancelled"] == ["docs-fetcher-1", "qa-1"]'
  json_assert 'd["changed"]["kept"] == ["architect-1", "workforce-1"]'
  json_assert '[s["task_id"] for s in d["changed"]["skipped_as_a_result"]] == ["qa-2"]'
  run --separate-stderr bash "$SCRIPTS/delegate-parallel.sh" status
  [ "$status" -eq 0 ]
  json_assert '{t["task_id"]: t["status"] for t in d["tasks"]} == {"architect-1": "pending", "workforce-1": "pending", "docs-fetcher-1": "cancelled", "qa-1": "cancelled", "qa-2": "skipped"}'
  # a second time: nothing left to cancel
  run --separate-stderr prioritizer emergency-prioritization
  [ "$status" -eq 0 ]
  json_assert 'd["changed"]["cancelled"] == []'
}

@test "the levers with no run yet: exit 2, nothing written" {
  run --separate-stderr reducer reduce-remaining-tasks 20%
  assert_bad_input "no runs yet"
  run --separate-stderr sequential convert-remaining-tasks
  assert_bad_input "no runs yet"
  run --separate-stderr prioritizer emergency-prioritization
  assert_bad_input "no runs yet"
}

@test "the levers' bad input: percent out of range or not a number, unknown run, missing or extra arguments" {
  validate_run "${INLINE[@]}"
  run --separate-stderr reducer reduce-remaining-tasks 150%
  assert_usage_error "PERCENT: expected 1 to 99, got 150"
  run --separate-stderr reducer reduce-remaining-tasks 0
  assert_usage_error "PERCENT: expected 1 to 99, got 0"
  run --separate-stderr reducer reduce-remaining-tasks lots
  assert_usage_error "PERCENT: expected a whole number like 20 or 20%, got 'lots'"
  run --separate-stderr prioritizer emergency-prioritization --run nope
  assert_usage_error "'nope' is not a run id"
  run --separate-stderr sequential convert-remaining-tasks --run 20200101-000000-000000-abcdef
  assert_usage_error "no run 20200101-000000-000000-abcdef"
  run --separate-stderr reducer reduce-remaining-tasks
  assert_cli_usage_error
  run --separate-stderr sequential convert-remaining-tasks extra
  assert_cli_usage_error
  [ ! -e "$(run_file state.json)" ] # no lever was applied
}
