"""RFC 6455 WebSocket frames, sans I/O: bytes in, frames and messages out; values in, bytes out.

Two ways in:

- `FrameParser` takes raw client bytes as they come off a socket (masked frames,
  fragmentation, control frames interleaved) and yields whole `Message`s.
- `message_from_mongrel2(flags, payload)`: what Mongrel2 1.12 hands a handler. It reads
  the frames itself, checks the mask bit, unmasks, joins the fragments and sends one
  `WEBSOCKET` message per data message (or per control frame) with the first frame's
  header byte in the `FLAGS` header (`0x81`: FIN + text) and the payload as the body
  (src/connection.c, `Connection_read_wspacket`). What it leaves to us is checked here:
  reserved bits and opcodes, UTF-8 of text, close payloads, the size limit.

Out: `build_frame` (server frames are never masked; a mask key builds client frames,
for tests), `close_frame`, and `accept_key` for the handshake.

Every refusal raises `WebSocketError` (a `ProtocolError`) carrying the close code to send.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from m2stack.protocol.errors import ProtocolError

__all__ = [
    "BINARY", "CLOSE", "CONTINUATION", "PING", "PONG", "TEXT",
    "Frame", "FrameParser", "Message", "WebSocketError",
    "accept_key", "build_frame", "handshake_response", "close_frame", "close_payload", "message_from_mongrel2",
    "parse_close_payload", "parse_flags", "parse_frame", "valid_client_key",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset({TEXT, BINARY})
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})
MAX_CONTROL_PAYLOAD = 125

# Close codes (RFC 6455 section 7.4.1).
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED_DATA = 1000, 1001, 1002, 1003
NO_STATUS, ABNORMAL, INVALID_DATA, POLICY_VIOLATION, TOO_BIG = 1005, 1006, 1007, 1008, 1009
INTERNAL_ERROR, SERVICE_RESTART = 1011, 1012
# Codes a peer may put on the wire: 1005, 1006 and 1015 are only ever reported locally.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

DEFAULT_MAX_MESSAGE = 1 << 20

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class WebSocketError(ProtocolError):
    """Bytes a WebSocket endpoint must refuse; `code` is the close code to answer with."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


# -- the handshake ---------------------------------------------------------------------


