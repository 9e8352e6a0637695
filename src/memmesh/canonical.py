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
    if _check(value, 0):
        # A member name with a character at or above U+D800: code point order (Python's) and
        # UTF-16 order (RFC 8785's) may differ, so sort the slow, explicit way.
        out: list[str] = []
        _encode(value, out, 0)
        return "".join(out).encode("utf-8")
    # Otherwise the C encoder gives the same bytes: members sorted (the orders agree), no
    # whitespace, ECMAScript string escaping (see _string), integers in plain decimal.
    return _dumps(value).encode("utf-8")


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def _check(value: Any, depth: int) -> bool:
    """Refuse anything outside the subset; return True if a member name needs UTF-16 order."""
    if depth > _DEPTH_MAX:
        raise ValueError(f"nested deeper than {_DEPTH_MAX}")
    if isinstance(value, str):
        if not unicodedata.is_normalized("NFC", value):
            raise ValueError(f"string {value[:20]!r} is not in Unicode NFC")
        return False
    if value is None or value is True or value is False:
        return False
    if isinstance(value, int):
        if not -JSON_INT_MAX <= value <= JSON_INT_MAX:
            raise ValueError(f"integer {value} outside +-2^53")
        return False
    if isinstance(value, list | tuple):
        return any([_check(item, depth + 1) for item in value])
    if isinstance(value, dict):
        wide = False
        for name, item in value.items():
            if not isinstance(name, str):
                raise ValueError("object member names must be strings")
            _check(name, depth + 1)
            wide = _check(item, depth + 1) or wide or (bool(name) and max(name) >= "\ud800")
        return wide
    raise ValueError(f"{type(value).__name__} is not in the canonical JSON subset")


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > _DEPTH_MAX:
        raise ValueError(f"nested deeper than {_DEPTH_MAX}")
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
