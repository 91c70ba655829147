#!/usr/bin/env bats
# scripts/delegate-parallel.sh: run, start, status, report, resume, install, Ctrl-C, through bash
# from an unrelated directory, as a user (or the slash command) runs it. Agent tasks go to the
# fake claude CLI (tests/fakes/fake_claude.py), never to the real one.

load helpers

setup() {
  common_setup
  unset AWOC_CLAUDE_BIN FAKE_CLAUDE_LOG_DIR FAKE_CLAUDE_STATE_DIR FAKE_CLAUDE_DIRECTIVES
}

teardown() {
  # never leave a task process behind, even when a test failed half-way
  local pid
  for pid in $(task_processes); do kill -9 "$pid" 2>/dev/null || true; done
  common_teardown
}


# use_fake_claude: AWOC_CLAUDE_BIN is a wrapper around the fake claude; its calls are logged in
# $CALLS/calls.jsonl.
use_fake_claude() {
  mkdir -p "$BATS_TEST_TMPDIR/bin" "$BATS_TEST_TMPDIR/claude-state"
  CALLS=$BATS_TEST_TMPDIR/claude-calls
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$PYTHON" "$REPO/tests/fakes/fake_claude.py" >"$BATS_TEST_TMPDIR/bin/claude"
  chmod +x "$BATS_TEST_TMPDIR/bin/claude"
  export AWOC_CLAUDE_BIN=$BATS_TEST_TMPDIR/bin/claude
  export FAKE_CLAUDE_LOG_DIR=$CALLS
  export FAKE_CLAUDE_STATE_DIR=$BATS_TEST_TMPDIR/claude-state
}

# task_processes: live (not zombie) processes carrying the AWOC_TASK marker of a run in $STATE.
task_processes() {
  local run_id file pid
  [ -d "$STATE/runs" ] || return 0
  for run_id in $(ls "$STATE/runs"); do
    for file in $(grep -l -z -s "^AWOC_TASK=$run_id/" /proc/[0-9]*/environ); do
      pid=${file#/proc/}
      pid=${pid%/environ}
      [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ] || echo "$pid"
    done
  done
}

# The run printed its summary: the exit code wanted, JSON on stdout, report.md where it says.
assert_run_summary() {
  [ "$status" -eq "$1" ] || { echo "status $status, expected $1; stderr: $stderr" >&2; return 1; }
  json_assert 'd["exit_code"] == '"$1"
  REPORT_MD=$(json_eval 'd["report_md"]')
  RUN_ID=$(json_eval 'd["run_id"]')
  [ -f "$REPORT_MD" ]
  [ "$REPORT_MD" = "$STATE/runs/$RUN_ID/report.md" ]
}

# ---- run ----

@test "run: command tasks from a JSON text config succeed: exit 0, the summary, and the report.md path" {
  run --separate-stderr dp run '{"parallel_config": {"max_concurrent": 2}, "tasks": [
    {"task_id": "a", "agent": "qa", "description": "first", "command": ["echo", "hello from a"]},
    {"task_id": "b", "agent": "qa", "description": "second", "command": ["echo", "hello from b"]},
    {"task_id": "c", "agent": "workforce", "description": "after both", "dependencies": ["a", "b"], "command": ["cat"]}]}'
  assert_run_summary 0
  json_assert 'd["status"] == "succeeded" and d["counts"] == {"succeeded": 3}'
  json_assert 'd["execution_summary"]["total_tasks"] == 3 and d["execution_summary"]["completed_successfully"] == 3'
  [[ $stderr == *"report: $REPORT_MD"* ]]
  grep -q '^# delegate-parallel report' "$REPORT_MD"
  grep -q 'hello from a' "$REPORT_MD"
  # c got its dependencies' results in its prompt (cat echoes the prompt back)
  grep -q 'hello from b' "$STATE/runs/$RUN_ID/tasks/c/prompt.md"
  [ -f "$STATE/runs/$RUN_ID/report.json" ]
  [ -f "$STATE/runs/$RUN_ID/results/task_qa_a_result.json" ]
}

