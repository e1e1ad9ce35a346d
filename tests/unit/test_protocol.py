"""Mongrel2 wire protocol: hand-written messages, rejections, properties."""

import ast
import json
import pathlib
import sys

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import m2stack.protocol
from m2stack.httpspec import REASONS
from m2stack.protocol.http import render_http_response
from m2stack.protocol.mongrel2 import (
    MAX_IDS_PER_MESSAGE,
    Mongrel2Request,
    ProtocolError,
    encode_request,
    frame_close,
    frame_one,
    frame_response,
    parse_request,
    parse_response,
)

FAST = settings(max_examples=150, deadline=None)

# Byte-for-byte what Mongrel2 sends (lengths counted by hand).
JSON_GET = (
    b'f400bf85 12 /json 134:{"PATH":"/json","x-forwarded-for":"127.0.0.1",'
    b'"host":"localhost:6767","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/json",'
    b'"PATTERN":"/"},0:,'
)
TNET_GET = (
    b"f400bf85 12 /rep 126:4:PATH,4:/rep,6:accept,18:9:text/html,3:*/*,]"
    b"6:METHOD,3:GET,7:VERSION,8:HTTP/1.1,3:URI,8:/rep?a=1,5:QUERY,3:a=1,"
    b"7:PATTERN,1:/,}0:,"
)
JSON_REPEATED = (
    b'f400bf85 12 /rep 59:{"PATH":"/rep","accept":["text/html","*/*"],'
    b'"METHOD":"GET"},0:,'
)
TNET_DISCONNECT = b'f400bf85 12 @* 28:4:PATH,2:@*,6:METHOD,4:JSON,}21:{"type":"disconnect"},'
JSON_DISCONNECT = (
    b'f400bf85 12 @* 29:{"PATH":"@*","METHOD":"JSON"},21:{"type":"disconnect"},'
)
TNET_BINARY_POST = (
    b"f400bf85 7 /up 60:6:METHOD,4:POST,12:content-type,24:application/octet-stream,}"
    b"12:\x00\xff,}:\r\n 3:x,,"
)
VALID = [JSON_GET, TNET_GET, JSON_REPEATED, TNET_DISCONNECT, JSON_DISCONNECT, TNET_BINARY_POST]


# -- parse_request examples ------------------------------------------------


def test_json_headers():
    req = parse_request(JSON_GET)
    assert req.sender == b"f400bf85"
    assert req.conn_id == b"12"
    assert req.path == "/json"
    assert req.body == b""
    assert req.headers == {
        "PATH": "/json",
        "x-forwarded-for": "127.0.0.1",
        "host": "localhost:6767",
        "METHOD": "GET",
        "VERSION": "HTTP/1.1",
        "URI": "/json",
        "PATTERN": "/",
    }
    assert req.method == "GET"
    assert not req.is_control and req.control is None and not req.is_disconnect


def test_tnetstring_headers_with_repeated_header():
    req = parse_request(TNET_GET)
    assert req.path == "/rep"
    assert req.headers["accept"] == ["text/html", "*/*"]
    assert req.headers["QUERY"] == "a=1"
    assert req.headers["URI"] == "/rep?a=1"
    assert req.method == "GET"


def test_json_repeated_header_is_list():
    assert parse_request(JSON_REPEATED).headers["accept"] == ["text/html", "*/*"]


@pytest.mark.parametrize("msg", [TNET_DISCONNECT, JSON_DISCONNECT])
def test_disconnect_control_message(msg):
    req = parse_request(msg)
    assert req.method == "JSON"
    assert req.is_control
    assert req.control == {"type": "disconnect"}
    assert req.is_disconnect
    assert req.path == "@*"


def test_other_control_message_is_not_disconnect():
    req = parse_request(encode_request(b"s", 3, "@*", {"METHOD": "JSON"}, b'{"type":"ping"}'))
    assert req.is_control and not req.is_disconnect
    assert req.control == {"type": "ping"}


def test_binary_body_with_delimiters_inside():
    req = parse_request(TNET_BINARY_POST)
    assert req.body == b"\x00\xff,}:\r\n 3:x,"
    assert req.conn_id == b"7"
    assert req.method == "POST"


