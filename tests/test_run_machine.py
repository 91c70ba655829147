"""The run loop's rules, through the run machine alone: events in, effects out, no process, no sleep."""

from __future__ import annotations

import orjson
from builders import at, ended, files, machine, of_kind, records, spawned, start_all, task, tick

from awoc_scripts.errors import ABORTED, INTERRUPTED, OK, TASKS_FAILED
from awoc_scripts.execution.attempt_report import Tokens, TurnCounter
from awoc_scripts.execution.machine.events import (
    CacheHit,
    CacheMiss,
    CannotStart,
    LeverAnswered,
    LeverPulled,
    LookUpCache,
    OutputRead,
    Shutdown,
    SignalReceived,
    Start,
    StartFailed,
    Stop,
    TaskEnded,
    VerificationEnded,
    Verify,
)
from awoc_scripts.execution.machine.saved import apply_to_saved, saved_record


def ends(effects: list) -> dict[str, str]:
    return {e.task_id: e.status for e in of_kind(effects, TaskEnded)}


def test_starts_one_at_a_time_in_priority_order_up_to_max_concurrent() -> None:
    m = machine([task("low", priority="low"), task("crit", priority="critical"), task("mid")], max_concurrent=2)
    assert m.handle(tick(0)) == [Start("crit")]
    effects = m.handle(spawned("crit", 0))
    assert records(effects, "task-start")[0]["attempt"] == 1
    assert of_kind(effects, Start) == [Start("mid")]
    assert of_kind(m.handle(spawned("mid", 0)), Start) == []  # two run: the limit
    assert of_kind(m.handle(tick(1)), Start) == []
    assert ends(m.handle(ended("crit", 2))) == {"crit": "succeeded"}
    assert m.handle(tick(2)) == [Start("low")]


def test_a_dependent_waits_and_a_failed_dependency_skips_it() -> None:
    m = machine([task("a", retries=0), task("b", "a"), task("c", "b")])
    assert start_all(m, 0) == ["a"]
    effects = m.handle(ended("a", 5, exit_code=1, error="boom"))
    assert ends(effects) == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert records(effects, "task-end")[1]["reason"] == "dependency a failed"
    skipped = of_kind(effects, TaskEnded)[1]
    assert not skipped.started and skipped.result is None  # it never started: nothing to write
    assert m.ledger.result_of("b", "skipped")["attempts"] == 0
    assert m.finished()


def test_a_failure_retries_with_reduced_scope_and_the_error_quoted() -> None:
    m = machine([task("a", retries=1, token_budget=1000)])
    start_all(m, 0)
    effects = m.handle(ended("a", 3, exit_code=2, error="compile error"))
    assert records(effects, "task-retry") == [
        {"task_id": "a", "attempt": 2, "status": "failed", "error": "compile error", "token_budget": 800}
    ]
    assert m.records["a"].previous_error == "compile error" and m.budget_of("a") == 800
    assert start_all(m, 3) == ["a"]
    effects = m.handle(ended("a", 4, exit_code=2, error="compile error"))
    (end,) = of_kind(effects, TaskEnded)
    assert end.status == "failed" and end.result["attempts"] == 2 and end.result["token_budget"] == 800
    m.handle(Shutdown(at=at(5)))
    assert (m.final, m.exit_code) == ("finished_with_failures", TASKS_FAILED)


