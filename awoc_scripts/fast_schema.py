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
from typing import Any

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


def compile_schema(root: Mapping[str, Any]) -> Check:
    cache: dict[str, Check] = {}

    def ref(pointer: str) -> Check:
        if pointer not in cache:
            if not pointer.startswith("#/$defs/"):
                raise ValueError(f"unsupported $ref {pointer!r}")
            cache[pointer] = lambda value: resolved(value)  # placeholder for recursive schemas
            resolved = build(root["$defs"][pointer.removeprefix("#/$defs/")])
            cache[pointer] = resolved
        return cache[pointer]

    def build(schema: Mapping[str, Any]) -> Check:
        unknown = set(schema) - SUPPORTED
        if unknown:
            raise ValueError(f"unsupported schema keywords: {sorted(unknown)}")
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(ref(schema["$ref"]))
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
            checks.append(lambda v, names=names: any(_is_type(v, n) for n in names))
        if "enum" in schema:
            options = list(schema["enum"])
            checks.append(lambda v, options=options: any(_json_equal(v, o) for o in options))
        if "const" in schema:
            checks.append(lambda v, c=schema["const"]: _json_equal(v, c))
        if "pattern" in schema:
            search = re.compile(schema["pattern"]).search
            checks.append(lambda v, search=search: not isinstance(v, str) or search(v) is not None)
        if "minLength" in schema:
            checks.append(lambda v, n=schema["minLength"]: not isinstance(v, str) or len(v) >= n)
        if "maxLength" in schema:
            checks.append(lambda v, n=schema["maxLength"]: not isinstance(v, str) or len(v) <= n)
        if "minimum" in schema:
            checks.append(lambda v, n=schema["minimum"]: not _is_number(v) or v >= n)
        if "exclusiveMinimum" in schema:
            checks.append(lambda v, n=schema["exclusiveMinimum"]: not _is_number(v) or v > n)
        if "maximum" in schema:
            checks.append(lambda v, n=schema["maximum"]: not _is_number(v) or v <= n)
        if "minItems" in schema:
            checks.append(lambda v, n=schema["minItems"]: not isinstance(v, list) or len(v) >= n)
        if "maxItems" in schema:
            checks.append(lambda v, n=schema["maxItems"]: not isinstance(v, list) or len(v) <= n)
        if "items" in schema:
            item = build(schema["items"])
            checks.append(lambda v, item=item: not isinstance(v, list) or all(item(x) for x in v))
        if "required" in schema:
            keys = list(schema["required"])
            checks.append(lambda v, keys=keys: not isinstance(v, dict) or all(k in v for k in keys))
        if "properties" in schema or "additionalProperties" in schema:
            props = {k: build(s) for k, s in schema.get("properties", {}).items()}
            extra = schema.get("additionalProperties", True)
            other: Check | None = None if extra is True else (lambda v: False) if extra is False else build(extra)
            checks.append(lambda v, props=props, other=other: not isinstance(v, dict) or _check_object(v, props, other))
        if "propertyNames" in schema:
            name = build(schema["propertyNames"])
            checks.append(lambda v, name=name: not isinstance(v, dict) or all(name(k) for k in v))
        if "anyOf" in schema:
            options = [build(s) for s in schema["anyOf"]]
            checks.append(lambda v, options=options: any(o(v) for o in options))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    return build(root)


def _check_object(value: dict[str, Any], props: Mapping[str, Check], other: Check | None) -> bool:
    for key, item in value.items():
        check = props.get(key, other)
        if check is not None and not check(item):
            return False
    return True
