"""The canonical JSON codec: strict parsing, exact round trips, the key pattern."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitvault import codec
from gitvault.errors import CodecError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
keys = st.from_regex(codec.KEY_PATTERN, fullmatch=True)


def same(a: Any, b: Any) -> bool:
    """Strict JSON equality: types matter (1 != 1.0 != True) and so does -0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(json_values)
def test_every_json_value_round_trips_exactly(value: Any) -> None:
    assert same(codec.loads(codec.dumps(value)), value)


@given(json_values)
def test_canonical_bytes_are_a_fixed_point(value: Any) -> None:
    data = codec.dumps(value)
    assert codec.dumps(codec.loads(data)) == data


@given(st.dictionaries(keys, json_values, max_size=6))
def test_documents_split_into_one_blob_per_key(doc: dict[str, Any]) -> None:
    files = codec.encode_document(doc)
    assert sorted(files) == sorted(k + ".json" for k in doc)
    for k, v in doc.items():
        assert same(codec.loads(files[k + ".json"]), v)


def test_blob_format_is_indent_2_sorted_utf8_with_newline() -> None:
    data = codec.dumps({"b": [1, 2.5], "a": "café ☕"})
    assert data == '{\n  "a": "café ☕",\n  "b": [\n    1,\n    2.5\n  ]\n}\n'.encode()


def test_floats_keep_their_exact_value() -> None:
    for f in (0.1, 0.7999999999999999, 1e-300, 5e-324, 1.7976931348623157e308, -0.0):
        assert same(codec.loads(codec.dumps(f)), f)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"{", "invalid JSON"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1e999}', "overflows"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"x": {"b": 1, "b": 1}}', "duplicate key 'b'"),
        (b'{"a": "\xff"}', "invalid UTF-8 at byte 7"),
        (b"[1, 2]", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"../x": 1}', "invalid top-level key"),
        (b'{"a b": 1}', "invalid top-level key"),
        (b'{"": 1}', "invalid top-level key"),
        (b'{".gitvault": 1}', "invalid top-level key"),
        (b'{"' + b"k" * 129 + b'": 1}', "invalid top-level key"),
        (b"[" * 100000 + b"]" * 100000, "cannot parse"),
    ],
    ids=["syntax", "nan", "inf", "-inf", "overflow", "dup", "nested-dup", "utf8", "array", "null",
         "dotdot", "space", "empty-key", "reserved", "long-key", "deep"],
)
def test_bad_documents_are_refused_with_a_clear_error(data: bytes, needle: str) -> None:
    with pytest.raises(CodecError, match=None) as e:
        codec.loads_document(data, "proposal.json")
    assert needle in str(e.value)
    assert str(e.value).startswith("proposal.json")


def test_a_lone_surrogate_cannot_be_stored() -> None:
    value = json.loads('"\\ud800"')
    with pytest.raises(CodecError, match="surrogate"):
        codec.dumps(value)


def test_a_utf8_bom_is_accepted() -> None:
    assert codec.loads_document(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@given(keys)
def test_every_key_matching_the_pattern_is_accepted(key: str) -> None:
    assert codec.check_key(key) == key


@pytest.mark.parametrize(
    ("doc", "limit"),
    [
        ({"a": [[[[1]]]]}, "maxDepth"),
        ({"a": "x" * 101}, "maxStringBytes"),
        ({"a": {str(i): i for i in range(11)}}, "maxKeys"),
        ({"a": ["x" * 50] * 20}, "maxDocumentBytes"),
    ],
)
def test_limits_refuse_with_the_setting_named(doc: dict[str, Any], limit: str) -> None:
    limits = codec.Limits(max_document_bytes=1000, max_depth=4, max_string_bytes=100,
                          max_keys=10)
    data = json.dumps(doc).encode()
    with pytest.raises(CodecError, match=limit):
        codec.loads_document(data, "p.json", limits)
    with pytest.raises(CodecError, match=limit):
        codec.encode_document(doc, limits)


def test_documents_within_the_limits_pass() -> None:
    limits = codec.Limits(max_document_bytes=200, max_depth=4, max_string_bytes=100, max_keys=10)
    assert codec.loads_document(b'{"a": [[[1]]], "b": "x"}', "p", limits) == {
        "a": [[[1]]], "b": "x"}
