#!/usr/bin/env bats
# The seed's own bash flow (/work/shared/seed/delegate-parallel.md, "Execution Flow"), step by
# step through the shims, on a run made by hand: validate, plan-execution, context-monitor
# track, the seed's result files written the way its loop's `echo` writes them, the task
# monitor, the aggregator and the report generator.

load helpers


# The seed's loop body after execute_isolated_task, verbatim: the result file as its echo writes
# it, into .awoc/parallel/results/ of the working directory, named with the shell's $$.
# seed_store_result AGENT TASK_DESC TASK_RESULT EXIT_CODE ACTUAL_TOKENS TASK_DURATION
seed_store_result() {
  local agent=$1 task_desc=$2 task_result=$3 task_exit_code=$4 ACTUAL_TOKENS=$5 TASK_DURATION=$6
  echo "{
            \"agent\": \"$agent\",
            \"task\": \"$task_desc\",
            \"result\": \"$task_result\",
            \"exit_code\": $task_exit_code,
            \"tokens_used\": ${ACTUAL_TOKENS:-0},
            \"duration\": ${TASK_DURATION:-0}
        }" > ".awoc/parallel/results/task_${agent}_$$_result.json"
}

# Steps 1 to 4 of the seed: validate, plan, parallel-start, then each task (in the background,
# as the seed's loop runs them): parallel-task-start, its result file, parallel-task-complete.
# Sets RUN_ID and RESULTS (the results directory).
seed_flow_until_results() {
  run --separate-stderr ptp validate "docs-fetcher:Research API docs" "architect:Design system" "workforce:Setup tests"
  assert_saved_run
  RUN_ID=$(json_eval 'd["run_id"]')
  local PARSED_TASKS=$output

  run --separate-stderr planner plan-execution "${PARSED_TASKS}" "${MAX_PARALLEL:-5}" "${TOTAL_TOKEN_BUDGET:-15000}"
  [ "$status" -eq 0 ] || { echo "plan-execution: status $status: $stderr" >&2; return 1; }
  json_assert '[t["token_budget"] for t in d["tasks"]] == [3333, 5000, 6666]'
  [ -f "$STATE/runs/$RUN_ID/execution.json" ]

  run --separate-stderr ctxmon track parallel-start 3 15000
  [ "$status" -eq 0 ]
  json_assert 'd["event"] == "parallel-start" and d["total_tasks"] == 3 and d["total_token_budget"] == 15000'

  RESULTS=$WORK/.awoc/parallel/results
  mkdir -p "$RESULTS"
  # agent, description, result, exit code, tokens, duration
  local -a tasks=(
    "docs-fetcher|Research API docs|Found the REST docs|0|3000|30"
    "architect|Design system|Three services|0|4500|20"
    "workforce|Setup tests|pytest exploded|1|500|10"
  )
  local task agent task_desc task_result code tokens duration
  local -a pids=()
  for task in "${tasks[@]}"; do
    IFS='|' read -r agent task_desc task_result code tokens duration <<<"$task"
    {
      ctxmon track parallel-task-start ${agent} ${task_desc} >"$WORK/start_$agent.json" || exit 11
      seed_store_result "$agent" "$task_desc" "$task_result" "$code" "$tokens" "$duration" || exit 12
      ctxmon track parallel-task-complete ${agent} ${tokens} >"$WORK/complete_$agent.json" || exit 13
    } &
    pids+=($!)
  done
  local pid
  for pid in "${pids[@]}"; do wait "$pid"; done
  [ "$(ls "$RESULTS" | wc -l)" -eq 3 ]
  [ -f "$RESULTS/task_workforce_$$_result.json" ]
}

# Only the result files of the three tasks (in the results directory RESULTS), on a validated run.
seed_results_only() {
  run --separate-stderr ptp validate "docs-fetcher:Research API docs" "architect:Design system" "workforce:Setup tests"
  assert_saved_run
  RESULTS=$WORK/.awoc/parallel/results
  mkdir -p "$RESULTS"
  seed_store_result docs-fetcher "Research API docs" "Found the REST docs" 0 3000 30
  seed_store_result architect "Design system" "Three services" 0 4500 20
  seed_store_result workforce "Setup tests" "pytest exploded" 1 500 10
}

