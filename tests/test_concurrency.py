"""The run's effective concurrency (AIMD, ramp-up) and the clock of a paused run."""

from __future__ import annotations

from awoc_scripts.execution.concurrency import AdaptiveConcurrency
from awoc_scripts.execution.pause import RunPause


def test_overloads_halve_once_per_episode_and_successes_add_one_slot_per_window() -> None:
    aimd = AdaptiveConcurrency(8, 0.0, started_mono=0.0)
    assert aimd.limit(8, now=0.0) == 8
    cut = aimd.on_overload(attempt_started_mono=1.0, ceiling=8, now=2.0, why="429")
    assert cut is not None and (cut.before, cut.after) == (8, 4)
    # an answer to an attempt sent before that cut does not cut again
    assert aimd.on_overload(attempt_started_mono=1.5, ceiling=8, now=2.1, why="429") is None
    assert aimd.limit(8, now=3.0) == 4
    raises = [aimd.on_success(8) for _ in range(5)]  # about a window's worth of successes: one more slot
    assert [r is not None for r in raises] == [False, False, False, False, True] and aimd.limit(8, now=3.0) == 5
    for i in range(10):
        aimd.on_overload(attempt_started_mono=100.0 + i, ceiling=8, now=100.5 + i, why="429")
    assert aimd.limit(8, now=100.0) == 1 and aimd.lowest == 1  # never under one
    for _ in range(200):
        aimd.on_success(8)
    assert aimd.limit(8, now=100.0) == 8  # never over max_concurrent
    assert aimd.limit(3, now=100.0) == 3  # a lever's lower ceiling holds


def test_ramp_up_spreads_the_first_starts() -> None:
    aimd = AdaptiveConcurrency(9, ramp_up_s=4.0, started_mono=10.0)
    assert [aimd.limit(9, now=10.0 + t) for t in (0, 1, 2, 3, 4, 5)] == [1, 3, 5, 7, 9, 9]


def test_time_paused_is_counted_apart_and_a_pause_only_grows() -> None:
    pause = RunPause()
    assert pause.begin(resets_at=1000.0, now=900.0, now_mono=50.0)
    assert not pause.begin(resets_at=950.0, now=910.0, now_mono=60.0)  # an earlier reset changes nothing
    assert pause.begin(resets_at=1100.0, now=920.0, now_mono=70.0)
    assert not pause.end_if_due(now=1000.0, now_mono=150.0)
    assert pause.paused_s(now_mono=150.0) == 100.0
    assert pause.end_if_due(now=1100.0, now_mono=250.0) and not pause.active
    assert pause.paused_s(now_mono=400.0) == 200.0


def test_a_reset_in_the_past_or_none_pauses_for_the_default() -> None:
    pause = RunPause()
    assert pause.begin(resets_at=100.0, now=500.0, now_mono=0.0, default_s=60.0) and pause.until == 560.0
    other = RunPause()
    assert other.begin(resets_at=None, now=500.0, now_mono=0.0, default_s=60.0) and other.until == 560.0


def test_status_says_how_many_run_at_once_whether_paused_and_how_many_are_warm() -> None:
    from awoc_scripts.state.status_command import status_text

    data = {
        "run_id": "r",
        "status": "paused",
        "executing": True,
        "counts": {"pending": 3},
        "tokens_used": 10,
        "tokens_counted": 10,
        "total_token_budget": 100,
        "cost_usd": 0.25,
        "max_concurrent": 8,
        "effective_concurrency": 3,
        "paused_until": "2026-12-02T15:00:00.000Z",
        "warm_agents": 2,
        "tasks": [],
    }
    line = status_text(data)
    assert "3 at once (of 8: rate limited)" in line and "paused until 2026-12-02T15:00:00.000Z" in line
    assert "2 warm" in line and "$0.2500" in line
    ended = status_text({**data, "executing": False, "paused_until": None})
    assert "at once" not in ended and "warm" not in ended


def test_a_limit_that_never_says_when_it_resets_pauses_a_few_times_then_is_an_error() -> None:
    from awoc_scripts.execution.pause import MAX_BLIND_PAUSES

    pause = RunPause()
    blind = [pause.may_pause(None) for _ in range(MAX_BLIND_PAUSES + 1)]
    assert blind == [True] * MAX_BLIND_PAUSES + [False]
    assert pause.may_pause(1000.0)  # one that names its reset always pauses
    pause.note_success()
    assert pause.may_pause(None)  # a success in between starts the count again


def test_time_paused_does_not_count_toward_the_total_timeout() -> None:
    from awoc_scripts.execution.policies.time_pressure import TimePressure

    class Run:
        started_mono = 0.0

        def __init__(self) -> None:
            self.aborted: list[str] = []
            self.pause = RunPause()
            self.pause.begin(resets_at=2000.0, now=1000.0, now_mono=10.0)  # paused from 10 s on

        def active_elapsed(self, now: float) -> float:
            return now - self.started_mono - self.pause.paused_s(now)

        def abort(self, reason: str, running_status: str) -> None:
            self.aborted.append(reason)

        def pull_lever(self, action: str, args: dict[str, object], why: str) -> None:
            pass

    run = Run()
    policy = TimePressure(total_timeout=60.0, pressure_on=False)
    policy.check(run, now=500.0)  # 500 s since the start, 490 of them paused
    assert run.aborted == []
    run.pause.end_if_due(now=2000.0, now_mono=500.0)
    policy.check(run, now=560.0)  # 70 s executing
    assert run.aborted == ["total timeout of 60 s reached"]
