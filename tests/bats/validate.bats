#!/usr/bin/env bats
# scripts/parallel-task-parser.sh validate and scripts/dependency-validator.sh check-circular,
# called through bash from an unrelated directory, as the slash command would.

load helpers

# ---- valid input ----

@test "three inline tasks: a plan with three tasks and budgets 4000/6000/8000, saved as the current run" {
  run --separate-stderr ptp validate "docs-fetcher:Research API docs" "architect:Design system" "workforce:Setup tests"
  assert_saved_run
  json_assert 'len(d["tasks"]) == 3'
  json_assert '[t["task_id"] for t in d["tasks"]] == ["docs-fetcher-1", "architect-1", "workforce-1"]'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [4000, 6000, 8000]'
  json_assert 'd["schema"] == "delegate-parallel-v1.0"'
  [[ $stderr == *"validated 3 task(s)"* ]]
}

@test "mixed priorities with --flag=value and --flag value anywhere among the tasks" {
  run --separate-stderr ptp validate --priority=high "architect:Critical security review" \
    --priority medium "docs-fetcher:Performance research" "workforce:c" \
    --max-parallel 3 --timeout=300 --format=research_report --total-budget 50000
  assert_saved_run
  json_assert '[t["priority"] for t in d["tasks"]] == ["high", "medium", "medium"]'
  json_assert '[t["token_budget"] for t in d["tasks"]] == [6600, 4000, 8000]'
  json_assert 'd["parallel_config"]["max_concurrent"] == 3 and d["parallel_config"]["total_timeout"] == 300'
  json_assert 'd["parallel_config"]["result_format"] == "research_report"'
  json_assert 'd["parallel_config"]["total_token_budget"] == 50000'
}

@test "the three shipped examples validate, and their dependency graphs are sound" {
  local name
  for name in tasks feature-development bug-investigation; do
    run --separate-stderr ptp validate "$EXAMPLES/$name.json"
    assert_saved_run
    json_assert 'len(d["tasks"]) >= 3'
  done
  run --separate-stderr depval check-circular "$EXAMPLES/feature-development.json"
  [ "$status" -eq 0 ]
  json_assert 'd["ok"] is True and d["tasks"] == 4'
}

@test "config on standard input with -" {
  run --separate-stderr ptp validate - --max-parallel=2 <"$EXAMPLES/feature-development.json"
  assert_saved_run
  json_assert 'd["workflow"] == "feature_development" and len(d["tasks"]) == 4'
  json_assert 'd["parallel_config"]["max_concurrent"] == 2'
}

@test "hostile task text passes through byte for byte and runs nothing" {
  local text
  text=$(printf '%s\n%s' \
    "say \"hi\" 'there' \$(touch $BATS_TEST_TMPDIR/pwned) \`touch $BATS_TEST_TMPDIR/pwned2\` ; \${HOME} && echo" \
    "new line ünïcødé 🚀 \\n	tab")
  run --separate-stderr ptp validate "qa:$text"
  assert_saved_run
  printf '%s' "$text" >expected
  "$PYTHON" -c 'import json, sys; sys.stdout.buffer.write(json.loads(sys.argv[1])["tasks"][0]["description"].encode())' \
    "$output" >got
  cmp expected got
  [ ! -e "$BATS_TEST_TMPDIR/pwned" ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned2" ]
}

# ---- bad input: exit 2, one error: line, no traceback, no run saved ----

@test "missing config file" {
  run --separate-stderr ptp validate nope.json
  assert_bad_input "nope.json: no such config file"
}

@test "a directory instead of a config file" {
  mkdir adir
  run --separate-stderr ptp validate adir
  assert_bad_input "adir: is a directory"
}

@test "malformed JSON names the file and the line" {
  path=$(write_json m.json $'{"tasks": [\n  {"agent": "qa",}\n]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "$path: malformed JSON" "line 2"
}

@test "a config that is not an object" {
  path=$(write_json list.json '[1, 2]')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "expected a JSON object"
}

@test "an empty task list" {
  path=$(write_json empty.json '{"tasks": []}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "tasks: expected at least one task"
}

@test "an unknown key suggests the right one" {
  path=$(write_json typo.json '{"tasks": [{"agent": "qa", "description": "x", "prority": "high"}]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "tasks[0].prority: unknown key 'prority' (did you mean 'priority'?)"
}

@test "a path-like task id ../x" {
  path=$(write_json escape.json '{"tasks": [{"task_id": "../x", "agent": "qa", "description": "x"}]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "tasks[0].task_id"
}

@test "duplicate task ids" {
  path=$(write_json dup.json \
    '{"tasks": [{"agent": "qa", "description": "x"}, {"task_id": "qa-1", "agent": "architect", "description": "y"}]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "tasks[1]: duplicate task id 'qa-1' (also tasks[0])"
}

@test "an inline argument without agent:" {
  run --separate-stderr ptp validate "Research the API"
  assert_bad_input "Research the API: no such config file"
}

@test "an unknown flag" {
  run --separate-stderr ptp validate --paralel=3 "qa:x"
  assert_bad_input "unknown option '--paralel'"
}

@test "a cycle is reported as its path, by validate and by check-circular" {
  path=$(write_json cycle.json '{"tasks": [
    {"task_id": "design", "agent": "architect", "description": "x", "dependencies": ["test"]},
    {"task_id": "build", "agent": "workforce", "description": "x", "dependencies": ["design"]},
    {"task_id": "test", "agent": "qa", "description": "x", "dependencies": ["build"]}]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "dependency cycle: design -> build -> test -> design"
  run --separate-stderr depval check-circular "$path"
  assert_bad_input "dependency cycle: design -> build -> test -> design"
}

@test "an unknown dependency lists what exists" {
  path=$(write_json unknown.json '{"tasks": [{"agent": "architect", "description": "x"},
    {"agent": "workforce", "description": "x", "dependencies": ["architekt"]}]}')
  run --separate-stderr ptp validate "$path"
  assert_bad_input "tasks[1].dependencies[0]: unknown dependency 'architekt'" "agents: architect, workforce"
  run --separate-stderr depval check-circular "$path"
  assert_bad_input "unknown dependency 'architekt'"
}