def test_calls_whose_sandbox_failed_to_start_retry_the_whole_task_at_its_budget() -> None:
    from awoc_scripts.execution.prompts import compose_prompt

    m = machine([task("a", retries=1, token_budget=1000)])
    start_all(m, 0)
    unrun = [{"tool": "Bash", "input": "make", "error": "bwrap: Can't find source path /r/.git/config.lock"}]
    effects = m.handle(ended("a", 3, unrun=unrun))
    (retry,) = records(effects, "task-retry")
    assert retry["token_budget"] == 1000 and m.budget_of("a") == 1000
    assert retry["error"].startswith(
        "Claude Code's sandbox failed to start 1 tool call(s), which never ran: Bash(make)"
    )
    assert records(effects, "sandbox-failed") == [{"task_id": "a", "attempt": 1, "calls": unrun}]
    previous = m.records["a"].previous_error
    prompt = compose_prompt(
        m.by_id["a"], shared_context="", role=None, token_budget=1000, dependencies=[], previous_error=previous
    )
    assert "do the whole task again" in prompt and "narrower" not in prompt
    assert start_all(m, 3) == ["a"]
    (end,) = of_kind(m.handle(ended("a", 4)), TaskEnded)
    assert end.status == "succeeded" and end.result["token_budget"] == 1000
    assert end.result["warnings"] == [f"attempt 1: {retry['error']}"]


def test_past_the_failure_tolerance_the_run_aborts_and_stops_what_runs() -> None:
    m = machine([task("a", retries=0), task("b", retries=0), task("c")], failure_tolerance=0, max_concurrent=2)
    assert start_all(m, 0) == ["a", "b"]
    effects = m.handle(ended("a", 1, exit_code=1, error="x"))
    assert records(effects, "run-abort")[0]["reason"].startswith("failure tolerance exceeded: 1 tasks failed")
    assert Stop("b") in effects and ends(effects) == {"a": "failed", "c": "cancelled"}
    assert ends(m.handle(ended("b", 2, exit_code=-15, stopped=True))) == {"b": "cancelled"}
    m.handle(Shutdown(at=at(3)))
    assert (m.final, m.exit_code) == ("aborted", ABORTED)


def test_a_task_that_cannot_start_is_skipped_with_what_depends_on_it_and_the_slot_is_used() -> None:
    m = machine([task("a"), task("b", "a"), task("c")], max_concurrent=1)
    assert m.handle(tick(0)) == [Start("a")]
    effects = m.handle(CannotStart("a", "its dependency's branch is gone", at=at(0)))
    assert ends(effects) == {"a": "skipped", "b": "skipped"}
    assert of_kind(effects, Start) == [Start("c")]


def test_a_program_that_cannot_start_fails_without_a_retry() -> None:
    m = machine([task("a", retries=3)])
    m.handle(tick(0))
    effects = m.handle(StartFailed("a", "cannot start 'nope': No such file", at=at(0)))
    (end,) = of_kind(effects, TaskEnded)
    assert end.status == "failed" and not records(effects, "task-retry")
    result = m.ledger.result_of("a", "failed")
    assert result["attempts"] == 1 and "nope" in (result["error"] or "")
    # a program that did not start from an attempt made (its prompt written): the attempt began
    m = machine([task("b", retries=3)])
    m.handle(tick(0))
    (end,) = of_kind(m.handle(StartFailed("b", "cannot start 'nope'", files=files("b"), at=at(0))), TaskEnded)
    assert end.started and end.result is not None and end.result["attempts"] == 1


def test_a_timeout_stops_the_attempt_which_ends_timed_out_and_retries() -> None:
    m = machine([task("a", timeout=10.0, retries=1)])
    start_all(m, 0)
    assert m.handle(tick(9.9)) == []
    effects = m.handle(tick(10))
    assert Stop("a") in effects and records(effects, "task-stop")[0]["status"] == "timed_out"
    assert m.next_moment(10) is None  # being stopped: no deadline to wake for
    effects = m.handle(ended("a", 10.5, exit_code=-15, stopped=True))
    assert records(effects, "task-retry")[0]["status"] == "timed_out"


def turn(message_id: str, prompt: int, output: int, cached: int = 0) -> bytes:
    usage = {"input_tokens": prompt - cached, "cache_read_input_tokens": cached, "output_tokens": output}
    return b'{"type":"assistant","message":{"id":"%s","usage":%s}}\n' % (message_id.encode(), orjson.dumps(usage))