def test_websocket_methods_are_just_exposed():
    for method in ("WEBSOCKET_HANDSHAKE", "WEBSOCKET"):
        msg = encode_request(b"s", 1, "/ws", {"METHOD": method, "FLAGS": "0x81"}, b"\x81\x00")
        req = parse_request(msg)
        assert req.method == method and not req.is_control


def test_non_utf8_header_bytes_survive_in_both_formats():
    tnet = b"s 1 / 27:6:METHOD,3:GET,4:x-ua,2:\xff\xfe,}0:,"
    body = b'{"METHOD":"GET","x-ua":"\xff\xfe"}'
    json_msg = b"s 1 / %d:%b,0:," % (len(body), body)
    for msg in (tnet, json_msg):
        value = parse_request(msg).headers["x-ua"]
        assert value.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_request_is_frozen():
    req = parse_request(JSON_GET)
    with pytest.raises(AttributeError):
        req.path = "/other"


def test_constructing_request_directly():
    req = Mongrel2Request(b"s", b"1", "/", {"METHOD": "JSON"}, b'{"type":"disconnect"}')
    assert req.is_disconnect
    assert Mongrel2Request(b"s", b"1", "/", {}, b"").method == ""
    assert req == Mongrel2Request(b"s", b"1", "/", {"METHOD": "JSON"}, b'{"type":"disconnect"}')


# -- parse_request rejections ----------------------------------------------

OK_HEAD = b"6:METHOD,3:GET,"


def tnet(headers_payload: bytes, body: bytes = b"0:,", prefix: bytes = b"s 1 / ") -> bytes:
    return prefix + b"%d:%b}" % (len(headers_payload), headers_payload) + body


def jsn(text: bytes, body: bytes = b"0:,", prefix: bytes = b"s 1 / ") -> bytes:
    return prefix + b"%d:%b," % (len(text), text) + body


MALFORMED = {
    "empty": b"",
    "one token": b"sender",
    "two tokens": b"s 1",
    "three tokens, no headers": b"s 1 /",
    "nothing after path": b"s 1 / ",
    "empty sender": tnet(OK_HEAD, prefix=b" 1 / "),
    "empty conn id": tnet(OK_HEAD, prefix=b"s  / "),
    "letters in conn id": tnet(OK_HEAD, prefix=b"s 1a / "),
    "negative conn id": tnet(OK_HEAD, prefix=b"s -1 / "),
    "non-ascii digit conn id": tnet(OK_HEAD, prefix="s ١ / ".encode()),
    "path with space": tnet(OK_HEAD, prefix=b"s 1 /a b "),
    "headers length not digits": b"s 1 / x:6:METHOD,3:GET,}0:,",
    "headers length leading zero": b"s 1 / 015:6:METHOD,3:GET,}0:,",
    "headers length 10 digits": b"s 1 / 0000000015:6:METHOD,3:GET,}0:,",
    "headers length too long": b"s 1 / 99:6:METHOD,3:GET,}0:,",
    "headers length too short": b"s 1 / 14:6:METHOD,3:GET,}0:,",
    "headers bad tag": b"s 1 / 15:6:METHOD,3:GET,]0:,",
    "headers unknown tag": b"s 1 / 15:6:METHOD,3:GET,X0:,",
    "tnet key not string": tnet(OK_HEAD + b"1:1#1:x,"),
    "tnet value int": tnet(OK_HEAD + b"1:x,1:1#"),
    "tnet value dict": tnet(OK_HEAD + b"1:x,0:}"),
    "tnet value null": tnet(OK_HEAD + b"1:x,0:~"),
    "tnet list holds int": tnet(OK_HEAD + b"1:x,4:1:1#]"),
    "tnet list holds list": tnet(OK_HEAD + b"1:x,3:0:]]"),
    "tnet odd dict": tnet(OK_HEAD + b"1:x,"),
    "tnet inner garbage": tnet(OK_HEAD + b"zz"),
    "json invalid": jsn(b'{"METHOD":"GET"'),
    "json not object": jsn(b'["METHOD","GET"]'),
    "json value int": jsn(b'{"METHOD":"GET","x":1}'),
    "json value null": jsn(b'{"METHOD":"GET","x":null}'),
    "json value object": jsn(b'{"METHOD":"GET","x":{}}'),
    "json list holds int": jsn(b'{"METHOD":"GET","x":["a",1]}'),
    "json nested too deep": jsn(b"[" * 100_000 + b"]" * 100_000),
    "json empty": jsn(b""),
    "missing body": tnet(OK_HEAD, body=b""),
    "body bad tag": tnet(OK_HEAD, body=b"0:]"),
    "body truncated": tnet(OK_HEAD, body=b"5:abc"),
    "body missing tag": tnet(OK_HEAD, body=b"3:abc"),
    "body length garbage": tnet(OK_HEAD, body=b"-3:abc,"),
    "trailing bytes": tnet(OK_HEAD, body=b"0:,x"),
    "two bodies": tnet(OK_HEAD, body=b"0:,0:,"),
    "no METHOD": tnet(b"4:PATH,1:/,"),
    "empty METHOD": tnet(b"6:METHOD,0:,"),
    "METHOD as list": tnet(b"6:METHOD,6:3:GET,]"),
    "json METHOD as list": jsn(b'{"METHOD":["GET"]}'),
    "control body not json": tnet(b"6:METHOD,4:JSON,", body=b"3:abc,"),
    "control body empty": tnet(b"6:METHOD,4:JSON,", body=b"0:,"),
    "control body array": tnet(b"6:METHOD,4:JSON,", body=b"2:[],"),
    "control body bad utf8": tnet(b"6:METHOD,4:JSON,", body=b'5:"\xff\xfe",'),
    "control body deep": tnet(b"6:METHOD,4:JSON,", body=b"%d:%b," % (20_000, b"[" * 20_000)),
}


