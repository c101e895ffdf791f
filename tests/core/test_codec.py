"""The canonical JSON codec: strict parsing, exact round trips, the key pattern."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault.core import codec
from gitvault.errors import CodecError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
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
        (b"[" * 100000 + b"]" * 100000, "nesting too deep"),
    ],
    ids=[
        "syntax",
        "nan",
        "inf",
        "-inf",
        "overflow",
        "dup",
        "nested-dup",
        "utf8",
        "array",
        "null",
        "dotdot",
        "space",
        "empty-key",
        "reserved",
        "long-key",
        "deep",
    ],
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
    limits = codec.Limits(max_document_bytes=1000, max_depth=4, max_string_bytes=100, max_keys=10)
    with pytest.raises(CodecError, match=limit):
        codec.encode_document(codec.loads_document(json.dumps(doc).encode(), "p", limits), limits)


def test_documents_within_the_limits_pass() -> None:
    limits = codec.Limits(max_document_bytes=200, max_depth=4, max_string_bytes=100, max_keys=10)
    assert codec.loads_document(b'{"a": [[[1]]], "b": "x"}', "p", limits) == {
        "a": [[[1]]],
        "b": "x",
    }


def reference(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@given(json_values)
def test_the_fast_encoder_writes_exactly_the_reference_form(value: Any) -> None:
    assert codec.dumps(value) == reference(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_is_written_in_the_reference_form(f: float) -> None:
    assert codec.dumps({"f": f}) == reference({"f": f})


@pytest.mark.parametrize("value", [1e-05, 1e-07, -3.9e-08, 2**70, [2**64], {"s": "e-5 0.0000"}])
def test_values_orjson_would_write_differently_take_the_reference_path(value: Any) -> None:
    assert codec.dumps(value) == reference(value)
    assert same(codec.loads_trusted(codec.dumps(value)), value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(json_values, min_size=1, max_size=6),
    st.lists(json_values, max_size=6),
    st.integers(0, 5),
    st.sampled_from([1e-05, 1e-07, -3.9e-08, 0.5, "e-5 0.0000", None]),
)
def test_encoding_against_an_earlier_version_writes_exactly_the_reference_form(
    head: list[Any], tail: list[Any], at: int, odd: Any
) -> None:
    """``dumps(value, like=earlier)`` only searches what differs from ``earlier`` for the
    float forms orjson writes differently: the result is still exactly the reference form,
    also when the odd value is new, or sits next to a long stretch shared with ``earlier``."""
    filler = [{"id": i, "pad": "x" * 200} for i in range(400)]  # past the 64 KiB threshold
    earlier = [*head, *filler, *tail]
    value = [*head, *filler, *tail]
    value.insert(min(at, len(value)), odd)
    for like in (codec.dumps(earlier), reference(earlier)):
        assert codec.dumps(value, like) == reference(value)
    assert codec.dumps(earlier, reference(earlier)) == reference(earlier)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_from_library_callers_are_refused(bad: float) -> None:
    with pytest.raises(CodecError, match="not JSON"):
        codec.encode_document({"a": [1, {"b": bad}]})


@given(
    st.dictionaries(keys, json_values, max_size=4),
    st.integers(2, 6),
    st.integers(1, 30),
    st.integers(1, 6),
)
def test_the_fast_limit_checks_refuse_exactly_what_the_full_walk_refuses(
    doc: dict[str, Any], depth: int, string: int, width: int
) -> None:
    limits = codec.Limits(
        max_document_bytes=10**9, max_depth=depth, max_string_bytes=string, max_keys=width
    )
    try:
        codec.check_limits(doc, limits)
        walk_ok = True
    except CodecError:
        walk_ok = False
    try:
        codec.encode_document(doc, limits)
        fast_ok = True
    except CodecError:
        fast_ok = False
    assert fast_ok == walk_ok


def _strict_canonical(data: bytes) -> bytes | None:
    try:
        return codec.canonical(data)
    except CodecError:
        return None


@given(json_values)
def test_is_canonical_agrees_with_the_strict_parser_on_encoded_values(value: Any) -> None:
    data = codec.dumps(value)
    long_number = re.search(rb"\d{19}", data) is not None  # sent to the strict path
    assert codec.is_canonical(data) == (_strict_canonical(data) == data and not long_number)


@pytest.mark.parametrize(
    "data",
    [
        b'{\n  "a": 1,\n  "a": 1\n}\n',
        b'{\n  "a": 1\n}',
        b'{"a": 1}\n',
        b"NaN\n",
        b"1e400\n",
        b"12345678901234567890123\n",
        b'"\\ud800"\n',
        b"[\n  1.0\n]\n",
        b"\xff\n",
        b"",
        b'{\n  "b": 1,\n  "a": 2\n}\n',
        b"[\n  1,\n  2\n]\n",
        b'"x"\n',
    ],
)
def test_is_canonical_on_edge_cases(data: bytes) -> None:
    assert codec.is_canonical(data) == (_strict_canonical(data) == data and b"123456" not in data)