def test_a_stream_over_its_token_budget_is_stopped_budget_exceeded() -> None:
    m = machine([task("a", token_budget=100, retries=0)])
    m.handle(tick(0))
    m.handle(spawned("a", 0, streams=True))
    # the first request's prompt (the CLI's own system prompt and tools, the task) is not the task's
    # spending, however large: only what it writes and adds to its context counts
    assert not of_kind(m.handle(OutputRead("a", turn("m1", 15_000, 5, cached=14_000), at=at(1))), Stop)
    assert not of_kind(m.handle(OutputRead("a", turn("m2", 15_060, 5, cached=15_000), at=at(2))), Stop)
    effects = m.handle(OutputRead("a", turn("m3", 15_120, 5, cached=15_060), at=at(3)))  # 120 added + 15 written
    expected = "used 135 tokens of its own (what it wrote and added to its context), over its budget of 100"
    assert Stop("a") in effects and m.records["a"].error == expected
    assert ends(m.handle(ended("a", 4, exit_code=-15, stopped=True))) == {"a": "budget_exceeded"}


def test_what_counts_against_a_budget_leaves_out_each_conversations_first_prompt() -> None:
    counter = TurnCounter()
    counter.feed(turn("m1", 10_000, 40) + turn("m1", 10_000, 40))  # one message, a line per content block
    assert counter.counted() == 40 and counter.total().total == 10_040
    sub = b'{"type":"assistant","parent_tool_use_id":"t1","message":{"id":"s1","usage":{"input_tokens":3000}}}\n'
    sub2 = b'{"type":"assistant","parent_tool_use_id":"t1","message":{"id":"s2","usage":{"input_tokens":3500}}}\n'
    counter.feed(sub + turn("m2", 10_300, 60) + sub2)
    assert counter.counted() == 300 + 500 + 100  # the agent's growth, the subagent's, what was written
    assert counter.counted(output=250) == 300 + 500 + 250  # the final report knows the answers' full size


def test_levers_cancel_reduce_and_serialize_what_has_not_started() -> None:
    tasks = [task("run", priority="critical"), task("hi", priority="high"), task("lo", priority="low")]
    m = machine(tasks, max_concurrent=1)
    start_all(m, 0)
    effects = m.handle(LeverPulled("reduce-remaining-tasks", {"percent": 50}, request_id="r1", at=at(1)))
    (answer,) = of_kind(effects, LeverAnswered)
    assert answer.request_id == "r1" and [t["token_budget"] for t in answer.changed["tasks"]] == [500, 500]
    effects = m.handle(LeverPulled("emergency-prioritization", {}, at=at(2)))
    assert ends(effects) == {"lo": "cancelled"}
    assert of_kind(effects, LeverAnswered)[0].changed["kept"] == ["hi"]
    m.handle(LeverPulled("convert-remaining-tasks", {}, at=at(3)))
    assert m.max_concurrent == 1 and m.dirty
    effects = m.handle(LeverPulled("no-such-lever", {}, request_id="r9", at=at(4)))
    assert of_kind(effects, LeverAnswered)[0].changed == {"error": "unknown lever 'no-such-lever'"}


def test_a_retry_lever_reopens_a_failed_task_and_what_was_skipped_for_it() -> None:
    m = machine([task("a", retries=0), task("b", "a")])
    start_all(m, 0)
    m.handle(ended("a", 1, exit_code=1, error="flaky"))
    assert m.status_of("b") == "skipped"
    effects = m.handle(LeverPulled("retry", {"task_ids": ["a"]}, at=at(2)))
    assert of_kind(effects, LeverAnswered)[0].changed["reopened_dependents"] == ["b"]
    assert m.status_of("a") == m.status_of("b") == "pending" and m.records["a"].previous_error == "flaky"
    assert start_all(m, 2) == ["a"]


