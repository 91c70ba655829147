"""What an ended attempt means for its task and the run: retry, wait, requeue, verify, or end.

Part of the run machine (machine.py), kept apart so that each reads in one sitting. Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awoc_scripts.errors import ABORTED, INTERRUPTED
from awoc_scripts.execution.attempt_report import describe_denials
from awoc_scripts.execution.machine.events import (
    AttemptEnded,
    Crashed,
    Failed,
    Moment,
    Shutdown,
    VerificationEnded,
    Verify,
)
from awoc_scripts.execution.outcomes import REQUEUE, WAIT, judge
from awoc_scripts.execution.prompts import NOT_ITS_FAULT, PROVIDER_REFUSED
from awoc_scripts.execution.retries import reduced_budget
from awoc_scripts.state.statuses import (
    CANCELLED,
    FAILED,
    FAILURES,
    PENDING,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    final_status,
)
from awoc_scripts.state.store import iso_of

if TYPE_CHECKING:
    from awoc_scripts.execution.machine.machine import RunMachine
    from awoc_scripts.run_documents import LeverAnswer

__all__ = ["REQUEUE", "abort_saved", "attempt_ended", "crashed", "end_task", "failed_elsewhere", "iso", "shutdown"]


def iso(at: Moment) -> str:
    return iso_of(at.wall)


def attempt_ended(m: RunMachine, event: AttemptEnded) -> None:
    tid, rec, outcome = event.task_id, m.records[event.task_id], event.outcome
    m.in_flight.pop(tid, None)
    # it ended by itself before a stop reached it: that end is its own, judged as any other (a
    # finished task taken for a stopped one would run again)
    stop_came_late = not event.stopped and rec.stop_status is not None
    if stop_came_late:
        rec.stop_status = None
    rec.absorb(event.exit_code, outcome, event.tokens, event.counted)
    if outcome.denials:
        m.events.add("permission-denied", task_id=tid, attempt=rec.attempts, denials=outcome.denials[:20])
        m.display.note(f"{tid}: permission denied: {describe_denials(outcome.denials)}")
    if outcome.unrun:
        m.events.add("sandbox-failed", task_id=tid, attempt=rec.attempts, calls=outcome.unrun[:20])
        m.display.note(f"{tid}: its sandbox failed to start {describe_denials(outcome.unrun)}")
    m.ledger.spent += event.counted
    m.ledger.cost_spent += float(outcome.cost_usd or 0)
    if outcome.usage_limit and not event.stopped and m.stop_reason is None and m.pause.may_pause(outcome.resets_at):
        _usage_limited(m, tid, outcome.resets_at, outcome.error or "usage limit reached")
    else:
        _judged(m, event, stop_came_late)
    if m.stop_reason is None:  # before anything new starts
        m.token_policy.check(m, event.at.now)
        m.cost_policy.check(m, event.at.now)


def _judged(m: RunMachine, event: AttemptEnded, stop_came_late: bool) -> None:
    tid, rec, outcome, now = event.task_id, m.records[event.task_id], event.outcome, event.at.now
    may_wait = m.waits.can_wait(rec.transient_waits) and not m.stop_reason
    verdict = judge(event.stopped, rec, outcome, event.counted, may_wait)
    if verdict == FAILED and outcome.transient and not may_wait and not m.stop_reason:  # out of waits
        rec.error = f"{PROVIDER_REFUSED} after {rec.transient_waits} waits, as many as a task gets: {rec.error}"
    if verdict == SUCCEEDED and m.by_id[tid].get("verify"):
        if stop_came_late and m.stop_reason is not None:  # the run is stopping everything: no check starts now
            rec.error = f"{m.stop_reason}: it ended, but its verification could not run"
            end_task(m, tid, CANCELLED, allow_retry=False)
            return
        _start_verification(m, tid, now)  # it succeeds once its verification passes
        return
    if outcome.transient and not event.stopped:
        why = f"{tid}: {(outcome.error or 'rate limited')[:200]}"
        _concurrency_changed(m, m.concurrency.on_overload(rec.start_mono or 0.0, m.max_concurrent, now, why))
    elif verdict == SUCCEEDED:
        _concurrency_changed(m, m.concurrency.on_success(m.max_concurrent))
        m.pause.note_success()
    if verdict == REQUEUE:
        m.uncount(tid)
        m.scheduler.requeue(tid)
        m.events.add("task-requeued", task_id=tid, reason=m.requeue_why.pop(tid, "requeued"))
    elif verdict == WAIT:
        m.uncount(tid)
        delay = m.waits.wait(tid, rec.transient_waits, now)
        rec.transient_waits += 1
        m.events.add("task-rate-limited", task_id=tid, wait_s=delay, error=(rec.error or "rate limited")[:500])
        m.display.note(f"{tid}: rate limited, retrying in {delay:g} s")
    else:
        end_task(m, tid, verdict, allow_retry=m.stop_reason is None)


def _start_verification(m: RunMachine, tid: str, now: float) -> None:
    task, rec = m.by_id[tid], m.records[tid]
    rec.verifying_since = now
    rec.deadline = now + float(task.get("verify_timeout") or 600)
    rec.stream = None
    m.in_flight[tid] = None
    m.out.append(Verify(tid))
    m.events.add("task-verify", task_id=tid, attempt=rec.attempts, command=list(task.get("verify") or []))
    m.display.note(f"{tid}: verifying")


def verification_ended(m: RunMachine, event: VerificationEnded) -> None:
    from awoc_scripts.execution.verification import failure_reason, verification_record  # only when verifying

    tid = event.task_id
    task, rec = m.by_id[tid], m.records[tid]
    started = rec.verifying_since if rec.verifying_since is not None else event.at.now
    rec.verifying_since, rec.deadline = None, None
    m.in_flight.pop(tid, None)
    timed_out = event.stopped and rec.stop_status == TIMED_OUT
    exit_code = None if timed_out else event.exit_code
    rec.verify = verification_record(task, exit_code, event.output, event.at.now - started)
    m.events.add("task-verified", task_id=tid, passed=rec.verify["passed"], exit_code=exit_code)
    if event.stopped and not timed_out and rec.stop_status:  # cancelled, requeued...: as any stopped attempt
        if rec.stop_status == REQUEUE:
            m.uncount(tid)
            m.scheduler.requeue(tid)
            return
        end_task(m, tid, rec.stop_status, allow_retry=False)
        return
    if rec.verify["passed"]:
        end_task(m, tid, SUCCEEDED, allow_retry=False)
        return
    rec.stop_status = None
    rec.error = failure_reason(rec.verify, float(task.get("verify_timeout") or 600))
    end_task(m, tid, FAILED, allow_retry=m.stop_reason is None)


def _usage_limited(m: RunMachine, tid: str, resets_at: float | None, error: str) -> None:
    """The provider's usage limit: the whole run pauses until it resets. This attempt and
    those stopped for the pause run again and do not count."""
    rec = m.records[tid]
    m.uncount(tid)
    rec.error = error
    m.scheduler.requeue(tid)
    if not m.pause.begin(resets_at, m.at.wall, m.at.now, m.settings.usage_limit_pause_s):
        return
    for other in m.running():
        if not m.records[other].stop_status:
            m.requeue(other, "usage limit: the run is paused")
    until = m.pause.until_iso()
    m.events.add("run-paused", until=until, task_id=tid, reason=error[:500], reset_given=resets_at is not None)
    m.display.note(f"usage limit reached: paused until {until}")


def _concurrency_changed(m: RunMachine, change: Any) -> None:
    if change is None:
        return
    m.events.add("concurrency-change", before=change.before, after=change.after, why=change.why)
    if change.after < change.before:
        m.display.note(f"rate limited: at most {change.after} at once now (was {change.before})")


def end_task(m: RunMachine, tid: str, status: str, allow_retry: bool) -> None:
    """The attempt ended with STATUS: the task retries with reduced scope, or ends."""
    rec = m.records[tid]
    money_left = rec.cost_left()
    if money_left is not None and money_left <= 0:
        allow_retry = False  # another attempt could only spend more than the task may
    if status in FAILURES and allow_retry and rec.attempts <= int(m.by_id[tid]["retries"]):
        rec.previous_error = rec.error or status
        whole = rec.previous_error.startswith(NOT_ITS_FAULT)  # its scope and budget stay
        if not whole:
            m.ledger.set_budget(tid, reduced_budget(rec.budget))
        m.events.add(
            "task-retry",
            task_id=tid,
            attempt=rec.attempts + 1,
            status=status,
            error=(rec.error or "")[:500],
            token_budget=rec.budget,
        )
        m.display.note(f"{tid}: {status}, retrying" + ("" if whole else " with reduced scope"))
        m.scheduler.requeue(tid)
        return
    m.ledger.finish(tid, status)
    if m.ledger.failed_count > m.settings.failure_tolerance and m.stop_reason is None:
        failed, tolerated = m.ledger.failed_count, m.settings.failure_tolerance
        m.abort(f"failure tolerance exceeded: {failed} tasks failed, {tolerated} tolerated", CANCELLED)


def abort_saved(m: RunMachine, reason: str) -> LeverAnswer:
    """The aborter on a run nobody executes: every task not ended is cancelled."""
    open_tasks = [tid for tid, status in m.saved_status.items() if status not in TERMINAL]
    if not open_tasks:
        return {"aborted": False, "why": f"every task had ended (run {m.saved_run_status})", "cancelled": []}
    was_running = [tid for tid in open_tasks if m.saved_status[tid] != PENDING]
    m.stop_reason = reason
    for tid in open_tasks:
        m.ledger.finalize(tid, CANCELLED, reason=reason)
        m.scheduler.status[tid] = CANCELLED
        m.scheduler.reason[tid] = reason
    return {"aborted": True, "reason": reason, "cancelled": open_tasks, "were_running": was_running}


def failed_elsewhere(m: RunMachine, event: Failed) -> None:
    """A saved run's task reported failed by parallel-error-handler."""
    rec = m.records[event.task_id]
    rec.error, rec.exit_code, rec.reason = event.error, event.exit_code, None
    m.ledger.finish(event.task_id, FAILED)
    rec.finished_at = iso(event.at)


def crashed(m: RunMachine, event: Crashed) -> None:
    m.stop_reason = m.stop_reason or event.reason
    m.exit_code = INTERRUPTED if event.interrupted else ABORTED


def shutdown(m: RunMachine, event: Shutdown) -> None:
    """Every process is gone: what was still running ends as it was being stopped (else
    cancelled), what never started is cancelled, and the run's status follows from its tasks."""
    leftover = m.running()  # stopped by the shutdown: nobody reported their end
    m.in_flight.clear()
    m.starting.clear()
    for tid in leftover:
        stopped_as = m.records[tid].stop_status
        end_task(m, tid, stopped_as if stopped_as in TERMINAL else CANCELLED, allow_retry=False)
    m.ledger.cancel(m.ledger.pending(), m.stop_reason or "run ended")
    m.ledger.close_unfinished(m.stop_reason)
    m.final, m.exit_code = final_status(m.exit_code, m.ledger.status.values())