@pytest.mark.parametrize("msg", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_raises_protocol_error(msg):
    with pytest.raises(ProtocolError):
        parse_request(msg)


def test_protocol_error_is_value_error():
    assert issubclass(ProtocolError, ValueError)


# -- encode_request ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "tnetstring"])
def test_encode_matches_handwritten(fmt):
    msg = JSON_GET if fmt == "json" else TNET_GET
    req = parse_request(msg)
    assert encode_request(req.sender, req.conn_id, req.path, req.headers, req.body, fmt) == msg


def test_encode_accepts_int_and_str_conn_ids():
    a = encode_request(b"s", 12, "/", {"METHOD": "GET"}, b"")
    assert a == encode_request(b"s", "12", "/", {"METHOD": "GET"}, b"")
    assert a == encode_request(b"s", b"12", "/", {"METHOD": "GET"}, b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sender": b""},
        {"sender": b"a b"},
        {"conn_id": b""},
        {"conn_id": -1},
        {"conn_id": "x"},
        {"path": "/a b"},
        {"headers": {"METHOD": 1}},
        {"headers": {"METHOD": ["a", 1]}},
        {"headers": {1: "a"}},
        {"header_format": "xml"},
        {"headers": {"METHOD": "\ud800"}},  # lone surrogate: no bytes for it
    ],
)
def test_encode_rejects_bad_arguments(kwargs):
    args = {"sender": b"s", "conn_id": 1, "path": "/", "headers": {"METHOD": "GET"}, "body": b""}
    args.update(kwargs)
    with pytest.raises(ValueError):
        encode_request(**args)


# -- responses --------------------------------------------------------------


def test_frame_response_single():
    assert frame_response(b"f400bf85", [b"12"], b"HTTP/1.1 200 OK\r\n\r\n") == [
        b"f400bf85 2:12, HTTP/1.1 200 OK\r\n\r\n"
    ]


def test_frame_response_mixed_id_types_and_generators():
    assert frame_response(b"s", (i for i in [1, "22", b"333"]), b"x") == [b"s 8:1 22 333, x"]


def test_frame_close():
    assert frame_close(b"s", [5, 6]) == [b"s 3:5 6, "]
    assert frame_close(b"s", [5]) == frame_response(b"s", [5], b"")
    assert parse_response(frame_close(b"s", [5])[0]) == (b"s", [b"5"], b"")


