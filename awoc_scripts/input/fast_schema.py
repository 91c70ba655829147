"""A quick yes/no check of a document against our JSON Schema, compiled into plain Python checks.

jsonschema gives the best error messages but costs about 50 ms to import and about 100 us per
task to run, which is most of `validate` on a small config and most of it on 100,000 tasks.
This compiles the schema once into closures that only answer "valid or not". A valid document
needs nothing else; an invalid one goes to jsonschema for its messages, so jsonschema stays the
judge of what the error says. It supports exactly the keywords schemas/ uses and refuses others,
and a property test checks it agrees with jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from awoc_scripts.plan_types import JsonObject

Check = Callable[[Any], bool]
SUPPORTED = {
    "$schema", "$id", "$defs", "title", "description", "$ref", "type", "enum", "const", "pattern", "minimum",
    "exclusiveMinimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "items", "properties",
    "additionalProperties", "required", "propertyNames", "anyOf",
}  # fmt: skip


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    raise ValueError(f"unsupported type {name!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0, but true is not 1
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _strings(test: Callable[[str], bool]) -> Check:
    return lambda v: not isinstance(v, str) or test(v)


def _numbers(test: Callable[[float], bool]) -> Check:
    return lambda v: not _is_number(v) or test(v)


def _lists(test: Callable[[list[Any]], bool]) -> Check:
    return lambda v: not isinstance(v, list) or test(v)


def _objects(test: Callable[[JsonObject], bool]) -> Check:
    return lambda v: not isinstance(v, dict) or test(v)


def _keyword_check(keyword: str, value: Any, build: Callable[[Any], Check]) -> Check | None:
    """The check of one keyword; None for the keywords that only annotate."""
    if keyword == "type":
        names = [value] if isinstance(value, str) else list(value)
        return lambda v: any(_is_type(v, n) for n in names)
    if keyword == "enum":
        return lambda v: any(_json_equal(v, option) for option in value)
    if keyword == "const":
        return lambda v: _json_equal(v, value)
    if keyword == "pattern":
        search = re.compile(value).search
        return _strings(lambda v: search(v) is not None)
    if keyword == "minLength":
        return _strings(lambda v: len(v) >= value)
    if keyword == "maxLength":
        return _strings(lambda v: len(v) <= value)
    if keyword == "minimum":
        return _numbers(lambda v: v >= value)
    if keyword == "exclusiveMinimum":
        return _numbers(lambda v: v > value)
    if keyword == "maximum":
        return _numbers(lambda v: v <= value)
    if keyword == "minItems":
        return _lists(lambda v: len(v) >= value)
    if keyword == "maxItems":
        return _lists(lambda v: len(v) <= value)
    if keyword == "items":
        item = build(value)
        return _lists(lambda v: all(item(x) for x in v))
    if keyword == "required":
        return _objects(lambda v: all(k in v for k in value))
    if keyword == "propertyNames":
        name = build(value)
        return _objects(lambda v: all(name(k) for k in v))
    if keyword == "anyOf":
        options = [build(option) for option in value]
        return lambda v: any(option(v) for option in options)
    return None


def compile_schema(root: Mapping[str, Any]) -> Check:
    compiled: dict[str, Check] = {}

    def ref(pointer: str) -> Check:
        if not pointer.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {pointer!r}")
        if pointer not in compiled:
            compiled[pointer] = lambda v: compiled[pointer](v)  # stands in while a recursive schema compiles
            compiled[pointer] = build(root["$defs"][pointer.removeprefix("#/$defs/")])
        return compiled[pointer]

    def build(schema: Mapping[str, Any]) -> Check:
        unknown = set(schema) - SUPPORTED
        if unknown:
            raise ValueError(f"unsupported schema keywords: {sorted(unknown)}")
        checks = [ref(schema["$ref"])] if "$ref" in schema else []
        for keyword, value in schema.items():
            check = _keyword_check(keyword, value, build)
            if check is not None:
                checks.append(check)
        if "properties" in schema or "additionalProperties" in schema:
            props = {k: build(s) for k, s in schema.get("properties", {}).items()}
            extra = schema.get("additionalProperties", True)
            other = None if extra is True else _never if extra is False else build(extra)
            checks.append(_objects(lambda v: _check_object(v, props, other)))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    return build(root)


def _never(value: Any) -> bool:
    return False


def _check_object(value: JsonObject, props: Mapping[str, Check], other: Check | None) -> bool:
    for key, item in value.items():
        check = props.get(key, other)
        if check is not None and not check(item):
            return False
    return True