@test "the seed's flow: track events, result files, aggregate, create-report, context-monitor status" {
  seed_flow_until_results

  # every track call was recorded against the run's task of that agent
  output=$(cat "$WORK/start_architect.json") json_assert 'd["task_id"] == "architect-1" and d["description"] == "Design system"'
  output=$(cat "$WORK/complete_docs-fetcher.json") json_assert 'd["task_id"] == "docs-fetcher-1" and d["tokens"] == 3000'
  [ "$(wc -l <"$STATE/runs/$RUN_ID/events.jsonl")" -eq 7 ]

  # step 6: aggregate the result files
  run --separate-stderr aggregator aggregate "$RESULTS"/task_*_result.json
  [ "$status" -eq 0 ] || { echo "aggregate: status $status: $stderr" >&2; return 1; }
  json_assert 'd["counts"] == {"succeeded": 2, "failed": 1} and d["total_tokens"] == 8000'
  # each result is matched to the run's task with the same agent and description
  json_assert 'sorted(t["task_id"] for t in d["tasks"]) == ["architect-1", "docs-fetcher-1", "workforce-1"]'
  json_assert 'sorted(r["result"] for r in d["results"]) == ["Found the REST docs", "Three services"]'
  json_assert '[(f["task_id"], f["reason"]) for f in d["failures"]] == [("workforce-1", "exit code 1")]'
  json_assert 'd["failures"][0]["retry_command"] == "'"$SCRIPTS"'/parallel-task-retry.sh retry-reduced workforce-1 --run '"$RUN_ID"'"'
  local agg
  agg=$(json_eval 'd["written_to"]')
  [ -f "$agg" ]

  # step 7: the report, as JSON
  run --separate-stderr reporter create-report "$agg" '{"total_token_budget": 15000}'
  [ "$status" -eq 0 ] || { echo "create-report: status $status: $stderr" >&2; return 1; }
  json_assert 'd["execution_summary"]["total_tasks"] == 3'
  json_assert 'd["execution_summary"]["completed_successfully"] == 2 and d["execution_summary"]["failed_tasks"] == 1'
  # the seed's loop starts every task at once: total time is the longest, sequential the sum of
  # what succeeded (the failed task's 10 s were not work done)
  json_assert 'd["execution_summary"]["total_time"] == "30s" and d["execution_summary"]["sequential_estimate"] == "50s"'
  json_assert 'd["execution_summary"]["time_saved"] == "20s" and d["execution_summary"]["efficiency_gain"] == "40%"'
  # no orchestrator ran it: its status comes from the results, not "planned"
  json_assert 'd["status"] == "finished_with_failures"'
  json_assert 'd["resource_usage"]["total_tokens"] == 8000 and d["resource_usage"]["average_per_task"] == 2667'
  json_assert 'd["resource_usage"]["budget_utilization"] == "53%"'
  json_assert '[t["retry_command"] for t in d["task_results"] if t["status"] != "succeeded"] == ["'"$SCRIPTS"'/parallel-task-retry.sh retry-reduced workforce-1 --run '"$RUN_ID"'"]'
  [[ $stderr == "report written to "* ]]

  # as markdown, and as a research report
  run --separate-stderr reporter create-report "$agg" '{"total_token_budget": 15000}' --format markdown
  [ "$status" -eq 0 ]
  [[ $output == "# delegate-parallel report"* ]]
  [[ $output == *"| Tasks | 3 (2 succeeded, 1 failed) |"* ]]
  [[ $output == *'```mermaid'* ]]
  # a timeline even without start times (the seed's loop starts all at once), and no "(planned)"
  [[ $output == *"section architect"* && $output == *"architect-1 (succeeded) :done, 0, "* ]]
  [[ $output == *"(finished_with_failures)"* && $output != *"(planned)"* ]]
  [[ $output == *"Three services"* ]]
  [[ $output == *"\`$SCRIPTS/parallel-task-retry.sh retry-reduced workforce-1 --run $RUN_ID\`"* ]]
  run --separate-stderr reporter create-report "$agg" '{"total_token_budget": 15000}' --format research_report
  [ "$status" -eq 0 ]
  [[ $output == "# Research report"* ]]
  [[ $output == *"## Findings of docs-fetcher"* ]]
  [[ $output == *"### API docs"* ]]
  [[ $output == *"## Findings of architect"* ]]
  [[ $output == *"\`$SCRIPTS/parallel-task-retry.sh retry-reduced workforce-1 --run $RUN_ID\`"* ]]
  [[ $output != *"pytest exploded"* ]] # a failure's output is not a finding

  # context-monitor status: the tokens the track calls reported, against the planned budgets
  run --separate-stderr ctxmon status
  [ "$status" -eq 0 ]
  json_assert 'd["total"]["tokens_used"] == 8000 and d["total"]["token_budget"] == 15000'
  json_assert '{t["task_id"]: t["tokens_used"] for t in d["tasks"]} == {"docs-fetcher-1": 3000, "architect-1": 4500, "workforce-1": 500}'
  json_assert 'd["tracked"]["parallel_task_start"] == 3 and d["tracked"]["parallel_task_complete"] == 3'
  json_assert '[w["task_id"] for w in d["warnings"]] == ["docs-fetcher-1", "architect-1"]' # both at 90%
  [[ $stderr == *"8000 of 15000 tokens used"* ]]
}

