"""Tagged netstrings (https://tnetstrings.info), as spoken by Mongrel2.

An item is ``LENGTH:PAYLOAD TAG``: LENGTH is 1-9 ASCII digits, PAYLOAD is
exactly LENGTH bytes, TAG is one byte naming the type::

    ,  bytes      #  int      ^  float    !  bool ("true"/"false")
    ~  null (empty payload)   ]  list     }  dict (key, value, key, ...)

Pure functions over bytes; no I/O. Parsing works on offsets into the
original buffer so nested items are not copied before they are decoded.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["TNetStringError", "dumps", "loads", "pop", "scan", "MAX_DEPTH"]

# Containers may nest this deep; bounds recursion in both directions.
MAX_DEPTH = 64
# A 9-digit length is the spec's limit (keeps int() cheap and sizes sane);
# scan() hard-codes the matching 10-byte look-ahead.
MAX_LENGTH_DIGITS = 9
_MAX_PAYLOAD = 10**MAX_LENGTH_DIGITS - 1

# Tags as ints, because indexing bytes yields ints.
_COMMA = ord(",")
_HASH = ord("#")
_CARET = ord("^")
_BANG = ord("!")
_TILDE = ord("~")
_RBRACKET = ord("]")
_RBRACE = ord("}")

# Python's float() also takes "nan", "1_0", " 1", so validate first. Floats
# are rare (Mongrel2 never sends them), so a regex is fine here.
_FLOAT = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class TNetStringError(ValueError):
    """The bytes are not a well-formed tnetstring (or a value cannot be one)."""


# -- parsing ---------------------------------------------------------------


def scan(data: bytes, pos: int = 0, end: int | None = None) -> tuple[int, int, int]:
    """Locate the item starting at ``data[pos]`` without decoding it.

    Returns ``(tag, start, stop)``: the payload is ``data[start:stop]``, the
    tag byte (an int) is ``data[stop]`` and the next item begins at
    ``stop + 1``. The whole item must lie before ``end`` (default: len).
    """
    # Only look 10 bytes ahead: 9 digits plus the colon. A colon at or past
    # ``end`` is caught by the bounds check below, so no min() here.
    colon = data.find(b":", pos, pos + 10)
    if colon <= pos:  # not found, or empty length
        raise TNetStringError(f"no length prefix at offset {pos}")
    digits = data[pos:colon]
    # isdigit() on bytes is ASCII-only; it rejects "-", "+", spaces.
    # Leading zeros are refused so every value has one encoding.
    if not digits.isdigit() or (digits[0] == 0x30 and colon - pos > 1):
        raise TNetStringError(f"bad length {digits!r} at offset {pos}")
    stop = colon + 1 + int(digits)
    # Need the payload plus one tag byte before ``end``.
    if stop >= (len(data) if end is None else end):
        raise TNetStringError(f"item at offset {pos} runs past the data")
    return data[stop], colon + 1, stop


def _parse(data: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    """Decode the item at ``pos``; return it and the offset after it."""
    tag, start, stop = scan(data, pos, end)
    if tag == _COMMA:
        return data[start:stop], stop + 1
    if tag in (_RBRACE, _RBRACKET):
        if depth >= MAX_DEPTH:
            raise TNetStringError(f"nesting deeper than {MAX_DEPTH}")
        return (
            _parse_dict(data, start, stop, depth + 1)
            if tag == _RBRACE
            else _parse_list(data, start, stop, depth + 1)
        ), stop + 1
    payload = data[start:stop]
    if tag == _HASH:
        digits = payload[1:] if payload[:1] == b"-" else payload
        if not digits.isdigit():
            raise TNetStringError(f"bad int {payload!r}")
        try:
            return int(payload), stop + 1
        except ValueError as exc:  # > sys.int_info.str_digits_check_threshold
            raise TNetStringError(str(exc)) from exc
    if tag == _TILDE:
        if payload:
            raise TNetStringError("null with a payload")
        return None, stop + 1
    if tag == _BANG:
        if payload == b"true":
            return True, stop + 1
        if payload == b"false":
            return False, stop + 1
        raise TNetStringError(f"bad bool {payload!r}")
    if tag == _CARET:
        if _FLOAT.fullmatch(payload) is None:
            raise TNetStringError(f"bad float {payload!r}")
        return float(payload), stop + 1
    raise TNetStringError(f"unknown type tag {bytes([tag])!r}")


def _parse_list(data: bytes, pos: int, end: int, depth: int) -> list[Any]:
    out = []
    while pos < end:
        value, pos = _parse(data, pos, end, depth)
        out.append(value)
    return out


def _parse_dict(data: bytes, pos: int, end: int, depth: int) -> dict[Any, Any]:
    out = {}
    while pos < end:
        tag, start, stop = scan(data, pos, end)
        if tag != _COMMA:
            raise TNetStringError("dict key is not a string")
        if stop + 1 >= end:
            raise TNetStringError("dict has a key without a value")
        value, pos = _parse(data, stop + 1, end, depth)
        out[data[start:stop]] = value
    return out


def _as_bytes(data: bytes) -> bytes:
    # memoryview() accepts any buffer but, unlike bytes(), not an int size.
    return data if isinstance(data, bytes) else memoryview(data).tobytes()


def pop(data: bytes) -> tuple[object, bytes]:
    """Decode the first item of ``data``; return it and the remaining bytes."""
    data = _as_bytes(data)
    value, pos = _parse(data, 0, len(data), 0)
    return value, data[pos:]


def loads(data: bytes) -> object:
    """Decode ``data``, which must hold exactly one item."""
    data = _as_bytes(data)
    value, pos = _parse(data, 0, len(data), 0)
    if pos != len(data):
        raise TNetStringError(f"{len(data) - pos} trailing bytes")
    return value


# -- rendering -------------------------------------------------------------


def _item(payload: bytes, tag: bytes) -> bytes:
    if len(payload) > _MAX_PAYLOAD:
        raise TNetStringError("payload longer than a 9-digit length allows")
    return b"%d:%b%b" % (len(payload), payload, tag)


def _dump(value: object, depth: int) -> bytes:
    if isinstance(value, bytes):
        return _item(value, b",")
    if isinstance(value, str):
        return _item(_encode_str(value), b",")
    if value is None:
        return b"0:~"
    if value is True:  # before int: bool is a subclass of int
        return b"4:true!"
    if value is False:
        return b"5:false!"
    if isinstance(value, int):
        return _item(b"%d" % value, b"#")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TNetStringError(f"cannot encode {value!r}")
        return _item(repr(value).encode("ascii"), b"^")
    if isinstance(value, (bytearray, memoryview)):
        return _item(bytes(value), b",")
    if isinstance(value, (list, tuple, dict)):
        if depth >= MAX_DEPTH:  # also catches self-referencing containers
            raise TNetStringError(f"nesting deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            parts = []
            for key, item in value.items():
                if not isinstance(key, (str, bytes)):
                    raise TypeError(f"dict key must be str or bytes, not {type(key).__name__}")
                parts.append(_dump(key, depth + 1))
                parts.append(_dump(item, depth + 1))
            return _item(b"".join(parts), b"}")
        return _item(b"".join([_dump(item, depth + 1) for item in value]), b"]")
    raise TypeError(f"cannot encode {type(value).__name__} as a tnetstring")


def _encode_str(text: str) -> bytes:
    # surrogateescape: a header decoded with it re-encodes to the same bytes.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise TNetStringError(f"cannot encode str: {exc}") from exc


def dumps(value: object) -> bytes:
    """Encode None, bool, int, float, str, bytes, list/tuple, dict."""
    return _dump(value, 0)
