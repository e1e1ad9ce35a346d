"""tnetstring encode/decode: examples, rejections and round-trip properties."""

import ast
import math
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m2stack.protocol import tnetstring
from m2stack.protocol.tnetstring import MAX_DEPTH, TNetStringError, dumps, loads, pop, scan

FAST = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize(
    "value, wire",
    [
        (None, b"0:~"),
        (True, b"4:true!"),
        (False, b"5:false!"),
        (0, b"1:0#"),
        (-42, b"3:-42#"),
        (1.5, b"3:1.5^"),
        (b"", b"0:,"),
        (b"hello", b"5:hello,"),
        ([], b"0:]"),
        ({}, b"0:}"),
        ([1, b"a"], b"8:1:1#1:a,]"),
        ({b"k": [None]}, b"10:1:k,3:0:~]}"),
    ],
)
def test_examples_both_ways(value, wire):
    assert dumps(value) == wire
    assert loads(wire) == value


def test_str_is_encoded_utf8_and_comes_back_as_bytes():
    assert dumps("é") == b"2:\xc3\xa9,"
    assert loads(dumps("é")) == "é".encode()
    assert dumps({"k": "v"}) == dumps({b"k": b"v"})


def test_str_with_escaped_bytes_reencodes_exactly():
    raw = b"\xff\xfe"
    assert dumps(raw.decode("utf-8", "surrogateescape")) == dumps(raw)


def test_tuple_dumps_as_list_and_bytearray_as_bytes():
    assert dumps((1, 2)) == dumps([1, 2])
    assert dumps(bytearray(b"x")) == b"1:x,"


def test_pop_returns_rest():
    assert pop(b"1:a,2:bc,tail") == (b"a", b"2:bc,tail")
    assert pop(b"0:~") == (None, b"")


def test_loads_accepts_bytearray_and_memoryview():
    assert loads(bytearray(b"1:a,")) == b"a"
    assert loads(memoryview(b"1:a,")) == b"a"


def test_loads_rejects_non_buffer():
    with pytest.raises(TypeError):
        loads(5)
    with pytest.raises(TypeError):
        loads("1:a,")


def test_scan_reports_offsets():
    data = b"xx3:abc,yy"
    assert scan(data, 2) == (ord(","), 4, 7)
    with pytest.raises(TNetStringError):
        scan(data, 2, 7)  # tag lies outside the window


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b":",
        b"1",
        b"1:",
        b"1:a",  # missing tag
        b"5:abc,",  # length beyond data
        b"-1:,",
        b"+1:a,",
        b" 1:a,",
        b"x1:a,",
        b"01:a,",  # leading zero
        b"1:a?",  # unknown tag
        b"1000000000:",  # 10 digits
        b"3:abc,x",  # trailing byte (loads only)
        b"2:1a#",
        b"0:#",
        b"1:-#",
        b"2:+1#",
        b"2: 1#",
        b"3:1_0#",
        b"3:nan^",
        b"3:inf^",
        b"0:^",
        b"2:1.+^",
        b"4:True!",
        b"1:1!",
        b"1:x~",
        b"4:1:a,}",  # odd dict
        b"8:1:1#1:a,}",  # int key
        b"3:0:~}",  # null key
        b"6:3:abc]",  # child runs past parent
        b"4:1:a,]extra",
    ],
)
def test_rejects(bad):
    with pytest.raises(TNetStringError):
        loads(bad)


def test_error_is_a_value_error():
    assert issubclass(TNetStringError, ValueError)


def nested(n: int) -> bytes:
    wire = b"0:]"
    for _ in range(n - 1):
        wire = b"%d:%b]" % (len(wire), wire)
    return wire


def test_depth_limit_on_loads():
    assert loads(nested(MAX_DEPTH)) is not None
    with pytest.raises(TNetStringError):
        loads(nested(MAX_DEPTH + 1))


def test_depth_limit_on_dumps_and_cycles():
    value: list = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert dumps(value) == nested(MAX_DEPTH)
    with pytest.raises(TNetStringError):
        dumps([value])
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(TNetStringError):
        dumps(cyclic)


def test_dumps_rejects_unsupported():
    for value in (object(), {1: b"x"}, {None: b"x"}, {1.5}):
        with pytest.raises(TypeError):
            dumps(value)
    for value in (math.inf, -math.inf, math.nan, "\ud800"):
        with pytest.raises(TNetStringError):
            dumps(value)


def test_huge_int_payload_is_rejected_cleanly():
    digits = b"9" * 5000  # beyond Python's int/str conversion limit
    with pytest.raises(TNetStringError):
        loads(b"%d:%b#" % (len(digits), digits))


# -- properties ------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.binary(max_size=10), children, max_size=5),
    max_leaves=25,
)


@FAST
@given(values)
def test_roundtrip(value):
    assert loads(dumps(value)) == value


@FAST
@given(values, values)
def test_pop_roundtrip(first, second):
    wire = dumps(first) + dumps(second)
    assert pop(wire) == (first, dumps(second))


@FAST
@given(st.text(max_size=30))
def test_str_roundtrip_via_utf8(text):
    assert loads(dumps(text)) == text.encode("utf-8", "surrogateescape")


def _only_tnetstring_errors(data):
    try:
        loads(data)
    except TNetStringError:
        pass
    try:
        pop(data)
    except TNetStringError:
        pass


@FAST
@given(st.binary(max_size=60))
def test_arbitrary_bytes_only_raise_tnetstring_error(data):
    _only_tnetstring_errors(data)


@FAST
@given(values, st.data())
def test_mutated_bytes_only_raise_tnetstring_error(value, data):
    wire = bytearray(dumps(value))
    i = data.draw(st.integers(0, len(wire)))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if kind == "flip" and i < len(wire):
        wire[i] ^= data.draw(st.integers(1, 255))
    elif kind == "insert":
        wire.insert(i, data.draw(st.integers(0, 255)))
    elif kind == "delete" and i < len(wire):
        del wire[i]
    else:
        del wire[i:]
    _only_tnetstring_errors(bytes(wire))


def test_module_imports_only_pure_stdlib():
    tree = ast.parse(pathlib.Path(tnetstring.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "re", "typing"}
