"""Mongrel2 1.12 handler wire protocol, sans I/O.

Request (mongrel2 -> handler), one ZeroMQ message::

    SENDER SP CONN_ID SP PATH SP HEADERS BODY
    HEADERS = LEN:{json},      (protocol='json', the default)
            | LEN:k,v,...}     (protocol='tnetstring')
    BODY    = LEN:raw bytes,

Response (handler -> mongrel2)::

    SENDER SP LEN:ID ID ID, SP HTTP-RESPONSE-BYTES      (empty bytes = close)

Everything here maps bytes to values and back; sockets live elsewhere. The
HTTP response bytes inside a reply are rendered by m2stack.protocol.http.
Header names, values and the path are raw client bytes, decoded as UTF-8
with surrogateescape: no byte is lost and decoding never raises; the app
layer decides what is invalid.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from m2stack.protocol import tnetstring
from m2stack.protocol.errors import ProtocolError
from m2stack.protocol.tnetstring import TNetStringError

__all__ = [
    "MAX_IDS_PER_MESSAGE",
    "Mongrel2Request",
    "ProtocolError",
    "encode_request",
    "frame_close",
    "frame_one",
    "frame_response",
    "parse_request",
    "parse_response",
    "peek_request",
    "is_disconnect_notice",
]

# Mongrel2 drops a response that addresses more connections than this.
MAX_IDS_PER_MESSAGE = 128

_COMMA = ord(",")
_RBRACKET = ord("]")
_RBRACE = ord("}")


@dataclass(frozen=True, slots=True)
class Mongrel2Request:
    """One parsed request. ``headers`` maps names to str, or to a list of str
    for a repeated header; Mongrel2 lowercases client header names and adds
    trusted upper-case ones (METHOD, PATH, URI, QUERY, VERSION, ...)."""

    sender: bytes
    conn_id: bytes
    path: str
    headers: dict[str, str | list[str]]
    body: bytes
    # Decoded once here, so a bad control body fails at parse time.
    _control: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.headers.get("METHOD") == "JSON":
            object.__setattr__(self, "_control", _json_object(self.body, "control body"))

    @property
    def method(self) -> str:
        method = self.headers.get("METHOD", "")
        return method if isinstance(method, str) else ""

    @property
    def is_control(self) -> bool:
        return self.method == "JSON"

    @property
    def control(self) -> dict[str, Any] | None:
        return self._control

    @property
    def is_disconnect(self) -> bool:
        return self._control is not None and self._control.get("type") == "disconnect"


def _json_object(text: bytes | str, what: str, *, strict: bool = True) -> dict[str, Any]:
    try:
        value = json.loads(text, strict=strict)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ProtocolError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return value


# -- requests --------------------------------------------------------------


HeaderDecoder = Callable[[bytes], dict[str, "str | list[str]"]]


def _prefix(msg: bytes) -> tuple[int, int, int, bytes]:
    """The three spaces after SENDER, CONN_ID and PATH, and the connection id: find() and
    slicing, no split() of the body."""
    sp1 = msg.find(b" ")
    sp2 = msg.find(b" ", sp1 + 1)
    sp3 = msg.find(b" ", sp2 + 1)
    if sp1 <= 0 or sp2 < 0 or sp3 < 0:
        raise ProtocolError("expected 'SENDER CONN_ID PATH ' prefix")
    conn_id = msg[sp1 + 1 : sp2]
    if not conn_id.isdigit():  # also rejects empty; bytes.isdigit is ASCII-only
        raise ProtocolError(f"connection id {conn_id!r} is not ASCII digits")
    return sp1, sp2, sp3, conn_id


def _headers(msg: bytes, pos: int, fast_json: HeaderDecoder | None) -> tuple[dict[str, str | list[str]], int, str]:
    """The headers netstring at `pos`: (headers, where it ends, METHOD). Raises
    TNetStringError for the caller to turn into a ProtocolError."""
    tag, start, stop = tnetstring.scan(msg, pos)
    if tag == _RBRACE:
        headers = _tnet_headers(msg, start, stop)
    elif tag == _COMMA:
        headers = _json_headers(msg[start:stop], fast_json)
    else:
        raise ProtocolError(f"headers end in {chr(tag)!r}, not ',' or '}}'")
    method = headers.get("METHOD")
    if not method or not isinstance(method, str):
        raise ProtocolError("METHOD header missing or empty")
    return headers, stop, method


def _body(msg: bytes, pos: int) -> bytes:
    tag, start, stop = tnetstring.scan(msg, pos)
    if tag != _COMMA:
        raise ProtocolError("body netstring does not end in ','")
    if stop + 1 != len(msg):
        raise ProtocolError("trailing bytes after body")
    return msg[start:stop]


def parse_request(msg: bytes, fast_json: HeaderDecoder | None = None) -> Mongrel2Request:
    """Parse one request message as Mongrel2 sends it to a handler.

    `fast_json`, if given, decodes JSON headers first (e.g. msgspec's C decoder, typed
    to a dict of str or list of str); anything it refuses goes to the tolerant parser
    here, which decides. Callers choose speed; this module stays standard library only."""
    sp1, sp2, sp3, conn_id = _prefix(msg)
    try:
        headers, stop, _ = _headers(msg, sp3 + 1, fast_json)
        body = _body(msg, stop + 1)
    except TNetStringError as exc:
        raise ProtocolError(f"bad netstring: {exc}") from exc
    return Mongrel2Request(
        sender=msg[:sp1],
        conn_id=conn_id,
        path=msg[sp2 + 1 : sp3].decode("utf-8", "surrogateescape"),
        headers=headers,
        body=body,
    )


def peek_request(msg: bytes, fast_json: HeaderDecoder | None = None) -> tuple[bytes, bytes, str, bytes]:
    """(sender, conn_id, METHOD, body) of a request message: what a router needs, each
    part checked as `parse_request` checks it, at less cost. The body's netstring is read
    only when METHOD is JSON (whose body says what the notice is); otherwise it is b"" and
    left unchecked, for the handler's full parse to refuse."""
    sp1, _, sp3, conn_id = _prefix(msg)
    try:
        _, stop, method = _headers(msg, sp3 + 1, fast_json)
        body = _body(msg, stop + 1) if method == "JSON" else b""
    except TNetStringError as exc:
        raise ProtocolError(f"bad netstring: {exc}") from exc
    return msg[:sp1], conn_id, method, body


