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

__all__ = [
    "JSON_INT_MAX",
    "JsonValue",
    "canonical_bytes",
    "check_json",
    "encode_checked",
    "is_nfc",
    "parse_canonical",
]

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None

JSON_INT_MAX = 2**53
_DEPTH_MAX = 32


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value``; ``ValueError`` if it is outside the subset."""
    _check(value, 0)
    return encode_checked(value)


def check_json(value: Any) -> None:
    """``ValueError`` unless ``value`` is inside the subset (what :func:`canonical_bytes`
    checks before encoding)."""
    _check(value, 0)


def is_nfc(text: str) -> bool:
    return _is_nfc(text)


def encode_checked(value: Any) -> bytes:
    """The RFC 8785 encoding of a value the caller has already checked (with
    :func:`check_json`, or by building it from checked parts): a hot path's shortcut."""
    # The C encoder gives RFC 8785's bytes: no whitespace, integers in plain decimal, and with
    # ensure_ascii=False exactly ECMAScript's string escaping (quote, backslash, the five short
    # escapes, other controls as lowercase \u00xx). It sorts members by code point, which equals
    # UTF-16 code unit order unless a name mixes characters of U+E000..U+FFFF with supplementary
    # ones; that needs a character of U+E000 or above somewhere, and only then are the members
    # put in UTF-16 order by hand. Lone surrogates fail the final UTF-8 encode (a ValueError).
    text = _dumps(value)
    if not text.isascii() and max(text) >= "\ue000":
        text = _dumps_as_ordered(_in_utf16_order(value))
    return text.encode("utf-8")


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode
_dumps_as_ordered = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
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


def _in_utf16_order(value: Any) -> Any:
    """``value`` with every object's members re-inserted in UTF-16 code unit order."""
    if isinstance(value, dict):
        return {name: _in_utf16_order(value[name]) for name in sorted(value, key=_utf16_order)}
    if isinstance(value, list | tuple):
        return [_in_utf16_order(item) for item in value]
    return value


def _utf16_order(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def parse_canonical(data: bytes, *, what: str, bytes_max: int) -> JsonValue:
    """Decode canonical JSON, refusing (with a reason code) anything not byte-for-byte canonical."""
    if len(data) > bytes_max:
        raise Rejected(Reason.TOO_LARGE, f"{what}: {len(data)} bytes exceed {bytes_max}")
    if data.isascii() and data.count(b"[") + data.count(b"{") <= _DEPTH_MAX:
        # The common case, on every claim: ASCII text is NFC, its member names sort the same in
        # code points and UTF-16 units, and 32 brackets cannot nest deeper than the limit, so
        # the C decoder (floats refused, integers bounded as they are read) and one re-encoding
        # decide it. Anything that does not come back byte for byte takes the full path below,
        # which gives the precise reason.
        try:
            value = _loads_bounded(data.decode("ascii"))
            if _dumps(value).encode("utf-8") == data:
                result: JsonValue = value
                return result
        except (json.JSONDecodeError, ValueError, RecursionError):
            pass
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
    checked: JsonValue = value
    return checked


def _refuse_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]}")


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -JSON_INT_MAX <= value <= JSON_INT_MAX:
        raise ValueError(f"integer {text[:20]} outside +-2^53")
    return value


_loads_bounded = json.JSONDecoder(
    parse_float=_refuse_float, parse_int=_bounded_int, parse_constant=_refuse_float
).decode


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {name[:40]!r}")
        out[name] = value
    return out
