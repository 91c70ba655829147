"""Validation of a config document against schemas/delegate-parallel-v1.0.json.

Every problem is reported with its JSON path, in words a user can act on.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from awoc_scripts import PLAN_SCHEMA

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from awoc_scripts.plan_types import JsonObject

SCHEMA_FILE_NAME = f"{PLAN_SCHEMA}.json"
MAX_REPORTED_PROBLEMS = 20
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ID_RULE = "use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"


def schema_path() -> Path:
    """The schema ships inside the package; in a source checkout it is the top-level schemas/."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "schemas" / SCHEMA_FILE_NAME, package.parent / "schemas" / SCHEMA_FILE_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(SCHEMA_FILE_NAME)


@cache
def load_schema() -> JsonObject:
    data: JsonObject = orjson.loads(schema_path().read_bytes())
    return data


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # heavy import: only when validating

    return Draft202012Validator(load_schema())


def json_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            shown = orjson.dumps(part).decode()
            if not shown.isprintable():  # a line break or control character would split the message
                import json

                shown = json.dumps(part)
            out += f"[{shown}]"
    return out


@cache
def _quick_check() -> Any:
    from awoc_scripts.input.fast_schema import compile_schema

    return compile_schema(load_schema())


def schema_problems(document: Any) -> list[tuple[str, str]]:
    """(json path, message) for every schema violation, in document order.

    A quick compiled check answers for valid documents; jsonschema words the problems. Values the
    schema's tools cannot even look at (see sanity.py) are reported first, and alone."""
    from awoc_scripts.input.sanity import sanity_problems

    insane = sanity_problems(document)
    if insane:
        return [(json_path(path) or "(the document)", message) for path, message in insane]
    if _quick_check()(document):
        return []
    errors = sorted(_validator().iter_errors(document), key=lambda e: _sort_key(e.absolute_path))
    problems: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        for path, message in _describe(error):
            if (path, message) not in seen:
                seen.add((path, message))
                problems.append((path, message))
    return problems


def _sort_key(path: Sequence[Any]) -> list[tuple[int, Any]]:
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in path]


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _describe(error: Any) -> list[tuple[str, str]]:
    path = json_path(error.absolute_path)
    kind = error.validator
    value = error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        out = []
        for key in sorted(set(value) - set(allowed)):
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else f"; allowed: {', '.join(allowed)}"
            out.append((json_path([*error.absolute_path, key]), f"unknown key {key!r}{suggestion}"))
        return out
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return [(path, f"missing required key {k!r}") for k in missing]
    if kind == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return [(path, f"{_show(value)} is not one of {choices}")]
    if kind == "const":
        return [(path, f"expected {_show(error.validator_value)}, got {_show(value)}")]
    if kind == "type":
        expected = error.validator_value
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        return [(path, f"expected {words}, got {_type_name(value)} {_show(value)}")]
    if kind == "pattern":
        if error.validator_value.startswith("^[a-z0-9]"):
            return [(path, f"{_show(value)} is not a valid name: {ID_RULE}")]
        return [(path, f"{_show(value)} must not be blank")]
    if kind == "minItems":
        if path == "tasks":
            return [(path, "expected at least one task, got an empty list")]
        return [(path, f"expected at least {error.validator_value} item(s)")]
    if kind == "maxItems":
        return [(path, f"expected at most {error.validator_value} items, got {len(value)}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "maxLength":
        return [(path, f"longer than {error.validator_value} characters ({len(value)})")]
    if kind in ("minimum", "exclusiveMinimum", "maximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[kind]
        return [(path, f"expected a number {op} {error.validator_value}, got {_show(value)}")]
    if kind == "anyOf":
        return [(path, f"expected a string or a list of strings, got {_type_name(value)} {_show(value)}")]
    if kind == "propertyNames":
        return [(path, f"{_show(value)} is not a valid agent name: {ID_RULE}")]
    return [(path, error.message)]