@test "run: one failed task within the failure tolerance exits 1 and names the retry command" {
  run --separate-stderr dp run --quiet '{"parallel_config": {"retries": 0, "failure_tolerance": 1}, "tasks": [
    {"task_id": "ok", "agent": "qa", "description": "fine", "command": ["true"]},
    {"task_id": "bad", "agent": "qa", "description": "breaks", "command": ["sh", "-c", "echo broken >&2; exit 7"]}]}'
  assert_run_summary 1
  json_assert 'd["status"] == "finished_with_failures" and d["counts"] == {"succeeded": 1, "failed": 1}'
  json_assert 'd["execution_summary"]["failed_tasks"] == 1'
  [ -z "$stderr" ] # --quiet
  grep -qF "$SCRIPTS/parallel-task-retry.sh retry-reduced bad --run $RUN_ID" "$REPORT_MD"
}

@test "run: failures beyond the tolerance abort with exit 3; the rest is skipped, the partial report written" {
  run --separate-stderr dp run --quiet '{"parallel_config": {"retries": 0, "failure_tolerance": 1}, "tasks": [
    {"task_id": "x", "agent": "qa", "description": "x", "command": ["false"]},
    {"task_id": "y", "agent": "qa", "description": "y", "command": ["false"]},
    {"task_id": "z", "agent": "qa", "description": "z", "dependencies": ["x"], "command": ["true"]}]}'
  assert_run_summary 3
  json_assert 'd["status"] == "aborted" and "failure tolerance exceeded" in d["stop_reason"]'
  json_assert 'd["counts"]["failed"] == 2 and d["counts"].get("succeeded", 0) == 0'
  [ -f "$STATE/runs/$RUN_ID/report.json" ]
}

@test "run: inline agent tasks through the fake claude: two calls, tokens counted in report.json" {
  use_fake_claude
  run --separate-stderr dp run "architect:Design it" "docs-fetcher:Research it"
  assert_run_summary 0
  json_assert 'd["counts"] == {"succeeded": 2} and d["tokens_used"] > 0'
  [ "$(wc -l <"$CALLS/calls.jsonl")" -eq 2 ]
  "$PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["resource_usage"]["total_tokens"] > 0, r["resource_usage"]
assert all(t["tokens_used"] > 0 for t in r["task_results"]), r["task_results"]
calls = [json.loads(l) for l in open(sys.argv[2])]
assert all("-p" in c["argv"] for c in calls)
assert sorted(c["env"]["AWOC_TASK_ID"] for c in calls) == ["architect-1", "docs-fetcher-1"], [c["env"] for c in calls]
' "$STATE/runs/$RUN_ID/report.json" "$CALLS/calls.jsonl"
  grep -q "Design it" "$REPORT_MD"
}

@test "run: task text with \$(...), backticks, quotes and unicode reaches the agent unchanged and runs nothing" {
  use_fake_claude
  local text
  text=$(printf '%s\n%s' \
    "say \"hi\" 'there' \$(touch $BATS_TEST_TMPDIR/pwned) \`touch $BATS_TEST_TMPDIR/pwned2\` ; \${HOME} && echo" \
    "ünïcødé 🚀 | rm -rf nothing > $BATS_TEST_TMPDIR/pwned3")
  run --separate-stderr dp run --quiet "qa:$text"
  assert_run_summary 0
  printf '%s' "$text" >expected
  "$PYTHON" -c '
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1])]
assert len(calls) == 1, calls
expected = open(sys.argv[2], encoding="utf-8").read()
assert expected in calls[0]["prompt"], calls[0]["prompt"]
' "$CALLS/calls.jsonl" expected
  [ ! -e "$BATS_TEST_TMPDIR/pwned" ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned2" ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned3" ]
}