def test_frame_one_is_frame_response_for_one_connection():
    assert frame_one(b"f400bf85", b"12", b"HTTP/1.1 200 OK\r\n\r\n") == frame_response(
        b"f400bf85", [b"12"], b"HTTP/1.1 200 OK\r\n\r\n")[0]
    assert frame_one(b"s", b"5", b"") == frame_close(b"s", [5])[0]


@pytest.mark.parametrize("sender, conn_id, error", [
    (b"s", b"", ProtocolError), (b"s", b"-1", ProtocolError), (b"s", b"1 2", ProtocolError),
    (b"a b", b"1", ProtocolError), (b"", b"1", ProtocolError), ("s", b"1", TypeError), (b"s", 1.0, TypeError)])
def test_frame_one_refuses_what_frame_response_refuses(sender, conn_id, error):
    with pytest.raises(error):
        frame_one(sender, conn_id, b"x")


def test_frame_response_no_ids():
    assert frame_response(b"s", [], b"body") == []
    assert frame_close(b"s", []) == []


@pytest.mark.parametrize("count, sizes", [(1, [1]), (128, [128]), (129, [128, 1]), (256, [128, 128]),
                                          (257, [128, 128, 1])])
def test_frame_response_chunks_at_128(count, sizes):
    assert MAX_IDS_PER_MESSAGE == 128
    ids = list(range(1000, 1000 + count))
    frames = frame_response(b"s", ids, b"BODY")
    parsed = [parse_response(f) for f in frames]
    assert [len(p[1]) for p in parsed] == sizes
    assert [int(i) for p in parsed for i in p[1]] == ids
    assert all(p[0] == b"s" and p[2] == b"BODY" for p in parsed)


@pytest.mark.parametrize("bad", [b"", b"-1", b"1 2", b"1a", -1, "x", "١"])
def test_frame_response_rejects_bad_ids(bad):
    with pytest.raises(ProtocolError):
        frame_response(b"s", [1, bad], b"x")


def test_frame_response_rejects_bad_types_and_senders():
    with pytest.raises(TypeError):
        frame_response(b"s", [True], b"x")
    with pytest.raises(TypeError):
        frame_response(b"s", [1.0], b"x")
    with pytest.raises(ProtocolError):
        frame_response(b"a b", [1], b"x")
    with pytest.raises(ProtocolError):
        frame_response(b"", [1], b"x")


def test_parse_response_body_may_contain_anything():
    assert parse_response(b"s 1:7, a 3:1 2, b") == (b"s", [b"7"], b"a 3:1 2, b")


MALFORMED_RESPONSES = {
    "empty": b"",
    "no space": b"s",
    "empty sender": b" 1:1, x",
    "no netstring": b"s x",
    "bad length": b"s 01:1, x",
    "short": b"s 3:1, x",
    "wrong tag": b"s 1:1] x",
    "no space after netstring": b"s 1:1,x",
    "ends at netstring": b"s 1:1,",
    "empty ids": b"s 0:, x",
    "double space": b"s 3:1  2, x",
    "leading space": b"s 2: 1, x",
    "letters": b"s 1:a, x",
    "too many ids": b"s %d:%b, x" % (len(b" ".join([b"1"] * 129)), b" ".join([b"1"] * 129)),
}


@pytest.mark.parametrize("msg", MALFORMED_RESPONSES.values(), ids=MALFORMED_RESPONSES.keys())
def test_malformed_response_raises_protocol_error(msg):
    with pytest.raises(ProtocolError):
        parse_response(msg)


# -- render_http_response ----------------------------------------------------


def test_render_http_response():
    out = render_http_response(
        200, "OK", [("Content-Type", "text/plain"), ("Content-Length", "2")], b"hi"
    )
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"