def test_an_abort_lever_stops_the_run_and_a_second_one_says_it_is_already_stopping() -> None:
    m = machine([task("a"), task("b")], max_concurrent=1)
    start_all(m, 0)
    effects = m.handle(LeverPulled("abort", {"reason": "enough"}, at=at(1)))
    assert of_kind(effects, LeverAnswered)[0].changed == {
        "aborted": True,
        "reason": "enough",
        "cancelled": ["b"],
        "were_running": ["a"],
    }
    assert Stop("a") in effects and m.ending()  # every task in flight is being stopped: no flush before the end
    effects = m.handle(LeverPulled("abort", {}, at=at(2)))
    assert of_kind(effects, LeverAnswered)[0].changed["aborted"] is False


def test_a_usage_limit_pauses_the_run_until_it_resets_and_the_attempts_do_not_count() -> None:
    m = machine([task("a"), task("b"), task("c")], max_concurrent=2)
    start_all(m, 0)
    resets = at(0).wall + 600
    effects = m.handle(ended("a", 10, exit_code=1, ok=False, usage_limit=True, resets_at=resets, error="limit"))
    assert Stop("b") in effects and records(effects, "run-paused")[0]["reset_given"] is True
    m.handle(ended("b", 11, exit_code=-15, stopped=True))
    assert m.records["a"].attempts == 0 and m.records["b"].attempts == 0
    assert m.handle(tick(300)) == [] and m.pause.active
    effects = m.handle(tick(600))
    assert records(effects, "run-resumed") and of_kind(effects, Start)
    assert m.active_elapsed(600) == 10  # the pause does not count toward total_timeout


def test_a_rate_limit_halves_the_concurrency_and_the_task_waits_with_backoff() -> None:
    m = machine([task(name) for name in "abcdef"], max_concurrent=4)
    assert start_all(m, 0) == ["a", "b", "c", "d"]
    effects = m.handle(ended("a", 1, exit_code=1, ok=False, transient=True, error="429 rate limited"))
    assert records(effects, "concurrency-change")[0] | {"why": ""} == {"before": 4, "after": 2, "why": ""}
    assert records(effects, "task-rate-limited")[0]["wait_s"] == 2.0
    assert m.records["a"].attempts == 0 and m.limit(1) == 2
    assert m.handle(tick(1.5)) == []  # three still run, over the new limit of two
    m.handle(ended("b", 2), ended("c", 2))
    assert start_all(m, 2.5) == ["e"]  # a waits until 3
    m.handle(ended("d", 2.6), ended("e", 2.7))
    assert start_all(m, 3) == ["a", "f"]


def test_a_task_refused_past_its_last_wait_says_so_and_retries_whole_at_its_budget() -> None:
    from awoc_scripts.execution.prompts import compose_prompt
    from awoc_scripts.execution.retries import MAX_TRANSIENT_WAITS

    m = machine([task("a", retries=1, token_budget=1000)])
    now = 0.0
    assert start_all(m, now) == ["a"]
    for _ in range(MAX_TRANSIENT_WAITS):
        now += 1
        effects = m.handle(ended("a", now, exit_code=1, ok=False, transient=True, error="529 Overloaded"))
        assert records(effects, "task-rate-limited") and m.records["a"].attempts == 0
        now += 60
        assert start_all(m, now) == ["a"]
    effects = m.handle(ended("a", now + 1, exit_code=1, ok=False, transient=True, error="529 Overloaded"))
    (retry,) = records(effects, "task-retry")
    expected = f"The provider kept refusing its requests after {MAX_TRANSIENT_WAITS} waits, as many as a task gets"
    assert retry["error"] == f"{expected}: 529 Overloaded"
    assert retry["token_budget"] == 1000 and m.budget_of("a") == 1000
    previous = m.records["a"].previous_error
    prompt = compose_prompt(
        m.by_id["a"], shared_context="", role=None, token_budget=1000, dependencies=[], previous_error=previous
    )
    assert "do the whole task again" in prompt and "narrower" not in prompt
    assert start_all(m, now + 1) == ["a"]  # still out of waits: the next refusal ends it
    effects = m.handle(ended("a", now + 2, exit_code=1, ok=False, transient=True, error="429 rate limited"))
    assert ends(effects) == {"a": "failed"}
    assert m.records["a"].error == f"{expected}: 429 rate limited"