@test "the seed's step 6: aggregate \"\${TASK_RESULTS[@]}\" (a result's contents) and an unset variable" {
  seed_results_only
  run --separate-stderr aggregator aggregate "$(cat "$RESULTS/task_architect_$$_result.json")" ""
  [ "$status" -eq 0 ] || { echo "aggregate: status $status: $stderr" >&2; return 1; }
  json_assert 'd["counts"] == {"succeeded": 1} and d["total_tokens"] == 4500'
  json_assert '[r["result"] for r in d["results"]] == ["Three services"]'
  # a directory of results works like the files in it
  run --separate-stderr aggregator aggregate "$RESULTS"
  [ "$status" -eq 0 ]
  json_assert 'd["counts"] == {"succeeded": 2, "failed": 1}'
}

@test "the seed's step 6 with several results' contents keeps each task" {
  seed_results_only
  local -a TASK_RESULTS=("$(cat "$RESULTS/task_architect_$$_result.json")" "$(cat "$RESULTS/task_docs-fetcher_$$_result.json")")
  run --separate-stderr aggregator aggregate "${TASK_RESULTS[@]}"
  [ "$status" -eq 0 ]
  json_assert 'd["counts"] == {"succeeded": 2} and d["total_tokens"] == 7500'
  json_assert 'sorted(t["agent"] for t in d["tasks"]) == ["architect", "docs-fetcher"]'
  json_assert 'sorted(r["result"] for r in d["results"]) == ["Found the REST docs", "Three services"]'
}

@test "the seed's step 5: monitor \"PID PID\" TIMEOUT on two short tasks that end by themselves" {
  # long enough to outlive the monitor's own start-up on a loaded machine (it refuses unknown pids)
  sleep 1.5 &
  local first=$!
  sleep 2 &
  local second=$!
  run --separate-stderr taskmon monitor "$first $second" 5
  [ "$status" -eq 0 ] || { echo "monitor: status $status: $stderr" >&2; return 1; }
  local summary
  summary=$(tail -n 1 <<<"$output")
  output=$summary json_assert 'd["type"] == "summary" and not d["timed_out"] and d["timeout_s"] == 5'
  output=$summary json_assert 'sorted(p["pid"] for p in d["processes"]) == sorted(['"$first, $second"'])'
  output=$summary json_assert 'all(p["ended"] == "exited" for p in d["processes"])'
  [[ $stderr == *"pid $first: exited"* && $stderr == *"pid $second: exited"* ]]
  wait "$first" "$second"
}

@test "the seed's steps with bad input: track and aggregate without a run or with a broken result" {
  run --separate-stderr ctxmon track parallel-start 3 15000
  assert_bad_input "no runs yet"
  mkdir -p results
  printf '{"agent": "qa", "task": "x", "result": "", "exit_code": , "tokens_used": 0}' >results/task_qa_1_result.json
  run --separate-stderr aggregator aggregate results/task_qa_1_result.json
  assert_bad_input "task_qa_1_result.json: malformed JSON"
  run --separate-stderr aggregator aggregate '{"agent": "qa", "exit_code": "1"}'
  assert_bad_input "exit_code: expected an integer"
  run --separate-stderr reporter create-report '{"nothing": 1}'
  assert_bad_input 'expected an aggregate'
}