def is_disconnect_notice(body: bytes) -> bool:
    """A JSON notice's body is mongrel2's disconnect notice."""
    return _json_object(body, "control body").get("type") == "disconnect"


def _tnet_headers(msg: bytes, pos: int, end: int) -> dict[str, str | list[str]]:
    # A specialised tnetstring dict walk: only strings and lists of strings
    # are legal, and decoding straight to str skips an intermediate dict.
    headers: dict[str, str | list[str]] = {}
    scan = tnetstring.scan
    while pos < end:
        tag, start, stop = scan(msg, pos, end)
        if tag != _COMMA:
            raise ProtocolError("header name is not a string")
        key = msg[start:stop].decode("utf-8", "surrogateescape")
        if stop + 1 >= end:
            raise ProtocolError(f"header {key!r} has no value")
        tag, start, stop = scan(msg, stop + 1, end)
        if tag == _COMMA:
            headers[key] = msg[start:stop].decode("utf-8", "surrogateescape")
        elif tag == _RBRACKET:  # a repeated header
            values = []
            while start < stop:
                tag, vstart, vstop = scan(msg, start, stop)
                if tag != _COMMA:
                    raise ProtocolError(f"header {key!r} list holds a non-string")
                values.append(msg[vstart:vstop].decode("utf-8", "surrogateescape"))
                start = vstop + 1
            headers[key] = values
        else:
            raise ProtocolError(f"header {key!r} is not a string or list")
        pos = stop + 1
    return headers


def _json_headers(payload: bytes, fast_json: HeaderDecoder | None) -> dict[str, str | list[str]]:
    if fast_json is not None:
        try:
            return fast_json(payload)
        except Exception:  # any refusal: the tolerant parser below decides
            pass
    # Mongrel2 copies raw header bytes into the JSON and escapes only '"' and '\', so
    # values may hold control characters and bytes that are not UTF-8: decode like the
    # tnetstring path, and let control characters stand (strict=False), rather than refuse.
    headers = _json_object(payload.decode("utf-8", "surrogateescape"), "headers", strict=False)
    for key, value in headers.items():
        if not _is_header_value(value):
            raise ProtocolError(f"header {key!r} is not a string or list of strings")
    return headers


