"""Canonical JSON (RFC 8785, JCS) for the subset replicas must agree on.

The subset: ``null``, booleans, integers with ``|n| <= 2**53``, strings in Unicode NFC, arrays, and
objects with string keys. No floats: sums and orders of them differ across platforms, and JCS's
number formatting is the part implementations get wrong. Within the subset, JCS reduces to: no
whitespace, object members sorted by the UTF-16 code units of their names, strings escaped as
ECMAScript ``JSON.stringify`` does (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other controls as
lowercase ``\\u00xx``, everything else literal UTF-8), integers in plain decimal.

:func:`canonical_bytes` encodes a value, refusing anything outside the subset.
:func:`parse_canonical` decodes bytes and refuses them unless they are exactly the canonical
encoding of what they hold, so one value has one byte string, and its hash is its identity.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from typing import Any, TypeAlias

from .errors import Reason, Rejected

__all__ = ["JSON_INT_MAX", "JsonValue", "canonical_bytes", "parse_canonical"]

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None

JSON_INT_MAX = 2**53
_DEPTH_MAX = 32


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value``; ``ValueError`` if it is outside the subset."""
    _check(value, 0)
    # The C encoder gives RFC 8785's bytes (no whitespace, ECMAScript string escaping, plain
    # integers) with members sorted by code point. That equals UTF-16 code unit order unless a
    # name mixes characters of U+E000..U+FFFF with supplementary ones, which needs a character
    # of U+E000 or above somewhere: only then sort the slow, explicit way.
    text = _dumps(value)
    if not text.isascii() and max(text) >= "\ue000":
        out: list[str] = []
        _encode(value, out, 0)
        text = "".join(out)
    return text.encode("utf-8")


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode
_is_nfc = functools.partial(unicodedata.is_normalized, "NFC")


def _check(value: Any, depth: int) -> None:
    """Refuse anything outside the subset (scalars inline: this runs on every claim)."""
    if depth > _DEPTH_MAX:
        raise ValueError(f"nested deeper than {_DEPTH_MAX}")
    kind = type(value)
    if kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                raise ValueError("object member names must be strings")
            if not _is_nfc(name):
                raise ValueError(f"member name {name[:20]!r} is not in Unicode NFC")
            _check_item(item, depth)
    elif kind is list or kind is tuple:
        for item in value:
            _check_item(item, depth)
    else:
        _check_item(value, depth - 1)


def _check_item(item: Any, depth: int) -> None:
    kind = type(item)
    if kind is str:
        if not _is_nfc(item):
            raise ValueError(f"string {item[:20]!r} is not in Unicode NFC")
    elif kind is int:
        if not -JSON_INT_MAX <= item <= JSON_INT_MAX:
            raise ValueError(f"integer {item} outside +-2^53")
    elif item is None or kind is bool:
        pass
    elif kind is dict or kind is list or kind is tuple:
        _check(item, depth + 1)
    elif isinstance(item, str):  # subclasses, e.g. StrEnum members: encoded as their value
        _check_item(str(item), depth)
    elif isinstance(item, int) and not isinstance(item, bool):
        _check_item(int(item), depth)
    else:
        raise ValueError(f"{kind.__name__} is not in the canonical JSON subset")


def _encode(value: Any, out: list[str], depth: int) -> None:
    # Depth and every value were already checked by _check: one limit, whatever the path.
    if isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(name, str) for name in value):
            raise ValueError("object member names must be strings")
        out.append("{")
        for i, name in enumerate(sorted(value, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_string(name))
            out.append(":")
            _encode(value[name], out, depth + 1)
        out.append("}")
    else:
        out.append(_scalar(value))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if not -JSON_INT_MAX <= value <= JSON_INT_MAX:
            raise ValueError(f"integer {value} outside +-2^53")
        return str(int(value))
    if isinstance(value, str):
        return _string(value)
    raise ValueError(f"{type(value).__name__} is not in the canonical JSON subset")


def _utf16_order(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _string(value: str) -> str:
    if not unicodedata.is_normalized("NFC", value):
        raise ValueError(f"string {value[:20]!r} is not in Unicode NFC")
    # For strings, Python's C encoder with ensure_ascii=False escapes exactly what ECMAScript's
    # JSON.stringify does (quote, backslash, the five short escapes, other controls as lowercase
    # \u00xx) and nothing else. Lone surrogates pass through here and fail the final UTF-8
    # encode in canonical_bytes with a ValueError.
    return _encode_string(value)


_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def parse_canonical(data: bytes, *, what: str, bytes_max: int) -> JsonValue:
    """Decode canonical JSON, refusing (with a reason code) anything not byte-for-byte canonical."""
    if len(data) > bytes_max:
        raise Rejected(Reason.TOO_LARGE, f"{what}: {len(data)} bytes exceed {bytes_max}")
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            parse_float=_refuse_float,
            parse_constant=_refuse_float,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(Reason.BAD_JSON, f"{what}: {exc}") from None
    try:
        again = canonical_bytes(value)
    except ValueError as exc:
        raise Rejected(Reason.BAD_JSON, f"{what}: {exc}") from None
    if again != data:
        raise Rejected(Reason.NOT_CANONICAL, f"{what}: not in RFC 8785 canonical form")
    result: JsonValue = value
    return result


def _refuse_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {name[:40]!r}")
        out[name] = value
    return out
