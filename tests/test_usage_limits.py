"""Usage limits as the claude CLI words them, and when they reset."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from awoc_scripts.execution.claude_cli import read_outcome
from awoc_scripts.execution.usage_limits import is_usage_limit, reset_time

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()


def at(text: str) -> str:
    moment = reset_time(text, now=NOW)
    assert moment is not None, text
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Claude AI usage limit reached|1796223600", "2026-12-02 15:00"),
        ("You've hit your limit · resets 3pm (UTC)", "2026-12-02 15:00"),
        ("You've hit your session limit · resets 3:30pm (UTC)", "2026-12-02 15:30"),
        ("You've hit your 5-hour limit · resets 10am (UTC)", "2026-12-03 10:00"),  # 10am today has passed
        ("You've hit your weekly limit · resets Dec 5 at 4pm (UTC)", "2026-12-05 16:00"),
        ("You've hit your limit · resets Apr 23 at 4pm (UTC)", "2027-04-23 16:00"),  # April has passed this year
        ("You've hit your limit · resets 12am (UTC)", "2026-12-03 00:00"),
    ],
)
def test_the_reset_is_read_from_each_form(text: str, expected: str) -> None:
    assert is_usage_limit(text)
    assert at(text) == expected


def test_a_named_zone_is_that_zones_clock() -> None:
    pytest.importorskip("zoneinfo").ZoneInfo("America/Chicago")  # the machine's zone database
    assert at("Claude usage limit reached. Your limit will reset at 9am (America/Chicago).") == "2026-12-02 15:00"


def test_a_limit_without_a_reset_or_a_zone_is_still_a_limit() -> None:
    assert is_usage_limit("5-hour limit reached ∙ resets 2am")
    local = reset_time("5-hour limit reached ∙ resets 2am", now=NOW)
    assert local is not None and NOW < local <= NOW + 86400
    assert is_usage_limit("You're out of usage credits") and reset_time("You're out of usage credits") is None


@pytest.mark.parametrize(
    "text",
    ["API Error: Request rejected (429) · rate limited", "API Error: 529 overloaded", "Done: the limit was reached"],
)
def test_rate_limits_and_plain_words_are_not_usage_limits(text: str) -> None:
    assert not is_usage_limit(text)


def test_a_cli_result_with_a_usage_limit_carries_its_reset() -> None:
    line = (
        b'{"type":"result","subtype":"success","is_error":true,"api_error_status":429,'
        b'"result":"Claude AI usage limit reached|1796223600"}'
    )
    outcome = read_outcome(1, line, "")
    assert outcome.usage_limit and outcome.resets_at == 1796223600.0