def _is_header_value(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def encode_request(
    sender: bytes,
    conn_id: bytes | int | str,
    path: str,
    headers: dict[str, str | list[str]],
    body: bytes,
    header_format: str = "tnetstring",
) -> bytes:
    """Build a request exactly as Mongrel2 would send it (inverse of
    parse_request). Headers are not checked for METHOD, so tests can build
    otherwise well-formed but invalid requests."""
    _check_sender(sender)
    cid = _conn_id(conn_id)
    path_b = path.encode("utf-8", "surrogateescape")
    if b" " in path_b:
        raise ProtocolError("path may not contain a space")
    for key, value in headers.items():
        if not isinstance(key, str) or not _is_header_value(value):
            raise ProtocolError(f"header {key!r} must map str to str or list of str")
    try:
        if header_format == "tnetstring":
            head = tnetstring.dumps(headers)
        elif header_format == "json":
            # ensure_ascii: any str (even a lone surrogate) survives the trip.
            text = json.dumps(headers, separators=(",", ":")).encode("ascii")
            head = tnetstring.dumps(text)
        else:
            raise ValueError(f"header_format must be 'tnetstring' or 'json', not {header_format!r}")
        tail = tnetstring.dumps(body)
    except TNetStringError as exc:
        raise ProtocolError(str(exc)) from exc
    return b"%b %b %b %b%b" % (sender, cid, path_b, head, tail)


# -- responses -------------------------------------------------------------


def _check_sender(sender: bytes) -> None:
    if not isinstance(sender, bytes):
        raise TypeError(f"sender must be bytes, not {type(sender).__name__}")
    if not sender or b" " in sender:
        raise ProtocolError(f"sender {sender!r} is empty or contains a space")


def _conn_id(value: bytes | int | str) -> bytes:
    if isinstance(value, bytes):
        out = value
    elif isinstance(value, str):
        out = value.encode("ascii", "replace")  # non-ASCII then fails isdigit
    elif isinstance(value, int) and not isinstance(value, bool):
        out = b"%d" % value  # negatives fail isdigit below
    else:
        raise TypeError(f"connection id must be bytes, int or str, not {type(value).__name__}")
    if not out.isdigit():
        raise ProtocolError(f"connection id {value!r} is not ASCII digits")
    return out


def frame_response(
    sender: bytes, conn_ids: Iterable[bytes | int | str], body: bytes
) -> list[bytes]:
    """Address ``body`` to connections, one message per 128 ids."""
    _check_sender(sender)
    ids = [_conn_id(c) for c in conn_ids]
    out = []
    for i in range(0, len(ids), MAX_IDS_PER_MESSAGE):
        targets = b" ".join(ids[i : i + MAX_IDS_PER_MESSAGE])
        out.append(b"%b %d:%b, %b" % (sender, len(targets), targets, body))
    return out


def frame_one(sender: bytes, conn_id: bytes, body: bytes) -> bytes:
    """``body`` to one connection: ``frame_response(sender, [conn_id], body)[0]`` in one
    call (a reply's usual case, on every request's path); the same errors."""
    if type(sender) is bytes and type(conn_id) is bytes and sender and b" " not in sender and conn_id.isdigit():
        return b"%b %d:%b, %b" % (sender, len(conn_id), conn_id, body)
    return frame_response(sender, (conn_id,), body)[0]  # raises what is wrong


def frame_close(sender: bytes, conn_ids: Iterable[bytes | int | str]) -> list[bytes]:
    """An empty body tells Mongrel2 to close the connections."""
    return frame_response(sender, conn_ids, b"")


def parse_response(msg: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Split one framed response into (sender, conn_ids, body)."""
    sp = msg.find(b" ")
    if sp <= 0:
        raise ProtocolError("expected 'SENDER ' prefix")
    try:
        tag, start, stop = tnetstring.scan(msg, sp + 1)
    except TNetStringError as exc:
        raise ProtocolError(f"bad id netstring: {exc}") from exc
    if tag != _COMMA or msg[stop + 1 : stop + 2] != b" ":
        raise ProtocolError("id netstring must end in ', '")
    ids = msg[start:stop].split(b" ")
    if len(ids) > MAX_IDS_PER_MESSAGE:
        raise ProtocolError(f"more than {MAX_IDS_PER_MESSAGE} connection ids")
    for cid in ids:
        if not cid.isdigit():
            raise ProtocolError(f"connection id {cid!r} is not ASCII digits")
    return msg[:sp], ids, msg[stop + 2 :]