def test_render_adds_nothing_and_keeps_order_and_duplicates():
    out = render_http_response(404, REASONS[404], [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"", "HTTP/1.0")
    assert out == b"HTTP/1.0 404 Not Found\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    assert render_http_response(204, "No Content", [], b"") == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_render_latin1_value():
    out = render_http_response(200, "OK", [("X-Name", "café")], b"")
    assert b"X-Name: caf\xe9\r\n" in out


@pytest.mark.parametrize(
    "status, reason, headers",
    [
        (200, "OK", [("X-A", "1\r\nSet-Cookie: evil=1")]),
        (200, "OK", [("X-A", "1\nevil")]),
        (200, "OK", [("X-A", "1\revil")]),
        (200, "OK", [("X-A", "a\0b")]),
        (200, "OK", [("X-A\r\nEvil", "1")]),
        (200, "OK", [("X A", "1")]),
        (200, "OK", [("X-A:", "1")]),
        (200, "OK", [("", "1")]),
        (200, "OK", [("Ünicode", "1")]),
        (200, "OK", [("X-A", "snowman ☃")]),
        (200, "OK\r\nX-Evil: 1", []),
        (200, "☃", []),
        (99, "Low", []),
        (1000, "High", []),
    ],
)
def test_render_rejects_injection_and_bad_input(status, reason, headers):
    with pytest.raises(ProtocolError):
        render_http_response(status, reason, headers, b"")


def test_reasons_table():
    assert REASONS[200] == "OK"
    assert REASONS[404] == "Not Found"
    assert REASONS[503] == "Service Unavailable"


@pytest.mark.parametrize("module", ["mongrel2", "http", "tnetstring", "errors"])
def test_protocol_modules_import_only_the_standard_library(module):
    """Sans-I/O: no socket, hub or app; the shared HTTP rules are the one exception."""
    path = pathlib.Path(m2stack.protocol.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    ours = {name for name in imported if name.split(".")[0] == "m2stack"}
    assert ours <= {"m2stack", "m2stack.httpspec", "m2stack.protocol", "m2stack.protocol.errors",
                    "m2stack.protocol.tnetstring"}
    assert all(name.split(".")[0] in sys.stdlib_module_names for name in imported - ours)


# -- properties ------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=20)
header_values = text | st.lists(text, max_size=3)
methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "WEBSOCKET", "WEBSOCKET_HANDSHAKE"])
senders = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b" ", b"-"))
conn_ids = st.integers(min_value=0, max_value=10**12)
paths = st.text(st.characters(codec="utf-8", exclude_characters=" "), max_size=30)
formats = st.sampled_from(["json", "tnetstring"])


@st.composite
def requests(draw):
    headers = draw(st.dictionaries(text, header_values, max_size=6))
    headers["METHOD"] = draw(methods)
    return (
        draw(senders),
        draw(conn_ids),
        draw(paths),
        headers,
        draw(st.binary(max_size=80)),
        draw(formats),
    )


@FAST
@given(requests())
def test_request_roundtrip(args):
    sender, conn_id, path, headers, body, fmt = args
    req = parse_request(encode_request(sender, conn_id, path, headers, body, fmt))
    assert (req.sender, req.conn_id, req.path, req.headers, req.body) == (
        sender,
        b"%d" % conn_id,
        path,
        headers,
        body,
    )


@FAST
@given(senders, conn_ids, formats, st.dictionaries(text, text, max_size=3))
def test_control_roundtrip(sender, conn_id, fmt, control):
    body = json.dumps(control).encode()
    req = parse_request(encode_request(sender, conn_id, "@*", {"METHOD": "JSON"}, body, fmt))
    assert req.is_control and req.control == control
    assert req.is_disconnect == (control.get("type") == "disconnect")


# Sizes on both sides of every 128-id chunk boundary, not just the short lists
# st.lists draws by default (it almost never passes 20 elements).
id_counts = st.sampled_from([1, 2, 127, 128, 129, 255, 256, 257, 300]) | st.integers(0, 400)
id_lists = id_counts.flatmap(lambda n: st.lists(conn_ids, min_size=n, max_size=n))


