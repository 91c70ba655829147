"""Reading and writing JSON documents given as a path, `-` (stdin) or the JSON text itself."""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from awoc_scripts.errors import InputError

# Far above any real request (10,000 tasks is about 2 MB) and small enough to parse at once.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    """A parsed JSON document, and what to call it in messages."""

    data: Any
    source: str  # what to call it in messages: a path, "<stdin>" or "<argument>"


def looks_like_json_text(arg: str) -> bool:
    return arg.lstrip()[:1] in ("{", "[")


def load_document(arg: str, *, what: str = "document", max_bytes: int = MAX_DOCUMENT_BYTES) -> Document:
    if arg == "-":
        try:
            raw = sys.stdin.buffer.read(max_bytes + 1)
        except (OSError, ValueError, AttributeError) as exc:  # closed, unreadable or not a byte stream
            raise InputError(f"<stdin>: cannot read the {what}: {exc}") from None
        return Document(parse_json(raw, "<stdin>", max_bytes), "<stdin>")
    if looks_like_json_text(arg):
        return Document(parse_json(arg.encode(), "<argument>", max_bytes), "<argument>")
    return Document(read_json_file(Path(arg), what=what, max_bytes=max_bytes), arg)


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else f"{text[:120]}... ({len(text)} characters)"


def read_json_file(path: Path, *, what: str = "document", max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{_shown(path)}: no such {what} file (nor JSON text)") from None
    except OSError as exc:
        raise InputError(f"{_shown(path)}: cannot read {what}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, expected a JSON {what} file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise InputError(f"{path}: not a regular file, expected a JSON {what} file")
    if st.st_size > max_bytes:
        raise InputError(
            f"{path}: {st.st_size / 1e6:.1f} MB is larger than the {max_bytes // (1024 * 1024)} MiB limit for a {what}"
        )
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    return parse_json(raw, str(path), max_bytes)


def parse_json(raw: bytes, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    if len(raw) > max_bytes:
        raise InputError(f"{source}: larger than the {max_bytes // (1024 * 1024)} MiB limit")
    if not raw.strip():
        raise InputError(f"{source}: empty, expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{source}: malformed JSON: {describe_json_error(exc, raw)}") from None
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        raise InputError(f"{source}: {duplicate}")
    return data


class _Pairs(dict[str, Any]):
    """An object as the standard library parses it, with the keys it saw more than once."""

    repeated: list[str]


def _duplicate_key(raw: bytes) -> str | None:
    """orjson keeps the last of repeated keys without a word; a repeated key is usually a mistake.
    A second parse, by the standard library, sees every pair (about 1.5 us per object); it
    builds nothing, and only when it finds a repeat does a third parse say where."""
    import json

    repeats: list[bool] = []

    def note_repeat(items: list[tuple[str, Any]]) -> None:
        if len(items) > 1 and len(dict(items)) != len(items):
            repeats.append(True)

    def pairs(items: list[tuple[str, Any]]) -> _Pairs:
        obj = _Pairs(items)
        if len(obj) != len(items):
            names = [k for k, _ in items]
            obj.repeated = sorted({k for k in names if names.count(k) > 1})
        return obj

    try:
        json.loads(raw, object_pairs_hook=note_repeat)
        if not repeats:
            return None
        parsed = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None  # orjson read it; what the standard library cannot, it does not judge
    from awoc_scripts.input.config_schema import json_path

    stack: list[tuple[Any, list[Any]]] = [(parsed, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Pairs):
            if getattr(value, "repeated", None):
                where = json_path(path) or "the top-level object"
                return f"{where}: key {value.repeated[0]!r} appears more than once (only one may be given)"
            stack.extend((v, [*path, k]) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(value))))
    return None


def describe_json_error(exc: orjson.JSONDecodeError, raw: bytes) -> str:
    pos = getattr(exc, "pos", None)
    msg = str(exc.msg) if hasattr(exc, "msg") else str(exc)
    if isinstance(pos, int):
        line = raw.count(b"\n", 0, pos) + 1
        col = pos - (raw.rfind(b"\n", 0, pos) + 1) + 1
        return f"{msg} at line {line}, column {col}"
    return msg


def dumps(data: Any, *, pretty: bool = True) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(data, option=option | orjson.OPT_NON_STR_KEYS)


def print_json(data: Any, *, pretty: bool = True) -> None:
    out = sys.stdout.buffer
    out.write(dumps(data, pretty=pretty) + b"\n")
    out.flush()
