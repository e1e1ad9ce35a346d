"""The request every front door hands to the app: decoded strictly, never guessed at."""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec

from m2stack.app.response import HTTPError
from m2stack.app.validation import decode_json, malformed_json

T = TypeVar("T")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_json_decoder = msgspec.json.Decoder()
BODY_CHUNK = 65_536  # bytes per read of a streamed body


def body_too_large(limit: int, length: int | None = None) -> HTTPError:
    """The one 413 of every front door: the limit (MAX_REQUEST_BODY_BYTES), and the declared
    length when there was one."""
    details: dict[str, Any] = {"limit": limit}
    if length is not None:
        details["length"] = length
    return HTTPError(413, "request body too large", details=details)


class BodySource(Protocol):
    """A body a front door has not read into memory (a file mongrel2 wrote, a spooled
    upload): read(size) returns at most `size` bytes, b"" at the end, and may raise
    HTTPError (400, 413) for a body that turns out bad. The door closes it."""

    def read(self, size: int, /) -> bytes: ...


def _strict_unquote(raw: bytes, what: str) -> str:
    """Percent-decode and UTF-8-decode, refusing what a lenient decoder would guess at."""
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, f"invalid percent-encoding in {what}")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"invalid UTF-8 in {what}") from None


def _parse_query(raw: bytes) -> dict[str, list[str]]:
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, "invalid percent-encoding in query string")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "invalid UTF-8 in query string") from None
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query



class Request:
    """One HTTP request, as every front door hands it to the app."""

    __slots__ = ("method", "path", "query", "headers", "version", "remote_addr", "peer_addr",
                 "scheme", "request_id", "error", "_cookies", "_body", "_source", "_streamed")

    def __init__(self, method: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str], body: bytes | BodySource, *, version: str = "HTTP/1.1",
                 remote_addr: str = "", scheme: str = "http", request_id: str = ""):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-case names; repeated headers joined with ", "
        # The body: bytes, or a source read on demand (`body`, `iter_body`, `body_file`).
        if isinstance(body, bytes):
            self._body: bytes | None = body
            self._source: BodySource | None = None
        else:
            self._body, self._source = None, body
        self._streamed = False
        self.version = version
        # The client's address and scheme: those of the connection, until `App.handle` takes
        # them from a trusted proxy's headers (FORWARDED_ALLOW_IPS, app/forwarded.py).
        self.remote_addr = remote_addr
        self.peer_addr = remote_addr  # the connection's peer, whatever the headers say
        self.scheme = scheme  # "https" when the client reached the front door over TLS
        self.request_id = request_id or new_request_id(headers.get("x-request-id"))
        self.error: HTTPError | None = None  # set when the wire form could not be decoded
        self._cookies: dict[str, str] | None = None

    @classmethod
    def from_raw(cls, method: str, raw_path: bytes, raw_query: bytes,
                 headers: dict[str, str], body: bytes | BodySource, **kwargs: Any) -> Request:
        """Build from wire bytes. Undecodable path or query is not raised here: it is
        kept in `error`, and `App.handle` answers it with a 400 like any other error."""
        try:
            path = _strict_unquote(raw_path, "path")
            query = _parse_query(raw_query) if raw_query else {}
        except HTTPError as exc:
            request = cls(method, "", {}, headers, body, **kwargs)
            request.error = exc
            return request
        return cls(method, path, query, headers, body, **kwargs)

    # -- the body: whole, or as a stream (a large upload need not fit in memory) -----------

    @property
    def body(self) -> bytes:
        """The whole body, read into memory at the first access."""
        if self._body is None:
            if self._streamed:
                raise RuntimeError("the request body was already read as a stream")
            self._body = b"".join(self.iter_body())
            self._streamed = False
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self._body, self._source, self._streamed = value, None, False

    def iter_body(self, chunk_size: int = BODY_CHUNK) -> Iterator[bytes]:
        """The body in chunks of at most `chunk_size` bytes, read as they are asked for:
        however large the upload, this holds one chunk. Once only, unless `body` read it."""
        body = self._body
        if body is not None:
            for start in range(0, len(body), chunk_size):
                yield body[start:start + chunk_size]
            return
        if self._streamed:
            raise RuntimeError("the request body was already read as a stream")
        self._streamed = True
        source = self._source
        if source is None:
            return
        while chunk := source.read(chunk_size):
            yield chunk

    @property
    def body_size(self) -> int | None:
        """The body's length without reading it, when known (in memory, or a source with a
        `size`); None otherwise."""
        if self._body is not None:
            return len(self._body)
        size = getattr(self._source, "size", None)
        return size if isinstance(size, int) else None

    def close_body(self) -> None:
        """Release the body's source (its file): the front door calls it once answered."""
        source, self._source = self._source, None
        close = getattr(source, "close", None)
        if close is not None:
            close()

    @property
    def body_file(self) -> io.BufferedReader:
        """The body as a binary file (read, readline, iteration), streamed like `iter_body`."""
        return io.BufferedReader(_ChunksReader(self.iter_body()), BODY_CHUNK)

    def argument(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query argument (Brubeck's get_argument)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def int_argument(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        """A query argument that must be an integer in [minimum, maximum], else 400."""
        raw = self.argument(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise HTTPError(400, f"query argument '{name}' must be an integer",
                            details={"argument": name, "value": raw[:64]}) from None
        if not minimum <= value <= maximum:
            raise HTTPError(400, f"query argument '{name}' must be between {minimum} and {maximum}",
                            details={"argument": name, "value": value})
        return value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar = SimpleCookie()
            try:
                jar.load(self.headers.get("cookie", ""))
            except Exception:  # a garbled Cookie header means no cookies, not a 500
                jar = SimpleCookie()
            self._cookies = {name: morsel.value for name, morsel in jar.items()}
        return self._cookies

    def expect_json(self) -> None:
        """415 unless the body is declared as JSON."""
        content_type = self.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise HTTPError(415, "expected Content-Type: application/json",
                            details={"content_type": content_type[:100]})

    def json(self) -> Any:
        """The body decoded as JSON; 415 for another content type, 400 if malformed."""
        self.expect_json()
        try:
            return _json_decoder.decode(self.body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
            raise malformed_json(exc) from None

    def decode(self, model: type[T], *, what: str = "body") -> T:
        """The body decoded and validated as `model` (a msgspec Struct, app/validation.py):
        415 for another content type, 400 for malformed JSON or a key named twice, 422
        (`invalid <what>`) listing every invalid field with its path."""
        self.expect_json()
        return decode_json(self.body, model, what=what)

    @property
    def wants_close(self) -> bool:
        """True when the client asked for the connection to end after this response."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection


class _ChunksReader(io.RawIOBase):
    """An iterator of chunks as a raw binary stream (for io.BufferedReader)."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.left:
            self.left = next(self.chunks, b"")
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size


def new_request_id(offered: str | None = None) -> str:
    """Keep a well-formed client/proxy X-Request-Id so ids follow a request; else mint one:
    16 hex digits, a random prefix per process and a counter (unique without asking the
    OS for randomness on every request)."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _new_id_sequence() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(4), itertools.count()


_id_prefix, _id_counter = "", itertools.count()
_new_id_sequence()
os.register_at_fork(after_in_child=_new_id_sequence)  # a forked worker must not repeat its parent's ids