@FAST
@given(senders, id_lists, st.binary(max_size=80))
def test_response_roundtrip(sender, ids, body):
    if len(ids) == 1:
        assert [frame_one(sender, b"%d" % ids[0], body)] == frame_response(sender, ids, body)
    event(f"{-(-len(ids) // MAX_IDS_PER_MESSAGE)} frames")
    frames = frame_response(sender, ids, body)
    assert len(frames) == -(-len(ids) // MAX_IDS_PER_MESSAGE)
    seen = []
    for frame in frames:
        got_sender, got_ids, got_body = parse_response(frame)
        assert got_sender == sender and got_body == body
        assert 1 <= len(got_ids) <= MAX_IDS_PER_MESSAGE
        seen.extend(int(i) for i in got_ids)
    assert seen == ids


def only_protocol_errors(msg: bytes) -> None:
    try:
        parse_request(msg)
    except ProtocolError:
        pass
    try:
        parse_response(msg)
    except ProtocolError:
        pass


@FAST
@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_raise_protocol_error(msg):
    only_protocol_errors(msg)


# Raw bytes die at the first prefix check; these are built from the message's own pieces
# (netstring lengths that are right, off by a little or absurd; every tag; nesting), so
# most of them reach the netstring, header and body parsers.
netstring_tags = st.sampled_from(list(b",#^!~]}") + [ord("x")])


@st.composite
def netstrings(draw, depth=0):
    if depth < 3 and draw(st.integers(0, 3)) == 0:
        payload = b"".join(draw(st.lists(netstrings(depth + 1), max_size=4)))
    else:
        payload = draw(st.binary(max_size=12) | st.sampled_from([b"METHOD", b"GET", b"JSON", b"12", b"true"]))
    length = len(payload) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 10**6]))
    return b"%d:%b%c" % (max(length, 0), payload, draw(netstring_tags))


@st.composite
def near_messages(draw) -> bytes:
    prefix = b"%b %d %b " % (draw(senders), draw(conn_ids), draw(st.sampled_from([b"/", b"/json", b"@*"])))
    return prefix + b"".join(draw(st.lists(netstrings(), min_size=1, max_size=3)))


def _parse_outcome(msg: bytes) -> str:
    """Which check stopped the parser (the error's wording without its details)."""
    try:
        parse_request(msg)
    except ProtocolError as exc:
        return str(exc).split(":")[0].split(" at offset")[0][:40]
    return "parsed"


@settings(max_examples=300, deadline=None)
@given(near_messages())
def test_near_valid_messages_only_raise_protocol_error(msg):
    event(_parse_outcome(msg))
    only_protocol_errors(msg)


def test_near_valid_messages_get_past_the_prefix():
    """The strategy above must reach deep states, or it tests nothing beyond the prefix."""
    outcomes: list[str] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(near_messages())
    def sample(msg):  # 300 draws in one run (300 `.example()` calls took 45 s)
        outcomes.append(_parse_outcome(msg))

    sample()
    assert "expected 'SENDER CONN_ID PATH ' prefix" not in outcomes
    assert len(set(outcomes)) >= 5, sorted(set(outcomes))


# Arbitrary bytes after a valid prefix reach the netstring/header parsers.
@FAST
@given(st.sampled_from([b"s 1 / ", b"s 1 / 15:", b"s 1 / 15:6:METHOD,3:GET,}", b"s 3:1 2, "]), st.binary(max_size=60))
def test_arbitrary_tails_only_raise_protocol_error(prefix, tail):
    only_protocol_errors(prefix + tail)


@st.composite
def mutations(draw, messages):
    msg = bytearray(draw(messages))
    i = draw(st.integers(0, len(msg)))
    kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if kind == "flip" and i < len(msg):
        msg[i] ^= draw(st.integers(1, 255))
    elif kind == "insert":
        msg.insert(i, draw(st.sampled_from(b" :,]}#~0123456789x\xff")))
    elif kind == "delete" and i < len(msg):
        del msg[i]
    else:
        del msg[i:]
    return bytes(msg)


valid_requests = st.sampled_from(VALID) | requests().map(lambda a: encode_request(*a))
valid_responses = st.builds(
    lambda s, ids, body: frame_response(s, ids, body)[0],
    senders,
    st.lists(conn_ids, min_size=1, max_size=5),
    st.binary(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(mutations(valid_requests | valid_responses))
def test_mutated_messages_only_raise_protocol_error(msg):
    only_protocol_errors(msg)