def test_time_pressure_cancels_low_priority_work_then_the_total_timeout_aborts() -> None:
    m = machine([task("a", priority="high", timeout=1000.0), task("b", "a", priority="low")], total_timeout=100)
    start_all(m, 0)
    effects = m.handle(tick(80))
    assert ends(effects) == {"b": "cancelled"} and records(effects, "lever")[0]["action"] == "emergency-prioritization"
    effects = m.handle(tick(100))
    assert Stop("a") in effects and m.stop_reason == "total timeout of 100 s reached"
    assert ends(m.handle(ended("a", 101, exit_code=-15, stopped=True))) == {"a": "timed_out"}


def test_the_token_budget_spent_nothing_new_starts_and_past_80_percent_budgets_are_cut() -> None:
    tasks = [task("a", token_budget=500), task("b", "a", token_budget=500), task("c", "b", token_budget=500)]
    m = machine(tasks, total_token_budget=1000)
    start_all(m, 0)
    effects = m.handle(ended("a", 1, tokens=Tokens(input=850)))
    assert records(effects, "lever")[0]["action"] == "reduce-remaining-tasks" and m.budget_of("b") == 400
    start_all(m, 1)
    effects = m.handle(ended("b", 2, tokens=Tokens(input=200)))
    assert records(effects, "token-budget-exhausted") and ends(effects) == {"b": "succeeded", "c": "cancelled"}
    assert m.finished()


def test_a_budget_spent_by_the_last_tasks_aborts_nothing_and_the_run_succeeds() -> None:
    m = machine([task("a"), task("b")], total_token_budget=1000, max_concurrent=2)
    start_all(m, 0)
    m.handle(ended("a", 1, tokens=Tokens(input=600)))
    effects = m.handle(ended("b", 2, tokens=Tokens(input=600)))
    assert records(effects, "token-budget-exhausted") and ends(effects) == {"b": "succeeded"}
    assert m.finished()
    m.handle(Shutdown(at=at(3)))
    assert (m.final, m.exit_code) == ("succeeded", OK)  # every task did its work: nothing was aborted


def test_memory_pressure_runs_the_rest_one_at_a_time_and_requeues_the_youngest() -> None:
    m = machine([task(name) for name in "abc"], max_concurrent=3, min_free_memory_mb=400)
    m.handle(tick(0))
    m.handle(spawned("a", 0))
    m.handle(spawned("b", 1))
    m.handle(spawned("c", 2))
    effects = m.handle(tick(3, free_memory_mb=150))
    assert m.max_concurrent == 1 and Stop("c") in effects
    effects = m.handle(ended("c", 4, exit_code=-9, stopped=True))
    assert records(effects, "task-requeued") == [{"task_id": "c", "reason": "low memory"}]
    assert m.records["c"].attempts == 0 and m.status_of("c") == "pending"


def test_money_spent_stops_new_starts() -> None:
    m = machine([task("a"), task("b", "a")], total_cost_budget_usd=1.0)
    start_all(m, 0)
    effects = m.handle(ended("a", 1, cost_usd=1.0))
    assert records(effects, "cost-budget-exhausted") and ends(effects) == {"a": "succeeded", "b": "cancelled"}


def test_a_run_that_stops_starting_is_not_ending_while_its_running_tasks_finish() -> None:
    m = machine([task("a"), task("x"), task("b", "a")], total_cost_budget_usd=1.0, max_concurrent=2)
    assert start_all(m, 0) == ["a", "x"] and not m.ending()
    effects = m.handle(ended("a", 1, cost_usd=1.0))
    assert records(effects, "cost-budget-exhausted") and not of_kind(effects, Stop)
    assert m.stop_reason is not None and not m.ending()  # x runs on: state.json keeps being written
    m.handle(ended("x", 2))
    assert m.finished()