@test "run: bad input exits 2 and writes no state" {
  run --separate-stderr dp run
  assert_bad_input "no tasks given"
  run --separate-stderr dp run "Research it"
  assert_bad_input "Research it: no such config file"
  run --separate-stderr dp run '{"tasks": [{"agent": "qa", "description": "x", "comand": ["true"]}]}'
  assert_bad_input "unknown key 'comand'"
  # an agent task without any claude CLI
  run --separate-stderr env -u AWOC_CLAUDE_BIN PATH=/usr/bin:/bin bash "$SCRIPTS/delegate-parallel.sh" run "architect:x"
  assert_bad_input "need the claude CLI"
}

# ---- status, report, resume, start ----

@test "status and report after a run: JSON status, markdown report, the JSON report" {
  run --separate-stderr dp run --quiet '{"workflow": "demo", "tasks": [
    {"task_id": "a", "agent": "qa", "description": "a", "command": ["echo", "result of a"]}]}'
  assert_run_summary 0
  run --separate-stderr dp status
  [ "$status" -eq 0 ]
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["status"] == "succeeded" and d["executing"] is False'
  json_assert '[(t["task_id"], t["status"]) for t in d["tasks"]] == [("a", "succeeded")]'
  run --separate-stderr dp status "$RUN_ID" --format text
  [ "$status" -eq 0 ]
  [[ $output == "run $RUN_ID: succeeded; 1 succeeded;"* ]]
  run --separate-stderr dp report
  [ "$status" -eq 0 ]
  [[ $output == "# delegate-parallel report"* ]]
  [[ $output == *"result of a"* ]]
  [[ $output == *'```mermaid'* ]]
  run --separate-stderr dp report "$RUN_ID" --format json
  [ "$status" -eq 0 ]
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["execution_summary"]["completed_successfully"] == 1'
  run --separate-stderr dp status 20200101-000000-000000-abcdef
  [ "$status" -eq 2 ]
  [[ $stderr == "error: no run 20200101-000000-000000-abcdef"* ]]
}

@test "resume after a run with a failure: only what did not succeed runs again, then exit 0" {
  local config
  config=$(write_json tasks.json '{"parallel_config": {"retries": 0, "failure_tolerance": 1}, "tasks": [
    {"task_id": "once", "agent": "qa", "description": "x", "command": ["sh", "-c", "echo run >>'"$WORK"'/once.log"]},
    {"task_id": "flaky", "agent": "qa", "description": "y",
     "command": ["sh", "-c", "[ -e '"$WORK"'/flaked ] && echo fine && exit 0; touch '"$WORK"'/flaked; exit 5"]},
    {"task_id": "after", "agent": "qa", "description": "z", "dependencies": ["flaky"], "command": ["true"]}]}')
  run --separate-stderr dp run --quiet "$config"
  assert_run_summary 1
  json_assert 'd["counts"] == {"succeeded": 1, "failed": 1, "skipped": 1}'
  run --separate-stderr dp resume --quiet
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["run_id"] == "'"$RUN_ID"'" and d["counts"] == {"succeeded": 3}'
  [ "$(wc -l <once.log)" -eq 1 ] # the task that succeeded kept its result
  [ "$(ls "$STATE/runs")" = "$RUN_ID" ]
}

@test "start executes a run that validate prepared" {
  run --separate-stderr ptp validate '{"tasks": [
    {"task_id": "a", "agent": "qa", "description": "a", "command": ["echo", "started"]},
    {"task_id": "b", "agent": "qa", "description": "b", "dependencies": ["a"], "command": ["true"]}]}'
  assert_saved_run
  local validated
  validated=$(json_eval 'd["run_id"]')
  run --separate-stderr dp start "$validated" --quiet
  assert_run_summary 0
  [ "$RUN_ID" = "$validated" ]
  json_assert 'd["counts"] == {"succeeded": 2}'
  [ -f "$STATE/runs/$RUN_ID/execution.json" ]
  grep -q started "$REPORT_MD"
}

@test "start, resume, status and report with no run yet exit 2" {
  local sub
  for sub in start resume status report; do
    run --separate-stderr dp "$sub"
    assert_bad_input "no runs yet"
  done
}

