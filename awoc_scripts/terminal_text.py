"""Text from tasks, made safe to show: a task's output may hold terminal escape sequences (a
screen clear, a window title), NUL bytes or other control characters, which must never reach a
terminal or a report as they are."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, the C1 controls (U+0080..U+009F, which some terminals obey),
# and the line and paragraph separators (they would split one line of a message in two)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def shown_safely(text: str) -> str:
    """TEXT with every control character other than newline and tab written as `\\xNN`."""
    return _CONTROLS.sub(_escaped, text)
