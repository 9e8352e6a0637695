"""Canonical JSON: one value, one byte string; anything else refused with a reason."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh.canonical import JSON_INT_MAX, canonical_bytes, parse_canonical
from memmesh.errors import Reason, Rejected
from memmesh.testing import scaled

nfc_text = st.text().map(lambda s: unicodedata.normalize("NFC", s))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-JSON_INT_MAX, JSON_INT_MAX) | nfc_text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=6).map(lambda s: unicodedata.normalize("NFC", s)),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=scaled(400))
@given(json_values)
def test_round_trip_and_agreement_with_a_plain_json_parser(value: object) -> None:
    data = canonical_bytes(value)
    assert parse_canonical(data, what="t", bytes_max=1 << 20) == value
    assert json.loads(data) == value  # any JSON parser reads it


def test_rfc8785_member_order_is_by_utf16_code_units() -> None:
    # U+10000 is D800 DC00 in UTF-16, so it sorts before U+E000 although its code point is higher.
    value = {"\ue000": 1, "\U00010000": 2, "a": 3, "B": 4, "": 5}
    expected = '{"":5,"B":4,"a":3,"\U00010000":2,"\ue000":1}'
    assert canonical_bytes(value) == expected.encode()


def test_string_escapes_follow_ecmascript() -> None:
    text = 'q"b\\\b\f\n\r\t\x00\x1f\x7f\u2028é'
    expected = '"q\\"b\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u2028é"'
    assert canonical_bytes(text) == expected.encode()


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), 2**53 + 1, -(2**53) - 1, "e\u0301", {1: "x"}, b"bytes", {"a": {1}}],
)
def test_values_outside_the_subset_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_bytes(value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"b":1,"a":2}', Reason.NOT_CANONICAL),
        (b'{"a": 1}', Reason.NOT_CANONICAL),
        (b"[1,2] ", Reason.NOT_CANONICAL),
        (b'"\\u0041"', Reason.NOT_CANONICAL),
        (b"1.0", Reason.BAD_JSON),
        (b"1e3", Reason.BAD_JSON),
        (b"NaN", Reason.BAD_JSON),
        (b'{"a":1,"a":1}', Reason.BAD_JSON),
        (b'"e\xcc\x81"', Reason.BAD_JSON),  # not NFC
        (b"\xff", Reason.BAD_JSON),
        (b"[" * 5000 + b"]" * 5000, Reason.BAD_JSON),
        (b"9007199254740993", Reason.BAD_JSON),
        (b"", Reason.BAD_JSON),
    ],
)
def test_non_canonical_bytes_are_refused(data: bytes, reason: Reason) -> None:
    with pytest.raises(Rejected) as info:
        parse_canonical(data, what="t", bytes_max=1 << 20)
    assert info.value.reason is reason


def test_size_is_checked_first() -> None:
    with pytest.raises(Rejected) as info:
        parse_canonical(b"[" + b"0," * 100 + b"0]", what="t", bytes_max=64)
    assert info.value.reason is Reason.TOO_LARGE


def _ecmascript_quote(text: str) -> str:
    """JSON.stringify's string escaping (ECMA-262, QuoteJSONString), written out as the oracle."""
    short = {
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
    }
    out = ['"']
    for char in text:
        if char in short:
            out.append(short[char])
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


@settings(max_examples=scaled(300))
@given(st.text(alphabet=st.characters(max_codepoint=0x3000, exclude_categories=["Cs"])))
def test_string_escaping_matches_ecmascript(text: str) -> None:
    text = unicodedata.normalize("NFC", text)
    assert canonical_bytes(text) == _ecmascript_quote(text).encode()


def test_every_control_character_escapes_like_ecmascript() -> None:
    for code in range(0x80):
        char = chr(code)
        assert canonical_bytes(char) == _ecmascript_quote(char).encode(), hex(code)


def _oracle(value: object) -> object:
    """Members re-inserted in UTF-16 code unit order, so json.dumps keeps that order."""
    if isinstance(value, dict):
        names = sorted(value, key=lambda n: n.encode("utf-16-be", "surrogatepass"))
        return {name: _oracle(value[name]) for name in names}
    if isinstance(value, list):
        return [_oracle(item) for item in value]
    return value


wide_names = st.text(
    alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0x1F000, exclude_categories=["Cs"]),
    max_size=3,
).map(lambda s: unicodedata.normalize("NFC", s))


@settings(max_examples=scaled(300))
@given(st.recursive(json_values, lambda inner: st.dictionaries(wide_names, inner, max_size=5)))
def test_member_order_matches_utf16_for_any_names(value: object) -> None:
    expected = json.dumps(_oracle(value), ensure_ascii=False, separators=(",", ":"))
    assert canonical_bytes(value) == expected.encode()


def test_nesting_limit_does_not_depend_on_the_characters() -> None:
    def nested(depth: int, leaf: str) -> object:
        value: object = leaf
        for _ in range(depth):
            value = [value]
        return value

    verdicts = set()
    for leaf in ("plain", "\ue000\U00010000"):
        accepted = []
        for depth in range(28, 38):
            try:
                canonical_bytes({"k": nested(depth, leaf)})
                accepted.append(depth)
            except ValueError:
                pass
        verdicts.add(max(accepted))
    assert len(verdicts) == 1