# ---- install ----

@test "install into a project: the installed parser validates from that project's root" {
  local project=$BATS_TEST_TMPDIR/project
  mkdir -p "$project"
  run --separate-stderr dp install "$project"
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert '".claude/commands/delegate-parallel.md" in d["written"]'
  json_assert '{".claude/agents/architect.md", ".claude/agents/docs-fetcher.md", ".claude/agents/workforce.md"} <= set(d["written"])'
  [ "$(head -n 1 "$project/.claude/commands/delegate-parallel.md")" = "---" ]
  grep -q '\$ARGUMENTS' "$project/.claude/commands/delegate-parallel.md"
  grep -q '^name: architect' "$project/.claude/agents/architect.md"
  cd "$project"
  run --separate-stderr bash .claude/awoc/parallel-task-parser.sh validate --brief "architect:x"
  [ "$status" -eq 0 ] || { echo "status $status: $stderr" >&2; return 1; }
  json_assert 'd["task_count"] == 1 and d["tasks"][0]["task_id"] == "architect-1"'
  [ -f "$STATE/runs/$(json_eval 'd["run_id"]')/plan.json" ]
  run --separate-stderr bash .claude/awoc/parallel-resource-planner.sh plan-execution --brief
  [ "$status" -eq 0 ]
  json_assert 'd["critical_path"] == ["architect-1"]'
  run --separate-stderr dp install "$BATS_TEST_TMPDIR/nowhere"
  [ "$status" -eq 2 ]
  [[ $stderr == "error: "*"nowhere: not a directory" ]]
}

# ---- Ctrl-C ----

@test "SIGINT to a running run: exit 130, tasks cancelled, the partial report written, no process left" {
  bash "$SCRIPTS/delegate-parallel.sh" run --quiet '{"tasks": [
    {"task_id": "a", "agent": "qa", "description": "a", "command": ["sleep", "97.5"]},
    {"task_id": "b", "agent": "qa", "description": "b", "command": ["sh", "-c", "sleep 97.5; echo done"]},
    {"task_id": "c", "agent": "qa", "description": "c", "dependencies": ["a"], "command": ["true"]}]}' \
    >"$WORK/out.json" 2>"$WORK/err.txt" &
  local pid=$! i running=
  for i in $(seq 100); do
    if [ -f "$STATE/current" ] && [ -f "$STATE/runs/$(cat "$STATE/current")/state.json" ]; then
      running=$("$PYTHON" -c 'import json, sys
try:
    print(sum(t["status"] == "running" for t in json.load(open(sys.argv[1]))["tasks"].values()))
except ValueError:
    print(0)' "$STATE/runs/$(cat "$STATE/current")/state.json")
      [ "$running" = 2 ] && break
    fi
    sleep 0.05
  done
  [ "$running" = 2 ] || { kill -9 "$pid"; echo "the tasks never started: $(cat "$WORK/err.txt")" >&2; return 1; }
  [ -n "$(task_processes)" ]
  [ -n "$(pgrep -f '^sleep 97\.5$')" ]
  kill -INT "$pid"
  local code=0
  wait "$pid" || code=$?
  [ "$code" -eq 130 ] || { echo "exit $code: $(cat "$WORK/err.txt")" >&2; return 1; }
  output=$(cat "$WORK/out.json")
  json_assert 'd["status"] == "interrupted" and d["exit_code"] == 130'
  json_assert 'd["counts"].get("succeeded", 0) == 0 and d["counts"].get("running", 0) == 0'
  RUN_ID=$(json_eval 'd["run_id"]')
  [ -f "$STATE/runs/$RUN_ID/report.md" ]
  # nothing of the run is left: not the sleeps, not the sh around one of them
  [ -z "$(task_processes)" ] || { ps -fp "$(task_processes | tr '\n' ',')" >&2; return 1; }
  [ -z "$(pgrep -f '^sleep 97\.5$')" ]
  run --separate-stderr dp status
  json_assert 'd["status"] == "interrupted" and d["executing"] is False'
}
