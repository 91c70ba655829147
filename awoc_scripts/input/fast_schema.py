"""A quick yes/no check of a document against our JSON Schema, compiled into plain Python checks.

jsonschema gives the best error messages but costs about 50 ms to import and about 100 us per
task to run, which is most of `validate` on a small config and most of it on 100,000 tasks.
This compiles the schema once into closures that only answer "valid or not". A valid document
needs nothing else; an invalid one goes to jsonschema for its messages, so jsonschema stays the
judge of what the error says. It supports exactly the keywords schemas/ uses and refuses others,
and a property test checks it agrees with jsonschema.
"""

from __future__ import annotations

import math
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


def _is_integer(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


TYPE_CHECKS: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
# the keywords that look only at values of one kind, and the types that are of that kind
KINDS: dict[str, tuple[Check, frozenset[str]]] = {
    "string": (TYPE_CHECKS["string"], frozenset({"string"})),
    "number": (_is_number, frozenset({"number", "integer"})),
    "array": (TYPE_CHECKS["array"], frozenset({"array"})),
    "object": (TYPE_CHECKS["object"], frozenset({"object"})),
}
KEYWORD_KINDS = {
    "pattern": "string", "minLength": "string", "maxLength": "string",
    "minimum": "number", "exclusiveMinimum": "number", "maximum": "number",
    "minItems": "array", "maxItems": "array", "items": "array",
    "required": "object", "propertyNames": "object", "properties": "object", "additionalProperties": "object",
}  # fmt: skip


def _json_equal(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0, but true is not 1
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _all_of(checks: list[Check]) -> Check:
    """One check that passes when every one of CHECKS does, in order (no loop for the usual few)."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    if len(checks) == 3:
        first, second, third = checks
        return lambda v: first(v) and second(v) and third(v)
    return lambda v: all(check(v) for check in checks)


def _type_check(value: str | list[str]) -> Check:
    names = [value] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in TYPE_CHECKS]
    if unknown:
        raise ValueError(f"unsupported type {unknown[0]!r}")
    checks = [TYPE_CHECKS[n] for n in names]
    if len(checks) == 1:
        return checks[0]
    return lambda v: any(check(v) for check in checks)


def _enum_check(options: list[Any]) -> Check:
    if all(isinstance(option, str) for option in options):
        allowed = frozenset(options)
        return lambda v: isinstance(v, str) and v in allowed
    return lambda v: any(_json_equal(v, option) for option in options)


def _kind_check(keyword: str, value: Any, build: Callable[[Any], Check]) -> Check:
    """The check of a keyword that looks at one kind of value, for a value known to be of that kind."""
    if keyword == "pattern":
        search = re.compile(value).search
        return lambda v: search(v) is not None
    if keyword == "minLength":
        return lambda v: len(v) >= value
    if keyword == "maxLength":
        return lambda v: len(v) <= value
    if keyword == "minimum":
        return lambda v: v >= value
    if keyword == "exclusiveMinimum":
        return lambda v: v > value
    if keyword == "maximum":
        return lambda v: v <= value
    if keyword == "minItems":
        return lambda v: len(v) >= value
    if keyword == "maxItems":
        return lambda v: len(v) <= value
    if keyword == "items":
        item = build(value)
        return lambda v: all(map(item, v))
    if keyword == "required":
        needed = frozenset(value)
        return lambda v: v.keys() >= needed
    if keyword == "propertyNames":
        name = build(value)
        return lambda v: all(map(name, v))
    raise ValueError(f"unsupported keyword {keyword!r}")  # pragma: no cover - KEYWORD_KINDS lists them


def _object_check(props: dict[str, Check], extra: Check | None) -> Check:
    """properties and additionalProperties (EXTRA: None for any, _never for none)."""
    get = props.get
    if extra is _never:

        def closed(v: JsonObject) -> bool:
            for key, item in v.items():
                check = get(key)
                if check is None or not check(item):
                    return False
            return True

        return closed

    def open_(v: JsonObject) -> bool:
        for key, item in v.items():
            check = get(key, extra)
            if check is not None and not check(item):
                return False
        return True

    return open_


def _for_kind(is_kind: Check, check: Check) -> Check:
    """CHECK, for values of its kind; any other value passes (its type is another keyword's business)."""
    return lambda v: not is_kind(v) or check(v)


_ANNOTATIONS = {"title", "description", "$schema", "$id"}
_SIMPLE = {
    "string": {"minLength", "maxLength", "pattern"},
    "integer": {"minimum", "maximum", "exclusiveMinimum"},
    "number": {"minimum", "maximum", "exclusiveMinimum"},
    "array": {"minItems", "maxItems", "items"},
    "object": {"required", "properties", "additionalProperties"},
}


def _simple_check(schema: Mapping[str, Any], build: Callable[[Any], Check]) -> Check | None:
    """One closure for the most common schemas: a single type with bounds (a string's length and
    pattern, a number's range, an array's length and items). A 100,000-task config holds
    hundreds of thousands of such values; one call each instead of four or five halves the check."""
    declared = schema.get("type")
    if not isinstance(declared, str) or declared not in _SIMPLE:
        return None
    if not set(schema) - _ANNOTATIONS - {"type"} <= _SIMPLE[declared]:
        return None
    if declared == "object":
        props = {k: build(s) for k, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        members = _object_check(props, None if extra is True else _never if extra is False else build(extra))
        needed = frozenset(schema.get("required", ()))
        return lambda v: isinstance(v, dict) and v.keys() >= needed and members(v)
    if declared == "string":
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", math.inf)
        if "pattern" not in schema:
            return lambda v: isinstance(v, str) and lo <= len(v) <= hi
        search = re.compile(schema["pattern"]).search
        return lambda v: isinstance(v, str) and lo <= len(v) <= hi and search(v) is not None
    if declared == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", math.inf)
        if "items" not in schema:
            return lambda v: isinstance(v, list) and lo <= len(v) <= hi
        item = build(schema["items"])
        return lambda v: isinstance(v, list) and lo <= len(v) <= hi and all(map(item, v))
    is_type = _is_integer if declared == "integer" else _is_number
    lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    if "exclusiveMinimum" in schema:
        above = schema["exclusiveMinimum"]
        return lambda v: is_type(v) and lo <= v <= hi and v > above
    return lambda v: is_type(v) and lo <= v <= hi


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
        simple = _simple_check(schema, build)
        if simple is not None:
            return simple
        checks = [ref(schema["$ref"])] if "$ref" in schema else []
        declared = schema.get("type")
        if declared is not None:
            checks.append(_type_check(declared))
        if "enum" in schema:
            checks.append(_enum_check(schema["enum"]))
        if "const" in schema:
            expected = schema["const"]
            checks.append(lambda v: _json_equal(v, expected))
        if "anyOf" in schema:
            options = [build(option) for option in schema["anyOf"]]
            checks.append(lambda v: any(option(v) for option in options))
        by_kind: dict[str, list[Check]] = {}
        for keyword, value in schema.items():
            if keyword in KEYWORD_KINDS and keyword not in ("properties", "additionalProperties"):
                by_kind.setdefault(KEYWORD_KINDS[keyword], []).append(_kind_check(keyword, value, build))
        if "properties" in schema or "additionalProperties" in schema:
            props = {k: build(s) for k, s in schema.get("properties", {}).items()}
            extra = schema.get("additionalProperties", True)
            other = None if extra is True else _never if extra is False else build(extra)
            by_kind.setdefault("object", []).append(_object_check(props, other))
        for kind, kind_checks in by_kind.items():
            is_kind, types = KINDS[kind]
            together = _all_of(kind_checks)
            if isinstance(declared, str) and declared in types:
                checks.append(together)  # the type check before it has made sure of the kind
            else:
                checks.append(_for_kind(is_kind, together))
        return _all_of(checks)

    return build(root)