def test_a_verification_runs_after_success_and_a_failed_one_is_retried_with_its_output() -> None:
    m = machine([task("a", verify=["make", "check"], verify_timeout=30.0, retries=1)])
    start_all(m, 0)
    effects = m.handle(ended("a", 1))
    assert Verify("a") in effects and m.verifying("a") and not of_kind(effects, TaskEnded)
    effects = m.handle(VerificationEnded("a", 2, False, "1 test failed\n", at=at(3)))
    assert records(effects, "task-verified") == [{"task_id": "a", "passed": False, "exit_code": 2}]
    assert "`make check` exited 2" in (m.records["a"].previous_error or "")
    start_all(m, 3)
    m.handle(ended("a", 4))
    (end,) = of_kind(m.handle(VerificationEnded("a", 0, False, "ok", at=at(5))), TaskEnded)
    assert end.status == "succeeded" and end.result["verify"]["passed"] and end.result["attempts"] == 2


def test_a_cached_result_ends_the_task_unstarted_and_a_miss_starts_it() -> None:
    m = machine([task("a"), task("b")], cache=True, max_concurrent=1)
    assert m.handle(tick(0)) == [LookUpCache("a")]
    cached = {"result": "from before", "exit_code": 0, "tokens_used": {"total": 70}, "cost_usd": 0.5}
    effects = m.handle(CacheHit("a", "run-0", cached, at=at(1)))
    (end,) = of_kind(effects, TaskEnded)
    assert end.result["cached_from"] == "run-0" and end.result["saved"] == {"tokens": 70, "cost_usd": 0.5}
    assert end.result["attempts"] == 0 and end.cache_key is None
    assert of_kind(effects, LookUpCache) == [LookUpCache("b")]
    effects = m.handle(CacheMiss("b", "key-b", "tree 123", at=at(1)))
    assert effects[-1] == Start("b") and records(effects, "task-cache-miss")[0]["key"] == "key-b"
    m.handle(spawned("b", 1))
    (end,) = of_kind(m.handle(ended("b", 2)), TaskEnded)
    assert end.cache_key == "key-b"  # a success this run produced is stored


def test_ctrl_c_stops_what_runs_cancels_the_rest_and_the_run_is_interrupted() -> None:
    m = machine([task("a"), task("b")], max_concurrent=1)
    start_all(m, 0)
    effects = m.handle(SignalReceived("SIGINT", at=at(1)))
    assert Stop("a") in effects and ends(effects) == {"b": "cancelled"}
    m.handle(ended("a", 2, exit_code=-15, stopped=True))
    m.handle(Shutdown(at=at(3)))
    assert (m.final, m.exit_code) == ("interrupted", INTERRUPTED)


def test_a_task_that_ended_by_itself_before_its_stop_reached_it_keeps_its_end() -> None:
    """Its process had exited when the stop came (the executor says it was not stopped): taken for a
    cancelled task, finished work would run again on resume."""
    m = machine([task("a"), task("b")], max_concurrent=2)
    start_all(m, 0)
    effects = m.handle(SignalReceived("SIGINT", at=at(1)))
    assert Stop("a") in effects and Stop("b") in effects
    assert ends(m.handle(ended("a", 1))) == {"a": "succeeded"}
    assert ends(m.handle(ended("b", 1, exit_code=-15, stopped=True))) == {"b": "cancelled"}
    m.handle(Shutdown(at=at(2)))
    assert (m.final, m.exit_code) == ("interrupted", INTERRUPTED)
    assert m.ledger.result_of("a", "succeeded")["error"] is None


