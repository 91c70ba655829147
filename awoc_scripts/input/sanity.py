"""What no config may hold, checked before the schema (whose tools fail on it rather than report it).

Nesting deeper than any config needs (jsonschema and the problem renderer recurse), integers past
64 bits (orjson cannot write them back), numbers that are not finite, and strings that cannot
reach an argv, an environment or a path: a NUL character, or text that is not valid UTF-8
(command-line bytes decoded with surrogate escapes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 32
INT_LIMIT = 2**63 - 1
MAX_PROBLEMS = 20


def sanity_problems(document: Any) -> list[tuple[list[Any], str]]:
    """(path parts, message) for each value no config may hold; [] when there is none."""
    if _clean(document, 0):
        return []  # the common case, without building a path for every value
    return _problems(document)


def _problems(document: Any) -> list[tuple[list[Any], str]]:
    """The walk that names each problem's place (slower: a path for every value)."""
    problems: list[tuple[list[Any], str]] = []
    stack: list[tuple[Any, list[Any]]] = [(document, [])]
    while stack and len(problems) < MAX_PROBLEMS:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            problems.append((path[:MAX_DEPTH], f"nested deeper than {MAX_DEPTH} levels"))
            continue
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if isinstance(key, str) and (why := _bad_text(key)):
                    problems.append((path, f"a key {why}"))
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, i]) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            if why := _bad_text(value):
                problems.append((path, why))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -INT_LIMIT <= value <= INT_LIMIT:
                problems.append((path, "an integer out of range (more than 64 bits)"))
        elif isinstance(value, float):
            if not math.isfinite(value):
                problems.append((path, "a number that is not finite"))
            elif abs(value) > INT_LIMIT:
                problems.append((path, "a number out of range (past 64-bit integers)"))
    return problems


def _clean(value: Any, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is dict:
        return _texts_clean(value) and _all_clean(value.values(), depth + 1)
    if kind is list:
        return _texts_clean(value) or _all_clean(value, depth + 1)
    if kind is str:
        return _text_clean(value)
    if kind is int:
        return bool(-INT_LIMIT <= value <= INT_LIMIT)
    if kind is float:
        return math.isfinite(value) and abs(value) <= INT_LIMIT
    return True


def _all_clean(items: Iterable[Any], depth: int) -> bool:
    """Strings, the most common values, are judged here rather than by a call to _clean each."""
    for item in items:
        if type(item) is str:
            if not (("\x00" not in item and item.isascii()) or _bad_text(item) is None):
                return False
        elif not _clean(item, depth):
            return False
    return True


def _texts_clean(texts: Iterable[Any]) -> bool:
    """Whether every item is a clean string: one join and two scans for a dict's keys or a list
    of names, instead of a check each."""
    try:
        joined = "".join(texts)
    except TypeError:
        return False  # something that is not a string (a caller judges a list item by item)
    return ("\x00" not in joined and joined.isascii()) or all(_text_clean(text) for text in texts)


def _text_clean(text: str) -> bool:
    return ("\x00" not in text and text.isascii()) or _bad_text(text) is None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None
