"""A subscription's usage limit, as the `claude` CLI reports it, and when it resets.

The forms seen (in the CLI's own strings and in users' reports; the reset is in the result text,
never in a field of its own):
- `Claude AI usage limit reached|1762952400` (1.0.x: the reset as a Unix time after the bar);
- `Claude usage limit reached. Your limit will reset at 9am (America/Chicago).`;
- `5-hour limit reached ∙ resets 2am`;
- `You've hit your limit · resets 10pm (America/New_York)`, `... · resets Apr 23 at 4pm
  (America/Recife)`, `You've hit your session limit · resets 3:30pm (UTC)`, with `5-hour`,
  `weekly`, `Opus` or `Sonnet limit` for `limit` (2.1.x).
A clock time without a date is the next such time in that zone (the machine's when none is
named); one with a date is that day, this year or the next.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, tzinfo

LIMIT_TEXT = re.compile(
    r"usage limit reached|hit your (?:[\w-]+ )*limit\b|\blimit reached\s*[∙·]|out of usage credits", re.IGNORECASE
)
EPOCH_FORM = re.compile(r"usage limit reached\|(\d{9,11})\b", re.IGNORECASE)
CLOCK_FORM = re.compile(
    r"resets?\s+(?:at\s+)?"
    r"(?:(?P<month>[A-Z][a-z]{2})[a-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm)"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?",
    re.IGNORECASE,
)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def is_usage_limit(text: str) -> bool:
    return bool(LIMIT_TEXT.search(text))


def reset_time(text: str, now: float | None = None) -> float | None:
    """When the limit in TEXT resets (Unix time), or None if it does not say."""
    now = time.time() if now is None else now
    epoch = EPOCH_FORM.search(text)
    if epoch:
        return float(epoch.group(1))
    clock = CLOCK_FORM.search(text)
    if clock is None:
        return None
    zone = _zone(clock.group("zone"))
    hour = int(clock.group("hour")) % 12 + (12 if clock.group("ampm").lower() == "pm" else 0)
    minute = int(clock.group("minute") or 0)
    if hour > 23 or minute > 59:
        return None
    local_now = datetime.fromtimestamp(now, zone)
    if clock.group("month"):
        month_name = clock.group("month")[:3].lower()
        if month_name not in MONTHS:
            return None
        try:
            moment = local_now.replace(
                month=MONTHS.index(month_name) + 1, day=int(clock.group("day")), hour=hour, minute=minute, second=0
            )
        except ValueError:
            return None
        if moment.timestamp() < now - 180 * 86400:
            moment = moment.replace(year=moment.year + 1)
        return moment.timestamp()
    moment = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment.timestamp() <= now:
        moment += timedelta(days=1)
    return moment.timestamp()


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None  # the machine's own
    if name.upper() in ("UTC", "GMT"):
        return UTC  # needs no time zone database
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # read only when a limit names its zone

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
