#!/usr/bin/env bats
# The monitoring and failure scripts through their shims, called through bash from an unrelated
# directory, as the seed's flow calls them: context-monitor, parallel-task-monitor,
# parallel-error-handler, parallel-task-retry, parallel-execution-aborter.

load helpers


# A saved run of three command tasks: design, then build (fails once), then check.
new_run() {
  local config
  config=$(write_json tasks.json '{"parallel_config": {"retries": 0, "failure_tolerance": 1}, "tasks": [
    {"task_id": "design", "agent": "architect", "description": "design it", "command": ["echo", "the design"]},
    {"task_id": "build", "agent": "workforce", "description": "build it", "dependencies": ["design"],
     "command": ["sh", "-c", "cat >/dev/null; [ -e built-once ] && echo built && exit 0; touch built-once; exit 3"]},
    {"task_id": "check", "agent": "qa", "description": "check it", "dependencies": ["build"], "command": ["cat"]}]}')
  run --separate-stderr ptp validate "$config"
  assert_saved_run
  RUN_ID=$(json_eval 'd["run_id"]')
}

# gone PID: the process has ended (a zombie waiting for its parent counts as ended).
gone() {
  [ ! -e "/proc/$1/stat" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" = Z ]
}

# Exit 2, nothing on stdout, one `error:` line, no traceback (the run may exist: it was made first).
assert_usage_error() {
  [ "$status" -eq 2 ] || { echo "status $status: $stderr" >&2; return 1; }
  [ -z "$output" ]
  [ "$(grep -c '^error:' <<<"$stderr")" -eq 1 ]
  [[ $stderr != *Traceback* ]]
  local want
  for want in "$@"; do [[ $stderr == *"$want"* ]] || { echo "no '$want' in: $stderr" >&2; return 1; }; done
}

@test "context-monitor tracks the seed's events, and status warns past 80% of a task's budget" {
  new_run
  run --separate-stderr ctxmon track parallel-start 3 15000
  [ "$status" -eq 0 ]
  json_assert 'd["total_tasks"] == 3 and d["total_token_budget"] == 15000'
  run --separate-stderr ctxmon track parallel-task-start architect Design the system
  json_assert 'd["task_id"] == "design" and d["description"] == "Design the system"'
  run --separate-stderr ctxmon track parallel-task-complete architect 5000
  json_assert 'd["tokens"] == 5000'
  [ "$(wc -l <"$STATE/runs/$RUN_ID/events.jsonl")" -eq 3 ]

  run --separate-stderr ctxmon status
  [ "$status" -eq 0 ]
  json_assert 'd["total"]["tokens_used"] == 5000'
  json_assert '[(w["task_id"], w["threshold"]) for w in d["warnings"]] == [("design", 80)]'
  [[ $stderr == *"warning: task design used 5000 of 6000 tokens"* ]]
}

@test "context-monitor: six shells tracking at once lose no event" {
  new_run
  local i
  for i in 1 2 3 4 5 6; do
    (for j in 1 2 3 4; do ctxmon track parallel-task-complete "design" "$i$j" >/dev/null; done) &
  done
  wait
  [ "$(wc -l <"$STATE/runs/$RUN_ID/events.jsonl")" -eq 24 ]
}

@test "parallel-task-monitor: the seed's \"PID PID\" TIMEOUT form stops both trees and exits 3" {
  sh -c 'sleep 60 & sleep 60' &
  local first=$!
  sleep 60 &
  local second=$!
  sleep 0.2
  local kids
  kids=$(pgrep -P "$first" | tr '\n' ' ')
  [ -n "$kids" ]
  run --separate-stderr taskmon monitor "$first $second" 1 --interval 0.2
  [ "$status" -eq 3 ] || { echo "status $status: $stderr" >&2; return 1; }
  local summary
  summary=$(tail -n 1 <<<"$output")
  output=$summary json_assert 'd["type"] == "summary" and d["timed_out"] and len(d["processes"]) == 2'
  output=$summary json_assert 'all(p["ended"] == "killed" for p in d["processes"])'
  wait "$first" "$second" || true
  local pid
  for pid in $first $second $kids; do
    gone "$pid" || { echo "process $pid survived" >&2; return 1; }
  done
}

@test "parallel-task-monitor: processes that end by themselves exit 0; unknown pids and names exit 2" {
  sleep 1.5 &  # outlives the monitor's start-up on a loaded machine (it refuses unknown pids)
  run --separate-stderr taskmon monitor $! --timeout 10 --interval 0.1
  [ "$status" -eq 0 ]
  output=$(tail -n 1 <<<"$output") json_assert 'd["processes"][0]["ended"] == "exited"'

  run --separate-stderr taskmon monitor 999999999
  assert_usage_error "no process with pid 999999999"
  new_run
  run --separate-stderr taskmon monitor nobody 600
  assert_usage_error "'nobody' is neither" "tasks: design, build, check"
  run --separate-stderr taskmon status
  [ "$status" -eq 0 ]
  json_assert 'd["tasks"] == []'
}

@test "parallel-error-handler retries within the tolerance: the run resumes and succeeds" {
  new_run
  run --separate-stderr bash "$SCRIPTS/delegate-parallel.sh" resume --quiet
  [ "$status" -eq 1 ] # build failed once, check was skipped
  run --separate-stderr errhandler handle-task-failure workforce 3 "it broke" --quiet
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["decision"] == "retry" and d["retry"]["run"]["status"] == "succeeded"'
  json_assert 'd["retry"]["retried"][0]["token_budget"] == 6400'
  grep -q "> it broke" "$STATE/runs/$RUN_ID/tasks/build/prompt.md"
  run --separate-stderr errhandler handle-task-failure build nope
  assert_usage_error "EXIT_CODE: expected a whole number, got 'nope'"
}

@test "parallel-task-retry refuses a task that did not fail; the aborter cancels the rest, exits 3, then refuses" {
  new_run
  run --separate-stderr retry retry-reduced design
  assert_usage_error "nothing to retry: task design has not ended with a failure"
  [ ! -e "$STATE/runs/$RUN_ID/state.json" ]

  run --separate-stderr aborter abort-with-partial-results
  [ "$status" -eq 3 ]
  json_assert 'd["aborted"] and d["cancelled"] == ["design", "build", "check"]'
  json_assert 'd["partial_results"]["status"] == "aborted" and d["partial_results"]["succeeded"] == []'
  [[ $stderr == *"0 of 3 task(s) succeeded"* ]]
  # the run has ended: aborting it again is refused
  run --separate-stderr aborter abort-with-partial-results
  [ "$status" -eq 2 ]
  [[ $stderr == *"has ended (aborted)"* ]]
}