def valid_client_key(key: str) -> bool:
    """Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 section 4.1)."""
    try:
        return len(base64.b64decode(key.strip().encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


def handshake_response(accept: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The server's 101 (section 4.2.2): no subprotocol, no extension; `headers` extra."""
    lines = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept),
             *headers]
    for name, value in lines:
        text = name + value
        if not text.isascii() or "\r" in text or "\n" in text or ":" in name:
            raise WebSocketError(f"header {name[:40]!r} cannot be sent")
    head = "".join(f"{name}: {value}\r\n" for name, value in lines)
    return f"HTTP/1.1 101 Switching Protocols\r\n{head}\r\n".encode("ascii")


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (section 4.2.2)."""
    digest = hashlib.sha1(key.strip().encode("ascii", "replace") + _GUID).digest()  # noqa: S324 (the RFC's hash)
    return base64.b64encode(digest).decode("ascii")


# -- frames ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0          # the three reserved bits, as 0..7
    masked: bool = False


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    # XOR with the key repeated, as one big integer operation (fast for large payloads).
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def build_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                mask: bytes | None = None) -> bytes:
    """One frame. Servers send unmasked frames; `mask` (4 bytes) builds a client's."""
    if not 0 <= opcode <= 0xF or not 0 <= rsv <= 7:
        raise ValueError("opcode is 4 bits, rsv 3")
    if mask is not None and len(mask) != 4:
        raise ValueError("a mask key is 4 bytes")
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if mask is not None:
        return bytes(head) + mask + _mask(payload, mask)
    return bytes(head) + payload


def parse_frame(data: bytes | bytearray, pos: int = 0, *, require_mask: bool = True,
                max_size: int = DEFAULT_MAX_MESSAGE) -> tuple[Frame, int] | None:
    """The frame starting at `data[pos]` and the position after it, or None when more
    bytes are needed. Checks what a single frame can break: the mask bit, the length
    form (most significant bit of a 64-bit length), control frames' size and FIN."""
    end = len(data)
    if end - pos < 2:
        return None
    b0, b1 = data[pos], data[pos + 1]
    fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
    masked, length = bool(b1 & 0x80), b1 & 0x7F
    at = pos + 2
    if length == 126:
        if end - at < 2:
            return None
        length = int.from_bytes(data[at:at + 2], "big")
        at += 2
    elif length == 127:
        if end - at < 8:
            return None
        length = int.from_bytes(data[at:at + 8], "big")
        if length >> 63:
            raise WebSocketError("64-bit payload length with its most significant bit set")
        at += 8
    if require_mask and not masked:
        raise WebSocketError("client frames must be masked")
    if opcode in CONTROL_OPCODES or opcode > 0x7:
        if opcode not in CONTROL_OPCODES:
            raise WebSocketError(f"reserved control opcode 0x{opcode:X}")
        if not fin:
            raise WebSocketError("control frames must not be fragmented")
        if length > MAX_CONTROL_PAYLOAD:
            raise WebSocketError("control frame payload over 125 bytes")
    elif opcode not in DATA_OPCODES and opcode != CONTINUATION:
        raise WebSocketError(f"reserved data opcode 0x{opcode:X}")
    if length > max_size:
        raise WebSocketError(f"frame of {length} bytes over the {max_size} limit", TOO_BIG)
    key = b""
    if masked:
        if end - at < 4:
            return None
        key = bytes(data[at:at + 4])
        at += 4
    if end - at < length:
        return None
    payload = bytes(data[at:at + length])
    if masked:
        payload = _mask(payload, key)
    return Frame(fin, opcode, payload, rsv, masked), at + length


# -- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message: TEXT (`data` is str), BINARY (bytes), PING/PONG (bytes), or
    CLOSE (`code` and `reason`; code 1005 when the close frame had no payload)."""

    opcode: int
    data: str | bytes = b""
    code: int = 0
    reason: str = ""


def close_payload(code: int = NORMAL, reason: str = "") -> bytes:
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise ValueError(f"close code {code} may not be sent")
    payload = struct.pack("!H", code) + reason.encode("utf-8")
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason too long for a control frame")
    return payload


def close_frame(code: int = NORMAL, reason: str = "") -> bytes:
    return build_frame(CLOSE, close_payload(code, reason))


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame: (1005, "") for an empty one."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketError("close payload of one byte")
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise WebSocketError("close payload over 125 bytes")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise WebSocketError(f"close code {code} is not one a peer may send")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError("close reason is not UTF-8", INVALID_DATA) from None
    return code, reason


def _control_message(opcode: int, payload: bytes) -> Message:
    if opcode == CLOSE:
        code, reason = parse_close_payload(payload)
        return Message(CLOSE, b"", code, reason)
    return Message(opcode, payload)


class FrameParser:
    """Raw client bytes in, whole messages out: `feed(data)` returns the messages the
    bytes completed. Text is checked as UTF-8 fragment by fragment (an invalid byte fails
    at once, not at the end). After a `WebSocketError` the stream is unusable: answer
    with a close frame of its `code` and stop reading."""

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE, require_mask: bool = True):
        self.max_message = max_message
        self.require_mask = require_mask
        self._buffer = bytearray()
        self._opcode: int | None = None      # of the fragmented message in progress
        self._parts: list[bytes] = []
        self._size = 0
        self._text: list[str] = []
        self._utf8 = _Utf8Decoder()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        pos = 0
        try:
            while True:
                found = parse_frame(self._buffer, pos, require_mask=self.require_mask,
                                    max_size=self.max_message)
                if found is None:
                    break
                frame, pos = found
                message = self._frame(frame)
                if message is not None:
                    out.append(message)
        finally:
            del self._buffer[:pos]
        return out

    def _frame(self, frame: Frame) -> Message | None:
        if frame.rsv:
            raise WebSocketError("reserved bits set with no extension negotiated")
        opcode = frame.opcode
        if opcode in CONTROL_OPCODES:
            return _control_message(opcode, frame.payload)
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise WebSocketError("continuation frame with no message to continue")
        else:
            if self._opcode is not None:
                raise WebSocketError("new data frame inside a fragmented message")
            self._opcode = opcode
        self._size += len(frame.payload)
        if self._size > self.max_message:
            raise WebSocketError(f"message over the {self.max_message} byte limit", TOO_BIG)
        if self._opcode == TEXT:
            try:
                self._text.append(self._utf8.decode(frame.payload, frame.fin))
            except UnicodeDecodeError:
                raise WebSocketError("text message is not UTF-8", INVALID_DATA) from None
        else:
            self._parts.append(frame.payload)
        if not frame.fin:
            return None
        message = (Message(TEXT, "".join(self._text)) if self._opcode == TEXT
                   else Message(BINARY, b"".join(self._parts)))
        self._opcode, self._parts, self._text, self._size = None, [], [], 0
        self._utf8.reset()
        return message


# -- what Mongrel2 sends ---------------------------------------------------------------


def parse_flags(value: str) -> int:
    """Mongrel2's FLAGS header (`0x81`) as the frame's first byte."""
    text = value.strip()
    if not text[:2].lower() == "0x" or not 3 <= len(text) <= 4:
        raise WebSocketError(f"FLAGS {value[:20]!r} is not a hex byte")
    try:
        return int(text[2:], 16)
    except ValueError:
        raise WebSocketError(f"FLAGS {value[:20]!r} is not a hex byte") from None


def message_from_mongrel2(flags: int, payload: bytes, *,
                          max_message: int = DEFAULT_MAX_MESSAGE) -> Message:
    """One WEBSOCKET message from Mongrel2 (already unmasked and joined) as a `Message`."""
    if flags & 0x70:
        raise WebSocketError("reserved bits set with no extension negotiated")
    opcode = flags & 0x0F
    if opcode in CONTROL_OPCODES:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise WebSocketError("control frame payload over 125 bytes")
        return _control_message(opcode, payload)
    if opcode not in DATA_OPCODES:
        raise WebSocketError(f"reserved or unexpected opcode 0x{opcode:X}")
    if len(payload) > max_message:
        raise WebSocketError(f"message of {len(payload)} bytes over the {max_message} limit", TOO_BIG)
    if opcode == BINARY:
        return Message(BINARY, payload)
    try:
        return Message(TEXT, payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebSocketError("text message is not UTF-8", INVALID_DATA) from None