def test_a_stop_that_came_too_late_neither_requeues_nor_times_out_a_finished_task() -> None:
    m = machine([task("a", timeout=10.0), task("b"), task("c")], max_concurrent=3, min_free_memory_mb=400)
    m.handle(tick(0))
    for i, tid in enumerate("abc"):
        m.handle(spawned(tid, i))
    assert Stop("c") in m.handle(tick(3, free_memory_mb=150))  # the youngest makes room
    assert Stop("a") in m.handle(tick(10))  # past its deadline
    assert ends(m.handle(ended("a", 10.1), ended("c", 10.1))) == {"a": "succeeded", "c": "succeeded"}
    assert m.records["c"].attempts == 1 and not m.records["a"].stop_status


def test_a_task_to_verify_that_ended_as_the_run_stopped_is_not_verified_now() -> None:
    m = machine([task("a", verify=["make", "check"]), task("b", timeout=5.0, verify=["make", "check"])])
    start_all(m, 0)
    assert Stop("b") in m.handle(tick(5))
    effects = m.handle(ended("b", 5.1))  # ended by itself after all: its check runs, with its own deadline
    assert Verify("b") in effects and m.next_moment(5.1) is not None
    m.handle(SignalReceived("SIGINT", at=at(6)))
    effects = m.handle(ended("a", 6))
    assert not of_kind(effects, Verify) and ends(effects) == {"a": "cancelled"}
    assert "its verification could not run" in (m.records["a"].error or "")


def test_a_start_asked_but_not_made_is_withdrawn_by_a_signal() -> None:
    m = machine([task("a")])
    assert m.handle(tick(0)) == [Start("a")]
    m.handle(SignalReceived("SIGTERM", at=at(0)))
    assert "a" not in m.starting and m.status_of("a") == "cancelled"


def test_every_task_succeeded_is_the_only_succeeded_run() -> None:
    m = machine([task("a"), task("b")])
    start_all(m, 0)
    m.handle(ended("a", 1), ended("b", 1))
    assert m.finished()
    m.handle(Shutdown(at=at(2)))
    assert (m.final, m.exit_code) == ("succeeded", OK)


def test_a_lever_on_a_saved_run_changes_only_what_it_decides() -> None:
    plan = {"run_id": "r", "parallel_config": {"max_concurrent": 3, "batch_token_limit": 9, "total_token_budget": 9}}
    plan |= {"tasks": [task("a", priority="high", index=0), task("b", "a", priority="low", index=1)]}
    state = {"max_concurrent": 3, "tasks": {t: {"status": "pending", "token_budget": 100} for t in "ab"}}
    plan["parallel_config"] |= {"failure_tolerance": 1, "total_timeout": 60}
    apply_to_saved("r", plan, state, LeverPulled("emergency-prioritization", {}, at=at(0)))
    assert state["tasks"]["b"] == {
        "status": "cancelled",
        "token_budget": 100,
        "reason": "cancelled by emergency prioritization",
    }
    assert state["tasks"]["a"] == {"status": "pending", "token_budget": 100}
    apply_to_saved("r", plan, state, LeverPulled("convert-remaining-tasks", {}, at=at(0)))
    assert state["max_concurrent"] == 1


def test_a_saved_task_keeps_what_counted_against_its_budget() -> None:
    used = {"input": 800, "output": 100, "cache_read": 0, "cache_creation": 0, "total": 900}
    assert (
        saved_record({"status": "succeeded", "token_budget": 100, "tokens_used": used, "tokens_counted": 50}).counted
        == 50
    )
    assert (
        saved_record({"status": "succeeded", "token_budget": 100, "tokens_used": used}).counted == 900
    )  # an older run


def test_what_state_json_shows_is_dirty_after_a_change_and_clean_after_a_quiet_tick() -> None:
    m = machine([task("a")])
    m.flushed()
    assert m.handle(tick(1)) == [Start("a")] and m.dirty  # a tick that started something
    m.flushed()
    m.handle(spawned("a", 1))
    assert m.dirty  # any other event
    m.flushed()
    assert m.handle(tick(2)) == [] and not m.dirty  # nothing happened
